#!/usr/bin/env bash
# Page speed of the web UI on a large directory and a long history, against
# C git computing the same content in the same run:
#   - the tree page of a directory of N_FILES entries (default 10,000)
#     against `git ls-tree` of that directory;
#   - the first history page (50 commits) of a repository of N_COMMITS
#     commits (default 50,000) against `git log -50` of the same fields;
#   - a file page and the JSON tree, for comparison.
# The repository is synthetic (git fast-import), pushed to tessera on
# SQLite; each figure is the best of RUNS requests (default 10) after one
# that warms the server's caches, as a browser's second visit would.
#
# Usage: bench/web/run.sh [N_FILES] [N_COMMITS] [RUNS]
set -euo pipefail
n_files=${1:-10000}
n_commits=${2:-50000}
runs=${3:-10}
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cargo build --release -q -p tessera --manifest-path "$root/Cargo.toml"
bin="$target/release/tessera"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null

# One commit adding N_FILES files under big/, then commits changing one file.
git init -q -b main "$work/src"
python3 - "$n_files" "$n_commits" > "$work/stream" <<'EOF'
import sys
files, commits = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
def data(b):
    out.write(b"data %d\n" % len(b) + b + b"\n")
t = 1_600_000_000
out.write(b"commit refs/heads/main\nmark :1\n")
out.write(b"author A <a@x> %d +0000\ncommitter A <a@x> %d +0000\n" % (t, t))
data(b"many files")
for i in range(files):
    out.write(b"M 100644 inline big/file%05d.txt\n" % i)
    data(b"file %d\n" % i)
for n in range(2, commits + 1):
    out.write(b"commit refs/heads/main\nmark :%d\n" % n)
    out.write(b"author A <a@x> %d +0000\ncommitter A <a@x> %d +0000\n" % (t + n, t + n))
    data(b"change %d" % n)
    out.write(b"from :%d\nM 100644 inline counter.txt\n" % (n - 1))
    data(b"%d\n" % n)
EOF
git -C "$work/src" fast-import --quiet < "$work/stream"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 50); do grep -q listening "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
"$bin" user add bench --admin --init --data-dir "$work/data" >/dev/null
token=$("$bin" token create --user bench --data-dir "$work/data" | awk 'END { print $NF }')
git -C "$work/src" push -q "http://b:$token@127.0.0.1:$port/import/web" main
base="http://127.0.0.1:$port/import/web"

# Best seconds of RUNS requests after a warm-up; the page must be a 200.
page() {
  curl -s -f -o /dev/null "$1"
  for _ in $(seq 1 "$runs"); do curl -s -f -o /dev/null -w '%{time_total}\n' "$1"; done | sort -g | head -1
}
# Best seconds of RUNS runs of a git command in the source repository.
git_best() {
  for _ in $(seq 1 "$runs"); do
    s=$(date +%s.%N); git -C "$work/src" "$@" > /dev/null; e=$(date +%s.%N)
    awk -v s="$s" -v e="$e" 'BEGIN { print e - s }'
  done | sort -g | head -1
}
ms() { awk -v t="$1" 'BEGIN { printf "%.1f", t * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

tree=$(page "$base/-/tree/main/big")
history=$(page "$base/-/commits/main")
blob=$(page "$base/-/blob/main/big/file00042.txt")
api_tree=$(page "http://127.0.0.1:$port/api/v1/tree?path=/import/web&ref=main&sub=big")
git_tree=$(git_best ls-tree main:big)
git_log=$(git_best log -50 --format='%H %an %at %s' main)
git_show=$(git_best cat-file -p main:big/file00042.txt)
entries=$(curl -s "$base/-/tree/main/big" | grep -o 'file[0-9]*\.txt' | sort -u | wc -l)
[ "$entries" -eq "$n_files" ] || { echo "the tree page lists $entries of $n_files files" >&2; exit 1; }

echo "repository: $n_files files in big/, $n_commits commits; best of $runs after a warm-up"
printf '%-32s %10s %10s %7s\n' "" "tessera" "C git" "ratio"
printf '%-32s %7s ms %7s ms %6sx\n' "tree page ($n_files entries)" "$(ms "$tree")" "$(ms "$git_tree")" "$(ratio "$tree" "$git_tree")"
printf '%-32s %7s ms %7s ms %6sx\n' "history page (50 of $n_commits)" "$(ms "$history")" "$(ms "$git_log")" "$(ratio "$history" "$git_log")"
printf '%-32s %7s ms %7s ms %6sx\n' "file page" "$(ms "$blob")" "$(ms "$git_show")" "$(ratio "$blob" "$git_show")"
printf '%-32s %7s ms\n' "JSON tree ($n_files entries)" "$(ms "$api_tree")"
echo "(C git: the plumbing that computes the same content, without HTML; ratio: tessera over C git)"
