//! The client's address. Behind a reverse proxy every TCP peer is the proxy, so when
//! the peer is in `PCC_TRUSTED_PROXIES` the client is read from the forwarding header
//! the proxy appends to (`X-Forwarded-For`, or RFC 7239 `Forwarded: for=` when a
//! request has no `X-Forwarded-For`); from any other peer those headers are ignored.
//! [`TrustedProxies::resolve`] runs once per request in the accept loop and the
//! [`ClientAddr`] it returns travels as a request extension, so per-IP limits, logs and
//! origin checks all see the same address.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

use axum::http::{HeaderMap, HeaderName};

use crate::config::Cidr;

/// `X-Forwarded-For`: `client, proxy1, proxy2`, each proxy appending its own peer.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// RFC 7239: `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`.
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// The host the client asked for, when the proxy rewrites `Host`.
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The proxies whose forwarding headers are believed (`PCC_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Vec<Cidr>,
}

/// Who sent a request: the client's IP, and the TCP peer it came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    ip: IpAddr,
    peer: SocketAddr,
    proxied: bool,
}

impl ClientAddr {
    /// A client connected directly: the TCP peer.
    pub fn direct(peer: SocketAddr) -> ClientAddr {
        ClientAddr {
            ip: peer.ip().to_canonical(),
            peer,
            proxied: false,
        }
    }

    /// The client's IP: what per-IP limits count (IPv4-mapped addresses as IPv4).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The TCP peer (the proxy, when [`ClientAddr::is_proxied`]).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the TCP peer is a trusted proxy: the connection-level limit was not
    /// applied to it at accept, and its forwarding headers were read.
    pub fn is_proxied(&self) -> bool {
        self.proxied
    }

    /// The host a proxied client asked for, when the proxy names it in
    /// `X-Forwarded-Host` (the rightmost value: the one the nearest proxy set). `None`
    /// from a direct client, whose `Host` is all there is.
    pub(super) fn forwarded_host<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        if !self.proxied {
            return None;
        }
        headers
            .get_all(X_FORWARDED_HOST)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').map(str::trim).find(|h| !h.is_empty()))
    }
}

/// The address and, when it came through a proxy, the proxy: `203.0.113.7 via
/// 10.0.0.2:41234`, else the peer as before (`203.0.113.7:50312`).
impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.proxied && self.ip != self.peer.ip().to_canonical() {
            write!(f, "{} via {}", self.ip, self.peer)
        } else {
            write!(f, "{}", self.peer)
        }
    }
}

impl TrustedProxies {
    /// Trusts the peers in `ranges` (none: every request is its TCP peer's).
    pub fn new(ranges: &[Cidr]) -> TrustedProxies {
        TrustedProxies {
            ranges: ranges.to_vec(),
        }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Who sent a request that came from `peer` with `headers`.
    ///
    /// From a trusted peer, the forwarding chain is walked right to left (the right end
    /// was written by the proxy nearest to us): trusted addresses are skipped, and the
    /// first untrusted one is the client; when every one is trusted, the leftmost. An
    /// entry that is not an address (`unknown`, an obfuscated name, garbage) ends the
    /// walk there, since whatever is left of it was written by a hop nobody vouches
    /// for: the client is then the last address read, or the peer itself. Empty list
    /// entries are skipped. With no forwarding header the client is the peer.
    pub fn resolve(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientAddr {
        let direct = ClientAddr::direct(peer);
        if !self.contains(direct.ip) {
            return direct;
        }
        let ip = if headers.contains_key(X_FORWARDED_FOR) {
            self.walk(direct.ip, x_forwarded_for(headers))
        } else if headers.contains_key(FORWARDED) {
            self.walk(direct.ip, forwarded_for(headers))
        } else {
            direct.ip
        };
        ClientAddr {
            ip,
            peer,
            proxied: true,
        }
    }

    /// The right-to-left walk over `hops` (client first, as written), from a trusted
    /// peer `from`. `None` is an entry that is not an address.
    fn walk(&self, from: IpAddr, hops: Vec<Option<IpAddr>>) -> IpAddr {
        let mut client = from;
        for hop in hops.into_iter().rev() {
            let Some(ip) = hop else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// The `X-Forwarded-For` entries of every such header line, in order (several lines
/// are one list, as HTTP says); a line that is not text is one entry that is not an
/// address.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for line in headers.get_all(X_FORWARDED_FOR) {
        match line.to_str() {
            Ok(text) => hops.extend(
                text.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(hop_address),
            ),
            Err(_) => hops.push(None),
        }
    }
    hops
}

/// The `for=` of every `Forwarded` element, in order; an element without one (or a
/// line that does not parse) is an entry that is not an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for line in headers.get_all(FORWARDED) {
        let Ok(text) = line.to_str() else {
            hops.push(None);
            continue;
        };
        for element in split_outside_quotes(text, ',') {
            if element.trim().is_empty() {
                continue;
            }
            let value = split_outside_quotes(element, ';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then_some(value.trim())
            });
            hops.push(value.and_then(hop_address));
        }
    }
    hops
}

/// Splits `text` at `separator`, except inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    text.split(move |c: char| {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            return true;
        }
        false
    })
}

/// One hop's address: `192.0.2.7`, `2001:db8::1`, with a port (`192.0.2.7:4711`,
/// `[2001:db8::1]:4711`, as some load balancers write it) or in brackets, quoted or
/// not (`Forwarded` quotes IPv6). IPv4-mapped IPv6 is its IPv4 address.
fn hop_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let entry = entry
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(entry);
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusting(ranges: &[&str]) -> TrustedProxies {
        let ranges: Vec<Cidr> = ranges.iter().map(|r| r.parse().unwrap()).collect();
        TrustedProxies::new(&ranges)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    /// The client `proxies` resolve for a request from `peer` with `pairs`.
    fn client(proxies: &TrustedProxies, peer: &str, pairs: &[(&'static str, &str)]) -> String {
        let peer: SocketAddr = peer.parse().unwrap();
        proxies.resolve(peer, &headers(pairs)).ip().to_string()
    }

    const XFF: &str = "x-forwarded-for";

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let nobody = trusting(&[]);
        assert_eq!(
            client(&nobody, "127.0.0.1:5000", &[(XFF, "198.51.100.1")]),
            "127.0.0.1"
        );
        let lan = trusting(&["10.0.0.0/8"]);
        let c = lan.resolve(
            "203.0.113.5:5000".parse().unwrap(),
            &headers(&[(XFF, "198.51.100.1"), ("forwarded", "for=198.51.100.2")]),
        );
        assert_eq!(c, ClientAddr::direct("203.0.113.5:5000".parse().unwrap()));
        assert!(!c.is_proxied());
        assert_eq!(c.to_string(), "203.0.113.5:5000");
    }

    #[test]
    fn the_walk_goes_right_to_left_past_trusted_hops() {
        let p = trusting(&["10.0.0.0/8", "192.0.2.1"]);
        let peer = "10.0.0.2:41234";
        // One proxy: the entry it appended.
        assert_eq!(client(&p, peer, &[(XFF, "198.51.100.7")]), "198.51.100.7");
        // A client's forged entry to the left of its real address is never reached.
        assert_eq!(
            client(&p, peer, &[(XFF, "203.0.113.66, 198.51.100.7")]),
            "198.51.100.7"
        );
        // Trusted hops (a chain of proxies) are skipped.
        assert_eq!(
            client(
                &p,
                peer,
                &[(XFF, "203.0.113.66, 198.51.100.7, 192.0.2.1, 10.9.9.9")]
            ),
            "198.51.100.7"
        );
        // Every entry trusted: the leftmost.
        assert_eq!(
            client(&p, peer, &[(XFF, "10.1.1.1, 192.0.2.1")]),
            "10.1.1.1"
        );
        // No header, or nothing in it: the proxy itself.
        assert_eq!(client(&p, peer, &[]), "10.0.0.2");
        assert_eq!(client(&p, peer, &[(XFF, " , ")]), "10.0.0.2");
        // Several header lines are one list, in order.
        assert_eq!(
            client(
                &p,
                peer,
                &[(XFF, "203.0.113.66"), (XFF, "198.51.100.7, 10.3.3.3")]
            ),
            "198.51.100.7"
        );
        let c = p.resolve(peer.parse().unwrap(), &headers(&[(XFF, "198.51.100.7")]));
        assert!(c.is_proxied());
        assert_eq!(c.to_string(), "198.51.100.7 via 10.0.0.2:41234");
        assert_eq!(c.peer(), peer.parse().unwrap());
    }

    #[test]
    fn ipv6_ports_and_mapped_addresses() {
        let p = trusting(&["2001:db8:1::/48", "10.0.0.0/8"]);
        assert_eq!(
            client(&p, "[2001:db8:1::5]:443", &[(XFF, "2001:db8:99::1")]),
            "2001:db8:99::1"
        );
        assert_eq!(
            client(
                &p,
                "[2001:db8:1::5]:443",
                &[(XFF, "[2001:db8:99::1]:5555, 2001:db8:1::9")]
            ),
            "2001:db8:99::1"
        );
        assert_eq!(
            client(&p, "10.0.0.2:1", &[(XFF, "198.51.100.7:61000")]),
            "198.51.100.7"
        );
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: still trusted, and
        // mapped entries count as the IPv4 client they are.
        assert_eq!(
            client(&p, "[::ffff:10.0.0.2]:80", &[(XFF, "::ffff:198.51.100.7")]),
            "198.51.100.7"
        );
        assert_eq!(
            client(&p, "10.0.0.2:1", &[(XFF, "203.0.113.66, ::ffff:10.4.4.4")]),
            "203.0.113.66"
        );
        // An untrusted mapped peer is its IPv4 address for the limits.
        assert_eq!(client(&p, "[::ffff:203.0.113.9]:80", &[]), "203.0.113.9");
    }

    #[test]
    fn entries_that_are_not_addresses_are_never_the_client() {
        let p = trusting(&["10.0.0.0/8"]);
        let peer = "10.0.0.2:1";
        // The walk stops at garbage: what is left of it is nobody's word.
        for chain in [
            "203.0.113.66, garbage",
            "203.0.113.66, unknown",
            "203.0.113.66, 999.1.1.1",
            "203.0.113.66, _hidden",
            "203.0.113.66, 198.51.100.7:notaport",
        ] {
            assert_eq!(client(&p, peer, &[(XFF, chain)]), "10.0.0.2", "{chain}");
        }
        // Past a trusted hop it stops at the last address read.
        assert_eq!(
            client(&p, peer, &[(XFF, "203.0.113.66, garbage, 10.7.7.7")]),
            "10.7.7.7"
        );
        // Garbage to the left of the client is never reached.
        assert_eq!(
            client(&p, peer, &[(XFF, "garbage, 198.51.100.7")]),
            "198.51.100.7"
        );
        // A header line that is not text.
        let mut h = HeaderMap::new();
        h.append(
            XFF,
            axum::http::HeaderValue::from_bytes(b"198.51.100.7\xff").unwrap(),
        );
        assert_eq!(
            p.resolve(peer.parse().unwrap(), &h).ip().to_string(),
            "10.0.0.2"
        );
    }

    #[test]
    fn rfc_7239_forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let p = trusting(&["10.0.0.0/8"]);
        let peer = "10.0.0.2:1";
        let fwd = "forwarded";
        assert_eq!(
            client(
                &p,
                peer,
                &[(fwd, "for=198.51.100.7;proto=https;by=10.0.0.2")]
            ),
            "198.51.100.7"
        );
        assert_eq!(
            client(
                &p,
                peer,
                &[(fwd, r#"for=203.0.113.66, For="[2001:db8::17]:4711""#)]
            ),
            "2001:db8::17"
        );
        assert_eq!(
            client(
                &p,
                peer,
                &[(fwd, r#"for="198.51.100.7:80";host="a,b;c", for=10.1.1.1"#)]
            ),
            "198.51.100.7"
        );
        // An element without for=, or with an obfuscated one, stops the walk.
        assert_eq!(
            client(&p, peer, &[(fwd, "for=203.0.113.66, proto=https")]),
            "10.0.0.2"
        );
        assert_eq!(
            client(&p, peer, &[(fwd, "for=203.0.113.66, for=_hidden")]),
            "10.0.0.2"
        );
        // X-Forwarded-For wins: a proxy that appends to it does not touch Forwarded,
        // which the client may have written.
        assert_eq!(
            client(
                &p,
                peer,
                &[(fwd, "for=203.0.113.66"), (XFF, "198.51.100.7")]
            ),
            "198.51.100.7"
        );
    }

    #[test]
    fn the_forwarded_host_is_read_only_through_a_trusted_proxy() {
        let p = trusting(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-host", "a.example, phasecast.example")]);
        let proxied = p.resolve("10.0.0.2:1".parse().unwrap(), &h);
        assert_eq!(proxied.forwarded_host(&h), Some("phasecast.example"));
        let direct = p.resolve("203.0.113.5:1".parse().unwrap(), &h);
        assert_eq!(direct.forwarded_host(&h), None);
    }
}
