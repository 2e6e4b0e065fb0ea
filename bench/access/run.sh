#!/usr/bin/env bash
# What the permission check costs a fetch: the mean time of the ref
# advertisement (`info/refs?service=git-upload-pack`, where every fetch
# starts and where the check runs) of one repository, with no access rules
# and with 1,000, for an anonymous caller and for a signed-in user with
# rules. One curl process sends N requests over one connection, so process
# start-up is not measured.
#
#   bench/access/run.sh [N]        (TESSERA_BIN defaults to target/release/tessera)
set -euo pipefail
N=${1:-2000}
BIN=$(realpath "${TESSERA_BIN:-target/release/tessera}")
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"

"$BIN" user add admin --admin --init --data-dir data >/dev/null
"$BIN" user add alice --data-dir data >/dev/null
admin=$("$BIN" token create --user admin --scope admin --data-dir data | awk 'END { print $NF }')
alice=$("$BIN" token create --user alice --scope read --data-dir data | awk 'END { print $NF }')
"$BIN" serve --listen 127.0.0.1:0 --data-dir data >serve.out 2>serve.log &
pid=$!
for _ in $(seq 1 100); do grep -q http:// serve.out 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' serve.out)

git init -q -b main src
(cd src && for i in $(seq 1 50); do echo "$i" >"f$i"; git add "f$i"; git -c user.name=b -c user.email=b@x commit -qm "c$i"; done)
git -C src push -q "${url/http:\/\//http://x:$admin@}/import/bench" main

# Mean milliseconds per advertisement, $1 = extra curl arguments.
measure() {
  local urls=()
  for _ in $(seq 1 "$N"); do urls+=(-o /dev/null "$url/import/bench/info/refs?service=git-upload-pack"); done
  curl -s "$@" -w '%{time_total}\n' "${urls[@]}" | awk '{ s += $1 } END { printf "%.3f", s / NR * 1000 }'
}

measure >/dev/null # warm up: snapshot loaded, connection pool filled
anon0=$(measure)
alice0=$(measure -u "x:$alice")

# 1,000 rules over 1,000 users and paths, alice's among them (written in
# SQL directly: the CLI would take a process per rule).
{
  echo "BEGIN;"
  for i in $(seq 1 999); do
    echo "INSERT INTO users (name, is_admin, auth_source, created_at) VALUES ('u$i', 0, 'local', 0);"
    echo "INSERT INTO access_rules (path, subject, level, created_at) SELECT '/projects/p$i/sub', 'user:' || id, 'write', 0 FROM users WHERE name = 'u$i';"
  done
  echo "INSERT INTO access_rules (path, subject, level, created_at) SELECT '/import', 'user:' || id, 'read', 0 FROM users WHERE name = 'alice';"
  echo "UPDATE access_version SET version = version + 1;"
  echo "COMMIT;"
} | sqlite3 data/tessera.db
rules=$(sqlite3 data/tessera.db "SELECT COUNT(*) FROM access_rules")

measure >/dev/null
anon1=$(measure)
alice1=$(measure -u "x:$alice")

printf 'rules\tanonymous ms\tsigned-in ms\n'
printf '0\t%s\t%s\n' "$anon0" "$alice0"
printf '%s\t%s\t%s\n' "$rules" "$anon1" "$alice1"
awk -v a0="$anon0" -v a1="$anon1" -v b0="$alice0" -v b1="$alice1" \
  'BEGIN { printf "added by %s rules: anonymous %+.3f ms, signed-in %+.3f ms per fetch\n", ARGV[1], a1 - a0, b1 - b0 }' "$rules"
