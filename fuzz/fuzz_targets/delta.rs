//! Applying an arbitrary delta to an arbitrary base never panics and never
//! produces more than the delta's header promised.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize;
    let rest = data.get(1..).unwrap_or_default();
    let (base, delta) = rest.split_at(split.min(rest.len()));
    let mut out = Vec::new();
    if tessera_pack::delta::apply(base, delta, &mut out).is_ok() {
        assert_eq!(Some(out.len() as u64), tessera_pack::delta::result_size(delta).ok());
    }
});
