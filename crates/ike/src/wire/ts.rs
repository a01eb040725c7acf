//! Traffic Selector payloads (RFC 7296 section 3.13) and selector arithmetic for narrowing
//! (section 2.9).
//!
//! ```text
//! Payload body:                          Selector:
//! +---------------+-----------------+    +-----------+-------------+------------------+
//! | Number of TSs |    RESERVED     |    |  TS Type  | IP Protocol | Selector Length  |
//! +---------------+-----------------+    +-----------+-------------+------------------+
//! ~       <Traffic Selectors>       ~    |     Start Port          |     End Port     |
//!                                        ~  Starting Address  ~  Ending Address       ~
//! ```
//!
//! Semantics used by [`TrafficSelector::covers`], [`TrafficSelector::contains`] and
//! [`TrafficSelector::intersect`]:
//! - IP protocol 0 means any protocol.
//! - Ports `0..=65535` mean any port; Start Port 65535 with End Port 0 means OPAQUE (the
//!   ports are not available, e.g. non-first fragments), which "any" includes (RFC 4301
//!   section 4.4.1); any other range with start above end is empty. For ICMP the ports carry
//!   type (high octet) and code (low octet) and are compared the same way.
//! - Addresses are inclusive ranges; a start above the end is empty. IPv4 and IPv6 never
//!   overlap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::payload::{need, BodyError};
use super::reader::Reader;

wire_number! {
    /// TS Type.
    pub struct TsType(u8);
    /// A range of IPv4 addresses.
    IPV4_ADDR_RANGE = 7;
    /// A range of IPv6 addresses.
    IPV6_ADDR_RANGE = 8;
}

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressRange {
    /// TS_IPV4_ADDR_RANGE.
    V4 {
        /// Starting Address.
        start: Ipv4Addr,
        /// Ending Address.
        end: Ipv4Addr,
    },
    /// TS_IPV6_ADDR_RANGE.
    V6 {
        /// Starting Address.
        start: Ipv6Addr,
        /// Ending Address.
        end: Ipv6Addr,
    },
}

impl AddressRange {
    /// Every IPv4 address.
    pub const ANY_V4: AddressRange = AddressRange::V4 {
        start: Ipv4Addr::UNSPECIFIED,
        end: Ipv4Addr::BROADCAST,
    };
    /// Every IPv6 address.
    pub const ANY_V6: AddressRange = AddressRange::V6 {
        start: Ipv6Addr::UNSPECIFIED,
        end: Ipv6Addr::from_bits(u128::MAX),
    };

    /// The addresses of a prefix (`10.1.0.0/16`); `None` when the length is above 32 / 128.
    /// Host bits of `addr` are ignored.
    pub fn from_prefix(addr: IpAddr, prefix_len: u8) -> Option<AddressRange> {
        match addr {
            IpAddr::V4(a) => {
                let host_bits = 32u32.checked_sub(u32::from(prefix_len))?;
                let mask = if host_bits == 32 {
                    u32::MAX
                } else {
                    (1u32 << host_bits) - 1
                };
                let bits = a.to_bits();
                Some(AddressRange::V4 {
                    start: Ipv4Addr::from_bits(bits & !mask),
                    end: Ipv4Addr::from_bits(bits | mask),
                })
            }
            IpAddr::V6(a) => {
                let host_bits = 128u32.checked_sub(u32::from(prefix_len))?;
                let mask = if host_bits == 128 {
                    u128::MAX
                } else {
                    (1u128 << host_bits) - 1
                };
                let bits = a.to_bits();
                Some(AddressRange::V6 {
                    start: Ipv6Addr::from_bits(bits & !mask),
                    end: Ipv6Addr::from_bits(bits | mask),
                })
            }
        }
    }

    /// A single address.
    pub fn host(addr: IpAddr) -> AddressRange {
        match addr {
            IpAddr::V4(a) => AddressRange::V4 { start: a, end: a },
            IpAddr::V6(a) => AddressRange::V6 { start: a, end: a },
        }
    }

    /// The TS Type of this range.
    pub const fn ts_type(&self) -> TsType {
        match self {
            AddressRange::V4 { .. } => TsType::IPV4_ADDR_RANGE,
            AddressRange::V6 { .. } => TsType::IPV6_ADDR_RANGE,
        }
    }

    /// (is IPv6, start, end) as integers.
    fn bounds(&self) -> (bool, u128, u128) {
        match *self {
            AddressRange::V4 { start, end } => {
                (false, start.to_bits().into(), end.to_bits().into())
            }
            AddressRange::V6 { start, end } => (true, start.to_bits(), end.to_bits()),
        }
    }

    /// True when start is above end.
    pub fn is_empty(&self) -> bool {
        let (_, start, end) = self.bounds();
        start > end
    }

    /// True when `addr` is in the range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (*self, addr) {
            (AddressRange::V4 { start, end }, IpAddr::V4(a)) => start <= a && a <= end,
            (AddressRange::V6 { start, end }, IpAddr::V6(a)) => start <= a && a <= end,
            _ => false,
        }
    }

    /// True when every address of `other` is in `self` (always for an empty `other`).
    pub fn covers(&self, other: &AddressRange) -> bool {
        let (v6, start, end) = self.bounds();
        let (o_v6, o_start, o_end) = other.bounds();
        o_start > o_end || (v6 == o_v6 && start <= o_start && o_end <= end)
    }

    /// The addresses in both ranges, if any.
    pub fn intersect(&self, other: &AddressRange) -> Option<AddressRange> {
        let out = match (*self, *other) {
            (AddressRange::V4 { start: s1, end: e1 }, AddressRange::V4 { start: s2, end: e2 }) => {
                AddressRange::V4 {
                    start: s1.max(s2),
                    end: e1.min(e2),
                }
            }
            (AddressRange::V6 { start: s1, end: e1 }, AddressRange::V6 { start: s2, end: e2 }) => {
                AddressRange::V6 {
                    start: s1.max(s2),
                    end: e1.min(e2),
                }
            }
            _ => return None,
        };
        (!out.is_empty()).then_some(out)
    }
}

/// A port set as the wire encodes it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ports {
    Range(u16, u16),
    Opaque,
    Empty,
}

impl Ports {
    fn of(start: u16, end: u16) -> Ports {
        if start <= end {
            Ports::Range(start, end)
        } else if (start, end) == (u16::MAX, 0) {
            Ports::Opaque
        } else {
            Ports::Empty
        }
    }

    fn bounds(self) -> (u16, u16) {
        match self {
            Ports::Range(s, e) => (s, e),
            Ports::Opaque => (u16::MAX, 0),
            Ports::Empty => (1, 0),
        }
    }

    fn covers(self, other: Ports) -> bool {
        match (self, other) {
            (_, Ports::Empty) => true,
            (Ports::Range(0, u16::MAX) | Ports::Opaque, Ports::Opaque) => true,
            (Ports::Range(s, e), Ports::Range(os, oe)) => s <= os && oe <= e,
            _ => false,
        }
    }

    fn intersect(self, other: Ports) -> Ports {
        match (self, other) {
            (Ports::Empty, _) | (_, Ports::Empty) => Ports::Empty,
            (Ports::Opaque, p) | (p, Ports::Opaque) => {
                if p.covers(Ports::Opaque) {
                    Ports::Opaque
                } else {
                    Ports::Empty
                }
            }
            (Ports::Range(s1, e1), Ports::Range(s2, e2)) => {
                let (s, e) = (s1.max(s2), e1.min(e2));
                if s <= e {
                    Ports::Range(s, e)
                } else {
                    Ports::Empty
                }
            }
        }
    }
}

/// One traffic selector: IP protocol, port range, address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrafficSelector {
    /// IP Protocol ID; 0 for any.
    pub ip_protocol: u8,
    /// Start Port.
    pub start_port: u16,
    /// End Port.
    pub end_port: u16,
    /// Starting and Ending Address.
    pub addresses: AddressRange,
}

impl TrafficSelector {
    /// Size of a TS_IPV4_ADDR_RANGE selector.
    pub const V4_LEN: usize = 16;
    /// Size of a TS_IPV6_ADDR_RANGE selector.
    pub const V6_LEN: usize = 40;

    /// Any protocol and port between the addresses of `addresses`.
    pub const fn new(addresses: AddressRange) -> TrafficSelector {
        TrafficSelector {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            addresses,
        }
    }

    /// Any protocol and port in a prefix (see [`AddressRange::from_prefix`]).
    pub fn from_prefix(addr: IpAddr, prefix_len: u8) -> Option<TrafficSelector> {
        AddressRange::from_prefix(addr, prefix_len).map(TrafficSelector::new)
    }

    /// True when no packet can match (empty address or port range).
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() || self.ports() == Ports::Empty
    }

    fn ports(&self) -> Ports {
        Ports::of(self.start_port, self.end_port)
    }

    /// True when a packet of `ip_protocol` to or from `addr` matches. `port` is the packet's
    /// port on this selector's side, or `None` when it has none or it is unavailable (such a
    /// packet matches only "any port" or OPAQUE).
    pub fn contains(&self, ip_protocol: u8, addr: IpAddr, port: Option<u16>) -> bool {
        let port_ok = match (self.ports(), port) {
            (Ports::Range(s, e), Some(p)) => s <= p && p <= e,
            (ports, None) => ports.covers(Ports::Opaque),
            _ => false,
        };
        (self.ip_protocol == 0 || self.ip_protocol == ip_protocol)
            && port_ok
            && self.addresses.contains(addr)
    }

    /// True when every packet `other` matches, `self` matches too (a subset test; true for
    /// an empty `other`).
    pub fn covers(&self, other: &TrafficSelector) -> bool {
        other.is_empty()
            || ((self.ip_protocol == 0 || self.ip_protocol == other.ip_protocol)
                && self.ports().covers(other.ports())
                && self.addresses.covers(&other.addresses))
    }

    /// The packets both match, as one selector, if any.
    pub fn intersect(&self, other: &TrafficSelector) -> Option<TrafficSelector> {
        let ip_protocol = match (self.ip_protocol, other.ip_protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let ports = self.ports().intersect(other.ports());
        if ports == Ports::Empty {
            return None;
        }
        let (start_port, end_port) = ports.bounds();
        let addresses = self.addresses.intersect(&other.addresses)?;
        Some(TrafficSelector {
            ip_protocol,
            start_port,
            end_port,
            addresses,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let len: u16 = match self.addresses {
            AddressRange::V4 { .. } => 16,
            AddressRange::V6 { .. } => 40,
        };
        out.extend_from_slice(&[self.addresses.ts_type().0, self.ip_protocol]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.start_port.to_be_bytes());
        out.extend_from_slice(&self.end_port.to_be_bytes());
        match self.addresses {
            AddressRange::V4 { start, end } => {
                out.extend_from_slice(&start.octets());
                out.extend_from_slice(&end.octets());
            }
            AddressRange::V6 { start, end } => {
                out.extend_from_slice(&start.octets());
                out.extend_from_slice(&end.octets());
            }
        }
    }
}

/// Narrows, as a responder (RFC 7296 section 2.9), the selectors the initiator `proposed`
/// (one TSi or TSr list) to what the local `policy` allows: every non-empty intersection of a
/// proposed selector with a policy selector, in the proposed order, without duplicates.
/// The result is a subset of `proposed`; empty means TS_UNACCEPTABLE. (The first proposed
/// selector may describe the packet that triggered the exchange; it gets no special rank.)
pub fn narrow(proposed: &[TrafficSelector], policy: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for p in proposed {
        for allowed in policy {
            if let Some(ts) = p.intersect(allowed) {
                if !out.contains(&ts) {
                    out.push(ts);
                }
            }
        }
    }
    out
}

/// A TSi or TSr payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TsPayload {
    /// The selectors (at most 255).
    pub selectors: Vec<TrafficSelector>,
}

impl TsPayload {
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), &'static str> {
        let count =
            u8::try_from(self.selectors.len()).map_err(|_| "more than 255 traffic selectors")?;
        out.extend_from_slice(&[count, 0, 0, 0]);
        for ts in &self.selectors {
            ts.encode(out);
        }
        Ok(())
    }

    pub(crate) fn decode_body(body: &[u8]) -> Result<TsPayload, BodyError> {
        let mut r = Reader::new(body);
        let [count, ..] = need(r.array::<4>(), "TS payload shorter than its fixed fields")?;
        let mut selectors = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let [ts_type, ip_protocol, l0, l1] =
                need(r.array::<4>(), "traffic selector header truncated")?;
            let len = usize::from(u16::from_be_bytes([l0, l1]));
            let expected = match TsType(ts_type) {
                TsType::IPV4_ADDR_RANGE => TrafficSelector::V4_LEN,
                TsType::IPV6_ADDR_RANGE => TrafficSelector::V6_LEN,
                _ => return Err(BodyError::UnsupportedTs(ts_type)),
            };
            if len != expected {
                return Err(BodyError::Malformed(
                    "traffic selector length does not match its type",
                ));
            }
            let mut s = Reader::new(need(
                r.take(len - 4),
                "traffic selector beyond the payload",
            )?);
            let (Some(start_port), Some(end_port)) = (s.u16(), s.u16()) else {
                return Err(BodyError::Malformed("traffic selector truncated"));
            };
            let addresses = if TsType(ts_type) == TsType::IPV4_ADDR_RANGE {
                let (Some(start), Some(end)) = (s.array::<4>(), s.array::<4>()) else {
                    return Err(BodyError::Malformed("traffic selector truncated"));
                };
                AddressRange::V4 {
                    start: start.into(),
                    end: end.into(),
                }
            } else {
                let (Some(start), Some(end)) = (s.array::<16>(), s.array::<16>()) else {
                    return Err(BodyError::Malformed("traffic selector truncated"));
                };
                AddressRange::V6 {
                    start: start.into(),
                    end: end.into(),
                }
            };
            selectors.push(TrafficSelector {
                ip_protocol,
                start_port,
                end_port,
                addresses,
            });
        }
        if !r.is_empty() {
            return Err(BodyError::Malformed(
                "bytes after the last traffic selector",
            ));
        }
        Ok(TsPayload { selectors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(prefix: &str, proto: u8, ports: (u16, u16)) -> TrafficSelector {
        let (addr, len) = prefix.split_once('/').unwrap();
        TrafficSelector {
            ip_protocol: proto,
            start_port: ports.0,
            end_port: ports.1,
            ..TrafficSelector::from_prefix(addr.parse().unwrap(), len.parse().unwrap()).unwrap()
        }
    }

    const ANY: (u16, u16) = (0, 65535);
    const OPAQUE: (u16, u16) = (65535, 0);

    #[test]
    fn prefixes() {
        let r = AddressRange::from_prefix("10.1.2.3".parse().unwrap(), 16).unwrap();
        assert_eq!(
            r,
            AddressRange::V4 {
                start: [10, 1, 0, 0].into(),
                end: [10, 1, 255, 255].into()
            }
        );
        assert_eq!(
            AddressRange::from_prefix("10.1.2.3".parse().unwrap(), 0),
            Some(AddressRange::ANY_V4)
        );
        assert_eq!(
            AddressRange::from_prefix("10.1.2.3".parse().unwrap(), 32),
            Some(AddressRange::host("10.1.2.3".parse().unwrap()))
        );
        assert_eq!(
            AddressRange::from_prefix("10.1.2.3".parse().unwrap(), 33),
            None
        );
        assert_eq!(
            AddressRange::from_prefix("::1".parse().unwrap(), 0),
            Some(AddressRange::ANY_V6)
        );
        assert_eq!(
            AddressRange::from_prefix("2001:db8::1".parse().unwrap(), 128),
            Some(AddressRange::host("2001:db8::1".parse().unwrap()))
        );
        let r6 = AddressRange::from_prefix("2001:db8:1::5".parse().unwrap(), 48).unwrap();
        assert!(r6.contains("2001:db8:1:ffff::".parse().unwrap()));
        assert!(!r6.contains("2001:db8:2::".parse().unwrap()));
        assert_eq!(AddressRange::from_prefix("::".parse().unwrap(), 129), None);
    }

    #[test]
    fn covers_and_contains() {
        let wide = ts("10.0.0.0/8", 0, ANY);
        let narrow_tcp = ts("10.1.0.0/16", 6, (443, 443));
        assert!(wide.covers(&narrow_tcp));
        assert!(!narrow_tcp.covers(&wide));
        assert!(wide.covers(&ts("10.1.0.0/16", 0, OPAQUE)));
        assert!(!narrow_tcp.covers(&ts("10.1.0.0/16", 6, OPAQUE)));
        assert!(!wide.covers(&ts("::/0", 0, ANY)));
        assert!(narrow_tcp.contains(6, "10.1.9.9".parse().unwrap(), Some(443)));
        assert!(!narrow_tcp.contains(17, "10.1.9.9".parse().unwrap(), Some(443)));
        assert!(!narrow_tcp.contains(6, "10.1.9.9".parse().unwrap(), Some(80)));
        assert!(!narrow_tcp.contains(6, "10.1.9.9".parse().unwrap(), None));
        assert!(wide.contains(47, "10.200.0.1".parse().unwrap(), None));
        assert!(!wide.contains(47, "11.0.0.1".parse().unwrap(), None));
        let empty = ts("10.0.0.0/8", 0, (10, 9));
        assert!(empty.is_empty());
        assert!(narrow_tcp.covers(&empty));
        assert!(!empty.contains(0, "10.0.0.1".parse().unwrap(), Some(9)));
    }

    #[test]
    fn intersect() {
        let a = ts("10.0.0.0/8", 0, ANY);
        let b = ts("10.1.0.0/16", 17, (500, 4500));
        assert_eq!(a.intersect(&b), Some(b));
        assert_eq!(b.intersect(&a), Some(b));
        let c = ts("10.1.128.0/17", 17, (4000, 5000));
        assert_eq!(b.intersect(&c), Some(ts("10.1.128.0/17", 17, (4000, 4500))));
        assert_eq!(b.intersect(&ts("10.1.0.0/16", 6, ANY)), None);
        assert_eq!(b.intersect(&ts("10.2.0.0/16", 17, ANY)), None);
        assert_eq!(b.intersect(&ts("10.1.0.0/16", 17, (1, 2))), None);
        assert_eq!(
            a.intersect(&ts("10.0.0.0/8", 0, OPAQUE)),
            Some(ts("10.0.0.0/8", 0, OPAQUE))
        );
        assert_eq!(b.intersect(&ts("10.0.0.0/8", 0, OPAQUE)), None);
        assert_eq!(a.intersect(&ts("::/0", 0, ANY)), None);
    }

    #[test]
    fn narrowing() {
        let proposed = [ts("0.0.0.0/0", 0, ANY)];
        let policy = [
            ts("10.1.0.0/16", 0, ANY),
            ts("10.3.0.0/16", 0, ANY),
            ts("2001:db8::/32", 0, ANY),
        ];
        assert_eq!(narrow(&proposed, &policy), policy[..2]);
        assert!(narrow(&[ts("192.168.0.0/16", 0, ANY)], &policy).is_empty());
        for n in narrow(&proposed, &policy) {
            assert!(proposed[0].covers(&n));
        }
    }

    #[test]
    fn layout() {
        let p = TsPayload {
            selectors: vec![ts("10.1.0.0/16", 0, ANY), ts("2001:db8::/32", 6, (80, 80))],
        };
        let mut out = Vec::new();
        p.encode_body(&mut out).unwrap();
        assert_eq!(out.len(), 4 + 16 + 40);
        assert_eq!(
            out[..20],
            [2, 0, 0, 0, 7, 0, 0, 16, 0, 0, 0xff, 0xff, 10, 1, 0, 0, 10, 1, 0xff, 0xff]
        );
        assert_eq!(out[20..28], [8, 6, 0, 40, 0, 80, 0, 80]);
        assert_eq!(TsPayload::decode_body(&out).unwrap(), p);
        // Count too high, count too low, wrong selector length, unknown type.
        let mut bad = out.clone();
        bad[0] = 3;
        assert!(TsPayload::decode_body(&bad).is_err());
        bad[0] = 1;
        assert!(TsPayload::decode_body(&bad).is_err());
        let mut bad = out.clone();
        bad[7] = 17;
        assert!(TsPayload::decode_body(&bad).is_err());
        let mut bad = out;
        bad[4] = 9;
        assert!(matches!(
            TsPayload::decode_body(&bad),
            Err(BodyError::UnsupportedTs(9))
        ));
    }
}
