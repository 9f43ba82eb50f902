//! Local source addresses to spread connections over.
//!
//! A TCP connection is identified by (source address, source port, destination). With
//! one source address a client runs out of ephemeral ports near 28 000 connections to
//! one server address; binding each connection to a different address of 127.0.0.0/8
//! (every one of which is local on Linux) lifts that limit by the size of the range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An inclusive range of local addresses: `127.0.0.1-127.0.0.50`, a CIDR block
/// (`127.0.0.0/24`, network and broadcast addresses left out) or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceIps {
    first: IpAddr,
    count: u128,
}

impl SourceIps {
    /// The default for targets on loopback: 127.0.0.1 through 127.0.0.254.
    pub fn loopback_default() -> Self {
        Self { first: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), count: 254 }
    }

    /// How many addresses the range holds.
    pub fn len(&self) -> u128 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The address connection `index` binds to: connections go round-robin over the
    /// range so every address carries the same share.
    pub fn nth(&self, index: usize) -> IpAddr {
        let offset = (index as u128) % self.count.max(1);
        match self.first {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(offset as u32))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(offset))),
        }
    }

    fn from_bounds(first: IpAddr, last: IpAddr) -> Result<Self, String> {
        let (a, b) = match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
            _ => return Err(format!("{first} and {last} are not of the same address family")),
        };
        if b < a {
            return Err(format!("{last} comes before {first}; write the range low-high"));
        }
        Ok(Self { first, count: b - a + 1 })
    }

    fn from_cidr(base: IpAddr, prefix: u8) -> Result<Self, String> {
        let bits: u8 = if base.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(format!("prefix /{prefix} is longer than {bits} bits"));
        }
        let host_bits = u32::from(bits - prefix);
        let base_n = match base {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let mask = if host_bits >= 128 { 0 } else { u128::MAX << host_bits };
        let network = base_n & mask;
        let size = if host_bits >= 128 { u128::MAX } else { 1u128 << host_bits };
        // Leave out the network and broadcast addresses of an IPv4 block that has
        // them (/30 and wider), as any address plan would.
        let (start, count) = if base.is_ipv4() && host_bits >= 2 { (network + 1, size - 2) } else { (network, size) };
        let first = match base {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(start as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(start)),
        };
        Ok(Self { first, count })
    }
}

impl FromStr for SourceIps {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let ip = |v: &str| {
            v.trim().parse::<IpAddr>().map_err(|_| {
                format!(
                    "{v:?} is not an IP address (expected A-B like 127.0.0.1-127.0.0.50, or a CIDR like 127.0.0.0/24)"
                )
            })
        };
        if let Some((base, prefix)) = s.split_once('/') {
            let prefix = prefix.trim().parse::<u8>().map_err(|_| format!("{prefix:?} is not a CIDR prefix length"))?;
            return Self::from_cidr(ip(base)?, prefix);
        }
        // IPv6 addresses contain no '-', so the first '-' splits a range.
        if let Some((a, b)) = s.split_once('-') {
            return Self::from_bounds(ip(a)?, ip(b)?);
        }
        let one = ip(s)?;
        Self::from_bounds(one, one)
    }
}

impl fmt::Display for SourceIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 1 {
            write!(f, "{}", self.first)
        } else {
            let last = self.nth(usize::try_from(self.count - 1).unwrap_or(usize::MAX));
            write!(f, "{}-{} ({} addresses)", self.first, last, self.count)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_cidr_and_single() {
        let r: SourceIps = "127.0.0.1-127.0.0.50".parse().unwrap();
        assert_eq!(r.len(), 50);
        assert_eq!(r.nth(0), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.nth(49), "127.0.0.50".parse::<IpAddr>().unwrap());
        assert_eq!(r.nth(50), "127.0.0.1".parse::<IpAddr>().unwrap());

        let c: SourceIps = "127.0.0.0/24".parse().unwrap();
        assert_eq!(c.len(), 254);
        assert_eq!(c.nth(0), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(c, SourceIps::loopback_default());

        let wide: SourceIps = "127.0.0.0/8".parse().unwrap();
        assert_eq!(wide.nth(255), "127.0.1.0".parse::<IpAddr>().unwrap());

        let one: SourceIps = "127.0.0.9".parse().unwrap();
        assert_eq!((one.len(), one.nth(7)), (1, "127.0.0.9".parse::<IpAddr>().unwrap()));

        let v6: SourceIps = "::1-::3".parse().unwrap();
        assert_eq!(v6.nth(2), "::3".parse::<IpAddr>().unwrap());
        let v6c: SourceIps = "fd00::/126".parse().unwrap();
        assert_eq!(v6c.len(), 4);
    }

    #[test]
    fn rejects_nonsense() {
        assert!("127.0.0.9-127.0.0.1".parse::<SourceIps>().is_err());
        assert!("127.0.0.1-::1".parse::<SourceIps>().is_err());
        assert!("127.0.0.0/33".parse::<SourceIps>().is_err());
        assert!("localhost".parse::<SourceIps>().is_err());
    }
}
