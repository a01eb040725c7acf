//! Peers added and removed at run time (a configuration reload): the removed peer is told and
//! forgotten, the others do not notice.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::sim::*;
use crate::engine::{Endpoint, Event, PeerConfig, PeerState};
use crate::wire::ExchangeType;

/// The addresses of the second pair of peers between the two nodes.
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
const B2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 12));

/// A peer of the second pair, with prefixes of its own.
fn second(local: IpAddr, remote: IpAddr, initiate: bool) -> PeerConfig {
    let mut c = config(local, remote, initiate);
    let (ours, theirs) = if local == A2 {
        ("10.2.0.0/16", "10.4.0.0/16")
    } else {
        ("10.4.0.0/16", "10.2.0.0/16")
    };
    c.local_ts = vec![ts(ours)];
    c.remote_ts = vec![ts(theirs)];
    c
}

/// Node A (peers 0: B, 1: B2) and node B (peers 0: A, 1: A2); A initiates both. `tweak`
/// changes both ends of peer 1.
fn two_pairs(seed: u64, tweak: impl Fn(&mut PeerConfig)) -> Sim {
    let mut a1 = second(A2, B2, true);
    let mut b1 = second(B2, A2, false);
    tweak(&mut a1);
    tweak(&mut b1);
    let mut sim = Sim::empty(seed);
    sim.add_node(A, vec![config(A, B, true), a1], seed * 2 + 1);
    sim.add_node(B, vec![config(B, A, false), b1], seed * 2 + 2);
    sim.nodes[0].aliases.push(A2);
    sim.nodes[1].aliases.push(B2);
    sim
}

fn peer_of(e: &Event) -> usize {
    match e {
        Event::ChildSaUp { peer, .. }
        | Event::ChildSaDown { peer, .. }
        | Event::IkeUp { peer }
        | Event::IkeDown { peer, .. }
        | Event::Error { peer, .. } => *peer,
    }
}

/// The Child SA pairs of `peer` announced at `node` and not removed: (inbound, outbound).
fn live(sim: &Sim, node: usize, peer: usize) -> Vec<(u32, u32)> {
    let mut live = Vec::new();
    for e in sim.events(node).iter().filter(|e| peer_of(e) == peer) {
        match e {
            Event::ChildSaUp {
                inbound_spi,
                outbound_spi,
                ..
            } => live.push((*inbound_spi, *outbound_spi)),
            Event::ChildSaDown {
                inbound_spi,
                outbound_spi,
                ..
            } => {
                let pos = live
                    .iter()
                    .position(|p| *p == (*inbound_spi, *outbound_spi))
                    .unwrap_or_else(|| panic!("SA {inbound_spi:#x} down but never up"));
                live.remove(pos);
            }
            _ => {}
        }
    }
    live
}

/// Whether the last link event of `peer` at `node` says up.
fn up(sim: &Sim, node: usize, peer: usize) -> bool {
    sim.link_up_where(node, |e| peer_of(e) == peer)
}

/// Both ends hold the same pairs for `peer` (same index on both nodes), at least one.
fn assert_pairs_match(sim: &Sim, peer: usize) -> usize {
    let a = live(sim, 0, peer);
    let b = live(sim, 1, peer);
    assert!(!a.is_empty(), "peer {peer}: A has no Child SA");
    assert_eq!(a.len(), b.len(), "peer {peer}: A {a:x?} B {b:x?}");
    for (inbound, outbound) in &a {
        assert!(b.contains(&(*outbound, *inbound)), "A {a:x?} B {b:x?}");
    }
    a.len()
}

/// Everything the endpoint holds for `peer` (its link state, IKE SAs with their message IDs,
/// timers and requests, Child SAs), to check that nothing changed.
fn held(ep: &Endpoint, peer: usize) -> Vec<String> {
    let mut out = vec![format!(
        "{:?}",
        ep.peers
            .get(peer)
            .map(|p| (p.up, p.reconnect_at, p.backoff, p.last_error.clone()))
    )];
    for sa in ep.sas.values().filter(|s| s.peer == peer) {
        out.push(format!(
            "{:?}",
            (
                (sa.local_spi, sa.remote_spi, sa.state),
                (sa.next_request_id, sa.expected_request_id),
                (sa.rekey_at, sa.expire_at, sa.remove_at, sa.recreate_at),
                sa.last_heard,
                sa.outstanding
                    .as_ref()
                    .map(|o| (o.message_id, o.sent, o.next_at)),
                &sa.queue,
            )
        ));
    }
    for c in ep.children.values().filter(|c| c.peer == peer) {
        out.push(format!(
            "{:?}",
            (
                (c.inbound_spi, c.outbound_spi, c.ike, c.state),
                (c.rekey_at, c.expire_at, c.bytes, c.announced),
            )
        ));
    }
    out
}

#[test]
fn removing_a_peer_deletes_its_sas_and_spares_the_other() {
    let mut sim = two_pairs(900, |c| {
        c.child_lifetime = Duration::from_secs(300);
        c.ike_lifetime = Duration::from_secs(700);
    });
    sim.run_for(Duration::from_secs(2));
    for peer in 0..2 {
        for n in 0..2 {
            assert!(up(&sim, n, peer), "node {n}: {:?}", sim.events(n));
        }
        assert_eq!(assert_pairs_match(&sim, peer), 1);
    }
    let kept = [held(&sim.nodes[0].ep, 1), held(&sim.nodes[1].ep, 1)];
    let first_ike = sim.nodes[0].ep.status(1).ike.unwrap();
    let sent = sim.sent.len();
    let seen = [sim.events(0).len(), sim.events(1).len()];

    let now = sim.now;
    sim.nodes[0].ep.remove_peer(now, 0);
    assert_eq!(held(&sim.nodes[0].ep, 1), kept[0]);
    assert_eq!(sim.nodes[0].ep.status(0).state, PeerState::NotConnected);
    assert_eq!(sim.nodes[0].ep.status(0).name, "");
    assert_eq!(sim.nodes[0].ep.peer_count(), 2);
    assert!(sim.nodes[0].ep.sas.values().all(|s| s.peer == 1));
    assert!(sim.nodes[0].ep.children.values().all(|c| c.peer == 1));

    // Both ends report the pair and then the link down at once, B on the Delete (no DPD).
    sim.run_for(Duration::from_millis(100));
    for (n, &from) in seen.iter().enumerate() {
        let new = &sim.events(n)[from..];
        assert!(
            matches!(
                new,
                [
                    Event::ChildSaDown { peer: 0, .. },
                    Event::IkeDown { peer: 0, .. }
                ]
            ),
            "node {n}: {new:?}"
        );
        assert!(live(&sim, n, 0).is_empty());
        assert!(!up(&sim, n, 0));
    }
    let Event::IkeDown { reason, .. } = &sim.events(0)[seen[0] + 1] else {
        unreachable!()
    };
    assert_eq!(reason, "peer removed from the configuration");
    let Event::IkeDown { reason, .. } = &sim.events(1)[seen[1] + 1] else {
        unreachable!()
    };
    assert!(reason.contains("deleted by the peer 192.0.2.1"), "{reason}");
    // The Delete, sent once and answered; B's other pair did not notice either.
    let after = &sim.sent[sent..];
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0].exchange(), ExchangeType::INFORMATIONAL);
    assert!(!after[0].is_response());
    assert_eq!((after[0].src.ip(), after[0].dst.ip()), (A, B));
    assert!(after[1].is_response() && after[1].from_node == 1);
    assert_eq!(held(&sim.nodes[1].ep, 1), kept[1]);

    // The other pair carries on: Child SA and IKE SA rekeys, nothing about the removed peer.
    let seen = [sim.events(0).len(), sim.events(1).len()];
    let sent = sim.sent.len();
    sim.run_for(Duration::from_secs(1000));
    for (n, &from) in seen.iter().enumerate() {
        assert!(
            sim.events(n)[from..].iter().all(|e| peer_of(e) == 1),
            "node {n}: {:?}",
            &sim.events(n)[from..]
        );
        assert!(sim.errors(n).is_empty(), "{:?}", sim.errors(n));
        assert!(up(&sim, n, 1));
        assert_eq!(
            sim.count(n, |e| matches!(e, Event::IkeUp { peer: 1 })),
            1,
            "node {n}"
        );
    }
    let rekeys = sim.count(0, |e| {
        matches!(
            e,
            Event::ChildSaUp {
                peer: 1,
                replaces: Some(_),
                ..
            }
        )
    });
    assert!(rekeys >= 3, "{rekeys} Child SA rekeys");
    assert_ne!(
        sim.nodes[0].ep.status(1).ike.unwrap().spi_i,
        first_ike.spi_i
    );
    assert_eq!(assert_pairs_match(&sim, 1), 1);
    assert!(sim.sent[sent..]
        .iter()
        .all(|p| p.src.ip() != A && p.dst.ip() != A));

    // Added again, it takes the free index and, initiating, connects at once.
    let now = sim.now;
    assert_eq!(sim.nodes[0].ep.add_peer(now, config(A, B, true)), 0);
    assert_eq!(sim.nodes[0].ep.peer_count(), 2);
    assert_eq!(sim.nodes[0].ep.status(0).state, PeerState::Connecting);
    sim.run_for(Duration::from_secs(1));
    for n in 0..2 {
        assert!(up(&sim, n, 0), "node {n}: {:?}", sim.events(n));
        assert!(up(&sim, n, 1));
    }
    assert_eq!(assert_pairs_match(&sim, 0), 1);
    assert_eq!(assert_pairs_match(&sim, 1), 1);
    let status = sim.nodes[0].ep.status(0);
    assert_eq!(status.state, PeerState::Connected);
    assert_eq!(status.name, "to-192.0.2.2");
}

#[test]
fn a_removed_peer_is_unknown_until_added_again() {
    let mut sim = two_pairs(910, |_| {});
    sim.run_for(Duration::from_secs(2));
    // B keeps calling the peer A no longer has.
    sim.nodes[1].ep.peers.get_mut(0).unwrap().config.initiate = true;
    let sent = sim.sent.len();
    let seen = sim.events(0).len();
    let now = sim.now;
    sim.nodes[0].ep.remove_peer(now, 0);
    sim.run_for(Duration::from_secs(30));
    let inits: Vec<&Packet> = sim.sent[sent..]
        .iter()
        .filter(|p| p.exchange() == ExchangeType::IKE_SA_INIT)
        .collect();
    assert!(inits.len() >= 5, "{inits:?}");
    // Never answered, nothing created for it, no event about it after the removal.
    assert!(inits.iter().all(|p| p.from_node == 1 && !p.is_response()));
    assert!(sim.nodes[0].ep.sas.values().all(|s| s.peer == 1));
    assert!(sim.nodes[0].ep.half_open.is_empty());
    assert!(
        matches!(
            &sim.events(0)[seen..],
            [
                Event::ChildSaDown { peer: 0, .. },
                Event::IkeDown { peer: 0, .. }
            ]
        ),
        "{:?}",
        &sim.events(0)[seen..]
    );
    assert_eq!(sim.nodes[0].ep.status(0).state, PeerState::NotConnected);
    assert!(!up(&sim, 1, 0));

    // Added back as a responder: B's attempts get through.
    let now = sim.now;
    assert_eq!(sim.nodes[0].ep.add_peer(now, config(A, B, false)), 0);
    sim.run_for(Duration::from_secs(70));
    for n in 0..2 {
        assert!(up(&sim, n, 0), "node {n}: {:?}", sim.events(n));
        assert!(up(&sim, n, 1));
        assert_eq!(sim.count(n, |e| matches!(e, Event::IkeUp { peer: 1 })), 1);
    }
    assert_eq!(assert_pairs_match(&sim, 0), 1);
    assert_eq!(assert_pairs_match(&sim, 1), 1);
    assert_eq!(sim.nodes[0].ep.status(0).state, PeerState::Connected);
}

#[test]
fn removing_an_unknown_or_removed_index_does_nothing() {
    let mut sim = two_pairs(920, |_| {});
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    sim.nodes[0].ep.remove_peer(now, 0);
    sim.run_for(Duration::from_millis(100));
    let ep = &mut sim.nodes[0].ep;
    let (kept, status, timeout) = (held(ep, 1), ep.status(1), ep.poll_timeout());
    for index in [0, 2, usize::MAX] {
        ep.remove_peer(now, index);
        assert!(ep.poll_transmit().is_none());
        assert!(ep.poll_event().is_none());
    }
    assert_eq!(held(ep, 1), kept);
    assert_eq!(ep.status(1), status);
    assert_eq!(ep.poll_timeout(), timeout);
    assert_eq!(ep.peer_count(), 2);
}

#[test]
fn add_peer_on_a_closed_endpoint_starts_nothing() {
    let mut sim = two_pairs(930, |_| {});
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    sim.nodes[0].ep.close_all(now);
    sim.run_for(Duration::from_millis(100));
    let sent = sim.sent.len();
    let ep = &mut sim.nodes[0].ep;
    let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
    assert_eq!(ep.add_peer(now, config(A, other, true)), 2);
    assert_eq!(ep.peer_count(), 3);
    assert_eq!(ep.status(2).state, PeerState::NotConnected);
    // Removing (already reported down by the close) and adding again: indices only.
    ep.remove_peer(now, 0);
    assert_eq!(ep.add_peer(now, config(A, B, true)), 0);
    assert!(ep.poll_transmit().is_none());
    assert!(ep.poll_event().is_none());
    assert_eq!(ep.poll_timeout(), None);
    assert_eq!(ep.status(0).state, PeerState::NotConnected);
    sim.run_for(Duration::from_secs(60));
    assert!(sim.sent[sent..].iter().all(|p| p.from_node == 1));
}

#[test]
fn removal_mid_exchange_leaves_no_timer() {
    // The initiator, while its IKE_AUTH is unanswered: the Delete still goes out (the
    // responder established the IKE SA on the request).
    let mut sim = Sim::pair(config(A, B, true), config(B, A, false), 940);
    sim.set_filter(|p| {
        if p.exchange() == ExchangeType::IKE_AUTH && p.is_response() {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    sim.run_for(Duration::from_millis(200));
    assert!(sim.nodes[0].ep.poll_timeout().is_some());
    assert!(!sim.nodes[0].ep.reserved_spis.is_empty());
    assert!(sim.link_up(1));
    let now = sim.now;
    sim.nodes[0].ep.remove_peer(now, 0);
    let ep = &sim.nodes[0].ep;
    assert_eq!(ep.poll_timeout(), None);
    assert_eq!(ep.test_all_sas(), 0);
    assert!(ep.reserved_spis.is_empty() && ep.half_open.is_empty());
    sim.run_for(Duration::from_millis(100));
    assert!(!sim.link_up(1), "{:?}", sim.events(1));
    assert!(sim.live_children(1).is_empty());
    let sent = sim.sent.len();
    sim.run_for(Duration::from_secs(120));
    assert!(sim.sent[sent..].is_empty());
    // Never up, nothing announced: nothing to report.
    assert!(sim.events(0).is_empty(), "{:?}", sim.events(0));
    assert_eq!(sim.nodes[0].ep.poll_timeout(), None);

    // The responder, with a half-open SA (IKE_AUTH requests lost): no Delete, no timer, and
    // the initiator's next attempts go unanswered.
    let mut sim = Sim::pair(config(A, B, true), config(B, A, false), 941);
    sim.set_filter(|p| {
        if p.exchange() == ExchangeType::IKE_AUTH && !p.is_response() {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.nodes[1].ep.half_open.len(), 1);
    assert!(sim.nodes[1].ep.poll_timeout().is_some());
    let sent = sim.sent.len();
    let now = sim.now;
    sim.nodes[1].ep.remove_peer(now, 0);
    let ep = &sim.nodes[1].ep;
    assert_eq!(ep.poll_timeout(), None);
    assert_eq!(ep.test_all_sas(), 0);
    assert!(ep.half_open.is_empty());
    sim.clear_filter();
    sim.run_for(Duration::from_secs(120));
    assert!(sim.sent[sent..].iter().all(|p| p.from_node == 0));
    assert!(sim.sent[sent..]
        .iter()
        .any(|p| p.exchange() == ExchangeType::IKE_SA_INIT));
    assert!(sim.events(1).is_empty(), "{:?}", sim.events(1));
    assert_eq!(sim.nodes[1].ep.poll_timeout(), None);
}
