//! Target `esp_open`: `InboundSa::open` on arbitrary datagrams, and on *authentic* packets
//! whose plaintext (inner packet, padding, Pad Length, Next Header) the fuzzer wrote, sealed
//! under the SA's real key by the test-only hook `OutboundSa::seal_raw_for_fuzzing` (cargo
//! feature `fuzzing` of causeway-esp), so that everything after the ICV check is reached. Also
//! `OutboundSa::seal` with arbitrary head and tail room, and its round trip through `open`.
//!
//! Every result is compared with a model: the replay window as a set of accepted sequence
//! numbers and a top (what RFC 4303 3.4.3 asks), the trailer rules of RFC 4303 2.4-2.6, and
//! the layout `seal` promises. No sequence number is ever accepted twice.
//!
//! Input: a config byte (cipher = `Cipher::ALL[b % 5]`, ESN = bit 4, replay window = bits 5-6:
//! 1024, 2048, 4096 or 2^20 packets), then records until the input ends, an op byte (mod 4):
//!
//! 0. raw datagram: flags u8 (bit 0: put the SA's SPI in front), frame.
//! 1. forged: sequence number u64 (low 32 bits without ESN), corruption u16 (0xffff: none,
//!    else the byte at that offset is flipped), plaintext frame (zero-padded to whole blocks
//!    for AES-CBC).
//! 2. seal then open: next header u8, head room u8, tail room u8, inner packet frame.
//! 3. resume the sender at sequence number u64 (`OutboundSa::resume`).

use std::collections::BTreeSet;

use causeway_esp::{
    classify_udp4500, spi_of, Cipher, InboundSa, KeyMaterial, OpenError, OutboundSa, SealError,
    ICV_LEN, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_NONE,
};

use crate::input::{Input, Seed};
use crate::packets::*;

pub const SPI: u32 = 0x1000_0001;

/// The replay window as RFC 4303 3.4.3 describes it.
struct Model {
    size: u64,
    top: u64,
    accepted: BTreeSet<u64>,
}

impl Model {
    fn check(&self, seq: u64) -> Result<(), OpenError> {
        if seq == 0 {
            Err(OpenError::TooOld)
        } else if seq > self.top {
            Ok(())
        } else if self.top - seq >= self.size {
            Err(OpenError::TooOld)
        } else if self.accepted.contains(&seq) {
            Err(OpenError::Replayed)
        } else {
            Ok(())
        }
    }

    fn commit(&mut self, seq: u64) {
        assert!(
            self.accepted.insert(seq),
            "sequence number {seq} accepted twice"
        );
        self.top = self.top.max(seq);
    }
}

fn key(cipher: Cipher) -> KeyMaterial {
    let bytes: Vec<u8> = (1..=cipher.key_material_len() as u8).collect();
    KeyMaterial::new(cipher, &bytes).expect("key length")
}

fn authenticated(r: &Result<causeway_esp::Opened, OpenError>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => e.authenticated(),
    }
}

struct Harness {
    cipher: Cipher,
    esn: bool,
    tx: OutboundSa,
    rx: InboundSa,
    model: Model,
}

impl Harness {
    /// The sequence number `open` will work with for a packet carrying `low`, and what the
    /// checks before the ICV must say.
    fn expect_pre(&self, pkt: &[u8]) -> (u64, Result<(), OpenError>) {
        let c = self.cipher;
        let len = pkt.len();
        if len < c.min_esp_len() {
            return (0, Err(OpenError::Truncated));
        }
        if !c.is_aead() && !(len - c.header_len() - ICV_LEN).is_multiple_of(c.block_len()) {
            return (0, Err(OpenError::Truncated));
        }
        if u32::from_be_bytes(pkt[..4].try_into().unwrap()) != SPI {
            return (0, Err(OpenError::WrongSpi));
        }
        let low = u32::from_be_bytes(pkt[4..8].try_into().unwrap());
        let seq = if self.esn {
            match self.rx.window().infer_esn(low) {
                Some(s) => s,
                None => return (0, Err(OpenError::TooOld)),
            }
        } else {
            u64::from(low)
        };
        (seq, self.model.check(seq))
    }

    /// Opens `pkt`, sealed (if `sealed_seq` is given) at that sequence number from `plain` (the
    /// plaintext between IV and ICV), and checks the result against the model.
    fn open_checked(&mut self, pkt: &mut [u8], sealed: Option<(u64, &[u8])>) {
        let (seq, pre) = self.expect_pre(pkt);
        let r = self.rx.open(pkt);
        if let Err(e) = pre {
            assert_eq!(r, Err(e), "checks before the ICV");
            return;
        }
        let Some((sealed_seq, plain)) = sealed else {
            // Random bytes do not authenticate (2^-128); if they ever did, the model follows.
            if authenticated(&r) {
                self.model.commit(seq);
            }
            return;
        };
        if seq != sealed_seq {
            assert_eq!(
                r,
                Err(OpenError::AuthFailed),
                "a wrong ESN guess must fail the ICV"
            );
            return;
        }
        self.model.commit(seq);
        let hl = self.cipher.header_len();
        let n = plain.len();
        let next = plain[n - 1];
        let pad = usize::from(plain[n - 2]);
        let expected = match n.checked_sub(2 + pad) {
            None => Err(OpenError::BadPadding),
            Some(payload) => {
                if plain[payload..payload + pad]
                    .iter()
                    .enumerate()
                    .any(|(i, &b)| usize::from(b) != i + 1)
                {
                    Err(OpenError::BadPadding)
                } else {
                    match next {
                        NEXT_HEADER_IPV4 | NEXT_HEADER_IPV6 => Ok(payload),
                        NEXT_HEADER_NONE => Err(OpenError::Dummy),
                        other => Err(OpenError::BadNextHeader(other)),
                    }
                }
            }
        };
        match (r, expected) {
            (Ok(o), Ok(payload)) => {
                assert_eq!(o.inner, hl..hl + payload, "inner range");
                assert_eq!((o.seq, o.next_header), (seq, next));
                assert_eq!(&pkt[o.inner], &plain[..payload], "decrypted inner packet");
            }
            (r, e) => assert_eq!(r.map(|o| o.inner.len()), e, "open of an authentic packet"),
        }
    }
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let cfg = input.u8();
    let cipher = Cipher::ALL[usize::from(cfg) % Cipher::ALL.len()];
    let esn = cfg & 0x10 != 0;
    let window = [1024, 2048, 4096, 1 << 20][usize::from(cfg >> 5) & 3];
    let k = key(cipher);
    let mut h = Harness {
        cipher,
        esn,
        tx: OutboundSa::new(SPI, cipher, &k, esn).expect("outbound SA"),
        rx: InboundSa::new(SPI, cipher, &k, esn, window).expect("inbound SA"),
        model: Model {
            size: u64::from(window),
            top: 0,
            accepted: BTreeSet::new(),
        },
    };
    while !input.is_empty() {
        match input.u8() % 4 {
            0 => {
                let flags = input.u8();
                let mut pkt = input.frame().to_vec();
                if flags & 1 == 1 && pkt.len() >= 4 {
                    pkt[..4].copy_from_slice(&SPI.to_be_bytes());
                }
                let _ = classify_udp4500(&pkt);
                let _ = spi_of(&pkt);
                h.open_checked(&mut pkt, None);
            }
            1 => {
                let mut seq = input.u64();
                if !esn {
                    seq &= u64::from(u32::MAX);
                }
                let corrupt = input.u16();
                let mut plain = input.frame().to_vec();
                if !cipher.is_aead() {
                    while !plain.len().is_multiple_of(16) || plain.is_empty() {
                        plain.push(0);
                    }
                }
                let hl = cipher.header_len();
                let mut pkt = vec![0u8; hl + plain.len() + ICV_LEN];
                pkt[hl..hl + plain.len()].copy_from_slice(&plain);
                h.tx.seal_raw_for_fuzzing(seq, &mut pkt)
                    .expect("seal_raw_for_fuzzing");
                if corrupt != u16::MAX {
                    let at = usize::from(corrupt) % pkt.len();
                    pkt[at] ^= 1 << (corrupt >> 13);
                    let (_, pre) = h.expect_pre(&pkt);
                    let r = h.rx.open(&mut pkt);
                    assert!(
                        !authenticated(&r),
                        "a corrupted packet authenticated: {r:?}"
                    );
                    if let Err(e) = pre {
                        assert_eq!(r, Err(e));
                    }
                } else if plain.len() < 2 {
                    assert_eq!(h.rx.open(&mut pkt), Err(OpenError::Truncated));
                } else {
                    h.open_checked(&mut pkt, Some((seq, &plain)));
                }
            }
            2 => {
                let nh = input.u8();
                let head = usize::from(input.u8());
                let tail = usize::from(input.u8());
                let inner = input.frame();
                let len = inner.len();
                let mut buf = vec![0u8; head + len + tail];
                buf[head..head + len].copy_from_slice(inner);
                let next = h.tx.next_seq();
                let r = h.tx.seal(&mut buf, head, len, nh);
                let expected = if head < cipher.header_len() {
                    Err(SealError::NoHeadroom)
                } else if tail < cipher.tail_len(len) {
                    Err(SealError::NoTailroom)
                } else if next.is_none() {
                    Err(SealError::SequenceExhausted)
                } else {
                    Ok(head - cipher.header_len()..head + len + cipher.tail_len(len))
                };
                assert_eq!(
                    r, expected,
                    "seal({head}, {len}) with {tail} bytes of tail room"
                );
                let Ok(range) = r else { continue };
                assert_eq!(range.len(), cipher.sealed_len(len));
                let seq = next.expect("sealed with a sequence number");
                let max = if esn { u64::MAX } else { u64::from(u32::MAX) };
                assert_eq!(
                    h.tx.next_seq(),
                    (seq < max).then(|| seq + 1),
                    "next_seq after a seal"
                );
                let mut pkt = buf[range].to_vec();
                // The plaintext seal wrote: inner, padding 1, 2, ..., pad length, next header.
                let pad = cipher.pad_len(len);
                let mut plain = inner.to_vec();
                plain.extend((1..=pad).map(|i| i as u8));
                plain.extend([pad as u8, nh]);
                h.open_checked(&mut pkt, Some((seq, &plain)));
            }
            _ => {
                let next = input.u64();
                h.tx = OutboundSa::resume(SPI, cipher, &k, esn, next).expect("resumed SA");
            }
        }
    }
}

/// Seeds: packets sealed by each cipher with and without ESN (the layout of RFC 4106 / 4303 as
/// the SA tests check it), forged trailers (bad padding, dummy, IPv6, unknown next header),
/// replays, a sender resumed near 2^32, a runt and a wrong SPI.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let inner = v4(
        a4("10.1.0.10"),
        a4("10.3.0.10"),
        17,
        64,
        true,
        &udp(40000, 5201, &counting(72)),
    );
    let mut out = Vec::new();
    for (ci, c) in Cipher::ALL.iter().enumerate() {
        for esn in [false, true] {
            let cfg = ci as u8 | if esn { 0x10 } else { 0 };
            let name = format!("{}{}", c.name(), if esn { "_esn" } else { "" });
            let seal = |s: Seed| s.u8(2).u8(4).u8(24).u8(33).frame(&inner);
            out.push((
                format!("{name}_seal_open"),
                seal(seal(Seed::new().u8(cfg))).build(),
            ));
            let mut trailer = inner.clone();
            trailer.extend([1, 2, 3, 3, 41]);
            out.push((
                format!("{name}_forged_ipv6_padded"),
                Seed::new()
                    .u8(cfg)
                    .u8(1)
                    .u64(5)
                    .u16(u16::MAX)
                    .frame(&trailer)
                    .build(),
            ));
            let mut bad = inner.clone();
            bad.extend([1, 9, 2, 4]);
            out.push((
                format!("{name}_forged_bad_padding"),
                Seed::new()
                    .u8(cfg)
                    .u8(1)
                    .u64(6)
                    .u16(u16::MAX)
                    .frame(&bad)
                    .build(),
            ));
        }
    }
    let dummy = [0u8, 59];
    out.push((
        "forged_dummy".into(),
        Seed::new()
            .u8(0)
            .u8(1)
            .u64(7)
            .u16(u16::MAX)
            .frame(&dummy)
            .build(),
    ));
    out.push((
        "forged_next_header_17".into(),
        Seed::new()
            .u8(0)
            .u8(1)
            .u64(8)
            .u16(u16::MAX)
            .frame(&[0x45, 0, 0, 17])
            .build(),
    ));
    out.push((
        "forged_pad_255".into(),
        Seed::new()
            .u8(0)
            .u8(1)
            .u64(9)
            .u16(u16::MAX)
            .frame(&[255, 4])
            .build(),
    ));
    out.push((
        "forged_replayed".into(),
        Seed::new()
            .u8(0)
            .u8(1)
            .u64(9)
            .u16(u16::MAX)
            .frame(&[0, 4])
            .u8(1)
            .u64(9)
            .u16(u16::MAX)
            .frame(&[0, 4])
            .build(),
    ));
    out.push((
        "forged_corrupted".into(),
        Seed::new()
            .u8(0)
            .u8(1)
            .u64(10)
            .u16(40)
            .frame(&inner)
            .build(),
    ));
    out.push((
        "esn_resume_wrap".into(),
        Seed::new()
            .u8(0x10)
            .u8(3)
            .u64(u64::from(u32::MAX) - 1)
            .u8(2)
            .u8(4)
            .u8(16)
            .u8(40)
            .frame(&inner)
            .u8(2)
            .u8(4)
            .u8(16)
            .u8(40)
            .frame(&inner)
            .u8(2)
            .u8(4)
            .u8(16)
            .u8(40)
            .frame(&inner)
            .build(),
    ));
    out.push((
        "exhausted".into(),
        Seed::new()
            .u8(0)
            .u8(3)
            .u64(u64::from(u32::MAX))
            .u8(2)
            .u8(4)
            .u8(16)
            .u8(40)
            .frame(&inner)
            .u8(2)
            .u8(4)
            .u8(16)
            .u8(40)
            .frame(&inner)
            .build(),
    ));
    out.push((
        "raw_runt".into(),
        Seed::new()
            .u8(0)
            .u8(0)
            .u8(1)
            .frame(&[0, 0, 0, 1, 0, 0, 0, 1])
            .build(),
    ));
    out.push((
        "raw_wrong_spi".into(),
        Seed::new().u8(3).u8(0).u8(0).frame(&[0x20; 80]).build(),
    ));
    out.push((
        "raw_keepalive_and_ike".into(),
        Seed::new()
            .u8(0)
            .u8(0)
            .u8(0)
            .frame(&[0xff])
            .u8(0)
            .u8(0)
            .frame(&[0, 0, 0, 0, 1])
            .build(),
    ));
    out
}
