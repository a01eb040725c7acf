//! Golden tests: messages written out byte by byte from the layouts of RFC 7296 section 3,
//! shaped as strongSwan sends them (transforms in the order ENCR, INTEG, PRF, D-H, ESN; a
//! Key Length attribute on AES; ESP proposals with an ESN transform).

use std::net::Ipv4Addr;

use super::*;

/// Concatenates byte groups, so that each field can be written on its own line.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn ke_data() -> Vec<u8> {
    (0u8..64).collect()
}

fn nonce() -> Vec<u8> {
    (0xa0u8..0xc0).collect()
}

const SPI_I: u64 = 0x8a3f_56c2_11d0_e901;

/// IKE_SA_INIT request: SA (aes256gcm16-prfsha256-ecp256), KE (group 19, 64 bytes), Ni (32
/// bytes), N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP).
#[rustfmt::skip]
fn ike_sa_init_bytes() -> Vec<u8> {
    let ke = ke_data();
    let ni = nonce();
    cat(&[
        // IKE header (3.1)
        &SPI_I.to_be_bytes(),        // IKE SA Initiator's SPI
        &[0; 8],                     // IKE SA Responder's SPI: zero in the first message
        &[33],                       // Next Payload: SA
        &[0x20],                     // MjVer 2, MnVer 0
        &[34],                       // Exchange Type: IKE_SA_INIT
        &[0x08],                     // Flags: Initiator
        &[0, 0, 0, 0],               // Message ID 0
        &[0, 0, 0, 232],             // Length: 28 + 40 + 72 + 36 + 28 + 28
        // SA payload (3.3)
        &[34, 0x00, 0, 40],          // Next Payload KE, C=0, Payload Length 40
        // Proposal substructure (3.3.1)
        &[0, 0, 0, 36],              // Last Substruc 0 (last), RESERVED, Proposal Length 36
        &[1, 1, 0, 3],               // Proposal Num 1, Protocol ID IKE, SPI Size 0, 3 transforms
        // Transform substructures (3.3.2)
        &[3, 0, 0, 12],              // Last Substruc 3 (more), RESERVED, Transform Length 12
        &[1, 0, 0, 20],              // Type ENCR, RESERVED, ID ENCR_AES_GCM_16 (20)
        &[0x80, 14, 0x01, 0x00],     // Attribute AF=1 (TV), Key Length (14) = 256
        &[3, 0, 0, 8],               // more, Transform Length 8
        &[2, 0, 0, 5],               // Type PRF, ID PRF_HMAC_SHA2_256 (5)
        &[0, 0, 0, 8],               // last, Transform Length 8
        &[4, 0, 0, 19],              // Type D-H, ID 19 (256-bit random ECP)
        // KE payload (3.4)
        &[40, 0x00, 0, 72],          // Next Payload Nonce, Payload Length 8 + 64
        &[0, 19, 0, 0],              // D-H Group Num 19, RESERVED
        &ke,
        // Nonce payload (3.9)
        &[41, 0x00, 0, 36],          // Next Payload Notify, Payload Length 4 + 32
        &ni,
        // Notify payload (3.10)
        &[41, 0x00, 0, 28],          // Next Payload Notify, Payload Length 8 + 20
        &[0, 0, 0x40, 0x04],         // Protocol ID 0, SPI Size 0, NAT_DETECTION_SOURCE_IP (16388)
        &[0x11; 20],                 // SHA-1 hash
        &[0, 0x00, 0, 28],           // Next Payload none, Payload Length 28
        &[0, 0, 0x40, 0x05],         // NAT_DETECTION_DESTINATION_IP (16389)
        &[0x22; 20],
    ])
}

fn ike_sa_init_message() -> Message {
    let header = Header::new(
        SPI_I,
        0,
        ExchangeType::IKE_SA_INIT,
        Flags {
            initiator: true,
            ..Flags::default()
        },
        0,
    );
    Message {
        header,
        payloads: vec![
            Payload::Sa(SaPayload {
                proposals: vec![Proposal {
                    number: 1,
                    protocol: ProtocolId::IKE,
                    spi: Spi::None,
                    transforms: vec![
                        Transform::encr(EncrId::AES_GCM_16, Some(256)),
                        Transform::prf(PrfId::HMAC_SHA2_256),
                        Transform::dh(DhGroup::ECP_256),
                    ],
                }],
            }),
            Payload::Ke(KePayload {
                group: DhGroup::ECP_256,
                data: ke_data(),
            }),
            Payload::Nonce(nonce()),
            Payload::Notify(Notify::with_data(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                [0x11; 20],
            )),
            Payload::Notify(Notify::with_data(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                [0x22; 20],
            )),
        ],
    }
}

#[test]
fn ike_sa_init_request_encodes_byte_for_byte() {
    let bytes = ike_sa_init_bytes();
    assert_eq!(bytes.len(), 232);
    let encoded = ike_sa_init_message().encode().unwrap();
    for (i, (got, want)) in encoded.iter().zip(&bytes).enumerate() {
        assert_eq!(got, want, "byte {i}");
    }
    assert_eq!(encoded.len(), bytes.len());
}

#[test]
fn ike_sa_init_request_decodes() {
    let bytes = ike_sa_init_bytes();
    let decoded = Message::decode(&bytes).unwrap();
    let mut expected = ike_sa_init_message();
    expected.header.next_payload = PayloadType::SA;
    expected.header.length = 232;
    assert_eq!(decoded, expected);

    let Payload::Sa(sa) = &decoded.payloads[0] else {
        panic!()
    };
    let encr = sa.proposals[0]
        .transforms_of(TransformType::ENCR)
        .next()
        .unwrap();
    assert_eq!(encr.key_length(), Some(256));
    assert_eq!(EncrId(encr.id), EncrId::AES_GCM_16);
    assert!(decoded
        .notify(NotifyType::NAT_DETECTION_DESTINATION_IP)
        .is_some());
}

#[test]
fn ike_sa_init_errors_point_at_the_payload() {
    let bytes = ike_sa_init_bytes();
    // Cut the datagram inside the KE payload (offset 68) and fix the header length.
    let mut cut = bytes[..100].to_vec();
    cut[24..28].copy_from_slice(&100u32.to_be_bytes());
    assert_eq!(
        Message::decode(&cut),
        Err(DecodeError::Truncated {
            payload_type: PayloadType::KE,
            offset: 68,
            needed: 72,
            available: 32
        })
    );
    // A datagram longer than the header says.
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        Message::decode(&long),
        Err(DecodeError::LengthMismatch {
            header_length: 232,
            datagram_length: 233
        })
    );
    // A proposal length that runs past the SA payload.
    let mut bad = bytes.clone();
    bad[35] = 37;
    assert_eq!(
        Message::decode(&bad),
        Err(DecodeError::Malformed {
            payload_type: PayloadType::SA,
            offset: 28,
            reason: "proposal length beyond the SA payload"
        })
    );
    // An unknown critical payload in place of the last Notify.
    let mut crit = bytes.clone();
    crit[176] = 200; // the first Notify's Next Payload
    crit[205] = 0x80; // the critical bit of the payload that follows
    assert_eq!(
        Message::decode(&crit),
        Err(DecodeError::UnsupportedCriticalPayload {
            payload_type: PayloadType(200),
            offset: 204
        })
    );
    let notify = DecodeError::UnsupportedCriticalPayload {
        payload_type: PayloadType(200),
        offset: 204,
    }
    .suggested_notify()
    .unwrap();
    assert_eq!(notify.data, [200]);
    // The same payload without the critical bit is kept raw.
    crit[205] = 0;
    let decoded = Message::decode(&crit).unwrap();
    assert_eq!(
        decoded.payloads[4],
        Payload::Raw(RawPayload {
            payload_type: PayloadType(200),
            critical: false,
            body: bytes[208..].to_vec()
        })
    );
}

const ESP_SPI: u32 = 0xc1a2_b3d4;

/// IKE_AUTH request plaintext (inside SK): IDi (ID_IPV4_ADDR 192.0.2.2), AUTH (shared key MIC,
/// 32 bytes), SA (ESP, 4-byte SPI, aes256gcm16 without ESN), TSi 10.1.0.0/16, TSr 10.2.0.0/16.
#[rustfmt::skip]
fn ike_auth_plaintext() -> Vec<u8> {
    cat(&[
        // IDi (3.5)
        &[39, 0, 0, 12],             // Next Payload AUTH, Payload Length 8 + 4
        &[1, 0, 0, 0],               // ID Type ID_IPV4_ADDR, RESERVED
        &[192, 0, 2, 2],
        // AUTH (3.8)
        &[33, 0, 0, 40],             // Next Payload SA, Payload Length 8 + 32
        &[2, 0, 0, 0],               // Auth Method: Shared Key MIC, RESERVED
        &[0x5a; 32],
        // SA (3.3)
        &[44, 0, 0, 36],             // Next Payload TSi, Payload Length 4 + 32
        &[0, 0, 0, 32],              // last proposal, Proposal Length 8 + 4 + 12 + 8
        &[1, 3, 4, 2],               // Proposal Num 1, Protocol ID ESP, SPI Size 4, 2 transforms
        &ESP_SPI.to_be_bytes(),      // SPI
        &[3, 0, 0, 12],
        &[1, 0, 0, 20],              // ENCR_AES_GCM_16
        &[0x80, 14, 0x01, 0x00],     // Key Length 256
        &[0, 0, 0, 8],
        &[5, 0, 0, 0],               // ESN: No Extended Sequence Numbers
        // TSi (3.13)
        &[45, 0, 0, 24],             // Next Payload TSr, Payload Length 8 + 16
        &[1, 0, 0, 0],               // Number of TSs 1, RESERVED
        &[7, 0, 0, 16],              // TS_IPV4_ADDR_RANGE, any protocol, Selector Length 16
        &[0, 0, 0xff, 0xff],         // ports 0..65535
        &[10, 1, 0, 0],
        &[10, 1, 0xff, 0xff],
        // TSr
        &[0, 0, 0, 24],              // Next Payload none
        &[1, 0, 0, 0],
        &[7, 0, 0, 16],
        &[0, 0, 0xff, 0xff],
        &[10, 2, 0, 0],
        &[10, 2, 0xff, 0xff],
    ])
}

fn ike_auth_payloads() -> Vec<Payload> {
    let ts = |a: [u8; 4]| TsPayload {
        selectors: vec![TrafficSelector::from_prefix(Ipv4Addr::from(a).into(), 16).unwrap()],
    };
    vec![
        Payload::IdI(IdPayload::ip(Ipv4Addr::new(192, 0, 2, 2).into())),
        Payload::Auth(AuthPayload {
            method: AuthMethod::SHARED_KEY_MIC,
            data: vec![0x5a; 32],
        }),
        Payload::Sa(SaPayload {
            proposals: vec![Proposal {
                number: 1,
                protocol: ProtocolId::ESP,
                spi: Spi::U32(ESP_SPI),
                transforms: vec![
                    Transform::encr(EncrId::AES_GCM_16, Some(256)),
                    Transform::esn(EsnId::NO_ESN),
                ],
            }],
        }),
        Payload::TsI(ts([10, 1, 0, 0])),
        Payload::TsR(ts([10, 2, 0, 0])),
    ]
}

#[test]
fn ike_auth_plaintext_encodes_byte_for_byte() {
    let bytes = ike_auth_plaintext();
    assert_eq!(bytes.len(), 136);
    let (first, plain) = encode_inner(&ike_auth_payloads()).unwrap();
    assert_eq!(first, PayloadType::IDI);
    for (i, (got, want)) in plain.iter().zip(&bytes).enumerate() {
        assert_eq!(got, want, "byte {i}");
    }
    assert_eq!(plain.len(), bytes.len());
}

#[test]
fn ike_auth_plaintext_decodes() {
    let payloads = decode_inner(PayloadType::IDI, &ike_auth_plaintext()).unwrap();
    assert_eq!(payloads, ike_auth_payloads());
    let Payload::IdI(id) = &payloads[0] else {
        panic!()
    };
    // The bytes AUTH signs: RestOfInitIDPayload.
    assert_eq!(id.body(), ike_auth_plaintext()[4..12]);
    // The wrong first type: the IDi bytes read as a Nonce are too short.
    assert!(matches!(
        decode_inner(PayloadType::NONCE, &ike_auth_plaintext()),
        Err(DecodeError::Malformed {
            payload_type: PayloadType::NONCE,
            offset: 0,
            ..
        })
    ));
}

#[test]
fn ike_auth_request_framing() {
    // header || SK header || IV (8) || ciphertext (136 + 1 pad-length octet) || ICV (16).
    let body_len = 8 + 137 + 16;
    let header = Header::new(
        SPI_I,
        0x0102_0304_0506_0708,
        ExchangeType::IKE_AUTH,
        Flags {
            initiator: true,
            ..Flags::default()
        },
        1,
    );
    let prefix = SkPayload::message_prefix(&header, PayloadType::IDI, body_len).unwrap();
    #[rustfmt::skip]
    let want = cat(&[
        &SPI_I.to_be_bytes(),
        &[1, 2, 3, 4, 5, 6, 7, 8],
        &[46, 0x20, 35, 0x08],        // Next Payload SK, 2.0, IKE_AUTH, Initiator
        &[0, 0, 0, 1],                // Message ID 1
        &[0, 0, 0, 193],              // Length 28 + 4 + 161
        &[35, 0, 0, 165],             // SK: Next Payload IDi, Payload Length 4 + 161
    ]);
    assert_eq!(prefix, want);
}

#[test]
fn response_header_for_ike_sa_init() {
    let request = Message::decode(&ike_sa_init_bytes()).unwrap().header;
    let mut response = Header::response_to(&request);
    response.spi_r = 0x0102_0304_0506_0708;
    let bytes = Message {
        header: response,
        payloads: vec![],
    }
    .encode()
    .unwrap();
    assert_eq!(bytes[16..20], [0, 0x20, 34, 0x20]);
}
