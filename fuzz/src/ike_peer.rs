//! Targets `ike_responder` and `ike_initiator`: an `Endpoint` (the target, at 192.0.2.2, one
//! configured peer) driven by a scripted peer (this harness, at 192.0.2.1) that speaks IKEv2
//! with real keys: it makes IKE_SA_INIT messages, derives the IKE SA's keys from the target's
//! KE payload with the crypto module (as `engine/tests/strongswan.rs` plays strongSwan), and
//! seals whatever plaintext the fuzzer wrote into SK payloads the target can open. So the
//! fuzzer reaches IKE_AUTH (with a correct AUTH, or not), CREATE_CHILD_SA, INFORMATIONAL,
//! retransmissions, timers, cookies and reloads, not only the ICV check.
//!
//! Input: a byte choosing the target's configuration ([`config`]), then records until the input
//! ends: an op byte (mod 10) and a frame (u16 length, bytes) of arguments:
//!
//! 0. raw datagram to port 500; 1. raw datagram to port 4500; 2. raw datagram to 4500 with
//!    the current IKE SA's SPIs and a correct Length written into it.
//! 3. IKE_SA_INIT: as the responder's peer, a request (flags, then raw extra payloads); as the
//!    initiator's peer, the response to the target's last request (flags, proposal, extras).
//! 4. IKE_AUTH: the request (responder) or the response (initiator), with IDs and a correct
//!    AUTH (unless flags say otherwise) followed by the fuzzer's payload chain (SA TSi TSr ...),
//!    or a default one from the configuration when the frame has no chain.
//! 5. a protected request of the fuzzer's (exchange, flags, message ID offset, first payload
//!    type, plaintext chain).
//! 6. a protected response to the target's last request (flags, first payload type, chain).
//! 7. time passes (u16: milliseconds, or seconds with bit 15); due timers fire in order.
//! 8. one of the harness's datagrams again.
//! 9. API calls: child_alive, child_bytes, set_half_open_limit, remove and re-add the peer,
//!    close_all, set_retransmission, status.
//!
//! Checked beyond "no panic": every datagram the target sends decodes, and its protected
//! messages on the IKE SA the harness knows open with the derived keys and decode; the events
//! keep their contract (IkeUp/IkeDown alternate; ChildSaUp only while up, never twice for an
//! SPI; ChildSaDown only for an announced pair; nothing up after IkeDown, remove_peer or
//! close_all); a timer that fired is not due again at the same instant.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use causeway_ike::crypto::{
    self, nat_detection_hash, psk_auth, signed_octets, DhPrivate, EspProposal, IkeProposal,
    IkeSaKeys, PrfAlg, Random, SecretBytes, SeededRandom, SkCipher,
};
use causeway_ike::engine::{Endpoint, Event, PeerConfig, Transmit, IKE_PORT, NATT_PORT};
use causeway_ike::wire::{
    decode_inner, encode_inner, AuthMethod, AuthPayload, Delete, ExchangeType, Flags, Header,
    IdPayload, KePayload, Message, Notify, NotifyType, Payload, PayloadType, Proposal, ProtocolId,
    SaPayload, SkPayload, Spi, TrafficSelector, TsPayload, HEADER_LEN,
};

use crate::input::{Input, Seed};

/// The harness (the target's peer).
pub const H: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// The target.
pub const T: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
pub const PSK: &[u8] = b"correct horse battery staple";

fn ts(prefix: &str) -> TrafficSelector {
    let (a, l) = prefix.split_once('/').unwrap();
    TrafficSelector::from_prefix(a.parse().unwrap(), l.parse().unwrap()).unwrap()
}

/// The target's configuration, by variant: the lab's proposals; AES-CBC with ECP-384; two
/// proposals each with PFS groups (Curve25519 / ECP-256); named identities and short lifetimes
/// (rekeys, byte lifetimes and DPD within seconds of simulated time).
pub fn config(variant: u8, initiate: bool) -> PeerConfig {
    let (ike, esp, ids, short) = match variant % 4 {
        0 => ("aes256gcm16-prfsha256-ecp256", "aes256gcm16", false, false),
        1 => ("aes128-sha256-ecp384", "aes128-sha256", false, false),
        2 => (
            "aes128gcm16-prfsha384-curve25519,aes256-sha384-ecp256",
            "aes128gcm16-curve25519,aes256-sha256-ecp256",
            false,
            true,
        ),
        _ => ("aes256gcm16-prfsha256-ecp256", "aes256gcm16", true, true),
    };
    let secs = Duration::from_secs;
    PeerConfig {
        name: "fuzz-peer".into(),
        local: T,
        remote: H,
        psk: SecretBytes::from_slice(PSK),
        local_id: ids.then(|| "gw.example.net".into()),
        remote_id: ids.then(|| "peer@example.net".into()),
        ike_proposals: ike
            .split(',')
            .map(|p| IkeProposal::parse(p).unwrap())
            .collect(),
        esp_proposals: esp
            .split(',')
            .map(|p| EspProposal::parse(p).unwrap())
            .collect(),
        local_ts: vec![ts("10.3.0.0/16")],
        remote_ts: vec![ts("10.1.0.0/16")],
        initiate,
        ike_lifetime: if short { secs(120) } else { secs(28_800) },
        child_lifetime: if short { secs(60) } else { secs(27_000) },
        child_lifetime_bytes: if short { 1_000_000 } else { 0 },
        dpd_timeout: if short { secs(10) } else { secs(45) },
    }
}

/// A crypto transform as the wire carries it.
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

fn from_wire(p: &Proposal) -> Vec<crypto::Transform> {
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

fn ike_proposal(number: u8, p: &IkeProposal, spi: Spi) -> Proposal {
    Proposal {
        number,
        protocol: ProtocolId::IKE,
        spi,
        transforms: p.transforms().iter().map(to_wire).collect(),
    }
}

fn esp_proposal(number: u8, p: &EspProposal, spi: u32) -> Proposal {
    Proposal {
        number,
        protocol: ProtocolId::ESP,
        spi: Spi::U32(spi),
        transforms: p.transforms().iter().map(to_wire).collect(),
    }
}

/// Encodes `payloads` as a chain followed by a raw tail `(type of its first payload, bytes)`:
/// the last payload's Next Payload names the tail. Returns the first type and the bytes.
pub fn chain(payloads: &[Payload], tail: Option<(u8, &[u8])>) -> (PayloadType, Vec<u8>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    for p in payloads {
        let (_, b) = encode_inner(std::slice::from_ref(p)).expect("encodable payload");
        starts.push(out.len());
        out.extend_from_slice(&b);
    }
    for (i, &at) in starts.iter().enumerate() {
        out[at] = match payloads.get(i + 1) {
            Some(p) => p.payload_type().0,
            None => tail.map_or(0, |t| t.0),
        };
    }
    if let Some((_, t)) = tail {
        out.extend_from_slice(t);
    }
    let first = payloads
        .first()
        .map(Payload::payload_type)
        .or(tail.map(|t| PayloadType(t.0)))
        .unwrap_or(PayloadType::NONE);
    (first, out)
}

/// An unprotected message: header (Next Payload and Length filled in) and a chain.
fn unprotected(header: Header, first: PayloadType, chain: &[u8]) -> Vec<u8> {
    let h = Header {
        next_payload: first,
        length: (HEADER_LEN + chain.len()) as u32,
        ..header
    };
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(chain);
    out
}

/// Raw extra payloads from the fuzzer: (type u8, body frame) pairs, as a tail for [`chain`].
fn extras(input: &mut Input) -> Option<(u8, Vec<u8>)> {
    let mut items: Vec<(u8, &[u8])> = Vec::new();
    while !input.is_empty() && items.len() < 16 {
        let t = input.u8();
        items.push((t, input.frame()));
    }
    let (first, _) = *items.first()?;
    let mut out = Vec::new();
    for (i, (_, body)) in items.iter().enumerate() {
        let next = items.get(i + 1).map_or(0, |n| n.0);
        out.extend_from_slice(&[next, 0]);
        out.extend_from_slice(&((4 + body.len()).min(0xffff) as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    Some((first, out))
}

/// The harness's view of the IKE SA it set up with the target.
struct Sa {
    spi_i: u64,
    spi_r: u64,
    prf: PrfAlg,
    keys: IkeSaKeys,
    sk_i: SkCipher,
    sk_r: SkCipher,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// The IKE_SA_INIT message the harness sent (request or response): its AUTH signs it.
    our_init: Vec<u8>,
    /// Message ID of the harness's next request.
    next_id: u32,
}

/// The event contract of `engine/mod.rs`, checked as events arrive.
#[derive(Default)]
struct Events {
    /// IkeUp and ChildSaUp events so far (for the tests of the harness).
    ike_ups: usize,
    child_ups: usize,
    up: bool,
    /// Announced Child SA pairs: inbound SPI -> outbound SPI.
    live: BTreeMap<u32, u32>,
}

impl Events {
    fn on(&mut self, e: &Event) {
        match e {
            Event::IkeUp { peer } => {
                assert_eq!(*peer, 0);
                assert!(!self.up, "IkeUp twice in a row");
                self.up = true;
                self.ike_ups += 1;
            }
            Event::IkeDown { peer, .. } => {
                assert_eq!(*peer, 0);
                assert!(self.up, "IkeDown without IkeUp");
                assert!(
                    self.live.is_empty(),
                    "IkeDown with Child SAs still up: {:x?}",
                    self.live
                );
                self.up = false;
            }
            Event::ChildSaUp {
                inbound_spi,
                outbound_spi,
                ..
            } => {
                assert!(self.up, "ChildSaUp before IkeUp");
                self.child_ups += 1;
                assert!(
                    self.live.insert(*inbound_spi, *outbound_spi).is_none(),
                    "SA {inbound_spi:#x} announced twice"
                );
            }
            Event::ChildSaDown {
                inbound_spi,
                outbound_spi,
                ..
            } => {
                assert_eq!(
                    self.live.remove(inbound_spi),
                    Some(*outbound_spi),
                    "ChildSaDown {inbound_spi:#x}/{outbound_spi:#x} of a pair never announced"
                );
            }
            Event::Error { peer, .. } => assert_eq!(*peer, 0),
        }
    }

    fn assert_all_down(&self, what: &str) {
        assert!(
            !self.up && self.live.is_empty(),
            "after {what}: up {} live {:x?}",
            self.up,
            self.live
        );
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The target responds: the harness initiates.
    Responder,
    /// The target initiates: the harness responds.
    Initiator,
}

struct Harness {
    role: Role,
    config: PeerConfig,
    ep: Endpoint,
    now: Instant,
    rng: SeededRandom,
    sa: Option<Sa>,
    /// Earlier key sets for the same SPIs as `sa` (an IKE_SA_INIT answered twice with the same
    /// SPIs: the target keeps whichever exchange it completed).
    alternatives: Vec<Sa>,
    /// Datagrams the harness sent: (to port, bytes).
    sent: Vec<(u16, Vec<u8>)>,
    /// The target's latest IKE_SA_INIT request (initiator role).
    their_init: Option<Vec<u8>>,
    /// The target's latest request on the SA, decrypted: header and payloads.
    their_request: Option<(Header, Vec<Payload>)>,
    /// A cookie the target asked for (responder role).
    cookie: Option<Vec<u8>>,
    /// The DH group the target asked for with INVALID_KE_PAYLOAD.
    group_hint: Option<u16>,
    /// Our last IKE_SA_INIT request (responder role): SPIi, Ni, its bytes.
    our_request: Option<(u64, Vec<u8>, Vec<u8>)>,
    spis: u64,
    events: Events,
    closed: bool,
    /// When recording seeds: every message on the wire, and the target's plaintexts, each
    /// behind a byte naming its first payload (the `ike_payloads` input layout).
    log: Option<Vec<Vec<u8>>>,
}

thread_local! {
    /// The harness's DH key pairs, one per group: generated once (the target's are fresh).
    static KEYS: std::cell::RefCell<BTreeMap<u16, DhPrivate>> = const { std::cell::RefCell::new(BTreeMap::new()) };
    static BASE: Instant = Instant::now();
}

fn with_key<R>(group: crypto::DhGroup, f: impl FnOnce(&DhPrivate) -> R) -> R {
    KEYS.with(|k| {
        let mut k = k.borrow_mut();
        let key = k.entry(group.id()).or_insert_with(|| {
            let mut rng = SeededRandom::from_u64(u64::from(group.id()));
            group.generate(&mut rng).expect("DH key").0
        });
        f(key)
    })
}

impl Harness {
    fn new(role: Role, variant: u8) -> Harness {
        let now = BASE.with(|b| *b);
        let config = config(variant, role == Role::Initiator);
        let ep = Endpoint::new(
            vec![config.clone()],
            Box::new(SeededRandom::from_u64(1)),
            now,
        );
        let mut h = Harness {
            role,
            config,
            ep,
            now,
            rng: SeededRandom::from_u64(2),
            sa: None,
            alternatives: Vec::new(),
            sent: Vec::new(),
            their_init: None,
            their_request: None,
            cookie: None,
            group_hint: None,
            our_request: None,
            spis: 0x7100_0000_0000_0000,
            events: Events::default(),
            closed: false,
            log: None,
        };
        h.pump();
        h
    }

    fn addr(ip: IpAddr, port: u16) -> SocketAddr {
        SocketAddr::new(ip, port)
    }

    /// Sends a datagram to the target's port (the caller strips no marker: `data` is the IKE
    /// message), then drains and checks what the target does.
    fn send(&mut self, port: u16, data: Vec<u8>) {
        self.ep
            .handle_datagram(self.now, Self::addr(T, port), Self::addr(H, port), &data);
        if let Some(log) = &mut self.log {
            log.push([&[0u8][..], &data].concat());
        }
        if self.sent.len() < 64 {
            self.sent.push((port, data));
        }
        self.pump();
    }

    fn pump(&mut self) {
        while let Some(e) = self.ep.poll_event() {
            self.events.on(&e);
        }
        while let Some(t) = self.ep.poll_transmit() {
            self.received(t);
        }
    }

    /// A datagram from the target: decode it, learn from it, check it.
    fn received(&mut self, t: Transmit) {
        assert_eq!(t.local.ip(), T, "sent from a foreign address");
        assert_eq!(t.remote.ip(), H, "sent to a foreign address");
        assert!(
            [IKE_PORT, NATT_PORT].contains(&t.local.port()),
            "sent from port {}",
            t.local.port()
        );
        let m = Message::decode(&t.data)
            .unwrap_or_else(|e| panic!("the target sent a message that does not decode: {e:?}"));
        if let Some(log) = &mut self.log {
            log.push([&[0u8][..], &t.data].concat());
        }
        let h = m.header;
        if h.exchange_type == ExchangeType::IKE_SA_INIT {
            match (self.role, h.flags.response) {
                (Role::Initiator, false) => self.their_init = Some(t.data),
                (Role::Responder, true) => self.init_response(&m, &t.data),
                _ => {}
            }
            return;
        }
        let Some(sa) = &self.sa else { return };
        if (h.spi_i, h.spi_r) != (sa.spi_i, sa.spi_r) {
            return;
        }
        let Some(Payload::Sk(sk)) = m.payloads.last() else {
            return;
        };
        let (aad, body) = m.split_encrypted(&t.data).expect("SK at the end");
        // The target seals with its own direction's key, of one of the exchanges that made
        // these SPIs; that one is the SA from now on.
        let role = self.role;
        let open = |sa: &Sa| {
            let theirs = if role == Role::Responder {
                &sa.sk_r
            } else {
                &sa.sk_i
            };
            theirs.open(aad, body).ok()
        };
        let plain = match open(sa) {
            Some(p) => p,
            None => {
                let i = self
                    .alternatives
                    .iter()
                    .position(|a| open(a).is_some())
                    .unwrap_or_else(|| panic!("the target's protected message does not open with the keys of any exchange: {h:?}"));
                let alt = self.alternatives.remove(i);
                let p = open(&alt).unwrap();
                self.sa = Some(alt);
                p
            }
        };
        self.alternatives.clear();
        let sa = self.sa.as_mut().unwrap();
        let payloads = decode_inner(sk.first_inner_payload, &plain)
            .unwrap_or_else(|e| panic!("the target's plaintext does not decode: {e:?}"));
        if let Some(log) = &mut self.log {
            log.push([&[sk.first_inner_payload.0][..], &plain].concat());
        }
        if h.flags.response {
            if h.message_id == sa.next_id {
                sa.next_id = sa.next_id.wrapping_add(1);
            }
        } else {
            self.their_request = Some((h, payloads));
        }
    }

    /// Responder role: the target answered our IKE_SA_INIT request.
    fn init_response(&mut self, m: &Message, data: &[u8]) {
        let Some((spi_i, ni, request)) = self.our_request.clone() else {
            return;
        };
        if m.header.spi_i != spi_i {
            return;
        }
        if let Some(n) = m.notify(NotifyType::COOKIE) {
            self.cookie = Some(n.data.clone());
            return;
        }
        if let Some(g) = m
            .notify(NotifyType::INVALID_KE_PAYLOAD)
            .and_then(Notify::invalid_ke_group)
        {
            self.group_hint = Some(g.0);
            return;
        }
        let (Some(Payload::Sa(sa)), Some(Payload::Ke(ke)), Some(Payload::Nonce(nr))) = (
            m.payload(PayloadType::SA),
            m.payload(PayloadType::KE),
            m.payload(PayloadType::NONCE),
        ) else {
            return;
        };
        let chosen = sa.proposals.first().expect("a chosen proposal");
        let proposal = IkeProposal::from_transforms(&from_wire(chosen))
            .expect("the target chose a proposal it cannot use");
        let Some(group) = crypto::DhGroup::from_id(ke.group.0) else {
            return;
        };
        let Ok(g) = with_key(group, |k| group.shared(k, &ke.data)) else {
            return;
        };
        let spi_r = m.header.spi_r;
        let keys = IkeSaKeys::derive(&proposal, &g, &ni, nr, spi_i, spi_r).expect("keys");
        let sk_i = keys.initiator_sk().expect("SK_i");
        let sk_r = keys.responder_sk().expect("SK_r");
        self.install(Sa {
            spi_i,
            spi_r,
            prf: proposal.prf,
            keys,
            sk_i,
            sk_r,
            ni,
            nr: nr.clone(),
            our_init: request,
            next_id: 1,
        });
        let _ = data;
    }

    /// Makes `sa` the current SA; one with the same SPIs stays a candidate.
    fn install(&mut self, sa: Sa) {
        match self.sa.replace(sa) {
            Some(old)
                if (old.spi_i, old.spi_r)
                    == (
                        self.sa.as_ref().unwrap().spi_i,
                        self.sa.as_ref().unwrap().spi_r,
                    ) =>
            {
                self.alternatives.push(old);
            }
            _ => self.alternatives.clear(),
        }
    }

    fn fresh_spi(&mut self) -> u64 {
        self.spis = self.spis.wrapping_add(0x1_0000_0001);
        self.spis
    }

    fn nonce(&mut self, len: usize) -> Vec<u8> {
        let mut n = vec![0u8; len];
        self.rng.fill(&mut n);
        n
    }

    /// Our identity as the target expects it.
    fn our_id(&self) -> IdPayload {
        match &self.config.remote_id {
            Some(id) => IdPayload::rfc822(id),
            None => IdPayload::ip(H),
        }
    }

    fn their_id(&self) -> IdPayload {
        match &self.config.local_id {
            Some(id) => IdPayload::fqdn(id),
            None => IdPayload::ip(T),
        }
    }

    /// Seals a protected message on the SA with our direction's key (or, `wrong_key`, theirs).
    fn seal(
        &mut self,
        header: Header,
        first: PayloadType,
        plain: &[u8],
        wrong_key: bool,
    ) -> Option<Vec<u8>> {
        let role = self.role;
        let sa = self.sa.as_mut()?;
        let ours_is_i = (role == Role::Responder) != wrong_key;
        let sk = if ours_is_i {
            &mut sa.sk_i
        } else {
            &mut sa.sk_r
        };
        let mut out = SkPayload::message_prefix(&header, first, sk.sealed_len(plain.len())).ok()?;
        sk.seal_append(&mut out, plain, &mut self.rng).ok()?;
        Some(out)
    }

    fn sa_header(&self, exchange: ExchangeType, response: bool, message_id: u32) -> Option<Header> {
        let sa = self.sa.as_ref()?;
        Some(Header::new(
            sa.spi_i,
            sa.spi_r,
            exchange,
            Flags {
                initiator: self.role == Role::Responder,
                version: false,
                response,
            },
            message_id,
        ))
    }

    // ----- op 3 -----

    /// Responder role: an IKE_SA_INIT request. Frame: flags u8 (bit 0: a KE of another group
    /// than the first proposal's; bit 1: leave the cookie out; bit 2: offer every proposal of
    /// the configuration, not only the first; bit 3: the same SPIi as the last request;
    /// bit 4: a 16-byte nonce), then extra payloads.
    fn init_request(&mut self, mut f: Input) {
        let flags = f.u8();
        let proposals: Vec<IkeProposal> = if flags & 4 != 0 {
            self.config.ike_proposals.clone()
        } else {
            self.config.ike_proposals[..1].to_vec()
        };
        let mut group = proposals[0].dh;
        if let Some(g) = self.group_hint.and_then(crypto::DhGroup::from_id) {
            group = g;
        }
        if flags & 1 != 0 {
            group = match group {
                crypto::DhGroup::Ecp256 => crypto::DhGroup::Curve25519,
                _ => crypto::DhGroup::Ecp256,
            };
        }
        // A retry with a cookie repeats SPIi and Ni (the cookie is bound to them, RFC 7296
        // 2.6); bit 3 repeats them anyway.
        let with_cookie = self.cookie.is_some() && flags & 2 == 0;
        let (spi_i, ni) = match (&self.our_request, with_cookie || flags & 8 != 0) {
            (Some((spi, ni, _)), true) => (*spi, ni.clone()),
            _ => (
                self.fresh_spi(),
                self.nonce(if flags & 0x10 != 0 { 16 } else { 32 }),
            ),
        };
        let ke = with_key(group, |k| k.public_value().to_vec());
        let mut payloads = Vec::new();
        if let (Some(c), true) = (&self.cookie, with_cookie) {
            payloads.push(Payload::Notify(Notify::with_data(
                NotifyType::COOKIE,
                c.clone(),
            )));
        }
        payloads.push(Payload::Sa(SaPayload {
            proposals: proposals
                .iter()
                .enumerate()
                .map(|(i, p)| ike_proposal(i as u8 + 1, p, Spi::None))
                .collect(),
        }));
        payloads.push(Payload::Ke(KePayload {
            group: causeway_ike::wire::DhGroup(group.id()),
            data: ke,
        }));
        payloads.push(Payload::Nonce(ni.clone()));
        payloads.push(Payload::Notify(Notify::with_data(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            nat_detection_hash(spi_i, 0, Self::addr(H, IKE_PORT)).to_vec(),
        )));
        payloads.push(Payload::Notify(Notify::with_data(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            nat_detection_hash(spi_i, 0, Self::addr(T, IKE_PORT)).to_vec(),
        )));
        let tail = extras(&mut f);
        let (first, body) = chain(&payloads, tail.as_ref().map(|(t, b)| (*t, &b[..])));
        let header = Header::new(
            spi_i,
            0,
            ExchangeType::IKE_SA_INIT,
            Flags {
                initiator: true,
                ..Flags::default()
            },
            0,
        );
        let msg = unprotected(header, first, &body);
        self.our_request = Some((spi_i, ni, msg.clone()));
        self.send(IKE_PORT, msg);
    }

    /// Initiator role: the response to the target's last IKE_SA_INIT request. Frame: flags u8
    /// (bit 0: INVALID_KE_PAYLOAD naming group u16 from the frame; bit 1: a COOKIE (the rest of
    /// the frame); bit 2: NO_PROPOSAL_CHOSEN; bit 3: the responder SPI of the last response;
    /// bit 4: the proposal at the index even if its group is not the KE payload's), proposal
    /// index u8, then extra payloads.
    fn init_answer(&mut self, mut f: Input) {
        let Some(req) = self.their_init.clone() else {
            return;
        };
        let Ok(m) = Message::decode(&req) else { return };
        let flags = f.u8();
        let pick = usize::from(f.u8());
        let h = Header::response_to(&m.header);
        if flags & 7 != 0 {
            let n = if flags & 1 != 0 {
                Notify::with_data(NotifyType::INVALID_KE_PAYLOAD, f.u16().to_be_bytes())
            } else if flags & 2 != 0 {
                Notify::with_data(NotifyType::COOKIE, f.rest())
            } else {
                Notify::new(NotifyType::NO_PROPOSAL_CHOSEN)
            };
            let (first, body) = chain(&[Payload::Notify(n)], None);
            self.send(IKE_PORT, unprotected(h, first, &body));
            return;
        }
        let (Some(Payload::Sa(offer)), Some(Payload::Ke(ke)), Some(Payload::Nonce(ni))) = (
            m.payload(PayloadType::SA),
            m.payload(PayloadType::KE),
            m.payload(PayloadType::NONCE),
        ) else {
            return;
        };
        if offer.proposals.is_empty() {
            return;
        }
        // The proposal at `pick`, or (unless bit 4) the first from there whose group is the
        // KE payload's, as a responder picks.
        let n = offer.proposals.len();
        let usable = |i: usize| {
            let p = &offer.proposals[(pick + i) % n];
            IkeProposal::from_transforms(&from_wire(p))
                .ok()
                .map(|c| (p, c))
        };
        let found = (0..n)
            .filter_map(usable)
            .find(|(_, c)| flags & 0x10 != 0 || c.dh.id() == ke.group.0)
            .or_else(|| usable(0));
        let Some((chosen, proposal)) = found else {
            return;
        };
        let spi_r = match (&self.sa, flags & 8 != 0) {
            (Some(sa), true) => sa.spi_r,
            _ => self.fresh_spi(),
        };
        let spi_i = m.header.spi_i;
        let nr = self.nonce(32);
        let group = proposal.dh;
        let our_ke = with_key(group, |k| k.public_value().to_vec());
        let payloads = vec![
            Payload::Sa(SaPayload {
                proposals: vec![ike_proposal(chosen.number, &proposal, Spi::None)],
            }),
            Payload::Ke(KePayload {
                group: causeway_ike::wire::DhGroup(group.id()),
                data: our_ke,
            }),
            Payload::Nonce(nr.clone()),
            Payload::Notify(Notify::with_data(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                self.nonce(20),
            )),
            Payload::Notify(Notify::with_data(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                nat_detection_hash(spi_i, spi_r, Self::addr(T, IKE_PORT)).to_vec(),
            )),
        ];
        let tail = extras(&mut f);
        let (first, body) = chain(&payloads, tail.as_ref().map(|(t, b)| (*t, &b[..])));
        let resp = unprotected(Header { spi_r, ..h }, first, &body);
        // Keys, when the target's KE is of the chosen group.
        if ke.group.0 == group.id() {
            if let Ok(g) = with_key(group, |k| group.shared(k, &ke.data)) {
                let keys = IkeSaKeys::derive(&proposal, &g, ni, &nr, spi_i, spi_r).expect("keys");
                let sk_i = keys.initiator_sk().expect("SK_i");
                let sk_r = keys.responder_sk().expect("SK_r");
                self.install(Sa {
                    spi_i,
                    spi_r,
                    prf: proposal.prf,
                    keys,
                    sk_i,
                    sk_r,
                    ni: ni.clone(),
                    nr,
                    our_init: resp.clone(),
                    next_id: 0,
                });
                self.their_request = None;
            }
        }
        self.send(IKE_PORT, resp);
    }

    // ----- op 4 -----

    /// The default chain after AUTH: SA (the configuration's ESP proposals, or the one chosen
    /// from the target's offer), TSi, TSr.
    fn default_auth_tail(&mut self) -> Vec<Payload> {
        let spi = self.fresh_spi() as u32 | 0x100;
        let ours = ts("10.1.0.0/16");
        let theirs = ts("10.3.0.0/16");
        match self.role {
            Role::Responder => vec![
                Payload::Sa(SaPayload {
                    proposals: self
                        .config
                        .esp_proposals
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let p = EspProposal { dh: None, ..*p };
                            esp_proposal(i as u8 + 1, &p, spi)
                        })
                        .collect(),
                }),
                Payload::TsI(TsPayload {
                    selectors: vec![ours],
                }),
                Payload::TsR(TsPayload {
                    selectors: vec![theirs],
                }),
            ],
            Role::Initiator => {
                let offered = self.their_request.as_ref().and_then(|(_, p)| {
                    p.iter().find_map(|x| match x {
                        Payload::Sa(sa) => sa.proposals.first().cloned(),
                        _ => None,
                    })
                });
                let mut out = Vec::new();
                if let Some(o) = offered {
                    let mut seen = Vec::new();
                    let transforms = o
                        .transforms
                        .iter()
                        .filter(|t| {
                            let new = !seen.contains(&t.transform_type);
                            seen.push(t.transform_type);
                            new
                        })
                        .cloned()
                        .collect();
                    out.push(Payload::Sa(SaPayload {
                        proposals: vec![Proposal {
                            number: o.number,
                            protocol: ProtocolId::ESP,
                            spi: Spi::U32(spi),
                            transforms,
                        }],
                    }));
                }
                out.push(Payload::TsI(TsPayload {
                    selectors: vec![theirs],
                }));
                out.push(Payload::TsR(TsPayload {
                    selectors: vec![ours],
                }));
                out
            }
        }
    }

    /// IKE_AUTH request (responder role) or response (initiator role). Frame: flags u8 (bit 0:
    /// INITIAL_CONTACT; bit 1: IDr in the request; bit 2: a wrong AUTH; bit 3: the wrong PSK
    /// method number), then the chain after AUTH: first payload type u8 and bytes (empty: the
    /// default SA TSi TSr).
    fn auth(&mut self, mut f: Input) {
        if self.sa.is_none() {
            return;
        }
        let flags = f.u8();
        let tail_type = f.u8();
        let tail_bytes = f.rest();
        let id = self.our_id();
        let header = match self.role {
            Role::Responder => {
                let id = self.sa.as_ref().unwrap().next_id;
                self.sa_header(ExchangeType::IKE_AUTH, false, id)
            }
            Role::Initiator => match &self.their_request {
                Some((h, _)) if h.exchange_type == ExchangeType::IKE_AUTH => {
                    Some(Header::response_to(h))
                }
                _ => self.sa_header(ExchangeType::IKE_AUTH, true, 1),
            },
        };
        let Some(header) = header else { return };
        let sa = self.sa.as_ref().unwrap();
        let (peer_nonce, sk_p) = match self.role {
            Role::Responder => (&sa.nr, &sa.keys.sk_pi),
            Role::Initiator => (&sa.ni, &sa.keys.sk_pr),
        };
        let octets = signed_octets(sa.prf, &sa.our_init, peer_nonce, sk_p, &id.body());
        let mut auth = psk_auth(sa.prf, PSK, &octets);
        if flags & 4 != 0 {
            auth[0] ^= 1;
        }
        let mut payloads = Vec::new();
        match self.role {
            Role::Responder => {
                payloads.push(Payload::IdI(id));
                if flags & 1 != 0 {
                    payloads.push(Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT)));
                }
                if flags & 2 != 0 {
                    payloads.push(Payload::IdR(self.their_id()));
                }
            }
            Role::Initiator => payloads.push(Payload::IdR(id)),
        }
        payloads.push(Payload::Auth(AuthPayload {
            method: if flags & 8 != 0 {
                AuthMethod(1)
            } else {
                AuthMethod::SHARED_KEY_MIC
            },
            data: auth,
        }));
        let (first, plain) = if tail_bytes.is_empty() {
            payloads.extend(self.default_auth_tail());
            chain(&payloads, None)
        } else {
            chain(&payloads, Some((tail_type, tail_bytes)))
        };
        if let Some(msg) = self.seal(header, first, &plain, false) {
            self.send(NATT_PORT, msg);
        }
    }

    // ----- ops 5 and 6 -----

    /// A protected request. Frame: exchange u8 (below 0x80: 34 + b % 4), flags u8 (bit 0: the
    /// wrong Initiator flag; bit 1: Response set; bit 2: the wrong direction's key; bit 3:
    /// Version set), message ID offset i8, first payload type u8, plaintext chain.
    fn request(&mut self, mut f: Input) {
        let Some(sa) = &self.sa else { return };
        let next_id = sa.next_id;
        let e = f.u8();
        let exchange = ExchangeType(if e < 0x80 { 34 + e % 4 } else { e });
        let flags = f.u8();
        let id = next_id.wrapping_add(f.u8() as i8 as i32 as u32);
        let first = PayloadType(f.u8());
        let plain = f.rest();
        let Some(mut h) = self.sa_header(exchange, flags & 2 != 0, id) else {
            return;
        };
        h.flags.initiator ^= flags & 1 != 0;
        h.flags.version = flags & 8 != 0;
        if let Some(msg) = self.seal(h, first, plain, flags & 4 != 0) {
            self.send(NATT_PORT, msg);
        }
    }

    /// A protected response to the target's last request. Frame: flags u8 (bit 0: the wrong
    /// message ID; bit 2: the wrong key), first payload type u8, plaintext chain.
    fn respond(&mut self, mut f: Input) {
        let Some((req, _)) = &self.their_request else {
            return;
        };
        let mut h = Header::response_to(req);
        let flags = f.u8();
        if flags & 1 != 0 {
            h.message_id = h.message_id.wrapping_add(1);
        }
        let first = PayloadType(f.u8());
        let plain = f.rest();
        if let Some(msg) = self.seal(h, first, plain, flags & 4 != 0) {
            self.send(NATT_PORT, msg);
        }
    }

    // ----- ops 7, 8, 9 -----

    /// Time passes; every timer due on the way fires at its own instant, as the daemon's loop
    /// fires them (at most 256, then the rest at the end).
    fn wait(&mut self, mut f: Input) {
        let v = f.u16();
        let d = if v & 0x8000 != 0 {
            Duration::from_secs(u64::from(v & 0x7fff))
        } else {
            Duration::from_millis(u64::from(v))
        };
        let end = self.now + d;
        for _ in 0..256 {
            match self.ep.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.fire();
                }
                _ => break,
            }
        }
        self.now = end;
        if self.ep.poll_timeout().is_some_and(|t| t <= end) {
            self.fire();
        }
    }

    fn fire(&mut self) {
        self.ep.handle_timeout(self.now);
        self.pump();
        if self.ep.poll_timeout().is_some_and(|t| t <= self.now) {
            // Something may be due at once (an immediate reconnection); a second call must
            // move every timer on, or the daemon's loop would spin.
            self.ep.handle_timeout(self.now);
            self.pump();
            if let Some(t) = self.ep.poll_timeout() {
                assert!(t > self.now, "timer {t:?} not advanced past {:?}", self.now);
            }
        }
    }

    fn replay(&mut self, mut f: Input) {
        if self.sent.is_empty() {
            return;
        }
        let i = usize::from(f.u8()) % self.sent.len();
        let (port, data) = self.sent[i].clone();
        self.send(port, data);
    }

    fn api(&mut self, mut f: Input) {
        match f.u8() % 7 {
            0 => self.ep.child_alive(self.now, 0),
            1 => {
                let spis: Vec<u32> = self.events.live.keys().copied().collect();
                let pick = usize::from(f.u8());
                let spi = spis
                    .get(pick % spis.len().max(1))
                    .copied()
                    .unwrap_or(u32::from(f.u8()));
                let bytes = u64::from(f.u32()) * 1000;
                self.ep.child_bytes(self.now, 0, spi, bytes);
            }
            2 => self.ep.set_half_open_limit(usize::from(f.u8() % 4)),
            3 => {
                self.ep.remove_peer(self.now, 0);
                self.pump();
                self.events.assert_all_down("remove_peer");
                let i = self.ep.add_peer(self.now, self.config.clone());
                assert_eq!(i, 0, "the freed index is reused");
            }
            4 => {
                self.ep.close_all(self.now);
                self.pump();
                self.events.assert_all_down("close_all");
                self.closed = true;
            }
            5 => {
                // At least 1 ms: with a zero base every retransmission is due at once, a burst
                // of them at one instant (the daemon never calls this; see RELIABILITY.md).
                let base = Duration::from_millis(u64::from(f.u16()).max(1));
                self.ep.set_retransmission(base, u32::from(f.u8()));
            }
            _ => {
                let s = self.ep.status(0);
                let _ = format!("{s:?}");
            }
        }
        self.pump();
    }

    fn raw(&mut self, port: u16, f: &[u8], patch: bool) {
        let mut d = f.to_vec();
        if patch && d.len() >= HEADER_LEN {
            if let Some(sa) = &self.sa {
                d[..8].copy_from_slice(&sa.spi_i.to_be_bytes());
                d[8..16].copy_from_slice(&sa.spi_r.to_be_bytes());
            }
            let len = (d.len() as u32).to_be_bytes();
            d[24..28].copy_from_slice(&len);
        }
        self.send(port, d);
    }
}

pub fn run(role: Role, data: &[u8]) {
    run_logged(role, data, false);
}

/// Runs an input; with `log`, returns every message on the wire and the target's plaintexts
/// (for the `ike_payloads` seeds).
pub fn run_logged(role: Role, data: &[u8], log: bool) -> Vec<Vec<u8>> {
    run_harness(role, data, log).log.unwrap_or_default()
}

fn run_harness(role: Role, data: &[u8], log: bool) -> Harness {
    let mut input = Input::new(data);
    let variant = input.u8();
    let mut h = Harness::new(role, variant);
    if log {
        h.log = Some(Vec::new());
    }
    while !input.is_empty() {
        let op = input.u8() % 10;
        let frame = input.frame();
        let f = Input::new(frame);
        match op {
            0 => h.raw(IKE_PORT, frame, false),
            1 => h.raw(NATT_PORT, frame, false),
            2 => h.raw(NATT_PORT, frame, true),
            3 => match role {
                Role::Responder => h.init_request(f),
                Role::Initiator => h.init_answer(f),
            },
            4 => h.auth(f),
            5 => h.request(f),
            6 => h.respond(f),
            7 => h.wait(f),
            8 => h.replay(f),
            _ => h.api(f),
        }
    }
    if !h.closed {
        // Whatever happened, the endpoint shuts down cleanly.
        h.ep.close_all(h.now);
        h.pump();
        h.events.assert_all_down("the final close_all");
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripted handshakes establish an IKE SA and a Child SA with the target, in both
    /// roles and every configuration: the harness really gets past authentication.
    #[test]
    fn handshake_seeds_establish() {
        for role in [Role::Responder, Role::Initiator] {
            for (name, input) in seeds(role) {
                let h = run_harness(role, &input, false);
                let deep = name.starts_with("handshake")
                    || (name.starts_with("strongswan") && name != "strongswan_init_raw")
                    || name == "create_child"
                    || name == "rekey_ike"
                    || name == "delete_child"
                    || name == "dpd_answered";
                if deep {
                    assert!(
                        h.events.ike_ups >= 1 && h.events.child_ups >= 1,
                        "{name}: ups {} children {}",
                        h.events.ike_ups,
                        h.events.child_ups
                    );
                }
            }
        }
    }
}

pub fn responder(data: &[u8]) {
    run(Role::Responder, data);
}

pub fn initiator(data: &[u8]) {
    run(Role::Initiator, data);
}

// ----- seeds -----

pub fn hex(s: &str) -> Vec<u8> {
    let d: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    d.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn op(s: Seed, op: u8, frame: &[u8]) -> Seed {
    s.u8(op).frame(frame)
}

/// strongSwan's IKE_AUTH plaintext after AUTH (docs/STRONGSWAN.md, `--log 3`): SA (ESP, SPI
/// e172d11f, aes256gcm16, no ESN), TSi 10.1/16, TSr 10.3/16, N(MULTIPLE_AUTH_SUPPORTED),
/// N(EAP_ONLY_AUTHENTICATION), N(IKEV2_MESSAGE_ID_SYNC_SUPPORTED); as a tail: (type, bytes).
pub fn strongswan_auth_tail() -> (u8, Vec<u8>) {
    (
        33,
        hex("2C 00 00 24 00 00 00 20 01 03 04 02 E1 72 D1 1F 03 00 00 0C 01 00 00 14 80 0E 01 00 00 00 00 08 05 00 00 00
             2D 00 00 18 01 00 00 00 07 00 00 10 00 00 FF FF 0A 01 00 00 0A 01 FF FF
             29 00 00 18 01 00 00 00 07 00 00 10 00 00 FF FF 0A 03 00 00 0A 03 FF FF
             29 00 00 08 00 00 40 14   29 00 00 08 00 00 40 21   00 00 00 08 00 00 40 24"),
    )
}

/// strongSwan's IKE_AUTH response after AUTH: SA (ESP, SPI c7000001) TSi 10.3/16 TSr 10.1/16
/// (the initiator is the target here, whose TSi is 10.3/16).
pub fn strongswan_auth_response_tail() -> (u8, Vec<u8>) {
    (
        33,
        hex("2C 00 00 24 00 00 00 20 01 03 04 02 C7 00 00 01 03 00 00 0C 01 00 00 14 80 0E 01 00 00 00 00 08 05 00 00 00
             2D 00 00 18 01 00 00 00 07 00 00 10 00 00 FF FF 0A 03 00 00 0A 03 FF FF
             00 00 00 18 01 00 00 00 07 00 00 10 00 00 FF FF 0A 01 00 00 0A 01 FF FF"),
    )
}

/// strongSwan's extra IKE_SA_INIT notifies (request: FRAG_SUP, HASH_ALG, REDIR_SUP), as extra
/// payload records (type, frame).
fn strongswan_init_extras(response: bool) -> Vec<u8> {
    let mut s = Seed::new()
        .u8(41)
        .frame(&hex("0000402e"))
        .u8(41)
        .frame(&hex("0000402f 0002000300040005"));
    s = if response {
        s.u8(41)
            .frame(&hex("00004022"))
            .u8(41)
            .frame(&hex("00004014"))
    } else {
        s.u8(41).frame(&hex("00004016"))
    };
    s.build()
}

fn auth_frame(flags: u8, tail: Option<(u8, Vec<u8>)>) -> Vec<u8> {
    let mut s = Seed::new().u8(flags);
    if let Some((t, b)) = tail {
        s = s.u8(t).bytes(&b);
    }
    s.build()
}

fn req(exchange: u8, first: u8, plain: &[u8]) -> Vec<u8> {
    Seed::new()
        .u8(exchange)
        .u8(0)
        .u8(0)
        .u8(first)
        .bytes(plain)
        .build()
}

/// Seeds: handshakes shaped as strongSwan's (its IKE_SA_INIT notifies, its IKE_AUTH layout),
/// then what follows an established SA on the wire: DPD, Delete, CREATE_CHILD_SA, timers,
/// cookies, INVALID_KE, reloads; and the captured strongSwan IKE_SA_INIT request as raw bytes.
pub fn seeds(role: Role) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let hs = |variant: u8| -> Seed {
        let s = Seed::new().u8(variant);
        match role {
            Role::Responder => op(op(s, 3, &[0]), 4, &auth_frame(1, None)),
            Role::Initiator => op(op(s, 3, &[0, 0]), 4, &auth_frame(0, None)),
        }
    };
    for v in 0..4u8 {
        out.push((format!("handshake_v{v}"), hs(v).build()));
    }
    let ss = match role {
        Role::Responder => {
            let mut init = vec![0u8];
            init.extend(strongswan_init_extras(false));
            let s = op(Seed::new().u8(0), 3, &init);
            op(s, 4, &auth_frame(3, Some(strongswan_auth_tail())))
        }
        Role::Initiator => {
            let mut init = vec![0u8, 0];
            init.extend(strongswan_init_extras(true));
            let s = op(Seed::new().u8(0), 3, &init);
            op(s, 4, &auth_frame(0, Some(strongswan_auth_response_tail())))
        }
    };
    out.push(("strongswan_handshake".into(), ss.clone().build()));
    // After establishment, the exchanges strongSwan sends (docs/STRONGSWAN.md).
    let dpd = req(3, 0, &[]);
    out.push(("strongswan_dpd".into(), op(ss.clone(), 5, &dpd).build()));
    let (_, del_ike) = chain(
        &[Payload::Delete(Delete {
            protocol: ProtocolId::IKE,
            spis: vec![],
        })],
        None,
    );
    out.push((
        "strongswan_delete_ike".into(),
        op(ss.clone(), 5, &req(3, 42, &del_ike)).build(),
    ));
    let (_, del_esp) = chain(
        &[Payload::Delete(Delete {
            protocol: ProtocolId::ESP,
            spis: vec![0xe172_d11f],
        })],
        None,
    );
    out.push((
        "delete_child".into(),
        op(ss.clone(), 5, &req(3, 42, &del_esp)).build(),
    ));
    let esp = EspProposal::parse("aes256gcm16").unwrap();
    let nonce: Vec<u8> = (0x40u8..0x60).collect();
    let (_, new_child) = chain(
        &[
            Payload::Sa(SaPayload {
                proposals: vec![esp_proposal(1, &esp, 0xc1a2_b3d4)],
            }),
            Payload::Nonce(nonce.clone()),
            Payload::TsI(TsPayload {
                selectors: vec![ts("10.1.0.0/16")],
            }),
            Payload::TsR(TsPayload {
                selectors: vec![ts("10.3.0.0/16")],
            }),
        ],
        None,
    );
    out.push((
        "create_child".into(),
        op(ss.clone(), 5, &req(2, 33, &new_child)).build(),
    ));
    let ike = IkeProposal::parse("aes256gcm16-prfsha256-ecp256").unwrap();
    let ke = with_key(crypto::DhGroup::Ecp256, |k| k.public_value().to_vec());
    let (_, rekey_ike) = chain(
        &[
            Payload::Sa(SaPayload {
                proposals: vec![ike_proposal(1, &ike, Spi::U64(0x1234_5678_9abc_def0))],
            }),
            Payload::Nonce(nonce),
            Payload::Ke(KePayload {
                group: causeway_ike::wire::DhGroup::ECP_256,
                data: ke,
            }),
        ],
        None,
    );
    out.push((
        "rekey_ike".into(),
        op(ss.clone(), 5, &req(2, 33, &rekey_ike)).build(),
    ));
    // Timers: DPD from the target answered, then hours (rekeys, unanswered retransmissions).
    let t = |s: Seed, v: u16| op(s, 7, &v.to_le_bytes());
    let dpd_answered = op(t(hs(3), 0x8000 | 15), 6, &[0, 0]);
    out.push(("dpd_answered".into(), dpd_answered.build()));
    out.push((
        "rekeys_over_hours".into(),
        t(t(t(hs(2), 0x8000 | 70), 0x8000 | 3600), 0x8000 | 30_000).build(),
    ));
    out.push((
        "retransmit_then_give_up".into(),
        t(t(Seed::new().u8(0), 600), 0x8000 | 40).build(),
    ));
    match role {
        Role::Responder => {
            let cookie = op(
                op(op(op(Seed::new().u8(0), 9, &[2, 0]), 3, &[0]), 3, &[0]),
                4,
                &[1],
            );
            out.push(("cookie".into(), cookie.build()));
            let ike_v1 = op(op(op(Seed::new().u8(1), 3, &[1]), 3, &[0]), 4, &[0]);
            out.push(("invalid_ke_then_retry".into(), ike_v1.build()));
            // The captured strongSwan IKE_SA_INIT request, raw (its KE is not ours: no SA).
            let mut init = hex("6b746535ee7ef1ee 0000000000000000 21 20 22 08 00000000 00000108
                22000028 00000024 01010003 0300000c 01000014 800e0100 03000008 02000005 00000008 04000013
                28000048 0013 0000");
            init.extend(with_key(crypto::DhGroup::Ecp256, |k| {
                k.public_value().to_vec()
            }));
            init.extend(hex("29000024"));
            init.extend(0xa0u8..0xc0);
            init.extend(hex("2900001c 00004004"));
            init.extend([0x5a; 20]);
            init.extend(hex(
                "2900001c 00004005 b3992a21fe0bd00aa307e67cb53596441e8b97cf
                29000008 0000402e   29000010 0000402f 0002000300040005   00000008 00004016",
            ));
            out.push((
                "strongswan_init_raw".into(),
                op(Seed::new().u8(0), 0, &init).build(),
            ));
            out.push((
                "wrong_auth".into(),
                op(op(Seed::new().u8(0), 3, &[0]), 4, &[4]).build(),
            ));
        }
        Role::Initiator => {
            out.push((
                "invalid_ke".into(),
                op(
                    op(
                        op(op(Seed::new().u8(2), 3, &[1, 0, 19, 0]), 7, &[0, 0]),
                        3,
                        &[0, 0],
                    ),
                    4,
                    &[0],
                )
                .build(),
            ));
            out.push((
                "cookie".into(),
                op(
                    op(
                        op(op(Seed::new().u8(0), 3, &[2, 0, 1, 2, 3, 4]), 7, &[0, 0]),
                        3,
                        &[0, 0],
                    ),
                    4,
                    &[0],
                )
                .build(),
            ));
            out.push((
                "no_proposal".into(),
                op(Seed::new().u8(0), 3, &[4, 0]).build(),
            ));
            out.push((
                "wrong_auth".into(),
                op(op(Seed::new().u8(0), 3, &[0, 0]), 4, &[4]).build(),
            ));
        }
    }
    let reload = op(hs(0), 9, &[3]);
    out.push(("reload_then_close".into(), op(reload, 9, &[4]).build()));
    out
}

#[cfg(test)]
mod stats {
    use super::*;

    #[test]
    #[ignore]
    fn print_seed_stats() {
        for role in [Role::Responder, Role::Initiator] {
            for (name, input) in seeds(role) {
                let h = run_harness(role, &input, false);
                eprintln!(
                    "{}: {name}: ike_ups {} child_ups {} sa {} sent {}",
                    if role == Role::Responder { "R" } else { "I" },
                    h.events.ike_ups,
                    h.events.child_ups,
                    h.sa.is_some(),
                    h.sent.len()
                );
            }
        }
    }
}
