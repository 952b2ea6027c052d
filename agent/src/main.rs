//! chaoslab-agent: the telemetry agent inside every pico/nano VM container, chaoslab's stand-in
//! for Vector (vector.dev cannot be installed here). It reads the same TOML (demo_logs sources, one
//! pulsar sink with Vector's buffer settings, a prometheus_exporter), keeps Vector's buffer
//! semantics, and exports Vector's metric names on :9598.
//!
//!     chaoslab-agent [--config /etc/vector/vector.toml]
//!     chaoslab-agent resident          # the VM's resident application (RESIDENT_MB)
//!
//! Exit codes: 0 stopped by SIGTERM/SIGINT, 1 the sink could not be built, 78 configuration error.

mod buffer;
mod config;
mod ledger;
mod metrics;
mod resident;
mod sink;
mod source;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use buffer::{Buffer, Event, Push};
use ledger::{Kind, Ledger};
use metrics::Metrics;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => request.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let line = String::from_utf8_lossy(&request);
            let (status, body) = if line.starts_with("GET /metrics ") || line.starts_with("GET / ") {
                ("200 OK", metrics.encode())
            } else {
                ("404 Not Found", "not found\n".to_string())
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                                Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

/// One demo_logs source: stamp, account, push; pacing as Vector's interval (a late tick is not
/// made up for).
async fn produce(index: u16, cfg: config::DemoLogs, buffer: Arc<Buffer>, metrics: Arc<Metrics>,
                 ledgers: Arc<Mutex<Vec<Option<Ledger>>>>, mut stopping: watch::Receiver<bool>) {
    let mut generator = source::Generator::new(cfg.clone(), hostname(), std::process::id() as u64 ^ 0x5DEECE66D);
    let mut ticker = (cfg.interval_secs > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(cfg.interval_secs));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut sent = 0u64;
    while !*stopping.borrow() && cfg.count.is_none_or(|c| sent < c) {
        match ticker.as_mut() {
            Some(t) => {
                tokio::select! {
                    _ = t.tick() => {}
                    _ = stopping.changed() => break,
                }
            }
            None => tokio::task::yield_now().await,
        }
        let (seq, data) = generator.next_event();
        metrics.generated(&cfg.id);
        if let Some(Some(l)) = ledgers.lock().unwrap().get_mut(index as usize) {
            l.set_generated(seq + 1);
        }
        sent += 1;
        match buffer.push(Event { source: index, seq, data }).await {
            Ok(Push::Stored) => {}
            Ok(Push::Dropped) => sink::record(&ledgers, Kind::Dropped, &[(index, seq)]),
            Ok(Push::Closed) => {
                sink::record(&ledgers, Kind::Held, &[(index, seq)]);
                break;
            }
            Err(e) => {
                eprintln!("chaoslab-agent: buffer write failed: {e}");
                std::process::exit(1); // an I/O error on the disk buffer ends the agent, as in Vector
            }
        }
    }
}

fn agent(config_path: &str) -> i32 {
    let env: HashMap<String, String> = std::env::vars().collect();
    let cfg = match config::load(config_path, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaoslab-agent: configuration error: {e}");
            return 78;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new(&cfg.sink.id));
        if let Some(addr) = &cfg.metrics_address {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tokio::spawn(serve_metrics(l, metrics.clone()));
                }
                Err(e) => {
                    eprintln!("chaoslab-agent: cannot listen on {addr}: {e}");
                    return 1;
                }
            }
        }
        let buffer = match Buffer::new(cfg.sink.buffer.clone(), metrics.clone(), &cfg.data_dir, &cfg.sink.id) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                eprintln!("chaoslab-agent: cannot open the buffer under {}: {e}", cfg.data_dir);
                return 1;
            }
        };
        let inputs: Vec<config::DemoLogs> = cfg.sources.values().filter(|s| cfg.sink.inputs.contains(&s.id)).cloned().collect();
        let mut ledgers = Vec::new();
        for s in &inputs {
            match Ledger::open(&cfg.data_dir, &s.id) {
                Ok(l) => ledgers.push(Some(l)),
                Err(e) => {
                    eprintln!("chaoslab-agent: cannot open the accounting ledger for {}: {e}", s.id);
                    ledgers.push(None);
                }
            }
        }
        let ledgers = Arc::new(Mutex::new(ledgers));
        let mut sink = sink::Sink::new(cfg.sink.clone(), buffer.clone(), metrics.clone(), ledgers.clone());
        if let Err(e) = sink.build().await {
            eprintln!("chaoslab-agent: {e}");
            return 1;
        }
        eprintln!("chaoslab-agent: sink {} -> {} ({:?} buffer, when_full={:?})", cfg.sink.id, cfg.sink.topic,
                  cfg.sink.buffer.kind, cfg.sink.buffer.when_full);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut producers = Vec::new();
        for (i, s) in inputs.into_iter().enumerate() {
            producers.push(tokio::spawn(produce(i as u16, s, buffer.clone(), metrics.clone(), ledgers.clone(), stop_rx.clone())));
        }
        let drain = Duration::from_secs_f64(std::env::var("AGENT_DRAIN_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10.0));
        let stopping = Arc::new(stop_rx);
        let shipping = tokio::spawn({
            let stopping = stopping.clone();
            async move { sink.run(stopping, drain).await }
        });
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("chaoslab-agent: stopping; draining the buffer for up to {:.0} s", drain.as_secs_f64());
        let _ = stop_tx.send(true);
        for p in producers {
            let _ = p.await;
        }
        let _ = shipping.await;
        buffer.close();
        let held = buffer.held();
        sink::record(&ledgers, Kind::Held, &held);
        eprintln!("chaoslab-agent: stopped; {} events still in the buffer", held.len());
        0
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("resident") => {
            // SIGTERM's default action ends it: there is nothing to flush.
            match resident::run(Arc::new(AtomicBool::new(false))) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("chaoslab-agent resident: {e}");
                    1
                }
            }
        }
        Some("--help") | Some("-h") => {
            println!("usage: chaoslab-agent [--config FILE] | chaoslab-agent resident");
            0
        }
        _ => {
            let path = match args.iter().position(|a| a == "--config" || a == "-c") {
                Some(i) => args.get(i + 1).cloned().unwrap_or_default(),
                None => std::env::var("VECTOR_CONFIG").unwrap_or_else(|_| "/etc/vector/vector.toml".into()),
            };
            agent(&path)
        }
    };
    std::process::exit(code);
}
