//! chaoslab-agent: the telemetry agent inside every pico/nano VM container, chaoslab's stand-in
//! for Vector (vector.dev cannot be installed here). It reads the same TOML (demo_logs sources, one
//! pulsar sink with Vector's buffer settings, a prometheus_exporter), keeps Vector's buffer
//! semantics, and exports Vector's metric names on :9598.
//!
//!     chaoslab-agent [--config /etc/vector/vector.toml]
//!     chaoslab-agent check-config [--config FILE]  # parse FILE + the environment, print what was read
//!     chaoslab-agent resident          # the VM's resident application (RESIDENT_MB)
//!
//! Exit codes: 0 stopped by SIGTERM/SIGINT (what it still held is written down), 1 the metrics
//! address or the buffer could not be opened, 78 configuration error. `check-config` exits 0 with
//! the configuration as read (one JSON line on stdout), or 78 with the same one-line error the
//! agent would stop with. An unreachable broker is
//! not an exit: the agent keeps running and buffering, as Vector does.
//!
//! Stop: on SIGTERM the sources stop, the sink drains the buffer for up to AGENT_DRAIN_SECS
//! (default 10 s) and may finish a send in flight (30 s send timeout), then every event still in
//! the agent's hands goes to the ledger as `held`. It exits within AGENT_DRAIN_SECS +
//! sink::SHUTDOWN_SLACK; whoever stops it must wait that long, or the kill leaves events unaccounted.

mod buffer;
mod config;
mod ledger;
mod metrics;
mod resident;
mod sink;
mod source;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use buffer::{Buffer, Event, Push};
use sink::Stop;
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
                 ledgers: Arc<Mutex<Vec<Option<Ledger>>>>, mut stop: Stop) {
    let mut generator = source::Generator::new(cfg.clone(), hostname(), std::process::id() as u64 ^ 0x5DEECE66D);
    let mut ticker = (cfg.interval_secs > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(cfg.interval_secs));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut sent = 0u64;
    while stop.borrow().is_none() && cfg.count.is_none_or(|c| sent < c) {
        match ticker.as_mut() {
            Some(t) => {
                tokio::select! {
                    _ = t.tick() => {}
                    _ = sink::stopping(&mut stop) => break,
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

/// How long the sink drains the buffer after a SIGTERM: AGENT_DRAIN_SECS, default 10 s.
fn drain_secs(env: &HashMap<String, String>) -> Result<Duration, String> {
    match env.get("AGENT_DRAIN_SECS") {
        None => Ok(Duration::from_secs(10)),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
            _ => Err(format!("AGENT_DRAIN_SECS must be a number of seconds >= 0, not {v:?}")),
        },
    }
}

/// Everything the agent reads before it starts: the config file and the environment.
fn configuration(config_path: &str, env: &HashMap<String, String>) -> Result<(config::AgentConfig, Duration), String> {
    let cfg = config::load(config_path, env).map_err(|e| e.to_string())?;
    Ok((cfg, drain_secs(env)?))
}

/// `check-config`: what the agent would run with, or why it would not start (exit 78).
fn check_config(config_path: &str) -> i32 {
    let env: HashMap<String, String> = std::env::vars().collect();
    match configuration(config_path, &env) {
        Ok((cfg, drain)) => {
            let mut summary = cfg.summary();
            summary["drain_secs"] = drain.as_secs_f64().into();
            println!("{summary}");
            0
        }
        Err(e) => {
            eprintln!("chaoslab-agent: configuration error: {e}");
            78
        }
    }
}

fn agent(config_path: &str) -> i32 {
    let env: HashMap<String, String> = std::env::vars().collect();
    let (cfg, drain) = match configuration(config_path, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaoslab-agent: configuration error: {e}");
            return 78;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async move {
        // installed before anything starts, so that an early SIGTERM is not missed
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        run(cfg, drain, async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }).await
    })
}

/// The agent from start to stop: `stop_signal` resolving is the SIGTERM.
async fn run(cfg: config::AgentConfig, drain: Duration, stop_signal: impl Future<Output = ()>) -> i32 {
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
    // No connection before the sources start: an unreachable broker is retried by the sink while
    // the buffer takes the events (Vector without --require-healthy).
    let mut sink = sink::Sink::new(cfg.sink.clone(), buffer.clone(), metrics.clone(), ledgers.clone());
    eprintln!("chaoslab-agent: sink {} -> {} at {} ({:?} buffer, when_full={:?}, drain {:.0} s)", cfg.sink.id,
              cfg.sink.topic, cfg.sink.endpoint, cfg.sink.buffer.kind, cfg.sink.buffer.when_full, drain.as_secs_f64());
    let failed_connects = sink.failed_connects();
    let (stop_tx, stop_rx) = watch::channel(None);
    let mut producers = Vec::new();
    for (i, s) in inputs.into_iter().enumerate() {
        producers.push(tokio::spawn(produce(i as u16, s, buffer.clone(), metrics.clone(), ledgers.clone(), stop_rx.clone())));
    }
    let shipping = tokio::spawn(async move { sink.run(stop_rx).await });
    stop_signal.await;
    eprintln!("chaoslab-agent: stopping; draining the buffer for up to {:.0} s, stopped within {:.1} s",
              drain.as_secs_f64(), (drain + sink::SHUTDOWN_SLACK).as_secs_f64());
    let _ = stop_tx.send(Some(tokio::time::Instant::now() + drain));
    // The sink first: a source blocked on a full buffer (when_full = block) waits for the sink,
    // and only the closed buffer releases it once the sink has stopped taking events.
    let _ = shipping.await;
    buffer.close();
    for p in producers {
        let _ = p.await;
    }
    let held = buffer.held();
    sink::record(&ledgers, Kind::Held, &held);
    eprintln!("chaoslab-agent: stopped; {} events still in the buffer ({} failed connection attempts)", held.len(),
              failed_connects.load(std::sync::atomic::Ordering::Relaxed));
    0
}

/// `--config FILE` / `-c FILE` / a bare FILE, else VECTOR_CONFIG, else /etc/vector/vector.toml.
fn config_path(args: &[String]) -> String {
    match args.iter().position(|a| a == "--config" || a == "-c") {
        Some(i) => args.get(i + 1).cloned().unwrap_or_default(),
        None => match args.first() {
            Some(a) if !a.starts_with('-') => a.clone(),
            _ => std::env::var("VECTOR_CONFIG").unwrap_or_else(|_| "/etc/vector/vector.toml".into()),
        },
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("check-config") => check_config(&config_path(&args[1..])),
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
            println!("usage: chaoslab-agent [--config FILE] | chaoslab-agent check-config [--config FILE] | \
                      chaoslab-agent resident");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn config(data_dir: &str, buffer: &str) -> config::AgentConfig {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let text = format!(r#"
data_dir = "{data_dir}"
[sources.app]
type = "demo_logs"
format = "shuffle"
lines = ["GET / 200"]
interval = 0.01
sequence = true
[sinks.bus]
type = "pulsar"
inputs = ["app"]
endpoint = "pulsar://127.0.0.1:{port}"
topic = "persistent://public/default/t"
encoding.codec = "json"
connection_retry_options.max_retries = 0
connection_retry_options.connection_timeout_secs = 1
[sinks.bus.buffer]
{buffer}
"#);
        config::parse(&text, &HashMap::new()).unwrap()
    }

    /// (generated, {kind: sequence numbers}) from the agent's accounting files.
    fn books(dir: &std::path::Path) -> (u64, HashMap<String, BTreeSet<u64>>) {
        let n = std::fs::read(dir.join("accounting/app.generated")).unwrap();
        let mut kinds: HashMap<String, BTreeSet<u64>> = HashMap::new();
        for line in std::fs::read_to_string(dir.join("accounting/app.ledger")).unwrap().lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            let (a, b): (u64, u64) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
            kinds.entry(parts[0].to_string()).or_default().extend(a..=b);
        }
        (u64::from_le_bytes(n[..8].try_into().unwrap()), kinds)
    }

    /// With the bus unreachable from the start, the agent keeps running and buffering; stopped, it
    /// returns 0 by its drain deadline and every event it stamped is written down (none unaccounted).
    async fn unreachable_bus_then_stop(buffer: &str) -> (u64, HashMap<String, BTreeSet<u64>>) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path().to_str().unwrap(), buffer);
        let (fire, signalled) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(run(cfg, Duration::from_millis(500), async move {
            let _ = signalled.await;
        }));
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert!(!agent.is_finished(), "an unreachable bus must not end the agent");
        fire.send(()).unwrap();
        let code = tokio::time::timeout(Duration::from_secs(10), agent).await
            .expect("the agent stops by its drain deadline, even with a source blocked on a full buffer").unwrap();
        assert_eq!(code, 0);
        books(dir.path())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_source_and_an_unreachable_bus_leave_nothing_unaccounted() {
        let (generated, kinds) = unreachable_bus_then_stop("type = \"memory\"\nmax_events = 5\nwhen_full = \"block\"").await;
        assert_eq!(generated, 6, "5 in the buffer and 1 waiting for room");
        assert_eq!(kinds.get("held").cloned().unwrap_or_default(), (0..generated).collect::<BTreeSet<u64>>());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn drop_newest_books_close_too() {
        let (generated, kinds) = unreachable_bus_then_stop("type = \"memory\"\nmax_events = 5\nwhen_full = \"drop_newest\"").await;
        assert!(generated > 50, "the source kept generating: {generated}");
        let held = kinds.get("held").cloned().unwrap_or_default();
        let dropped = kinds.get("dropped").cloned().unwrap_or_default();
        assert_eq!(held, (0..5).collect::<BTreeSet<u64>>());
        assert_eq!(held.union(&dropped).copied().collect::<BTreeSet<u64>>(), (0..generated).collect::<BTreeSet<u64>>());
    }

    #[test]
    fn check_config_reads_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "[sources.app]\ntype = \"demo_logs\"\n[sinks.bus]\ntype = \"pulsar\"\ninputs = [\"app\"]\n\
                               endpoint = \"${EP:-pulsar://proxy:6650}\"\ntopic = \"t\"\nencoding.codec = \"json\"\n").unwrap();
        let path = good.to_str().unwrap();
        let (cfg, drain) = configuration(path, &HashMap::new()).unwrap();
        assert_eq!((cfg.sink.endpoint.as_str(), drain), ("pulsar://proxy:6650", Duration::from_secs(10)));
        let env = HashMap::from([("EP".to_string(), "pulsar://x:1".to_string()), ("AGENT_DRAIN_SECS".to_string(), "3".to_string())]);
        let (cfg, drain) = configuration(path, &env).unwrap();
        assert_eq!((cfg.sink.endpoint.as_str(), drain), ("pulsar://x:1", Duration::from_secs(3)));
        let bad_drain = HashMap::from([("AGENT_DRAIN_SECS".to_string(), "soon".to_string())]);
        assert!(configuration(path, &bad_drain).unwrap_err().starts_with("AGENT_DRAIN_SECS must be"));
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, std::fs::read_to_string(&good).unwrap() + "[sinks.bus.buffer]\ntype = \"disk\"\n").unwrap();
        assert_eq!(configuration(broken.to_str().unwrap(), &HashMap::new()).unwrap_err(),
                   "sinks.bus.buffer.max_size is required for disk buffers");
        assert!(configuration("/nonexistent/x.toml", &HashMap::new()).unwrap_err().starts_with("cannot read /nonexistent/x.toml"));
    }

    #[test]
    fn config_path_takes_the_flag_or_a_bare_file() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(config_path(&args(&["--config", "a.toml"])), "a.toml");
        assert_eq!(config_path(&args(&["-c", "b.toml"])), "b.toml");
        assert_eq!(config_path(&args(&["c.toml"])), "c.toml");
    }

    #[test]
    fn drain_secs_is_declared_or_rejected() {
        let env = |v: &str| HashMap::from([("AGENT_DRAIN_SECS".to_string(), v.to_string())]);
        assert_eq!(drain_secs(&HashMap::new()).unwrap(), Duration::from_secs(10));
        assert_eq!(drain_secs(&env("2.5")).unwrap(), Duration::from_millis(2_500));
        assert!(drain_secs(&env("ten")).is_err());
        assert!(drain_secs(&env("-1")).is_err());
    }
}
