//! MySQL and MariaDB as a source and a target. Values travel as text: each
//! column is selected as `CAST(... AS CHAR)` (binary and BIT columns as
//! `\x` + hex, FLOAT widened to DOUBLE so its shortest text is exact),
//! in a session on UTC so TIMESTAMPs do not shift; the DDL is
//! `SHOW CREATE TABLE`, which also carries the AUTO_INCREMENT position.

use futures::TryStreamExt;
use sqlx::mysql::MySqlConnection;
use sqlx::{ConnectOptions, Connection, Executor, Row};

use tessera_bridge::csv::Cell;
use tessera_bridge::engine::Error;
use tessera_bridge::engine::{cells_of, ChunkRows, Loader, Shape, Source, Target};
use tessera_bridge::import::insert_values;
use tessera_bridge::layout::{Column, TableMeta};
use tessera_bridge::schema;
use tessera_bridge::sync::{self, Dialect};
use tessera_bridge::value::{Affinity, Value};

pub struct Mysql {
    rt: tokio::runtime::Runtime,
    conn: MySqlConnection,
    url: String,
}

fn db(e: sqlx::Error) -> Error {
    Error::driver("MySQL", e)
}

pub fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

fn is_binary(data_type: &str) -> bool {
    matches!(data_type, "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob")
}

/// The SELECT expression that yields a column's exact text.
fn select_expr(col: &Column) -> String {
    let q = quote(&col.name);
    if col.binary {
        format!("CONCAT('\\\\x', LOWER(HEX({q})))")
    } else if is_bit(col) {
        // BIT values as unsigned integers: HEX would drop leading zeros.
        format!("CAST({q} + 0 AS CHAR)")
    } else if col.declared_type.starts_with("float") {
        format!("CAST(CAST({q} AS DOUBLE) AS CHAR)")
    } else if ["char", "varchar", "tinytext", "text", "mediumtext", "longtext"]
        .iter()
        .any(|t| col.declared_type == *t || col.declared_type.starts_with(&format!("{t}(")))
    {
        // Already text, sent in the session's utf8mb4: a CAST would only
        // cost the server a copy per value.
        q
    } else {
        format!("CAST({q} AS CHAR)")
    }
}

impl Mysql {
    pub fn connect(url: &str) -> Result<Mysql, Error> {
        let url = url.replacen("mariadb://", "mysql://", 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::driver("starting a runtime", e))?;
        let mut conn =
            rt.block_on(async { quiet(url.parse::<sqlx::mysql::MySqlConnectOptions>()?).connect().await }).map_err(
                |e| Error::driver(format!("cannot connect to {}", tessera_bridge::git::redact_url(&url)), e),
            )?;
        rt.block_on(conn.execute(
            "SET time_zone = '+00:00', NAMES utf8mb4, SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')",
        ))
        .map_err(db)?;
        // Imports run DDL whose string literals and quoted names were
        // checked by sqlparser's MySQL tokenizer, which reads backslash
        // escapes and `"..."` as strings: the session must read them alike.
        let mode: String =
            rt.block_on(sqlx::query_scalar("SELECT @@SESSION.sql_mode").fetch_one(&mut conn)).map_err(db)?;
        let mode: Vec<&str> =
            mode.split(',').filter(|m| !matches!(*m, "NO_BACKSLASH_ESCAPES" | "ANSI_QUOTES" | "ANSI" | "")).collect();
        rt.block_on(sqlx::query("SET SESSION sql_mode = ?").bind(mode.join(",")).execute(&mut conn)).map_err(db)?;
        Ok(Mysql { rt, conn, url })
    }

    pub fn table_exists(&mut self, table: &str) -> Result<bool, Error> {
        let Mysql { rt, conn, .. } = self;
        let row = rt
            .block_on(
                sqlx::query(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
                )
                .bind(table)
                .fetch_one(&mut *conn),
            )
            .map_err(db)?;
        Ok(row.try_get::<i64, _>(0).map_err(db)? > 0)
    }

    /// The rows of `table` as cells, in `order`.
    fn rows(
        &mut self,
        table: &str,
        columns: &[Column],
        order: &[String],
        each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let exprs: Vec<String> = columns.iter().map(select_expr).collect();
        let order: Vec<String> = order.iter().map(|c| quote(c)).collect();
        let mut sql = format!("SELECT {} FROM {}", exprs.join(", "), quote(table));
        if !order.is_empty() {
            sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
        }
        let Mysql { rt, conn, .. } = self;
        rt.block_on(async {
            let mut stream = sqlx::raw_sql(&sql).fetch(&mut *conn);
            while let Some(row) = stream.try_next().await.map_err(db)? {
                let mut cells = Vec::with_capacity(columns.len());
                for i in 0..columns.len() {
                    let cell: Option<String> = match row.try_get::<Option<String>, _>(i) {
                        Ok(v) => v,
                        Err(_) => row
                            .try_get::<Option<Vec<u8>>, _>(i)
                            .map_err(db)?
                            .map(|b| String::from_utf8_lossy(&b).into_owned()),
                    };
                    cells.push(cell);
                }
                each(&cells)?;
            }
            Ok(())
        })
    }
}

impl Source for Mysql {
    fn engine(&self) -> &'static str {
        "mysql"
    }

    fn tables(&mut self) -> Result<Vec<String>, Error> {
        let Mysql { rt, conn, .. } = self;
        let rows = rt
            .block_on(
                sqlx::query("SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name")
                    .fetch_all(&mut *conn),
            )
            .map_err(db)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db)).collect()
    }

    fn describe(&mut self, table: &str) -> Result<Shape, Error> {
        if !self.table_exists(table)? {
            return Err(Error::UnknownTable(table.to_string()));
        }
        let Mysql { rt, conn, .. } = self;
        let cols = rt
            .block_on(
                sqlx::query(
                    "SELECT CAST(column_name AS CHAR), CAST(column_type AS CHAR), is_nullable = 'NO', CAST(column_default AS CHAR), CAST(data_type AS CHAR), CAST(extra AS CHAR) \
                     FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(&mut *conn),
            )
            .map_err(db)?;
        let mut columns = Vec::new();
        let mut autoincrement = false;
        for r in &cols {
            let data_type: String = r.try_get(4).map_err(db)?;
            let extra: String = r.try_get::<Option<String>, _>(5).map_err(db)?.unwrap_or_default();
            autoincrement |= extra.contains("auto_increment");
            columns.push(Column {
                name: r.try_get(0).map_err(db)?,
                declared_type: r.try_get(1).map_err(db)?,
                affinity: Affinity::Text,
                not_null: r.try_get::<i64, _>(2).map_err(db)? != 0,
                default: r.try_get(3).map_err(db)?,
                binary: is_binary(&data_type),
            });
        }
        let pk = rt
            .block_on(
                sqlx::query(
                    "SELECT CAST(column_name AS CHAR) FROM information_schema.key_column_usage \
                     WHERE table_schema = DATABASE() AND table_name = ? AND constraint_name = 'PRIMARY' ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(&mut *conn),
            )
            .map_err(db)?;
        let primary_key: Vec<String> =
            pk.iter().map(|r| r.try_get::<String, _>(0).map_err(db)).collect::<Result<_, _>>()?;
        let create = rt
            .block_on(sqlx::raw_sql(&format!("SHOW CREATE TABLE {}", quote(table))).fetch_one(&mut *conn))
            .map_err(db)?;
        let create_sql: String = match create.try_get::<String, _>(1) {
            Ok(s) => s,
            Err(_) => String::from_utf8_lossy(&create.try_get::<Vec<u8>, _>(1).map_err(db)?).into_owned(),
        };
        Ok(Shape {
            name: table.to_string(),
            columns,
            primary_key,
            autoincrement,
            autoincrement_seq: None,
            order_first: None,
            create_sql,
            post_sql: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
        })
    }

    fn divisor(&mut self, shape: &Shape, target_bytes: u64) -> Result<u64, Error> {
        let Mysql { rt, conn, .. } = self;
        let row = rt
            .block_on(
                sqlx::query("SELECT CAST(COALESCE(avg_row_length, 64) AS SIGNED) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?")
                    .bind(&shape.name)
                    .fetch_one(&mut *conn),
            )
            .map_err(db)?;
        let avg: i64 = row.try_get(0).map_err(db)?;
        Ok(target_bytes / (avg.max(16) as u64))
    }

    fn scan(&mut self, shape: &Shape, each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>) -> Result<(), Error> {
        let columns = shape.columns.clone();
        self.rows(&shape.name, &columns, &shape.order(), each)
    }

    fn sync_state(&mut self, repo: &str, branch: &str) -> Result<Option<String>, Error> {
        if !self.table_exists(sync::STATE_TABLE)? {
            return Ok(None);
        }
        let Mysql { rt, conn, .. } = self;
        let sql = format!("SELECT commit_id FROM {} WHERE repo = ? AND branch = ?", quote(sync::STATE_TABLE));
        let row = rt.block_on(sqlx::query(&sql).bind(repo).bind(branch).fetch_optional(&mut *conn)).map_err(db)?;
        row.map(|r| r.try_get::<String, _>(0).map_err(db)).transpose()
    }

    fn apply(&mut self, changes: &[sync::TableChanges], state: Option<(&str, &str, &str)>) -> Result<(), Error> {
        let Mysql { rt, conn, .. } = self;
        if state.is_some() {
            // DDL commits implicitly in MySQL: create the state table first.
            rt.block_on(conn.execute(sync::state_ddl(quote).as_str())).map_err(db)?;
        }
        rt.block_on(async {
            let mut tx = conn.begin().await.map_err(db)?;
            sqlx::query("SET FOREIGN_KEY_CHECKS = 0").execute(&mut *tx).await.map_err(db)?;
            for stmt in sync::statements(&DIALECT, changes) {
                let mut q = sqlx::query(&stmt.sql);
                for (cell, col) in &stmt.params {
                    q = bind_cell(q, cell, col).map_err(|r| Error::Database(format!("column {}: {r}", col.name)))?;
                }
                q.execute(&mut *tx).await.map_err(|e| Error::driver(stmt.sql.clone(), e))?;
            }
            if let Some((repo, branch, commit)) = state {
                for (sql, values) in sync::state_statements(&DIALECT, repo, branch, commit) {
                    let mut q = sqlx::query(&sql);
                    for v in &values {
                        q = q.bind(v.clone());
                    }
                    q.execute(&mut *tx).await.map_err(db)?;
                }
            }
            sqlx::query("SET FOREIGN_KEY_CHECKS = 1").execute(&mut *tx).await.map_err(db)?;
            tx.commit().await.map_err(|e| Error::driver("committing the sync", e))
        })
    }
}

fn is_bit(col: &Column) -> bool {
    col.declared_type.starts_with("bit")
}

/// Binds one cell: `\x` hex for binary columns, text otherwise (MySQL
/// converts text to the column's type exactly).
fn bind_cell<'q>(
    q: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    cell: &'q Cell,
    col: &Column,
) -> Result<sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>, String> {
    Ok(match cell {
        None => q.bind(Option::<String>::None),
        Some(t) if is_bit(col) => q.bind(t.parse::<u64>().map_err(|_| format!("{t:?} is not a BIT value"))?),
        Some(t) if col.binary => {
            let hexdigits = t.strip_prefix("\\x").ok_or_else(|| format!("{t:?} is not \\x hex"))?;
            q.bind(hex::decode(hexdigits).map_err(|_| format!("{t:?} is not valid hex"))?)
        }
        Some(t) => q.bind(t.as_str()),
    })
}

/// How MySQL spells sync's statements.
const DIALECT: Dialect = Dialect {
    quote,
    param: |_, _| "?".into(),
    is: "<=>",
    delete_one: |table, cond| format!("DELETE FROM {table} WHERE {cond} LIMIT 1"),
};

/// Inserts a chunk's rows (as exported by MySQL) in multi-row INSERTs
/// inside the transaction the import opened; returns how many. Memory
/// holds one chunk's rows at most.
fn insert_chunk(rt: &tokio::runtime::Runtime, conn: &mut MySqlConnection, rows: ChunkRows<'_>) -> Result<u64, Error> {
    let meta = rows.meta;
    let file = rows.chunk.file.clone();
    let cols: Vec<String> = meta.columns.iter().map(|c| quote(&c.name)).collect();
    let row_marks = format!("({})", vec!["?"; cols.len()].join(", "));
    // As many rows per INSERT as placeholders allow (65535), up to a
    // bound that keeps statements a few MB.
    let per_insert = (60_000 / cols.len().max(1)).clamp(1, 2_000);
    let mut batch: Vec<(usize, Vec<Cell>)> = Vec::with_capacity(per_insert);
    let mut n = 0u64;
    rows.cells(&mut |line, cells| {
        batch.push((line, cells.to_vec()));
        if batch.len() == per_insert {
            rt.block_on(insert(conn, meta, &file, &cols, &row_marks, &batch))?;
            n += batch.len() as u64;
            batch.clear();
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        rt.block_on(insert(conn, meta, &file, &cols, &row_marks, &batch))?;
        n += batch.len() as u64;
    }
    Ok(n)
}

async fn insert(
    conn: &mut MySqlConnection,
    meta: &TableMeta,
    file: &str,
    cols: &[String],
    row_marks: &str,
    batch: &[(usize, Vec<Cell>)],
) -> Result<(), Error> {
    let damaged = |file: &str, line: usize, reason: String| Error::damaged(file, line, reason);
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        quote(&meta.name),
        cols.join(", "),
        vec![row_marks; batch.len()].join(", ")
    );
    let mut q = sqlx::query(&sql);
    for (line, cells) in batch {
        if cells.len() != meta.columns.len() {
            return Err(damaged(
                file,
                *line,
                format!("{} fields, the table has {} columns", cells.len(), meta.columns.len()),
            ));
        }
        for (cell, col) in cells.iter().zip(&meta.columns) {
            q = bind_cell(q, cell, col).map_err(|r| damaged(file, *line, format!("column {}: {r}", col.name)))?;
        }
    }
    if q.execute(&mut *conn).await.is_ok() {
        return Ok(());
    }
    let one = format!("INSERT INTO {} ({}) VALUES {row_marks}", quote(&meta.name), cols.join(", "));
    for (line, cells) in batch {
        let mut q = sqlx::query(&one);
        for (cell, col) in cells.iter().zip(&meta.columns) {
            q = bind_cell(q, cell, col).map_err(|r| damaged(file, *line, r))?;
        }
        if let Err(e) = q.execute(&mut *conn).await {
            let reason = e.as_database_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
            return Err(damaged(file, *line, reason));
        }
    }
    Err(Error::Database(format!("a batch of {} failed to insert but every row alone succeeded", meta.name)))
}

/// The second connection a resumable import loads chunks on: `LOAD DATA
/// LOCAL INFILE`, streamed from each chunk through the `mysql` driver's
/// local-infile handler (sqlx has none), with the chunk's progress record
/// in the same transaction. A chunk LOAD DATA does not take whole (a value
/// MySQL converts with a warning, a duplicate key: LOCAL makes those
/// warnings, not errors) is rolled back and loaded again by INSERT, which
/// names the file and line.
struct Infile {
    conn: mysql::Conn,
}

/// What the handler hands back from inside the driver.
#[derive(Default)]
struct Feed {
    rows: u64,
    error: Option<Error>,
}

impl Infile {
    /// `None` when the server refuses LOCAL INFILE, or this driver cannot
    /// connect as sqlx did (e.g. a URL option it does not know): imports
    /// then insert rows.
    fn connect(url: &str) -> Option<Infile> {
        use mysql::prelude::Queryable;
        let url = url.replacen("mariadb://", "mysql://", 1);
        let opened = mysql::Opts::from_url(&url).map_err(|e| e.to_string()).and_then(|opts| {
            let mut conn = mysql::Conn::new(opts).map_err(|e| e.to_string())?;
            let allowed: Option<i64> = conn.query_first("SELECT @@local_infile").map_err(|e| e.to_string())?;
            if allowed != Some(1) {
                return Err("the server has local_infile off".into());
            }
            // The session of `Mysql::connect`: UTC, utf8mb4, 0 kept in
            // AUTO_INCREMENT columns, backslash escapes read; and no
            // foreign-key checks while loading, as there.
            conn.query_drop(
                "SET time_zone = '+00:00', NAMES utf8mb4, FOREIGN_KEY_CHECKS = 0, \
                 SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')",
            )
            .map_err(|e| e.to_string())?;
            let mode: Option<String> = conn.query_first("SELECT @@SESSION.sql_mode").map_err(|e| e.to_string())?;
            let mode = mode.unwrap_or_default();
            let kept: Vec<&str> = mode
                .split(',')
                .filter(|m| !matches!(*m, "NO_BACKSLASH_ESCAPES" | "ANSI_QUOTES" | "ANSI" | ""))
                .collect();
            conn.exec_drop("SET SESSION sql_mode = ?", (kept.join(","),)).map_err(|e| e.to_string())?;
            Ok(conn)
        });
        match opened {
            Ok(conn) => Some(Infile { conn }),
            Err(e) => {
                tracing::warn!("MySQL import without LOAD DATA LOCAL INFILE (rows are inserted instead): {e}");
                None
            }
        }
    }
}

impl Loader for Infile {
    /// Loads a chunk from its stored bytes and runs `mark` (its progress
    /// record), in one transaction; `Ok(None)` when LOAD DATA did not take
    /// every row cleanly (nothing is left of it then).
    fn load_marked(&mut self, rows: &ChunkRows<'_>, mark: (&str, &[Value])) -> Result<Option<u64>, Error> {
        use mysql::prelude::Queryable;
        let feed = std::sync::Arc::new(std::sync::Mutex::new(Feed::default()));
        let handler_feed = feed.clone();
        let (meta, chunk) = (rows.meta.clone(), rows.chunk.clone());
        let (data, intact) = rows.stored();
        let mut stored = Some((data.to_vec(), intact));
        self.conn.set_local_infile_handler(Some(mysql::LocalInfileHandler::new(move |_, out| {
            let mut feed = handler_feed.lock().map_err(|_| std::io::Error::other("a loader thread panicked"))?;
            // The server asks once per LOAD DATA; a second request gets nothing.
            let Some((data, intact)) = stored.take() else { return Ok(()) };
            if let Err(e) = feed_chunk(&meta, &chunk, data, intact, out, &mut feed) {
                let shown = e.to_string();
                feed.error = Some(e);
                return Err(std::io::Error::other(shown));
            }
            Ok(())
        })));
        let sql = load_statement(rows.meta);
        let db = |e: mysql::Error| Error::driver("MySQL", e);
        self.conn.query_drop("START TRANSACTION").map_err(db)?;
        let loaded = self.conn.query_drop(&sql);
        let (affected, warnings) = (self.conn.affected_rows(), self.conn.warnings());
        let mut feed =
            std::mem::take(&mut *feed.lock().map_err(|_| Error::Database("a loader thread panicked".into()))?);
        self.conn.set_local_infile_handler(None);
        if let Some(e) = feed.error.take() {
            let _ = self.conn.query_drop("ROLLBACK");
            return Err(e);
        }
        if loaded.is_err() || warnings > 0 || affected != feed.rows {
            self.conn.query_drop("ROLLBACK").map_err(db)?;
            return Ok(None);
        }
        let params: Vec<mysql::Value> = mark.1.iter().map(to_mysql).collect();
        self.conn.exec_drop(mark.0, params).map_err(db)?;
        self.conn
            .query_drop("COMMIT")
            .map_err(|e| Error::driver(format!("committing a chunk of {}", rows.meta.name), e))?;
        Ok(Some(feed.rows))
    }
}

fn to_mysql(v: &Value) -> mysql::Value {
    match v {
        Value::Null => mysql::Value::NULL,
        Value::Integer(i) => mysql::Value::Int(*i),
        Value::Real(f) => mysql::Value::Double(*f),
        Value::Text(t) => mysql::Value::Bytes(t.clone().into_bytes()),
        Value::Blob(b) => mysql::Value::Bytes(b.clone()),
    }
}

/// `LOAD DATA` of a table's rows as [`feed_chunk`] writes them: fields
/// separated by tabs and escaped with `\`, NULL as `\N`; binary columns
/// arrive as hex and BIT columns as unsigned integers, set through
/// variables.
fn load_statement(meta: &TableMeta) -> String {
    let mut targets = Vec::new();
    let mut sets = Vec::new();
    for (n, col) in meta.columns.iter().enumerate() {
        if col.binary {
            targets.push(format!("@v{n}"));
            sets.push(format!("{} = UNHEX(@v{n})", quote(&col.name)));
        } else if is_bit(col) {
            targets.push(format!("@v{n}"));
            sets.push(format!("{} = CAST(@v{n} AS UNSIGNED)", quote(&col.name)));
        } else {
            targets.push(quote(&col.name));
        }
    }
    let set = if sets.is_empty() { String::new() } else { format!(" SET {}", sets.join(", ")) };
    format!(
        "LOAD DATA LOCAL INFILE 'tessera-chunk' INTO TABLE {} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({}){set}",
        quote(&meta.name),
        targets.join(", ")
    )
}

/// Writes the rows of `chunk` (its stored bytes) to `out` in
/// [`load_statement`]'s format, checking each as the INSERT path does
/// (field count, binary and BIT values), and counts them.
fn feed_chunk(
    meta: &TableMeta,
    chunk: &tessera_bridge::layout::ChunkMeta,
    data: Vec<u8>,
    intact: bool,
    out: &mut dyn std::io::Write,
    feed: &mut Feed,
) -> Result<(), Error> {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let file = chunk.file.as_str();
    cells_of(meta, chunk, data, intact, &mut |line, cells| {
        let damaged = |reason: String| Error::damaged(file, line, reason);
        for (n, (cell, col)) in cells.iter().zip(&meta.columns).enumerate() {
            if n > 0 {
                buf.push(b'\t');
            }
            let Some(text) = cell else {
                buf.extend_from_slice(b"\\N");
                continue;
            };
            if col.binary {
                let digits = text
                    .strip_prefix("\\x")
                    .filter(|d| d.len() % 2 == 0 && d.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| damaged(format!("column {}: {text:?} is not \\x hex", col.name)))?;
                buf.extend_from_slice(digits.as_bytes());
            } else if is_bit(col) {
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(damaged(format!("column {}: {text:?} is not a BIT value", col.name)));
                }
                buf.extend_from_slice(text.as_bytes());
            } else {
                for &b in text.as_bytes() {
                    match b {
                        b'\\' => buf.extend_from_slice(b"\\\\"),
                        b'\t' => buf.extend_from_slice(b"\\t"),
                        b'\n' => buf.extend_from_slice(b"\\n"),
                        b'\r' => buf.extend_from_slice(b"\\r"),
                        0 => buf.extend_from_slice(b"\\0"),
                        other => buf.push(other),
                    }
                }
            }
        }
        buf.push(b'\n');
        feed.rows += 1;
        if buf.len() >= 1 << 20 {
            out.write_all(&buf).map_err(|e| Error::driver(format!("sending {file}"), e))?;
            buf.clear();
        }
        Ok(())
    })?;
    out.write_all(&buf).map_err(|e| Error::driver(format!("sending a chunk of {}", meta.name), e))
}

/// Connection options without sqlx's slow-statement warnings: a bulk
/// SELECT of a whole table is slow by design.
fn quiet<O: ConnectOptions>(options: O) -> O {
    options.log_slow_statements(log::LevelFilter::Off, std::time::Duration::ZERO)
}

/// The database's own message for a failed statement.
fn refused(e: sqlx::Error) -> Error {
    Error::Database(e.as_database_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))
}

fn bind_value<'q>(
    q: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    v: &'q Value,
) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    match v {
        Value::Null => q.bind(Option::<String>::None),
        Value::Integer(i) => q.bind(*i),
        Value::Real(f) => q.bind(*f),
        Value::Text(t) => q.bind(t.as_str()),
        Value::Blob(b) => q.bind(b.as_slice()),
    }
}

/// A query result's column as text, whatever its type.
fn text_of(row: &sqlx::mysql::MySqlRow, i: usize) -> Result<Option<String>, Error> {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok(v.map(|v| v.to_string()));
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(i) {
        return Ok(v.map(|v| v.to_string()));
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
        return Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()));
    }
    row.try_get::<Option<f64>, _>(i).map(|v| v.map(|v| v.to_string())).map_err(db)
}

impl Target for Mysql {
    fn dialect(&self) -> schema::Engine {
        schema::Engine::Mysql
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<(), Error> {
        let Mysql { rt, conn, .. } = self;
        if params.is_empty() {
            // Transaction control and session settings: the text protocol.
            return rt.block_on(conn.execute(sql)).map(|_| ()).map_err(refused);
        }
        let mut q = sqlx::query(sql);
        for v in params {
            q = bind_value(q, v);
        }
        rt.block_on(q.execute(&mut *conn)).map(|_| ()).map_err(refused)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Option<String>>>, Error> {
        let Mysql { rt, conn, .. } = self;
        let mut q = sqlx::query(sql);
        for v in params {
            q = bind_value(q, v);
        }
        let rows = rt.block_on(q.fetch_all(&mut *conn)).map_err(refused)?;
        rows.iter().map(|r| (0..r.len()).map(|i| text_of(r, i)).collect()).collect()
    }

    fn transactional_ddl(&self) -> bool {
        false
    }

    fn start_load(&mut self) -> Result<(), Error> {
        self.execute("SET FOREIGN_KEY_CHECKS = 0", &[])
    }

    fn load(&mut self, rows: ChunkRows<'_>) -> Result<u64, Error> {
        if rows.converted() {
            let per_batch = (30_000 / rows.meta.columns.len().max(1)).clamp(1, 500);
            return insert_values(self, rows, per_batch);
        }
        let Mysql { rt, conn, .. } = self;
        insert_chunk(rt, conn, rows)
    }

    /// Connections of the `mysql` driver that stream chunks through LOAD
    /// DATA LOCAL INFILE, side by side, where the server allows it
    /// (`TESSERA_MYSQL_INSERT=1` turns them off).
    fn loaders(&mut self, n: usize) -> Result<Vec<Box<dyn Loader>>, Error> {
        if std::env::var("TESSERA_MYSQL_INSERT").is_ok_and(|v| v == "1") {
            return Ok(Vec::new());
        }
        let mut loaders: Vec<Box<dyn Loader>> = Vec::new();
        for _ in 0..n {
            match Infile::connect(&self.url) {
                Some(infile) => loaders.push(Box::new(infile)),
                None => break,
            }
        }
        Ok(loaders)
    }

    fn finish_load(&mut self, _message: &str) -> Result<(), Error> {
        self.execute("SET FOREIGN_KEY_CHECKS = 1", &[])
    }
}
