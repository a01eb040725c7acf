//! Loss, duplication and reordering: retransmission with backoff, answers from the cache.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::establish::pair;
use super::sim::*;
use crate::engine::Event;
use crate::wire::ExchangeType;

#[test]
fn loss_of_any_single_handshake_message() {
    for initiator in [0, 1] {
        for lost in 1..=4u64 {
            let mut sim = pair(
                initiator,
                "aes256gcm16-prfsha256-ecp256",
                "aes256gcm16",
                200 + lost,
            );
            let n = Rc::new(Cell::new(0u64));
            let counter = n.clone();
            sim.set_filter(move |_| {
                counter.set(counter.get() + 1);
                if counter.get() == lost {
                    Verdict::Drop
                } else {
                    Verdict::Deliver
                }
            });
            sim.run_for(Duration::from_secs(5));
            assert!(
                sim.link_up(0) && sim.link_up(1),
                "lost #{lost}: {:?} {:?}",
                sim.errors(0),
                sim.errors(1)
            );
            assert!(sim.errors(0).is_empty() && sim.errors(1).is_empty());
            assert_eq!(sim.assert_children_match(), 1);
            // One message lost: one retransmission, and for a lost response a repeated one.
            assert_eq!(
                sim.sent.len(),
                if lost % 2 == 1 { 5 } else { 6 },
                "lost #{lost}"
            );
            // A retransmission is the same datagram.
            let requests: Vec<_> = sim.sent.iter().filter(|p| !p.is_response()).collect();
            let repeated = requests.windows(2).any(|w| w[0].udp == w[1].udp);
            assert!(repeated, "lost #{lost}: no retransmission");
        }
    }
}

#[test]
fn retransmission_backoff_then_give_up() {
    let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 210);
    sim.nodes[1].offline = true;
    sim.run_for(Duration::from_secs(15));
    let sent = sim.sent.iter().filter(|p| p.from_node == 0).count();
    assert_eq!(sent, 5, "sent at 0, 0.5, 1.5, 3.5, 7.5");
    assert!(sim.errors(0).is_empty());
    sim.run_for(Duration::from_millis(600));
    let e = sim.errors(0);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains(
            "no response from 192.0.2.2 to IKE_SA_INIT after 5 transmissions over 15.5 s"
        ),
        "{e:?}"
    );
}

#[test]
fn retransmission_schedule() {
    let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 211);
    sim.nodes[1].offline = true;
    let mut seen = Vec::new();
    for step in 0..160 {
        sim.run_for(Duration::from_millis(100));
        let n = sim.sent.len();
        if seen.last().map(|&(_, m)| m) != Some(n) {
            seen.push((step + 1, n));
        }
    }
    // Transmissions at 0, 0.5, 1.5, 3.5 and 7.5 s (step = 100 ms, counted at its end); at
    // 15.5 s the attempt fails and the next one waits 2 s.
    let steps: Vec<usize> = seen.iter().map(|&(s, _)| s).collect();
    assert_eq!(steps, vec![1, 5, 15, 35, 75], "{seen:?}");
    sim.run_for(Duration::from_millis(1800));
    assert_eq!(sim.sent.len(), 6);
}

#[test]
fn duplicated_and_reordered_datagrams() {
    for seed in 0..8 {
        let mut sim = pair(
            (seed % 2) as usize,
            "aes256-sha256-modp2048",
            "aes256-sha256",
            220 + seed,
        );
        sim.net.duplicate = 0.5;
        sim.net.jitter = Duration::from_millis(300);
        sim.run_for(Duration::from_secs(10));
        assert!(
            sim.link_up(0) && sim.link_up(1),
            "seed {seed}: {:?} {:?}",
            sim.errors(0),
            sim.errors(1)
        );
        assert!(
            sim.errors(0).is_empty() && sim.errors(1).is_empty(),
            "seed {seed}"
        );
        assert_eq!(sim.assert_children_match(), 1);
    }
}

#[test]
fn lossy_network_with_rekeys() {
    // 20% loss, duplicates and reordering, short lifetimes: everything keeps agreeing.
    for seed in 0..4 {
        let mut a = config(A, B, true);
        let mut b = config(B, A, seed % 2 == 1);
        for c in [&mut a, &mut b] {
            c.child_lifetime = Duration::from_secs(300);
            c.ike_lifetime = Duration::from_secs(700);
            c.dpd_timeout = Duration::from_secs(30);
        }
        let mut sim = Sim::pair(a, b, 230 + seed);
        sim.net.loss = 0.2;
        sim.net.duplicate = 0.2;
        sim.net.jitter = Duration::from_millis(200);
        sim.run_for(Duration::from_secs(2000));
        // Let the last exchanges finish on a clean network.
        sim.net = NetConfig::default();
        sim.run_for(Duration::from_secs(40));
        assert!(
            sim.link_up(0) && sim.link_up(1),
            "seed {seed}: {:?} {:?}",
            sim.errors(0),
            sim.errors(1)
        );
        let rekeys = sim.count(0, |e| {
            matches!(
                e,
                Event::ChildSaUp {
                    replaces: Some(_),
                    ..
                }
            )
        });
        assert!(rekeys >= 4, "seed {seed}: {rekeys} rekeys");
        let n = sim.assert_children_match();
        assert!(n <= 2, "seed {seed}: {n} pairs");
    }
}

#[test]
fn retransmitted_requests_are_answered_from_the_cache() {
    // Drop the first IKE_AUTH response: the responder sees the request twice and answers the
    // second from its cache, byte for byte.
    let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 240);
    let dropped = Rc::new(Cell::new(false));
    let d = dropped.clone();
    sim.set_filter(move |p| {
        if p.exchange() == ExchangeType::IKE_AUTH && p.is_response() && !d.get() {
            d.set(true);
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    sim.run_for(Duration::from_secs(3));
    let responses: Vec<_> = sim
        .sent
        .iter()
        .filter(|p| p.exchange() == ExchangeType::IKE_AUTH && p.is_response())
        .collect();
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].udp, responses[1].udp);
    // B processed the request once: one Child SA, one IkeUp.
    assert_eq!(sim.count(1, |e| matches!(e, Event::ChildSaUp { .. })), 1);
    sim.assert_children_match();
}

#[test]
fn loss_of_any_single_rekey_message() {
    // Child SA rekey (request, response, Delete, its response) and IKE SA rekey (the same):
    // whichever message is lost, the exchange completes and both ends agree.
    for ike_rekey in [false, true] {
        for lost in 1..=4u64 {
            let mut sim = pair(1, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 250 + lost);
            sim.run_for(Duration::from_secs(1));
            let n = Rc::new(Cell::new(0u64));
            let counter = n.clone();
            sim.set_filter(move |_| {
                counter.set(counter.get() + 1);
                if counter.get() == lost {
                    Verdict::Drop
                } else {
                    Verdict::Deliver
                }
            });
            if ike_rekey {
                sim.nodes[0].ep.test_rekey_ike(sim.now, 0);
            } else {
                sim.nodes[0].ep.test_rekey_children(sim.now, 0);
            }
            sim.run_for(Duration::from_secs(40));
            let what = if ike_rekey { "IKE" } else { "Child" };
            for node in 0..2 {
                assert!(
                    sim.errors(node).is_empty(),
                    "{what} lost #{lost}: {:?}",
                    sim.errors(node)
                );
                assert!(sim.link_up(node));
                assert_eq!(
                    sim.nodes[node].ep.test_all_sas(),
                    1,
                    "{what} lost #{lost} node {node}"
                );
                assert_eq!(
                    sim.nodes[node].ep.test_all_children(),
                    1,
                    "{what} lost #{lost} node {node}"
                );
            }
            assert_eq!(sim.assert_children_match(), 1);
            let rekeyed = sim.count(0, |e| {
                matches!(
                    e,
                    Event::ChildSaUp {
                        replaces: Some(_),
                        ..
                    }
                )
            });
            assert_eq!(rekeyed, usize::from(!ike_rekey), "{what} lost #{lost}");
        }
    }
}
