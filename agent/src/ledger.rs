//! Per-event accounting, kept where a kill cannot erase it. Vector has no such thing; the lab needs
//! it to close the books per VM: every sequence number a source stamped is delivered, dropped by
//! policy, given up by the sink, still held at shutdown, or lost, and the agent says which.
//!
//! `<data_dir>/accounting/<source>.generated`: 8 bytes, the number of events the source has
//! stamped (sequence numbers 0..n), in a shared file mapping updated per event. The page belongs
//! to the kernel's page cache, so the figure survives the agent being OOM-killed or SIGKILLed.
//! `<data_dir>/accounting/<source>.ledger`: appended lines `<kind> <first> <last>` (inclusive
//! ranges) with kind dropped (when_full = drop_newest), failed (the sink gave up on a batch; the
//! events may still have reached the broker) or held (in the buffer when the agent stopped). Each
//! line is one write(2) as the event happens, so it also survives a kill.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dropped,
    Failed,
    Held,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Dropped => "dropped",
            Kind::Failed => "failed",
            Kind::Held => "held",
        }
    }
}

pub struct Ledger {
    generated: MmapMut,
    log: File,
}

/// Sorted sequence numbers as inclusive ranges.
pub fn ranges(seqs: &[u64]) -> Vec<(u64, u64)> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == s => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

impl Ledger {
    pub fn open(data_dir: &str, source_id: &str) -> std::io::Result<Ledger> {
        let dir = Path::new(data_dir).join("accounting");
        fs::create_dir_all(&dir)?;
        let counter: PathBuf = dir.join(format!("{source_id}.generated"));
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&counter)?;
        file.set_len(8)?;
        // SAFETY: the file is ours, sized to 8 bytes, and only this process maps it.
        let generated = unsafe { MmapMut::map_mut(&file)? };
        let log = OpenOptions::new().create(true).write(true).truncate(true).open(dir.join(format!("{source_id}.ledger")))?;
        Ok(Ledger { generated, log })
    }

    /// `n` events have been stamped (sequence numbers 0..n).
    pub fn set_generated(&mut self, n: u64) {
        self.generated[..8].copy_from_slice(&n.to_le_bytes());
    }

    pub fn record(&mut self, kind: Kind, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        let mut text = String::new();
        for (a, b) in ranges(seqs) {
            text.push_str(&format!("{} {a} {b}\n", kind.word()));
        }
        if let Err(e) = self.log.write_all(text.as_bytes()) {
            eprintln!("chaoslab-agent: cannot write the accounting ledger: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_neighbours() {
        assert_eq!(ranges(&[5, 1, 2, 3, 9, 7, 8, 2]), vec![(1, 3), (5, 5), (7, 9)]);
        assert!(ranges(&[]).is_empty());
    }

    #[test]
    fn ledger_files_hold_counts_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let mut l = Ledger::open(d, "app").unwrap();
        l.set_generated(42);
        l.record(Kind::Dropped, &[10, 11, 12, 20]);
        l.record(Kind::Failed, &[30]);
        drop(l);
        let n = fs::read(dir.path().join("accounting/app.generated")).unwrap();
        assert_eq!(u64::from_le_bytes(n[..8].try_into().unwrap()), 42);
        let text = fs::read_to_string(dir.path().join("accounting/app.ledger")).unwrap();
        assert_eq!(text, "dropped 10 12\ndropped 20 20\nfailed 30 30\n");
    }
}
