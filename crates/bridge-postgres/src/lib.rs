//! PostgreSQL as a source and a target, through COPY in CSV format, whose
//! NULL and empty-string rules are the bridge's CSV profile already.

use futures::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{ConnectOptions, Row};

use tessera_bridge::csv::{self, Cell};
use tessera_bridge::engine::Error;
use tessera_bridge::engine::{ChunkRows, Loader, Shape, Source, Target};
use tessera_bridge::import::insert_values;
use tessera_bridge::layout::{Column, ForeignKey, Index};
use tessera_bridge::schema;
use tessera_bridge::sync::{self, Dialect};
use tessera_bridge::value::{Affinity, Value};

pub struct Postgres {
    rt: tokio::runtime::Runtime,
    pub conn: PgConnection,
    /// Whether scans may read a table in storage order, betting it is key
    /// order (see [`Source::scan_records`](Source::scan_records)).
    storage_order: bool,
    /// Tables whose storage order turned out not to be key order.
    unordered: std::collections::HashSet<String>,
    /// How to connect again (see [`Source::scan_records`](Source::scan_records)).
    options: sqlx::postgres::PgConnectOptions,
    url: String,
}

fn db(e: sqlx::Error) -> Error {
    Error::driver("PostgreSQL", e)
}

pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Postgres {
    pub fn connect(url: &str) -> Result<Postgres, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::driver("starting a runtime", e))?;
        let unreachable =
            |e: sqlx::Error| Error::driver(format!("cannot connect to {}", tessera_bridge::git::redact_url(url)), e);
        let options = quiet(url.parse::<sqlx::postgres::PgConnectOptions>().map_err(unreachable)?);
        let mut conn = rt.block_on(options.connect()).map_err(unreachable)?;
        // Imports run DDL whose literals sqlparser's PostgreSQL tokenizer
        // checked, reading '...' without backslash escapes: so must the session.
        rt.block_on(sqlx::raw_sql("SET standard_conforming_strings = on").execute(&mut conn)).map_err(db)?;
        Ok(Postgres { rt, conn, storage_order: false, unordered: Default::default(), options, url: url.to_string() })
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

impl Source for Postgres {
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
                *conn = rt.block_on(options.connect()).map_err(|e| {
                    Error::driver(format!("cannot connect to {}", tessera_bridge::git::redact_url(url)), e)
                })?;
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
        if !self.table_exists(sync::STATE_TABLE)? {
            return Ok(None);
        }
        let Postgres { rt, conn, .. } = self;
        let sql = format!("SELECT commit_id FROM {} WHERE repo = $1 AND branch = $2", quote(sync::STATE_TABLE));
        let row = rt.block_on(sqlx::query(&sql).bind(repo).bind(branch).fetch_optional(&mut *conn)).map_err(db)?;
        row.map(|r| r.try_get::<String, _>(0).map_err(db)).transpose()
    }

    fn apply(&mut self, changes: &[sync::TableChanges], state: Option<(&str, &str, &str)>) -> Result<(), Error> {
        let create_state = state.is_some() && !self.table_exists(sync::STATE_TABLE)?;
        let Postgres { rt, conn, .. } = self;
        rt.block_on(async {
            use sqlx::Connection;
            let mut tx = conn.begin().await.map_err(db)?;
            sqlx::query("SET CONSTRAINTS ALL DEFERRED").execute(&mut *tx).await.map_err(db)?;
            for stmt in sync::statements(&DIALECT, changes) {
                let mut q = sqlx::query(&stmt.sql);
                for (cell, _) in &stmt.params {
                    q = q.bind(cell.as_deref());
                }
                q.execute(&mut *tx).await.map_err(|e| Error::driver(stmt.sql.clone(), e))?;
            }
            if let Some((repo, branch, commit)) = state {
                if create_state {
                    sqlx::query(&sync::state_ddl(quote)).execute(&mut *tx).await.map_err(db)?;
                }
                for (sql, values) in sync::state_statements(&DIALECT, repo, branch, commit) {
                    let mut q = sqlx::query(&sql);
                    for v in &values {
                        q = q.bind(v.as_deref());
                    }
                    q.execute(&mut *tx).await.map_err(db)?;
                }
            }
            tx.commit().await.map_err(|e| Error::driver("committing the sync", e))
        })
    }
}

/// How PostgreSQL spells sync's statements: every value is bound as text
/// and cast to the column's type, which is how COPY reads it too.
const DIALECT: Dialect = Dialect {
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
    let bad = |e: csv::Error| Error::driver("reading COPY output", e);
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

/// COPYs one chunk's rows (`data`: its CSV as exported, COPY's own) into
/// its table, inside the transaction open on `conn`; returns how many.
async fn copy_chunk(
    conn: &mut PgConnection,
    meta: &tessera_bridge::layout::TableMeta,
    chunk: &tessera_bridge::layout::ChunkMeta,
    data: Vec<u8>,
    intact: bool,
) -> Result<u64, Error> {
    let cols: Vec<String> = meta.columns.iter().map(|c| quote(&c.name)).collect();
    let sql = format!("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)", quote(&meta.name), cols.join(", "));
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
        Error::damaged(&chunk.file, copy_error_line(&context), reason)
    };
    let data = quote_end_markers(data, meta.columns.len());
    let mut copy = conn.copy_in_raw(&sql).await.map_err(db)?;
    copy.send(data).await.map_err(damaged)?;
    let rows = copy.finish().await.map_err(damaged)?;
    if intact && rows != chunk.rows {
        return Err(Error::damaged(
            &chunk.file,
            0,
            format!("{rows} rows, the metadata of the same commit says {}", chunk.rows),
        ));
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

/// Connection options without sqlx's slow-statement warnings: a bulk
/// COPY or SELECT of a whole table is slow by design.
fn quiet<O: ConnectOptions>(options: O) -> O {
    options.log_slow_statements(log::LevelFilter::Off, std::time::Duration::ZERO)
}

/// The database's own message for a failed statement.
fn refused(e: sqlx::Error) -> Error {
    Error::Database(e.as_database_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))
}

/// A query result's column as text, whatever its type.
fn text_of(row: &sqlx::postgres::PgRow, i: usize) -> Result<Option<String>, Error> {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok(v.map(|v| v.to_string()));
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
        return Ok(v.map(|v| v.to_string()));
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
        return Ok(v.map(|v| v.to_string()));
    }
    row.try_get::<Option<f64>, _>(i).map(|v| v.map(|v| v.to_string())).map_err(db)
}

/// Binds each value by its own type (the statement casts where needed).
fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    params: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for v in params {
        q = match v {
            Value::Null => q.bind(None::<String>),
            Value::Integer(i) => q.bind(*i),
            Value::Real(f) => q.bind(*f),
            Value::Text(t) => q.bind(t.as_str()),
            Value::Blob(b) => q.bind(b.as_slice()),
        };
    }
    q
}

impl Target for Postgres {
    fn dialect(&self) -> schema::Engine {
        schema::Engine::Postgres
    }

    /// `$n`, cast to the column's type when converting from another engine
    /// family (values are bound by their own type).
    fn placeholder(&self, n: usize, sql_type: Option<&str>) -> String {
        match sql_type {
            Some(t) => format!("CAST(${n} AS {t})"),
            None => format!("${n}"),
        }
    }

    /// One statement (the extended protocol takes no more).
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<(), Error> {
        let Postgres { rt, conn, .. } = self;
        let q = bind_all(sqlx::query(sql).persistent(!params.is_empty()), params);
        rt.block_on(q.execute(&mut *conn)).map(|_| ()).map_err(refused)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Option<String>>>, Error> {
        let Postgres { rt, conn, .. } = self;
        let q = bind_all(sqlx::query(sql), params);
        let rows = rt.block_on(q.fetch_all(&mut *conn)).map_err(refused)?;
        rows.iter().map(|r| (0..r.len()).map(|i| text_of(r, i)).collect()).collect()
    }

    fn drop_table_sql(&self, table: &str) -> String {
        format!("DROP TABLE IF EXISTS {} CASCADE", quote(table))
    }

    fn failed_statement_aborts(&self) -> bool {
        true
    }

    fn load(&mut self, rows: ChunkRows<'_>) -> Result<u64, Error> {
        if rows.converted() {
            // Multi-row INSERTs: a round trip per row would dominate.
            let per_batch = (30_000 / rows.meta.columns.len().max(1)).clamp(1, 500);
            return insert_values(self, rows, per_batch);
        }
        let (meta, chunk, intact) = (rows.meta, rows.chunk, rows.stored().1);
        let data = rows.csv()?;
        let Postgres { rt, conn, .. } = self;
        rt.block_on(copy_chunk(conn, meta, chunk, data, intact))
    }

    /// More connections, each COPYing chunks of the same table side by side.
    fn loaders(&mut self, n: usize) -> Result<Vec<Box<dyn Loader>>, Error> {
        (0..n).map(|_| Ok(Box::new(Postgres::connect(&self.url)?) as Box<dyn Loader>)).collect()
    }
}

impl Loader for Postgres {
    fn load_marked(&mut self, rows: &ChunkRows<'_>, mark: (&str, &[Value])) -> Result<Option<u64>, Error> {
        if rows.converted() {
            return Ok(None);
        }
        let data = rows.csv_copy()?;
        let (meta, chunk, intact) = (rows.meta, rows.chunk, rows.stored().1);
        Target::begin(self)?;
        let loaded = {
            let Postgres { rt, conn, .. } = self;
            rt.block_on(copy_chunk(conn, meta, chunk, data, intact))
        };
        let marked = loaded.and_then(|n| Target::execute(self, mark.0, mark.1).map(|()| n));
        match marked {
            Ok(n) => {
                Target::commit(self)?;
                Ok(Some(n))
            }
            Err(e) => {
                Target::rollback(self);
                Err(e)
            }
        }
    }
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
