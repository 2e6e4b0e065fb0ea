#!/usr/bin/env bash
# Monorepo benchmark (issue: monorepo directories). Builds a repository of
# N_COMMITS commits over N_FILES files (default 10k and 50k, in 500
# directories), lands it in tessera as one merge request on /projects/big,
# then times, against the closest C git operation in the same run:
#   1. cloning one directory with its history: tessera `git clone
#      http://.../projects/big/dNNN` vs C git cloning a plain repository
#      holding that directory's history (made with `git subtree split`),
#      over its own upload-pack (file://, no HTTP: this favours C git);
#   2. merging a one-commit merge request: `tessera mr merge` vs C git's
#      `git merge` of a topic branch plus `git push` to a bare repository.
# Also reports the one-time cost of landing the whole history.
set -euo pipefail
n_commits=${N_COMMITS:-10000}
n_dirs=${N_DIRS:-500}
files_per_dir=${FILES_PER_DIR:-100}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -q -p tessera --manifest-path "$root/Cargo.toml"
bin="$root/target/release/tessera"
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }

echo "generating $n_commits commits over $((n_dirs * files_per_dir)) files..."
python3 - "$n_commits" "$n_dirs" "$files_per_dir" > "$work/stream" <<'PY'
import sys, random
n_commits, n_dirs, per_dir = map(int, sys.argv[1:])
rnd = random.Random(42)
out = sys.stdout.buffer
def blob(text):
    data = text.encode()
    out.write(b"data %d\n" % len(data)); out.write(data); out.write(b"\n")
t = 1_600_000_000
out.write(b"commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\n" % t)
blob("initial import")
for d in range(n_dirs):
    for f in range(per_dir):
        out.write(b"M 100644 inline d%03d/f%03d.txt\n" % (d, f))
        blob("".join(f"line {i} of d{d:03d}/f{f:03d}\n" for i in range(20)))
for c in range(1, n_commits):
    t += 60
    out.write(b"commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\n" % t)
    blob(f"change {c}")
    d = rnd.randrange(n_dirs)
    for _ in range(rnd.randint(1, 3)):
        f = rnd.randrange(per_dir)
        out.write(b"M 100644 inline d%03d/f%03d.txt\n" % (d, f))
        blob("".join(f"line {i} of d{d:03d}/f{f:03d} rev {c}\n" for i in range(20)))
PY
git init -q -b main "$work/plain"
git -C "$work/plain" fast-import --quiet < "$work/stream"
git -C "$work/plain" reset -q --hard main
git -C "$work/plain" repack -adq

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 50); do grep -q listening "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
"$bin" user add bench --admin --init --data-dir "$work/data" >/dev/null
token=$("$bin" token create --user bench --data-dir "$work/data" | awk 'END { print $NF }')
url="http://b:$token@127.0.0.1:$port"
export TESSERA_SERVER="http://127.0.0.1:$port" TESSERA_TOKEN="$token"

t0=$(now)
git -C "$work/plain" push -q "$url/projects/big" main:refs/for/main 2>/dev/null
t1=$(now)
"$bin" mr merge 1 > /dev/null
t2=$(now)
echo "landing the history: push $(elapsed "$t0" "$t1") s, merge of $n_commits commits $(elapsed "$t1" "$t2") s"

dir=d007
# C git reference: the directory's own history in a plain repository
# (fast-export limited to the directory, paths made relative to it).
git init -q --bare "$work/ref-$dir.git"
git -C "$work/plain" fast-export main -- "$dir/" \
  | sed "s#^\(M [0-9]* [^ ]* \)$dir/#\1#; s#^D $dir/#D #" \
  | git -C "$work/ref-$dir.git" fast-import --quiet


clone_times() {
  local label=$1 src=$2
  for i in 1 2 3; do
    rm -rf "$work/c"
    local s e
    s=$(now); git clone -q --bare "$src" "$work/c"; e=$(now)
    elapsed "$s" "$e"
  done | sort -n | sed -n 2p
}
t_tessera=$(clone_times tessera "http://127.0.0.1:$port/projects/big/$dir")
n_tessera=$(git -C "$work/c" rev-list --count main)
t_git=$(clone_times git "file://$work/ref-$dir.git")
n_git=$(git -C "$work/c" rev-list --count main)
echo "clone /projects/big/$dir: tessera $t_tessera s ($n_tessera commits), C git $t_git s ($n_git commits), ratio $(python3 -c "print(f'{$t_tessera / $t_git:.2f}')")"

# The whole monorepo: tessera's root (which holds /projects/big and the
# initial layout) vs C git cloning the plain repository (file://).
t_root=$(clone_times tessera "http://127.0.0.1:$port/")
root_bytes=$(cat "$work"/c/objects/pack/*.pack | wc -c)
git clone -q --bare "$work/plain" "$work/plain-bare.git"
t_plain=$(clone_times git "file://$work/plain-bare.git")
plain_bytes=$(cat "$work"/c/objects/pack/*.pack | wc -c)
echo "clone /: tessera $t_root s ($root_bytes pack bytes), C git $t_plain s ($plain_bytes pack bytes), ratio $(python3 -c "print(f'{$t_root / $t_plain:.2f}, bytes {$root_bytes / $plain_bytes:.2f}')")"

# One-commit merge request vs C git merge + push.

git clone -q "$url/projects/big" "$work/mr"
echo change >> "$work/mr/$dir/f001.txt"
git -C "$work/mr" -c user.name=b -c user.email=b@x commit -qam "one change"
git -C "$work/mr" push -q origin HEAD:refs/for/one 2>/dev/null
s=$(now); "$bin" mr merge 2 > /dev/null; e=$(now)
t_merge=$(elapsed "$s" "$e")

git clone -q --bare "$work/plain" "$work/ref-full.git"
git clone -q "$work/ref-full.git" "$work/gitmr"
git -C "$work/gitmr" checkout -qb topic
echo change >> "$work/gitmr/$dir/f001.txt"
git -C "$work/gitmr" -c user.name=b -c user.email=b@x commit -qam "one change"
git -C "$work/gitmr" checkout -q main
s=$(now)
git -C "$work/gitmr" -c user.name=b -c user.email=b@x merge -q --no-ff --no-edit topic
git -C "$work/gitmr" push -q origin main
e=$(now)
t_gitmerge=$(elapsed "$s" "$e")
echo "merge a one-commit MR: tessera $t_merge s, C git merge+push $t_gitmerge s, ratio $(python3 -c "print(f'{$t_merge / $t_gitmerge:.2f}')")"
echo "server peak RSS: $(awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$server_pid/status)"
