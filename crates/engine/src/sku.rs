//! The SKU catalog: what each gateway may carry (DOMAIN.md, "SKUs").
//!
//! Every figure here is the published ceiling of the SKU; the shapers built from a [`SkuLimits`]
//! enforce it per direction. `None` means the table publishes no limit for that SKU.

use std::fmt;
use std::str::FromStr;

/// The two gateway types of a VNet (at most one of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum GatewayType {
    ExpressRoute,
    Vpn,
}

impl fmt::Display for GatewayType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GatewayType::ExpressRoute => "ExpressRoute",
            GatewayType::Vpn => "Vpn",
        })
    }
}

/// A SKU, with its family (which decides what it may be resized into).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sku {
    // ExpressRoute, legacy family.
    ErBasic,
    ErStandard,
    ErHighPerformance,
    ErUltraPerformance,
    // ExpressRoute, availability-zone family.
    ErGw1AZ,
    ErGw2AZ,
    ErGw3AZ,
    /// ExpressRoute scalable gateway with 1..=40 scale units.
    ErGwScale(u8),
    // VPN, legacy family.
    VpnBasic,
    VpnStandard,
    VpnHighPerformance,
    /// VpnGw1..=VpnGw5; `az` for the availability-zone variants.
    VpnGw {
        generation: u8,
        az: bool,
    },
}

/// The published limits of a SKU, in the units the shaper uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkuLimits {
    /// Aggregate bits per second, per direction.
    pub bits_per_sec: u64,
    /// Aggregate packets per second, per direction (None: not published, not limited).
    pub packets_per_sec: Option<u64>,
    /// New connections (flows) per second.
    pub new_flows_per_sec: Option<u64>,
    /// Concurrent flows.
    pub flows: Option<u64>,
    /// Circuit connections (ExpressRoute) or site-to-site tunnels (Vpn).
    pub max_connections: u32,
    /// Per-tunnel cap in bits per second (Vpn only).
    pub per_tunnel_bits_per_sec: Option<u64>,
    /// May coexist with a gateway of the other type in the same VNet.
    pub coexist: bool,
}

const MBIT: u64 = 1_000_000;

/// Smallest and largest scale-unit count of `ErGwScale`.
pub const ER_SCALE_UNITS: std::ops::RangeInclusive<u8> = 1..=40;

impl Sku {
    /// The gateway type this SKU belongs to.
    pub fn gateway_type(self) -> GatewayType {
        match self {
            Sku::ErBasic
            | Sku::ErStandard
            | Sku::ErHighPerformance
            | Sku::ErUltraPerformance
            | Sku::ErGw1AZ
            | Sku::ErGw2AZ
            | Sku::ErGw3AZ
            | Sku::ErGwScale(_) => GatewayType::ExpressRoute,
            Sku::VpnBasic | Sku::VpnStandard | Sku::VpnHighPerformance | Sku::VpnGw { .. } => {
                GatewayType::Vpn
            }
        }
    }

    /// Parses a SKU name as written in the config, for a gateway of type `ty`.
    /// `scale_units` is required for (and only allowed with) `ErGwScale`.
    pub fn parse(ty: GatewayType, name: &str, scale_units: Option<u32>) -> Result<Sku, String> {
        let sku = match (ty, name) {
            (GatewayType::ExpressRoute, "Basic") => Sku::ErBasic,
            (GatewayType::ExpressRoute, "Standard") => Sku::ErStandard,
            (GatewayType::ExpressRoute, "HighPerformance") => Sku::ErHighPerformance,
            (GatewayType::ExpressRoute, "UltraPerformance") => Sku::ErUltraPerformance,
            (GatewayType::ExpressRoute, "ErGw1AZ") => Sku::ErGw1AZ,
            (GatewayType::ExpressRoute, "ErGw2AZ") => Sku::ErGw2AZ,
            (GatewayType::ExpressRoute, "ErGw3AZ") => Sku::ErGw3AZ,
            (GatewayType::ExpressRoute, "ErGwScale") => {
                let units = scale_units
                    .ok_or_else(|| "ErGwScale needs `scale_units` (1..=40)".to_string())?;
                if !(1..=40).contains(&units) {
                    return Err(format!("scale_units must be 1..=40, got {units}"));
                }
                return Ok(Sku::ErGwScale(units as u8));
            }
            (GatewayType::Vpn, "Basic") => Sku::VpnBasic,
            (GatewayType::Vpn, "Standard") => Sku::VpnStandard,
            (GatewayType::Vpn, "HighPerformance") => Sku::VpnHighPerformance,
            (GatewayType::Vpn, n) if n.starts_with("VpnGw") => {
                let rest = &n[5..];
                let (digits, az) = match rest.strip_suffix("AZ") {
                    Some(d) => (d, true),
                    None => (rest, false),
                };
                match digits {
                    "1" | "2" | "3" | "4" | "5" => Sku::VpnGw {
                        generation: digits.as_bytes()[0] - b'0',
                        az,
                    },
                    _ => return Err(unknown_sku(ty, name)),
                }
            }
            _ => return Err(unknown_sku(ty, name)),
        };
        if scale_units.is_some() {
            return Err(format!(
                "`scale_units` is only valid with ErGwScale, not with {name}"
            ));
        }
        Ok(sku)
    }

    /// The SKU's published limits.
    pub fn limits(self) -> SkuLimits {
        let er = |mbps: u64, pps: u64, nc: u64, flows: u64, conns: u32| SkuLimits {
            bits_per_sec: mbps * MBIT,
            packets_per_sec: Some(pps),
            new_flows_per_sec: Some(nc),
            flows: Some(flows),
            max_connections: conns,
            per_tunnel_bits_per_sec: None,
            coexist: true,
        };
        let vpn = |mbps: u64, tunnels: u32, cap: Option<u64>, coexist: bool| SkuLimits {
            bits_per_sec: mbps * MBIT,
            packets_per_sec: None,
            new_flows_per_sec: None,
            flows: None,
            max_connections: tunnels,
            per_tunnel_bits_per_sec: cap.map(|c| c * MBIT),
            coexist,
        };
        match self {
            Sku::ErBasic => SkuLimits {
                bits_per_sec: 500 * MBIT,
                packets_per_sec: None,
                new_flows_per_sec: None,
                flows: None,
                max_connections: 4,
                per_tunnel_bits_per_sec: None,
                coexist: false,
            },
            Sku::ErStandard | Sku::ErGw1AZ => er(1_000, 100_000, 7_000, 200_000, 4),
            Sku::ErHighPerformance | Sku::ErGw2AZ => er(2_000, 250_000, 14_000, 400_000, 8),
            Sku::ErUltraPerformance => er(9_000, 1_000_000, 28_000, 1_000_000, 16),
            Sku::ErGw3AZ => er(10_000, 1_000_000, 28_000, 1_000_000, 16),
            Sku::ErGwScale(units) => {
                let u = u64::from(units);
                er(
                    1_000 * u,
                    100_000 * u,
                    7_000 * u,
                    100_000 * u,
                    (4 * u32::from(units)).min(16),
                )
            }
            Sku::VpnBasic => vpn(100, 10, None, false),
            Sku::VpnStandard => vpn(100, 10, None, true),
            Sku::VpnHighPerformance => vpn(200, 30, None, true),
            Sku::VpnGw { generation, .. } => match generation {
                1 => vpn(650, 30, Some(650), true),
                2 => vpn(1_000, 30, Some(1_000), true),
                3 => vpn(1_250, 30, Some(1_000), true),
                4 => vpn(5_000, 100, Some(2_300), true),
                _ => vpn(10_000, 100, Some(2_300), true),
            },
        }
    }

    /// The resize rules of DOMAIN.md: `Ok` when `self` may be changed into `to` in place,
    /// `Err(reason)` when the gateway must be recreated instead.
    pub fn can_resize_to(self, to: Sku) -> Result<(), String> {
        use Sku::*;
        if self.gateway_type() != to.gateway_type() {
            return Err(format!(
                "{self} is an {} SKU and {to} a {} SKU",
                self.gateway_type(),
                to.gateway_type()
            ));
        }
        let ok = match (self, to) {
            (a, b) if a == b => true,
            (ErStandard, ErHighPerformance) | (ErHighPerformance, ErStandard) => true,
            (ErUltraPerformance, _) | (_, ErUltraPerformance) => {
                return Err(format!(
                    "resizing {self} to {to} is not supported: moving to or from UltraPerformance requires recreating the gateway"
                ))
            }
            (ErGw1AZ | ErGw2AZ | ErGw3AZ, ErGw1AZ | ErGw2AZ | ErGw3AZ) => true,
            (ErGwScale(_), ErGwScale(_)) => true,
            (VpnGw { az: a, .. }, VpnGw { az: b, .. }) => a == b,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "resizing {self} to {to} crosses SKU families: the gateway must be recreated"
            ))
        }
    }
}

fn unknown_sku(ty: GatewayType, name: &str) -> String {
    let known = match ty {
        GatewayType::ExpressRoute => {
            "Basic, Standard, HighPerformance, UltraPerformance, ErGw1AZ, ErGw2AZ, ErGw3AZ, ErGwScale"
        }
        GatewayType::Vpn => {
            "Basic, Standard, HighPerformance, VpnGw1..VpnGw5, VpnGw1AZ..VpnGw5AZ"
        }
    };
    format!("unknown {ty} SKU `{name}` (known: {known})")
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sku::ErBasic | Sku::VpnBasic => f.write_str("Basic"),
            Sku::ErStandard | Sku::VpnStandard => f.write_str("Standard"),
            Sku::ErHighPerformance | Sku::VpnHighPerformance => f.write_str("HighPerformance"),
            Sku::ErUltraPerformance => f.write_str("UltraPerformance"),
            Sku::ErGw1AZ => f.write_str("ErGw1AZ"),
            Sku::ErGw2AZ => f.write_str("ErGw2AZ"),
            Sku::ErGw3AZ => f.write_str("ErGw3AZ"),
            Sku::ErGwScale(u) => write!(f, "ErGwScale({u} units)"),
            Sku::VpnGw { generation, az } => {
                write!(f, "VpnGw{generation}{}", if *az { "AZ" } else { "" })
            }
        }
    }
}

impl FromStr for GatewayType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ExpressRoute" => Ok(GatewayType::ExpressRoute),
            "Vpn" => Ok(GatewayType::Vpn),
            _ => Err(format!(
                "unknown gateway type `{s}` (known: ExpressRoute, Vpn)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_sku_of_the_tables() {
        for n in [
            "Basic",
            "Standard",
            "HighPerformance",
            "UltraPerformance",
            "ErGw1AZ",
            "ErGw2AZ",
            "ErGw3AZ",
        ] {
            assert!(
                Sku::parse(GatewayType::ExpressRoute, n, None).is_ok(),
                "{n}"
            );
        }
        for n in ["Basic", "Standard", "HighPerformance", "VpnGw1", "VpnGw5AZ"] {
            assert!(Sku::parse(GatewayType::Vpn, n, None).is_ok(), "{n}");
        }
        assert!(Sku::parse(GatewayType::Vpn, "VpnGw6", None).is_err());
        assert!(Sku::parse(GatewayType::ExpressRoute, "VpnGw1", None).is_err());
        assert_eq!(
            Sku::parse(GatewayType::ExpressRoute, "ErGwScale", Some(40)),
            Ok(Sku::ErGwScale(40))
        );
        assert!(Sku::parse(GatewayType::ExpressRoute, "ErGwScale", Some(41)).is_err());
        assert!(Sku::parse(GatewayType::ExpressRoute, "ErGwScale", None).is_err());
        assert!(Sku::parse(GatewayType::ExpressRoute, "Standard", Some(2)).is_err());
    }

    #[test]
    fn limits_match_the_published_tables() {
        let s = Sku::ErStandard.limits();
        assert_eq!(s.bits_per_sec, 1_000_000_000);
        assert_eq!(s.packets_per_sec, Some(100_000));
        assert_eq!(s.max_connections, 4);
        assert_eq!(Sku::ErHighPerformance.limits().bits_per_sec, 2_000_000_000);
        assert_eq!(Sku::ErHighPerformance.limits().max_connections, 8);
        assert_eq!(Sku::ErGw3AZ.limits().bits_per_sec, 10_000_000_000);
        let scale = Sku::ErGwScale(40).limits();
        assert_eq!(scale.bits_per_sec, 40_000_000_000);
        assert_eq!(scale.packets_per_sec, Some(4_000_000));
        assert_eq!(scale.max_connections, 16);
        assert_eq!(Sku::ErGwScale(2).limits().max_connections, 8);
        assert!(!Sku::ErBasic.limits().coexist);
        let v = Sku::VpnGw {
            generation: 4,
            az: false,
        }
        .limits();
        assert_eq!(v.max_connections, 100);
        assert_eq!(v.per_tunnel_bits_per_sec, Some(2_300_000_000));
    }

    #[test]
    fn resize_rules() {
        assert!(Sku::ErStandard
            .can_resize_to(Sku::ErHighPerformance)
            .is_ok());
        assert!(Sku::ErHighPerformance
            .can_resize_to(Sku::ErStandard)
            .is_ok());
        let e = Sku::ErStandard
            .can_resize_to(Sku::ErUltraPerformance)
            .unwrap_err();
        assert!(e.contains("recreat"), "{e}");
        assert!(Sku::ErUltraPerformance
            .can_resize_to(Sku::ErStandard)
            .is_err());
        assert!(Sku::ErGw1AZ.can_resize_to(Sku::ErGw3AZ).is_ok());
        assert!(Sku::ErGw1AZ.can_resize_to(Sku::ErStandard).is_err());
        assert!(Sku::ErGwScale(2).can_resize_to(Sku::ErGwScale(10)).is_ok());
        let g = |generation, az| Sku::VpnGw { generation, az };
        assert!(g(1, false).can_resize_to(g(5, false)).is_ok());
        assert!(Sku::VpnBasic.can_resize_to(g(1, false)).is_err());
        assert!(Sku::ErStandard.can_resize_to(g(1, false)).is_err());
    }
}
