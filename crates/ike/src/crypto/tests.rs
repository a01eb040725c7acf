//! Known-answer tests across the module, and the hex helper the tests share.
//!
//! Where a published vector exists it is used (RFC 4231, RFC 2202). The key-derivation, PSK and
//! NAT-detection expectations below were computed once with an independent implementation:
//! a one-off Python 3 script using only `hmac`/`hashlib`, written from RFC 7296 2.13-2.18, 2.15
//! and 2.23, whose output is pasted here. The inputs are the fixed patterns in [`Inputs`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

/// Decodes hex, ignoring ASCII whitespace. Panics on bad input (tests only).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.chunks_exact(2).remainder().is_empty(),
        "odd hex length"
    );
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn s(b: &SecretBytes) -> Vec<u8> {
    b.as_bytes().to_vec()
}

// ---------------------------------------------------------------------------------------------
// PRF: RFC 4231 (HMAC-SHA-256/384) and RFC 2202 (HMAC-SHA-1).

#[test]
fn prf_rfc4231_vectors() {
    let cases: [(&[u8], &[u8], &str, &str); 3] = [
        (
            &[0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
        ),
        (
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
        ),
    ];
    for (key, data, sha256, sha384) in cases {
        assert_eq!(s(&prf(PrfAlg::HmacSha256, key, data)), hex(sha256));
        assert_eq!(s(&prf(PrfAlg::HmacSha384, key, data)), hex(sha384));
    }
    // RFC 2202 test case 1.
    assert_eq!(
        s(&prf(PrfAlg::HmacSha1, &[0x0b; 20], b"Hi There")),
        hex("b617318655057264e28bc0b6fb378c8ef146be00")
    );
}

// ---------------------------------------------------------------------------------------------
// prf+ structure (RFC 7296 2.13).

#[test]
fn prf_plus_is_the_rfc_chain() {
    let key = b"key";
    let seed = b"seed bytes";
    for alg in [PrfAlg::HmacSha1, PrfAlg::HmacSha256, PrfAlg::HmacSha384] {
        let n = alg.output_len();
        let out = prf_plus(alg, key, seed, 3 * n + 5).unwrap();
        assert_eq!(out.len(), 3 * n + 5);
        // T1 = prf(K, S | 0x01)
        let t1 = prf(alg, key, &[&seed[..], &[1]].concat());
        // T2 = prf(K, T1 | S | 0x02)
        let t2 = prf(alg, key, &[t1.as_bytes(), &seed[..], &[2]].concat());
        let t3 = prf(alg, key, &[t2.as_bytes(), &seed[..], &[3]].concat());
        let t4 = prf(alg, key, &[t3.as_bytes(), &seed[..], &[4]].concat());
        let expected = [
            t1.as_bytes(),
            t2.as_bytes(),
            t3.as_bytes(),
            &t4.as_bytes()[..5],
        ]
        .concat();
        assert_eq!(out.as_bytes(), &expected[..]);
        // A shorter output is a prefix of a longer one.
        assert_eq!(
            prf_plus(alg, key, seed, 7).unwrap().as_bytes(),
            &expected[..7]
        );
        assert!(prf_plus(alg, key, seed, 0).unwrap().is_empty());
        // 255 blocks at most: the counter is one octet.
        assert_eq!(prf_plus(alg, key, seed, 255 * n).unwrap().len(), 255 * n);
        assert_eq!(
            prf_plus(alg, key, seed, 255 * n + 1).err(),
            Some(KeyError::PrfPlusTooLong {
                requested: 255 * n + 1,
                max: 255 * n
            })
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Key derivation (RFC 7296 2.14, 2.17, 2.18), expectations from the one-off Python script.

struct Inputs;

impl Inputs {
    fn ni() -> Vec<u8> {
        (0x00..0x20).collect()
    }
    fn nr() -> Vec<u8> {
        (0x20..0x40).collect()
    }
    fn ni2() -> Vec<u8> {
        (0x40..0x60).collect()
    }
    fn nr2() -> Vec<u8> {
        (0x60..0x80).collect()
    }
    const SPI_I: u64 = 0x0102030405060708;
    const SPI_R: u64 = 0x1112131415161718;
    const SPI_I2: u64 = 0xa1a2a3a4a5a6a7a8;
    const SPI_R2: u64 = 0xb1b2b3b4b5b6b7b8;
    fn gir_modp() -> SharedSecret {
        SharedSecret::from_bytes(
            &(0..256u32)
                .map(|i| ((i * 7 + 3) & 0xff) as u8)
                .collect::<Vec<_>>(),
        )
    }
    fn gir_ecp384() -> SharedSecret {
        SharedSecret::from_bytes(
            &(0..48u32)
                .map(|i| ((i * 13 + 1) & 0xff) as u8)
                .collect::<Vec<_>>(),
        )
    }
    fn gir_x25519() -> SharedSecret {
        SharedSecret::from_bytes(
            &(0..32u32)
                .map(|i| ((i * 5 + 9) & 0xff) as u8)
                .collect::<Vec<_>>(),
        )
    }
}

fn check_ike(keys: &IkeSaKeys, expected: [&str; 7]) {
    let [d, ai, ar, ei, er, pi, pr] = expected;
    assert_eq!(s(&keys.sk_d), hex(d), "SK_d");
    assert_eq!(
        keys.sk_ai.as_ref().map(s).unwrap_or_default(),
        hex(ai),
        "SK_ai"
    );
    assert_eq!(
        keys.sk_ar.as_ref().map(s).unwrap_or_default(),
        hex(ar),
        "SK_ar"
    );
    assert_eq!(s(&keys.sk_ei), hex(ei), "SK_ei");
    assert_eq!(s(&keys.sk_er), hex(er), "SK_er");
    assert_eq!(s(&keys.sk_pi), hex(pi), "SK_pi");
    assert_eq!(s(&keys.sk_pr), hex(pr), "SK_pr");
}

#[test]
fn ike_sa_keys_known_answer_cbc_sha256() {
    let p = IkeProposal::parse("aes256-sha256-modp2048").unwrap();
    let seed = IkeSaKeys::skeyseed(p.prf, &Inputs::ni(), &Inputs::nr(), &Inputs::gir_modp());
    assert_eq!(s(&seed), hex(CBC256_SKEYSEED));
    let keys = IkeSaKeys::derive(
        &p,
        &Inputs::gir_modp(),
        &Inputs::ni(),
        &Inputs::nr(),
        Inputs::SPI_I,
        Inputs::SPI_R,
    )
    .unwrap();
    check_ike(
        &keys,
        [
            CBC256_SK_D,
            CBC256_SK_AI,
            CBC256_SK_AR,
            CBC256_SK_EI,
            CBC256_SK_ER,
            CBC256_SK_PI,
            CBC256_SK_PR,
        ],
    );
}

#[test]
fn ike_sa_keys_known_answer_gcm_sha384() {
    let p = IkeProposal::parse("aes256gcm16-prfsha384-ecp384").unwrap();
    let seed = IkeSaKeys::skeyseed(p.prf, &Inputs::ni(), &Inputs::nr(), &Inputs::gir_ecp384());
    assert_eq!(s(&seed), hex(GCM256_SKEYSEED));
    let keys = IkeSaKeys::derive(
        &p,
        &Inputs::gir_ecp384(),
        &Inputs::ni(),
        &Inputs::nr(),
        Inputs::SPI_I,
        Inputs::SPI_R,
    )
    .unwrap();
    // No SK_a for an AEAD; SK_e is 32 key bytes + 4 salt bytes.
    assert!(keys.sk_ai.is_none() && keys.sk_ar.is_none());
    assert_eq!(keys.sk_ei.len(), 36);
    check_ike(
        &keys,
        [
            GCM256_SK_D,
            GCM256_SK_AI,
            GCM256_SK_AR,
            GCM256_SK_EI,
            GCM256_SK_ER,
            GCM256_SK_PI,
            GCM256_SK_PR,
        ],
    );
}

#[test]
fn ike_sa_keys_known_answer_cbc_sha1() {
    let p = IkeProposal::parse("aes128-sha1-modp2048").unwrap();
    let keys = IkeSaKeys::derive(
        &p,
        &Inputs::gir_modp(),
        &Inputs::ni(),
        &Inputs::nr(),
        Inputs::SPI_I,
        Inputs::SPI_R,
    )
    .unwrap();
    assert_eq!(
        s(&IkeSaKeys::skeyseed(
            p.prf,
            &Inputs::ni(),
            &Inputs::nr(),
            &Inputs::gir_modp()
        )),
        hex(CBC128_SKEYSEED)
    );
    check_ike(
        &keys,
        [
            CBC128_SK_D,
            CBC128_SK_AI,
            CBC128_SK_AR,
            CBC128_SK_EI,
            CBC128_SK_ER,
            CBC128_SK_PI,
            CBC128_SK_PR,
        ],
    );
}

#[test]
fn rekeyed_ike_sa_known_answer() {
    let old = IkeProposal::parse("aes256-sha256-modp2048").unwrap();
    let old_keys = IkeSaKeys::derive(
        &old,
        &Inputs::gir_modp(),
        &Inputs::ni(),
        &Inputs::nr(),
        Inputs::SPI_I,
        Inputs::SPI_R,
    )
    .unwrap();
    let new = IkeProposal::parse("aes256gcm16-prfsha384-ecp384").unwrap();
    // SKEYSEED uses the old SA's PRF (SHA-256, 32 bytes) even though the new one is SHA-384.
    let seed = IkeSaKeys::rekey_skeyseed(
        old.prf,
        &old_keys.sk_d,
        &Inputs::gir_ecp384(),
        &Inputs::ni2(),
        &Inputs::nr2(),
    );
    assert_eq!(s(&seed), hex(REKEY_SKEYSEED));
    let keys = IkeSaKeys::derive_rekeyed(
        old.prf,
        &old_keys.sk_d,
        &new,
        &Inputs::gir_ecp384(),
        &Inputs::ni2(),
        &Inputs::nr2(),
        Inputs::SPI_I2,
        Inputs::SPI_R2,
    )
    .unwrap();
    check_ike(
        &keys,
        [
            REKEY_SK_D,
            REKEY_SK_AI,
            REKEY_SK_AR,
            REKEY_SK_EI,
            REKEY_SK_ER,
            REKEY_SK_PI,
            REKEY_SK_PR,
        ],
    );
}

#[test]
fn child_sa_keys_known_answers() {
    let ike = IkeProposal::parse("aes256-sha256-modp2048").unwrap();
    let ike_keys = IkeSaKeys::derive(
        &ike,
        &Inputs::gir_modp(),
        &Inputs::ni(),
        &Inputs::nr(),
        Inputs::SPI_I,
        Inputs::SPI_R,
    )
    .unwrap();

    // First Child SA (IKE_AUTH): IKE_SA_INIT nonces, no PFS, AES-GCM: key || salt per direction.
    let esp = EspProposal::parse("aes256gcm16").unwrap();
    let c = ChildSaKeys::derive(
        ike.prf,
        &ike_keys.sk_d,
        &esp,
        None,
        &Inputs::ni(),
        &Inputs::nr(),
    )
    .unwrap();
    assert_eq!(s(&c.initiator_to_responder.encr), hex(CHILD_GCM_I2R));
    assert_eq!(s(&c.responder_to_initiator.encr), hex(CHILD_GCM_R2I));
    assert!(c.initiator_to_responder.integ.is_none());

    // CREATE_CHILD_SA with PFS: g^ir (new) | Ni | Nr; AES-CBC key then HMAC key per direction.
    let esp = EspProposal::parse("aes256-sha256-curve25519").unwrap();
    let c = ChildSaKeys::derive(
        ike.prf,
        &ike_keys.sk_d,
        &esp,
        Some(&Inputs::gir_x25519()),
        &Inputs::ni2(),
        &Inputs::nr2(),
    )
    .unwrap();
    assert_eq!(s(&c.initiator_to_responder.encr), hex(CHILD_CBC_PFS_I2R_E));
    assert_eq!(
        c.initiator_to_responder.integ.as_ref().map(s),
        Some(hex(CHILD_CBC_PFS_I2R_A))
    );
    assert_eq!(s(&c.responder_to_initiator.encr), hex(CHILD_CBC_PFS_R2I_E));
    assert_eq!(
        c.responder_to_initiator.integ.as_ref().map(s),
        Some(hex(CHILD_CBC_PFS_R2I_A))
    );

    // Lengths for the other ESP proposals.
    for (p, e, a) in [
        ("aes128gcm16", 20, None),
        ("aes128-sha256", 16, Some(32)),
        ("aes256-sha1", 32, Some(20)),
    ] {
        let esp = EspProposal::parse(p).unwrap();
        let c = ChildSaKeys::derive(
            ike.prf,
            &ike_keys.sk_d,
            &esp,
            None,
            &Inputs::ni(),
            &Inputs::nr(),
        )
        .unwrap();
        assert_eq!(c.responder_to_initiator.encr.len(), e, "{p}");
        assert_eq!(
            c.responder_to_initiator
                .integ
                .as_ref()
                .map(SecretBytes::len),
            a,
            "{p}"
        );
    }
}

#[test]
fn keys_are_redacted_in_debug() {
    let p = IkeProposal::parse("aes256-sha256-modp2048").unwrap();
    let keys =
        IkeSaKeys::derive(&p, &Inputs::gir_modp(), &Inputs::ni(), &Inputs::nr(), 1, 2).unwrap();
    let text = format!("{keys:?}");
    assert!(text.contains("redacted"));
    let sk_d_hex: String = keys
        .sk_d
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!text.contains(&sk_d_hex));
    assert!(!text.contains(&format!("{:?}", keys.sk_d.as_bytes())));
    assert!(format!("{:?}", Inputs::gir_modp()).contains("redacted"));
}

// ---------------------------------------------------------------------------------------------
// An IKE SA's two ends, end to end: DH, keys, SK payloads both ways.

#[test]
fn two_ends_derive_the_same_keys_and_talk() {
    let mut rng = SeededRandom::from_u64(42);
    for proposal in [
        "aes256gcm16-prfsha256-ecp256",
        "aes256-sha256-modp2048",
        "aes128-sha1-modp2048",
        "aes256gcm16-prfsha384-ecp384",
        "aes256-sha256-curve25519",
    ] {
        let p = IkeProposal::parse(proposal).unwrap();
        let (i_priv, i_pub) = p.dh.generate(&mut rng).unwrap();
        let (r_priv, r_pub) = p.dh.generate(&mut rng).unwrap();
        let mut ni = [0u8; 32];
        let mut nr = [0u8; 32];
        rng.fill(&mut ni);
        rng.fill(&mut nr);
        let i_keys =
            IkeSaKeys::derive(&p, &p.dh.shared(&i_priv, &r_pub).unwrap(), &ni, &nr, 11, 22)
                .unwrap();
        let r_keys =
            IkeSaKeys::derive(&p, &p.dh.shared(&r_priv, &i_pub).unwrap(), &ni, &nr, 11, 22)
                .unwrap();
        assert_eq!(s(&i_keys.sk_d), s(&r_keys.sk_d));
        let mut i_out = i_keys.initiator_sk().unwrap();
        let r_in = r_keys.initiator_sk().unwrap();
        let mut r_out = r_keys.responder_sk().unwrap();
        let i_in = i_keys.responder_sk().unwrap();
        let aad = b"header+sk";
        let body = i_out.seal(aad, b"IDi AUTH SA TSi TSr", &mut rng).unwrap();
        assert_eq!(r_in.open(aad, &body).unwrap(), b"IDi AUTH SA TSi TSr");
        // Directions are not interchangeable.
        assert!(i_in.open(aad, &body).is_err());
        let body = r_out.seal(aad, b"IDr AUTH", &mut rng).unwrap();
        assert_eq!(i_in.open(aad, &body).unwrap(), b"IDr AUTH");
    }
}

// ---------------------------------------------------------------------------------------------
// PSK authentication (RFC 7296 2.15).

#[test]
fn psk_auth_known_answer() {
    let p = IkeProposal::parse("aes256-sha256-modp2048").unwrap();
    let keys = IkeSaKeys::derive(
        &p,
        &Inputs::gir_modp(),
        &Inputs::ni(),
        &Inputs::nr(),
        Inputs::SPI_I,
        Inputs::SPI_R,
    )
    .unwrap();
    let real_message: Vec<u8> = (0..300u32).map(|i| ((i * 3) & 0xff) as u8).collect();
    let id_body = [1, 0, 0, 0, 192, 0, 2, 1]; // ID_IPV4_ADDR, RESERVED, 192.0.2.1
    let psk = b"correct horse battery staple";
    let octets = signed_octets(p.prf, &real_message, &Inputs::nr(), &keys.sk_pi, &id_body);
    assert_eq!(octets.len(), 300 + 32 + 32);
    assert_eq!(&octets[..300], &real_message[..]);
    assert_eq!(&octets[300..332], &Inputs::nr()[..]);
    assert_eq!(&octets[332..], &hex(PSK_SIGNED_TAIL)[..]);
    let auth = psk_auth(p.prf, psk, &octets);
    assert_eq!(auth, hex(PSK_AUTH));
    assert!(verify_psk_auth(p.prf, psk, &octets, &auth));
    assert!(!verify_psk_auth(p.prf, b"wrong", &octets, &auth));
    assert!(!verify_psk_auth(p.prf, psk, &octets, &auth[..31]));
    let mut bad = auth.clone();
    bad[0] ^= 1;
    assert!(!verify_psk_auth(p.prf, psk, &octets, &bad));
    assert_eq!(KEY_PAD_FOR_IKEV2.len(), 17);
}

// ---------------------------------------------------------------------------------------------
// NAT detection (RFC 7296 2.23).

#[test]
fn nat_detection_known_answers() {
    let v4: SocketAddr = "192.0.2.1:500".parse().unwrap();
    assert_eq!(
        nat_detection_hash(Inputs::SPI_I, 0, v4).to_vec(),
        hex(NATD_V4)
    );
    // An IPv4-mapped IPv6 socket address hashes as the IPv4 address.
    let mapped: SocketAddr = "[::ffff:192.0.2.1]:500".parse().unwrap();
    assert_eq!(
        nat_detection_hash(Inputs::SPI_I, 0, mapped).to_vec(),
        hex(NATD_V4)
    );
    let v6: SocketAddr = "[2001:db8::1]:4500".parse().unwrap();
    assert_eq!(
        nat_detection_hash(Inputs::SPI_I, Inputs::SPI_R, v6).to_vec(),
        hex(NATD_V6)
    );
    assert_ne!(
        nat_detection_hash(Inputs::SPI_I, 0, "192.0.2.1:4500".parse().unwrap()),
        nat_detection_hash(Inputs::SPI_I, 0, v4)
    );
}

// ---------------------------------------------------------------------------------------------
// Cookies (RFC 7296 2.6).

#[test]
fn cookies_verify_rotate_and_expire() {
    let mut rng = SeededRandom::from_u64(5);
    let t0 = Instant::now();
    let life = Duration::from_secs(60);
    let mut jar = CookieJar::new(t0, life, &mut rng);
    let ni = [7u8; 32];
    let ip = "198.51.100.7".parse().unwrap();
    let c = jar.cookie(t0, &mut rng, &ni, ip, 99);
    assert_eq!(c.len(), COOKIE_LEN);
    assert!(jar.verify(t0, &c, &ni, ip, 99));
    // Bound to Ni, IPi and SPIi.
    assert!(!jar.verify(t0, &c, &[8u8; 32], ip, 99));
    assert!(!jar.verify(t0, &c, &ni, "198.51.100.8".parse().unwrap(), 99));
    assert!(!jar.verify(t0, &c, &ni, ip, 100));
    let mut bad = c;
    bad[10] ^= 1;
    assert!(!jar.verify(t0, &bad, &ni, ip, 99));
    assert!(!jar.verify(t0, &c[..35], &ni, ip, 99));
    let mut other_version = c;
    other_version[3] ^= 1;
    assert!(!jar.verify(t0, &other_version, &ni, ip, 99));

    // After one rotation the old cookie still verifies, with a new version in new cookies.
    let t1 = t0 + Duration::from_secs(61);
    let c1 = jar.cookie(t1, &mut rng, &ni, ip, 99);
    assert_ne!(c1[..4], c[..4]);
    assert!(jar.verify(t1, &c, &ni, ip, 99));
    assert!(jar.verify(t1, &c1, &ni, ip, 99));
    // Two lifetimes after its secret was created, a cookie is refused.
    assert!(!jar.verify(t0 + Duration::from_secs(120), &c, &ni, ip, 99));
    // After a second rotation the first secret is gone.
    let t2 = t1 + Duration::from_secs(61);
    jar.rotate_if_due(t2, &mut rng);
    assert!(!jar.verify(t1, &c, &ni, ip, 99));
    assert!(jar.verify(t2, &c1, &ni, ip, 99));
    assert!(!format!("{jar:?}").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Randomness.

#[test]
fn seeded_random_is_deterministic_and_system_random_fills() {
    let mut a = SeededRandom::new(b"seed");
    let mut b = SeededRandom::new(b"seed");
    let mut x = [0u8; 100];
    let mut y = [0u8; 100];
    a.fill(&mut x[..33]);
    a.fill(&mut x[33..]);
    b.fill(&mut y);
    assert_eq!(x, y);
    let mut c = SeededRandom::new(b"other");
    c.fill(&mut y);
    assert_ne!(x, y);
    let mut z = [0u8; 64];
    SystemRandom::new().fill(&mut z);
    assert_ne!(z, [0u8; 64]);
    // Usable through a trait object.
    let dynamic: &mut dyn Random = &mut a;
    let (_, public) = DhGroup::Curve25519.generate(dynamic).unwrap();
    assert_eq!(public.len(), 32);
}

// ---------------------------------------------------------------------------------------------
// Expected values, from the one-off Python 3 run described at the top of this file.

const CBC256_SKEYSEED: &str = "c1f2403b5d4d9ac51814745bad358cdd62e04159fe7f8401eaabf9078da790f1";
const CBC256_SK_D: &str = "c3a1866c8aa455ba6aca535e238aa3608ccc35d321b6e5defaea43578f626b48";
const CBC256_SK_AI: &str = "778f71112bba75b82839223b4ea13ba993e66e9e0ac6ac1169e79aef524d7191";
const CBC256_SK_AR: &str = "c42c992b2df639a258e48647fc0311f85359fc2f3e2d72f503fd052bc774e73f";
const CBC256_SK_EI: &str = "430adf4c666c64d7061eab154830cf05e52ef0a30c01e2fd81d7b53746c97f76";
const CBC256_SK_ER: &str = "ff657e3b073b9a8f8f144f7c565a65d3856e45651558d495b95a079d290f2445";
const CBC256_SK_PI: &str = "1d865a8367391b58e5848e76b35fbe9bcec459930fbda0aa62cd97c090bd21b5";
const CBC256_SK_PR: &str = "f1140b641a50ab5baadd52353357fc05d00044d447a25cd7a8a8c22eabde26e3";
const GCM256_SKEYSEED: &str = "b603a567f8e3a5f14eccbb9628462b695cc4b1ccd08f953bafe507ac9a74ab868d4d372a7a9d3df4817d5475c2d53090";
const GCM256_SK_D: &str = "25b5f6527af795ba759d8a293b6686239632f720ab5ba4aa28d428c6aa4aa5736d8bdcb6f26c04b1791071d29ec7df6e";
const GCM256_SK_AI: &str = "";
const GCM256_SK_AR: &str = "";
const GCM256_SK_EI: &str =
    "634a5e4def62d1ef639a9d56b46d949ecb007ed38102a6accc65734aa4acad256aff8490";
const GCM256_SK_ER: &str =
    "f76faaa05fe859735751fd1cf10ef57371e223c233315d31a7c2e93b2f2ad0264ed14ffe";
const GCM256_SK_PI: &str = "b7e0f0c42189dc1bc86f0ff126180851825af840438d8477e76a26049e9642391afd6c1d81a93e3ee0ca76c735e10436";
const GCM256_SK_PR: &str = "7ad22cabc08a9682f05cae9a74753296082419fd5fca12e9188cc4f363157f384fe7f11226aef1a85787a3f524eae7f0";
const CBC128_SKEYSEED: &str = "bf430e0c9863d9e2fca6907bd1f2fd2fe44b82c3";
const CBC128_SK_D: &str = "0ead62646604e9fd6458c9ce26ef77dabdb538d1";
const CBC128_SK_AI: &str = "9412ec12bb8a4e1713428cedfc872bd49fdba827";
const CBC128_SK_AR: &str = "85888e1c731e95db80ee628652003f154d1c6572";
const CBC128_SK_EI: &str = "011c8410f4280b880501598ef05d1903";
const CBC128_SK_ER: &str = "97d8868117e0edd4cdc28ba7fcfd5006";
const CBC128_SK_PI: &str = "bdaaa08ac5fbd3ae6ae4f22100944fae9d926cc4";
const CBC128_SK_PR: &str = "ab9add5c07975647acf6b2e87d42d91008afbe4a";
const CHILD_GCM_I2R: &str =
    "15c99aa475dc3321da16cc263b4b9c6dfa9a2b371edd0ad8161c72f321241ef44ada1193";
const CHILD_GCM_R2I: &str =
    "89525c5a7bcdc0c9da80df5f2177b30977e2e542490f147987bae5a62d8791f34c96b47e";
const CHILD_CBC_PFS_I2R_E: &str =
    "142bc5cb30db3f8955e553d4d9128ff495a95942a51f5c329a5952f41e7d62a3";
const CHILD_CBC_PFS_I2R_A: &str =
    "023f5f79ccc7e509619131c24e1e61df99369ecaa23b164dea6b5c167923ff34";
const CHILD_CBC_PFS_R2I_E: &str =
    "dec9d5069eb8274640a019ea11b6921e3bc265c4d86be2213db6267f4f7dc366";
const CHILD_CBC_PFS_R2I_A: &str =
    "dfb7a47853eebef11c6ccdbb2f0f84b06a2611a2ffbf2af5283741ce617d8feb";
const REKEY_SKEYSEED: &str = "4c7ee6978848f9609ae62d24fc6401fb655b2177373c812854c90074fc9cb86b";
const REKEY_SK_D: &str = "f223de3153d9237a0c1fa4306645fc00c17b930e210a4dc92e74bec69484db07bb71e1ce749b9da27de9d6171f0d1de1";
const REKEY_SK_AI: &str = "";
const REKEY_SK_AR: &str = "";
const REKEY_SK_EI: &str =
    "fc9db3c2cb14103c30d8d4a8c9f021a34593084a017c4034f8a0244b2d0fd44067dde7fa";
const REKEY_SK_ER: &str =
    "2a28cfbfc56fa48b5eb7abc993b13d83eebe9758800f3fb28ea4740d4556e6b752f29efb";
const REKEY_SK_PI: &str = "dd35de367fd3e0f8b5d8bab48a9c77675cbeb35d83b9ec9191104be86aaf6f3b54a755826c4c5aa0769600308b9eec7a";
const REKEY_SK_PR: &str = "56c83465ed005a635f5f2b5a6dea247325f30ef22aefdea5836ffd1a69145f6de7a82b4abf98486680a87bf685433af6";
const PSK_SIGNED_TAIL: &str = "b45d47f069533cf6572842386bb11a03343b84d726a1ac534042ddeaaf085312";
const PSK_AUTH: &str = "7da49940fabb7e9b5fc21ff264622491e24e09a08d29eed12cd825d9ff98e07d";
const NATD_V4: &str = "644b4575455bd6fcc1efe2be8162a9218e448e5f";
const NATD_V6: &str = "1ee24423bf8f59515e0265c6d0f08be3d038f7e5";
