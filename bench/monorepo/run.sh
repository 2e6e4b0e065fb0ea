#!/usr/bin/env bash
# Monorepo benchmark (issue: directory views at scale). Generates a history
# of N_COMMITS commits (default 200,000) over leaf directories nested three
# deep, FANOUT (default "40 50 50": 100,000 directories, t00/m00/d00 to
# t39/m49/d49), one file each at first. Every commit changes one or two
# files of one directory; every N_COMMITS/HOT_COMMITS-th changes the "hot"
# directory, which so has HOT_COMMITS + 1 commits (default 51).
#
# The history lands in tessera on /projects/big as merge requests of CHUNK
# commits (default 10,000; fast-forwards, so ids are kept), each pushed and
# merged, with the server's peak RSS reset (through /proc/PID/clear_refs)
# before the push and before the merge, and read after each. Then, against C git in the same
# run:
#   1. cloning the hot directory: tessera `git clone http://.../projects/big/<hot>`
#      vs C git cloning a plain repository holding that directory's history
#      (fast-export limited to it), over file:// and over HTTP (git
#      http-backend behind lighttpd, as bench/smart-http does);
#   2. merging a one-commit merge request, on the hot directory and on
#      /projects/big: `tessera mr merge` vs C git's `git merge --no-ff` of a
#      topic branch plus `git push` to a bare copy of the whole history.
# Timings are medians of 3 runs.
set -euo pipefail
n_commits=${N_COMMITS:-200000}
read -r f1 f2 f3 <<< "${FANOUT:-40 50 50}"
hot_commits=${HOT_COMMITS:-50}
chunk=${CHUNK:-10000}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pids=()
# KEEP=1 keeps the work directory (the generated history and the data
# directory) for a closer look.
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"; }
trap cleanup EXIT
if ! command -v lighttpd >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lighttpd >/dev/null
fi
cargo build --release -q -p tessera --manifest-path "$root/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$root/target}/release/tessera"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median3() { sort -n | sed -n 2p; }

hot=$(python3 -c "print(f't{$f1 // 2:02d}/m{$f2 // 3:02d}/d{$f3 // 5:02d}')")
echo "generating $n_commits commits over $((f1 * f2 * f3)) directories (hot directory $hot)..."
t0=$(now)
git init -q -b main "$work/plain"
python3 - "$n_commits" "$f1" "$f2" "$f3" "$hot" "$hot_commits" <<'PY' | git -C "$work/plain" fast-import --quiet
import sys, random
n, f1, f2, f3, hot, hot_commits = sys.argv[1:]
n, f1, f2, f3, hot_commits = int(n), int(f1), int(f2), int(f3), int(hot_commits)
rnd = random.Random(42)
out = sys.stdout.buffer
dirs = [f"t{a:02d}/m{b:02d}/d{c:02d}" for a in range(f1) for b in range(f2) for c in range(f3)]
files = {d: 1 for d in dirs}
hot_every = max(1, (n - 1) // hot_commits)
t = 1_600_000_000
def commit(message):
    global t
    t += 60
    out.write(b"commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\n" % t)
    m = (message + "\n").encode()
    out.write(b"data %d\n%s\n" % (len(m), m))
def put(path, text):
    data = text.encode()
    out.write(b"M 100644 inline %s\ndata %d\n" % (path.encode(), len(data)))
    out.write(data)
    out.write(b"\n")
commit("initial layout")
for d in dirs:
    put(f"{d}/f0.txt", f"{d} file 0\n")
for c in range(1, n):
    d = hot if c % hot_every == 0 and c // hot_every <= hot_commits else rnd.choice(dirs)
    commit(f"change {c} in {d}")
    if rnd.random() < 0.3:
        put(f"{d}/f{files[d]}.txt", f"{d} file {files[d]}\n")
        files[d] += 1
    for _ in range(rnd.randint(1, 2)):
        k = rnd.randrange(files[d])
        put(f"{d}/f{k}.txt", f"{d} file {k} at change {c}\n")
PY
git -C "$work/plain" repack -adq
# A work tree: fast-export's path limit below checks paths against it.
git -C "$work/plain" reset -q --hard main
t1=$(now)
echo "generated in $(elapsed "$t0" "$t1") s: $(git -C "$work/plain" rev-list --count main) commits, $(git -C "$work/plain" count-objects -v | awk '/size-pack/ {print $2}') KiB packed"

tport=$(free_port)
# SERVE_WRAP runs the server under a tool, e.g. SERVE_WRAP=heaptrack.
serve() {
  local s e
  s=$(now)
  ${SERVE_WRAP:-} "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$tport" > "$work/serve.log" 2>&1 & server_pid=$!; pids+=($server_pid)
  until grep -q listening "$work/serve.log" 2>/dev/null; do
    kill -0 "$server_pid" || { cat "$work/serve.log"; exit 1; }
    sleep 0.1
  done
  e=$(now)
  # A wrapper's pid is not the server's: measure the server.
  [ -n "${SERVE_WRAP:-}" ] && server_pid=$(pgrep -n -f "$bin serve --data-dir $work/data")
  startup=$(elapsed "$s" "$e")
}
serve
"$bin" user add bench --admin --init --data-dir "$work/data" >/dev/null
token=$("$bin" token create --user bench --data-dir "$work/data" | awk 'END { print $NF }')
url="http://b:$token@127.0.0.1:$tport"
export TESSERA_SERVER="http://127.0.0.1:$tport" TESSERA_TOKEN="$token"
peak_reset() { echo 5 > "/proc/$server_pid/clear_refs"; }
peak_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }

# Landing: one merge request per CHUNK commits.
mapfile -t ids < <(git -C "$work/plain" rev-list --reverse main)
mr=0
push_total=0 merge_total=0 worst_peak=0 worst_push_peak=0 worst_merge=0
echo "chunk  commits  push s  push peak RSS MiB  merge s  merge peak RSS MiB"
for ((end = chunk; end < n_commits + chunk; end += chunk)); do
  (( end > n_commits )) && end=$n_commits
  tip=${ids[$((end - 1))]}
  peak_reset
  s=$(now); git -C "$work/plain" push -q "$url/projects/big" "$tip:refs/for/main" 2>/dev/null; e=$(now)
  tp=$(elapsed "$s" "$e")
  pp=$(peak_mib)
  mr=$((mr + 1))
  peak_reset
  s=$(now); "$bin" mr merge "$mr" > /dev/null; e=$(now)
  tm=$(elapsed "$s" "$e")
  pk=$(peak_mib)
  printf '%5d  %7d  %6s  %17s  %7s  %s\n' "$mr" "$end" "$tp" "$pp" "$tm" "$pk"
  push_total=$(python3 -c "print($push_total + $tp)")
  merge_total=$(python3 -c "print($merge_total + $tm)")
  (( pk > worst_peak )) && worst_peak=$pk
  (( pp > worst_push_peak )) && worst_push_peak=$pp
  worst_merge=$(python3 -c "print(max($worst_merge, $tm))")
  (( end == n_commits )) && break
done
echo "landed $n_commits commits as $mr merge requests: push $push_total s, merge $merge_total s (slowest $worst_merge s); peak RSS during a push $worst_push_peak MiB, during a merge $worst_peak MiB; RSS now $(rss_mib) MiB; data dir $(du -sm "$work/data" | cut -f1) MiB"

# A restarted server loads the root's index on its first request: its peak
# then, and what it keeps at rest.
kill "$server_pid"; while kill -0 "$server_pid" 2>/dev/null; do sleep 0.1; done
serve
s=$(now); git ls-remote "$url/projects/big/$hot" > /dev/null; e=$(now)
echo "restarted: start-up $startup s, first request $(elapsed "$s" "$e") s, peak RSS $(peak_mib) MiB, RSS at rest $(rss_mib) MiB"

# C git references for the hot directory: file:// and http-backend.
git init -q --bare "$work/gitroot/hot.git"
git -C "$work/plain" fast-export main -- "$hot/" \
  | sed "s#^\(M [0-9]* [^ ]* \)$hot/#\1#; s#^D $hot/#D #" \
  | git -C "$work/gitroot/hot.git" fast-import --quiet
git -C "$work/gitroot/hot.git" repack -adq
gport=$(free_port)
cat > "$work/lighttpd.conf" <<CONF
server.document-root = "$work/gitroot"
server.bind = "127.0.0.1"
server.port = $gport
server.modules = ("mod_alias", "mod_cgi", "mod_setenv")
server.errorlog = "$work/lighttpd.err"
alias.url = ("/git" => "$(git --exec-path)/git-http-backend")
cgi.assign = ("" => "")
setenv.add-environment = ("GIT_PROJECT_ROOT" => "$work/gitroot", "GIT_HTTP_EXPORT_ALL" => "1", "REMOTE_USER" => "bench", "GIT_CONFIG_NOSYSTEM" => "1")
CONF
lighttpd -D -f "$work/lighttpd.conf" & pids+=($!)
sleep 0.5

clone_time() { # URL → median seconds of 3 bare clones into $work/c
  for _ in 1 2 3; do
    rm -rf "$work/c"
    local s e
    s=$(now); git clone -q --bare "$1" "$work/c"; e=$(now)
    elapsed "$s" "$e"
  done | median3
}
peak_reset
t_tessera=$(clone_time "http://127.0.0.1:$tport/projects/big/$hot")
peak_clone=$(peak_mib)
n_tessera=$(git -C "$work/c" rev-list --count main)
tree_tessera=$(git -C "$work/c" rev-parse 'main^{tree}')
t_file=$(clone_time "file://$work/gitroot/hot.git")
n_git=$(git -C "$work/c" rev-list --count main)
tree_git=$(git -C "$work/c" rev-parse 'main^{tree}')
t_http=$(clone_time "http://127.0.0.1:$gport/git/hot.git")
[ "$tree_tessera" = "$tree_git" ] || echo "WARNING: the directory's trees differ ($tree_tessera vs $tree_git)"
echo "clone /projects/big/$hot: tessera $t_tessera s ($n_tessera commits); C git file:// $t_file s ($n_git commits), ratio $(ratio "$t_tessera" "$t_file"); C git http-backend $t_http s, ratio $(ratio "$t_tessera" "$t_http")"

# One-commit merge requests: on the hot directory, then on /projects/big.
merge_time() { # DIR, a clone to change, FILE in it, the first MR id → median seconds of 3 merges
  local dir=$1 clone=$2 file=$3 id=$4
  for i in 1 2 3; do
    echo "one change $i" >> "$clone/$file"
    git -C "$clone" -c user.name=b -c user.email=b@x commit -qam "one change $i"
    git -C "$clone" push -q "$url$dir" HEAD:refs/for/main 2>/dev/null
    local s e
    s=$(now); "$bin" mr merge "$((id + i - 1))" > /dev/null; e=$(now)
    git -C "$clone" pull -q --rebase "$url$dir" main 2>/dev/null
    elapsed "$s" "$e"
  done | median3
}
peak_reset
git clone -q "$url/projects/big/$hot" "$work/hot"
t_merge_hot=$(merge_time "/projects/big/$hot" "$work/hot" f0.txt "$((mr + 1))")
mr=$((mr + 3))
# The plain repository's history is /projects/big's (fast-forwards keep
# ids); the pull brings what the merges above added.
peak_hot=$(peak_mib)
git clone -q "$work/plain" "$work/bigclone"
peak_reset
git -C "$work/bigclone" pull -q --rebase "$url/projects/big" main 2>/dev/null
peak_pull=$(peak_mib)
peak_reset
t_merge_big=$(merge_time /projects/big "$work/bigclone" "$hot/f0.txt" "$((mr + 1))")
mr=$((mr + 3))

git clone -q --bare "$work/plain" "$work/ref-full.git"
git clone -q "$work/ref-full.git" "$work/gitmr"
gitmerge=()
for i in 1 2 3; do
  git -C "$work/gitmr" checkout -qb "topic$i"
  echo "change $i" >> "$work/gitmr/$hot/f0.txt"
  git -C "$work/gitmr" -c user.name=b -c user.email=b@x commit -qam "one change $i"
  git -C "$work/gitmr" checkout -q main
  s=$(now)
  git -C "$work/gitmr" -c user.name=b -c user.email=b@x merge -q --no-ff --no-edit "topic$i"
  git -C "$work/gitmr" push -q origin main
  e=$(now)
  gitmerge+=("$(elapsed "$s" "$e")")
done
t_gitmerge=$(printf '%s\n' "${gitmerge[@]}" | median3)
echo "merge a one-commit MR: on $hot tessera $t_merge_hot s, on /projects/big tessera $t_merge_big s; C git merge+push $t_gitmerge s; ratios $(ratio "$t_merge_hot" "$t_gitmerge"), $(ratio "$t_merge_big" "$t_gitmerge")"
echo "server peak RSS: cloning the hot directory $peak_clone MiB; its one-commit merges $peak_hot MiB; a pull of /projects/big's whole history into a clone of the plain repository $peak_pull MiB; one-commit merges on /projects/big $(peak_mib) MiB; RSS now $(rss_mib) MiB"
