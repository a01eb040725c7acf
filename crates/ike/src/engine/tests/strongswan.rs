//! Against what strongSwan 5.9.8 puts on the wire (docs/STRONGSWAN.md): its captured
//! IKE_SA_INIT request answered by our responder, its IKE_AUTH plaintext layout accepted, and
//! our initiator driven by strongSwan-shaped responses. The other side's keys are computed here
//! with the crypto module directly, not by the engine.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::sim::*;
use crate::crypto::{
    nat_detection_hash, psk_auth, signed_octets, ChildSaKeys, DhGroup, IkeProposal, IkeSaKeys,
    PrfAlg, SeededRandom, SkCipher,
};
use crate::engine::{Endpoint, Event, Transmit};
use crate::wire::{
    decode_inner, ExchangeType, Flags, Header, Message, NotifyType, Payload, PayloadType,
    ProtocolId, SkPayload, Spi,
};

fn hex(s: &str) -> Vec<u8> {
    let d: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    d.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

const SPI_I: u64 = 0x6b74_6535_ee7e_f1ee;

/// The IKE_SA_INIT request of docs/STRONGSWAN.md, byte for byte where the document gives the
/// bytes; the KE value, nonce and the faked NAT_DETECTION_SOURCE_IP hash are ours (the KE value
/// a real P-256 point whose private key we keep).
fn strongswan_init_request(ke: &[u8], nonce: &[u8]) -> Vec<u8> {
    assert_eq!((ke.len(), nonce.len()), (64, 32));
    let mut m = hex("6b746535ee7ef1ee 0000000000000000 21 20 22 08 00000000 00000108");
    m.extend(hex(
        "22000028 00000024 01010003 0300000c 01000014 800e0100 03000008 02000005 00000008 04000013",
    ));
    m.extend(hex("28000048 0013 0000"));
    m.extend_from_slice(ke);
    m.extend(hex("29000024"));
    m.extend_from_slice(nonce);
    m.extend(hex("2900001c 00004004"));
    m.extend_from_slice(&[0x5a; 20]);
    m.extend(hex(
        "2900001c 00004005 b3992a21fe0bd00aa307e67cb53596441e8b97cf",
    ));
    m.extend(hex(
        "29000008 0000402e   29000010 0000402f 0002000300040005   00000008 00004016",
    ));
    m
}

fn responder_b() -> Endpoint {
    Endpoint::new(
        vec![config(B, A, false)],
        Box::new(SeededRandom::from_u64(1)),
        Instant::now(),
    )
}

fn transmits(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

/// Seals inner payloads into an SK message (as the peer would).
fn seal(sk: &mut SkCipher, header: Header, payloads: &[Payload]) -> Vec<u8> {
    let (first, plain) = crate::wire::encode_inner(payloads).unwrap();
    seal_plain(sk, header, first, &plain)
}

fn seal_plain(sk: &mut SkCipher, header: Header, first: PayloadType, plain: &[u8]) -> Vec<u8> {
    let mut out = SkPayload::message_prefix(&header, first, sk.sealed_len(plain.len())).unwrap();
    sk.seal_append(&mut out, plain, &mut SeededRandom::from_u64(9))
        .unwrap();
    out
}

fn open(sk: &SkCipher, data: &[u8]) -> (Header, Vec<Payload>) {
    let m = Message::decode(data).unwrap();
    let Some(Payload::Sk(s)) = m.payloads.last() else {
        panic!("no SK payload")
    };
    let (aad, body) = m.split_encrypted(data).unwrap();
    let plain = sk.open(aad, body).unwrap();
    (
        m.header,
        decode_inner(s.first_inner_payload, &plain).unwrap(),
    )
}

fn kinds(payloads: &[Payload]) -> Vec<String> {
    payloads
        .iter()
        .map(|p| match p {
            Payload::Notify(n) => format!("N({:?})", n.notify_type),
            other => format!("{:?}", other.payload_type()),
        })
        .collect()
}

#[test]
fn strongswan_nat_detection_hash_matches_the_capture() {
    // "the request's NATD_D is SHA1(SPIi | SPIr 0 | c0000202 | 01f4)"
    let h = nat_detection_hash(SPI_I, 0, SocketAddr::new(B, 500));
    assert_eq!(h.to_vec(), hex("b3992a21fe0bd00aa307e67cb53596441e8b97cf"));
}

#[test]
fn strongswan_init_request_is_answered_and_its_auth_accepted() {
    let mut rng = SeededRandom::from_u64(77);
    let (private, ke) = DhGroup::Ecp256.generate(&mut rng).unwrap();
    let ni: Vec<u8> = (0xa0u8..0xc0).collect();
    let request = strongswan_init_request(&ke, &ni);
    assert_eq!(request.len(), 264);
    // The codec reads it, and writes it back byte for byte.
    let m = Message::decode(&request).unwrap();
    assert_eq!(m.encode().unwrap(), request);
    assert_eq!(
        kinds(&m.payloads),
        [
            "SA",
            "KE",
            "NONCE",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "N(IKEV2_FRAGMENTATION_SUPPORTED)",
            "N(SIGNATURE_HASH_ALGORITHMS)",
            "N(REDIRECT_SUPPORTED)"
        ]
    );

    let mut b = responder_b();
    let (a500, b500) = (SocketAddr::new(A, 500), SocketAddr::new(B, 500));
    b.handle_datagram(Instant::now(), b500, a500, &request);
    let t = transmits(&mut b);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].local, t[0].remote), (b500, a500));
    let response = &t[0].data;
    let r = Message::decode(response).unwrap();
    assert_eq!(r.header.spi_i, SPI_I);
    assert_ne!(r.header.spi_r, 0);
    assert_eq!(r.header.exchange_type, ExchangeType::IKE_SA_INIT);
    assert_eq!(response[19], 0x20, "flags: Response only");
    assert_eq!(r.header.message_id, 0);
    assert_eq!(
        kinds(&r.payloads),
        [
            "SA",
            "KE",
            "NONCE",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)"
        ]
    );
    let (Some(Payload::Sa(sa)), Some(Payload::Sa(offered))) =
        (r.payload(PayloadType::SA), m.payload(PayloadType::SA))
    else {
        panic!()
    };
    assert_eq!(sa.proposals.len(), 1);
    assert_eq!(sa.proposals[0].number, 1);
    assert_eq!(sa.proposals[0].spi, Spi::None);
    assert!(sa.proposals[0].is_selection_of(&offered.proposals[0]));
    let Some(Payload::Ke(ke_r)) = r.payload(PayloadType::KE) else {
        panic!()
    };
    assert_eq!((ke_r.group.0, ke_r.data.len()), (19, 64));
    let Some(Payload::Nonce(nr)) = r.payload(PayloadType::NONCE) else {
        panic!()
    };
    assert_eq!(nr.len(), 32);
    // Our NAT_DETECTION_DESTINATION_IP is right (strongSwan checks it), the source one is not.
    let natd = r.notify(NotifyType::NAT_DETECTION_DESTINATION_IP).unwrap();
    assert_eq!(natd.data, nat_detection_hash(SPI_I, r.header.spi_r, a500));
    let nats = r.notify(NotifyType::NAT_DETECTION_SOURCE_IP).unwrap();
    assert_ne!(nats.data, nat_detection_hash(SPI_I, r.header.spi_r, b500));

    // Play strongSwan's IKE_AUTH (the plaintext layout of the document) on port 4500.
    let proposal = IkeProposal::parse("aes256gcm16-prfsha256-ecp256").unwrap();
    let g = DhGroup::Ecp256.shared(&private, &ke_r.data).unwrap();
    let spi_r = r.header.spi_r;
    let keys = IkeSaKeys::derive(&proposal, &g, &ni, nr, SPI_I, spi_r).unwrap();
    let mut sk_i = keys.initiator_sk().unwrap();
    let sk_r = keys.responder_sk().unwrap();
    let id_i = hex("01000000 c0000201");
    let octets = signed_octets(PrfAlg::HmacSha256, &request, nr, &keys.sk_pi, &id_i);
    let auth = psk_auth(PrfAlg::HmacSha256, b"correct horse battery staple", &octets);
    let mut plain = hex("29 00 00 0C 01 00 00 00 C0 00 02 01  24 00 00 08 00 00 40 00  27 00 00 0C 01 00 00 00 C0 00 02 02  21 00 00 28 02 00 00 00");
    plain.extend_from_slice(&auth);
    plain.extend(hex("2C 00 00 24 00 00 00 20 01 03 04 02 E1 72 D1 1F 03 00 00 0C 01 00 00 14 80 0E 01 00 00 00 00 08 05 00 00 00"));
    plain.extend(hex(
        "2D 00 00 18 01 00 00 00 07 00 00 10 00 00 FF FF 0A 01 00 00 0A 01 FF FF",
    ));
    plain.extend(hex(
        "29 00 00 18 01 00 00 00 07 00 00 10 00 00 FF FF 0A 03 00 00 0A 03 FF FF",
    ));
    plain.extend(hex(
        "29 00 00 08 00 00 40 14   29 00 00 08 00 00 40 21   00 00 00 08 00 00 40 24",
    ));
    assert_eq!(plain.len(), 180, "the document's 180 bytes");
    let inner = decode_inner(PayloadType::IDI, &plain).unwrap();
    assert_eq!(
        kinds(&inner),
        [
            "IDI",
            "N(INITIAL_CONTACT)",
            "IDR",
            "AUTH",
            "SA",
            "TSI",
            "TSR",
            "N(MULTIPLE_AUTH_SUPPORTED)",
            "N(NotifyType(16417))",
            "N(NotifyType(16420))"
        ]
    );
    let header = Header::new(
        SPI_I,
        spi_r,
        ExchangeType::IKE_AUTH,
        Flags {
            initiator: true,
            ..Flags::default()
        },
        1,
    );
    let auth_request = seal_plain(&mut sk_i, header, PayloadType::IDI, &plain);
    let (a4500, b4500) = (SocketAddr::new(A, 4500), SocketAddr::new(B, 4500));
    b.handle_datagram(Instant::now(), b4500, a4500, &auth_request);
    let t = transmits(&mut b);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].local, t[0].remote), (b4500, a4500));
    let (h, payloads) = open(&sk_r, &t[0].data);
    assert_eq!(h.message_id, 1);
    assert_eq!(t[0].data[19], 0x20);
    assert_eq!(kinds(&payloads), ["IDR", "AUTH", "SA", "TSI", "TSR"]);
    // Its AUTH verifies as strongSwan would check it.
    let Payload::IdR(id_r) = &payloads[0] else {
        panic!()
    };
    let Payload::Auth(auth_r) = &payloads[1] else {
        panic!()
    };
    let octets = signed_octets(PrfAlg::HmacSha256, response, &ni, &keys.sk_pr, &id_r.body());
    assert_eq!(
        auth_r.data,
        psk_auth(PrfAlg::HmacSha256, b"correct horse battery staple", &octets)
    );
    let Payload::Sa(child_sa) = &payloads[2] else {
        panic!()
    };
    let p = &child_sa.proposals[0];
    assert_eq!((p.number, p.protocol), (1, ProtocolId::ESP));
    let Spi::U32(b_spi) = p.spi else { panic!() };
    // B announced the pair, with the keys strongSwan derives.
    let ev = events(&mut b);
    assert!(matches!(ev[0], Event::IkeUp { peer: 0 }));
    let Event::ChildSaUp {
        inbound_spi,
        outbound_spi,
        inbound_keys,
        outbound_keys,
        remote,
        ..
    } = &ev[1]
    else {
        panic!("{ev:?}")
    };
    assert_eq!((*inbound_spi, *outbound_spi), (b_spi, 0xe172_d11f));
    assert_eq!(*remote, a4500);
    let esp = crate::crypto::EspProposal::parse("aes256gcm16").unwrap();
    let child = ChildSaKeys::derive(PrfAlg::HmacSha256, &keys.sk_d, &esp, None, &ni, nr).unwrap();
    assert_eq!(inbound_keys.encr, child.initiator_to_responder.encr);
    assert_eq!(outbound_keys.encr, child.responder_to_initiator.encr);
}

#[test]
fn strongswan_shaped_responses_drive_our_initiator() {
    let now = Instant::now();
    let mut a = Endpoint::new(
        vec![config(A, B, true)],
        Box::new(SeededRandom::from_u64(5)),
        now,
    );
    let t = transmits(&mut a);
    assert_eq!(t.len(), 1);
    let request = t[0].data.clone();
    let m = Message::decode(&request).unwrap();
    // The shape strongSwan sends too (minus the notifies we do not use).
    assert_eq!(
        kinds(&m.payloads),
        [
            "SA",
            "KE",
            "NONCE",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)"
        ]
    );
    assert_eq!(request[19], 0x08);
    let Some(Payload::Nonce(ni)) = m.payload(PayloadType::NONCE) else {
        panic!()
    };
    let Some(Payload::Ke(ke_i)) = m.payload(PayloadType::KE) else {
        panic!()
    };
    let spi_i = m.header.spi_i;

    // strongSwan's response: SA KE No N(NATD_S_IP) N(NATD_D_IP) N(FRAG_SUP) N(HASH_ALG)
    // N(CHDLESS_SUP) N(MULT_AUTH).
    let mut rng = SeededRandom::from_u64(6);
    let (private, ke_r) = DhGroup::Ecp256.generate(&mut rng).unwrap();
    let spi_r = 0x1122_3344_5566_7788u64;
    let nr: Vec<u8> = (0x40u8..0x60).collect();
    let mut resp = Header::new(
        spi_i,
        spi_r,
        ExchangeType::IKE_SA_INIT,
        Flags {
            response: true,
            ..Flags::default()
        },
        0,
    )
    .to_bytes()
    .to_vec();
    resp.extend(hex(
        "22000028 00000024 01010003 0300000c 01000014 800e0100 03000008 02000005 00000008 04000013",
    ));
    resp.extend(hex("28000048 0013 0000"));
    resp.extend_from_slice(&ke_r);
    resp.extend(hex("29000024"));
    resp.extend_from_slice(&nr);
    resp.extend(hex("2900001c 00004004"));
    resp.extend_from_slice(&[0x33; 20]);
    resp.extend(hex("2900001c 00004005"));
    resp.extend_from_slice(&nat_detection_hash(spi_i, spi_r, SocketAddr::new(A, 500)));
    resp.extend(hex("29000008 0000402e  29000010 0000402f 0002000300040005  29000008 00004022  00000008 00004014"));
    let len = (resp.len() as u32).to_be_bytes();
    resp[24..28].copy_from_slice(&len);
    resp[16] = 33; // Next Payload: SA
    a.handle_datagram(now, SocketAddr::new(A, 500), SocketAddr::new(B, 500), &resp);
    let t = transmits(&mut a);
    assert_eq!(t.len(), 1, "no IKE_AUTH request");
    assert_eq!(
        (t[0].local, t[0].remote),
        (SocketAddr::new(A, 4500), SocketAddr::new(B, 4500))
    );

    let proposal = IkeProposal::parse("aes256gcm16-prfsha256-ecp256").unwrap();
    let g = DhGroup::Ecp256.shared(&private, &ke_i.data).unwrap();
    let keys = IkeSaKeys::derive(&proposal, &g, ni, &nr, spi_i, spi_r).unwrap();
    let sk_i = keys.initiator_sk().unwrap();
    let mut sk_r = keys.responder_sk().unwrap();
    let (h, payloads) = open(&sk_i, &t[0].data);
    assert_eq!((h.message_id, h.exchange_type), (1, ExchangeType::IKE_AUTH));
    assert_eq!(
        kinds(&payloads),
        ["IDI", "N(INITIAL_CONTACT)", "AUTH", "SA", "TSI", "TSR"]
    );
    let Payload::IdI(id_i) = &payloads[0] else {
        panic!()
    };
    assert_eq!(id_i.body(), hex("01000000 c0000201"));
    let Payload::Auth(auth) = &payloads[2] else {
        panic!()
    };
    let octets = signed_octets(PrfAlg::HmacSha256, &request, &nr, &keys.sk_pi, &id_i.body());
    assert_eq!(
        auth.data,
        psk_auth(PrfAlg::HmacSha256, b"correct horse battery staple", &octets)
    );
    // ESP proposal as strongSwan sends it: ENCR 20 / 256 and ESN 0, no D-H.
    let Payload::Sa(sa) = &payloads[3] else {
        panic!()
    };
    let mut body = Vec::new();
    let encoded = Message {
        header: h,
        payloads: vec![Payload::Sa(sa.clone())],
    }
    .encode()
    .unwrap();
    body.extend_from_slice(&encoded[28 + 4..]);
    let Spi::U32(a_spi) = sa.proposals[0].spi else {
        panic!()
    };
    let mut expected = hex("00000020 01030402");
    expected.extend_from_slice(&a_spi.to_be_bytes());
    expected.extend(hex("0300000c 01000014 800e0100 00000008 05000000"));
    assert_eq!(body, expected);

    // strongSwan's response: IDr AUTH SA TSi TSr.
    let id_r = hex("01000000 c0000202");
    let octets = signed_octets(PrfAlg::HmacSha256, &resp, ni, &keys.sk_pr, &id_r);
    let auth_r = psk_auth(PrfAlg::HmacSha256, b"correct horse battery staple", &octets);
    let mut plain = hex("27 00 00 0C 01 00 00 00 C0 00 02 02  21 00 00 28 02 00 00 00");
    plain.extend_from_slice(&auth_r);
    plain.extend(hex("2C 00 00 24 00 00 00 20 01 03 04 02 C7 00 00 01 03 00 00 0C 01 00 00 14 80 0E 01 00 00 00 00 08 05 00 00 00"));
    plain.extend(hex(
        "2D 00 00 18 01 00 00 00 07 00 00 10 00 00 FF FF 0A 01 00 00 0A 01 FF FF",
    ));
    plain.extend(hex(
        "00 00 00 18 01 00 00 00 07 00 00 10 00 00 FF FF 0A 03 00 00 0A 03 FF FF",
    ));
    let header = Header::new(
        spi_i,
        spi_r,
        ExchangeType::IKE_AUTH,
        Flags {
            response: true,
            ..Flags::default()
        },
        1,
    );
    let auth_response = seal_plain(&mut sk_r, header, PayloadType::IDR, &plain);
    a.handle_datagram(
        now,
        SocketAddr::new(A, 4500),
        SocketAddr::new(B, 4500),
        &auth_response,
    );
    let ev = events(&mut a);
    assert!(matches!(ev[0], Event::IkeUp { peer: 0 }), "{ev:?}");
    let Event::ChildSaUp {
        inbound_spi,
        outbound_spi,
        ..
    } = &ev[1]
    else {
        panic!("{ev:?}")
    };
    assert_eq!((*inbound_spi, *outbound_spi), (a_spi, 0xc700_0001));

    // strongSwan's DPD: an empty INFORMATIONAL request, answered by an empty response.
    let header = Header::new(
        spi_i,
        spi_r,
        ExchangeType::INFORMATIONAL,
        Flags::default(),
        0,
    );
    let dpd = seal(&mut sk_r, header, &[]);
    a.handle_datagram(
        now + Duration::from_secs(10),
        SocketAddr::new(A, 4500),
        SocketAddr::new(B, 4500),
        &dpd,
    );
    let t = transmits(&mut a);
    assert_eq!(t.len(), 1);
    let (h, payloads) = open(&sk_i, &t[0].data);
    assert!(h.flags.response && h.flags.initiator);
    assert!(payloads.is_empty());
    // strongSwan's shutdown: INFORMATIONAL [ D(IKE) ].
    let header = Header::new(
        spi_i,
        spi_r,
        ExchangeType::INFORMATIONAL,
        Flags::default(),
        1,
    );
    let delete = seal(
        &mut sk_r,
        header,
        &[Payload::Delete(crate::wire::Delete {
            protocol: ProtocolId::IKE,
            spis: vec![],
        })],
    );
    a.handle_datagram(
        now + Duration::from_secs(11),
        SocketAddr::new(A, 4500),
        SocketAddr::new(B, 4500),
        &delete,
    );
    let ev = events(&mut a);
    assert!(matches!(ev[0], Event::ChildSaDown { .. }), "{ev:?}");
    assert!(matches!(ev[1], Event::IkeDown { .. }), "{ev:?}");
    assert_eq!(transmits(&mut a).len(), 1, "the response");
    // A initiates: it starts again at once.
    let at = a.poll_timeout().unwrap();
    assert!(at <= now + Duration::from_secs(11));
    a.handle_timeout(at);
    let t = transmits(&mut a);
    assert_eq!(
        Message::decode(&t[0].data).unwrap().header.exchange_type,
        ExchangeType::IKE_SA_INIT
    );
}
