//! The VM's resident application (`chaoslab-agent resident`): keeps RESIDENT_MB of file-backed
//! pages hot, as a real application's binaries and data files would be. It maps a file and reads
//! one byte of every page in a loop, so that when the agent's anonymous memory grows against the
//! cgroup cap, the kernel evicts these pages and the application faults them back in from disk
//! (pgmajfault, blkio reads) instead of the container dying at once.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memmap2::Mmap;

const PAGE: usize = 4096;

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn run(stop: Arc<AtomicBool>) -> Result<(), String> {
    let size_mb = env_num("RESIDENT_MB", 0.0) as usize;
    if size_mb == 0 {
        return Ok(());
    }
    let path = std::env::var("RESIDENT_FILE").unwrap_or_else(|_| "/var/lib/app/data.bin".into());
    let pause = Duration::from_secs_f64(env_num("RESIDENT_PAUSE_SECS", 0.5));
    let size = size_mb * 1024 * 1024;
    if let Some(dir) = Path::new(&path).parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if fs::metadata(&path).map(|m| m.len() as usize != size).unwrap_or(true) {
        let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&path)
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        let mut chunk = vec![0u8; 1024 * 1024];
        let mut x: u32 = 0x9E37_79B9;
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        for _ in 0..size_mb {
            f.write_all(&chunk).map_err(|e| format!("cannot write {path}: {e}"))?;
        }
    }
    let file = File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    // SAFETY: read-only mapping of a file only this program writes, and only before mapping it.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("cannot map {path}: {e}"))?;
    let mut total: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        for offset in (0..map.len()).step_by(PAGE) {
            total = total.wrapping_add(map[offset] as u64);
        }
        std::hint::black_box(total);
        std::thread::sleep(pause);
    }
    Ok(())
}
