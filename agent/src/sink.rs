//! Vector's pulsar sink, as the stand-in implements it.
//!
//! - Start-up: the agent does not wait for the bus. Like Vector without `--require-healthy`, it
//!   starts its sources at once and keeps running while the broker cannot be reached: events go
//!   into the buffer (whose `when_full` applies once it is full) while the sink retries the
//!   connection with capped exponential backoff (1 s, 2 s, 4 s ... 30 s), one log line per failed
//!   attempt. Each attempt is the client's own connect with `connection_retry_options`, bounded
//!   by the send timeout.
//! - Run time: one batch in flight. While a send has not completed the sink pulls nothing more, so
//!   the buffer fills and its `when_full` applies. A batch whose send fails or does not complete
//!   within the send timeout (30 s) is dropped and counted (component_errors_total,
//!   component_discarded_events_total{intentional="false"}) and its sequence numbers go to the
//!   ledger as `failed`; the producer is then rebuilt before the next batch.
//! - Stop: the stop carries a drain deadline. The sink ships until the buffer is empty or the
//!   deadline has passed; it starts nothing after the deadline, so it returns at most one send
//!   timeout (plus the producer's close, 2 s) after it: see `SHUTDOWN_SLACK`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use pulsar::producer::ProducerOptions;
use pulsar::{ConnectionRetryOptions, OperationRetryOptions, Producer, Pulsar, TokioExecutor};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::buffer::{Buffer, Event};
use crate::config::PulsarSink;
use crate::ledger::{Kind, Ledger};
use crate::metrics::Metrics;

pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// After the drain deadline: one send in flight (SEND_TIMEOUT), the last wait for events (0.5 s)
/// and the producer's close (2 s). The agent returns within drain + SHUTDOWN_SLACK of a SIGTERM
/// (plus the time to write down what the buffer still holds).
pub const SHUTDOWN_SLACK: Duration = Duration::from_millis(30_000 + 500 + 2_000);
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// None while running; Some(deadline) once the agent is stopping: drain until then.
pub type Stop = watch::Receiver<Option<Instant>>;

/// The wait after `failures` failed connection attempts in a row: 1 s, 2 s, 4 s ... capped at 30 s.
pub fn backoff(failures: u32) -> Duration {
    RETRY_INITIAL.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(RETRY_MAX)
}

/// Resolves once the stop has been given (never, if it cannot be given any more).
pub async fn stopping(stop: &mut Stop) {
    if stop.wait_for(|d| d.is_some()).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub struct Sink {
    config: PulsarSink,
    buffer: Arc<Buffer>,
    metrics: Arc<Metrics>,
    ledgers: Arc<Mutex<Vec<Option<Ledger>>>>,
    client: Option<Pulsar<TokioExecutor>>,
    producer: Option<Producer<TokioExecutor>>,
    failed_connects: Arc<AtomicU64>,
}

impl Sink {
    pub fn new(config: PulsarSink, buffer: Arc<Buffer>, metrics: Arc<Metrics>, ledgers: Arc<Mutex<Vec<Option<Ledger>>>>) -> Sink {
        Sink { config, buffer, metrics, ledgers, client: None, producer: None, failed_connects: Arc::new(AtomicU64::new(0)) }
    }

    /// Failed connection attempts so far (each one logged).
    pub fn failed_connects(&self) -> Arc<AtomicU64> {
        self.failed_connects.clone()
    }

    async fn connect(&mut self) -> Result<(), pulsar::Error> {
        if self.client.is_none() {
            let retry = ConnectionRetryOptions {
                max_retries: self.config.connection_max_retries,
                connection_timeout: Duration::from_secs_f64(self.config.connection_timeout_secs),
                ..Default::default()
            };
            let operations = OperationRetryOptions { operation_timeout: SEND_TIMEOUT, ..Default::default() };
            let client = Pulsar::builder(self.config.endpoint.clone(), TokioExecutor)
                .with_connection_retry_options(retry)
                .with_operation_retry_options(operations)
                .build().await?;
            self.client = Some(client);
        }
        let options = ProducerOptions {
            batch_size: Some(self.config.batch_max_events as u32),
            batch_timeout: Some(Duration::from_millis(10)),
            ..Default::default()
        };
        let mut builder = self.client.as_ref().unwrap().producer().with_topic(self.config.topic.clone()).with_options(options);
        if let Some(name) = &self.config.producer_name {
            builder = builder.with_name(name.clone());
        }
        self.producer = Some(builder.build().await?);
        Ok(())
    }

    /// Ship until the stop is given and the buffer is empty, or its drain deadline has passed.
    /// Never gives up on an unreachable broker: retries with capped exponential backoff.
    pub async fn run(&mut self, mut stop: Stop) {
        let mut failures = 0u32;
        loop {
            let deadline = *stop.borrow();
            if let Some(d) = deadline {
                if self.buffer.len() == 0 || Instant::now() >= d {
                    break;
                }
            }
            if self.producer.is_none() {
                let limit = deadline.map_or(SEND_TIMEOUT, |d| SEND_TIMEOUT.min(d.saturating_duration_since(Instant::now())));
                let attempt = tokio::time::timeout(limit, self.connect());
                let result = if deadline.is_none() {
                    tokio::select! {
                        r = attempt => Some(r),
                        _ = stopping(&mut stop) => None, // look again, now with a drain deadline
                    }
                } else {
                    Some(attempt.await)
                };
                let error = match result {
                    None => continue,
                    Some(Ok(Ok(()))) => {
                        if failures > 0 {
                            eprintln!("chaoslab-agent: sink {}: connected to {} after {failures} failed attempt(s)",
                                      self.config.id, self.config.endpoint);
                        }
                        failures = 0;
                        None
                    }
                    Some(Ok(Err(e))) => Some(e.to_string()),
                    Some(Err(_)) => Some(format!("no answer within {:.0} s", limit.as_secs_f64())),
                };
                if let Some(e) = error {
                    failures += 1;
                    self.failed_connects.fetch_add(1, Ordering::Relaxed);
                    self.client = None;
                    self.producer = None;
                    let wait = backoff(failures);
                    eprintln!("chaoslab-agent: sink {}: cannot connect to {} (attempt {failures}): {}; retrying in {:.0} s, \
                               {} events buffered", self.config.id, self.config.endpoint,
                              e.lines().next().unwrap_or_default(), wait.as_secs_f64(), self.buffer.len());
                    let until = Instant::now() + wait;
                    let current = *stop.borrow();
                    match current {
                        Some(d) => tokio::time::sleep_until(until.min(d)).await,
                        None => tokio::select! {
                            _ = tokio::time::sleep_until(until) => {}
                            _ = stopping(&mut stop) => {}
                        },
                    }
                    continue;
                }
            }
            let max = self.config.batch_max_events;
            let mut batch = self.buffer.pop(max, Duration::from_millis(500)).await;
            // Vector's batching: the batch goes out when full or batch.timeout_secs after its first event.
            let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(self.config.batch_timeout_secs);
            while !batch.is_empty() && batch.len() < max && stop.borrow().is_none() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                let more = tokio::select! {
                    more = self.buffer.pop(max - batch.len(), left) => more,
                    _ = stopping(&mut stop) => break, // the stop sends what is batched at once
                };
                if more.is_empty() {
                    break;
                }
                batch.extend(more);
            }
            if !batch.is_empty() {
                self.send(batch).await;
            }
        }
        if let Some(p) = self.producer.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), p.close()).await;
        }
    }

    async fn send(&mut self, batch: Vec<Event>) {
        let keys: Vec<(u16, u64)> = batch.iter().map(|e| (e.source, e.seq)).collect();
        let producer = self.producer.as_mut().expect("connected before sending");
        let attempt = async {
            let mut receipts = Vec::with_capacity(batch.len());
            for event in batch {
                receipts.push(producer.send_non_blocking(event.data).await);
            }
            let flushed = producer.send_batch().await;
            let mut ok = Vec::with_capacity(receipts.len());
            for r in join_all(receipts.into_iter().map(|r| async move {
                match r {
                    Ok(fut) => fut.await.is_ok(),
                    Err(_) => false,
                }
            })).await {
                ok.push(r);
            }
            (ok, flushed.is_ok())
        };
        let (ok, healthy) = match tokio::time::timeout(SEND_TIMEOUT, attempt).await {
            Ok((ok, flushed)) => {
                let all = ok.iter().all(|x| *x);
                (ok, flushed || all)
            }
            Err(_) => (vec![false; keys.len()], false),
        };
        let delivered = ok.iter().filter(|x| **x).count() as u64;
        if delivered > 0 {
            self.metrics.sink_delivered(delivered);
        }
        let failed: Vec<(u16, u64)> = keys.iter().zip(ok.iter()).filter(|(_, ok)| !**ok).map(|(k, _)| *k).collect();
        if !failed.is_empty() {
            self.metrics.sink_failed(failed.len() as u64, "request_failed");
            record(&self.ledgers, Kind::Failed, &failed);
        }
        if !healthy || !failed.is_empty() {
            eprintln!("chaoslab-agent: sink {}: {} of {} events not acknowledged; rebuilding the producer",
                      self.config.id, failed.len(), keys.len());
            self.producer = None;
            self.client = None;
        }
    }
}

/// Ledger lines for (source, seq) pairs, grouped by source.
pub fn record(ledgers: &Mutex<Vec<Option<Ledger>>>, kind: Kind, keys: &[(u16, u64)]) {
    let mut ledgers = ledgers.lock().unwrap();
    for (i, ledger) in ledgers.iter_mut().enumerate() {
        if let Some(l) = ledger {
            let seqs: Vec<u64> = keys.iter().filter(|(s, _)| *s as usize == i).map(|(_, q)| *q).collect();
            l.record(kind, &seqs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BufferConfig, BufferType, WhenFull};
    use crate::buffer::Push;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }

    /// A port nothing listens on (bound, then released).
    pub fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_broker_is_retried_while_the_buffer_takes_events() {
        let cfg = PulsarSink {
            id: "bus".into(), inputs: vec!["app".into()], endpoint: format!("pulsar://127.0.0.1:{}", closed_port()),
            topic: "persistent://public/default/t".into(), producer_name: None, batch_max_events: 10,
            batch_timeout_secs: 0.1, compression: "none".into(),
            buffer: BufferConfig { kind: BufferType::Memory, max_events: Some(100), max_size: None, when_full: WhenFull::Block },
            connection_max_retries: 0, connection_timeout_secs: 1.0,
        };
        let buffer = Arc::new(Buffer::new(cfg.buffer.clone(), Arc::new(Metrics::new("bus")), "/nonexistent", "bus").unwrap());
        let mut sink = Sink::new(cfg, buffer.clone(), Arc::new(Metrics::new("bus")), Arc::new(Mutex::new(Vec::new())));
        let failed = sink.failed_connects();
        let (stop, stop_rx) = watch::channel(None);
        let task = tokio::spawn(async move { sink.run(stop_rx).await });
        for seq in 0..20 {
            let event = Event { source: 0, seq, data: b"x".to_vec() };
            assert_eq!(buffer.push(event).await.unwrap(), Push::Stored);
        }
        tokio::time::sleep(Duration::from_millis(3_500)).await; // attempts at about 0 s, 1 s and 3 s
        assert!(!task.is_finished(), "an unreachable broker must not end the sink");
        assert!(failed.load(Ordering::Relaxed) >= 2, "the sink retries the connection");
        assert_eq!(buffer.len(), 20, "nothing is taken out while nothing can be sent");
        stop.send(Some(Instant::now() + Duration::from_millis(500))).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("the drain deadline ends the sink").unwrap();
        assert_eq!(buffer.held().len(), 20);
    }
}
