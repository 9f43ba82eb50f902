//! The private-target guard.
//!
//! A control plane reachable beyond loopback lets whoever holds its token open
//! connections *from the gateway's network position*. Without a guard that is a
//! server-side request forgery tool: `ws://127.0.0.1:6379/`, the cloud metadata
//! service on `169.254.169.254`, the office LAN. So, unless the operator allows it
//! (`--allow-private-targets`), outbound targets must be public addresses.
//!
//! Two rules make the check hold:
//! - **every** address the name resolves to is checked (a name with one public and one
//!   private address is refused: the connector could pick either);
//! - the connection is made to the checked addresses
//!   ([`wsgate_protocol::ConnectRequest::resolved`]), never to the answer of a second
//!   lookup, which a rebinding DNS server could make different.
//!
//! IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`)
//! addresses are judged by the IPv4 address they carry.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::Url;
use wsgate_protocol::ConnectError;

/// Which targets an outbound connection may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetPolicy {
    /// Anything (a control plane on loopback, or `--allow-private-targets`).
    Any,
    /// Public addresses only.
    PublicOnly,
}

/// The kind of non-public address a target resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restricted {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`; also IPv6 site-local `fec0::/10`
    /// and local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// RFC 6598 carrier-grade NAT, `100.64.0.0/10`.
    SharedAddress,
    /// `169.254.0.0/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// Everything else not globally routable: `192.0.0.0/24`, `192.88.99.0/24`,
    /// `240.0.0.0/4`, `100::/64`, IPv4-compatible `::/96`.
    Reserved,
}

impl Restricted {
    /// "a loopback address", for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::SharedAddress => "a shared (carrier-grade NAT) address",
            Self::LinkLocal => "a link-local address",
            Self::UniqueLocal => "a unique-local address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address",
            Self::Reserved => "a reserved address",
        }
    }
}

impl fmt::Display for Restricted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The class of a non-public address, or `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<Restricted> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Restricted> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => Restricted::Unspecified,
        (127, _, _) => Restricted::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => Restricted::Private,
        (100, 64..=127, _) => Restricted::SharedAddress,
        (169, 254, _) => Restricted::LinkLocal,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Restricted::Documentation,
        (198, 18..=19, _) => Restricted::Benchmarking,
        (192, 0, 0) | (192, 88, 99) => Restricted::Reserved,
        (224..=239, _, _) => Restricted::Multicast,
        _ if ip == Ipv4Addr::BROADCAST => Restricted::Broadcast,
        (240..=255, _, _) => Restricted::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Restricted> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if ip.is_unspecified() {
        return Some(Restricted::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Restricted::Loopback);
    }
    match s {
        // IPv4-mapped: the IPv4 address is what the socket reaches.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => return classify_v4(embedded(hi, lo)),
        // IPv4-compatible (deprecated, RFC 4291 §2.5.5.1).
        [0, 0, 0, 0, 0, 0, _, _] => return Some(Restricted::Reserved),
        // Well-known NAT64 prefix: a translator reaches the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return classify_v4(embedded(hi, lo)),
        // 6to4: the embedded IPv4 address is the tunnel's end.
        [0x2002, hi, lo, ..] => return classify_v4(embedded(hi, lo)),
        _ => {}
    }
    Some(match s[0] {
        0x0064 if s[1] == 0xff9b && s[2] == 0x0001 => Restricted::Private,
        0x0100 if s[1..4] == [0, 0, 0] => Restricted::Reserved,
        0x2001 if s[1] == 0x0db8 => Restricted::Documentation,
        0x2001 if s[1] == 0x0002 && s[2] == 0 => Restricted::Benchmarking,
        0x3fff if s[1] < 0x1000 => Restricted::Documentation,
        x if x & 0xfe00 == 0xfc00 => Restricted::UniqueLocal,
        x if x & 0xffc0 == 0xfe80 => Restricted::LinkLocal,
        x if x & 0xffc0 == 0xfec0 => Restricted::Private,
        x if x & 0xff00 == 0xff00 => Restricted::Multicast,
        _ => return None,
    })
}

/// Why a target may not be dialled, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// One of the addresses is not public.
    #[error("{}", refusal(.host, .addr, .range))]
    Restricted { host: String, addr: IpAddr, range: Restricted },
    /// The name could not be resolved (or the URL has no host): a connection failure
    /// like any other (`dns`, `timeout`, `invalid_url`), not a refusal.
    #[error(transparent)]
    Lookup(ConnectError),
}

fn refusal(host: &str, addr: &IpAddr, range: &Restricted) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        format!("{addr} is {range}")
    } else {
        format!("{host} resolves to {addr}, {range}")
    }
}

/// Resolves `url`'s host (a literal address needs no lookup) within `timeout` and
/// checks every address. On success, the addresses to dial: pass them as
/// [`wsgate_protocol::ConnectRequest::resolved`].
pub async fn vet(url: &Url, timeout: Duration) -> Result<Vec<SocketAddr>, GuardError> {
    let bad = |reason| GuardError::Lookup(ConnectError::InvalidUrl { url: url.to_string(), reason });
    let host = url.host_str().ok_or_else(|| bad("no host"))?;
    let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let dns = |source| GuardError::Lookup(ConnectError::Dns { host: bare.to_owned(), source });
            tokio::time::timeout(timeout, tokio::net::lookup_host((bare, port)))
                .await
                .map_err(|_| GuardError::Lookup(ConnectError::Timeout { stage: "dns", after: timeout }))?
                .map_err(dns)?
                .collect()
        }
    };
    if addrs.is_empty() {
        let none = io::Error::new(io::ErrorKind::NotFound, "no addresses");
        return Err(GuardError::Lookup(ConnectError::Dns { host: bare.to_owned(), source: none }));
    }
    for a in &addrs {
        if let Some(range) = classify(a.ip()) {
            return Err(GuardError::Restricted { host: host.to_owned(), addr: a.ip(), range });
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<Restricted> {
        classify(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    #[test]
    fn ipv4_ranges() {
        use Restricted::*;
        let cases: &[(&str, Option<Restricted>)] = &[
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.168.1.1", Some(Private)),
            ("192.169.0.1", None),
            ("100.64.0.1", Some(SharedAddress)),
            ("100.127.255.255", Some(SharedAddress)),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("169.254.169.254", Some(LinkLocal)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("198.18.0.1", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("198.20.0.0", None),
            ("192.0.0.8", Some(Reserved)),
            ("192.88.99.1", Some(Reserved)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
            ("11.0.0.1", None),
            ("126.255.255.255", None),
            ("128.0.0.1", None),
            ("223.255.255.255", None),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), *want, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges() {
        use Restricted::*;
        let cases: &[(&str, Option<Restricted>)] = &[
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("fe80::1", Some(LinkLocal)),
            ("febf:ffff::1", Some(LinkLocal)),
            ("fec0::1", Some(Private)),
            ("fc00::1", Some(UniqueLocal)),
            ("fd12:3456:789a::1", Some(UniqueLocal)),
            ("ff02::1", Some(Multicast)),
            ("ff0e::1", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff:fff::1", Some(Documentation)),
            ("3fff:1000::1", None),
            ("2001:2::1", Some(Benchmarking)),
            ("100::1", Some(Reserved)),
            ("64:ff9b:1::1", Some(Private)),
            ("::7f00:1", Some(Reserved)),
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("2a00:1450:4001:80b::200e", None),
            ("2001:db9::1", None),
            ("fbff::1", None),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), *want, "{ip}");
        }
    }

    #[test]
    fn ipv6_carrying_ipv4_is_judged_by_the_ipv4_address() {
        use Restricted::*;
        // IPv4-mapped.
        assert_eq!(class("::ffff:127.0.0.1"), Some(Loopback));
        assert_eq!(class("::ffff:10.1.2.3"), Some(Private));
        assert_eq!(class("::ffff:169.254.169.254"), Some(LinkLocal));
        assert_eq!(class("::ffff:8.8.8.8"), None);
        // NAT64 well-known prefix.
        assert_eq!(class("64:ff9b::127.0.0.1"), Some(Loopback));
        assert_eq!(class("64:ff9b::192.168.0.1"), Some(Private));
        assert_eq!(class("64:ff9b::1.1.1.1"), None);
        // 6to4 (2002:AABB:CCDD:: carries AA.BB.CC.DD).
        assert_eq!(class("2002:7f00:1::1"), Some(Loopback));
        assert_eq!(class("2002:a00:1::"), Some(Private));
        assert_eq!(class("2002:808:808::1"), None);
    }

    #[tokio::test]
    async fn vetting_checks_literal_addresses_and_every_resolved_one() {
        let t = Duration::from_secs(5);
        let refused = |url: &str| {
            let url: Url = url.parse().expect("url");
            async move { vet(&url, t).await }
        };
        for (url, addr, range) in [
            ("ws://127.0.0.1:9/", "127.0.0.1", Restricted::Loopback),
            ("ws://[::1]:9/", "::1", Restricted::Loopback),
            ("wss://10.0.0.1/", "10.0.0.1", Restricted::Private),
            ("ws://[::ffff:7f00:1]/", "127.0.0.1", Restricted::Loopback),
            ("ws://169.254.169.254/latest", "169.254.169.254", Restricted::LinkLocal),
        ] {
            match refused(url).await {
                Err(GuardError::Restricted { addr: a, range: r, .. }) => {
                    let want: IpAddr = addr.parse().expect("ip");
                    // A mapped address may come back in either form.
                    assert!(a == want || a == IpAddr::V6(want_v6(want)), "{url}: {a}");
                    assert_eq!(r, range, "{url}");
                }
                other => panic!("{url}: expected a refusal, got {other:?}"),
            }
        }
        // A name is resolved and each of its addresses checked: localhost is loopback.
        match refused("ws://localhost:9/").await {
            Err(e @ GuardError::Restricted { .. }) => {
                assert!(e.to_string().starts_with("localhost resolves to "), "{e}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A name that does not resolve is a lookup failure, not a refusal.
        match refused("ws://nonexistent.invalid/").await {
            Err(GuardError::Lookup(e)) => assert_eq!(e.kind(), "dns"),
            other => panic!("expected a DNS failure, got {other:?}"),
        }
        // A public literal passes, with the URL's port (or the scheme's default).
        let ok = refused("wss://1.1.1.1/").await.expect("public");
        assert_eq!(ok, vec![SocketAddr::from(([1, 1, 1, 1], 443))]);
    }

    fn want_v6(ip: IpAddr) -> Ipv6Addr {
        match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        }
    }

    #[test]
    fn refusal_messages_name_the_address() {
        let e = GuardError::Restricted {
            host: "[::1]".into(),
            addr: "::1".parse().expect("ip"),
            range: Restricted::Loopback,
        };
        assert_eq!(e.to_string(), "::1 is a loopback address");
        let e = GuardError::Restricted {
            host: "db.internal".into(),
            addr: "10.1.2.3".parse().expect("ip"),
            range: Restricted::Private,
        };
        assert_eq!(e.to_string(), "db.internal resolves to 10.1.2.3, a private address");
    }
}
