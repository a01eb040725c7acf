//! Deleting, closing, dead peer detection, reconnection, restarts, simultaneous starts.

use std::time::Duration;

use super::establish::pair;
use super::sim::*;
use crate::engine::{Event, PeerState};
use crate::wire::{ExchangeType, Message, NotifyType, Payload};

fn downs(sim: &Sim, n: usize) -> Vec<String> {
    sim.events(n)
        .iter()
        .filter_map(|e| match e {
            Event::IkeDown { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn child_delete_both_ways() {
    // Neither end initiates after the start, so nothing recreates the pair.
    for deleter in [0, 1] {
        let mut sim = pair(
            0,
            "aes256gcm16-prfsha256-ecp256",
            "aes256gcm16",
            700 + deleter as u64,
        );
        sim.run_for(Duration::from_secs(1));
        sim.nodes[0].ep.peers.get_mut(0).unwrap().config.initiate = false;
        sim.nodes[deleter].ep.test_delete_children(sim.now, 0);
        sim.run_for(Duration::from_secs(1));
        for n in 0..2 {
            assert!(
                sim.live_children(n).is_empty(),
                "node {n}: {:?}",
                sim.events(n)
            );
            assert_eq!(sim.count(n, |e| matches!(e, Event::ChildSaDown { .. })), 1);
            assert!(sim.link_up(n));
            assert_eq!(sim.nodes[n].ep.test_all_children(), 0);
        }
        let info: Vec<_> = sim
            .sent
            .iter()
            .filter(|p| p.exchange() == ExchangeType::INFORMATIONAL)
            .collect();
        assert_eq!(info.len(), 2);
        // The response named the paired SA: B's inbound SPI is A's outbound one.
        assert!(sim.errors(0).is_empty() && sim.errors(1).is_empty());
    }
}

#[test]
fn deleted_child_is_recreated_by_the_initiator() {
    for deleter in [0, 1] {
        let mut sim = pair(
            0,
            "aes256gcm16-prfsha256-ecp256",
            "aes256gcm16",
            705 + deleter as u64,
        );
        sim.run_for(Duration::from_secs(1));
        let old = sim.live_children(0)[0].inbound;
        sim.nodes[deleter].ep.test_delete_children(sim.now, 0);
        sim.run_for(Duration::from_secs(1));
        assert_eq!(sim.assert_children_match(), 1);
        let new = &sim.live_children(0)[0];
        assert_ne!(new.inbound, old);
        assert_eq!(new.replaces, None);
        assert!(sim.errors(0).is_empty() && sim.errors(1).is_empty());
        // INFORMATIONAL delete, then a CREATE_CHILD_SA without REKEY_SA.
        let ccsa = sim
            .sent
            .iter()
            .filter(|p| p.exchange() == ExchangeType::CREATE_CHILD_SA)
            .count();
        assert_eq!(ccsa, 2);
    }
}

#[test]
fn crossing_child_deletes() {
    let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 710);
    sim.run_for(Duration::from_secs(1));
    sim.nodes[0].ep.peers.get_mut(0).unwrap().config.initiate = false;
    sim.nodes[0].ep.test_delete_children(sim.now, 0);
    sim.nodes[1].ep.test_delete_children(sim.now, 0);
    sim.run_for(Duration::from_secs(1));
    for n in 0..2 {
        assert!(sim.live_children(n).is_empty());
        assert_eq!(sim.count(n, |e| matches!(e, Event::ChildSaDown { .. })), 1);
        assert!(sim.errors(n).is_empty());
    }
}

#[test]
fn close_all_deletes_the_ike_sa_both_ways() {
    for closer in [0, 1] {
        // The other side initiates: after the Delete it tries again, and the closed side stays
        // silent.
        let other = 1 - closer;
        let mut sim = pair(
            other,
            "aes256gcm16-prfsha256-ecp256",
            "aes256gcm16",
            720 + closer as u64,
        );
        sim.run_for(Duration::from_secs(1));
        sim.nodes[closer].ep.close_all(sim.now);
        sim.run_for(Duration::from_millis(100));
        for n in 0..2 {
            assert!(sim.live_children(n).is_empty());
            assert!(!sim.link_up(n));
        }
        assert_eq!(downs(&sim, closer), vec!["closed locally".to_owned()]);
        assert!(
            downs(&sim, other)[0].contains("deleted by the peer 192.0.2."),
            "{:?}",
            downs(&sim, other)
        );
        // The Delete: one INFORMATIONAL request with D(IKE).
        let info: Vec<_> = sim
            .sent
            .iter()
            .filter(|p| p.exchange() == ExchangeType::INFORMATIONAL)
            .collect();
        assert_eq!(info[0].from_node, closer);
        assert!(!info[0].is_response());
        assert_eq!(sim.nodes[closer].ep.poll_timeout(), None);
        sim.run_for(Duration::from_secs(60));
        assert!(sim.sent.iter().skip(6).all(|p| p.from_node == other));
        assert!(!sim.link_up(other));
        assert_eq!(sim.nodes[other].ep.status(0).state, PeerState::Connecting);
    }
}

#[test]
fn ike_sa_hard_expiry_deletes_and_initiator_reconnects() {
    // Rekeys of the IKE SA are lost: at the end of its lifetime the IKE SA is deleted, and
    // the initiator starts a new one at once.
    let mut a = config(A, B, true);
    let mut b = config(B, A, false);
    for c in [&mut a, &mut b] {
        c.ike_lifetime = Duration::from_secs(400);
        c.dpd_timeout = Duration::ZERO;
    }
    let mut sim = Sim::pair(a, b, 730);
    sim.run_for(Duration::from_secs(1));
    // Drop IKE SA rekeys only (CREATE_CHILD_SA with a KE and no TS: not identifiable once
    // encrypted, so drop all CREATE_CHILD_SA requests, which only IKE rekeys use here).
    sim.set_filter(|p| {
        if p.exchange() == ExchangeType::CREATE_CHILD_SA {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    sim.run_for(Duration::from_secs(400));
    sim.clear_filter();
    sim.run_for(Duration::from_secs(5));
    // A rekey that times out means the peer is gone: the IKE SA closes, A reconnects.
    for n in 0..2 {
        assert!(sim.link_up(n), "node {n}: {:?}", sim.events(n));
        assert_eq!(sim.count(n, |e| matches!(e, Event::IkeUp { .. })), 2);
    }
    sim.assert_children_match();
}

#[test]
fn dpd_closes_a_dead_peer_and_the_initiator_reconnects() {
    for dead in [0, 1] {
        let initiator = 0;
        let mut sim = pair(
            initiator,
            "aes256gcm16-prfsha256-ecp256",
            "aes256gcm16",
            740 + dead as u64,
        );
        sim.run_for(Duration::from_secs(1));
        let alive = 1 - dead;
        sim.nodes[dead].offline = true;
        // 45 s idle: a liveness check; 15.5 s of retransmissions; then the IKE SA is closed.
        sim.run_for(Duration::from_secs(44));
        assert!(sim.link_up(alive));
        sim.run_for(Duration::from_secs(17));
        assert!(!sim.link_up(alive), "{:?}", sim.events(alive));
        let e = sim.errors(alive);
        assert!(
            e.iter()
                .any(|m| m.contains("unreachable: no response to liveness check")),
            "{e:?}"
        );
        assert!(downs(&sim, alive)[0].contains("unreachable"));
        assert!(sim.live_children(alive).is_empty());
        // The empty INFORMATIONAL requests were sent.
        let dpd = sim
            .sent
            .iter()
            .filter(|p| p.from_node == alive && p.exchange() == ExchangeType::INFORMATIONAL)
            .count();
        assert_eq!(dpd, 5);
        // The initiator tries again and again while the peer is away.
        sim.run_for(Duration::from_secs(120));
        if alive == initiator {
            let attempts = sim
                .sent
                .iter()
                .filter(|p| p.from_node == alive && p.exchange() == ExchangeType::IKE_SA_INIT)
                .count();
            assert!(attempts >= 20, "{attempts}");
            assert_eq!(sim.nodes[alive].ep.status(0).state, PeerState::Connecting);
        } else {
            assert_eq!(sim.nodes[alive].ep.status(0).state, PeerState::NotConnected);
        }
        // The dead one comes back (with its old state, which its own DPD closed).
        sim.nodes[dead].offline = false;
        sim.run_for(Duration::from_secs(70));
        for n in 0..2 {
            assert!(sim.link_up(n), "dead {dead} node {n}: {:?}", sim.events(n));
        }
        assert_eq!(sim.assert_children_match(), 1);
    }
}

#[test]
fn child_traffic_keeps_dpd_quiet() {
    let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 750);
    sim.run_for(Duration::from_secs(1));
    let before = sim.sent.len();
    for _ in 0..10 {
        sim.run_for(Duration::from_secs(30));
        let now = sim.now;
        sim.nodes[0].ep.child_alive(now, 0);
        sim.nodes[1].ep.child_alive(now, 0);
    }
    assert_eq!(sim.sent.len(), before, "liveness checks despite traffic");
    // Without traffic, checks every 45 s from both ends, answered.
    sim.run_for(Duration::from_secs(100));
    let info = sim.sent[before..]
        .iter()
        .filter(|p| p.exchange() == ExchangeType::INFORMATIONAL)
        .count();
    assert!(info >= 4, "{info}");
    assert!(sim.link_up(0) && sim.link_up(1));
    for p in &sim.sent[before..] {
        let m = Message::decode(p.ike()).unwrap();
        assert_eq!(m.payloads.len(), 1);
        let Payload::Sk(sk) = &m.payloads[0] else {
            panic!()
        };
        // Empty: IV (8) + pad length (1) + ICV (16).
        assert_eq!(sk.body.len(), 25);
    }
}

#[test]
fn restarted_peer_replaces_the_old_ike_sa() {
    // B restarts and initiates: its INITIAL_CONTACT makes A drop the stale IKE SA at once.
    let mut a = config(A, B, false);
    let b = config(B, A, true);
    let mut sim = Sim::pair(a.clone(), b.clone(), 760);
    sim.run_for(Duration::from_secs(1));
    let old = sim.live_children(0)[0].inbound;
    a.initiate = false;
    sim.restart(1, vec![b], 7600);
    sim.run_for(Duration::from_secs(1));
    let live = sim.live_children(0);
    assert_eq!(live.len(), 1);
    assert_ne!(live[0].inbound, old);
    assert!(sim.link_up(0));
    assert_eq!(sim.count(0, |e| matches!(e, Event::IkeDown { .. })), 0);
    assert_eq!(sim.nodes[0].ep.test_all_sas(), 1);
    // The restarted B has only the new pair.
    let b_children = sim.live_children(1);
    let mine: Vec<u32> = b_children.iter().map(|c| c.outbound).collect();
    assert!(mine.contains(&live[0].inbound));
    let auth = sim
        .sent
        .iter()
        .rev()
        .find(|p| p.exchange() == ExchangeType::IKE_AUTH && !p.is_response())
        .unwrap();
    assert_eq!(auth.from_node, 1);
}

#[test]
fn simultaneous_start_converges_on_one_ike_sa() {
    for seed in 0..10u64 {
        let mut sim = Sim::pair(config(A, B, true), config(B, A, true), 770 + seed);
        sim.net.jitter = Duration::from_millis(seed * 3);
        sim.run_for(Duration::from_secs(30));
        for n in 0..2 {
            assert!(sim.link_up(n), "seed {seed} node {n}: {:?}", sim.events(n));
            assert_eq!(sim.nodes[n].ep.test_ike_sas(0), 1, "seed {seed} node {n}");
            assert!(sim.errors(n).is_empty(), "seed {seed}: {:?}", sim.errors(n));
        }
        let (a, b) = (
            sim.nodes[0].ep.status(0).ike.unwrap(),
            sim.nodes[1].ep.status(0).ike.unwrap(),
        );
        assert_eq!((a.spi_i, a.spi_r), (b.spi_i, b.spi_r), "seed {seed}");
        assert_eq!(sim.assert_children_match(), 1, "seed {seed}");
        // A redundant IKE SA's Child SA is never announced: a data plane that follows the
        // announcements never ends up without an outbound SA.
        for n in 0..2 {
            sim.assert_outbound_alive(n);
        }
    }
}

#[test]
fn initial_contact_only_without_an_established_sa() {
    let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 780);
    sim.run_for(Duration::from_secs(1));
    // The IKE_AUTH request is encrypted; B recorded the notification.
    let sa = sim.nodes[1].ep.sas.values().next().unwrap();
    assert!(sa.initial_contact);
    let _ = NotifyType::INITIAL_CONTACT;
}

#[test]
fn status_reports_the_peer() {
    let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 790);
    assert_eq!(sim.nodes[0].ep.status(0).state, PeerState::Connecting);
    assert_eq!(sim.nodes[1].ep.status(0).state, PeerState::NotConnected);
    sim.run_for(Duration::from_secs(100));
    // Ages are as of the last call into the endpoint.
    sim.nodes[1].ep.handle_timeout(sim.now);
    let s = sim.nodes[1].ep.status(0);
    assert_eq!(s.name, "to-192.0.2.1");
    assert_eq!(s.state, PeerState::Connected);
    let ike = s.ike.unwrap();
    assert_eq!(ike.proposal, "aes256gcm16-prfsha256-ecp256");
    assert_eq!(ike.remote.port(), 4500);
    assert!(ike.age >= Duration::from_secs(99));
    assert_eq!(s.children[0].esp, "aes256gcm16");
    assert_eq!(s.children[0].local_ts, vec![ts("10.3.0.0/16")]);
    assert!(s.children[0].age >= Duration::from_secs(99));
    assert_eq!(sim.nodes[1].ep.status(7).state, PeerState::NotConnected);
}
