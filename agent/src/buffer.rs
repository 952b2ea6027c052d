//! Sink buffers with Vector's semantics: a bounded queue between the sources and the sink.
//!
//! `when_full = "block"`: the writer waits until the sink has taken something out (backpressure
//! up to the source). `when_full = "drop_newest"`: the event being written is discarded and
//! counted as an intentional discard. Memory buffers hold the events in the process heap, bounded
//! by events (`max_events`) or bytes (`max_size`); an unbounded-looking limit grows until the
//! cgroup's cap, as Vector's does. Disk buffers are bounded by bytes, in append-only data files
//! under `<data_dir>/buffer/v2/<sink_id>/`, deleted once fully read; records survive a restart.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::config::{BufferConfig, BufferType, WhenFull};
use crate::metrics::Metrics;

pub const DATA_FILE_MAX_BYTES: u64 = 128 * 1024 * 1024;
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
const HEADER: usize = 4 + 4 + 2 + 8; // length, crc32, source index, sequence number

/// One event: the encoded payload and where it came from (source index, its sequence number).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub source: u16,
    pub seq: u64,
    pub data: Vec<u8>,
}

#[derive(Debug, PartialEq)]
pub enum Push {
    Stored,
    Dropped,
    Closed,
}

pub struct Buffer {
    config: BufferConfig,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    not_empty: Notify,
    not_full: Notify,
}

struct State {
    events: u64,
    bytes: u64,
    closed: bool,
    store: Store,
}

enum Store {
    Memory(VecDeque<Event>),
    Disk(DiskStore),
}

impl Buffer {
    pub fn new(config: BufferConfig, metrics: Arc<Metrics>, data_dir: &str, sink_id: &str) -> io::Result<Buffer> {
        metrics.set_limits(config.max_events, config.max_size);
        let (store, events, bytes) = match config.kind {
            BufferType::Memory => (Store::Memory(VecDeque::new()), 0, 0),
            BufferType::Disk => {
                let (disk, events, bytes) = DiskStore::open(PathBuf::from(data_dir).join("buffer/v2").join(sink_id))?;
                (Store::Disk(disk), events, bytes)
            }
        };
        metrics.level(events, bytes);
        Ok(Buffer { config, metrics, state: Mutex::new(State { events, bytes, closed: false, store }),
                    not_empty: Notify::new(), not_full: Notify::new() })
    }

    fn fits(&self, st: &State, size: u64) -> bool {
        if st.events == 0 {
            return true; // one oversized event is still accepted, as Vector does
        }
        if let Some(max) = self.config.max_events {
            if st.events + 1 > max {
                return false;
            }
        }
        if let Some(max) = self.config.max_size {
            if st.bytes + size > max {
                return false;
            }
        }
        true
    }

    /// Write one event; waits while full under `block`, drops it under `drop_newest`.
    pub async fn push(&self, event: Event) -> io::Result<Push> {
        let started = Instant::now();
        let size = event.data.len() as u64;
        let mut event = Some(event);
        loop {
            let notified = self.not_full.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state.lock().unwrap();
                if st.closed {
                    return Ok(Push::Closed);
                }
                if self.fits(&st, size) {
                    st.store.put(event.take().unwrap())?;
                    st.events += 1;
                    st.bytes += size;
                    self.metrics.received(1, size);
                    self.metrics.level(st.events, st.bytes);
                    self.metrics.write_waited(started.elapsed().as_secs_f64());
                    self.not_empty.notify_waiters();
                    return Ok(Push::Stored);
                }
                if self.config.when_full == WhenFull::DropNewest {
                    self.metrics.discarded(1, true);
                    return Ok(Push::Dropped);
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
    }

    /// Take up to `max` events, waiting up to `timeout` for the first one.
    pub async fn pop(&self, max: usize, timeout: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.not_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state.lock().unwrap();
                if st.events > 0 {
                    let n = max.min(st.events as usize);
                    let (out, errors) = st.store.take(n);
                    let taken = (out.len() + errors) as u64;
                    let bytes: u64 = out.iter().map(|e| e.data.len() as u64).sum();
                    st.events = st.events.saturating_sub(taken);
                    st.bytes = if st.events == 0 { 0 } else { st.bytes.saturating_sub(bytes) };
                    if errors > 0 {
                        self.metrics.errors(errors as u64);
                    }
                    self.metrics.sent(out.len() as u64, bytes);
                    self.metrics.level(st.events, st.bytes);
                    self.not_full.notify_waiters();
                    return out;
                }
                if st.closed {
                    return Vec::new();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// No more writes; waiting writers return `Closed`.
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.not_full.notify_waiters();
        self.not_empty.notify_waiters();
    }

    pub fn len(&self) -> u64 {
        self.state.lock().unwrap().events
    }

    /// The (source, sequence number) of every event still in the buffer, without taking them.
    pub fn held(&self) -> Vec<(u16, u64)> {
        let mut st = self.state.lock().unwrap();
        match &mut st.store {
            Store::Memory(q) => q.iter().map(|e| (e.source, e.seq)).collect(),
            Store::Disk(d) => d.scan().unwrap_or_default(),
        }
    }
}

impl Store {
    fn put(&mut self, event: Event) -> io::Result<()> {
        match self {
            Store::Memory(q) => {
                q.push_back(event);
                Ok(())
            }
            Store::Disk(d) => d.put(&event),
        }
    }

    /// Up to n events, and how many records were unreadable (counted as buffer errors).
    fn take(&mut self, n: usize) -> (Vec<Event>, usize) {
        match self {
            Store::Memory(q) => (q.drain(..n.min(q.len())).collect(), 0),
            Store::Disk(d) => d.take(n).unwrap_or_else(|e| {
                eprintln!("chaoslab-agent: disk buffer read failed: {e}");
                (Vec::new(), 0)
            }),
        }
    }
}

#[derive(Serialize, Deserialize, Default, Clone, Copy)]
struct DiskLedger {
    write_file: u64,
    read_file: u64,
    read_offset: u64,
}

struct DiskStore {
    dir: PathBuf,
    ledger: DiskLedger,
    writer: File,
    written: u64,
    reader: Option<BufReader<File>>,
    last_flush: Instant,
}

fn header(event: &Event) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&(event.data.len() as u32).to_le_bytes());
    h[4..8].copy_from_slice(&crc32fast::hash(&event.data).to_le_bytes());
    h[8..10].copy_from_slice(&event.source.to_le_bytes());
    h[10..18].copy_from_slice(&event.seq.to_le_bytes());
    h
}

fn unpack(h: &[u8; HEADER]) -> (u32, u32, u16, u64) {
    (u32::from_le_bytes(h[0..4].try_into().unwrap()), u32::from_le_bytes(h[4..8].try_into().unwrap()),
     u16::from_le_bytes(h[8..10].try_into().unwrap()), u64::from_le_bytes(h[10..18].try_into().unwrap()))
}

impl DiskStore {
    /// Opens the buffer directory and counts the records a previous run left unread.
    fn open(dir: PathBuf) -> io::Result<(DiskStore, u64, u64)> {
        fs::create_dir_all(&dir)?;
        let ledger: DiskLedger = fs::read(dir.join("buffer.db")).ok()
            .and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let path = dir.join(format!("buffer-data-{}.dat", ledger.write_file));
        let writer = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = writer.metadata()?.len();
        let mut store = DiskStore { dir, ledger, writer, written, reader: None, last_flush: Instant::now() };
        let left = store.scan()?;
        let mut bytes = 0;
        store.walk(|len, _, _| bytes += len as u64)?;
        Ok((store, left.len() as u64, bytes))
    }

    fn data_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("buffer-data-{n}.dat"))
    }

    fn save_ledger(&self) -> io::Result<()> {
        let tmp = self.dir.join("buffer.db.tmp");
        fs::write(&tmp, serde_json::to_vec(&self.ledger).unwrap())?;
        fs::rename(tmp, self.dir.join("buffer.db"))
    }

    fn put(&mut self, event: &Event) -> io::Result<()> {
        let size = (HEADER + event.data.len()) as u64;
        if self.written > 0 && self.written + size > DATA_FILE_MAX_BYTES {
            self.writer.sync_data()?;
            self.ledger.write_file += 1;
            self.writer = OpenOptions::new().create(true).append(true).open(self.data_path(self.ledger.write_file))?;
            self.written = 0;
            self.save_ledger()?;
        }
        self.writer.write_all(&header(event))?;
        self.writer.write_all(&event.data)?;
        self.written += size;
        if self.last_flush.elapsed() >= FLUSH_INTERVAL {
            self.writer.sync_data()?; // an I/O error here ends the agent, as in Vector
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> io::Result<(Vec<Event>, usize)> {
        let mut out = Vec::with_capacity(n);
        let mut errors = 0;
        while out.len() + errors < n {
            if self.reader.is_none() {
                let mut f = File::open(self.data_path(self.ledger.read_file))?;
                f.seek(SeekFrom::Start(self.ledger.read_offset))?;
                self.reader = Some(BufReader::new(f));
            }
            let reader = self.reader.as_mut().unwrap();
            let mut h = [0u8; HEADER];
            if read_full(reader, &mut h)? < HEADER {
                if self.ledger.read_file >= self.ledger.write_file {
                    break;
                }
                self.reader = None;
                let _ = fs::remove_file(self.data_path(self.ledger.read_file)); // fully read
                self.ledger.read_file += 1;
                self.ledger.read_offset = 0;
                continue;
            }
            let (len, crc, source, seq) = unpack(&h);
            let mut data = vec![0u8; len as usize];
            if read_full(reader, &mut data)? < len as usize {
                break;
            }
            self.ledger.read_offset += (HEADER + len as usize) as u64;
            if crc32fast::hash(&data) != crc {
                errors += 1;
                continue;
            }
            out.push(Event { source, seq, data });
        }
        self.save_ledger()?;
        Ok((out, errors))
    }

    fn walk(&mut self, mut each: impl FnMut(u32, u16, u64)) -> io::Result<()> {
        self.writer.flush()?;
        let (mut n, mut offset) = (self.ledger.read_file, self.ledger.read_offset);
        while n <= self.ledger.write_file {
            if let Ok(f) = File::open(self.data_path(n)) {
                let mut r = BufReader::new(f);
                r.seek(SeekFrom::Start(offset))?;
                let mut h = [0u8; HEADER];
                while read_full(&mut r, &mut h)? == HEADER {
                    let (len, _, source, seq) = unpack(&h);
                    each(len, source, seq);
                    r.seek_relative(len as i64)?;
                }
            }
            n += 1;
            offset = 0;
        }
        Ok(())
    }

    fn scan(&mut self) -> io::Result<Vec<(u16, u64)>> {
        let mut out = Vec::new();
        self.walk(|_, source, seq| out.push((source, seq)))?;
        Ok(out)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BufferConfig;

    fn event(seq: u64, size: usize) -> Event {
        Event { source: 0, seq, data: vec![b'x'; size] }
    }

    fn memory(max_events: Option<u64>, max_size: Option<u64>, when_full: WhenFull) -> Buffer {
        let cfg = BufferConfig { kind: BufferType::Memory, max_events, max_size, when_full };
        Buffer::new(cfg, Arc::new(Metrics::new("bus")), "/nonexistent", "bus").unwrap()
    }

    #[tokio::test]
    async fn drop_newest_discards_the_event_being_written() {
        let b = memory(Some(2), None, WhenFull::DropNewest);
        assert_eq!(b.push(event(0, 10)).await.unwrap(), Push::Stored);
        assert_eq!(b.push(event(1, 10)).await.unwrap(), Push::Stored);
        assert_eq!(b.push(event(2, 10)).await.unwrap(), Push::Dropped);
        let got: Vec<u64> = b.pop(10, Duration::from_millis(10)).await.iter().map(|e| e.seq).collect();
        assert_eq!(got, vec![0, 1]);
        // after the sink took them, there is room again (not stuck at the maximum)
        assert_eq!(b.push(event(3, 10)).await.unwrap(), Push::Stored);
    }

    #[tokio::test]
    async fn drop_newest_counts_the_discards_and_the_level() {
        let metrics = Arc::new(Metrics::new("bus"));
        let cfg = BufferConfig { kind: BufferType::Memory, max_events: Some(3), max_size: None, when_full: WhenFull::DropNewest };
        let b = Buffer::new(cfg, metrics.clone(), "/nonexistent", "bus").unwrap();
        let mut results = Vec::new();
        for i in 0..5 {
            results.push(b.push(event(i, 2)).await.unwrap());
        }
        assert_eq!(results, vec![Push::Stored, Push::Stored, Push::Stored, Push::Dropped, Push::Dropped]);
        assert_eq!(b.len(), 3);
        let page = metrics.encode();
        for needle in [
            "vector_buffer_discarded_events_total{buffer_id=\"bus\",stage=\"0\",intentional=\"true\"} 2",
            "vector_buffer_discarded_events_total{buffer_id=\"bus\",stage=\"0\",intentional=\"false\"} 0",
            "vector_buffer_received_events_total{buffer_id=\"bus\",stage=\"0\"} 3",
            "vector_buffer_size_events{buffer_id=\"bus\",stage=\"0\"} 3",
            "vector_buffer_size_bytes{buffer_id=\"bus\",stage=\"0\"} 6",
            "vector_buffer_events{buffer_id=\"bus\",stage=\"0\"} 3",
        ] {
            assert!(page.contains(needle), "missing {needle} in\n{page}");
        }
        let got: Vec<u64> = b.pop(10, Duration::from_millis(100)).await.iter().map(|e| e.seq).collect();
        assert_eq!(got, vec![0, 1, 2]);
        let page = metrics.encode();
        assert!(page.contains("vector_buffer_sent_events_total{buffer_id=\"bus\",stage=\"0\"} 3"), "{page}");
        assert!(page.contains("vector_buffer_size_events{buffer_id=\"bus\",stage=\"0\"} 0"), "{page}");
    }

    #[tokio::test]
    async fn max_size_takes_an_event_that_fills_it_exactly() {
        let b = memory(None, Some(10), WhenFull::DropNewest);
        assert_eq!(b.push(event(0, 6)).await.unwrap(), Push::Stored);
        assert_eq!(b.push(event(1, 6)).await.unwrap(), Push::Dropped);
        assert_eq!(b.push(event(2, 4)).await.unwrap(), Push::Stored);
        assert_eq!(b.push(event(3, 1)).await.unwrap(), Push::Dropped);
        assert_eq!(b.held(), vec![(0, 0), (0, 2)]);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn block_releases_the_writer_in_order() {
        let b = Arc::new(memory(Some(2), None, WhenFull::Block));
        b.push(event(0, 1)).await.unwrap();
        b.push(event(1, 1)).await.unwrap();
        let writer = {
            let b = b.clone();
            tokio::spawn(async move { b.push(event(2, 1)).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!writer.is_finished(), "a full block buffer accepted a write");
        assert_eq!(b.len(), 2);
        assert_eq!(b.pop(1, Duration::from_millis(100)).await.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0]);
        assert_eq!(writer.await.unwrap(), Push::Stored);
        assert_eq!(b.pop(5, Duration::from_millis(100)).await.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[tokio::test]
    async fn disk_buffer_lives_under_buffer_v2_and_the_sink_id() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BufferConfig { kind: BufferType::Disk, max_events: None, max_size: Some(268_435_488), when_full: WhenFull::Block };
        let b = Buffer::new(cfg, Arc::new(Metrics::new("bus")), dir.path().to_str().unwrap(), "bus").unwrap();
        b.push(event(0, 8)).await.unwrap();
        assert_eq!(b.pop(1, Duration::from_millis(10)).await.len(), 1);
        let folder = dir.path().join("buffer/v2/bus");
        assert!(folder.join("buffer.db").is_file(), "the ledger is written after a read");
        assert!(folder.join("buffer-data-0.dat").is_file());
        let ledger: serde_json::Value = serde_json::from_slice(&fs::read(folder.join("buffer.db")).unwrap()).unwrap();
        assert_eq!(ledger, serde_json::json!({"write_file": 0, "read_file": 0, "read_offset": HEADER + 8}));
    }

    #[tokio::test]
    async fn max_size_bounds_bytes_but_takes_one_oversized_event() {
        let b = memory(None, Some(25), WhenFull::DropNewest);
        assert_eq!(b.push(event(0, 100)).await.unwrap(), Push::Stored);
        assert_eq!(b.push(event(1, 1)).await.unwrap(), Push::Dropped);
        b.pop(1, Duration::from_millis(10)).await;
        assert_eq!(b.push(event(2, 10)).await.unwrap(), Push::Stored);
        assert_eq!(b.push(event(3, 10)).await.unwrap(), Push::Stored);
        assert_eq!(b.push(event(4, 10)).await.unwrap(), Push::Dropped);
        assert_eq!(b.held(), vec![(0, 2), (0, 3)]);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn block_waits_for_the_sink() {
        let b = Arc::new(memory(Some(1), None, WhenFull::Block));
        b.push(event(0, 1)).await.unwrap();
        let writer = {
            let b = b.clone();
            tokio::spawn(async move { b.push(event(1, 1)).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!writer.is_finished(), "a full block buffer must hold the writer");
        assert_eq!(b.pop(1, Duration::from_secs(1)).await[0].seq, 0);
        assert_eq!(writer.await.unwrap(), Push::Stored);
        b.close();
        assert_eq!(b.push(event(2, 1)).await.unwrap(), Push::Closed);
    }

    #[tokio::test]
    async fn disk_buffer_survives_a_restart_and_keeps_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let cfg = BufferConfig { kind: BufferType::Disk, max_events: None, max_size: Some(268_435_488), when_full: WhenFull::Block };
        {
            let b = Buffer::new(cfg.clone(), Arc::new(Metrics::new("bus")), d, "bus").unwrap();
            for i in 0..5 {
                b.push(event(i, 64)).await.unwrap();
            }
            assert_eq!(b.pop(2, Duration::from_millis(10)).await.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1]);
        }
        let b = Buffer::new(cfg, Arc::new(Metrics::new("bus")), d, "bus").unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b.held(), vec![(0, 2), (0, 3), (0, 4)]);
        let rest = b.pop(10, Duration::from_millis(10)).await;
        assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(rest[0].data, vec![b'x'; 64]);
        assert_eq!(b.len(), 0);
    }

    #[tokio::test]
    async fn disk_buffer_counts_a_corrupt_record_as_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let cfg = BufferConfig { kind: BufferType::Disk, max_events: None, max_size: Some(268_435_488), when_full: WhenFull::Block };
        let metrics = Arc::new(Metrics::new("bus"));
        let b = Buffer::new(cfg, metrics.clone(), d, "bus").unwrap();
        b.push(event(0, 8)).await.unwrap();
        b.push(event(1, 8)).await.unwrap();
        if let Store::Disk(ds) = &mut b.state.lock().unwrap().store {
            ds.writer.flush().unwrap();
        }
        let path = dir.path().join("buffer/v2/bus/buffer-data-0.dat");
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER] ^= 0xff; // first record's payload
        fs::write(&path, bytes).unwrap();
        let got = b.pop(10, Duration::from_millis(10)).await;
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
        assert!(metrics.encode().contains("vector_buffer_errors_total{buffer_id=\"bus\",stage=\"0\"} 1"));
    }
}
