#!/usr/bin/env bash
# tessera vs C git's `git http-backend` (behind lighttpd's CGI), same
# repository, same machine, same run. Measures, median of 3 runs each:
#   - push time (`git push --mirror` into an empty repository),
#   - mirror clone time and the bytes of the pack received,
#   - incremental fetch time and pack bytes after 10 new commits,
# and prints the ratios tessera / C git. Also tessera's peak RSS.
#
# Usage: bench/smart-http/run.sh [REPO]   (default: a generated repository
# of ~2000 commits over ~3000 text files, so deltas matter; any local git
# repository can be given instead, e.g. a clone of ripgrep).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -n | sed -n 2p; }
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null

src=${1:-}
if [ -z "$src" ]; then
  src="$work/src"
  git init -q -b main "$src"
  python3 - <<'PY' | git -C "$src" fast-import --quiet
import random, sys
rnd = random.Random(7)
out = sys.stdout.buffer
words = [w.strip() for w in open("/usr/share/dict/words")] if __import__("os").path.exists("/usr/share/dict/words") else [f"word{i}" for i in range(5000)]
files = {f"src/m{d:02d}/file{f:03d}.rs": [" ".join(rnd.choice(words) for _ in range(8)) for _ in range(40)] for d in range(30) for f in range(100)}
names = sorted(files)
t = 1_600_000_000
def commit(msg, paths):
    global t
    t += 3600
    out.write(b"commit refs/heads/main\ncommitter Bench <b@example.com> %d +0000\n" % t)
    m = msg.encode(); out.write(b"data %d\n%s\n" % (len(m), m))
    for p in paths:
        data = ("\n".join(files[p]) + "\n").encode()
        out.write(b"M 100644 inline %s\ndata %d\n" % (p.encode(), len(data))); out.write(data); out.write(b"\n")
commit("initial", names)
for c in range(1, 2000):
    touched = rnd.sample(names, rnd.randint(1, 4))
    for p in touched:
        lines = files[p]
        i = rnd.randrange(len(lines))
        lines[i] = " ".join(rnd.choice(words) for _ in range(8))
        if rnd.random() < 0.3:
            lines.insert(i, " ".join(rnd.choice(words) for _ in range(6)))
    commit(f"change {c}", touched)
    if c % 500 == 0:
        out.write(b"reset refs/tags/v%d\nfrom refs/heads/main\n\n" % (c // 500))
PY
  git -C "$src" gc -q --aggressive 2>/dev/null || git -C "$src" repack -adq
fi
echo "repository: $(git -C "$src" rev-list --all --count) commits, $(git -C "$src" count-objects -v | awk '/size-pack/ {print $2}') KiB packed"

# --- C git behind lighttpd
gport=$(free_port)
mkdir -p "$work/gitroot"
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
# --- tessera
tport=$(free_port)
"$bin" serve --data-dir "$work/tdata" --listen "127.0.0.1:$tport" > "$work/tessera.log" 2>&1 & tpid=$!; pids+=($tpid)
for _ in $(seq 1 100); do grep -q listening "$work/tessera.log" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
"$bin" user add bench --admin --init --data-dir "$work/tdata" >/dev/null
token=$("$bin" token create --user bench --data-dir "$work/tdata" | awk 'END { print $NF }')

pack_bytes() { cat "$1"/objects/pack/*.pack 2>/dev/null | wc -c; }

declare -A result
measure() { # $1 = label, $2 = push URL for repo i, $3 = read URL for repo i
  local label=$1 push_url=$2 read_url=$3
  local pushes=() clones=() fetches=() clone_bytes=0 fetch_bytes=0
  for i in 1 2 3; do
    local s e
    [ "$label" = git ] && git init -q --bare -b main "$work/gitroot/r$i.git" && git -C "$work/gitroot/r$i.git" config http.receivepack true
    s=$(now); git -C "$src" push -q --mirror "${push_url//@N@/$i}" 2>/dev/null; e=$(now)
    pushes+=("$(python3 -c "print($e - $s)")")
    rm -rf "$work/m$label$i"
    s=$(now); git clone -q --mirror "${read_url//@N@/$i}" "$work/m$label$i"; e=$(now)
    clones+=("$(python3 -c "print($e - $s)")")
    clone_bytes=$(pack_bytes "$work/m$label$i")
  done
  # Incremental fetch: 10 new commits pushed to each repository.
  rm -rf "$work/w$label" && git clone -q "${read_url//@N@/1}" "$work/w$label"
  for i in 1 2 3; do
    for c in $(seq 1 10); do
      f=$(git -C "$work/w$label" ls-files | sed -n "$((c * 37 + i))p")
      echo "edit $i $c" >> "$work/w$label/$f"
      git -C "$work/w$label" -c user.name=b -c user.email=b@x commit -qam "incremental $i $c"
    done
    git -C "$work/w$label" push -q "${push_url//@N@/$i}" HEAD:main 2>/dev/null
    local before s e
    before=$(pack_bytes "$work/m$label$i")
    s=$(now); git -C "$work/m$label$i" -c transfer.unpackLimit=1 fetch -q origin; e=$(now)
    fetches+=("$(python3 -c "print($e - $s)")")
    fetch_bytes=$(( $(pack_bytes "$work/m$label$i") - before ))
  done
  result[$label.push]=$(printf '%s\n' "${pushes[@]}" | median)
  result[$label.clone]=$(printf '%s\n' "${clones[@]}" | median)
  result[$label.fetch]=$(printf '%s\n' "${fetches[@]}" | median)
  result[$label.clone_bytes]=$clone_bytes
  result[$label.fetch_bytes]=$fetch_bytes
}
measure git "http://127.0.0.1:$gport/git/r@N@.git" "http://127.0.0.1:$gport/git/r@N@.git"
measure tessera "http://b:$token@127.0.0.1:$tport/import/r@N@" "http://127.0.0.1:$tport/import/r@N@"

python3 - <<PY
r = {k: float(v) for k, v in {
$(for k in "${!result[@]}"; do echo "  '$k': '${result[$k]}',"; done)
}.items()}
rows = [("push --mirror (s)", "push"), ("clone --mirror (s)", "clone"), ("incremental fetch (s)", "fetch"),
        ("clone pack bytes", "clone_bytes"), ("fetch pack bytes", "fetch_bytes")]
print(f"{'':24}{'C git':>14}{'tessera':>14}{'ratio':>9}")
for label, key in rows:
    g, t = r[f"git.{key}"], r[f"tessera.{key}"]
    fmt = (lambda v: f"{v:14.3f}") if "bytes" not in key else (lambda v: f"{int(v):14d}")
    print(f"{label:24}{fmt(g)}{fmt(t)}{t / g if g else float('nan'):9.2f}")
PY
echo "tessera peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$tpid/status)"
