//! MySQL and MariaDB as a source and a target. Values travel as text: each
//! column is selected as `CAST(... AS CHAR)` (binary and BIT columns as
//! `\x` + hex, FLOAT widened to DOUBLE so its shortest text is exact),
//! in a session on UTC so TIMESTAMPs do not shift; the DDL is
//! `SHOW CREATE TABLE`, which also carries the AUTO_INCREMENT position.

use futures::TryStreamExt;
use sqlx::mysql::MySqlConnection;
use sqlx::{ConnectOptions, Connection, Executor, Row};

use crate::csv::Cell;
use crate::layout::{Column, TableMeta};
use crate::ops::{Shape, IMPORT_PROGRESS};
use crate::value::Affinity;
use crate::Error;

pub struct Mysql {
    rt: tokio::runtime::Runtime,
    conn: MySqlConnection,
}

fn db(e: sqlx::Error) -> Error {
    Error::Database(e.to_string())
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
            .map_err(|e| Error::Database(e.to_string()))?;
        let mut conn = rt
            .block_on(async { crate::ops::quiet(url.parse::<sqlx::mysql::MySqlConnectOptions>()?).connect().await })
            .map_err(|e| Error::Database(format!("cannot connect to {}: {e}", crate::ops::redact(&url))))?;
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
        Ok(Mysql { rt, conn })
    }

    /// Runs one statement (no parameters).
    pub(crate) fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let Mysql { rt, conn } = self;
        rt.block_on(sqlx::raw_sql(sql).execute(&mut *conn)).map(|_| ())
    }

    /// Runs one statement with `values` bound (MySQL converts them to the
    /// columns' types, strictly); the database's message on failure.
    pub(crate) fn insert_values(&mut self, sql: &str, values: &[crate::value::Value]) -> Result<(), String> {
        use crate::value::Value;
        let Mysql { rt, conn } = self;
        let mut q = sqlx::query(sql);
        for v in values {
            q = match v {
                Value::Null => q.bind(Option::<String>::None),
                Value::Integer(i) => q.bind(*i),
                Value::Real(f) => q.bind(*f),
                Value::Text(t) => q.bind(t.as_str()),
                Value::Blob(b) => q.bind(b.as_slice()),
            };
        }
        rt.block_on(q.execute(&mut *conn))
            .map(|_| ())
            .map_err(|e| e.as_database_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))
    }

    pub(crate) fn table_exists(&mut self, table: &str) -> Result<bool, Error> {
        let Mysql { rt, conn } = self;
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
        let Mysql { rt, conn } = self;
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

impl crate::ops::Source for Mysql {
    fn engine(&self) -> &'static str {
        "mysql"
    }

    fn tables(&mut self) -> Result<Vec<String>, Error> {
        let Mysql { rt, conn } = self;
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
        let Mysql { rt, conn } = self;
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
        let Mysql { rt, conn } = self;
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
        if !self.table_exists(crate::sync::STATE_TABLE)? {
            return Ok(None);
        }
        let Mysql { rt, conn } = self;
        let sql = format!("SELECT commit_id FROM {} WHERE repo = ? AND branch = ?", quote(crate::sync::STATE_TABLE));
        let row = rt.block_on(sqlx::query(&sql).bind(repo).bind(branch).fetch_optional(&mut *conn)).map_err(db)?;
        row.map(|r| r.try_get::<String, _>(0).map_err(db)).transpose()
    }

    fn apply(&mut self, changes: &[crate::sync::TableChanges], state: Option<(&str, &str, &str)>) -> Result<(), Error> {
        let Mysql { rt, conn } = self;
        if state.is_some() {
            // DDL commits implicitly in MySQL: create the state table first.
            rt.block_on(conn.execute(crate::sync::state_ddl(quote).as_str())).map_err(db)?;
        }
        rt.block_on(async {
            let mut tx = conn.begin().await.map_err(db)?;
            sqlx::query("SET FOREIGN_KEY_CHECKS = 0").execute(&mut *tx).await.map_err(db)?;
            for stmt in crate::sync::statements(&DIALECT, changes) {
                let mut q = sqlx::query(&stmt.sql);
                for (cell, col) in &stmt.params {
                    q = bind_cell(q, cell, col).map_err(|r| Error::Database(format!("column {}: {r}", col.name)))?;
                }
                q.execute(&mut *tx).await.map_err(|e| Error::Database(format!("{}: {e}", stmt.sql)))?;
            }
            if let Some((repo, branch, commit)) = state {
                for (sql, values) in crate::sync::state_statements(&DIALECT, repo, branch, commit) {
                    let mut q = sqlx::query(&sql);
                    for v in &values {
                        q = q.bind(v.clone());
                    }
                    q.execute(&mut *tx).await.map_err(db)?;
                }
            }
            sqlx::query("SET FOREIGN_KEY_CHECKS = 1").execute(&mut *tx).await.map_err(db)?;
            tx.commit().await.map_err(|e| Error::Database(format!("committing the sync: {e}")))
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
const DIALECT: crate::sync::Dialect = crate::sync::Dialect {
    quote,
    param: |_, _| "?".into(),
    is: "<=>",
    delete_one: |table, cond| format!("DELETE FROM {table} WHERE {cond} LIMIT 1"),
};

/// Loads the export's tables into MySQL in one transaction.
/// Imports tables into MySQL chunk by chunk, each chunk in a transaction
/// of its own that also records it in `_tessera_import`, so an
/// interrupted import picks up after the last chunk it committed. MySQL
/// commits DDL implicitly, so a table is recorded as the import's before it
/// is created: a re-run then knows it may drop and create it again.
/// `--replace` of tables the import did not create loads in one
/// transaction instead ([`import_at_once`]).
pub fn import(
    repo: &std::path::Path,
    rev: &str,
    names: &[String],
    database: &str,
    replace: bool,
) -> Result<crate::ops::ImportReport, Error> {
    let mut my = Mysql::connect(database)?;
    let ours: std::collections::HashSet<String> = if my.table_exists(IMPORT_PROGRESS)? {
        let Mysql { rt, conn } = &mut my;
        let sql = format!("SELECT DISTINCT tbl FROM {}", quote(IMPORT_PROGRESS));
        let rows = rt.block_on(sqlx::query(&sql).fetch_all(&mut *conn)).map_err(db)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db)).collect::<Result<_, _>>()?
    } else {
        Default::default()
    };
    if let Some(taken) = crate::ops::first_taken(names, &ours, &mut |n| my.table_exists(n))? {
        if !replace {
            return Err(Error::TargetNotEmpty(taken));
        }
        return import_at_once(my, repo, rev, names, replace);
    }
    let metas = crate::ops::table_metas(repo, rev, names)?;
    let mut report = crate::ops::ImportReport::default();
    let progress = quote(IMPORT_PROGRESS);
    // Chunks stream through LOAD DATA LOCAL INFILE on a second connection
    // where the server allows it (`TESSERA_MYSQL_INSERT=1` turns it off).
    let mut infile =
        if std::env::var("TESSERA_MYSQL_INSERT").is_ok_and(|v| v == "1") { None } else { Infile::connect(database) };
    let Mysql { rt, conn } = &mut my;
    let exec = |conn: &mut MySqlConnection, sql: &str| rt.block_on(conn.execute(sql)).map(|_| ()).map_err(db);
    exec(conn, "SET FOREIGN_KEY_CHECKS = 0")?;
    let mut load = || -> Result<(), Error> {
        exec(
            conn,
            &format!(
                "CREATE TABLE IF NOT EXISTS {progress} (tbl VARCHAR(255) NOT NULL, position BIGINT NOT NULL, \
                 `blob` VARCHAR(64) NOT NULL, PRIMARY KEY (tbl, position)) ENGINE = InnoDB"
            ),
        )?;
        for meta in &metas {
            let name = &meta.name;
            let blobs = crate::ops::chunk_blobs(repo, rev, meta)?;
            let sql =
                format!("SELECT position, `blob` FROM {progress} WHERE tbl = ? AND position >= 0 ORDER BY position");
            let recorded: Vec<(i64, String)> =
                rt.block_on(sqlx::query_as(&sql).bind(name).fetch_all(&mut *conn)).map_err(db)?;
            let done = if ours.contains(name) { crate::ops::resume_point(&blobs, &recorded) } else { 0 };
            if done == 0 {
                let forget = format!("DELETE FROM {progress} WHERE tbl = ?");
                let claim = format!("INSERT INTO {progress} (tbl, position, `blob`) VALUES (?, -1, '')");
                rt.block_on(async {
                    let mut tx = conn.begin().await?;
                    sqlx::query(&forget).bind(name).execute(&mut *tx).await?;
                    sqlx::query(&claim).bind(name).execute(&mut *tx).await?;
                    tx.commit().await
                })
                .map_err(db)?;
                // Ours (recorded above) or absent: `first_taken` found the others.
                exec(conn, &format!("DROP TABLE IF EXISTS {}", quote(name)))?;
                for stmt in &crate::ops::ddl_of(meta)?.create {
                    rt.block_on(sqlx::query(stmt).execute(&mut *conn))
                        .map_err(|e| Error::Database(format!("creating {name}: {e}")))?;
                }
            } else {
                report.resumed.push((name.clone(), done));
            }
            let mut total: u64 = meta.chunks[..done].iter().map(|c| c.rows).sum();
            // The next chunk is read from git while one loads.
            let fetcher = |i: usize| {
                let (repo, rev, chunk, limit) =
                    (repo.to_path_buf(), rev.to_string(), meta.chunks[i].clone(), meta.chunk_limit);
                std::thread::spawn(move || fetch(repo, rev, chunk, limit))
            };
            let mut ahead = None;
            for (i, blob) in blobs.iter().enumerate().skip(done) {
                if let Some(infile) = infile.as_mut() {
                    let fetched = ahead.take().unwrap_or_else(|| fetcher(i));
                    if i + 1 < blobs.len() {
                        ahead = Some(fetcher(i + 1));
                    }
                    let fetched =
                        fetched.join().map_err(|_| Error::Database("a chunk reader thread panicked".into()))??;
                    if let Some(rows) = infile.load_chunk(meta, i, blob, fetched, &mut report.edited_chunks)? {
                        total += rows;
                        report.bulk_loaded_chunks += 1;
                        continue;
                    }
                }
                let mut tx = rt.block_on(conn.begin()).map_err(db)?;
                total += load_chunk(rt, &mut tx, repo, rev, meta, i, &mut report.edited_chunks)?;
                let mark = format!("INSERT INTO {progress} (tbl, position, `blob`) VALUES (?, ?, ?)");
                rt.block_on(sqlx::query(&mark).bind(name).bind(i as i64).bind(blob).execute(&mut *tx)).map_err(db)?;
                rt.block_on(tx.commit()).map_err(|e| Error::Database(format!("committing a chunk of {name}: {e}")))?;
            }
            report.tables.push((name.clone(), total));
        }
        for meta in &metas {
            for stmt in &crate::ops::ddl_of(meta)?.after {
                rt.block_on(sqlx::query(stmt).execute(&mut *conn)).map_err(db)?;
            }
        }
        exec(conn, &format!("DROP TABLE {progress}"))
    };
    let loaded = load();
    if let Err(e) = loaded {
        // Damage leaves nothing behind; an interruption of another kind
        // leaves the committed chunks for a re-run.
        if matches!(e, Error::Damaged { .. }) {
            for meta in &metas {
                let _ = exec(conn, &format!("DROP TABLE IF EXISTS {}", quote(&meta.name)));
            }
            let _ = exec(conn, &format!("DROP TABLE IF EXISTS {progress}"));
        }
        return Err(e);
    }
    exec(conn, "SET FOREIGN_KEY_CHECKS = 1")?;
    Ok(report)
}

/// Reads chunk `i` of `meta` and inserts its rows inside `tx`; returns how
/// many. Memory holds one chunk's rows at most.
fn load_chunk(
    rt: &tokio::runtime::Runtime,
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    repo: &std::path::Path,
    rev: &str,
    meta: &TableMeta,
    i: usize,
    edited: &mut Vec<String>,
) -> Result<u64, Error> {
    let cols: Vec<String> = meta.columns.iter().map(|c| quote(&c.name)).collect();
    let row_marks = format!("({})", vec!["?"; cols.len()].join(", "));
    let file = &meta.chunks[i].file;
    // As many rows per INSERT as placeholders allow (65535), up to a
    // bound that keeps statements a few MB.
    let per_insert = (60_000 / cols.len().max(1)).clamp(1, 2_000);
    let mut batch: Vec<(usize, Vec<Cell>)> = Vec::with_capacity(per_insert);
    let mut rows = 0u64;
    crate::ops::read_chunks(
        repo,
        rev,
        meta,
        std::slice::from_ref(&meta.chunks[i]),
        false,
        edited,
        &mut |_, line, _, record| {
            let cells = crate::csv::Reader::new(record).next_record().ok().flatten().unwrap_or_default();
            batch.push((line, cells));
            if batch.len() == per_insert {
                rt.block_on(insert(tx, meta, file, &cols, &row_marks, &batch))?;
                rows += batch.len() as u64;
                batch.clear();
            }
            Ok(())
        },
    )?;
    if !batch.is_empty() {
        rt.block_on(insert(tx, meta, file, &cols, &row_marks, &batch))?;
        rows += batch.len() as u64;
    }
    Ok(rows)
}

/// Replaces existing tables in one transaction, so they survive a failed
/// import. MySQL commits DDL implicitly: the tables are dropped and created
/// first, loaded in one transaction, and dropped again if loading fails.
fn import_at_once(
    mut my: Mysql,
    repo: &std::path::Path,
    rev: &str,
    names: &[String],
    replace: bool,
) -> Result<crate::ops::ImportReport, Error> {
    let (metas, existing) = crate::ops::load_metas(repo, rev, names, replace, &mut |name| my.table_exists(name))?;
    let mut report = crate::ops::ImportReport::default();
    let Mysql { rt, conn } = &mut my;
    rt.block_on(conn.execute("SET FOREIGN_KEY_CHECKS = 0")).map_err(db)?;
    for name in &existing {
        rt.block_on(conn.execute(format!("DROP TABLE {}", quote(name)).as_str())).map_err(db)?;
    }
    for meta in &metas {
        for stmt in &crate::ops::ddl_of(meta)?.create {
            rt.block_on(sqlx::query(stmt).execute(&mut *conn))
                .map_err(|e| Error::Database(format!("creating {}: {e}", meta.name)))?;
        }
    }
    let mut tx = rt.block_on(conn.begin()).map_err(db)?;
    let mut load = || -> Result<(), Error> {
        for meta in &metas {
            let mut total = 0u64;
            for i in 0..meta.chunks.len() {
                total += load_chunk(rt, &mut tx, repo, rev, meta, i, &mut report.edited_chunks)?;
            }
            report.tables.push((meta.name.clone(), total));
        }
        Ok(())
    };
    let loaded = load()
        .and_then(|_| rt.block_on(tx.commit()).map_err(|e| Error::Database(format!("committing the import: {e}"))));
    if let Err(e) = loaded {
        for meta in &metas {
            let _ = rt.block_on(conn.execute(format!("DROP TABLE IF EXISTS {}", quote(&meta.name)).as_str()));
        }
        return Err(e);
    }
    rt.block_on(conn.execute(crate::ops::forget_interrupted_imports(quote).as_str())).map_err(db)?;
    rt.block_on(conn.execute("SET FOREIGN_KEY_CHECKS = 1")).map_err(db)?;
    Ok(report)
}

async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    meta: &TableMeta,
    file: &str,
    cols: &[String],
    row_marks: &str,
    batch: &[(usize, Vec<Cell>)],
) -> Result<(), Error> {
    let damaged = |file: &str, line: usize, reason: String| Error::Damaged { file: file.to_string(), line, reason };
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
    if q.execute(&mut **tx).await.is_ok() {
        return Ok(());
    }
    let one = format!("INSERT INTO {} ({}) VALUES {row_marks}", quote(&meta.name), cols.join(", "));
    for (line, cells) in batch {
        let mut q = sqlx::query(&one);
        for (cell, col) in cells.iter().zip(&meta.columns) {
            q = bind_cell(q, cell, col).map_err(|r| damaged(file, *line, r))?;
        }
        if let Err(e) = q.execute(&mut **tx).await {
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

    /// Loads chunk `i` of `meta`, whose stored bytes [`fetch`] read, and
    /// records it in the progress table, in one transaction; `Ok(None)`
    /// when LOAD DATA did not take every row cleanly (nothing is left of it
    /// then).
    fn load_chunk(
        &mut self,
        meta: &TableMeta,
        i: usize,
        blob: &str,
        fetched: Fetched,
        edited: &mut Vec<String>,
    ) -> Result<Option<u64>, Error> {
        use mysql::prelude::Queryable;
        let feed = std::sync::Arc::new(std::sync::Mutex::new(Feed::default()));
        let handler_feed = feed.clone();
        let meta_owned = meta.clone();
        let mut stored = Some((fetched.data, fetched.intact));
        self.conn.set_local_infile_handler(Some(mysql::LocalInfileHandler::new(move |_, out| {
            let mut feed = handler_feed.lock().map_err(|_| std::io::Error::other("a loader thread panicked"))?;
            // The server asks once per LOAD DATA; a second request gets nothing.
            let Some((data, intact)) = stored.take() else { return Ok(()) };
            if let Err(e) = feed_chunk(&meta_owned, i, data, intact, out, &mut feed) {
                let shown = e.to_string();
                feed.error = Some(e);
                return Err(std::io::Error::other(shown));
            }
            Ok(())
        })));
        let sql = load_statement(meta);
        let mark = format!("INSERT INTO {} (tbl, position, `blob`) VALUES (?, ?, ?)", quote(IMPORT_PROGRESS));
        let db = |e: mysql::Error| Error::Database(e.to_string());
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
        self.conn.exec_drop(&mark, (&meta.name, i as i64, blob)).map_err(db)?;
        self.conn
            .query_drop("COMMIT")
            .map_err(|e| Error::Database(format!("committing a chunk of {}: {e}", meta.name)))?;
        edited.extend(fetched.edited);
        Ok(Some(feed.rows))
    }
}

/// A chunk's stored bytes, read ahead of its load ([`fetch`]).
struct Fetched {
    data: Vec<u8>,
    intact: bool,
    /// The chunk, when it was edited in git (for the report).
    edited: Vec<String>,
}

/// Reads chunk `i` of `meta` from git and checks it (`ops::load_chunk`),
/// on a thread of its own while the previous chunk loads.
fn fetch(repo: std::path::PathBuf, rev: String, chunk: crate::layout::ChunkMeta, limit: u64) -> Result<Fetched, Error> {
    let mut edited = Vec::new();
    let (data, intact) = crate::ops::load_chunk(&repo, &rev, &chunk, limit, &mut edited)?;
    Ok(Fetched { data, intact, edited })
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

/// Writes the rows of chunk `i` (its stored bytes) to `out` in
/// [`load_statement`]'s format, checking each as the INSERT path does
/// (field count, binary and BIT values), and counts them.
fn feed_chunk(
    meta: &TableMeta,
    i: usize,
    data: Vec<u8>,
    intact: bool,
    out: &mut dyn std::io::Write,
    feed: &mut Feed,
) -> Result<(), Error> {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let chunk = &meta.chunks[i];
    let file = chunk.file.as_str();
    crate::ops::chunk_cells(meta, chunk, data, intact, &mut |line, cells| {
        let damaged = |reason: String| Error::Damaged { file: file.to_string(), line, reason };
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
            out.write_all(&buf).map_err(|e| Error::Database(format!("sending {file}: {e}")))?;
            buf.clear();
        }
        Ok(())
    })?;
    out.write_all(&buf).map_err(|e| Error::Database(format!("sending a chunk of {}: {e}", meta.name)))
}
