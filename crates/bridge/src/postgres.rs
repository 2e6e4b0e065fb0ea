//! PostgreSQL as a source and a target, through COPY in CSV format, whose
//! NULL and empty-string rules are the bridge's CSV profile already.

use futures::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{ConnectOptions, Connection, Row};

use crate::csv::{self, Cell};
use crate::layout::{Column, ForeignKey, Index, TableMeta};
use crate::ops::Shape;
use crate::value::Affinity;
use crate::Error;

pub struct Postgres {
    rt: tokio::runtime::Runtime,
    pub(crate) conn: PgConnection,
    /// Whether scans may read a table in storage order, betting it is key
    /// order (see [`Source::scan_records`](crate::ops::Source::scan_records)).
    storage_order: bool,
    /// Tables whose storage order turned out not to be key order.
    unordered: std::collections::HashSet<String>,
    /// How to connect again (see [`Source::scan_records`](crate::ops::Source::scan_records)).
    options: sqlx::postgres::PgConnectOptions,
    url: String,
}

fn db(e: sqlx::Error) -> Error {
    Error::Database(e.to_string())
}

pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Postgres {
    pub fn connect(url: &str) -> Result<Postgres, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Database(e.to_string()))?;
        let unreachable =
            |e: sqlx::Error| Error::Database(format!("cannot connect to {}: {e}", crate::ops::redact(url)));
        let options = crate::ops::quiet(url.parse::<sqlx::postgres::PgConnectOptions>().map_err(unreachable)?);
        let mut conn = rt.block_on(options.connect()).map_err(unreachable)?;
        // Imports run DDL whose literals sqlparser's PostgreSQL tokenizer
        // checked, reading '...' without backslash escapes: so must the session.
        rt.block_on(sqlx::raw_sql("SET standard_conforming_strings = on").execute(&mut conn)).map_err(db)?;
        Ok(Postgres { rt, conn, storage_order: false, unordered: Default::default(), options, url: url.to_string() })
    }

    /// Runs one statement (no parameters).
    pub(crate) fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let Postgres { rt, conn, .. } = self;
        rt.block_on(sqlx::raw_sql(sql).execute(&mut *conn)).map(|_| ())
    }

    /// Runs one statement with `values` bound as their PostgreSQL text
    /// forms (the statement casts each to its column's type, as COPY would
    /// read it); the database's message on failure.
    pub(crate) fn insert_values(&mut self, sql: &str, values: &[crate::value::Value]) -> Result<(), String> {
        use crate::value::Value;
        let Postgres { rt, conn, .. } = self;
        let mut q = sqlx::query(sql);
        for v in values {
            q = q.bind(match v {
                Value::Null => None,
                Value::Integer(i) => Some(i.to_string()),
                Value::Real(f) => Some(crate::value::real_text(*f)),
                Value::Text(t) => Some(t.clone()),
                Value::Blob(b) => Some(format!("\\x{}", hex::encode(b))),
            });
        }
        rt.block_on(q.execute(&mut *conn))
            .map(|_| ())
            .map_err(|e| e.as_database_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))
    }

    pub fn table_exists(&mut self, table: &str) -> Result<bool, Error> {
        let Postgres { rt, conn, .. } = self;
        let row = rt
            .block_on(sqlx::query("SELECT to_regclass($1) IS NOT NULL").bind(quote(table)).fetch_one(&mut *conn))
            .map_err(db)?;
        row.try_get(0).map_err(db)
    }
}

impl Postgres {
    /// The column of `shape`'s single integer primary key, when a scan may
    /// bet on storage order: the table has only ever had rows inserted, as
    /// far as the server's statistics know (an update moves a row, and a
    /// delete makes room for a later insert to land out of order).
    fn storage_order_key(&mut self, shape: &Shape) -> Result<Option<usize>, Error> {
        if !self.storage_order || shape.order_first.is_some() || self.unordered.contains(&shape.name) {
            return Ok(None);
        }
        let [pk] = shape.primary_key.as_slice() else { return Ok(None) };
        let Some(i) = shape.columns.iter().position(|c| &c.name == pk) else { return Ok(None) };
        if !matches!(shape.columns[i].declared_type.as_str(), "smallint" | "integer" | "bigint") {
            return Ok(None);
        }
        let Postgres { rt, conn, .. } = self;
        let sql = "SELECT n_tup_upd + n_tup_del = 0 FROM pg_stat_user_tables WHERE relid = to_regclass($1)";
        let row = rt.block_on(sqlx::query(sql).bind(quote(&shape.name)).fetch_optional(&mut *conn)).map_err(db)?;
        let inserts_only = row.map(|r| r.try_get::<bool, _>(0)).transpose().map_err(db)?.unwrap_or(false);
        Ok(inserts_only.then_some(i))
    }
}

impl crate::ops::Source for Postgres {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    fn tables(&mut self) -> Result<Vec<String>, Error> {
        let Postgres { rt, conn, .. } = self;
        let rows = rt
            .block_on(
                sqlx::query(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename",
                )
                .fetch_all(&mut *conn),
            )
            .map_err(db)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db)).collect()
    }

    fn describe(&mut self, table: &str) -> Result<Shape, Error> {
        let Postgres { rt, conn, .. } = self;
        let rel = quote(table);
        let exists: bool = rt
            .block_on(sqlx::query("SELECT to_regclass($1) IS NOT NULL").bind(&rel).fetch_one(&mut *conn))
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        if !exists {
            return Err(Error::UnknownTable(table.to_string()));
        }
        let cols = rt
            .block_on(
                sqlx::query(
                    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, \
                     pg_get_serial_sequence($1, a.attname) \
                     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                     WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                )
                .bind(&rel)
                .fetch_all(&mut *conn),
            )
            .map_err(db)?;
        let mut columns = Vec::new();
        let mut defs = Vec::new();
        let mut pre = Vec::new();
        let mut post = Vec::new();
        let mut autoincrement = false;
        for r in &cols {
            let name: String = r.try_get(0).map_err(db)?;
            let ty: String = r.try_get(1).map_err(db)?;
            let not_null: bool = r.try_get(2).map_err(db)?;
            let default: Option<String> = r.try_get(3).map_err(db)?;
            let identity: String = r.try_get(4).map_err(db)?;
            let sequence: Option<String> = r.try_get(5).map_err(db)?;
            let mut def = format!("{} {ty}", quote(&name));
            match identity.as_str() {
                "a" => def.push_str(" GENERATED ALWAYS AS IDENTITY"),
                "d" => def.push_str(" GENERATED BY DEFAULT AS IDENTITY"),
                _ => {
                    if let Some(d) = &default {
                        def.push_str(&format!(" DEFAULT {d}"));
                    }
                }
            }
            if not_null {
                def.push_str(" NOT NULL");
            }
            defs.push(def);
            if let Some(seq) = sequence {
                autoincrement = true;
                let row = rt
                    .block_on(sqlx::query(&format!("SELECT last_value, is_called FROM {seq}")).fetch_one(&mut *conn))
                    .map_err(db)?;
                let last: i64 = row.try_get(0).map_err(db)?;
                let called: bool = row.try_get(1).map_err(db)?;
                if identity.is_empty() {
                    // serial: the sequence is a separate object the table's default names.
                    pre.push(format!("CREATE SEQUENCE IF NOT EXISTS {seq}"));
                    post.push(format!("ALTER SEQUENCE {seq} OWNED BY {}.{}", quote(table), quote(&name)));
                }
                post.push(format!(
                    "SELECT setval(pg_get_serial_sequence('{}', '{}'), {last}, {called})",
                    rel.replace('\'', "''"),
                    name.replace('\'', "''")
                ));
            }
            columns.push(Column {
                binary: ty == "bytea",
                affinity: Affinity::Text,
                declared_type: ty,
                not_null,
                default,
                name,
            });
        }
        let constraints = rt
            .block_on(
                sqlx::query("SELECT conname::text, contype::text, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1::regclass ORDER BY conname")
                    .bind(&rel)
                    .fetch_all(&mut *conn),
            )
            .map_err(db)?;
        let mut foreign_keys = Vec::new();
        let mut constraint_names = Vec::new();
        for r in &constraints {
            let name: String = r.try_get(0).map_err(db)?;
            let kind: String = r.try_get(1).map_err(db)?;
            let definition: String = r.try_get(2).map_err(db)?;
            constraint_names.push(name.clone());
            if kind == "f" {
                post.push(format!("ALTER TABLE {} ADD CONSTRAINT {} {definition}", quote(table), quote(&name)));
                foreign_keys.push(ForeignKey { columns: vec![], ref_table: definition.clone(), ref_columns: vec![] });
            } else {
                defs.push(format!("CONSTRAINT {} {definition}", quote(&name)));
            }
        }
        let pk_rows = rt
            .block_on(
                sqlx::query(
                    "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)",
                )
                .bind(&rel)
                .fetch_all(&mut *conn),
            )
            .map_err(db)?;
        let primary_key: Vec<String> =
            pk_rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db)).collect::<Result<_, _>>()?;
        let index_rows = rt
            .block_on(
                sqlx::query("SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1 ORDER BY indexname")
                    .bind(table)
                    .fetch_all(&mut *conn),
            )
            .map_err(db)?;
        let mut indexes = Vec::new();
        for r in &index_rows {
            let name: String = r.try_get(0).map_err(db)?;
            let def: String = r.try_get(1).map_err(db)?;
            if constraint_names.contains(&name) {
                continue;
            }
            post.push(def.clone());
            indexes.push(Index { name, unique: def.contains("UNIQUE INDEX"), columns: vec![], sql: None });
        }
        let mut create_sql = String::new();
        for p in &pre {
            create_sql.push_str(&format!("{p};\n"));
        }
        create_sql.push_str(&format!("CREATE TABLE {} (\n  {}\n)", quote(table), defs.join(",\n  ")));
        Ok(Shape {
            name: table.to_string(),
            columns,
            primary_key,
            autoincrement,
            autoincrement_seq: None,
            order_first: None,
            create_sql,
            post_sql: post,
            indexes,
            foreign_keys,
        })
    }

    fn divisor(&mut self, shape: &Shape, target_bytes: u64) -> Result<u64, Error> {
        let Postgres { rt, conn, .. } = self;
        let sql = format!(
            "SELECT coalesce(avg(octet_length(t::text)), 64)::float8 FROM (SELECT * FROM {} LIMIT 1000) t",
            quote(&shape.name)
        );
        let avg: f64 = rt.block_on(sqlx::query(&sql).fetch_one(&mut *conn)).map_err(db)?.try_get(0).map_err(db)?;
        Ok((target_bytes as f64 / avg.max(1.0)) as u64)
    }

    fn scan(&mut self, shape: &Shape, each: &mut dyn FnMut(&[Cell]) -> Result<(), Error>) -> Result<(), Error> {
        let wanted = vec![true; shape.columns.len()];
        self.scan_records(shape, &wanted, &mut |cells, _| each(cells))
    }

    fn scan_records(
        &mut self,
        shape: &Shape,
        wanted: &[bool],
        each: &mut dyn FnMut(&[Cell], &[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let order: Vec<String> = shape.order().iter().map(|c| quote(c)).collect();
        let cols: Vec<String> = shape.columns.iter().map(|c| quote(&c.name)).collect();
        let n = shape.columns.len();
        if let Some(key) = self.storage_order_key(shape)? {
            // A table filled in key order and seldom updated is stored in
            // key order: reading it without ORDER BY saves the server an
            // index scan (a seventh of COPY's time). The key is checked as
            // rows arrive; the caller scans again if the bet was lost.
            let sql =
                format!("COPY (SELECT {} FROM {}) TO STDOUT WITH (FORMAT csv)", cols.join(", "), quote(&shape.name));
            let mut wanted = wanted.to_vec();
            wanted[key] = true;
            let mut last: Option<i64> = None;
            let scanned = copy_out(self, &sql, n, &wanted, &mut |cells, record| {
                let k = cells[key].as_deref().and_then(|t| t.parse::<i64>().ok());
                match (k, last) {
                    (Some(k), Some(l)) if k <= l => return Err(Error::NotInKeyOrder),
                    (None, _) => return Err(Error::NotInKeyOrder),
                    _ => last = k,
                }
                each(cells, record)
            });
            if matches!(scanned, Err(Error::NotInKeyOrder)) {
                self.unordered.insert(shape.name.clone());
                // The connection is still inside the abandoned COPY; a new
                // one is cheaper than reading the rest of the table.
                let Postgres { rt, conn, options, url, .. } = self;
                *conn = rt
                    .block_on(options.connect())
                    .map_err(|e| Error::Database(format!("cannot connect to {}: {e}", crate::ops::redact(url))))?;
            }
            return scanned;
        }
        let sql = format!(
            "COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT WITH (FORMAT csv)",
            cols.join(", "),
            quote(&shape.name),
            order.join(", ")
        );
        copy_out(self, &sql, n, wanted, each)
    }

    fn storage_order(&mut self, on: bool) {
        self.storage_order = on;
    }

    fn sync_state(&mut self, repo: &str, branch: &str) -> Result<Option<String>, Error> {
        if !self.table_exists(crate::sync::STATE_TABLE)? {
            return Ok(None);
        }
        let Postgres { rt, conn, .. } = self;
        let sql = format!("SELECT commit_id FROM {} WHERE repo = $1 AND branch = $2", quote(crate::sync::STATE_TABLE));
        let row = rt.block_on(sqlx::query(&sql).bind(repo).bind(branch).fetch_optional(&mut *conn)).map_err(db)?;
        row.map(|r| r.try_get::<String, _>(0).map_err(db)).transpose()
    }

    fn apply(&mut self, changes: &[crate::sync::TableChanges], state: Option<(&str, &str, &str)>) -> Result<(), Error> {
        let create_state = state.is_some() && !self.table_exists(crate::sync::STATE_TABLE)?;
        let Postgres { rt, conn, .. } = self;
        rt.block_on(async {
            use sqlx::Connection;
            let mut tx = conn.begin().await.map_err(db)?;
            sqlx::query("SET CONSTRAINTS ALL DEFERRED").execute(&mut *tx).await.map_err(db)?;
            for stmt in crate::sync::statements(&DIALECT, changes) {
                let mut q = sqlx::query(&stmt.sql);
                for (cell, _) in &stmt.params {
                    q = q.bind(cell.as_deref());
                }
                q.execute(&mut *tx).await.map_err(|e| Error::Database(format!("{}: {e}", stmt.sql)))?;
            }
            if let Some((repo, branch, commit)) = state {
                if create_state {
                    sqlx::query(&crate::sync::state_ddl(quote)).execute(&mut *tx).await.map_err(db)?;
                }
                for (sql, values) in crate::sync::state_statements(&DIALECT, repo, branch, commit) {
                    let mut q = sqlx::query(&sql);
                    for v in &values {
                        q = q.bind(v.as_deref());
                    }
                    q.execute(&mut *tx).await.map_err(db)?;
                }
            }
            tx.commit().await.map_err(|e| Error::Database(format!("committing the sync: {e}")))
        })
    }
}

/// How PostgreSQL spells sync's statements: every value is bound as text
/// and cast to the column's type, which is how COPY reads it too.
const DIALECT: crate::sync::Dialect = crate::sync::Dialect {
    quote,
    param: |n, col| format!("${n}::text::{}", col.declared_type),
    is: "IS NOT DISTINCT FROM",
    delete_one: |table, cond| {
        format!("DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE {cond} LIMIT 1)")
    },
};

/// Runs a COPY ... TO STDOUT (FORMAT csv) of `n` columns and hands each
/// row to `each`: its cells (those `wanted` marks at least) and its record
/// in the CSV profile. COPY's CSV is that profile but for quotes the profile
/// would not write (a lone `\.`), so records are passed through as they
/// come, and only those are decoded and written again.
#[allow(clippy::type_complexity)]
pub fn copy_out(
    pg: &mut Postgres,
    sql: &str,
    n: usize,
    wanted: &[bool],
    each: &mut dyn FnMut(&[Cell], &[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let Postgres { rt, conn, .. } = pg;
    let bad = |e: csv::Error| Error::Database(format!("reading COPY output: {e}"));
    rt.block_on(async {
        let mut stream = conn.copy_out_raw(sql).await.map_err(db)?;
        // PostgreSQL sends a row per message; a record split across
        // messages waits here for the rest.
        let mut pending: Vec<u8> = Vec::new();
        let mut cells: Vec<Cell> = vec![None; n];
        let mut full: Vec<Cell> = Vec::new();
        let mut record = Vec::new();
        while let Some(message) = stream.next().await {
            let message = message.map_err(db)?;
            let from_pending = !pending.is_empty();
            if from_pending {
                pending.extend_from_slice(&message);
            }
            let data: &[u8] = if from_pending { &pending } else { &message };
            let mut pos = 0;
            while let csv::Scan::Record { len, fields, canonical } =
                csv::scan_record(&data[pos..], wanted, &mut cells).map_err(bad)?
            {
                if fields != n {
                    return Err(Error::Database(format!("COPY returned a row of {fields} fields, not {n}")));
                }
                let raw = &data[pos..pos + len];
                if canonical {
                    each(&cells, raw)?;
                } else {
                    csv::Reader::new(raw).next_into(&mut full).map_err(bad)?;
                    record.clear();
                    csv::write_record(&mut record, &full);
                    each(&full, &record)?;
                }
                pos += len;
            }
            if from_pending {
                pending.drain(..pos);
            } else {
                pending.extend_from_slice(&message[pos..]);
            }
        }
        if pending.is_empty() {
            Ok(())
        } else {
            Err(Error::Database("COPY output ends inside a row".into()))
        }
    })
}

/// The line number PostgreSQL names in a COPY error ("COPY t, line 3").
fn copy_error_line(message: &str) -> usize {
    message
        .split("line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Loads the tables `names` of the export at `rev` into PostgreSQL, all in
/// one transaction: tables, then rows with COPY (the chunk files are
/// already in COPY's CSV format), then foreign keys, indexes and sequences.
/// Chunks an interrupted import committed: `(table, position, blob)`;
/// position -1 marks a table the import created.
use crate::ops::IMPORT_PROGRESS;

/// Loads an export into PostgreSQL, resumably when no table is replaced:
/// one transaction per chunk (COPY plus a row in `_tessera_import`), so a
/// re-run after an interruption keeps the chunks whose position and blob
/// still match; foreign keys, indexes and sequence positions come in one
/// final transaction. Damage drops what the import created. Replacing
/// existing tables is one transaction, so a failure keeps the old ones.
pub fn import(
    repo: &std::path::Path,
    rev: &str,
    names: &[String],
    database: &str,
    replace: bool,
) -> Result<crate::ops::ImportReport, Error> {
    let mut pg = Postgres::connect(database)?;
    let ours: std::collections::HashSet<String> = if pg.table_exists(IMPORT_PROGRESS)? {
        let Postgres { rt, conn, .. } = &mut pg;
        let rows = rt
            .block_on(
                sqlx::query(&format!("SELECT DISTINCT tbl FROM {}", quote(IMPORT_PROGRESS))).fetch_all(&mut *conn),
            )
            .map_err(db)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db)).collect::<Result<_, _>>()?
    } else {
        Default::default()
    };
    if let Some(taken) = crate::ops::first_taken(names, &ours, &mut |n| pg.table_exists(n))? {
        if !replace {
            return Err(Error::TargetNotEmpty(taken));
        }
        drop(pg);
        return import_at_once(repo, rev, names, database, replace);
    }
    let metas = crate::ops::table_metas(repo, rev, names)?;
    let mut report = crate::ops::ImportReport::default();
    let progress = quote(IMPORT_PROGRESS);
    let Postgres { rt, conn, .. } = &mut pg;
    let loaded = rt.block_on(async {
        sqlx::raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS {progress} (tbl text NOT NULL, position bigint NOT NULL, blob text NOT NULL, \
             PRIMARY KEY (tbl, position))"
        ))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        for meta in &metas {
            let name = &meta.name;
            let blobs = crate::ops::chunk_blobs(repo, rev, meta)?;
            let recorded: Vec<(i64, String)> = sqlx::query_as(&format!(
                "SELECT position, blob FROM {progress} WHERE tbl = $1 AND position >= 0 ORDER BY position"
            ))
            .bind(name)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
            let done = if ours.contains(name) { crate::ops::resume_point(&blobs, &recorded) } else { 0 };
            if done == 0 {
                let mut tx = conn.begin().await.map_err(db)?;
                // A table a previous, different run of this import created.
                if ours.contains(name) {
                    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {} CASCADE", quote(name)))
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                sqlx::query(&format!("DELETE FROM {progress} WHERE tbl = $1"))
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                for stmt in &crate::ops::ddl_of(meta)?.create {
                    // One statement each (the extended protocol takes no more).
                    sqlx::query(stmt)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| Error::Database(format!("creating {name}: {e}")))?;
                }
                sqlx::query(&format!("INSERT INTO {progress} (tbl, position, blob) VALUES ($1, -1, '')"))
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
            } else {
                report.resumed.push((name.clone(), done));
            }
            let mut total: u64 = meta.chunks[..done].iter().map(|c| c.rows).sum();
            for (i, (chunk, blob)) in meta.chunks.iter().zip(&blobs).enumerate().skip(done) {
                let mut tx = conn.begin().await.map_err(db)?;
                total += copy_chunk(&mut tx, repo, rev, meta, chunk, &mut report.edited_chunks).await?;
                sqlx::query(&format!("INSERT INTO {progress} (tbl, position, blob) VALUES ($1, $2, $3)"))
                    .bind(name)
                    .bind(i as i64)
                    .bind(blob)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
            }
            report.tables.push((name.clone(), total));
        }
        let mut tx = conn.begin().await.map_err(db)?;
        for meta in &metas {
            for stmt in &crate::ops::ddl_of(meta)?.after {
                sqlx::query(stmt).execute(&mut *tx).await.map_err(|e| Error::Damaged {
                    file: format!("data/{}/", meta.name),
                    line: 0,
                    reason: e.to_string(),
                })?;
            }
        }
        sqlx::raw_sql(&format!("DROP TABLE {progress}")).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(|e| Error::Database(format!("committing the import: {e}")))
    });
    if let Err(e) = loaded {
        if matches!(e, Error::Damaged { .. }) {
            let _ = rt.block_on(async {
                for meta in &metas {
                    let _ = sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {} CASCADE", quote(&meta.name)))
                        .execute(&mut *conn)
                        .await;
                }
                sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {progress}")).execute(&mut *conn).await
            });
        }
        return Err(e);
    }
    Ok(report)
}

/// COPYs one chunk file into its table inside `tx`; returns its rows.
async fn copy_chunk(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    repo: &std::path::Path,
    rev: &str,
    meta: &TableMeta,
    chunk: &crate::layout::ChunkMeta,
    edited: &mut Vec<String>,
) -> Result<u64, Error> {
    let cols: Vec<String> = meta.columns.iter().map(|c| quote(&c.name)).collect();
    let sql = format!("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)", quote(&meta.name), cols.join(", "));
    let (data, intact) = crate::ops::load_chunk(repo, rev, chunk, meta.chunk_limit, edited)?;
    let data = crate::ops::decompress(&chunk.file, data, crate::ops::decompress_limit(meta, chunk, intact))?;
    let damaged = |e: sqlx::Error| {
        // COPY names the line in the error's context ("COPY t, line 4"),
        // counting the header as line 1 as the file does.
        let context = e
            .as_database_error()
            .and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
            .and_then(|p| p.r#where().map(str::to_string))
            .unwrap_or_default();
        let reason = match e.as_database_error() {
            Some(d) => d.message().to_string(),
            None => e.to_string(),
        };
        Error::Damaged { file: chunk.file.clone(), line: copy_error_line(&context), reason }
    };
    let data = quote_end_markers(data, meta.columns.len());
    let mut copy = tx.copy_in_raw(&sql).await.map_err(db)?;
    copy.send(data).await.map_err(damaged)?;
    let rows = copy.finish().await.map_err(damaged)?;
    if intact && rows != chunk.rows {
        return Err(Error::Damaged {
            file: chunk.file.clone(),
            line: 0,
            reason: format!("{rows} rows, the metadata of the same commit says {}", chunk.rows),
        });
    }
    Ok(rows)
}

/// COPY FROM reads a line holding only `\.` as the end of the data, even
/// in CSV; the profile writes a one-column row of that text unquoted. Such
/// records are quoted here (records, not lines: inside a quoted field the
/// line is data).
fn quote_end_markers(data: Vec<u8>, columns: usize) -> Vec<u8> {
    let lone = |d: &[u8]| d == b"\\." || d.starts_with(b"\\.\n");
    if columns != 1 || !(lone(&data) || memchr::memmem::find(&data, b"\n\\.").is_some()) {
        return data;
    }
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut reader = csv::Reader::new(&data);
    let mut start = 0;
    // A record that does not parse is passed on as it is, for COPY to name.
    while let Ok(Some(_)) = reader.next_record() {
        let record = &data[start..reader.position()];
        if record.strip_suffix(b"\n").unwrap_or(record) == b"\\." {
            out.extend_from_slice(b"\"\\.\"\n");
        } else {
            out.extend_from_slice(record);
        }
        start = reader.position();
    }
    out.extend_from_slice(&data[start..]);
    out
}

/// Loads an export into PostgreSQL in one transaction (replacing tables).
fn import_at_once(
    repo: &std::path::Path,
    rev: &str,
    names: &[String],
    database: &str,
    replace: bool,
) -> Result<crate::ops::ImportReport, Error> {
    let mut pg = Postgres::connect(database)?;
    let (metas, existing) = crate::ops::load_metas(repo, rev, names, replace, &mut |name| pg.table_exists(name))?;
    let mut report = crate::ops::ImportReport::default();
    let Postgres { rt, conn, .. } = &mut pg;
    rt.block_on(async {
        let mut tx = conn.begin().await.map_err(db)?;
        for name in &existing {
            sqlx::raw_sql(&format!("DROP TABLE {} CASCADE", quote(name))).execute(&mut *tx).await.map_err(db)?;
        }
        for meta in &metas {
            for stmt in &crate::ops::ddl_of(meta)?.create {
                sqlx::query(stmt)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Error::Database(format!("creating {}: {e}", meta.name)))?;
            }
        }
        for meta in &metas {
            let mut total = 0;
            for chunk in &meta.chunks {
                total += copy_chunk(&mut tx, repo, rev, meta, chunk, &mut report.edited_chunks).await?;
            }
            report.tables.push((meta.name.clone(), total));
        }
        for meta in &metas {
            for stmt in &crate::ops::ddl_of(meta)?.after {
                sqlx::query(stmt)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Error::Database(format!("{}: {e}", meta.name)))?;
            }
        }
        sqlx::raw_sql(&crate::ops::forget_interrupted_imports(quote)).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(|e| Error::Database(format!("committing the import: {e}")))?;
        Ok::<_, Error>(())
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::quote_end_markers;

    #[test]
    fn lone_end_markers_are_quoted_but_not_inside_quoted_fields() {
        let data = b"v\n\\.\nx\n\"a\n\\.\nb\"\n\\.".to_vec();
        let quoted = quote_end_markers(data, 1);
        assert_eq!(quoted, b"v\n\"\\.\"\nx\n\"a\n\\.\nb\"\n\"\\.\"\n");
        let two_columns = b"a,b\n\\.,x\n".to_vec();
        assert_eq!(quote_end_markers(two_columns.clone(), 2), two_columns);
    }
}
