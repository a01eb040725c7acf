//! Rekeying Child SAs and the IKE SA: by lifetime, by bytes, simultaneously from both ends.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::establish::pair;
use super::sim::*;
use crate::engine::Event;
use crate::wire::ExchangeType;

/// Every pair that went down was first replaced by a new announced one (make-before-break),
/// unless its IKE SA went down.
fn assert_make_before_break(sim: &Sim, node: usize) {
    let events = sim.events(node);
    for (i, e) in events.iter().enumerate() {
        if let Event::ChildSaDown { inbound_spi, .. } = e {
            let replaced = events[..i].iter().any(
                |u| matches!(u, Event::ChildSaUp { replaces: Some(r), .. } if r == inbound_spi),
            );
            let link_down = events[i..]
                .iter()
                .any(|u| matches!(u, Event::IkeDown { .. }));
            assert!(
                replaced || link_down,
                "node {node}: {inbound_spi:#x} removed without replacement"
            );
        }
    }
}

fn short_lifetimes(child: u64, ike_s: u64) -> Sim {
    let mut a = config(A, B, true);
    let mut b = config(B, A, false);
    for c in [&mut a, &mut b] {
        c.child_lifetime = Duration::from_secs(child);
        c.ike_lifetime = Duration::from_secs(ike_s);
    }
    Sim::pair(a, b, child ^ ike_s)
}

#[test]
fn child_rekey_by_lifetime() {
    let mut sim = short_lifetimes(300, 100_000);
    sim.run_for(Duration::from_secs(1));
    let first = sim.live_children(0)[0].inbound;
    sim.run_for(Duration::from_secs(1000));
    for n in 0..2 {
        assert!(sim.errors(n).is_empty(), "{:?}", sim.errors(n));
        assert_make_before_break(&sim, n);
        assert_eq!(sim.count(n, |e| matches!(e, Event::IkeUp { .. })), 1);
        assert_eq!(sim.count(n, |e| matches!(e, Event::IkeDown { .. })), 0);
    }
    // Rekeyed at 80-90% of 300 s: at least 3 times in 1000 s, at most 4.
    let rekeys = sim.count(0, |e| {
        matches!(
            e,
            Event::ChildSaUp {
                replaces: Some(_),
                ..
            }
        )
    });
    assert!((3..=4).contains(&rekeys), "{rekeys} rekeys");
    assert_eq!(sim.assert_children_match(), 1);
    assert_ne!(sim.live_children(0)[0].inbound, first);
    // Nothing left behind.
    for n in 0..2 {
        assert_eq!(sim.nodes[n].ep.test_all_children(), 1);
    }
    // Rekeys and deletes went over CREATE_CHILD_SA and INFORMATIONAL.
    let ccsa = sim
        .sent
        .iter()
        .filter(|p| p.exchange() == ExchangeType::CREATE_CHILD_SA)
        .count();
    assert_eq!(ccsa, 2 * rekeys);
}

#[test]
fn child_rekey_with_pfs() {
    for initiator in [0, 1] {
        let mut sim = pair(
            initiator,
            "aes256-sha256-modp2048",
            "aes256-sha256-curve25519",
            300 + initiator as u64,
        );
        sim.run_for(Duration::from_secs(1));
        // IKE_AUTH carries no D-H: the first Child SA has no PFS group.
        assert_eq!(sim.live_children(0)[0].esp.dh, None);
        sim.nodes[initiator].ep.test_rekey_children(sim.now, 0);
        sim.run_for(Duration::from_secs(2));
        assert!(
            sim.errors(0).is_empty() && sim.errors(1).is_empty(),
            "{:?} {:?}",
            sim.errors(0),
            sim.errors(1)
        );
        assert_eq!(sim.assert_children_match(), 1);
        let c = &sim.live_children(0)[0];
        assert_eq!(c.esp.dh, Some(crate::crypto::DhGroup::Curve25519));
        assert!(c.replaces.is_some());
        assert_make_before_break(&sim, 0);
        assert_make_before_break(&sim, 1);
    }
}

#[test]
fn ike_rekey_by_lifetime() {
    let mut sim = short_lifetimes(100_000, 600);
    sim.run_for(Duration::from_secs(1));
    let spis = |sim: &Sim, n: usize| {
        let s = sim.nodes[n].ep.status(0).ike.unwrap();
        (s.spi_i, s.spi_r)
    };
    let before = spis(&sim, 0);
    let child = sim.live_children(0)[0].inbound;
    sim.run_for(Duration::from_secs(2000));
    for n in 0..2 {
        assert!(sim.errors(n).is_empty(), "{:?}", sim.errors(n));
        assert!(sim.link_up(n));
        assert_eq!(sim.count(n, |e| matches!(e, Event::IkeUp { .. })), 1);
        // Only established IKE SA left; the old ones are gone.
        assert_eq!(sim.nodes[n].ep.test_ike_sas(0), 1);
        assert_eq!(sim.nodes[n].ep.test_all_sas(), 1);
    }
    assert_eq!(spis(&sim, 0), spis(&sim, 1));
    assert_ne!(spis(&sim, 0), before);
    // The Child SA lives on under the new IKE SAs.
    assert_eq!(sim.live_children(0)[0].inbound, child);
    sim.assert_children_match();
    // Rekeyed 3 or 4 times in 2000 s (80-90% of 600 s).
    let ccsa = sim
        .sent
        .iter()
        .filter(|p| p.exchange() == ExchangeType::CREATE_CHILD_SA)
        .count();
    assert!((6..=8).contains(&ccsa), "{ccsa}");
    // The Child SA can still be rekeyed over the new IKE SA.
    sim.nodes[1].ep.test_rekey_children(sim.now, 0);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.assert_children_match(), 1);
    assert_ne!(sim.live_children(0)[0].inbound, child);
}

#[test]
fn simultaneous_child_rekey() {
    for seed in 0..12u64 {
        let mut sim = pair(
            (seed % 2) as usize,
            "aes256gcm16-prfsha256-ecp256",
            "aes256gcm16-ecp256",
            400 + seed,
        );
        sim.run_for(Duration::from_secs(1));
        let old = sim.live_children(0)[0].inbound;
        // Both ends rekey at the same moment (or one slightly later).
        sim.nodes[0].ep.test_rekey_children(sim.now, 0);
        sim.run_for(Duration::from_millis(seed % 3 * 4));
        sim.nodes[1].ep.test_rekey_children(sim.now, 0);
        sim.run_for(Duration::from_secs(5));
        for n in 0..2 {
            assert!(sim.errors(n).is_empty(), "seed {seed}: {:?}", sim.errors(n));
            assert_make_before_break(&sim, n);
            // Only the surviving SA was ever announced.
            let ups = sim.count(n, |e| {
                matches!(
                    e,
                    Event::ChildSaUp {
                        replaces: Some(_),
                        ..
                    }
                )
            });
            assert_eq!(ups, 1, "seed {seed} node {n}: {:#?}", sim.events(n));
            assert_eq!(
                sim.nodes[n].ep.test_all_children(),
                1,
                "seed {seed} node {n}"
            );
        }
        assert_eq!(sim.assert_children_match(), 1);
        assert_ne!(sim.live_children(0)[0].inbound, old);
        // Both exchanges happened: a collision, not a sequence.
        let ccsa = sim
            .sent
            .iter()
            .filter(|p| p.exchange() == ExchangeType::CREATE_CHILD_SA)
            .count();
        assert_eq!(ccsa, 4, "seed {seed}");
    }
}

#[test]
fn late_child_rekey_collision() {
    // B's rekey request is lost once, so its retransmission reaches A after A's own rekey is
    // done: A refuses it (TEMPORARY_FAILURE) or no longer knows the pair, and B keeps A's SA.
    for seed in 0..4u64 {
        let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 450 + seed);
        sim.run_for(Duration::from_secs(1));
        let dropped = Rc::new(Cell::new(false));
        let d = dropped.clone();
        sim.set_filter(move |p| {
            if p.from_node == 1
                && p.exchange() == ExchangeType::CREATE_CHILD_SA
                && !p.is_response()
                && !d.get()
            {
                d.set(true);
                Verdict::Drop
            } else {
                Verdict::Deliver
            }
        });
        sim.nodes[0].ep.test_rekey_children(sim.now, 0);
        sim.run_for(Duration::from_millis(5));
        sim.nodes[1].ep.test_rekey_children(sim.now, 0);
        sim.run_for(Duration::from_secs(10));
        for n in 0..2 {
            assert!(sim.errors(n).is_empty(), "seed {seed}: {:?}", sim.errors(n));
            assert_make_before_break(&sim, n);
            assert_eq!(
                sim.nodes[n].ep.test_all_children(),
                1,
                "seed {seed} node {n}"
            );
        }
        assert_eq!(sim.assert_children_match(), 1);
    }
}

#[test]
fn simultaneous_ike_rekey() {
    for seed in 0..12u64 {
        let mut sim = pair(
            (seed % 2) as usize,
            "aes256-sha256-modp2048",
            "aes256gcm16",
            500 + seed,
        );
        sim.run_for(Duration::from_secs(1));
        let child = sim.live_children(0)[0].inbound;
        sim.nodes[0].ep.test_rekey_ike(sim.now, 0);
        sim.run_for(Duration::from_millis(seed % 3 * 4));
        sim.nodes[1].ep.test_rekey_ike(sim.now, 0);
        sim.run_for(Duration::from_secs(60));
        for n in 0..2 {
            assert!(sim.errors(n).is_empty(), "seed {seed}: {:?}", sim.errors(n));
            assert_eq!(sim.count(n, |e| matches!(e, Event::IkeDown { .. })), 0);
            assert_eq!(sim.nodes[n].ep.test_all_sas(), 1, "seed {seed} node {n}");
        }
        let (a, b) = (
            sim.nodes[0].ep.status(0).ike.unwrap(),
            sim.nodes[1].ep.status(0).ike.unwrap(),
        );
        assert_eq!((a.spi_i, a.spi_r), (b.spi_i, b.spi_r), "seed {seed}");
        assert_eq!(sim.live_children(0)[0].inbound, child);
        sim.assert_children_match();
        // The survivor works: rekey the Child SA over it, and check liveness.
        sim.nodes[0].ep.test_rekey_children(sim.now, 0);
        sim.run_for(Duration::from_secs(100));
        assert_eq!(sim.assert_children_match(), 1);
        assert!(sim.errors(0).is_empty() && sim.errors(1).is_empty());
    }
}

#[test]
fn child_and_ike_rekey_at_once() {
    // A rekeys the Child SA while B rekeys the IKE SA.
    for seed in 0..6u64 {
        let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 550 + seed);
        sim.run_for(Duration::from_secs(1));
        sim.nodes[0].ep.test_rekey_children(sim.now, 0);
        sim.run_for(Duration::from_millis(seed % 3 * 4));
        sim.nodes[1].ep.test_rekey_ike(sim.now, 0);
        sim.run_for(Duration::from_secs(60));
        for n in 0..2 {
            assert!(sim.errors(n).is_empty(), "seed {seed}: {:?}", sim.errors(n));
            assert_eq!(sim.nodes[n].ep.test_all_sas(), 1, "seed {seed} node {n}");
            assert_eq!(
                sim.nodes[n].ep.test_all_children(),
                1,
                "seed {seed} node {n}"
            );
        }
        assert_eq!(sim.assert_children_match(), 1);
    }
}

#[test]
fn byte_lifetime_rekey() {
    let mut a = config(A, B, true);
    let mut b = config(B, A, false);
    a.child_lifetime_bytes = 1_000_000;
    b.child_lifetime_bytes = 1_000_000;
    let mut sim = Sim::pair(a, b, 600);
    sim.run_for(Duration::from_secs(1));
    let first = sim.live_children(1)[0].inbound;
    // Below the soft limit (at least 80%): nothing.
    sim.nodes[1].ep.child_bytes(sim.now, 0, first, 700_000);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.sent.len(), 4);
    sim.nodes[1].ep.child_bytes(sim.now, 0, first, 200_001);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.assert_children_match(), 1);
    let second = sim.live_children(1)[0].clone();
    assert_eq!(second.replaces, Some(first));
    assert_make_before_break(&sim, 0);
    assert_make_before_break(&sim, 1);
    // The byte count starts again for the new pair; the status shows it.
    sim.nodes[1]
        .ep
        .child_bytes(sim.now, 0, second.inbound, 1000);
    assert_eq!(sim.nodes[1].ep.status(0).children[0].bytes, 1000);
    // Reaching the hard limit at once deletes the pair (and A, the initiator, creates a new
    // one).
    sim.nodes[1]
        .ep
        .child_bytes(sim.now, 0, second.inbound, 5_000_000);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.events(1).iter().any(
        |e| matches!(e, Event::ChildSaDown { inbound_spi, .. } if *inbound_spi == second.inbound)
    ));
    assert_eq!(sim.assert_children_match(), 1);
    assert_eq!(sim.live_children(1)[0].replaces, None);
    assert!(sim.link_up(0) && sim.link_up(1));
}

#[test]
fn child_sa_hard_expiry_when_rekeys_fail() {
    // B refuses every CREATE_CHILD_SA (it drops them): A's rekey times out and the peer
    // counts as dead. With B simply not answering rekeys the IKE SA closes.
    let mut sim = short_lifetimes(300, 100_000);
    sim.run_for(Duration::from_secs(1));
    sim.set_filter(|p| {
        if p.exchange() == ExchangeType::CREATE_CHILD_SA {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    sim.run_for(Duration::from_secs(300));
    let e = sim.errors(0);
    assert!(
        e.iter()
            .chain(sim.errors(1).iter())
            .any(|m| m.contains("unreachable")),
        "{e:?}"
    );
}

#[test]
fn late_ike_rekey_collision() {
    // B's IKE rekey request is lost once and reaches A after A's own rekey is done.
    for seed in 0..4u64 {
        let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 560 + seed);
        sim.run_for(Duration::from_secs(1));
        let dropped = Rc::new(Cell::new(false));
        let d = dropped.clone();
        sim.set_filter(move |p| {
            if p.from_node == 1
                && p.exchange() == ExchangeType::CREATE_CHILD_SA
                && !p.is_response()
                && !d.get()
            {
                d.set(true);
                Verdict::Drop
            } else {
                Verdict::Deliver
            }
        });
        sim.nodes[0].ep.test_rekey_ike(sim.now, 0);
        sim.run_for(Duration::from_millis(5));
        sim.nodes[1].ep.test_rekey_ike(sim.now, 0);
        sim.run_for(Duration::from_secs(60));
        for n in 0..2 {
            assert!(sim.errors(n).is_empty(), "seed {seed}: {:?}", sim.errors(n));
            assert_eq!(sim.nodes[n].ep.test_all_sas(), 1, "seed {seed} node {n}");
            assert_eq!(sim.count(n, |e| matches!(e, Event::IkeDown { .. })), 0);
        }
        let (a, b) = (
            sim.nodes[0].ep.status(0).ike.unwrap(),
            sim.nodes[1].ep.status(0).ike.unwrap(),
        );
        assert_eq!((a.spi_i, a.spi_r), (b.spi_i, b.spi_r));
        assert_eq!(sim.assert_children_match(), 1);
    }
}

#[test]
fn child_rekey_invalid_ke_retry() {
    // A prefers PFS with ECP-256, B only accepts MODP-2048: B asks for group 14 and A retries.
    let mut a = config(A, B, true);
    let mut b = config(B, A, false);
    a.esp_proposals = esp("aes256gcm16-ecp256,aes256gcm16-modp2048");
    b.esp_proposals = esp("aes256gcm16-modp2048");
    let mut sim = Sim::pair(a, b, 610);
    sim.run_for(Duration::from_secs(1));
    sim.nodes[0].ep.test_rekey_children(sim.now, 0);
    sim.run_for(Duration::from_secs(2));
    assert!(
        sim.errors(0).is_empty() && sim.errors(1).is_empty(),
        "{:?} {:?}",
        sim.errors(0),
        sim.errors(1)
    );
    assert_eq!(sim.assert_children_match(), 1);
    assert_eq!(
        sim.live_children(0)[0].esp.dh,
        Some(crate::crypto::DhGroup::Modp2048)
    );
    let ccsa = sim
        .sent
        .iter()
        .filter(|p| p.exchange() == ExchangeType::CREATE_CHILD_SA)
        .count();
    assert_eq!(
        ccsa, 4,
        "request, INVALID_KE_PAYLOAD, request again, response"
    );
}

#[test]
fn child_rekey_without_common_pfs_group_fails_then_expires() {
    let mut a = config(A, B, true);
    let mut b = config(B, A, false);
    a.esp_proposals = esp("aes256gcm16-ecp256");
    b.esp_proposals = esp("aes256gcm16-modp2048");
    a.child_lifetime = Duration::from_secs(300);
    b.child_lifetime = Duration::from_secs(100_000);
    let mut sim = Sim::pair(a, b, 620);
    sim.run_for(Duration::from_secs(1));
    sim.run_for(Duration::from_secs(300));
    let e = sim.errors(0);
    assert!(
        e.iter().any(|m| m.contains("Child SA rekey failed")),
        "{e:?}"
    );
    // At the end of its lifetime the pair is deleted; the IKE SA stays, and A's attempts to
    // create a new pair fail the same way, every 30 s.
    assert!(sim.live_children(0).is_empty() && sim.live_children(1).is_empty());
    assert!(sim.link_up(0) && sim.link_up(1));
    sim.run_for(Duration::from_secs(65));
    let e = sim.errors(0);
    let creates = e
        .iter()
        .filter(|m| m.contains("Child SA not created: no proposal chosen"))
        .count();
    assert!((2..=3).contains(&creates), "{e:?}");
}
