//! IP prefixes (`10.1.0.0/16`, `fd00:1::/48`): parsing, containment and overlap.
//!
//! Addresses are kept as `u128` with IPv4 and IPv6 apart (`Family`), so that a lookup never
//! allocates and an IPv4 address never matches an IPv6 prefix.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Address width in bits.
    pub const fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// A prefix in canonical form: no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    family: Family,
    /// Address bits, right-aligned (an IPv4 address is the low 32 bits).
    addr: u128,
    len: u8,
}

fn mask(family: Family, len: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let bits = family.bits();
    let full: u128 = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    full & !((1u128 << (bits - len)) - 1)
}

impl Prefix {
    /// A prefix from an address and a length; fails when host bits are set or the length is too long.
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, String> {
        let (family, bits) = split(addr);
        if len > family.bits() {
            return Err(format!(
                "prefix length /{len} is longer than the {}-bit address",
                family.bits()
            ));
        }
        let m = mask(family, len);
        if bits & !m != 0 {
            let canonical = Prefix {
                family,
                addr: bits & m,
                len,
            };
            return Err(format!(
                "`{addr}/{len}` has host bits set (did you mean `{canonical}`?)"
            ));
        }
        Ok(Prefix {
            family,
            addr: bits,
            len,
        })
    }

    /// The prefix that covers `addr` at `len` bits, host bits cleared (for "10.1.0.10/16" style
    /// interface addresses).
    pub fn containing(addr: IpAddr, len: u8) -> Result<Prefix, String> {
        let (family, bits) = split(addr);
        if len > family.bits() {
            return Err(format!(
                "prefix length /{len} is longer than the {}-bit address",
                family.bits()
            ));
        }
        Ok(Prefix {
            family,
            addr: bits & mask(family, len),
            len,
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// The prefix length in bits (not a collection length).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for `0.0.0.0/0` and `::/0`.
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        join(self.family, self.addr)
    }

    /// The address at `offset` from the network address (None when outside the prefix).
    pub fn host(&self, offset: u128) -> Option<IpAddr> {
        let host_bits = self.family.bits() - self.len;
        if host_bits < 128 && offset >> host_bits != 0 {
            return None;
        }
        Some(join(self.family, self.addr | offset))
    }

    /// Does the prefix contain this address?
    pub fn contains_bits(&self, family: Family, bits: u128) -> bool {
        family == self.family && bits & mask(self.family, self.len) == self.addr
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let (f, b) = split(addr);
        self.contains_bits(f, b)
    }

    /// Is `other` entirely inside `self`?
    pub fn covers(&self, other: &Prefix) -> bool {
        other.family == self.family
            && other.len >= self.len
            && other.addr & mask(self.family, self.len) == self.addr
    }

    /// Do the two prefixes share any address?
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// Raw address bits (right-aligned).
    pub fn bits(&self) -> u128 {
        self.addr
    }
}

/// An address as (family, right-aligned bits).
pub fn split(addr: IpAddr) -> (Family, u128) {
    match addr {
        IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

/// The inverse of [`split`].
pub fn join(family: Family, bits: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(bits as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Prefix, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a prefix: expected ADDRESS/LENGTH"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{s}`: `{a}` is not an IPv4 or IPv6 address"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("`{s}`: `{l}` is not a prefix length"))?;
        Prefix::new(addr, len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.len)
    }
}

impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An interface address with its prefix length, as written in `addresses = ["10.1.0.10/16"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub addr: IpAddr,
    pub len: u8,
}

impl FromStr for InterfaceAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not an interface address: expected ADDRESS/LENGTH"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{s}`: `{a}` is not an IPv4 or IPv6 address"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("`{s}`: `{l}` is not a prefix length"))?;
        Prefix::containing(addr, len)?;
        Ok(InterfaceAddress { addr, len })
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("10.1.0.0/16").to_string(), "10.1.0.0/16");
        assert_eq!(p("fd00:1::/48").to_string(), "fd00:1::/48");
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(p("10.1.2.3/32").to_string(), "10.1.2.3/32");
        assert_eq!(p("::/0").len(), 0);
        assert!("10.1.0.1/16"
            .parse::<Prefix>()
            .unwrap_err()
            .contains("10.1.0.0/16"));
        assert!("10.1.0.0/33".parse::<Prefix>().is_err());
        assert!("10.1.0.0".parse::<Prefix>().is_err());
        assert!("10.1.0.x/8".parse::<Prefix>().is_err());
        assert!("fd00::/129".parse::<Prefix>().is_err());
    }

    #[test]
    fn containment_and_overlap() {
        let a = p("10.1.0.0/16");
        assert!(a.contains("10.1.255.4".parse().unwrap()));
        assert!(!a.contains("10.2.0.1".parse().unwrap()));
        assert!(!a.contains("::a01:1".parse().unwrap()));
        assert!(a.covers(&p("10.1.255.0/27")));
        assert!(!p("10.1.255.0/27").covers(&a));
        assert!(a.overlaps(&p("10.0.0.0/8")));
        assert!(!a.overlaps(&p("10.2.0.0/16")));
        assert!(!a.overlaps(&p("fd00::/8")));
        assert!(p("0.0.0.0/0").contains("192.0.2.1".parse().unwrap()));
        assert!(p("::/0").contains("fd00::1".parse().unwrap()));
        assert!(p("fd00:1::/48").contains("fd00:1:0:ffff::4".parse().unwrap()));
    }

    #[test]
    fn hosts() {
        let s = p("10.1.255.0/27");
        assert_eq!(s.host(4).unwrap().to_string(), "10.1.255.4");
        assert_eq!(s.host(31).unwrap().to_string(), "10.1.255.31");
        assert!(s.host(32).is_none());
        assert_eq!(p("::/0").host(5).unwrap().to_string(), "::5");
    }

    #[test]
    fn interface_addresses() {
        let a: InterfaceAddress = "10.1.0.10/16".parse().unwrap();
        assert_eq!(a.len, 16);
        assert!("10.1.0.10".parse::<InterfaceAddress>().is_err());
        assert!("10.1.0.10/40".parse::<InterfaceAddress>().is_err());
    }
}
