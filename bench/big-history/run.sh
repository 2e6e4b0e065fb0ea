#!/usr/bin/env bash
# tessera vs C git's `git http-backend` (behind lighttpd's CGI) on a long
# real history, same machine, same run. The repository is given, never
# committed: a clone of git's own history (849k objects, 1,008 tags) is the
# reference case; its early trees hold 100664 modes, which tessera must
# accept and count.
#
# Measures, one run each (the history is large):
#   - push of every head and tag into an empty repository: C git with its
#     default configuration, C git with receive.fsckObjects=true (tessera
#     always checks), and tessera;
#   - mirror clone: wall time, bytes of the pack received, and the serving
#     process's peak RSS (C git: its largest pack-objects; tessera: the
#     server, restarted after the push so the clone's own peak shows);
#   - that the clone's refs are the source's and `git fsck` passes on it.
# and prints the ratios tessera / C git.
#
# Usage: bench/big-history/run.sh SRC [DATABASE_URL]
#   SRC           a local clone of a long history (e.g. git.git)
#   DATABASE_URL  tessera's database (default: SQLite in a temp dir), e.g.
#                 postgres://postgres@127.0.0.1/bench_big (created if missing)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
src=$(cd "${1:?usage: run.sh SRC [DATABASE_URL]}" && pwd)
database=${2:-}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
if ! command -v lighttpd >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lighttpd >/dev/null
fi
cargo build --release -q -p tessera --manifest-path "$root/Cargo.toml"
bin="$root/target/release/tessera"
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.2f}')"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
refspecs=('refs/heads/*:refs/heads/*' 'refs/tags/*:refs/tags/*')
n_refs=$(git -C "$src" for-each-ref refs/heads refs/tags | wc -l)
echo "repository: $(git -C "$src" count-objects -v | awk '/in-pack/ {print $2}') objects packed, $n_refs heads and tags"

# Peak VmHWM (KiB) of processes whose command line matches $1, sampled
# until the file $2 exists; printed at the end.
sample_peak() {
  python3 - "$1" "$2" <<'PY'
import os, sys, time
pattern, stop = sys.argv[1], sys.argv[2]
peak = 0
while not os.path.exists(stop):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            if pattern in cmd:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    time.sleep(0.05)
print(peak)
PY
}

# --- C git behind lighttpd
gport=$(free_port)
mkdir -p "$work/gitroot"
cat > "$work/lighttpd.conf" <<CONF
server.document-root = "$work/gitroot"
server.bind = "127.0.0.1"
server.port = $gport
server.modules = ("mod_alias", "mod_cgi", "mod_setenv")
server.errorlog = "$work/lighttpd.err"
server.max-request-size = 4194303
alias.url = ("/git" => "$(git --exec-path)/git-http-backend")
cgi.assign = ("" => "")
setenv.add-environment = ("GIT_PROJECT_ROOT" => "$work/gitroot", "GIT_HTTP_EXPORT_ALL" => "1", "REMOTE_USER" => "bench", "GIT_CONFIG_NOSYSTEM" => "1")
CONF
lighttpd -D -f "$work/lighttpd.conf" & pids+=($!)
declare -A r
for variant in default fsck; do
  git init -q --bare "$work/gitroot/$variant.git"
  git -C "$work/gitroot/$variant.git" config http.receivepack true
  [ $variant = fsck ] && git -C "$work/gitroot/$variant.git" config receive.fsckObjects true
  s=$(now)
  if git -C "$src" push -q "http://127.0.0.1:$gport/git/$variant.git" "${refspecs[@]}" 2>"$work/git-$variant.err"; then
    r[git_$variant.push]=$(since "$s")
  else
    r[git_$variant.push]=refused
    echo "C git ($variant) refused the push: $(tail -n 3 "$work/git-$variant.err" | tr '\n' ' ')"
  fi
done
rm -f "$work/stop"; sample_peak pack-objects "$work/stop" > "$work/git.peak" & sampler=$!
s=$(now); git clone -q --mirror "http://127.0.0.1:$gport/git/default.git" "$work/git-clone"; r[git.clone]=$(since "$s")
touch "$work/stop"; wait $sampler
r[git.rss]=$(cat "$work/git.peak")
r[git.bytes]=$(cat "$work/git-clone"/objects/pack/*.pack | wc -c)

# --- tessera
tport=$(free_port)
args=(--data-dir "$work/tdata" --listen "127.0.0.1:$tport")
if [ -n "$database" ]; then
  if [[ $database == postgres* ]]; then
    dbname=${database##*/}
    psql "${database%/*}/postgres" -qc "DROP DATABASE IF EXISTS $dbname" -c "CREATE DATABASE $dbname" >/dev/null
  fi
  args+=(--database "$database")
fi
start_tessera() {
  : > "$work/tessera.log"
  "$bin" serve "${args[@]}" >> "$work/tessera.log" 2>&1 & tpid=$!; pids+=($tpid)
  for _ in $(seq 1 100); do grep -q listening "$work/tessera.log" 2>/dev/null && break; sleep 0.1; done
}
start_tessera
"$bin" user add bench --admin "${args[@]}" >/dev/null
token=$("$bin" token create --user bench "${args[@]}" | awk 'END { print $NF }')
s=$(now)
git -C "$src" push "http://b:$token@127.0.0.1:$tport/import/big" "${refspecs[@]}" 2>"$work/tessera-push.err"
r[tessera.push]=$(since "$s")
r[tessera.push_rss]=$(awk '/VmHWM/ {print $2}' /proc/$tpid/status)
echo "tessera's remote messages: $(grep -o 'tessera: accepted objects.*' "$work/tessera-push.err" | head -n 1)"
kill $tpid; wait $tpid 2>/dev/null || true
start_tessera
s=$(now); git clone -q --mirror "http://127.0.0.1:$tport/import/big" "$work/t-clone"; r[tessera.clone]=$(since "$s")
r[tessera.rss]=$(awk '/VmHWM/ {print $2}' /proc/$tpid/status)
r[tessera.bytes]=$(cat "$work/t-clone"/objects/pack/*.pack | wc -c)

if diff <(git -C "$src" for-each-ref --format='%(objectname) %(refname)' refs/heads refs/tags) \
        <(git -C "$work/t-clone" for-each-ref --format='%(objectname) %(refname)') >/dev/null; then
  echo "refs: identical ($n_refs)"
else
  echo "refs: DIFFER"; exit 1
fi
git -C "$work/t-clone" fsck --no-progress 2>&1 | grep -v '^warning' | head -n 5 || true
git -C "$work/t-clone" fsck --no-progress >/dev/null 2>&1 && echo "git fsck on tessera's clone: ok" || { echo "git fsck on tessera's clone: FAILED"; exit 1; }

python3 - <<PY
r = {$(for k in "${!r[@]}"; do echo "'$k': '${r[$k]}',"; done)}
def f(k):
    v = r[k]
    return None if v == "refused" else float(v)
def row(label, t, g, unit=""):
    tv, gv = f(t), f(g)
    ratio = f"{tv / gv:6.2f}" if tv is not None and gv else "     -"
    show = lambda v: "refused" if v is None else (f"{v:.2f}{unit}" if unit != "B" else f"{int(v)}")
    print(f"{label:42}{show(gv):>14}{show(tv):>14}{ratio:>8}")
print(f"{'':42}{'C git':>14}{'tessera':>14}{'ratio':>8}")
row("push, C git default config (s)", "tessera.push", "git_default.push")
row("push, C git receive.fsckObjects=true (s)", "tessera.push", "git_fsck.push")
row("mirror clone (s)", "tessera.clone", "git.clone")
row("clone pack bytes", "tessera.bytes", "git.bytes", "B")
print(f"{'serving peak RSS during clone (MiB)':42}{int(r['git.rss'])/1024:14.1f}{int(r['tessera.rss'])/1024:14.1f}{int(r['tessera.rss'])/int(r['git.rss']):8.2f}")
print(f"tessera peak RSS during the push: {int(r['tessera.push_rss'])/1024:.1f} MiB")
PY
