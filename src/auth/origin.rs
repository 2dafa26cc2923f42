//! Browser-facing checks that come before any token: which web pages may talk to the
//! gateway (`Origin`), which names it answers to (`Host`, against DNS rebinding), and
//! which address a request really comes from (behind a trusted reverse proxy).
//!
//! A malicious page in a browser on the room's LAN can open a WebSocket to the gateway:
//! browsers send its `Origin`, so refusing origins other than the gateway's own (and the
//! configured ones) stops it before the upgrade. A page that rebinds its own DNS name to
//! the gateway's address would be same-origin, but its requests carry its own name in
//! `Host`; answering only to the gateway's names, and IP literals, stops that.

use std::net::IpAddr;

use ipnet::IpNet;

/// What the gateway accepts from browsers, from `[server]`.
#[derive(Debug, Clone, Default)]
pub struct WebPolicy {
    /// Origins (`https://panels.example.edu`) allowed besides the gateway's own.
    pub allowed_origins: Vec<String>,
    /// Host names the gateway answers to besides IP literals, `localhost` and the
    /// machine's own name: from `allowed_hosts` and the hosts of `allowed_origins`.
    pub allowed_hosts: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl WebPolicy {
    pub fn new(
        allowed_origins: Vec<String>,
        mut allowed_hosts: Vec<String>,
        trusted_proxies: Vec<IpNet>,
    ) -> WebPolicy {
        let origin_hosts = allowed_origins.iter().filter_map(|o| {
            let authority = o.split_once("://").map_or(o.as_str(), |(_, a)| a);
            Some(split_port(authority).0.to_ascii_lowercase()).filter(|h| !h.is_empty())
        });
        allowed_hosts.extend(origin_hosts.collect::<Vec<_>>());
        if let Some(name) = machine_name() {
            allowed_hosts.push(format!("{name}.local"));
            allowed_hosts.push(name);
        }
        for host in &mut allowed_hosts {
            host.make_ascii_lowercase();
        }
        let allowed_origins = allowed_origins
            .into_iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect();
        WebPolicy {
            allowed_origins,
            allowed_hosts,
            trusted_proxies,
        }
    }

    /// Whether a request's `Host` names this gateway.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = split_port(host).0.to_ascii_lowercase();
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        literal.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || self.allowed_hosts.contains(&name)
    }

    /// Whether a browser page from `origin` may use the API or the WebSocket of the
    /// gateway reached as `host`. Its own pages always may.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let authority = origin.split_once("://").map(|(_, a)| a);
        let own = matches!((authority, host), (Some(a), Some(h)) if a == h.to_ascii_lowercase());
        own || self.allowed_origins.contains(&origin)
    }

    /// The address a request comes from: the peer, or when the peer is a trusted proxy,
    /// the nearest address in `X-Forwarded-For` that is not one.
    pub fn client_addr(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let Some(list) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in list.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if trusted(&ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => return client,
            }
        }
        client
    }
}

/// `host:port`, `[v6]:port` or `host` → (host, port).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (authority, None),
    }
}

/// The machine's host name, which tablets on the LAN may use to reach it.
fn machine_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> WebPolicy {
        WebPolicy::new(
            vec!["https://Panels.Example.edu".into()],
            vec!["avgate-room101".into()],
            vec!["127.0.0.1/32".parse().unwrap()],
        )
    }

    #[test]
    fn hosts_are_ip_literals_localhost_or_named() {
        let p = policy();
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "avgate-room101:8080",
            "panels.example.edu",
            "LOCALHOST",
        ] {
            assert!(p.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example.com:8080", "avgate-room101.evil.com", ""] {
            assert!(!p.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn origins_are_the_gateways_own_or_allowed() {
        let p = policy();
        assert!(p.origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(p.origin_allowed("https://panels.example.edu/", Some("10.0.0.5:8080")));
        assert!(!p.origin_allowed("http://evil.example.com", Some("127.0.0.1:8080")));
        assert!(!p.origin_allowed("http://127.0.0.1:9999", Some("127.0.0.1:8080")));
        assert!(!p.origin_allowed("null", Some("127.0.0.1:8080")));
        assert!(!p.origin_allowed("http://127.0.0.1:8080", None));
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let p = policy();
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "127.0.0.9".parse().unwrap();
        let client: IpAddr = "127.0.0.50".parse().unwrap();
        assert_eq!(p.client_addr(proxy, Some("127.0.0.50")), client);
        assert_eq!(
            p.client_addr(proxy, Some("127.0.0.77, 127.0.0.50, 127.0.0.1")),
            client,
            "the nearest untrusted hop, not what the client wrote first"
        );
        assert_eq!(p.client_addr(stranger, Some("127.0.0.50")), stranger);
        assert_eq!(p.client_addr(proxy, None), proxy);
        assert_eq!(p.client_addr(proxy, Some("garbage")), proxy);
    }
}
