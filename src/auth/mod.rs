//! Who is asking, and what they may do.
//!
//! A panel or API client presents a token; the [`TokenBook`] resolves it once into a
//! [`Principal`] (the token's name and its [`Scopes`]). Everything after that checks the
//! principal: the hub filters what it sends by the read scopes, the router refuses a
//! command outside the control scopes with `forbidden`, and command ids are deduplicated
//! per principal and panel, so two tokens can never see or pre-empt each other's ids.
//!
//! Secrets are compared as SHA-256 digests in constant time, against every configured
//! token, so neither the answer's timing nor a site file that stores only digests gives a
//! secret away. Failed attempts are throttled per peer address ([`Lockout`]).

mod lockout;
mod origin;
mod scope;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use lockout::{Attempt, Lockout};
pub use origin::WebPolicy;

/// How long a locked-out address waits (for messages).
pub fn lockout_time() -> std::time::Duration {
    lockout::LOCK_FOR
}
pub use scope::{Scope, Scopes};

use crate::config::AuthToken;

/// A token's secret as the gateway keeps it: only its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl Secret {
    pub fn plain(secret: &str) -> Secret {
        Secret(Sha256::digest(secret.as_bytes()).into())
    }

    pub fn from_sha256_hex(hex_digest: &str) -> Option<Secret> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest.trim(), &mut digest).ok()?;
        Some(Secret(digest))
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Who sent a request, once their token is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name; `None` on a site without tokens.
    pub name: Option<Arc<str>>,
    pub scopes: Arc<Scopes>,
}

impl Principal {
    /// Anyone, on a site without tokens.
    pub fn open() -> Principal {
        Principal {
            name: None,
            scopes: Arc::new(Scopes::everything()),
        }
    }

    /// The part of a command id's dedupe key that says whose it is.
    pub fn dedupe_scope(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// The site's tokens.
#[derive(Debug, Default)]
pub struct TokenBook {
    tokens: Vec<(Secret, Principal)>,
}

impl TokenBook {
    pub fn new(tokens: &[AuthToken]) -> TokenBook {
        TokenBook {
            tokens: tokens
                .iter()
                .map(|t| {
                    let principal = Principal {
                        name: Some(t.name.as_str().into()),
                        scopes: Arc::new(t.scopes.clone()),
                    };
                    (t.secret.clone(), principal)
                })
                .collect(),
        }
    }

    /// Without tokens the site is open.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The principal a presented token stands for, or `None` when it is missing or wrong
    /// (on an open site, everyone is [`Principal::open`]). Every configured digest is
    /// compared, in constant time, whatever matched.
    pub fn verify(&self, presented: Option<&str>) -> Option<Principal> {
        if self.is_open() {
            return Some(Principal::open());
        }
        let digest = Secret::plain(presented?);
        let mut found = None;
        for (secret, principal) in &self.tokens {
            if bool::from(secret.0.ct_eq(&digest.0)) {
                found = Some(principal);
            }
        }
        found.cloned()
    }
}

/// A fresh random secret for `avgate token new`: 32 bytes from the OS, in URL-safe hex.
pub fn new_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str, scopes: &[&str]) -> AuthToken {
        AuthToken {
            name: name.into(),
            secret: Secret::plain(secret),
            scopes: Scopes::parse(scopes.iter().copied()).unwrap(),
            priority: 0,
        }
    }

    #[test]
    fn tokens_resolve_to_their_principal_and_wrong_ones_to_none() {
        let book = TokenBook::new(&[
            token("lobby", "lobby-secret", &["read", "control:proj-*"]),
            token("guest", "guest-secret", &["read:proj-*"]),
        ]);
        let lobby = book.verify(Some("lobby-secret")).unwrap();
        assert_eq!(lobby.dedupe_scope(), "lobby");
        assert!(lobby.scopes.can_control("proj-1", "power"));
        assert!(!lobby.scopes.can_control("switcher", "route"));
        let guest = book.verify(Some("guest-secret")).unwrap();
        assert!(!guest.scopes.can_control("proj-1", "power"));
        assert!(guest.scopes.can_read("proj-1", "power"));
        assert!(!guest.scopes.can_read("switcher", "route.1"));
        assert_eq!(book.verify(Some("lobby-secreT")), None);
        assert_eq!(book.verify(Some("")), None);
        assert_eq!(book.verify(None), None);
    }

    #[test]
    fn digests_and_plain_secrets_are_the_same_secret() {
        let plain = Secret::plain("a long random string");
        let hashed = Secret::from_sha256_hex(&plain.sha256_hex()).unwrap();
        assert_eq!(plain, hashed);
        assert!(Secret::from_sha256_hex("abc").is_none());
        assert!(!format!("{plain:?}").contains(&plain.sha256_hex()));
    }

    #[test]
    fn an_open_site_lets_anyone_do_anything() {
        let book = TokenBook::new(&[]);
        let anyone = book.verify(None).unwrap();
        assert!(anyone.scopes.is_admin());
        assert!(anyone.scopes.can_control("x", "y"));
        assert_eq!(anyone.dedupe_scope(), "");
    }

    #[test]
    fn scopes_read_control_admin() {
        let scopes = Scopes::parse(["read:switcher", "control:switcher/route", "metrics"]).unwrap();
        assert!(scopes.can_control("switcher", "route"));
        assert!(!scopes.can_control("switcher", "volume"));
        assert!(scopes.can_read("switcher", "volume"));
        assert!(!scopes.can_read("proj-1", "power"));
        assert!(!scopes.can_see_device("proj-1"));
        assert!(scopes.has_metrics() && !scopes.is_admin());
        assert!(!scopes.reads_everything());
        // A control scope reads the devices it controls.
        let control = Scopes::parse(["control:proj-1/power"]).unwrap();
        assert!(control.can_read("proj-1", "lamp_hours"));
        assert!(!control.can_control("proj-1", "input"));
        assert!(Scopes::parse(["admin"]).unwrap().reads_everything());
        for bad in ["write", "admin:x", "read:a/b/c", "control:", "read:proj 1"] {
            assert!(Scopes::parse([bad]).is_err(), "{bad}");
        }
        assert_eq!(
            Scopes::parse(["read", "control:proj-*", "admin"])
                .unwrap()
                .to_string(),
            "read control:proj-* admin"
        );
    }

    #[test]
    fn new_secrets_are_long_and_different() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_eq!(a.len(), 48);
        assert_ne!(a, b);
    }
}
