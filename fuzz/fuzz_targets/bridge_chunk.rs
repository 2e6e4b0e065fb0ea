//! The CSV chunk reader and cell decoding never panic, and whatever parses
//! re-encodes to records that parse to the same cells. The record scanner
//! agrees with the reader: same record ends, same wanted cells, and a
//! record it calls canonical is byte for byte what the writer writes.
#![no_main]
use tessera_bridge::csv::{scan_record, write_record, Reader, Scan};
use tessera_bridge::value::{from_cell, Affinity};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut reader = Reader::new(data);
    while let Ok(Some(cells)) = reader.next_record() {
        let mut out = Vec::new();
        write_record(&mut out, &cells);
        assert_eq!(Reader::new(&out).next_record(), Ok(Some(cells.clone())));
        for cell in &cells {
            for a in [Affinity::Integer, Affinity::Real, Affinity::Text, Affinity::Blob, Affinity::Numeric] {
                let _ = from_cell(cell, a);
            }
        }
    }
    let mut rest = data;
    let mut cells = vec![None; 4];
    let wanted = [true, false, true, false];
    while let Ok(Scan::Record { len, fields, canonical }) = scan_record(rest, &wanted, &mut cells) {
        let decoded = Reader::new(&rest[..len]).next_record().expect("the scanner accepted it").expect("a record");
        assert_eq!(decoded.len(), fields);
        for (i, want) in wanted.iter().enumerate() {
            if *want && i < fields {
                assert_eq!(cells[i], decoded[i]);
            }
        }
        let mut out = Vec::new();
        write_record(&mut out, &decoded);
        assert_eq!(canonical, out == rest[..len], "{:?}", String::from_utf8_lossy(&rest[..len]));
        rest = &rest[len..];
    }
    let _ = serde_json::from_slice::<tessera_bridge::layout::Manifest>(data);
    let _ = serde_json::from_slice::<tessera_bridge::layout::TableMeta>(data);
});
