//! `[[auth.tokens]]`: who may connect, and what each may read and control.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use crate::auth::{Scopes, Secret};

/// A token as checked: its holder, how its secret is kept, and its scopes.
#[derive(Debug, Clone)]
pub struct AuthToken {
    /// Who holds the token (a panel or a person); recorded with every command and used,
    /// with the panel's `client`, as the scope of its command ids.
    pub name: String,
    pub secret: Secret,
    pub scopes: Scopes,
    /// Under an exclusive `[lease]`, a panel with this token takes the room from a holder
    /// whose token's priority is lower (0 by default).
    pub priority: i32,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthFile {
    #[serde(default)]
    tokens: Vec<Spanned<TokenFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    name: Spanned<String>,
    /// The secret itself (works, but anyone who reads the site file has it).
    token: Option<Spanned<String>>,
    /// The SHA-256 of the secret, in hex, as `avgate token new` prints it.
    token_sha256: Option<Spanned<String>>,
    /// Absent: `read` and `control` of every device, as before scopes existed.
    scopes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    priority: i32,
}

/// Shortest plain secret accepted.
const MIN_SECRET: usize = 8;

/// Checks every token; returns the good ones, and pushes errors and warnings.
pub(super) fn check(
    path: &Path,
    text: &str,
    file: AuthFile,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Vec<AuthToken> {
    let mut tokens: Vec<AuthToken> = Vec::new();
    for entry in file.tokens {
        let span = entry.span();
        let entry = entry.into_inner();
        let name = entry.name.get_ref().clone();
        let at = |span: std::ops::Range<usize>, message: String| {
            ConfigError::at(path, text, Some(span), message)
        };
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            errors.push(at(
                entry.name.span(),
                "token name must have 1 to 64 printable characters".into(),
            ));
            continue;
        }
        if tokens.iter().any(|t| t.name == name) {
            errors.push(at(
                entry.name.span(),
                format!("two tokens are named `{name}`; each holder needs its own name"),
            ));
            continue;
        }
        let secret = match (entry.token, entry.token_sha256) {
            (Some(_), Some(hash)) => {
                errors.push(at(
                    hash.span(),
                    format!("token `{name}` has both `token` and `token_sha256`; keep only `token_sha256`"),
                ));
                continue;
            }
            (None, None) => {
                errors.push(at(
                    span,
                    format!("token `{name}` needs `token_sha256` (from `avgate token new {name}`) or `token`"),
                ));
                continue;
            }
            (Some(plain), None) => {
                if plain.get_ref().len() < MIN_SECRET {
                    errors.push(at(
                        plain.span(),
                        format!(
                            "token for `{name}` is too short: use at least {MIN_SECRET} characters (`avgate token new {name}` makes a good one)"
                        ),
                    ));
                    continue;
                }
                warnings.push(at(
                    plain.span(),
                    format!(
                        "token `{name}` is stored in plain text; replace `token = ...` with `token_sha256 = \"{}\"`",
                        Secret::plain(plain.get_ref()).sha256_hex()
                    ),
                ));
                Secret::plain(plain.get_ref())
            }
            (None, Some(hash)) => match Secret::from_sha256_hex(hash.get_ref()) {
                Some(secret) => secret,
                None => {
                    errors.push(at(
                        hash.span(),
                        format!("token_sha256 for `{name}` must be 64 hex digits (as `avgate token new` prints)"),
                    ));
                    continue;
                }
            },
        };
        let scopes = match entry.scopes {
            None => Scopes::panel_default(),
            Some(list) => {
                let mut bad = false;
                for scope in &list {
                    if let Err(why) = Scopes::parse([scope.get_ref().as_str()]) {
                        errors.push(at(scope.span(), format!("token `{name}`: {why}")));
                        bad = true;
                    }
                }
                if bad {
                    continue;
                }
                Scopes::parse(list.iter().map(|s| s.get_ref().as_str()))
                    .expect("each scope was checked")
            }
        };
        tokens.push(AuthToken {
            name,
            secret,
            scopes,
            priority: entry.priority,
        });
    }
    tokens
}
