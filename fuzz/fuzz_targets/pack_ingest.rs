//! Ingest of a whole push as the server runs it: scan the pack (checksum,
//! inflate, delta resolution under limits, chain cuts), check every object
//! with fsck, then read every accepted object back from the stored pack the
//! way the server serves it and check it hashes to its id.
#![no_main]
use std::collections::HashMap;

use tessera_pack::index::{self, Scanned};
use tessera_pack::read::PackFile;
use tessera_pack::ObjectId;
use tessera_protocol::fsck;

fn read_back(pack: &PackFile, by_id: &HashMap<ObjectId, &Scanned>, id: ObjectId) -> Vec<u8> {
    let mut chain = Vec::new();
    let mut current = id;
    let mut data = loop {
        let object = by_id[&current];
        let (_, entry) = pack.read_entry(object.offset, object.end).expect("an accepted entry reads back");
        match object.delta_base {
            None => break entry,
            Some(base) => {
                chain.push(entry);
                current = base;
            }
        }
        assert!(chain.len() <= tessera_pack::read::MAX_CHAIN, "an accepted chain is within the reader's bound");
    };
    let mut out = Vec::new();
    for delta in chain.into_iter().rev() {
        tessera_pack::delta::apply(&data, &delta, &mut out).expect("an accepted delta applies");
        std::mem::swap(&mut data, &mut out);
    }
    data
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("p.pack");
    std::fs::write(&path, data).expect("write");
    // Small limits, so the fuzzer reaches the cut and eviction paths.
    let limits = index::Limits { max_objects: 10_000, max_object_size: 1 << 22, max_delta_depth: 3, max_chain_memory: 1 << 12 };
    let policy = fsck::Policy::default();
    let mut checker = fsck::Checker::new(&policy);
    let Ok(outcome) = index::scan(&path, limits, &mut |_| Ok(None), &mut |o, d| {
        if let Some(d) = d {
            assert_eq!(tessera_pack::object_id(o.kind, d), o.id);
            checker.check(o.kind, d)?;
        }
        Ok(())
    }) else {
        return;
    };
    let by_id: HashMap<ObjectId, &Scanned> = outcome.objects.iter().map(|o| (o.id, o)).collect();
    let pack = PackFile::open(&path).expect("the scanned pack opens");
    for object in &outcome.objects {
        let content = read_back(&pack, &by_id, object.id);
        assert_eq!(tessera_pack::object_id(object.kind, &content), object.id);
    }
});
