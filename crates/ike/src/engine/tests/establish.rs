//! Establishing IKE and Child SAs: every suite, both roles; keys agree; ports and status.

use std::time::Duration;

use super::sim::*;
use crate::engine::{Event, PeerState, IKE_PORT, NATT_PORT};
use crate::wire::ExchangeType;

const SUITES: [(&str, &str); 3] = [
    ("aes256gcm16-prfsha256-ecp256", "aes256gcm16"),
    ("aes256-sha256-modp2048", "aes256-sha256"),
    ("aes128gcm16-prfsha256-curve25519", "aes128gcm16"),
];

/// A pair where node `initiator` (0 = A, 1 = B) initiates with `ike` / `esp` on both sides.
pub fn pair(initiator: usize, ike_s: &str, esp_s: &str, seed: u64) -> Sim {
    let mut a = config(A, B, initiator == 0);
    let mut b = config(B, A, initiator == 1);
    a.ike_proposals = ike(ike_s);
    b.ike_proposals = ike(ike_s);
    a.esp_proposals = esp(esp_s);
    b.esp_proposals = esp(esp_s);
    Sim::pair(a, b, seed)
}

#[test]
fn establish_every_suite_both_roles() {
    for (n, (ike_s, esp_s)) in SUITES.iter().enumerate() {
        for initiator in [0, 1] {
            let mut sim = pair(initiator, ike_s, esp_s, n as u64 * 10 + initiator as u64);
            sim.run_for(Duration::from_secs(1));
            for node in 0..2 {
                assert!(
                    sim.link_up(node),
                    "{ike_s}: node {node} not up: {:?}",
                    sim.events(node)
                );
                assert!(sim.errors(node).is_empty(), "{:?}", sim.errors(node));
                let status = sim.nodes[node].ep.status(0);
                assert_eq!(status.state, PeerState::Connected);
                let ike_status = status.ike.unwrap();
                assert_eq!(
                    ike_status.proposal,
                    ike_s.replace("aes256-sha256-modp2048", "aes256-sha256-prfsha256-modp2048")
                );
                assert_eq!(ike_status.initiator, node == initiator);
                assert_eq!(status.children.len(), 1);
                assert_eq!(status.children[0].esp, *esp_s);
                assert!(status.last_error.is_none());
            }
            assert_eq!(sim.assert_children_match(), 1);
            // Same IKE SPIs on both ends.
            let (sa, sb) = (
                sim.nodes[0].ep.status(0).ike.unwrap(),
                sim.nodes[1].ep.status(0).ike.unwrap(),
            );
            assert_eq!((sa.spi_i, sa.spi_r), (sb.spi_i, sb.spi_r));
            for node in 0..2 {
                let c = &sim.live_children(node)[0];
                assert_eq!(c.esp, esp(esp_s)[0]);
                assert!(c.inbound >= 256 && c.outbound >= 256);
                assert_eq!(c.remote.port(), NATT_PORT);
                assert_eq!(c.remote.ip(), if node == 0 { B } else { A });
                assert_eq!(c.replaces, None);
                // AES-GCM keys carry the salt; CBC has an integrity key.
                let key_len = if esp_s.starts_with("aes256gcm") {
                    36
                } else if esp_s.starts_with("aes128gcm") {
                    20
                } else {
                    32
                };
                assert_eq!(c.in_keys.0.len(), key_len);
                assert_eq!(c.in_keys.1.is_some(), esp_s.contains("sha"));
                assert_ne!(c.in_keys, c.out_keys);
            }
            // IKE_SA_INIT on 500, the rest on 4500.
            for p in &sim.sent {
                if p.exchange() == ExchangeType::IKE_SA_INIT {
                    assert_eq!((p.src.port(), p.dst.port()), (IKE_PORT, IKE_PORT));
                } else {
                    assert_eq!((p.src.port(), p.dst.port()), (NATT_PORT, NATT_PORT));
                }
            }
            assert_eq!(sim.sent.len(), 4, "{ike_s}: {:?}", sim.sent);
            // Event order: the link first, then the Child SA.
            assert!(matches!(sim.events(initiator)[0], Event::IkeUp { .. }));
            assert!(matches!(sim.events(initiator)[1], Event::ChildSaUp { .. }));
        }
    }
}

#[test]
fn endpoint_is_send() {
    fn send<T: Send>() {}
    send::<crate::engine::Endpoint>();
    send::<Event>();
}

#[test]
fn child_spis_are_unique_and_above_255() {
    // Many peers on one endpoint: every inbound SPI differs.
    use std::collections::BTreeSet;
    use std::net::IpAddr;
    let now = std::time::Instant::now();
    let mut peers_b = Vec::new();
    for i in 0..20u8 {
        let addr: IpAddr = format!("192.0.2.{}", 100 + i).parse().unwrap();
        peers_b.push(config(B, addr, false));
    }
    let mut hub = crate::engine::Endpoint::new(
        peers_b,
        Box::new(crate::crypto::SeededRandom::from_u64(3)),
        now,
    );
    let mut spokes: Vec<crate::engine::Endpoint> = (0..20u8)
        .map(|i| {
            let addr: IpAddr = format!("192.0.2.{}", 100 + i).parse().unwrap();
            let mut c = config(addr, B, true);
            c.local_ts = vec![ts(&format!("10.{}.0.0/16", 100 + i))];
            c.remote_ts = vec![ts("10.3.0.0/16")];
            crate::engine::Endpoint::new(
                vec![c],
                Box::new(crate::crypto::SeededRandom::from_u64(100 + u64::from(i))),
                now,
            )
        })
        .collect();
    for (i, p) in hub.peers.iter_mut() {
        p.config.remote_ts = vec![ts(&format!("10.{}.0.0/16", 100 + i))];
    }
    // Shuttle messages until quiet (no loss, no time).
    for _ in 0..6 {
        for spoke in spokes.iter_mut() {
            while let Some(t) = spoke.poll_transmit() {
                hub.handle_datagram(now, t.remote, t.local, &t.data);
            }
        }
        while let Some(t) = hub.poll_transmit() {
            let i = spokes_index(t.remote.ip());
            spokes[i].handle_datagram(now, t.remote, t.local, &t.data);
        }
    }
    let mut spis = BTreeSet::new();
    let mut ups = 0;
    while let Some(e) = hub.poll_event() {
        if let Event::ChildSaUp {
            inbound_spi, peer, ..
        } = e
        {
            assert!(inbound_spi >= 256);
            assert!(spis.insert(inbound_spi));
            assert!(peer < 20);
            ups += 1;
        }
    }
    assert_eq!(ups, 20);
    for i in 0..20 {
        assert_eq!(hub.status(i).state, PeerState::Connected);
    }
}

fn spokes_index(ip: std::net::IpAddr) -> usize {
    match ip {
        std::net::IpAddr::V4(a) => usize::from(a.octets()[3] - 100),
        std::net::IpAddr::V6(_) => unreachable!(),
    }
}
