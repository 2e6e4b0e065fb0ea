//! The CSV chunk reader and cell decoding never panic, and whatever parses
//! re-encodes to records that parse to the same cells.
#![no_main]
use tessera_bridge::csv::{write_record, Reader};
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
    let _ = serde_json::from_slice::<tessera_bridge::layout::Manifest>(data);
    let _ = serde_json::from_slice::<tessera_bridge::layout::TableMeta>(data);
});
