//! Configuration (`/etc/tokenwatch/config.toml` or `-c FILE`), per INTERFACE.md.
//!
//! Every key is optional; unknown keys are an error naming the key; durations
//! are written like `90s`, `2m`, `10h`.
use std::{fmt, path::{Path, PathBuf}, time::Duration};

use serde::{Deserialize, Deserializer};

pub const DEFAULT_PATH: &str = "/etc/tokenwatch/config.toml";
/// The longest `token_agent.backfill`: a week of access log is more than a
/// rotated log holds; a longer value is a typo more likely than a wish.
pub const MAX_BACKFILL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub token_agent: TokenAgent,
    pub clients: Clients,
    pub alert: Alert,
    pub export: Export,
    pub http: Http,
    pub state: State,
    pub ebpf: Ebpf,
}

/// Where token-agent lives and what its logs look like.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TokenAgent {
    /// token-agent's gRPC Unix socket.
    pub socket: PathBuf,
    /// token-agent's access log.
    pub access_log: PathBuf,
    /// token-agent's application log.
    pub app_log: PathBuf,
    /// Access-log format.
    pub log_format: LogFormat,
    /// Field delimiter (`delimited` only).
    pub delimiter: Option<String>,
    /// Column names (`delimited` only); `-` skips a column.
    pub columns: Option<Vec<String>>,
    /// The gRPC method that hands out tokens.
    pub method: String,
    /// Protobuf field number of `expires_at` in the response.
    pub expires_at_field: u32,
    /// First start without a checkpoint: how far back the access log is
    /// read (the app log: at most `alert.error_window` of it); `0s` starts
    /// both logs at their end. An extension of INTERFACE.md.
    #[serde(deserialize_with = "duration")]
    pub backfill: Duration,
}

impl Default for TokenAgent {
    fn default() -> Self {
        Self {
            socket: "/var/run/yc/token-agent/socket".into(),
            access_log: "/var/log/yc/token-agent/access.log".into(),
            app_log: "/var/log/yc/token-agent/token-agent.log".into(),
            log_format: LogFormat::Auto,
            delimiter: None,
            columns: None,
            method: "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken".into(),
            expires_at_field: 2,
            backfill: Duration::from_secs(12 * 3600),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Auto,
    Tskv,
    Json,
    Logfmt,
    Delimited,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "tskv" => Self::Tskv,
            "json" => Self::Json,
            "logfmt" => Self::Logfmt,
            "delimited" => Self::Delimited,
            other => return Err(format!("unknown log format {other:?} (auto, tskv, json, logfmt, delimited)")),
        })
    }
}

/// Which clients are compute-node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Clients {
    /// systemd units whose processes are compute-node; other clients are tracked too.
    pub units: Vec<String>,
}

impl Default for Clients {
    fn default() -> Self {
        Self { units: vec!["yc-compute-node.service".into()] }
    }
}

/// The alert's thresholds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Alert {
    /// WARN when a refresh is this late after `refresh_at`.
    #[serde(deserialize_with = "duration")]
    pub warn_after: Duration,
    /// CRIT when a refresh is this late after `refresh_at`.
    #[serde(deserialize_with = "duration")]
    pub crit_after: Duration,
    /// `refresh_at = issued_at + refresh_fraction × lifetime`.
    pub refresh_fraction: f64,
    /// token-agent errors within this window → WARN.
    #[serde(deserialize_with = "duration")]
    pub error_window: Duration,
    /// Token lifetime assumed when `expires_at` could not be observed.
    #[serde(deserialize_with = "duration")]
    pub assumed_lifetime: Duration,
}

impl Default for Alert {
    fn default() -> Self {
        Self {
            warn_after: Duration::from_secs(120),
            crit_after: Duration::from_secs(600),
            refresh_fraction: 0.1,
            error_window: Duration::from_secs(300),
            assumed_lifetime: Duration::from_secs(10 * 3600),
        }
    }
}

/// OTLP export.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Export {
    /// "" → `OTEL_EXPORTER_OTLP_ENDPOINT`; neither → no OTLP.
    pub otlp_endpoint: String,
    /// "" → `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`; or `grpc`.
    pub otlp_protocol: String,
    /// How often metrics are exported.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
}

impl Default for Export {
    fn default() -> Self {
        Self { otlp_endpoint: String::new(), otlp_protocol: String::new(), interval: Duration::from_secs(10) }
    }
}

/// The HTTP endpoints `/metrics`, `/status`, `/healthz`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// Listen address; "" disables the endpoints.
    pub listen: String,
}

impl Default for Http {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

/// Where checkpoints and token facts live.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct State {
    pub dir: PathBuf,
}

impl Default for State {
    fn default() -> Self {
        Self { dir: "/var/lib/tokenwatch".into() }
    }
}

/// The eBPF source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Ebpf {
    /// false: logs only.
    pub enabled: bool,
    /// true: exit 2 when the probes cannot load; false: report the source as failed and go on.
    pub required: bool,
    /// When the I/O probes that capture calls (method, status, `expires_at`)
    /// are attached: `adaptive` only while needed (after a client connects,
    /// at start until each open connection showed a call, around clients'
    /// `refresh_at`, while errors persist), `always`, or `off` (connects only).
    /// Attached, they add a few hundred ns to every read/write on the host.
    /// `windows`: like `adaptive`, and connect/close too are attached only
    /// in those windows when they run on syscall tracepoints.
    pub capture: CaptureMode,
    /// Which kernel hooks carry the probes: `auto` prefers fentry/fexit on
    /// the syscall wrappers (they cost nothing to other syscalls) where the
    /// kernel allows them and falls back to syscall tracepoints;
    /// `tracepoint` never tries fentry/fexit.
    pub hooks: HookPreference,
}

impl Default for Ebpf {
    fn default() -> Self {
        Self { enabled: true, required: false, capture: CaptureMode::Adaptive, hooks: HookPreference::Auto }
    }
}

/// `[ebpf] hooks`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HookPreference {
    #[default]
    Auto,
    Tracepoint,
}

/// `[ebpf] capture`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    #[default]
    Adaptive,
    Always,
    Off,
    /// Adaptive, and connect/close on syscall tracepoints are attached only
    /// with the capture window: between windows no syscall tracepoint is
    /// enabled (no connect or close is seen then either).
    Windows,
}

/// A configuration problem, printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("bad config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bad config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Loads `path`; when `path` is the default and the file does not exist,
    /// the defaults apply (a host may run with no config at all).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.clone(), message })?
            .validated()
            .map_err(|message| ConfigError::Invalid { path, message })
    }

    /// Parses TOML text; the error is one line naming the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| one_line(&e))
    }

    /// Checks what serde cannot: ranges and relations between keys.
    pub fn validated(self) -> Result<Self, String> {
        let a = &self.alert;
        if !(a.refresh_fraction > 0.0 && a.refresh_fraction < 1.0) {
            return Err(format!("alert.refresh_fraction must be in (0, 1), got {}", a.refresh_fraction));
        }
        if a.crit_after < a.warn_after {
            return Err("alert.crit_after must not be shorter than alert.warn_after".into());
        }
        if a.assumed_lifetime.is_zero() || a.error_window.is_zero() || self.export.interval.is_zero() {
            return Err("alert.assumed_lifetime, alert.error_window and export.interval must be > 0".into());
        }
        let sock = self.token_agent.socket.as_os_str().len();
        if sock == 0 || sock >= tokenwatch_common::SUN_PATH_MAX {
            return Err(format!(
                "token_agent.socket must be 1..{} bytes long (a sockaddr_un path)",
                tokenwatch_common::SUN_PATH_MAX - 1
            ));
        }
        match self.export.otlp_protocol.as_str() {
            "" | "grpc" | "http/protobuf" => {}
            other => return Err(format!("export.otlp_protocol must be \"grpc\" or \"http/protobuf\", got {other:?}")),
        }
        if self.token_agent.backfill > MAX_BACKFILL {
            return Err(format!(
                "token_agent.backfill must be at most {} (\"0s\": no backfill), got {}",
                humantime::format_duration(MAX_BACKFILL),
                humantime::format_duration(self.token_agent.backfill)
            ));
        }
        if self.token_agent.log_format == LogFormat::Delimited && self.token_agent.columns.is_none() {
            return Err("token_agent.columns is required with log_format = \"delimited\"".into());
        }
        Ok(self)
    }
}

/// toml's errors span several lines with a source excerpt; operators and
/// `systemctl status` want one.
fn one_line(e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg,
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration like \"90s\", \"2m\" or \"10h\"")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
            humantime::parse_duration(s.trim())
                .map_err(|e| E::custom(format!("bad duration {s:?}: {e} (write it like \"90s\", \"2m\", \"10h\")")))
        }
    }
    d.deserialize_str(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_defaults() {
        let c = Config::parse("").unwrap().validated().unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.alert.warn_after, Duration::from_secs(120));
        assert_eq!(c.alert.crit_after, Duration::from_secs(600));
        assert_eq!(c.http.listen, "127.0.0.1:9464");
        assert_eq!(c.token_agent.socket, PathBuf::from("/var/run/yc/token-agent/socket"));
        assert!(c.ebpf.enabled && !c.ebpf.required);
    }

    #[test]
    fn durations_parse() {
        let c = Config::parse("[alert]\nwarn_after = \"90s\"\ncrit_after = \"10h\"\nerror_window=\"2m\"").unwrap();
        assert_eq!(c.alert.warn_after, Duration::from_secs(90));
        assert_eq!(c.alert.crit_after, Duration::from_secs(36000));
        assert_eq!(c.alert.error_window, Duration::from_secs(120));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[alert]\nwarn_aftr = \"2m\"").unwrap_err();
        assert!(e.contains("warn_aftr"), "{e}");
        assert!(!e.contains('\n'));
        let e = Config::parse("[alerts]\n").unwrap_err();
        assert!(e.contains("alerts"), "{e}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let e = Config::parse("[alert]\nwarn_after = \"two minutes\"").unwrap_err();
        assert!(e.contains("two minutes") && e.contains("90s"), "{e}");
        let e = Config::parse("[alert]\nwarn_after = 120").unwrap_err();
        assert!(e.contains("duration"), "{e}");
    }

    #[test]
    fn invalid_relations_are_rejected() {
        let c = Config::parse("[alert]\nwarn_after = \"10m\"\ncrit_after = \"2m\"").unwrap();
        assert!(c.validated().unwrap_err().contains("crit_after"));
        let c = Config::parse("[alert]\nrefresh_fraction = 1.5").unwrap();
        assert!(c.validated().unwrap_err().contains("refresh_fraction"));
        let c = Config::parse(&format!("[token_agent]\nsocket = \"/{}\"", "x".repeat(120))).unwrap();
        assert!(c.validated().unwrap_err().contains("token_agent.socket"));
        let c = Config::parse("[export]\notlp_protocol = \"http/json\"").unwrap();
        assert!(c.validated().unwrap_err().contains("otlp_protocol"));
    }

    #[test]
    fn backfill_defaults_to_12h_parses_and_is_bounded() {
        assert_eq!(Config::default().token_agent.backfill, Duration::from_secs(12 * 3600));
        let c = Config::parse("[token_agent]\nbackfill = \"30m\"").unwrap().validated().unwrap();
        assert_eq!(c.token_agent.backfill, Duration::from_secs(1800));
        let c = Config::parse("[token_agent]\nbackfill = \"0s\"").unwrap().validated().unwrap();
        assert_eq!(c.token_agent.backfill, Duration::ZERO);
        let c = Config::parse("[token_agent]\nbackfill = \"7d\"").unwrap().validated().unwrap();
        assert_eq!(c.token_agent.backfill, MAX_BACKFILL);
        for bad in ["yesterday", "12", "-1h"] {
            let e = Config::parse(&format!("[token_agent]\nbackfill = \"{bad}\"")).unwrap_err();
            assert!(e.contains(bad) && e.contains("10h"), "{bad}: {e}");
        }
        let e = Config::parse("[token_agent]\nbackfill = 12").unwrap_err();
        assert!(e.contains("duration"), "{e}");
        // absurd: far past the bound, or past what a Duration holds — an error, never a panic
        let c = Config::parse("[token_agent]\nbackfill = \"100y\"").unwrap();
        let e = c.validated().unwrap_err();
        assert!(e.contains("token_agent.backfill") && e.contains("7days"), "{e}");
        assert!(Config::parse("[token_agent]\nbackfill = \"99999999999999999999h\"").is_err());
    }

    #[test]
    fn ebpf_capture_parses() {
        assert_eq!(Config::default().ebpf.capture, CaptureMode::Adaptive);
        for (text, mode) in [
            ("adaptive", CaptureMode::Adaptive),
            ("always", CaptureMode::Always),
            ("off", CaptureMode::Off),
            ("windows", CaptureMode::Windows),
        ] {
            let c = Config::parse(&format!("[ebpf]\ncapture = \"{text}\"")).unwrap();
            assert_eq!(c.ebpf.capture, mode, "{text}");
        }
        // names are exact: no case folding, no near-misses
        for bad in ["Windows", "window", "windows "] {
            let e = Config::parse(&format!("[ebpf]\ncapture = \"{bad}\"")).unwrap_err();
            assert!(e.contains("windows"), "{bad}: the error lists the modes: {e}");
        }
        let c = Config::parse("[ebpf]\nhooks = \"tracepoint\"").unwrap();
        assert_eq!((Config::default().ebpf.hooks, c.ebpf.hooks), (HookPreference::Auto, HookPreference::Tracepoint));
        assert!(Config::parse("[ebpf]\nhooks = \"kprobe\"").is_err());
        let e = Config::parse("[ebpf]\ncapture = \"sometimes\"").unwrap_err();
        assert!(e.contains("sometimes") && e.contains("adaptive"), "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error_default_is_not() {
        let e = Config::load(Some(Path::new("/nonexistent/tokenwatch.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/tokenwatch.toml"));
    }
}
