//! Negotiation failures and their recoveries: proposal mismatch, wrong PSK, wrong identity,
//! unacceptable traffic selectors, INVALID_KE_PAYLOAD, cookies.

use std::time::Duration;

use super::sim::*;
use crate::crypto::SecretBytes;
use crate::engine::{Event, PeerState};
use crate::wire::{ExchangeType, Message, NotifyType, Payload};

fn has(errors: &[String], needle: &str) -> bool {
    errors.iter().any(|e| e.contains(needle))
}

/// Node `i` of a pair where node `initiator` initiates.
fn configs(initiator: usize) -> (crate::engine::PeerConfig, crate::engine::PeerConfig) {
    (config(A, B, initiator == 0), config(B, A, initiator == 1))
}

#[test]
fn ike_proposal_mismatch_both_ways() {
    for initiator in [0, 1] {
        let (mut a, mut b) = configs(initiator);
        a.ike_proposals = ike("aes256gcm16-prfsha256-ecp256");
        b.ike_proposals = ike("aes256-sha256-modp2048");
        let mut sim = Sim::pair(a, b, 100 + initiator as u64);
        sim.run_for(Duration::from_secs(1));
        let responder = 1 - initiator;
        let ei = sim.errors(initiator);
        let er = sim.errors(responder);
        assert!(has(&ei, "no proposal chosen: we offered"), "{ei:?}");
        assert!(has(&ei, "NO_PROPOSAL_CHOSEN"), "{ei:?}");
        assert!(has(&er, "no proposal chosen: peer"), "{er:?}");
        assert!(has(&er, "we accept"), "{er:?}");
        // The words name the algorithms.
        let mine = if initiator == 0 {
            "aes256gcm16-prfsha256-ecp256"
        } else {
            "aes256-sha256-prfsha256-modp2048"
        };
        assert!(has(&ei, mine), "{ei:?}");
        assert!(has(&er, mine), "{er:?}");
        for n in 0..2 {
            assert!(!sim.link_up(n));
            assert!(sim.live_children(n).is_empty());
            assert!(sim.nodes[n].ep.status(0).last_error.is_some());
        }
        assert_eq!(
            sim.nodes[responder].ep.status(0).state,
            PeerState::NotConnected
        );
        // The initiator keeps trying, with growing pauses: few attempts in a minute.
        sim.run_for(Duration::from_secs(60));
        let attempts = sim
            .sent
            .iter()
            .filter(|p| p.from_node == initiator && p.exchange() == ExchangeType::IKE_SA_INIT)
            .count();
        assert!((4..=8).contains(&attempts), "{attempts} attempts");
        assert_eq!(
            sim.nodes[initiator].ep.status(0).state,
            PeerState::Connecting
        );
    }
}

#[test]
fn esp_proposal_mismatch_both_ways() {
    for initiator in [0, 1] {
        let (mut a, mut b) = configs(initiator);
        a.esp_proposals = esp("aes256gcm16");
        b.esp_proposals = esp("aes256-sha256");
        let mut sim = Sim::pair(a, b, 110 + initiator as u64);
        sim.run_for(Duration::from_secs(1));
        let responder = 1 - initiator;
        let ei = sim.errors(initiator);
        let er = sim.errors(responder);
        assert!(has(&ei, "no proposal chosen: we offered"), "{ei:?}");
        assert!(has(&ei, "(ESP)"), "{ei:?}");
        assert!(has(&er, "no proposal chosen: peer"), "{er:?}");
        // No Child SA anywhere; the initiator deleted the useless IKE SA.
        for n in 0..2 {
            assert!(sim.live_children(n).is_empty());
            assert!(!sim.link_up(n), "node {n}: {:?}", sim.events(n));
        }
    }
}

#[test]
fn traffic_selector_mismatch() {
    let (mut a, b) = configs(0);
    a.remote_ts = vec![ts("10.9.0.0/16")];
    let mut sim = Sim::pair(a, b, 120);
    sim.run_for(Duration::from_secs(1));
    assert!(
        has(&sim.errors(0), "traffic selectors unacceptable"),
        "{:?}",
        sim.errors(0)
    );
    assert!(has(&sim.errors(0), "TS_UNACCEPTABLE"));
    assert!(
        has(&sim.errors(1), "traffic selectors unacceptable: peer"),
        "{:?}",
        sim.errors(1)
    );
    assert!(sim.live_children(0).is_empty() && sim.live_children(1).is_empty());
}

#[test]
fn traffic_selectors_are_narrowed_by_the_responder() {
    // A asks for more than B allows; B narrows to its policy.
    let (mut a, b) = configs(0);
    a.local_ts = vec![ts("10.0.0.0/8")];
    a.remote_ts = vec![ts("10.3.0.0/16"), ts("10.4.0.0/16")];
    let mut sim = Sim::pair(a, b, 121);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.assert_children_match(), 1);
    let sa = sim.nodes[0].ep.status(0);
    assert_eq!(sa.children[0].local_ts, vec![ts("10.1.0.0/16")]);
    assert_eq!(sa.children[0].remote_ts, vec![ts("10.3.0.0/16")]);
    let sb = sim.nodes[1].ep.status(0);
    assert_eq!(sb.children[0].local_ts, vec![ts("10.3.0.0/16")]);
    assert_eq!(sb.children[0].remote_ts, vec![ts("10.1.0.0/16")]);
}

#[test]
fn wrong_psk_both_ways() {
    for initiator in [0, 1] {
        let (mut a, b) = configs(initiator);
        a.psk = SecretBytes::from_slice(b"not the same key");
        let mut sim = Sim::pair(a, b, 130 + initiator as u64);
        sim.run_for(Duration::from_secs(1));
        let responder = 1 - initiator;
        let ei = sim.errors(initiator);
        let er = sim.errors(responder);
        assert!(has(&er, "authentication failed"), "{er:?}");
        assert!(
            has(&er, "does not verify with our pre-shared key"),
            "{er:?}"
        );
        assert!(has(&ei, "authentication failed"), "{ei:?}");
        assert!(has(&ei, "AUTHENTICATION_FAILED"), "{ei:?}");
        for n in 0..2 {
            assert!(!sim.link_up(n));
            assert!(sim.live_children(n).is_empty());
        }
        // The responder's IKE_AUTH response said AUTHENTICATION_FAILED (not encrypted
        // garbage): the initiator read it, so no timeout error.
        assert!(!has(&ei, "no response"), "{ei:?}");
    }
}

#[test]
fn wrong_identity_is_an_authentication_failure() {
    let (mut a, mut b) = configs(0);
    a.local_id = Some("gw-a.example".to_owned());
    b.remote_id = Some("gw-x.example".to_owned());
    let mut sim = Sim::pair(a, b, 140);
    sim.run_for(Duration::from_secs(1));
    assert!(
        has(
            &sim.errors(1),
            "identifies as FQDN gw-a.example, expected FQDN gw-x.example"
        ),
        "{:?}",
        sim.errors(1)
    );
    assert!(has(&sim.errors(0), "AUTHENTICATION_FAILED"));
}

#[test]
fn configured_identities() {
    let (mut a, mut b) = configs(0);
    a.local_id = Some("gw-a.example".to_owned());
    a.remote_id = Some("192.0.2.2".to_owned());
    b.local_id = Some("192.0.2.2".to_owned());
    b.remote_id = Some("GW-A.example".to_owned());
    let mut sim = Sim::pair(a, b, 141);
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.link_up(0) && sim.link_up(1),
        "{:?} {:?}",
        sim.errors(0),
        sim.errors(1)
    );
    sim.assert_children_match();
}

#[test]
fn invalid_ke_payload_retry() {
    for initiator in [0, 1] {
        let (mut a, mut b) = configs(initiator);
        let (init, resp) = if initiator == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        init.ike_proposals = ike("aes256gcm16-prfsha256-ecp256,aes256-sha256-modp2048");
        resp.ike_proposals = ike("aes256-sha256-modp2048");
        let mut sim = Sim::pair(a, b, 150 + initiator as u64);
        sim.run_for(Duration::from_secs(1));
        assert!(
            sim.link_up(0) && sim.link_up(1),
            "{:?} {:?}",
            sim.errors(0),
            sim.errors(1)
        );
        assert!(sim.errors(0).is_empty() && sim.errors(1).is_empty());
        sim.assert_children_match();
        // INIT, INVALID_KE, INIT again (same SPI, group 14), response, AUTH, response.
        let inits: Vec<_> = sim
            .sent
            .iter()
            .filter(|p| p.exchange() == ExchangeType::IKE_SA_INIT)
            .collect();
        assert_eq!(inits.len(), 4);
        let m = Message::decode(inits[1].ike()).unwrap();
        assert_eq!(m.payloads.len(), 1);
        assert_eq!(
            m.notify(NotifyType::INVALID_KE_PAYLOAD).unwrap().data,
            [0, 14]
        );
        assert_eq!(inits[0].header().spi_i, inits[2].header().spi_i);
        let retry = Message::decode(inits[2].ike()).unwrap();
        let Some(Payload::Ke(ke)) = retry.payload(crate::wire::PayloadType::KE) else {
            panic!()
        };
        assert_eq!((ke.group.0, ke.data.len()), (14, 256));
        let status = sim.nodes[0].ep.status(0).ike.unwrap();
        assert_eq!(status.proposal, "aes256-sha256-prfsha256-modp2048");
    }
}

#[test]
fn responder_prefers_the_group_of_the_ke_payload() {
    // Both accept both groups: the responder picks the one whose KE it already has, even if
    // its own preference is the other.
    let (mut a, mut b) = configs(0);
    a.ike_proposals = ike("aes256-sha256-modp2048,aes256gcm16-prfsha256-ecp256");
    b.ike_proposals = ike("aes256gcm16-prfsha256-ecp256,aes256-sha256-modp2048");
    let mut sim = Sim::pair(a, b, 155);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.sent.len(), 4);
    assert_eq!(
        sim.nodes[1].ep.status(0).ike.unwrap().proposal,
        "aes256-sha256-prfsha256-modp2048"
    );
}

#[test]
fn cookie_flow() {
    for initiator in [0, 1] {
        let (a, b) = configs(initiator);
        let mut sim = Sim::pair(a, b, 160 + initiator as u64);
        // The responder is "under load": every request needs a cookie.
        sim.nodes[1 - initiator].ep.set_half_open_limit(0);
        sim.run_for(Duration::from_secs(1));
        assert!(
            sim.link_up(0) && sim.link_up(1),
            "{:?} {:?}",
            sim.errors(0),
            sim.errors(1)
        );
        sim.assert_children_match();
        let inits: Vec<_> = sim
            .sent
            .iter()
            .filter(|p| p.exchange() == ExchangeType::IKE_SA_INIT)
            .collect();
        assert_eq!(inits.len(), 4);
        let cookie = Message::decode(inits[1].ike()).unwrap();
        let n = cookie.notify(NotifyType::COOKIE).unwrap();
        assert_eq!(n.data.len(), crate::crypto::COOKIE_LEN);
        assert_eq!(inits[1].header().spi_r, 0);
        // The retry carries the cookie as its first payload, the rest unchanged.
        let first = Message::decode(inits[0].ike()).unwrap();
        let retry = Message::decode(inits[2].ike()).unwrap();
        assert_eq!(retry.payloads[0], Payload::Notify(n.clone()));
        assert_eq!(retry.payloads[1..4], first.payloads[..3]);
    }
}

#[test]
fn half_open_limit_counts_half_open_sas() {
    // With a limit of 1, a first request is served without cookie.
    let (a, b) = configs(0);
    let mut sim = Sim::pair(a, b, 170);
    sim.nodes[1].ep.set_half_open_limit(1);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.sent.len(), 4);
    assert!(sim.link_up(1));
}

/// An IKE_SA_INIT flood from the configured peer's address (copies of a real request with
/// fresh initiator SPIs): the responder keeps `limit` half-open SAs and answers the rest with
/// stateless cookies; even a flood that echoes cookies stops at MAX_HALF_OPEN. Every datagram
/// is counted.
#[test]
fn init_flood_is_answered_with_cookies_and_half_open_sas_are_bounded() {
    use crate::engine::{Counters, MAX_HALF_OPEN};
    let (a, b) = configs(0);
    let mut sim = Sim::pair(a, b, 190);
    sim.set_filter(|_| Verdict::Drop);
    sim.run_for(Duration::from_millis(10));
    let request = sim.sent[0].clone();
    assert_eq!(request.exchange(), ExchangeType::IKE_SA_INIT);
    let now = sim.now;
    let flood = |ep: &mut crate::engine::Endpoint, n: u64, first: u64| {
        for i in 0..n {
            let mut data = request.udp.clone();
            data[..8].copy_from_slice(&(first + i).to_be_bytes());
            ep.handle_datagram(now, request.dst, request.src, &data);
            while ep.poll_transmit().is_some() {}
        }
    };
    let ep = &mut sim.nodes[1].ep;
    ep.set_half_open_limit(8);
    flood(ep, 100, 1 << 40);
    assert_eq!(ep.half_open(), 8);
    let c = ep.counters();
    assert_eq!(
        c,
        Counters {
            datagrams: 100,
            cookies_sent: 92,
            ..Counters::default()
        }
    );
    // Garbage and a stranger are counted too.
    ep.handle_datagram(now, request.dst, request.src, &[0u8; 3]);
    let stranger = "192.0.2.77:500".parse().unwrap();
    let mut data = request.udp.clone();
    data[..8].copy_from_slice(&7u64.to_be_bytes());
    ep.handle_datagram(now, request.dst, stranger, &data);
    let c = ep.counters();
    assert_eq!((c.datagrams, c.malformed, c.unknown_peer), (102, 1, 1));
    // A flooder that could echo cookies: the hard bound holds.
    ep.set_half_open_limit(usize::MAX);
    flood(ep, MAX_HALF_OPEN as u64 + 50, 1 << 50);
    assert_eq!(ep.half_open(), MAX_HALF_OPEN);
    assert_eq!(ep.counters().half_open_full, 58);
}

/// Fuzzing finding 4: a zero retransmission base is clamped to 1 ms, so the retransmissions
/// stay spaced out (1, 2, 4... ms) instead of all falling due at once.
#[test]
fn a_zero_retransmission_base_is_clamped() {
    use crate::engine::Endpoint;
    let start = std::time::Instant::now();
    let mut ep = Endpoint::new(Vec::new(), Box::new(crate::crypto::SystemRandom), start);
    ep.set_retransmission(Duration::ZERO, 16);
    ep.add_peer(start, config(A, B, true));
    let mut sent = 0;
    // 20 ms in steps of 0.1 ms, every due timer fired.
    for step in 0..=200u64 {
        let now = start + Duration::from_micros(100 * step);
        for _ in 0..32 {
            if ep.poll_timeout().is_none_or(|t| t > now) {
                break;
            }
            ep.handle_timeout(now);
            while ep.poll_transmit().is_some() {
                sent += 1;
            }
        }
        while ep.poll_transmit().is_some() {
            sent += 1;
        }
    }
    // The request at 0, then at 1, 3, 7 and 15 ms: 5 in 20 ms (16 if all fell due at once).
    assert!((4..=6).contains(&sent), "{sent} transmissions in 20 ms");
}

#[test]
fn unknown_peer_is_ignored() {
    let (a, mut b) = configs(0);
    b.remote = "192.0.2.99".parse().unwrap();
    let mut sim = Sim::pair(a, b, 180);
    sim.run_for(Duration::from_secs(20));
    assert!(
        sim.sent.iter().all(|p| p.from_node == 0),
        "B answered a stranger"
    );
    assert!(sim.events(1).is_empty());
    assert!(
        has(&sim.errors(0), "no response from 192.0.2.2 to IKE_SA_INIT"),
        "{:?}",
        sim.errors(0)
    );
    assert!(sim
        .events(0)
        .iter()
        .all(|e| matches!(e, Event::Error { .. })));
}

#[test]
fn initiator_rejects_the_responder() {
    // B authenticates A, A does not accept B's identity: A tells B (INFORMATIONAL with
    // AUTHENTICATION_FAILED) and both end without an IKE SA.
    let (mut a, b) = configs(0);
    a.remote_id = Some("gw-b.example".to_owned());
    let mut sim = Sim::pair(a, b, 190);
    sim.run_for(Duration::from_secs(1));
    assert!(
        has(
            &sim.errors(0),
            "identifies as 192.0.2.2, expected FQDN gw-b.example"
        ),
        "{:?}",
        sim.errors(0)
    );
    assert!(
        has(&sim.errors(1), "AUTHENTICATION_FAILED"),
        "{:?}",
        sim.errors(1)
    );
    for n in 0..2 {
        assert!(!sim.link_up(n));
        assert!(sim.live_children(n).is_empty());
    }
}

#[test]
fn late_duplicate_init_request_starts_nothing() {
    let (a, b) = configs(0);
    let mut sim = Sim::pair(a, b, 191);
    sim.run_for(Duration::from_secs(1));
    let init = sim.sent[0].clone();
    assert_eq!(init.exchange(), ExchangeType::IKE_SA_INIT);
    let now = sim.now;
    sim.nodes[1]
        .ep
        .handle_datagram(now, init.dst, init.src, init.ike());
    assert!(sim.nodes[1].ep.poll_transmit().is_none());
    assert_eq!(sim.nodes[1].ep.test_all_sas(), 1);
}
