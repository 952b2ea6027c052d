//! Vector-style TOML configuration: the subset of Vector's config the lab uses, with Vector's
//! rules. `${VAR}` / `${VAR:-default}` interpolation, `sources.<id>` / `sinks.<id>` tables with
//! `type` and `inputs`, and the sink buffer table with Vector's keys and limits. Anything Vector
//! would reject is rejected with one line naming the key. `chaoslab-agent check-config` runs this
//! parser on a file (chaoslab's unit tests check the TOML the lab generates with it), and the
//! experiment spec's `buffer` rules (chaoslab/workload/vm_agents.py) are held to these messages.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use regex::{Captures, Regex};
use toml::Value;

/// Two 128 MiB data files + a 32-byte ledger: Vector's minimum disk buffer.
pub const MIN_DISK_BUFFER_BYTES: u64 = 268_435_488;
pub const DEFAULT_MAX_EVENTS: u64 = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    Memory,
    Disk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    Block,
    DropNewest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BufferConfig {
    pub kind: BufferType,
    pub max_events: Option<u64>,
    pub max_size: Option<u64>,
    pub when_full: WhenFull,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig { kind: BufferType::Memory, max_events: Some(DEFAULT_MAX_EVENTS), max_size: None, when_full: WhenFull::Block }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    Json,
    ApacheCommon,
    Shuffle(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoLogs {
    pub id: String,
    pub format: Format,
    pub interval_secs: f64,
    pub sequence: bool,
    pub count: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PulsarSink {
    pub id: String,
    pub inputs: Vec<String>,
    pub endpoint: String,
    pub topic: String,
    pub producer_name: Option<String>,
    pub batch_max_events: usize,
    /// Vector's `batch.timeout_secs`: a batch goes out when full or this long after its first event.
    pub batch_timeout_secs: f64,
    pub compression: String,
    pub buffer: BufferConfig,
    pub connection_max_retries: u32,
    pub connection_timeout_secs: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub data_dir: String,
    pub sources: BTreeMap<String, DemoLogs>,
    pub sink: PulsarSink,
    pub metrics_address: Option<String>,
}

/// Vector's `${VAR}` rules: `${VAR:-default}` also replaces an empty value.
pub fn interpolate(text: &str, env: &HashMap<String, String>) -> Result<String, ConfigError> {
    let re = Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}").unwrap();
    let mut missing: Option<String> = None;
    let out = re.replace_all(text, |c: &Captures| {
        let name = &c[1];
        let default = c.get(2).map(|m| m.as_str());
        match (env.get(name), default) {
            (Some(v), Some(d)) if v.is_empty() => d.to_string(),
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                missing.get_or_insert_with(|| name.to_string());
                String::new()
            }
        }
    });
    match missing {
        Some(name) => err(format!("environment variable {name} is not set")),
        None => Ok(out.into_owned()),
    }
}

fn positive(where_: &str, key: &str, v: Option<&Value>) -> Result<Option<u64>, ConfigError> {
    match v {
        None => Ok(None),
        Some(Value::Integer(n)) if *n > 0 => Ok(Some(*n as u64)),
        Some(_) => err(format!("{where_}.{key} must be a positive integer")),
    }
}

impl BufferConfig {
    pub fn parse(sink_id: &str, table: Option<&Value>) -> Result<BufferConfig, ConfigError> {
        let where_ = format!("sinks.{sink_id}.buffer");
        let empty = toml::map::Map::new();
        let table = match table {
            None => &empty,
            Some(Value::Table(t)) => t,
            Some(_) => return err(format!("{where_} must be a table")),
        };
        let mut unknown: Vec<&str> = table.keys().map(String::as_str)
            .filter(|k| !["type", "max_events", "max_size", "when_full"].contains(k)).collect();
        if !unknown.is_empty() {
            unknown.sort();
            return err(format!("{where_}: unknown key(s) {}", unknown.join(", ")));
        }
        let kind = match table.get("type").map(|v| v.as_str()) {
            None | Some(Some("memory")) => BufferType::Memory,
            Some(Some("disk")) => BufferType::Disk,
            Some(other) => return err(format!("{where_}.type must be 'memory' or 'disk', not {}", show(other, table.get("type")))),
        };
        let when_full = match table.get("when_full").map(|v| v.as_str()) {
            None | Some(Some("block")) => WhenFull::Block,
            Some(Some("drop_newest")) => WhenFull::DropNewest,
            Some(other) => return err(format!("{where_}.when_full must be 'block' or 'drop_newest', not {}", show(other, table.get("when_full")))),
        };
        let mut max_events = positive(&where_, "max_events", table.get("max_events"))?;
        let max_size = positive(&where_, "max_size", table.get("max_size"))?;
        match kind {
            BufferType::Disk => {
                if max_events.is_some() {
                    return err(format!("{where_}.max_events applies to memory buffers only"));
                }
                match max_size {
                    None => return err(format!("{where_}.max_size is required for disk buffers")),
                    Some(s) if s < MIN_DISK_BUFFER_BYTES => {
                        return err(format!("{where_}.max_size must be at least {MIN_DISK_BUFFER_BYTES} bytes for disk buffers"))
                    }
                    _ => {}
                }
            }
            BufferType::Memory => {
                if max_events.is_some() && max_size.is_some() {
                    return err(format!("{where_}: max_events and max_size cannot be set together"));
                }
                if max_events.is_none() && max_size.is_none() {
                    max_events = Some(DEFAULT_MAX_EVENTS);
                }
            }
        }
        Ok(BufferConfig { kind, max_events, max_size, when_full })
    }
}

fn show(s: Option<&str>, v: Option<&Value>) -> String {
    match s {
        Some(s) => format!("'{s}'"),
        None => v.map(|v| v.to_string()).unwrap_or_default(),
    }
}

fn require<'a>(table: &'a toml::map::Map<String, Value>, key: &str, where_: &str) -> Result<&'a Value, ConfigError> {
    table.get(key).ok_or_else(|| ConfigError(format!("{where_}.{key} is required")))
}

fn as_table<'a>(v: &'a Value, where_: &str) -> Result<&'a toml::map::Map<String, Value>, ConfigError> {
    v.as_table().ok_or_else(|| ConfigError(format!("{where_} must be a table")))
}

fn number(v: Option<&Value>, default: f64, where_: &str) -> Result<f64, ConfigError> {
    match v {
        None => Ok(default),
        Some(Value::Integer(n)) => Ok(*n as f64),
        Some(Value::Float(f)) => Ok(*f),
        Some(_) => err(format!("{where_} must be a number")),
    }
}

pub fn parse(text: &str, env: &HashMap<String, String>) -> Result<AgentConfig, ConfigError> {
    let doc: toml::map::Map<String, Value> = toml::from_str(&interpolate(text, env)?)
        .map_err(|e| ConfigError(format!("invalid TOML: {}", e.message())))?;
    let mut sources = BTreeMap::new();
    if let Some(srcs) = doc.get("sources") {
        for (sid, table) in as_table(srcs, "sources")? {
            let where_ = format!("sources.{sid}");
            let table = as_table(table, &where_)?;
            let kind = require(table, "type", &where_)?.as_str().unwrap_or("");
            match kind {
                "internal_metrics" => continue,
                "demo_logs" => {}
                other => return err(format!("{where_}.type '{other}' is not supported by the stand-in (demo_logs, internal_metrics)")),
            }
            let interval = number(table.get("interval"), 1.0, &format!("{where_}.interval"))?;
            if interval < 0.0 {
                return err(format!("{where_}.interval must be >= 0"));
            }
            let lines: Vec<String> = table.get("lines").and_then(|v| v.as_array())
                .map(|a| a.iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect())
                .unwrap_or_default();
            let format = match table.get("format").and_then(|v| v.as_str()).unwrap_or("json") {
                "json" => Format::Json,
                "shuffle" if lines.is_empty() => return err(format!("{where_}.lines is required with format = \"shuffle\"")),
                "shuffle" => Format::Shuffle(lines),
                _ => Format::ApacheCommon,
            };
            let count = positive(&where_, "count", table.get("count"))?;
            let sequence = table.get("sequence").and_then(|v| v.as_bool()).unwrap_or(false);
            sources.insert(sid.clone(), DemoLogs { id: sid.clone(), format, interval_secs: interval, sequence, count });
        }
    }
    let mut sinks = Vec::new();
    let mut metrics_address = None;
    if let Some(snks) = doc.get("sinks") {
        for (sid, table) in as_table(snks, "sinks")? {
            let where_ = format!("sinks.{sid}");
            let table = as_table(table, &where_)?;
            let kind = require(table, "type", &where_)?.as_str().unwrap_or("");
            match kind {
                "prometheus_exporter" => {
                    metrics_address = Some(table.get("address").and_then(|v| v.as_str()).unwrap_or("0.0.0.0:9598").to_string());
                    continue;
                }
                "pulsar" => {}
                other => return err(format!("{where_}.type '{other}' is not supported by the stand-in (prometheus_exporter, pulsar)")),
            }
            let inputs: Vec<String> = require(table, "inputs", &where_)?.as_array()
                .ok_or_else(|| ConfigError(format!("{where_}.inputs must be a list")))?
                .iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
            let missing: Vec<&str> = inputs.iter().map(String::as_str)
                .filter(|i| !sources.contains_key(*i) && !is_metrics_source(&doc, i)).collect();
            if !missing.is_empty() {
                return err(format!("{where_}.inputs: unknown component(s) {}", missing.join(", ")));
            }
            let endpoint = table.get("endpoint").or_else(|| table.get("address")).and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ConfigError(format!("{where_}.endpoint is required")))?.to_string();
            require(table, "encoding", &where_)?;
            let topic = require(table, "topic", &where_)?.as_str().unwrap_or_default().to_string();
            let compression = table.get("compression").and_then(|v| v.as_str()).unwrap_or("none").to_string();
            if compression != "none" {
                return err(format!("{where_}.compression '{compression}' is not supported by the stand-in (none)"));
            }
            let batch = table.get("batch").and_then(|v| v.as_table());
            let retry = table.get("connection_retry_options").and_then(|v| v.as_table());
            sinks.push(PulsarSink {
                id: sid.clone(),
                inputs,
                endpoint,
                topic,
                producer_name: table.get("producer_name").and_then(|v| v.as_str()).map(str::to_string),
                batch_max_events: batch.and_then(|b| b.get("max_events")).and_then(|v| v.as_integer()).unwrap_or(100).max(1) as usize,
                batch_timeout_secs: number(batch.and_then(|b| b.get("timeout_secs")), 1.0, &format!("{where_}.batch.timeout_secs"))?,
                compression,
                buffer: BufferConfig::parse(sid, table.get("buffer"))?,
                connection_max_retries: retry.and_then(|r| r.get("max_retries")).and_then(|v| v.as_integer()).unwrap_or(12) as u32,
                connection_timeout_secs: number(retry.and_then(|r| r.get("connection_timeout_secs")), 10.0, &where_)?,
            });
        }
    }
    if sinks.len() != 1 {
        return err(format!("exactly one pulsar sink is supported, found {}", sinks.len()));
    }
    let data_dir = doc.get("data_dir").and_then(|v| v.as_str()).unwrap_or("/var/lib/vector").to_string();
    Ok(AgentConfig { data_dir, sources, sink: sinks.pop().unwrap(), metrics_address })
}

impl AgentConfig {
    /// The configuration as read, for `check-config`: Vector's key names, defaults filled in.
    pub fn summary(&self) -> serde_json::Value {
        let b = &self.sink.buffer;
        let sources: serde_json::Map<String, serde_json::Value> = self.sources.values().map(|s| {
            let format = match &s.format {
                Format::Json => "json",
                Format::ApacheCommon => "apache_common",
                Format::Shuffle(_) => "shuffle",
            };
            (s.id.clone(), serde_json::json!({"type": "demo_logs", "format": format, "interval": s.interval_secs,
                                               "sequence": s.sequence, "count": s.count}))
        }).collect();
        serde_json::json!({
            "data_dir": self.data_dir,
            "sources": sources,
            "sink": {
                "id": self.sink.id, "inputs": self.sink.inputs, "endpoint": self.sink.endpoint, "topic": self.sink.topic,
                "batch": {"max_events": self.sink.batch_max_events, "timeout_secs": self.sink.batch_timeout_secs},
                "buffer": {
                    "type": match b.kind { BufferType::Memory => "memory", BufferType::Disk => "disk" },
                    "max_events": b.max_events, "max_size": b.max_size,
                    "when_full": match b.when_full { WhenFull::Block => "block", WhenFull::DropNewest => "drop_newest" },
                },
            },
            "metrics_address": self.metrics_address,
        })
    }
}

fn is_metrics_source(doc: &toml::map::Map<String, Value>, id: &str) -> bool {
    doc.get("sources").and_then(|s| s.get(id)).and_then(|t| t.get("type")).and_then(|v| v.as_str()) == Some("internal_metrics")
}

pub fn load(path: &str, env: &HashMap<String, String>) -> Result<AgentConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("cannot read {path}: {e}")))?;
    parse(&text, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([("TOPIC".to_string(), "t".to_string()), ("EMPTY".to_string(), String::new())])
    }

    const BASE: &str = r#"
data_dir = "/tmp/x"
[sources.app]
type = "demo_logs"
format = "shuffle"
lines = ["a"]
interval = 0.01
sequence = true
[sources.m]
type = "internal_metrics"
[sinks.bus]
type = "pulsar"
inputs = ["app"]
endpoint = "pulsar://proxy:6650"
topic = "${TOPIC}"
encoding.codec = "json"
[sinks.prom]
type = "prometheus_exporter"
inputs = ["m"]
"#;

    fn with_buffer(buffer: &str) -> Result<AgentConfig, ConfigError> {
        parse(&format!("{BASE}\n[sinks.bus.buffer]\n{buffer}\n"), &env())
    }

    #[test]
    fn interpolation_follows_vector() {
        assert_eq!(interpolate("${TOPIC}-${NOPE:-d}-${EMPTY:-e}-${EMPTY}", &env()).unwrap(), "t-d-e-");
        assert_eq!(interpolate("${NOPE}", &env()).unwrap_err().0, "environment variable NOPE is not set");
    }

    #[test]
    fn full_config_parses() {
        let c = parse(BASE, &env()).unwrap();
        assert_eq!(c.sink.topic, "t");
        assert_eq!(c.sink.buffer, BufferConfig::default());
        assert_eq!(c.metrics_address.as_deref(), Some("0.0.0.0:9598"));
        assert!(c.sources["app"].sequence);
        assert_eq!(c.sink.batch_max_events, 100);
        assert_eq!(c.sink.batch_timeout_secs, 1.0);
    }

    #[test]
    fn buffer_rules_are_vectors() {
        let b = with_buffer("type = \"memory\"\nmax_events = 10\nwhen_full = \"drop_newest\"").unwrap().sink.buffer;
        assert_eq!((b.max_events, b.when_full), (Some(10), WhenFull::DropNewest));
        let cases = [
            ("type = \"disk\"\nmax_size = 1000", "sinks.bus.buffer.max_size must be at least 268435488 bytes for disk buffers"),
            ("type = \"disk\"", "sinks.bus.buffer.max_size is required for disk buffers"),
            ("type = \"disk\"\nmax_events = 5\nmax_size = 268435488", "sinks.bus.buffer.max_events applies to memory buffers only"),
            ("max_events = 5\nmax_size = 5", "sinks.bus.buffer: max_events and max_size cannot be set together"),
            ("max_events = 0", "sinks.bus.buffer.max_events must be a positive integer"),
            ("when_full = \"overflow\"", "sinks.bus.buffer.when_full must be 'block' or 'drop_newest', not 'overflow'"),
            ("type = \"ram\"", "sinks.bus.buffer.type must be 'memory' or 'disk', not 'ram'"),
            ("maxevents = 3", "sinks.bus.buffer: unknown key(s) maxevents"),
        ];
        for (buffer, message) in cases {
            assert_eq!(with_buffer(buffer).unwrap_err().0, message, "{buffer}");
        }
        let disk = with_buffer("type = \"disk\"\nmax_size = 268435488").unwrap().sink.buffer;
        assert_eq!((disk.kind, disk.max_events), (BufferType::Disk, None));
    }

    #[test]
    fn bad_documents_name_the_key() {
        assert!(parse("x = [", &env()).unwrap_err().0.starts_with("invalid TOML"));
        assert_eq!(parse("[sources.a]\ntype = \"file\"", &env()).unwrap_err().0,
                   "sources.a.type 'file' is not supported by the stand-in (demo_logs, internal_metrics)");
        assert_eq!(parse(&BASE.replace("inputs = [\"app\"]", "inputs = [\"nope\"]"), &env()).unwrap_err().0,
                   "sinks.bus.inputs: unknown component(s) nope");
        assert_eq!(parse(&BASE.replace("encoding.codec = \"json\"", ""), &env()).unwrap_err().0,
                   "sinks.bus.encoding is required");
        assert_eq!(parse("", &env()).unwrap_err().0, "exactly one pulsar sink is supported, found 0");
        assert_eq!(parse("x = \"${NOPE}\"", &env()).unwrap_err().0, "environment variable NOPE is not set");
    }

    /// No buffer table: Vector's defaults, spelled out (not compared with BufferConfig::default()).
    #[test]
    fn defaults_follow_vector() {
        let text = BASE.replace("\"pulsar://proxy:6650\"", "\"${PULSAR_ENDPOINT:-pulsar://proxy:6650}\"");
        let c = parse(&text, &env()).unwrap();
        assert_eq!(c.sink.buffer, BufferConfig { kind: BufferType::Memory, max_events: Some(500), max_size: None,
                                                 when_full: WhenFull::Block });
        assert_eq!(c.sink.endpoint, "pulsar://proxy:6650");
        let mut set = env();
        set.insert("PULSAR_ENDPOINT".into(), "pulsar://x:1".into());
        assert_eq!(parse(&text, &set).unwrap().sink.endpoint, "pulsar://x:1");
        let memory_by_bytes = with_buffer("max_size = 1000").unwrap().sink.buffer;
        assert_eq!((memory_by_bytes.kind, memory_by_bytes.max_events, memory_by_bytes.max_size),
                   (BufferType::Memory, None, Some(1000)), "max_size alone bounds a memory buffer by bytes only");
    }

    /// The config baked into the agent image (compose/vector/vector.toml), with no environment set.
    #[test]
    fn the_lab_agent_config_parses() {
        let c = parse(include_str!("../../compose/vector/vector.toml"), &HashMap::new()).unwrap();
        assert_eq!(c.sink.topic, "persistent://public/default/vm-telemetry");
        assert_eq!(c.sink.endpoint, "pulsar://proxy:6650");
        assert_eq!(c.metrics_address.as_deref(), Some("0.0.0.0:9598"));
        assert_eq!(c.sink.buffer, BufferConfig { kind: BufferType::Memory, max_events: Some(500), max_size: None,
                                                 when_full: WhenFull::Block });
    }

    #[test]
    fn summary_says_what_was_read() {
        let s = with_buffer("type = \"disk\"\nmax_size = 268435488\nwhen_full = \"drop_newest\"").unwrap().summary();
        assert_eq!(s["sink"]["buffer"], serde_json::json!({"type": "disk", "max_events": null, "max_size": 268435488u64,
                                                            "when_full": "drop_newest"}));
        assert_eq!(s["sink"]["topic"], "t");
        assert_eq!(s["sources"]["app"]["format"], "shuffle");
        assert_eq!(s["sources"]["app"]["sequence"], true);
        assert!(s["sources"].get("m").is_none(), "internal_metrics is not a demo_logs source");
        assert_eq!(s["metrics_address"], "0.0.0.0:9598");
    }
}
