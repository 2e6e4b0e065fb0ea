#!/usr/bin/env bash
# Data bridge against each engine's own CSV tools, same table, same run
# (SQLite, PostgreSQL, MySQL/MariaDB, plus Dolt sync). On SQLite:
#   export: `tessera data export` (chunking, hashing, metadata and the git
#           commit included) vs `sqlite3 -csv db 'SELECT * FROM t'`;
#   import: `tessera data import` vs `sqlite3 .import --csv` into a table
#           created with the same DDL;
# plus tessera's peak RSS for each, and what changes in git after updating
# one row and exporting again.
# Usage: bench/bridge/run.sh [ROWS]   (default 3370000, about 360 MB of CSV)
set -euo pipefail
rows=${1:-3370000}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p tessera --manifest-path "$root/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$root/target}/release/tessera"
command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq sqlite3 >/dev/null; }
now() { date +%s.%N; }
peak() { awk '/Maximum resident/ {printf "%.0f MiB", $6/1024}' "$1"; }
ddl="CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, score REAL, created TEXT, note TEXT)"
sqlite3 "$work/src.db" "$ddl; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
  INSERT INTO t SELECT i, 'user ' || i, 'user' || i || '@example.com', (i % 1000) / 7.0,
  datetime(1600000000 + i * 37, 'unixepoch'), CASE WHEN i % 5 = 0 THEN NULL ELSE 'a note about row ' || i || ', with a comma' END FROM n;"
echo "table: $rows rows, $(du -m "$work/src.db" | cut -f1) MB database"

s=$(now); sqlite3 -csv "$work/src.db" "SELECT * FROM t" > "$work/native.csv"; e=$(now)
t_native_export=$(python3 -c "print($e - $s)")
s=$(now); /usr/bin/time -v "$bin" data export "$work/src.db" "$work/repo" 2> "$work/export.time" >/dev/null; e=$(now)
t_export=$(python3 -c "print($e - $s)")
# The same export into a bare repository: the data path alone, without
# checking the 374 MB of files out into a work tree (which the default,
# a work tree matching the new head, adds).
s=$(now); "$bin" data export "$work/src.db" "$work/bare.git" --bare >/dev/null; e=$(now)
t_export_bare=$(python3 -c "print($e - $s)")
csv_mb=$(du -m "$work/native.csv" | cut -f1)

sqlite3 "$work/native.db" "$ddl"
s=$(now); sqlite3 "$work/native.db" ".import --csv $work/native.csv t"; e=$(now)
t_native_import=$(python3 -c "print($e - $s)")
s=$(now); /usr/bin/time -v "$bin" data import "$work/repo" "$work/imported.db" 2> "$work/import.time" >/dev/null; e=$(now)
t_import=$(python3 -c "print($e - $s)")
"$bin" data verify "$work/imported.db" "$work/repo" > /dev/null

sqlite3 "$work/src.db" "UPDATE t SET note = 'changed' WHERE id = $((rows / 2))"
s=$(now); "$bin" data export "$work/src.db" "$work/repo" > /dev/null; e=$(now)
t_reexport=$(python3 -c "print($e - $s)")
changed=$(git -C "$work/repo" diff --name-only HEAD~1 HEAD -- data/ | wc -l)
# Sync: the first records the state, the timed one follows a one-row change.
"$bin" data sync "$work/src.db" "$work/repo" > /dev/null
sqlite3 "$work/src.db" "UPDATE t SET note = 'synced' WHERE id = $((rows / 3))"
s=$(now); "$bin" data sync "$work/src.db" "$work/repo" > /dev/null; e=$(now)
t_sync=$(python3 -c "print($e - $s)")
sync_changed=$(git -C "$work/repo" diff --name-only HEAD~1 HEAD -- data/ | wc -l)
changed_bytes=$(git -C "$work/repo" diff --name-only HEAD~1 HEAD -- data/ | while read -r f; do git -C "$work/repo" cat-file -s "HEAD:$f"; done | awk '{s += $1} END {print s + 0}')
n_chunks=$(git -C "$work/repo" ls-tree -r --name-only HEAD data/ | wc -l)

# PostgreSQL: the same rows, tessera vs COPY TO / COPY FROM.
pgdb="bridge_bench_$$"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $pgdb" -c "CREATE DATABASE $pgdb" -c "DROP DATABASE IF EXISTS ${pgdb}_in" -c "CREATE DATABASE ${pgdb}_in"
pg="psql -h 127.0.0.1 -U postgres -d $pgdb -qAt"
pg_ddl="CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, email text, score float8, created timestamp, note text)"
$pg -c "$pg_ddl" -c "\copy t FROM '$work/native.csv' WITH (FORMAT csv)"
s=$(now); $pg -c "COPY t TO STDOUT WITH (FORMAT csv)" > "$work/pg.csv"; e=$(now)
t_pg_native_export=$(python3 -c "print($e - $s)")
s=$(now); "$bin" data export "postgres://postgres@127.0.0.1:5432/$pgdb" "$work/pgrepo" > /dev/null; e=$(now)
t_pg_export=$(python3 -c "print($e - $s)")
s=$(now); "$bin" data export "postgres://postgres@127.0.0.1:5432/$pgdb" "$work/pgbare.git" --bare > /dev/null; e=$(now)
t_pg_export_bare=$(python3 -c "print($e - $s)")
"$bin" data sync "postgres://postgres@127.0.0.1:5432/$pgdb" "$work/pgrepo" > /dev/null 2>&1
$pg -c "UPDATE t SET note = 'synced' WHERE id = $((rows / 3))"
s=$(now); "$bin" data sync "postgres://postgres@127.0.0.1:5432/$pgdb" "$work/pgrepo" > /dev/null 2>&1; e=$(now)
t_pg_sync=$(python3 -c "print($e - $s)")
psql -h 127.0.0.1 -U postgres -d "${pgdb}_in" -qc "$pg_ddl"
s=$(now); psql -h 127.0.0.1 -U postgres -d "${pgdb}_in" -qc "\copy t FROM '$work/pg.csv' WITH (FORMAT csv)"; e=$(now)
t_pg_native_import=$(python3 -c "print($e - $s)")
psql -h 127.0.0.1 -U postgres -d "${pgdb}_in" -qc "DROP TABLE t"
s=$(now); "$bin" data import "$work/pgrepo" "postgres://postgres@127.0.0.1:5432/${pgdb}_in" > /dev/null; e=$(now)
t_pg_import=$(python3 -c "print($e - $s)")
"$bin" data verify "postgres://postgres@127.0.0.1:5432/${pgdb}_in" "$work/pgrepo" > /dev/null
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $pgdb" -c "DROP DATABASE ${pgdb}_in"

# MySQL/MariaDB: the same rows, tessera vs the server's own CSV writer and
# reader (SELECT ... INTO OUTFILE, LOAD DATA INFILE; files on this machine).
mydb="bridge_bench_$$"
my="mysql -h 127.0.0.1 -P 3306 -u root --local-infile=1"
my_ddl="CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT, score DOUBLE, created DATETIME, note TEXT) ENGINE = InnoDB"
my_csv="/tmp/tessera-bench-$$.csv"   # written by the server's user, so not under $work
$my -e "DROP DATABASE IF EXISTS $mydb; CREATE DATABASE $mydb; DROP DATABASE IF EXISTS ${mydb}_in; CREATE DATABASE ${mydb}_in"
$my "$mydb" -e "$my_ddl; LOAD DATA LOCAL INFILE '$work/native.csv' INTO TABLE t FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' (id, name, email, score, created, @note) SET note = NULLIF(@note, '')"
rm -f "$my_csv"
s=$(now); $my "$mydb" -e "SELECT * FROM t INTO OUTFILE '$my_csv' FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"'"; e=$(now)
t_my_native_export=$(python3 -c "print($e - $s)")
s=$(now); "$bin" data export "mysql://root@127.0.0.1:3306/$mydb" "$work/myrepo" > /dev/null; e=$(now)
t_my_export=$(python3 -c "print($e - $s)")
s=$(now); "$bin" data export "mysql://root@127.0.0.1:3306/$mydb" "$work/mybare.git" --bare > /dev/null; e=$(now)
t_my_export_bare=$(python3 -c "print($e - $s)")
$my "${mydb}_in" -e "$my_ddl"
s=$(now); $my "${mydb}_in" -e "LOAD DATA INFILE '$my_csv' INTO TABLE t FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"'"; e=$(now)
t_my_native_import=$(python3 -c "print($e - $s)")
$my "${mydb}_in" -e "DROP TABLE t"
s=$(now); /usr/bin/time -v "$bin" data import "$work/myrepo" "mysql://root@127.0.0.1:3306/${mydb}_in" 2> "$work/myimport.time" > /dev/null; e=$(now)
t_my_import=$(python3 -c "print($e - $s)")
"$bin" data verify "mysql://root@127.0.0.1:3306/${mydb}_in" "$work/myrepo" > /dev/null
$my -e "DROP DATABASE $mydb; DROP DATABASE ${mydb}_in"
rm -f "$my_csv"

# Dolt (doltlite): the same rows; sync after a one-row Dolt commit finds it
# with Dolt's own diff and re-reads one chunk.
python3 -c "import doltlite" 2>/dev/null || pip install -q doltlite
python3 - <<PY
import doltlite, sqlite3
c = sqlite3.connect("$work/dolt.db")
c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, score REAL, created TEXT, note TEXT)")
c.execute("ATTACH '$work/src.db' AS s")
c.execute("INSERT INTO t SELECT * FROM s.t")
c.commit()
c.execute("DETACH s")
c.execute("SELECT dolt_commit('-A', '-m', 'load')")
PY
s=$(now); "$bin" data export "$work/dolt.db" "$work/doltrepo" > /dev/null; e=$(now)
t_dolt_export=$(python3 -c "print($e - $s)")
"$bin" data sync "$work/dolt.db" "$work/doltrepo" > /dev/null
python3 -c "
import doltlite, sqlite3
c = sqlite3.connect('$work/dolt.db')
c.execute(\"UPDATE t SET note = 'synced' WHERE id = $((rows / 3))\")
c.commit()
c.execute(\"SELECT dolt_commit('-A', '-m', 'one row')\")"
s=$(now); "$bin" data sync "$work/dolt.db" "$work/doltrepo" > "$work/dolt-sync.out"; e=$(now)
t_dolt_sync=$(python3 -c "print($e - $s)")
grep -q "Dolt's diff" "$work/dolt-sync.out" || echo "warning: the Dolt sync did not use Dolt's diff"

python3 - <<PY
print(f"postgres export: tessera {$t_pg_export:.2f} s vs COPY TO {$t_pg_native_export:.2f} s, ratio {$t_pg_export / $t_pg_native_export:.2f}; --bare {$t_pg_export_bare:.2f} s, ratio {$t_pg_export_bare / $t_pg_native_export:.2f}")
print(f"postgres import: tessera {$t_pg_import:.2f} s vs COPY FROM {$t_pg_native_import:.2f} s, ratio {$t_pg_import / $t_pg_native_import:.2f}")
print(f"mysql export: tessera {$t_my_export:.2f} s vs SELECT INTO OUTFILE {$t_my_native_export:.2f} s, ratio {$t_my_export / $t_my_native_export:.2f}; --bare {$t_my_export_bare:.2f} s, ratio {$t_my_export_bare / $t_my_native_export:.2f}")
print(f"mysql import: tessera {$t_my_import:.2f} s vs LOAD DATA INFILE {$t_my_native_import:.2f} s, ratio {$t_my_import / $t_my_native_import:.2f}  (peak RSS $(peak "$work/myimport.time"))")

print(f"CSV size: $csv_mb MB in $n_chunks chunk files")
print(f"export: tessera {$t_export:.2f} s vs sqlite3 -csv {$t_native_export:.2f} s, ratio {$t_export / $t_native_export:.2f}  (peak RSS $(peak "$work/export.time")); --bare {$t_export_bare:.2f} s, ratio {$t_export_bare / $t_native_export:.2f}")
print(f"import: tessera {$t_import:.2f} s vs sqlite3 .import {$t_native_import:.2f} s, ratio {$t_import / $t_native_import:.2f}  (peak RSS $(peak "$work/import.time"))")
print(f"sync after one changed row: {$t_sync:.2f} s vs full export {$t_export:.2f} s, ratio {$t_sync / $t_export:.2f} ($sync_changed chunk file(s) changed)")
print(f"dolt sync after one changed row: {$t_dolt_sync:.2f} s vs full export {$t_dolt_export:.2f} s, ratio {$t_dolt_sync / $t_dolt_export:.2f} (target <= 0.2)")
print(f"postgres sync after one changed row: {$t_pg_sync:.2f} s vs full export {$t_pg_export:.2f} s, ratio {$t_pg_sync / $t_pg_export:.2f}")
print(f"after updating one row: re-export {$t_reexport:.2f} s, $changed chunk file(s) changed, $changed_bytes bytes of new blobs")
PY
