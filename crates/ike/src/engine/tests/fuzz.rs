//! Untrusted input: random bytes and mutations of valid messages never panic the endpoint and
//! never produce events; the SAs keep working afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::establish::pair;
use super::sim::*;
use crate::wire::{ExchangeType, Header};

/// A pair after a handshake, a Child SA rekey, an IKE SA rekey and a liveness check, and every
/// datagram (without the non-ESP marker) it took: the same every time (seeded).
fn scenario() -> (Sim, Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
    let mut sim = pair(0, "aes256gcm16-prfsha256-ecp256", "aes256gcm16", 900);
    sim.run_for(Duration::from_secs(1));
    sim.nodes[1].ep.test_rekey_children(sim.now, 0);
    sim.run_for(Duration::from_secs(1));
    sim.nodes[0].ep.test_rekey_ike(sim.now, 0);
    sim.run_for(Duration::from_secs(1));
    sim.run_for(Duration::from_secs(50));
    let corpus = sim
        .sent
        .iter()
        .map(|p| (p.src, p.dst, p.ike().to_vec()))
        .collect();
    (sim, corpus)
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
    Overwrite(usize, Vec<u8>),
    /// Keep the header (fixing its length), replace the rest with random bytes.
    Body(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..40).prop_map(Mutation::Append),
        (0usize..32, proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Mutation::Body),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(i, x) => {
            if !data.is_empty() {
                let n = data.len();
                data[i % n] ^= x;
            }
        }
        Mutation::Truncate(i) => {
            let n = data.len();
            data.truncate(i % (n + 1));
        }
        Mutation::Append(b) => data.extend_from_slice(b),
        Mutation::Overwrite(i, b) => {
            for (k, byte) in b.iter().enumerate() {
                if let Some(slot) = data.get_mut(i + k) {
                    *slot = *byte;
                }
            }
        }
        Mutation::Body(b) => {
            data.truncate(28);
            data.extend_from_slice(b);
            let len = (data.len() as u32).to_be_bytes();
            if data.len() >= 28 {
                data[24..28].copy_from_slice(&len);
            }
        }
    }
}

/// Feeds a datagram as coming from `src` to whichever node owns `dst`; IKE_SA_INIT requests
/// come from an address that is no configured peer (a configured peer may legitimately start
/// an IKE SA, which can end in an Error event).
fn feed(sim: &mut Sim, src: SocketAddr, dst: SocketAddr, data: &[u8]) {
    let node = if dst.ip() == A { 0 } else { 1 };
    let init_request = Header::peek(data)
        .map(|h| h.exchange_type == ExchangeType::IKE_SA_INIT && !h.flags.response)
        .unwrap_or(false);
    let src = if init_request {
        SocketAddr::new("198.51.100.7".parse().unwrap(), src.port())
    } else {
        src
    };
    let now = sim.now;
    sim.nodes[node].ep.handle_datagram(now, dst, src, data);
}

fn no_events(sim: &mut Sim) -> Result<(), TestCaseError> {
    for n in 0..2 {
        let ev = sim.nodes[n].ep.poll_event();
        prop_assert!(ev.is_none(), "node {} produced {:?}", n, ev);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn mutated_messages_produce_nothing(picks in proptest::collection::vec((any::<usize>(), proptest::collection::vec(mutation(), 0..4)), 1..12)) {
        let (mut sim, corpus) = scenario();
        let links = (sim.link_up(0), sim.link_up(1));
        for (pick, mutations) in &picks {
            let (src, dst, data) = &corpus[pick % corpus.len()];
            let mut data = data.clone();
            for m in mutations {
                apply(&mut data, m);
            }
            feed(&mut sim, *src, *dst, &data);
            no_events(&mut sim)?;
        }
        // Still working: a Child SA rekey goes through.
        sim.run_for(Duration::from_secs(1));
        sim.nodes[0].ep.test_rekey_children(sim.now, 0);
        sim.run_for(Duration::from_secs(2));
        prop_assert_eq!((sim.link_up(0), sim.link_up(1)), links);
        prop_assert!(sim.errors(0).is_empty() && sim.errors(1).is_empty());
        sim.assert_children_match();
    }

    #[test]
    fn random_bytes_produce_nothing(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..20),
                                    spi_hint in any::<bool>()) {
        let (mut sim, corpus) = scenario();
        let a500 = SocketAddr::new(A, 500);
        let b4500 = SocketAddr::new(B, 4500);
        for mut d in datagrams {
            if spi_hint && d.len() >= 28 {
                // Use real SPIs and a consistent length so that the message reaches an SA.
                let (_, _, real) = &corpus[d[0] as usize % corpus.len()];
                d[..16].copy_from_slice(&real[..16]);
                let len = (d.len() as u32).to_be_bytes();
                d[24..28].copy_from_slice(&len);
                d[17] = 0x20;
            }
            feed(&mut sim, b4500, a500, &d);
            feed(&mut sim, a500, b4500, &d);
            no_events(&mut sim)?;
        }
    }
}

#[test]
fn replayed_messages_produce_nothing() {
    // Every datagram of the scenario, delivered again later: old requests are answered from
    // the cache or dropped, old responses dropped.
    let (mut sim, corpus) = scenario();
    for (src, dst, data) in &corpus {
        feed(&mut sim, *src, *dst, data);
        for n in 0..2 {
            assert!(sim.nodes[n].ep.poll_event().is_none());
        }
    }
}
