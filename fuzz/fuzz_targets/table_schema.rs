//! Table metadata from a repository is hostile: the SQL fragments it
//! carries (types, defaults, checks, index expressions) and older
//! versions' DDL text are parsed, never executed. Whatever the input,
//! nothing panics; metadata that validates always generates DDL; legacy
//! DDL that is accepted describes a schema that validates.
#![no_main]
use tessera_bridge::schema::{check_type, Engine, TableSchema};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let engine = [Engine::Sqlite, Engine::Postgres, Engine::Mysql][usize::from(mode % 3)];
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match mode / 3 % 3 {
        0 => {
            let Ok(schema) = serde_json::from_str::<TableSchema>(text) else { return };
            let columns: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
            if schema.validate(engine, &columns).is_ok() {
                if let Err(e) = schema.generate(engine, "t") {
                    panic!("validated metadata generates no DDL: {e}");
                }
            }
        }
        1 => {
            let mut parts = text.split('\0');
            let create = parts.next().unwrap_or_default();
            let index: Vec<&str> = parts.next().into_iter().collect();
            let post: Vec<String> = parts.map(str::to_string).collect();
            if let Ok(schema) = TableSchema::from_legacy(engine, "t", create, &index, &post) {
                let columns: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
                if let Err(e) = schema.validate(engine, &columns) {
                    panic!("accepted legacy DDL describes a schema that does not validate: {e}");
                }
                let _ = schema.generate(engine, "t");
            }
        }
        _ => {
            let _ = check_type(engine, "type", text);
        }
    }
});
