#!/usr/bin/env bash
# Git LFS transfer throughput: one object of SIZE_MB (default 1024) of
# incompressible bytes uploaded to and downloaded from tessera's LFS
# endpoints with curl, against the same file PUT to and GET from a plain
# static file server on the same HTTP stack (hyper through axum on tokio:
# `cargo xtask static-serve`), in the same run. Prints MB/s of each, the
# ratios, and tessera's peak RSS.
#
# Usage: bench/lfs/run.sh [SIZE_MB] [RUNS]      (default 1024 3; best of RUNS)
# tessera stores the object as a file (the default storage); an upload
# also hashes it (SHA-256) and checks size and hash before keeping it,
# which the reference does not do.
set -euo pipefail
size_mb=${1:-1024}
runs=${2:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cargo build --release -q -p tessera -p xtask --manifest-path "$root/Cargo.toml"
bin="$target/release/tessera"

head -c $((size_mb * 1024 * 1024)) /dev/urandom > "$work/base"

# tessera, with an import repository to upload to.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
for _ in $(seq 1 50); do grep -q listening "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
"$bin" user add bench --admin --init --data-dir "$work/data" >/dev/null
token=$("$bin" token create --user bench --data-dir "$work/data" | awk 'END { print $NF }')
git init -q -b main "$work/src"
echo bench > "$work/src/README"
git -C "$work/src" add -A
git -C "$work/src" -c user.name=b -c user.email=b@x commit -qm init
git -C "$work/src" push -q "http://b:$token@127.0.0.1:$port/import/bench" main
lfs="http://127.0.0.1:$port/import/bench/info/lfs/objects"

# The reference server.
mkdir "$work/static"
"$target/release/xtask" static-serve "$work/static" 127.0.0.1:0 > "$work/static.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 50); do grep -q listening "$work/static.log" 2>/dev/null && break; sleep 0.1; done
static=$(awk '/listening/ { print $3 }' "$work/static.log")

# Seconds of one curl transfer, as curl measures it.
put() { curl -s -f -o /dev/null -w '%{time_total}\n' -T "$@"; }
get() { curl -s -f -o /dev/null -w '%{time_total}\n' "$@"; }
best() { sort -g | head -1; }

rss_start=$(awk '/VmHWM/ {print $2}' /proc/$server_pid/status)
: > "$work/up"; : > "$work/down"; : > "$work/ref_up"; : > "$work/ref_down"
for i in $(seq 1 "$runs"); do
  # A new object each run (a stored object is not uploaded again).
  { printf '%s' "$i"; cat "$work/base"; } > "$work/object"
  oid=$(sha256sum "$work/object" | cut -d' ' -f1)
  put "$work/object" -u "b:$token" -H 'Content-Type: application/octet-stream' "$lfs/$oid" >> "$work/up"
  rss_up=$(awk '/VmHWM/ {print $2}' /proc/$server_pid/status)
  get "$lfs/$oid" >> "$work/down"
  put "$work/object" "$static/object$i" >> "$work/ref_up"
  get "$static/object$i" >> "$work/ref_down"
  curl -s -f "$lfs/$oid" | cmp -s - "$work/object"
  cmp -s "$work/object" "$work/static/object$i"
  rm -f "$work/static/object$i"
done
rss_down=$(awk '/VmHWM/ {print $2}' /proc/$server_pid/status)
bytes=$(stat -c %s "$work/object")
up_t=$(best < "$work/up"); down_t=$(best < "$work/down")
ref_up_t=$(best < "$work/ref_up"); ref_down_t=$(best < "$work/ref_down")

mbps() { awk -v b="$bytes" -v t="$1" 'BEGIN { printf "%.0f", b / 1048576 / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "object: $bytes bytes, best of $runs"
printf '%-9s %12s %12s %8s\n' "" "tessera" "static" "ratio"
printf '%-9s %8s MB/s %7s MB/s %7sx\n' upload "$(mbps "$up_t")" "$(mbps "$ref_up_t")" "$(ratio "$up_t" "$ref_up_t")"
printf '%-9s %8s MB/s %7s MB/s %7sx\n' download "$(mbps "$down_t")" "$(mbps "$ref_down_t")" "$(ratio "$down_t" "$ref_down_t")"
echo "tessera peak RSS: ${rss_start} KiB at start, ${rss_up} KiB after the uploads, ${rss_down} KiB after the downloads"
echo "(ratio: tessera's time over the static server's; below 1 is faster)"
