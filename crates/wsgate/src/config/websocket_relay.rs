//! websocket-relay's config file (`wsgate relay --config-file config.yaml`), read as
//! is so a switch needs no rewrite: `server.port` (all interfaces, as the Go relay
//! binds), `tls.enabled`/`cert_file`/`key_file`, `metrics.enabled`/`port` (then
//! `/metrics` is also served alone on that port). Its values sit just above wsgate's
//! own file and below every variable and flag.

use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Yaml};
use figment::value::Value;
use serde::Deserialize;

use super::ConfigError;

/// The Go relay's defaults: clients on 8443, metrics on 9090.
const DEFAULT_PORT: u16 = 8443;
const DEFAULT_METRICS_PORT: u16 = 9090;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct File {
    server: Server,
    tls: Tls,
    metrics: Metrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Server {
    port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Tls {
    enabled: bool,
    cert_file: Option<String>,
    key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Metrics {
    enabled: bool,
    port: Option<u16>,
}

/// A value from the file: `(source name, config path, value)`.
pub type CompatValue = (String, &'static str, Value);

/// Reads the file into the wsgate settings it stands for.
pub fn read(path: &Path) -> Result<Vec<CompatValue>, ConfigError> {
    let shown = path.display().to_string();
    let origin = format!("websocket-relay config file {shown}");
    if let Err(e) = std::fs::metadata(path) {
        return Err(ConfigError::File { path: shown, message: e.to_string() });
    }
    let file: File = Figment::from(Yaml::file_exact(path)).extract().map_err(|e| ConfigError::Invalid {
        field: if e.path.is_empty() { "(top level)".into() } else { e.path.join(".") },
        origin: origin.clone(),
        message: e.kind.to_string(),
        fix: "websocket-relay's keys are server.port, tls.enabled, tls.cert_file, tls.key_file, metrics.enabled, \
              metrics.port"
            .into(),
    })?;
    let mut out = Vec::new();
    let mut set = |path: &'static str, v: String| out.push((origin.clone(), path, Value::from(v)));
    set("listen", format!("0.0.0.0:{}", file.server.port.unwrap_or(DEFAULT_PORT)));
    if file.tls.enabled {
        let missing = |field: &str| ConfigError::Invalid {
            field: format!("tls.{field}"),
            origin: origin.clone(),
            message: "tls.enabled is true but it is not set".into(),
            fix: "give the PEM file's path, or set tls.enabled: false".into(),
        };
        set("tls_cert", file.tls.cert_file.ok_or_else(|| missing("cert_file"))?);
        set("tls_key", file.tls.key_file.ok_or_else(|| missing("key_file"))?);
    }
    if file.metrics.enabled {
        set("metrics_listen", format!("0.0.0.0:{}", file.metrics.port.unwrap_or(DEFAULT_METRICS_PORT)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_yaml(yaml: &str) -> Result<Vec<(&'static str, String)>, ConfigError> {
        let dir = std::env::temp_dir().join(format!("wsgate-relay-compat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| ConfigError::File { path: "tmp".into(), message: e.to_string() })?;
        let f = dir.join(format!("{}.yaml", yaml.len()));
        std::fs::write(&f, yaml).map_err(|e| ConfigError::File { path: "tmp".into(), message: e.to_string() })?;
        let r = read(&f).map(|v| v.into_iter().map(|(_, p, v)| (p, v.into_string().unwrap_or_default())).collect());
        let _ = std::fs::remove_file(&f);
        r
    }

    #[test]
    fn the_documented_file_maps_to_wsgate_settings() {
        let yaml = "server:\n  port: 8443\ntls:\n  enabled: true\n  cert_file: cert.pem\n  key_file: key.pem\nmetrics:\n  enabled: true\n  port: 9090\n";
        let got = read_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got,
            [
                ("listen", "0.0.0.0:8443".to_owned()),
                ("tls_cert", "cert.pem".into()),
                ("tls_key", "key.pem".into()),
                ("metrics_listen", "0.0.0.0:9090".into())
            ]
        );
        assert_eq!(read_yaml("server: {port: 9000}\n").unwrap_or_default(), [("listen", "0.0.0.0:9000".to_owned())]);
    }

    #[test]
    fn mistakes_name_the_field() {
        let e = read_yaml("server: {prot: 1}\n").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("websocket-relay config file") && e.contains("prot"), "{e}");
        let e = read_yaml("tls: {enabled: true}\n").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("tls.cert_file"), "{e}");
    }
}
