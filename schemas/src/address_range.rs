//! An IP address or a CIDR range (`10.0.0.0/8`, `::1`), as the spec names trusted proxies.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AddressRange(IpNet);

impl AddressRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

impl TryFrom<String> for AddressRange {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("`{text}` is not an IP address or a CIDR range such as 10.0.0.0/8");
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (text.as_str(), None),
        };
        let network: IpAddr = address.trim().parse().map_err(|_| bad())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        let range = IpNet::new(network, prefix)
            .map_err(|_| format!("`{text}`: a prefix of {prefix} bits, but the address has {bits}"))?;
        Ok(AddressRange(range))
    }
}

impl From<AddressRange> for String {
    fn from(range: AddressRange) -> String {
        range.0.to_string()
    }
}

/// The viewer's own address behind trusted proxies: walking `X-Forwarded-For` from the right
/// (each proxy appends the address it was reached from), the first address that is not a
/// trusted proxy. A peer that is not a trusted proxy is the viewer itself, whatever the header
/// says (anyone can send one).
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[AddressRange]) -> IpAddr {
    let trusted_hop = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !trusted_hop(peer) {
        return peer;
    }
    let hops = forwarded_for.unwrap_or_default().split(',').rev().map(str::trim);
    let mut client = peer;
    for hop in hops {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted_hop(ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => break, // (a garbled entry: the last trusted hop is as far as is known)
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> AddressRange {
        AddressRange::try_from(text.to_string()).unwrap()
    }

    #[test]
    fn ranges_hold_their_addresses_only() {
        let ten = range("10.0.0.0/8");
        assert!(ten.contains("10.200.3.4".parse().unwrap()));
        assert!(!ten.contains("11.0.0.1".parse().unwrap()));
        assert!(ten.contains("::ffff:10.1.2.3".parse().unwrap()), "IPv4-mapped");
        assert!(range("127.0.0.1").contains("127.0.0.1".parse().unwrap()));
        assert!(!range("127.0.0.1").contains("127.0.0.2".parse().unwrap()));
        assert!(range("fd00::/8").contains("fd12::1".parse().unwrap()));
        assert!(range("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert_eq!(String::from(range("10.0.0.0/8")), "10.0.0.0/8");
        assert_eq!(String::from(range("::1")), "::1/128");
        for bad in ["10.0.0.0/33", "ten", "10.0.0.0/x", ""] {
            assert!(AddressRange::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_viewer_is_the_last_address_before_the_trusted_proxies() {
        let trusted = [range("10.0.0.0/8")];
        let peer = "10.0.0.5".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Forged entries on the left are ignored: the balancer appended the real one.
        assert_eq!(client_address(peer, Some("6.6.6.6, 203.0.113.9"), &trusted), ip("203.0.113.9"));
        assert_eq!(client_address(peer, Some("203.0.113.9, 10.1.1.1"), &trusted), ip("203.0.113.9"));
        // No header, or nothing usable: the last trusted hop.
        assert_eq!(client_address(peer, None, &trusted), peer);
        assert_eq!(client_address(peer, Some("garbage"), &trusted), peer);
        // A peer that is not trusted cannot claim another address.
        let direct = ip("198.51.100.7");
        assert_eq!(client_address(direct, Some("203.0.113.9"), &trusted), direct);
    }
}
