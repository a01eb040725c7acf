//! Property tests: arbitrary typed messages survive encode -> decode unchanged, and decoding
//! arbitrary or mutated bytes never panics (and whatever decodes re-encodes to the same value).

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn spi() -> impl Strategy<Value = Spi> {
    prop_oneof![
        Just(Spi::None),
        any::<u32>().prop_map(Spi::U32),
        any::<u64>().prop_map(Spi::U64)
    ]
}

fn attribute() -> impl Strategy<Value = Attribute> {
    (
        0u16..0x8000,
        prop_oneof![
            any::<u16>().prop_map(AttributeValue::Tv),
            bytes(12).prop_map(AttributeValue::Tlv)
        ],
    )
        .prop_map(|(t, value)| Attribute {
            attribute_type: AttributeType(t),
            value,
        })
}

fn transform() -> impl Strategy<Value = Transform> {
    (any::<u8>(), any::<u16>(), vec(attribute(), 0..3)).prop_map(|(t, id, attributes)| Transform {
        transform_type: TransformType(t),
        id,
        attributes,
    })
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (any::<u8>(), any::<u8>(), spi(), vec(transform(), 0..6)).prop_map(
        |(number, protocol, spi, transforms)| Proposal {
            number,
            protocol: ProtocolId(protocol),
            spi,
            transforms,
        },
    )
}

fn address_range() -> impl Strategy<Value = AddressRange> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(s, e)| AddressRange::V4 {
            start: Ipv4Addr::from_bits(s),
            end: Ipv4Addr::from_bits(e)
        }),
        (any::<u128>(), any::<u128>()).prop_map(|(s, e)| AddressRange::V6 {
            start: Ipv6Addr::from_bits(s),
            end: Ipv6Addr::from_bits(e)
        }),
    ]
}

fn traffic_selector() -> impl Strategy<Value = TrafficSelector> {
    (any::<u8>(), any::<u16>(), any::<u16>(), address_range()).prop_map(
        |(ip_protocol, start_port, end_port, addresses)| TrafficSelector {
            ip_protocol,
            start_port,
            end_port,
            addresses,
        },
    )
}

fn ts_payload() -> impl Strategy<Value = TsPayload> {
    vec(traffic_selector(), 0..4).prop_map(|selectors| TsPayload { selectors })
}

fn id_payload() -> impl Strategy<Value = IdPayload> {
    (any::<u8>(), any::<[u8; 3]>(), bytes(40)).prop_map(|(t, reserved, data)| IdPayload {
        id_type: IdType(t),
        reserved,
        data,
    })
}

/// A raw payload that decodes back to itself: a type the codec does not model, with the
/// critical bit only where it is recognised (an unknown critical payload is an error).
fn raw_payload() -> impl Strategy<Value = RawPayload> {
    (1u8..=255, any::<bool>(), bytes(40))
        .prop_filter("modelled types decode to typed variants", |(t, _, _)| {
            !PayloadType(*t).is_modelled()
        })
        .prop_map(|(t, critical, body)| {
            let payload_type = PayloadType(t);
            RawPayload {
                payload_type,
                critical: critical && payload_type.is_recognised(),
                body,
            }
        })
}

/// Any payload except SK / SKF.
fn plain_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        vec(proposal(), 0..4).prop_map(|proposals| Payload::Sa(SaPayload { proposals })),
        (any::<u16>(), bytes(300)).prop_map(|(g, data)| Payload::Ke(KePayload {
            group: DhGroup(g),
            data
        })),
        id_payload().prop_map(Payload::IdI),
        id_payload().prop_map(Payload::IdR),
        (any::<u8>(), bytes(64)).prop_map(|(m, data)| Payload::Auth(AuthPayload {
            method: AuthMethod(m),
            data
        })),
        vec(any::<u8>(), NONCE_MIN_LEN..=NONCE_MAX_LEN).prop_map(Payload::Nonce),
        (any::<u8>(), spi(), any::<u16>(), bytes(40)).prop_map(
            |(p, spi, t, data)| Payload::Notify(Notify {
                protocol: ProtocolId(p),
                spi,
                notify_type: NotifyType(t),
                data
            })
        ),
        (any::<u8>(), vec(any::<u32>(), 0..5)).prop_map(|(p, spis)| Payload::Delete(Delete {
            protocol: ProtocolId(p),
            spis
        })),
        bytes(40).prop_map(Payload::VendorId),
        ts_payload().prop_map(Payload::TsI),
        ts_payload().prop_map(Payload::TsR),
        raw_payload().prop_map(Payload::Raw),
    ]
}

fn encrypted_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (any::<u8>(), bytes(200)).prop_map(|(t, body)| Payload::Sk(SkPayload {
            first_inner_payload: PayloadType(t),
            body
        })),
        (any::<u8>(), any::<u16>(), any::<u16>(), bytes(200)).prop_map(|(t, n, total, body)| {
            Payload::Skf(SkfPayload {
                first_inner_payload: PayloadType(t),
                fragment_number: n,
                total_fragments: total,
                body,
            })
        }),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u64>(),
        any::<u64>(),
        34u8..=37,
        any::<(bool, bool, bool)>(),
        any::<u32>(),
    )
        .prop_map(
            |(spi_i, spi_r, exchange, (initiator, version, response), message_id)| {
                Header::new(
                    spi_i,
                    spi_r,
                    ExchangeType(exchange),
                    Flags {
                        initiator,
                        version,
                        response,
                    },
                    message_id,
                )
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    (
        header(),
        vec(plain_payload(), 0..6),
        proptest::option::of(encrypted_payload()),
    )
        .prop_map(|(header, mut payloads, encrypted)| {
            payloads.extend(encrypted);
            Message { header, payloads }
        })
}

/// The header `decode` reports for an encoded message.
fn expected_header(m: &Message, encoded_len: usize) -> Header {
    Header {
        next_payload: m
            .payloads
            .first()
            .map_or(PayloadType::NONE, Payload::payload_type),
        length: u32::try_from(encoded_len).unwrap(),
        ..m.header
    }
}

/// If `bytes` decode, the message re-encodes and decodes to the same value.
fn check_stable(bytes: &[u8]) {
    if let Ok(m) = Message::decode(bytes) {
        let again = m.encode().expect("a decoded message encodes");
        let m2 = Message::decode(&again).expect("a re-encoded message decodes");
        assert_eq!(m2, m);
        assert_eq!(again.len(), bytes.len());
        if let Some((prefix, body)) = m.split_encrypted(bytes) {
            assert_eq!(prefix.len() + body.len(), bytes.len());
        }
    }
}

/// A mutation of a byte string: replace, insert, remove or truncate.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation], fix_length: bool) {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Set(i, b) if len > 0 => bytes[i % len] = b,
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Remove(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
            _ => {}
        }
    }
    if fix_length && bytes.len() >= HEADER_LEN {
        let len = u32::try_from(bytes.len()).unwrap().to_be_bytes();
        bytes[24..28].copy_from_slice(&len);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn message_round_trip(m in message()) {
        let bytes = m.encode().unwrap();
        let decoded = Message::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded.payloads, &m.payloads);
        prop_assert_eq!(decoded.header, expected_header(&m, bytes.len()));
        prop_assert_eq!(decoded.encode().unwrap(), bytes);
    }

    #[test]
    fn inner_round_trip(payloads in vec(plain_payload(), 0..8)) {
        let (first, plain) = encode_inner(&payloads).unwrap();
        prop_assert_eq!(decode_inner(first, &plain).unwrap(), payloads);
    }

    #[test]
    fn sk_prefix_matches_encode(h in header(), first in any::<u8>(), body in bytes(300)) {
        let sk = SkPayload { first_inner_payload: PayloadType(first), body: body.clone() };
        let m = Message { header: h, payloads: vec![Payload::Sk(sk)] };
        let encoded = m.encode().unwrap();
        let mut built = SkPayload::message_prefix(&h, PayloadType(first), body.len()).unwrap();
        prop_assert_eq!(&built[..], &encoded[..HEADER_LEN + SK_HEADER_LEN]);
        built.extend_from_slice(&body);
        prop_assert_eq!(&built, &encoded);
        let decoded = Message::decode(&encoded).unwrap();
        prop_assert_eq!(decoded.split_encrypted(&encoded), Some((&encoded[..32], &body[..])));
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in bytes(600)) {
        check_stable(&bytes);
        let _ = Header::peek(&bytes);
        for first in [PayloadType::SA, PayloadType::NOTIFY, PayloadType::TSI, PayloadType(bytes.first().copied().unwrap_or(0))] {
            if let Ok(payloads) = decode_inner(first, &bytes) {
                let (f, plain) = encode_inner(&payloads).unwrap();
                prop_assert_eq!(decode_inner(f, &plain).unwrap(), payloads);
            }
        }
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bodies(h in header(), next in any::<u8>(), body in bytes(600)) {
        // A valid header in front of random payload bytes, so that decoding gets past it.
        let mut bytes = Header { next_payload: PayloadType(next), length: 0, ..h }.to_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let len = u32::try_from(bytes.len()).unwrap().to_be_bytes();
        bytes[24..28].copy_from_slice(&len);
        check_stable(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_messages(
        m in message(),
        mutations in vec(mutation(), 1..6),
        fix_length in any::<bool>(),
    ) {
        let mut bytes = m.encode().unwrap();
        mutate(&mut bytes, &mutations, fix_length);
        check_stable(&bytes);
    }

    #[test]
    fn decode_inner_never_panics_on_mutated_plaintext(
        payloads in vec(plain_payload(), 1..6),
        mutations in vec(mutation(), 1..6),
    ) {
        let (first, mut plain) = encode_inner(&payloads).unwrap();
        mutate(&mut plain, &mutations, false);
        if let Ok(decoded) = decode_inner(first, &plain) {
            let (f, again) = encode_inner(&decoded).unwrap();
            prop_assert_eq!(decode_inner(f, &again).unwrap(), decoded);
        }
    }

    #[test]
    fn intersection_is_covered_by_both(a in traffic_selector(), b in traffic_selector()) {
        if let Some(i) = a.intersect(&b) {
            prop_assert!(!i.is_empty());
            prop_assert!(a.covers(&i), "{a:?} does not cover {i:?}");
            prop_assert!(b.covers(&i), "{b:?} does not cover {i:?}");
            prop_assert_eq!(b.intersect(&a), Some(i));
        } else {
            prop_assert!(a.is_empty() || b.is_empty() || !(a.covers(&b) || b.covers(&a)));
        }
        if !a.is_empty() {
            prop_assert_eq!(a.intersect(&a), Some(a));
            prop_assert!(a.covers(&a));
        }
    }

    #[test]
    fn contains_agrees_with_covers(ts in traffic_selector(), proto in any::<u8>(), port in proptest::option::of(any::<u16>())) {
        // A single packet, written as a selector (no port: OPAQUE), is contained exactly when
        // it is covered.
        let addr = match ts.addresses {
            AddressRange::V4 { start, .. } => start.into(),
            AddressRange::V6 { end, .. } => end.into(),
        };
        let (start_port, end_port) = port.map_or((u16::MAX, 0), |p| (p, p));
        let packet = TrafficSelector { ip_protocol: proto, start_port, end_port, addresses: AddressRange::host(addr) };
        prop_assert_eq!(ts.contains(proto, addr, port), ts.covers(&packet));
    }
}
