//! Vector's demo_logs source: generated log lines at a fixed interval, optionally prefixed with a
//! sequence number, encoded as the pulsar sink's json codec would send them.

use std::time::SystemTime;

use serde::Serialize;

use crate::config::{DemoLogs, Format};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
const PATHS: [&str; 6] = ["/api/v1/orders", "/api/v1/users", "/healthz", "/static/app.js", "/login", "/api/v1/cart"];
const STATUSES: [u16; 10] = [200, 200, 200, 201, 204, 301, 400, 404, 500, 503];

#[derive(Serialize)]
struct Encoded<'a> {
    message: &'a str,
    timestamp: String,
    host: &'a str,
    source_type: &'static str,
    service: &'static str,
}

pub struct Generator {
    config: DemoLogs,
    host: String,
    next_seq: u64,
    rng: u64,
}

impl Generator {
    pub fn new(config: DemoLogs, host: String, seed: u64) -> Generator {
        Generator { config, host, next_seq: 0, rng: seed | 1 }
    }

    /// xorshift64*: only picks lines and fake fields; nothing here needs a cryptographic RNG.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_random() % items.len() as u64) as usize]
    }

    fn line(&mut self, now: &str) -> String {
        match self.config.format.clone() {
            Format::Shuffle(lines) => self.pick(&lines).clone(),
            Format::Json => {
                let (a, b, c) = (self.next_random() % 256, self.next_random() % 256, self.next_random() % 256);
                let (m, p, s) = (*self.pick(&METHODS), *self.pick(&PATHS), *self.pick(&STATUSES));
                let user = self.next_random() % 1000;
                let bytes = 100 + self.next_random() % 49_900;
                serde_json::json!({"host": format!("10.{a}.{b}.{c}"), "user-identifier": format!("user{user}"),
                    "datetime": now, "method": m, "request": p, "protocol": "HTTP/1.1", "status": s.to_string(),
                    "bytes": bytes, "referer": "https://example.com/"}).to_string()
            }
            Format::ApacheCommon => {
                let (a, b) = (self.next_random() % 256, self.next_random() % 256);
                let (m, p, s) = (*self.pick(&METHODS), *self.pick(&PATHS), *self.pick(&STATUSES));
                format!("{a}.{b}.0.1 - user{} [{now}] \"{m} {p} HTTP/1.1\" {s} {}", self.next_random() % 1000,
                        100 + self.next_random() % 49_900)
            }
        }
    }

    /// The next event and its sequence number (counted whether or not it is printed in the line).
    pub fn next_event(&mut self) -> (u64, Vec<u8>) {
        let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let mut line = self.line(&now);
        let seq = self.next_seq;
        if self.config.sequence {
            line = format!("{seq} {line}");
        }
        self.next_seq += 1;
        let encoded = Encoded { message: &line, timestamp: now, host: &self.host, source_type: "demo_logs", service: "vector" };
        // Sized up front: a Vec grown by doubling would hold up to twice the event in the buffer.
        let mut out = Vec::with_capacity(line.len() + encoded.host.len() + 128);
        serde_json::to_writer(&mut out, &encoded).expect("plain strings always encode");
        out.shrink_to_fit();
        (seq, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(format: Format, sequence: bool) -> DemoLogs {
        DemoLogs { id: "app".into(), format, interval_secs: 0.0, sequence, count: None }
    }

    #[test]
    fn sequenced_events_carry_their_number_and_host() {
        let mut g = Generator::new(source(Format::Shuffle(vec!["GET / 200".into()]), true), "vm-a-1".into(), 7);
        for want in 0..3u64 {
            let (seq, data) = g.next_event();
            assert_eq!(seq, want);
            let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(v["message"], format!("{want} GET / 200"));
            assert_eq!(v["host"], "vm-a-1");
            assert_eq!(v["source_type"], "demo_logs");
        }
    }

    #[test]
    fn json_format_is_a_json_line() {
        let mut g = Generator::new(source(Format::Json, false), "h".into(), 1);
        let (_, data) = g.next_event();
        let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
        let inner: serde_json::Value = serde_json::from_str(v["message"].as_str().unwrap()).unwrap();
        assert!(inner["method"].is_string());
    }
}
