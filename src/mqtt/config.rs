//! `[mqtt]` in the site file: which broker, who the bridge is there, and what it publishes.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use toml::Spanned;

use crate::auth::Scopes;
use crate::config::{AuthToken, ConfigError};
use crate::pattern::Pattern;

/// The bridge's settings, checked.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Topics are `<prefix>/<device>/<point>`; no trailing `/`.
    pub prefix: String,
    /// 0 (at most once) or 1 (at least once, acknowledged: nothing is lost).
    pub qos: u8,
    /// What is published: any pattern matching a device's point publishes it.
    pub publish: Vec<Pattern>,
    pub keep_alive: Duration,
    /// Commands from `<prefix>/<device>/<command>/set`, when enabled.
    pub commands: Option<CommandIdentity>,
    /// TLS towards the broker (`mqtts://`): rustls with the configured CA, or the
    /// system's roots without one.
    pub tls: Option<Arc<ClientConfig>>,
    /// Home Assistant discovery: config topics under this prefix, when enabled.
    pub discovery: Option<String>,
}

/// Who the bridge is when it sends commands: a token of `[[auth.tokens]]`, whose scopes
/// decide what MQTT may control and whose name the audit log records.
#[derive(Debug, Clone)]
pub struct CommandIdentity {
    pub name: String,
    pub scopes: Arc<Scopes>,
}

impl MqttSettings {
    /// Whether a device's point (or its `online`/`error`) is published.
    pub fn publishes(&self, device: &str, point: &str) -> bool {
        self.publish.iter().any(|p| p.matches_point(device, point))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MqttFile {
    /// `mqtt://host[:port]` (1883 when not given) or `mqtts://host[:port]` (8883).
    broker: Spanned<String>,
    /// PEM file of the CA(s) that sign the broker's certificate, relative to the site file;
    /// default with `mqtts://`: the system's trusted roots.
    ca: Option<Spanned<String>>,
    /// Default: `avgate-<site>`.
    client_id: Option<Spanned<String>>,
    username: Option<String>,
    password: Option<String>,
    /// The name in the default prefix and client id; default: the site file's name.
    site: Option<Spanned<String>>,
    /// Default: `avgate/<site>`.
    prefix: Option<Spanned<String>>,
    #[serde(default = "default_qos")]
    qos: Spanned<u8>,
    /// Patterns of the subscription language; default: everything.
    publish: Option<Vec<Spanned<String>>>,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    keep_alive: Duration,
    /// Take commands from `<prefix>/<device>/<command>/set` (off by default).
    #[serde(default = "commands_off")]
    commands: Spanned<bool>,
    /// The `[[auth.tokens]]` name whose scopes bound those commands.
    identity: Option<Spanned<String>>,
    /// Announce the devices to Home Assistant (off by default).
    #[serde(default)]
    discovery: bool,
    /// Where Home Assistant listens for discovery: default `homeassistant`.
    discovery_prefix: Option<Spanned<String>>,
}

fn default_qos() -> Spanned<u8> {
    Spanned::new(0..0, 1)
}

fn commands_off() -> Spanned<bool> {
    Spanned::new(0..0, false)
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

/// Checks `[mqtt]`; problems go to `errors`, and settings that would do nothing to
/// `warnings`, each with its place in the file.
pub(crate) fn check(
    path: &Path,
    text: &str,
    file: MqttFile,
    tokens: &[AuthToken],
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<MqttSettings> {
    let before = errors.len();
    let commands = check_identity(path, text, &file, tokens, errors);
    let mut fail = |span: Range<usize>, message: String| {
        errors.push(ConfigError::at(path, text, Some(span), message));
    };
    let (host, port, secure) = match parse_broker(file.broker.get_ref()) {
        Ok(address) => address,
        Err(why) => {
            fail(file.broker.span(), why);
            (String::new(), 0, false)
        }
    };
    let tls = match (&file.ca, secure) {
        (Some(ca), false) => {
            fail(
                ca.span(),
                "[mqtt] ca is for a TLS broker: write the broker as `mqtts://host[:port]`, or remove `ca`".into(),
            );
            None
        }
        (ca, true) => {
            let base = path.parent().unwrap_or(Path::new("."));
            match client_tls(ca.as_ref().map(|ca| base.join(ca.get_ref())).as_deref()) {
                Ok(config) => Some(config),
                Err(why) => {
                    fail(ca.as_ref().map_or(file.broker.span(), |ca| ca.span()), why);
                    None
                }
            }
        }
        (None, false) => None,
    };
    let discovery = match (&file.discovery_prefix, file.discovery) {
        (None, true) => Some("homeassistant".to_string()),
        (Some(prefix), _) => {
            let trimmed = prefix.get_ref().trim_end_matches('/').to_string();
            if let Err(why) = check_prefix(&trimmed) {
                fail(prefix.span(), why.replacen("prefix", "discovery_prefix", 1));
            }
            if !file.discovery {
                warnings.push(ConfigError::at(
                    path,
                    text,
                    Some(prefix.span()),
                    "[mqtt] discovery_prefix does nothing while discovery is off: add `discovery = true` to announce the devices to Home Assistant, or remove discovery_prefix".into(),
                ));
            }
            file.discovery.then_some(trimmed)
        }
        (None, false) => None,
    };
    let site = match &file.site {
        Some(site) => {
            if let Err(why) = check_topic_level(site.get_ref()) {
                fail(site.span(), format!("[mqtt] site: {why}"));
            }
            site.get_ref().clone()
        }
        None => path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("site")
            .to_string(),
    };
    let prefix = match &file.prefix {
        Some(prefix) => {
            let trimmed = prefix.get_ref().trim_end_matches('/').to_string();
            if let Err(why) = check_prefix(&trimmed) {
                fail(prefix.span(), why);
            }
            trimmed
        }
        None => format!("avgate/{site}"),
    };
    let client_id = match &file.client_id {
        Some(id) => {
            let id_text = id.get_ref();
            if id_text.is_empty() || id_text.len() > 64 || id_text.chars().any(char::is_control) {
                fail(
                    id.span(),
                    "[mqtt] client_id must have 1 to 64 printable characters; brokers refuse a second client with the same id, so give each gateway its own".into(),
                );
            }
            id_text.clone()
        }
        None => format!("avgate-{site}"),
    };
    let qos = *file.qos.get_ref();
    if qos > 1 {
        fail(
            file.qos.span(),
            format!(
                "[mqtt] qos = {qos} is not supported: use 1 (acknowledged, nothing lost) or 0 (fire and forget)"
            ),
        );
    }
    let mut publish = Vec::new();
    match &file.publish {
        None => publish.push(Pattern::any()),
        Some(patterns) => {
            for pattern in patterns {
                match Pattern::parse(pattern.get_ref()) {
                    Ok(p) => publish.push(p),
                    Err(why) => fail(pattern.span(), format!("[mqtt] publish: {why}")),
                }
            }
        }
    }
    if !(Duration::from_secs(5)..=Duration::from_secs(3600)).contains(&file.keep_alive) {
        errors.push(ConfigError::file(
            path,
            "[mqtt] keep_alive must be between 5s and 1h".into(),
        ));
    }
    if errors.len() > before {
        return None;
    }
    Some(MqttSettings {
        host,
        port,
        client_id,
        username: file.username,
        password: file.password,
        prefix,
        qos,
        publish,
        keep_alive: file.keep_alive,
        commands,
        tls,
        discovery,
    })
}

fn check_identity(
    path: &Path,
    text: &str,
    file: &MqttFile,
    tokens: &[AuthToken],
    errors: &mut Vec<ConfigError>,
) -> Option<CommandIdentity> {
    if !*file.commands.get_ref() {
        return None;
    }
    let Some(identity) = &file.identity else {
        if tokens.is_empty() {
            // A site without tokens lets every panel control everything; MQTT likewise.
            return Some(CommandIdentity {
                name: "mqtt".into(),
                scopes: Arc::new(Scopes::everything()),
            });
        }
        errors.push(ConfigError::at(
            path,
            text,
            Some(file.commands.span()),
            "[mqtt] commands = true on a site with [[auth.tokens]] needs `identity`: the name of the token whose scopes say what MQTT may control".into(),
        ));
        return None;
    };
    let Some(token) = tokens.iter().find(|t| &t.name == identity.get_ref()) else {
        errors.push(ConfigError::at(
            path,
            text,
            Some(identity.span()),
            format!(
                "[mqtt] identity `{}` is not the name of any [[auth.tokens]] entry; add one (its scopes bound what MQTT may control)",
                identity.get_ref()
            ),
        ));
        return None;
    };
    Some(CommandIdentity {
        name: token.name.clone(),
        scopes: Arc::new(token.scopes.clone()),
    })
}

/// `(host, port, tls)` of `mqtt://host[:port]` or `mqtts://host[:port]`.
fn parse_broker(url: &str) -> Result<(String, u16, bool), String> {
    let hint = "write the broker as `mqtt://host[:port]`, or `mqtts://host[:port]` for TLS";
    let (rest, secure, default_port) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else {
        return Err(format!(
            "[mqtt] broker `{url}` has no mqtt:// or mqtts:// scheme; {hint}"
        ));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(format!(
            "[mqtt] broker `{url}`: {hint}; put credentials in `username` and `password`"
        ));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            let port: u16 = port.parse().map_err(|_| {
                format!("[mqtt] broker `{url}`: port `{port}` is not a number from 1 to 65535")
            })?;
            (host, port)
        }
        _ => (rest, default_port),
    };
    if host.is_empty() || port == 0 {
        return Err(format!("[mqtt] broker `{url}`: {hint}"));
    }
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        secure,
    ))
}

/// The rustls client configuration for an `mqtts://` broker: trusting the CAs in `ca`, or
/// the system's roots.
fn client_tls(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    format!(
                        "[mqtt] cannot read the CA file {}: {e}; give a PEM file of the CA that signed the broker's certificate (relative to the site file)",
                        ca.display()
                    )
                })?;
            if certs.is_empty() {
                return Err(format!(
                    "[mqtt] the CA file {} has no CERTIFICATE block; give the PEM of the CA that signed the broker's certificate",
                    ca.display()
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("[mqtt] the CA file {}: {e}", ca.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(
                    "[mqtt] mqtts:// without `ca` trusts the system's roots, and none were found; install ca-certificates or give `ca` (a PEM file)".into(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("[mqtt] TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn check_topic_level(level: &str) -> Result<(), String> {
    if level.is_empty() || level.contains(['/', '+', '#', '\0']) {
        return Err(format!(
            "`{}` must be one topic level: not empty, no `/`, `+`, `#`",
            level.escape_default()
        ));
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.starts_with('/') || prefix.split('/').any(|l| l.is_empty()) {
        return Err(format!(
            "[mqtt] prefix `{prefix}` must be topic levels separated by single `/`, e.g. `avgate/building-a/room-101`"
        ));
    }
    if prefix.contains(['+', '#', '\0']) {
        return Err(format!(
            "[mqtt] prefix `{prefix}` has a wildcard (`+` or `#`); a topic prefix is plain levels"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigErrors, Site, parse_site};
    use std::path::Path;

    const DEVICE: &str =
        "[devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"192.0.2.7\"\n";

    fn parse(mqtt: &str) -> Result<Site, ConfigErrors> {
        parse_site(
            Path::new("room-101.toml"),
            &format!("{DEVICE}[mqtt]\n{mqtt}"),
        )
    }

    #[test]
    fn defaults_come_from_the_site_file_name() {
        let site = parse("broker = \"mqtt://broker.campus.example\"\n").unwrap();
        let mqtt = site.mqtt.unwrap();
        assert_eq!(
            (mqtt.host.as_str(), mqtt.port),
            ("broker.campus.example", 1883)
        );
        assert_eq!(mqtt.prefix, "avgate/room-101");
        assert_eq!(mqtt.client_id, "avgate-room-101");
        assert_eq!(mqtt.qos, 1);
        assert!(mqtt.publishes("proj", "power"));
    }

    #[test]
    fn publish_patterns_select_points() {
        let site = parse(
            "broker = \"mqtt://10.0.0.5:1884\"\nprefix = \"campus/b1/r101/\"\nqos = 0\npublish = [\"proj/power\"]\n",
        )
        .unwrap();
        let mqtt = site.mqtt.unwrap();
        assert_eq!(mqtt.port, 1884);
        assert_eq!(mqtt.prefix, "campus/b1/r101");
        assert!(mqtt.publishes("proj", "power"));
        assert!(mqtt.publishes("proj", "online"));
        assert!(!mqtt.publishes("proj", "input"));
    }

    #[test]
    fn every_problem_is_reported_where_it_is_written() {
        let errors = parse(
            "broker = \"tcp://broker\"\nprefix = \"avgate/#\"\nqos = 2\npublish = [\"proj/a/b\"]\n",
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = errors.lines().collect();
        assert_eq!(lines.len(), 4, "{errors}");
        assert!(
            lines[0].starts_with(
                "room-101.toml:5:10: [mqtt] broker `tcp://broker` has no mqtt:// or mqtts:// scheme"
            ),
            "{errors}"
        );
        assert!(
            lines[1].starts_with("room-101.toml:6:10: [mqtt] prefix `avgate/#` has a wildcard"),
            "{errors}"
        );
        assert!(
            lines[2].starts_with("room-101.toml:7:7: [mqtt] qos = 2 is not supported"),
            "{errors}"
        );
        assert!(
            lines[3].starts_with("room-101.toml:8:12: [mqtt] publish: pattern `proj/a/b`"),
            "{errors}"
        );
    }

    #[test]
    fn commands_need_an_identity_that_is_a_token() {
        let open = parse("broker = \"mqtt://b\"\ncommands = true\n").unwrap();
        let everything = open.mqtt.unwrap().commands.unwrap();
        assert!(
            everything.scopes.can_control("proj", "power"),
            "a site without tokens"
        );
        let errors = parse_site(
            Path::new("room-101.toml"),
            &format!("{DEVICE}[[auth.tokens]]\nname = \"p\"\ntoken = \"panel-secret-1\"\n[mqtt]\nbroker = \"mqtt://b\"\ncommands = true\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(errors.starts_with("room-101.toml:9:12: [mqtt] commands = true on a site with [[auth.tokens]] needs `identity`"), "{errors}");
        let errors = parse("broker = \"mqtt://b\"\ncommands = true\nidentity = \"bms\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            errors.starts_with(
                "room-101.toml:7:12: [mqtt] identity `bms` is not the name of any [[auth.tokens]]"
            ),
            "{errors}"
        );
        let site = parse_site(
            Path::new("room-101.toml"),
            &format!("{DEVICE}[[auth.tokens]]\nname = \"bms\"\ntoken = \"bms-secret-1\"\nscopes = [\"control:proj/power\"]\n[mqtt]\nbroker = \"mqtt://b\"\ncommands = true\nidentity = \"bms\"\n"),
        )
        .unwrap();
        let identity = site.mqtt.unwrap().commands.unwrap();
        assert_eq!(identity.name, "bms");
        assert!(identity.scopes.can_control("proj", "power"));
        assert!(!identity.scopes.can_control("proj", "input"));
    }

    #[test]
    fn mqtts_trusts_the_configured_ca_and_says_where_a_bad_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["broker".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        let site_path = dir.path().join("room-101.toml");
        let parse_at = |mqtt: &str| parse_site(&site_path, &format!("{DEVICE}[mqtt]\n{mqtt}"));

        let site = parse_at("broker = \"mqtts://broker\"\nca = \"ca.pem\"\n").unwrap();
        let mqtt = site.mqtt.unwrap();
        assert_eq!((mqtt.host.as_str(), mqtt.port), ("broker", 8883));
        assert!(mqtt.tls.is_some());
        // A reload compares the settings' Debug text: the same file must read the same.
        let again = parse_at("broker = \"mqtts://broker\"\nca = \"ca.pem\"\n").unwrap();
        assert_eq!(format!("{mqtt:?}"), format!("{:?}", again.mqtt.unwrap()));

        let errors = parse_at("broker = \"mqtts://broker\"\nca = \"missing.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("room-101.toml:6:6: [mqtt] cannot read the CA file"),
            "{errors}"
        );
        assert!(errors.contains("missing.pem"), "{errors}");
        std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
        let errors = parse_at("broker = \"mqtts://broker\"\nca = \"empty.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(errors.contains("has no CERTIFICATE block"), "{errors}");
        let errors = parse_at("broker = \"mqtt://broker\"\nca = \"ca.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("room-101.toml:6:6: [mqtt] ca is for a TLS broker"),
            "{errors}"
        );
    }

    #[test]
    fn discovery_is_off_until_asked_for() {
        let site = parse("broker = \"mqtt://b\"\n").unwrap();
        assert_eq!(site.mqtt.unwrap().discovery, None);
        let site = parse("broker = \"mqtt://b\"\ndiscovery = true\n").unwrap();
        assert_eq!(
            site.mqtt.unwrap().discovery.as_deref(),
            Some("homeassistant")
        );
        let site =
            parse("broker = \"mqtt://b\"\ndiscovery = true\ndiscovery_prefix = \"ha/\"\n").unwrap();
        assert_eq!(site.mqtt.unwrap().discovery.as_deref(), Some("ha"));
        let site = parse("broker = \"mqtt://b\"\ndiscovery_prefix = \"ha\"\n").unwrap();
        assert_eq!(site.mqtt.as_ref().unwrap().discovery, None);
        let warnings: Vec<String> = site.warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings.iter().any(|w| w.starts_with(
                "room-101.toml:6:20: [mqtt] discovery_prefix does nothing while discovery is off"
            )),
            "{warnings:?}"
        );
        let errors =
            parse("broker = \"mqtt://b\"\ndiscovery = true\ndiscovery_prefix = \"ha/#\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            errors.contains("room-101.toml:7:20: [mqtt] discovery_prefix `ha/#`"),
            "{errors}"
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused_with_a_way_out() {
        let errors = parse("broker = \"mqtt://user:pw@broker\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("put credentials in `username` and `password`"),
            "{errors}"
        );
        let errors = parse("broker = \"mqtt://broker\"\ncolor = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("room-101.toml:6:1: unknown field `color`"),
            "{errors}"
        );
    }
}
