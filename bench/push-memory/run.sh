#!/usr/bin/env bash
# Measures tessera's peak memory while receiving a large push, against the
# size of the pack pushed: pushes must stream to disk, so the server's peak
# RSS (VmHWM) must stay far below the pack size.
#
# Usage: bench/push-memory/run.sh [SIZE_MB]   (default 1024)
# Builds the release binary, makes a repository of SIZE_MB of incompressible
# data in 64 MB files, pushes it to a fresh tessera on SQLite, and prints
# pack bytes, push wall time and the server's peak RSS, plus the same push
# into C git's own receive-pack (git push to a local bare repository) for
# wall time.
set -euo pipefail
size_mb=${1:-1024}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -q -p tessera --manifest-path "$root/Cargo.toml"
bin="$root/target/release/tessera"

git init -q -b main "$work/src"
n_files=$(( (size_mb + 63) / 64 ))
for i in $(seq 1 "$n_files"); do
  head -c $((64 * 1024 * 1024)) /dev/urandom > "$work/src/blob$i.bin"
done
git -C "$work/src" add -A
git -C "$work/src" -c user.name=b -c user.email=b@x commit -qm big
pack_bytes=$(git -C "$work/src" pack-objects --stdout --revs <<< main 2>/dev/null | wc -c)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 50); do grep -q listening "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
"$bin" user add bench --admin --init --data-dir "$work/data" >/dev/null
token=$("$bin" token create --user bench --data-dir "$work/data" | awk 'END { print $NF }')
rss_before=$(awk '/VmHWM/ {print $2}' /proc/$server_pid/status)

start=$(date +%s.%N)
git -C "$work/src" push -q "http://b:$token@127.0.0.1:$port/import/big" main
end=$(date +%s.%N)
rss_peak=$(awk '/VmHWM/ {print $2}' /proc/$server_pid/status)

git init -q --bare "$work/ref.git"
rstart=$(date +%s.%N)
git -C "$work/src" push -q "$work/ref.git" main
rend=$(date +%s.%N)

python3 - "$pack_bytes" "$start" "$end" "$rss_before" "$rss_peak" "$rstart" "$rend" <<'PY'
import sys
pack, s, e, before, peak, rs, re_ = sys.argv[1:]
pack = int(pack); t = float(e) - float(s); rt = float(re_) - float(rs)
peak_mb = int(peak) / 1024
print(f"pack bytes pushed        {pack / 2**20:10.1f} MiB")
print(f"tessera push wall time   {t:10.2f} s")
print(f"C git local push time    {rt:10.2f} s   (ratio {t / rt:.2f}x)")
print(f"tessera RSS before push  {int(before) / 1024:10.1f} MiB")
print(f"tessera peak RSS (VmHWM) {peak_mb:10.1f} MiB   ({peak_mb / (pack / 2**20) * 100:.1f}% of the pack)")
PY
