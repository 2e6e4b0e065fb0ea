//! How far an export or import has come, reported to whoever called it.
//! The library draws nothing itself: the `tessera` binary hands in
//! progress bars for a terminal, tests and servers hand in nothing.

use std::sync::Arc;

/// Receives progress. One [`Meter`] per unit of work (a table).
pub trait Progress: Send + Sync {
    fn start(&self, unit: &str) -> Box<dyn Meter>;
}

/// One unit's progress.
pub trait Meter: Send + Sync {
    /// `bytes` and `rows` done so far; `note` says where (a file and line).
    fn update(&self, bytes: u64, rows: u64, note: &str);
    /// The unit starts over from nothing (a scan that is run again).
    fn restart(&self);
    fn finish(&self);
}

/// The reporter an operation's options carry: none by default.
#[derive(Clone, Default)]
pub struct Reporter(Option<Arc<dyn Progress>>);

impl Reporter {
    pub fn new(progress: Arc<dyn Progress>) -> Reporter {
        Reporter(Some(progress))
    }

    pub fn start(&self, unit: &str) -> Box<dyn Meter> {
        match &self.0 {
            Some(p) => p.start(unit),
            None => Box::new(Silent),
        }
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Reporter(on)" } else { "Reporter(off)" })
    }
}

struct Silent;

impl Meter for Silent {
    fn update(&self, _: u64, _: u64, _: &str) {}
    fn restart(&self) {}
    fn finish(&self) {}
}
