//! The route table: longest prefix match over every connection's prefixes.
//!
//! Rules (DOMAIN.md, "Route choice"): the longest matching prefix wins; among equal prefixes an
//! ExpressRoute circuit wins over a VPN tunnel (the tunnel is the backup), then the connection
//! with the highest `routing_weight`; a connection that is down is skipped, so the next best route
//! (a backup) takes its traffic while it is down.
//!
//! Routes are kept per family, sorted by prefix length (longest first), preference (lowest
//! first), then weight (highest first), so the first match is the answer. The table is immutable once built; a config
//! change builds a new one.

use crate::prefix::{Family, Prefix};

/// One route: a prefix reachable over a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Prefix,
    /// Index of the connection in the pipeline's connection list.
    pub connection: usize,
    /// Lower wins among equal prefixes: [`PREFER_CIRCUIT`] before [`PREFER_TUNNEL`].
    pub preference: u8,
    pub weight: u16,
}

/// Preference of ExpressRoute circuits.
pub const PREFER_CIRCUIT: u8 = 0;
/// Preference of VPN tunnels: the backup of a circuit offering the same prefix.
pub const PREFER_TUNNEL: u8 = 1;

/// Longest-prefix-match table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    v4: Vec<Route>,
    v6: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: impl IntoIterator<Item = Route>) -> RouteTable {
        let mut t = RouteTable::default();
        for r in routes {
            match r.prefix.family() {
                Family::V4 => t.v4.push(r),
                Family::V6 => t.v6.push(r),
            }
        }
        let order = |a: &Route, b: &Route| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(a.preference.cmp(&b.preference))
                .then(b.weight.cmp(&a.weight))
                .then(a.connection.cmp(&b.connection))
        };
        t.v4.sort_by(order);
        t.v6.sort_by(order);
        t
    }

    /// The connection for `dst`, skipping connections for which `up` says false.
    #[inline]
    pub fn lookup(&self, family: Family, dst: u128, up: impl Fn(usize) -> bool) -> Option<usize> {
        let list = match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        };
        list.iter()
            .find(|r| r.prefix.contains_bits(family, dst) && up(r.connection))
            .map(|r| r.connection)
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.v4.iter().chain(self.v6.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefix::split;
    use proptest::prelude::*;

    fn r(p: &str, c: usize, w: u16) -> Route {
        Route {
            prefix: p.parse().unwrap(),
            connection: c,
            preference: PREFER_CIRCUIT,
            weight: w,
        }
    }

    #[test]
    fn a_circuit_wins_over_a_tunnel_for_the_same_prefix() {
        let tunnel = Route {
            preference: PREFER_TUNNEL,
            weight: 30_000,
            ..r("10.2.0.0/16", 1, 0)
        };
        let t = RouteTable::new([tunnel, r("10.2.0.0/16", 0, 0), r("10.2.5.0/24", 2, 0)]);
        assert_eq!(look(&t, "10.2.0.1"), Some(0));
        // Longest prefix still first, whatever the type.
        assert_eq!(look(&t, "10.2.5.1"), Some(2));
        let (f, b) = split("10.2.0.1".parse().unwrap());
        assert_eq!(
            t.lookup(f, b, |c| c != 0),
            Some(1),
            "the tunnel is the backup"
        );
    }

    fn look(t: &RouteTable, a: &str) -> Option<usize> {
        let (f, b) = split(a.parse().unwrap());
        t.lookup(f, b, |_| true)
    }

    #[test]
    fn longest_prefix_wins() {
        let t = RouteTable::new([
            r("10.0.0.0/8", 0, 0),
            r("10.2.0.0/16", 1, 0),
            r("10.2.3.0/24", 2, 0),
        ]);
        assert_eq!(look(&t, "10.2.3.4"), Some(2));
        assert_eq!(look(&t, "10.2.4.4"), Some(1));
        assert_eq!(look(&t, "10.9.9.9"), Some(0));
        assert_eq!(look(&t, "192.0.2.1"), None);
        assert_eq!(look(&t, "fd00::1"), None);
    }

    #[test]
    fn weight_breaks_ties_and_down_connections_are_skipped() {
        let t = RouteTable::new([
            r("10.2.0.0/16", 0, 10),
            r("10.2.0.0/16", 1, 100),
            r("0.0.0.0/0", 2, 0),
        ]);
        assert_eq!(look(&t, "10.2.0.1"), Some(1));
        let (f, b) = split("10.2.0.1".parse().unwrap());
        assert_eq!(t.lookup(f, b, |c| c != 1), Some(0));
        assert_eq!(t.lookup(f, b, |c| c == 2), Some(2));
        assert_eq!(t.lookup(f, b, |_| false), None);
    }

    #[test]
    fn v6() {
        let t = RouteTable::new([r("fd00:2::/48", 0, 0), r("::/0", 1, 0)]);
        assert_eq!(look(&t, "fd00:2::10"), Some(0));
        assert_eq!(look(&t, "2001:db8::1"), Some(1));
        assert_eq!(look(&t, "10.0.0.1"), None);
    }

    proptest! {
        /// Against a brute-force reference: the answer is a matching route of maximal length and,
        /// among those, maximal weight.
        #[test]
        fn matches_brute_force(
            routes in proptest::collection::vec((any::<u32>(), 0u8..=32, 0u16..4), 0..40),
            addrs in proptest::collection::vec(any::<u32>(), 1..50),
        ) {
            let rs: Vec<Route> = routes.iter().enumerate().map(|(i, (a, l, w))| {
                let p = Prefix::containing(std::net::IpAddr::V4((*a).into()), *l).unwrap();
                Route { prefix: p, connection: i, preference: PREFER_CIRCUIT, weight: *w }
            }).collect();
            let t = RouteTable::new(rs.clone());
            for a in addrs {
                let got = t.lookup(Family::V4, u128::from(a), |_| true);
                let best = rs.iter()
                    .filter(|r| r.prefix.contains_bits(Family::V4, u128::from(a)))
                    .map(|r| (r.prefix.len(), r.weight))
                    .max();
                match (got, best) {
                    (None, None) => {}
                    (Some(c), Some(b)) => prop_assert_eq!((rs[c].prefix.len(), rs[c].weight), b),
                    (g, b) => prop_assert!(false, "got {:?}, best {:?}", g, b),
                }
            }
        }
    }
}
