//! Target `ike_payloads`: the IKEv2 codec on arbitrary bytes, every payload type, with the
//! round trips the codec promises, and the code that reads decoded payloads: proposal
//! selection (wire and crypto), traffic selector narrowing, notify helpers, identities, the
//! Diffie-Hellman agreement on a KE payload's data, the SK payload's protection, cookies.
//!
//! Input: a selector byte, then the bytes. The bytes are decoded as a whole message
//! (`Message::decode`), as an SK plaintext chain whose first payload is the selector's type
//! (`decode_inner`), and opened as an SK body.
//!
//! Checked: whatever decodes re-encodes to the same length and decodes to the same value
//! (messages and inner chains); an SK payload sealed with a key opens to the same plaintext;
//! a proposal chosen by `SaPayload::select` is a selection of one offered
//! (`Proposal::is_selection_of`, what an initiator checks of a responder); every narrowed
//! traffic selector is covered by a proposed and a policy selector.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use causeway_ike::crypto::{
    self, CookieJar, DhPrivate, EspProposal, IkeProposal, SecretBytes, SeededRandom, SkCipher,
};
use causeway_ike::wire::{
    decode_inner, encode_inner, narrow, Header, Message, Payload, PayloadType, Proposal,
    ProtocolId, SaPayload, Spi, TrafficSelector,
};

use crate::ike_peer;
use crate::input::Input;

fn to_crypto(p: &Proposal) -> Vec<crypto::Transform> {
    p.transforms
        .iter()
        .filter_map(|t| {
            Some(crypto::Transform {
                kind: crypto::TransformType::from_id(t.transform_type.0)?,
                id: t.id,
                key_len: t.key_length(),
            })
        })
        .collect()
}

struct Fixed {
    ours: Vec<Proposal>,
    policy: Vec<TrafficSelector>,
    dh: Vec<(crypto::DhGroup, DhPrivate)>,
    sk: Vec<SkCipher>,
    jar: CookieJar,
    now: Instant,
}

thread_local! {
    static FIXED: std::cell::RefCell<Option<Fixed>> = const { std::cell::RefCell::new(None) };
}

fn fixed() -> Fixed {
    let now = Instant::now();
    let mut rng = SeededRandom::from_u64(3);
    let mut ours = Vec::new();
    for (i, s) in [
        "aes256gcm16-prfsha256-ecp256",
        "aes256-sha256-modp2048",
        "aes128-sha1-modp1024",
    ]
    .iter()
    .enumerate()
    {
        let p = IkeProposal::parse(s).unwrap();
        ours.push(Proposal {
            number: i as u8 + 1,
            protocol: ProtocolId::IKE,
            spi: Spi::None,
            transforms: p.transforms().iter().map(to_wire).collect(),
        });
    }
    for (i, s) in ["aes256gcm16", "aes128-sha256-modp2048", "aes256gcm16-esn"]
        .iter()
        .enumerate()
    {
        let p = EspProposal::parse(s).unwrap();
        ours.push(Proposal {
            number: i as u8 + 1,
            protocol: ProtocolId::ESP,
            spi: Spi::U32(0x1000),
            transforms: p.transforms().iter().map(to_wire).collect(),
        });
    }
    let ts = |s: &str| {
        let (a, l) = s.split_once('/').unwrap();
        TrafficSelector::from_prefix(a.parse().unwrap(), l.parse().unwrap()).unwrap()
    };
    let groups = [
        crypto::DhGroup::Modp1024,
        crypto::DhGroup::Modp2048,
        crypto::DhGroup::Ecp256,
        crypto::DhGroup::Ecp384,
        crypto::DhGroup::Curve25519,
    ];
    let dh = groups
        .iter()
        .map(|g| (*g, g.generate(&mut rng).unwrap().0))
        .collect();
    let key = |n: usize| SecretBytes::from_slice(&vec![0x42u8; n]);
    let sk = vec![
        SkCipher::new(crypto::EncrAlg::AesGcm16, 256, None, &key(36), None).unwrap(),
        SkCipher::new(
            crypto::EncrAlg::AesCbc,
            128,
            Some(crypto::IntegAlg::HmacSha256_128),
            &key(16),
            Some(&key(32)),
        )
        .unwrap(),
    ];
    Fixed {
        ours,
        policy: vec![ts("10.1.0.0/16"), ts("fd00:1::/48"), ts("0.0.0.0/0")],
        dh,
        sk,
        jar: CookieJar::new(now, Duration::from_secs(120), &mut rng),
        now,
    }
}

fn to_wire(t: &crypto::Transform) -> causeway_ike::wire::Transform {
    use causeway_ike::wire::{Attribute, AttributeType, AttributeValue};
    causeway_ike::wire::Transform {
        transform_type: causeway_ike::wire::TransformType(t.kind.id()),
        id: t.id,
        attributes: t
            .key_len
            .map(|bits| Attribute {
                attribute_type: AttributeType::KEY_LENGTH,
                value: AttributeValue::Tv(bits),
            })
            .into_iter()
            .collect(),
    }
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let sel = input.u8();
    let bytes = input.rest();
    FIXED.with(|f| {
        let mut f = f.borrow_mut();
        let f = f.get_or_insert_with(fixed);
        message(f, bytes);
        inner(f, PayloadType(sel), bytes);
        sk(f, sel, bytes);
    });
}

fn message(f: &mut Fixed, bytes: &[u8]) {
    let _ = Header::peek(bytes);
    match Message::decode(bytes) {
        Ok(m) => {
            let again = m.encode().expect("a decoded message encodes");
            assert_eq!(again.len(), bytes.len(), "re-encoded length");
            assert_eq!(
                Message::decode(&again).as_ref(),
                Ok(&m),
                "re-encoded message"
            );
            if let Some((prefix, body)) = m.split_encrypted(bytes) {
                assert_eq!(prefix.len() + body.len(), bytes.len());
                for c in &f.sk {
                    assert!(c.open(prefix, body).is_err(), "random bytes authenticated");
                }
            }
            let _ = m.notifies().count();
            semantics(f, &m.payloads);
        }
        Err(e) => {
            let _ = e.suggested_notify();
            let _ = e.to_string();
        }
    }
}

fn inner(f: &mut Fixed, first: PayloadType, bytes: &[u8]) {
    let Ok(payloads) = decode_inner(first, bytes) else {
        return;
    };
    let (f2, plain) = encode_inner(&payloads).expect("decoded payloads encode");
    assert_eq!(plain.len(), bytes.len(), "re-encoded chain length");
    assert_eq!(
        decode_inner(f2, &plain).as_ref(),
        Ok(&payloads),
        "re-encoded chain"
    );
    semantics(f, &payloads);
}

/// The SK protection: the bytes sealed with the selector's cipher open to themselves, and a
/// body of arbitrary bytes does not open.
fn sk(f: &mut Fixed, sel: u8, bytes: &[u8]) {
    let c = &mut f.sk[usize::from(sel) % 2];
    let aad = [sel; 32];
    let sealed = c
        .seal(&aad, bytes, &mut SeededRandom::from_u64(4))
        .expect("seal");
    assert_eq!(sealed.len(), c.sealed_len(bytes.len()));
    assert_eq!(c.open(&aad, &sealed).as_deref(), Ok(bytes), "SK round trip");
    let _ = c.open(&aad, bytes);
}

fn semantics(f: &mut Fixed, payloads: &[Payload]) {
    for p in payloads {
        match p {
            Payload::Sa(sa) => proposals(f, sa),
            Payload::Ke(ke) => {
                if let Some((g, private)) = f.dh.iter().find(|(g, _)| g.id() == ke.group.0) {
                    // MODP agreement costs milliseconds: only at the group's own length.
                    if !matches!(g, crypto::DhGroup::Modp2048 | crypto::DhGroup::Modp1024)
                        || ke.data.len() == g.public_len()
                    {
                        let _ = g.shared(private, &ke.data);
                    }
                }
            }
            Payload::IdI(id) | Payload::IdR(id) => {
                let _ = id.ip_addr();
                assert_eq!(id.body().len(), 4 + id.data.len());
            }
            Payload::Notify(n) => {
                let _ = n.invalid_ke_group();
                let _ = n.unsupported_payload_type();
                let _ = n.signature_hash_algorithms();
                if n.notify_type == causeway_ike::wire::NotifyType::COOKIE {
                    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
                    let _ = f.jar.verify(f.now, &n.data, &[1; 32], ip, 7);
                }
            }
            Payload::TsI(ts) | Payload::TsR(ts) => {
                let got = narrow(&ts.selectors, &f.policy);
                for r in &got {
                    assert!(
                        ts.selectors.iter().any(|a| a.covers(r)),
                        "narrowed {r:?} not proposed"
                    );
                    assert!(
                        f.policy.iter().any(|b| b.covers(r)),
                        "narrowed {r:?} outside the policy"
                    );
                }
                for a in &ts.selectors {
                    let _ = a.is_empty();
                    for b in &f.policy {
                        if let Some(i) = a.intersect(b) {
                            assert!(a.covers(&i) && b.covers(&i), "{a:?} ∩ {b:?} = {i:?}");
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn proposals(f: &Fixed, sa: &SaPayload) {
    for p in &sa.proposals {
        let t = to_crypto(p);
        let _ = IkeProposal::from_transforms(&t).map(|x| x.transforms());
        let _ = EspProposal::from_transforms(&t).map(|x| x.transforms());
        let _ = p.transform_types();
    }
    if let Some(chosen) = sa.select(&f.ours) {
        assert!(
            sa.proposals.iter().any(|o| chosen.is_selection_of(o)),
            "select chose {chosen:?}, a selection of no offered proposal"
        );
    }
}

/// Seeds: the golden messages of `crates/ike/src/wire/golden_tests.rs` and of
/// docs/STRONGSWAN.md (strongSwan's IKE_SA_INIT request and its IKE_AUTH plaintext), and every
/// message of a real handshake, rekeys and an INFORMATIONAL between two of our endpoints
/// (their plaintexts too), as the seeds binary records them.
pub fn seeds(recorded: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let h = ike_peer::hex;
    let mut out = Vec::new();
    let mut ss_init = h(
        "6b746535ee7ef1ee 0000000000000000 21 20 22 08 00000000 00000108
        22000028 00000024 01010003 0300000c 01000014 800e0100 03000008 02000005 00000008 04000013
        28000048 0013 0000",
    );
    ss_init.extend(0u8..64);
    ss_init.extend(h("29000024"));
    ss_init.extend(0xa0u8..0xc0);
    ss_init.extend(h("2900001c 00004004"));
    ss_init.extend([0x5a; 20]);
    ss_init.extend(h(
        "2900001c 00004005 b3992a21fe0bd00aa307e67cb53596441e8b97cf
        29000008 0000402e   29000010 0000402f 0002000300040005   00000008 00004016",
    ));
    out.push((
        "strongswan_ike_sa_init_request".to_string(),
        [&[0u8][..], &ss_init].concat(),
    ));
    let mut ss_auth = h("29 00 00 0C 01 00 00 00 C0 00 02 01  24 00 00 08 00 00 40 00  27 00 00 0C 01 00 00 00 C0 00 02 02  21 00 00 28 02 00 00 00");
    ss_auth.extend([0x5a; 32]);
    ss_auth.extend(ike_peer::strongswan_auth_tail().1);
    out.push((
        "strongswan_ike_auth_plaintext".to_string(),
        [&[35u8][..], &ss_auth].concat(),
    ));
    for (name, bytes) in recorded {
        out.push((name.clone(), bytes.clone()));
    }
    out
}
