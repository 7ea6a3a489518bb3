//! Who may watch: an Origin allow-list and signed, expiring viewer tokens scoped to a stream.
//!
//! A token is `{expires}.{mac}`: `expires` in seconds since the Unix epoch, `mac` the hex
//! HMAC-SHA256 of `{stream_id}.{expires}` under the server's secret (`vitrine token` makes
//! one). Each refusal closes the WebSocket with its own code and a reason.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Close codes of refused viewers (the private 4000-4999 range).
pub const CLOSE_TOKEN_MISSING_OR_INVALID: u16 = 4401;
pub const CLOSE_ORIGIN_NOT_ALLOWED: u16 = 4403;
pub const CLOSE_TOKEN_EXPIRED: u16 = 4410;
/// The server has `max_viewers` connected already (the standard "try again later").
pub const CLOSE_SERVER_FULL: u16 = 1013;

/// The server's access rules.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Origins (`https://shop.example`) whose pages may connect; empty: any.
    pub allowed_origins: Vec<String>,
    /// Secret of viewer tokens; none: no token needed.
    pub token_secret: Option<Vec<u8>>,
    /// Viewers connected at once, at most (0: no limit).
    pub max_viewers: usize,
    /// Viewers of one stream at once, at most (0: no limit).
    pub max_viewers_per_stream: usize,
    /// Viewers from one IP address at once, at most (0: no limit).
    pub max_viewers_per_ip: usize,
    /// Proxies whose `X-Forwarded-For` names the viewer's address.
    pub trusted_proxies: Vec<vitrine_schemas::address_range::AddressRange>,
    /// Viewers connected now, per IP address (only counted with a per-address limit).
    pub per_ip: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// A viewer counted against its address's limit, until dropped.
#[derive(Debug)]
pub struct IpSlot {
    counts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("viewers per address");
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Why a viewer was refused: the close code and reason it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: String,
}

fn mac(secret: &[u8], stream_id: &str, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{stream_id}.{expires}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A token for `stream_id` valid until `expires` (seconds since the Unix epoch).
pub fn make_token(secret: &[u8], stream_id: &str, expires: i64) -> String {
    format!("{expires}.{}", mac(secret, stream_id, expires))
}

impl Access {
    /// Takes a place for a viewer from `ip`, or refuses it when its address has
    /// `max_viewers_per_ip` connected already (none needed without that limit).
    pub fn take_ip_slot(&self, ip: std::net::IpAddr) -> Result<Option<IpSlot>, Refusal> {
        if self.max_viewers_per_ip == 0 {
            return Ok(None);
        }
        let mut counts = self.per_ip.lock().expect("viewers per address");
        let n = counts.entry(ip).or_default();
        if *n >= self.max_viewers_per_ip {
            return Err(Refusal {
                code: CLOSE_SERVER_FULL,
                reason: format!(
                    "too many viewers from {ip} ({}, server.max_viewers_per_ip): close another one first",
                    self.max_viewers_per_ip
                ),
            });
        }
        *n += 1;
        Ok(Some(IpSlot { counts: self.per_ip.clone(), ip }))
    }

    pub fn check(&self, stream_id: &str, origin: Option<&str>, token: Option<&str>, now_s: i64) -> Result<(), Refusal> {
        if !self.allowed_origins.is_empty() && !origin.is_some_and(|o| self.allowed_origins.iter().any(|a| a == o)) {
            return Err(Refusal {
                code: CLOSE_ORIGIN_NOT_ALLOWED,
                reason: format!("origin {} is not allowed (server.allowed_origins)", origin.unwrap_or("(none)")),
            });
        }
        let Some(secret) = &self.token_secret else { return Ok(()) };
        let invalid = |why: &str| Refusal { code: CLOSE_TOKEN_MISSING_OR_INVALID, reason: why.to_string() };
        let token = token.ok_or_else(|| invalid("a viewer token is required: ?token=..."))?;
        let (expires, given) = token.split_once('.').ok_or_else(|| invalid("malformed token"))?;
        let expires: i64 = expires.parse().map_err(|_| invalid("malformed token"))?;
        // Compared in constant time: the MAC's own verify.
        let mut check = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        check.update(format!("{stream_id}.{expires}").as_bytes());
        let given: Vec<u8> = (0..given.len() / 2)
            .map(|i| u8::from_str_radix(given.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
            .collect::<Result<_, _>>()
            .map_err(|_| invalid("malformed token"))?;
        check.verify_slice(&given).map_err(|_| invalid("invalid token for this stream"))?;
        if expires < now_s {
            return Err(Refusal { code: CLOSE_TOKEN_EXPIRED, reason: "token expired: get a new one".into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_scoped_to_a_stream_and_expire() {
        let access = Access { token_secret: Some(b"s3cret".to_vec()), ..Access::default() };
        let token = make_token(b"s3cret", "show-1", 1000);
        assert_eq!(access.check("show-1", None, Some(&token), 999), Ok(()));
        assert_eq!(access.check("show-2", None, Some(&token), 999).unwrap_err().code, 4401);
        assert_eq!(access.check("show-1", None, Some(&token), 1001).unwrap_err().code, 4410);
        assert_eq!(access.check("show-1", None, None, 999).unwrap_err().code, 4401);
        let forged = make_token(b"guess", "show-1", 1000);
        assert_eq!(access.check("show-1", None, Some(&forged), 999).unwrap_err().code, 4401);
        let longer = token.replacen("1000.", "9999.", 1);
        assert_eq!(access.check("show-1", None, Some(&longer), 999).unwrap_err().code, 4401, "expiry is signed");
    }

    #[test]
    fn only_allowed_origins_connect() {
        let access = Access { allowed_origins: vec!["https://shop.example".into()], ..Access::default() };
        assert_eq!(access.check("s", Some("https://shop.example"), None, 0), Ok(()));
        let refused = access.check("s", Some("https://evil.example"), None, 0).unwrap_err();
        assert_eq!(refused.code, 4403);
        assert!(refused.reason.contains("https://evil.example"));
        assert_eq!(access.check("s", None, None, 0).unwrap_err().code, 4403);
        assert_eq!(Access::default().check("s", None, None, 0), Ok(()));
    }
}
