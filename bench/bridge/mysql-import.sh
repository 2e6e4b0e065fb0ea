#!/usr/bin/env bash
# MySQL/MariaDB import alone, against the server's own reader, same table,
# same run: `tessera data import` (chunks streamed through LOAD DATA LOCAL
# INFILE), the same import with TESSERA_MYSQL_INSERT=1 (batched INSERTs, the
# path before LOAD DATA and the fallback for a server with local_infile off),
# and `LOAD DATA INFILE` of the server's own CSV of the table (a file on this
# machine). Each is run RUNS times (default 3), alternating; the minimum is
# reported with the ratio to LOAD DATA INFILE. The table is bench/bridge/run.sh's.
# Usage: bench/bridge/mysql-import.sh [ROWS] [RUNS]   (default 1000000 rows)
set -euo pipefail
rows=${1:-1000000}
runs=${2:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f "$my_csv"' EXIT
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -q -p tessera --manifest-path "$root/Cargo.toml"
bin="$target/release/tessera"
now() { date +%s.%N; }
mydb="bridge_bench_$$"
my="mysql -h 127.0.0.1 -P 3306 -u root"
my_ddl="CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT, score DOUBLE, created DATETIME, note TEXT) ENGINE = InnoDB"
my_csv="/tmp/tessera-bench-$$.csv"   # written by the server's user, so not under $work
$my -e "DROP DATABASE IF EXISTS $mydb; CREATE DATABASE $mydb"
python3 - "$rows" "$work/rows.tsv" <<'PY'
import sys, datetime
rows, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(1, rows + 1):
        created = datetime.datetime.fromtimestamp(1600000000 + i * 37, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        note = "\\N" if i % 5 == 0 else f"a note about row {i}, with a comma"
        f.write(f"{i}\tuser {i}\tuser{i}@example.com\t{(i % 1000) / 7.0!r}\t{created}\t{note}\n")
PY
$my --local-infile=1 "$mydb" -e "$my_ddl; LOAD DATA LOCAL INFILE '$work/rows.tsv' INTO TABLE t"
$my "$mydb" -e "SELECT * FROM t INTO OUTFILE '$my_csv' FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"'"
"$bin" data export "mysql://root@127.0.0.1:3306/$mydb" "$work/repo" > /dev/null
echo "table: $rows rows, $(du -m "$my_csv" | cut -f1) MB of CSV, $(git -C "$work/repo" ls-tree -r --name-only HEAD data/ | wc -l) chunk(s)"
best() { python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" "$@"; }
native=(); infile=(); insert=()
for _ in $(seq "$runs"); do
  $my -e "DROP DATABASE IF EXISTS ${mydb}_in; CREATE DATABASE ${mydb}_in"
  $my "${mydb}_in" -e "$my_ddl"
  s=$(now); $my "${mydb}_in" -e "LOAD DATA INFILE '$my_csv' INTO TABLE t FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"'"; e=$(now)
  native+=("$(python3 -c "print($e - $s)")")
  $my -e "DROP DATABASE ${mydb}_in; CREATE DATABASE ${mydb}_in"
  s=$(now); "$bin" data import "$work/repo" "mysql://root@127.0.0.1:3306/${mydb}_in" > /dev/null; e=$(now)
  infile+=("$(python3 -c "print($e - $s)")")
  "$bin" data verify "mysql://root@127.0.0.1:3306/${mydb}_in" "$work/repo" > /dev/null
  $my -e "DROP DATABASE ${mydb}_in; CREATE DATABASE ${mydb}_in"
  s=$(now); TESSERA_MYSQL_INSERT=1 "$bin" data import "$work/repo" "mysql://root@127.0.0.1:3306/${mydb}_in" > /dev/null; e=$(now)
  insert+=("$(python3 -c "print($e - $s)")")
done
$my -e "DROP DATABASE $mydb; DROP DATABASE IF EXISTS ${mydb}_in"
n=$(best "${native[@]}"); l=$(best "${infile[@]}"); i=$(best "${insert[@]}")
python3 -c "
n, l, i = $n, $l, $i
print(f'LOAD DATA INFILE (server, native): {n:.2f} s')
print(f'tessera import, LOAD DATA LOCAL:   {l:.2f} s, ratio {l / n:.2f}')
print(f'tessera import, INSERT batches:    {i:.2f} s, ratio {i / n:.2f}')
"
