//! Vector's pulsar sink, as the stand-in implements it.
//!
//! - Start-up: the client connects with exponential backoff (`connection_retry_options`); if the
//!   broker never answers, the sink fails to build and the agent exits non-zero, as Vector does.
//! - Run time: one batch in flight. While a send has not completed the sink pulls nothing more, so
//!   the buffer fills and its `when_full` applies. A batch whose send fails or does not complete
//!   within the send timeout (30 s) is dropped and counted (component_errors_total,
//!   component_discarded_events_total{intentional="false"}) and its sequence numbers go to the
//!   ledger as `failed`; the producer is then rebuilt before the next batch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use pulsar::producer::ProducerOptions;
use pulsar::{ConnectionRetryOptions, OperationRetryOptions, Producer, Pulsar, TokioExecutor};

use crate::buffer::{Buffer, Event};
use crate::config::PulsarSink;
use crate::ledger::{Kind, Ledger};
use crate::metrics::Metrics;

pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Sink {
    config: PulsarSink,
    buffer: Arc<Buffer>,
    metrics: Arc<Metrics>,
    ledgers: Arc<Mutex<Vec<Option<Ledger>>>>,
    client: Option<Pulsar<TokioExecutor>>,
    producer: Option<Producer<TokioExecutor>>,
}

impl Sink {
    pub fn new(config: PulsarSink, buffer: Arc<Buffer>, metrics: Arc<Metrics>, ledgers: Arc<Mutex<Vec<Option<Ledger>>>>) -> Sink {
        Sink { config, buffer, metrics, ledgers, client: None, producer: None }
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

    /// Vector's start-up: build the sink or fail.
    pub async fn build(&mut self) -> Result<(), String> {
        self.connect().await.map_err(|e| format!("sink {}: cannot connect to {}: {e}", self.config.id, self.config.endpoint))
    }

    /// Ship until `stopping` is set and the buffer is empty (or `drain` has passed since).
    pub async fn run(&mut self, stopping: Arc<tokio::sync::watch::Receiver<bool>>, drain: Duration) {
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        loop {
            if *stopping.borrow() {
                let deadline = *drain_deadline.get_or_insert_with(|| tokio::time::Instant::now() + drain);
                if self.buffer.len() == 0 || tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            if self.producer.is_none() {
                if let Err(e) = tokio::time::timeout(SEND_TIMEOUT, self.connect()).await.unwrap_or_else(|_| Err(pulsar::Error::Custom("timed out".into()))) {
                    eprintln!("chaoslab-agent: sink {}: reconnect failed: {e}", self.config.id);
                    self.client = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            let max = self.config.batch_max_events;
            let mut batch = self.buffer.pop(max, Duration::from_millis(500)).await;
            // Vector's batching: the batch goes out when full or batch.timeout_secs after its first event.
            let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(self.config.batch_timeout_secs);
            while !batch.is_empty() && batch.len() < max && !*stopping.borrow() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                let more = self.buffer.pop(max - batch.len(), left).await;
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
