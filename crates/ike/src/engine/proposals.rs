//! Between the crypto module's typed proposals and the wire's SA payload proposals; identities;
//! words for error messages.

use std::net::IpAddr;

use crate::crypto::{self, DhGroup, EncrAlg, EspProposal, IkeProposal, IntegAlg, PrfAlg};
use crate::wire::{
    self, Attribute, AttributeType, AttributeValue, IdPayload, Proposal, ProtocolId, Spi,
    TrafficSelector,
};

/// A crypto transform as the wire carries it.
fn to_wire(t: &crypto::Transform) -> wire::Transform {
    wire::Transform {
        transform_type: wire::TransformType(t.kind.id()),
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

/// A wire transform for the crypto module, if its type is one of the five.
fn from_wire(t: &wire::Transform) -> Option<crypto::Transform> {
    Some(crypto::Transform {
        kind: crypto::TransformType::from_id(t.transform_type.0)?,
        id: t.id,
        key_len: t.key_length(),
    })
}

fn numbered(proposals: Vec<Proposal>) -> Vec<Proposal> {
    let mut out: Vec<Proposal> = Vec::with_capacity(proposals.len());
    for mut p in proposals {
        if out.iter().any(|o| o.transforms == p.transforms) || out.len() >= 255 {
            continue;
        }
        p.number = (out.len() + 1) as u8;
        out.push(p);
    }
    out
}

/// Our IKE proposals for an SA payload (SPI none in IKE_SA_INIT, ours when rekeying).
pub(super) fn ike_offer(proposals: &[IkeProposal], spi: Spi) -> Vec<Proposal> {
    numbered(
        proposals
            .iter()
            .map(|p| Proposal {
                number: 0,
                protocol: ProtocolId::IKE,
                spi,
                transforms: p.transforms().iter().map(to_wire).collect(),
            })
            .collect(),
    )
}

/// Our ESP proposals for an SA payload: never ESN; the PFS group only when `with_dh`
/// (CREATE_CHILD_SA; IKE_AUTH carries none, RFC 7296 1.2).
pub(super) fn esp_offer(proposals: &[EspProposal], spi: u32, with_dh: bool) -> Vec<Proposal> {
    numbered(
        proposals
            .iter()
            .map(|p| {
                let p = EspProposal {
                    esn: false,
                    dh: if with_dh { p.dh } else { None },
                    ..*p
                };
                Proposal {
                    number: 0,
                    protocol: ProtocolId::ESP,
                    spi: Spi::U32(spi),
                    transforms: p.transforms().iter().map(to_wire).collect(),
                }
            })
            .collect(),
    )
}

/// The IKE proposal a chosen wire proposal stands for.
pub(super) fn ike_from_wire(p: &Proposal) -> Option<IkeProposal> {
    let t: Option<Vec<crypto::Transform>> = p.transforms.iter().map(from_wire).collect();
    IkeProposal::from_transforms(&t?).ok()
}

/// The ESP proposal a chosen wire proposal stands for (ESN refused).
pub(super) fn esp_from_wire(p: &Proposal) -> Option<EspProposal> {
    let t: Option<Vec<crypto::Transform>> = p.transforms.iter().map(from_wire).collect();
    EspProposal::from_transforms(&t?)
        .ok()
        .filter(|esp| !esp.esn)
}

/// The responder's choice: the first of `ours` (local preference) that the peer offered,
/// preferring one whose D-H group is `ke_group` (the KE payload's) so that no INVALID_KE round
/// trip is needed.
pub(super) fn select(
    offered: &wire::SaPayload,
    ours: &[Proposal],
    ke_group: Option<u16>,
) -> Option<Proposal> {
    if let Some(group) = ke_group {
        let matching: Vec<Proposal> = ours
            .iter()
            .filter(|p| {
                p.transforms_of(wire::TransformType::DH)
                    .any(|t| t.id == group)
            })
            .cloned()
            .collect();
        if let Some(choice) = offered.select(&matching) {
            return Some(choice);
        }
    }
    offered.select(ours)
}

/// The initiator's check of a responder's choice: one of ours, by number.
pub(super) fn chosen<'a>(offered: &'a [Proposal], choice: &Proposal) -> Option<&'a Proposal> {
    offered
        .iter()
        .find(|o| o.number == choice.number && choice.is_selection_of(o))
}

/// The D-H group of a wire proposal's (first) D-H transform, if any and not NONE.
pub(super) fn dh_of(p: &Proposal) -> Option<DhGroup> {
    p.transforms_of(wire::TransformType::DH)
        .find(|t| t.id != 0)
        .and_then(|t| DhGroup::from_id(t.id))
}

/// An identity as configured: an IP literal, `user@domain`, or an FQDN; `None` is `addr`.
pub(super) fn identity(configured: Option<&str>, addr: IpAddr) -> IdPayload {
    match configured {
        None => IdPayload::ip(addr),
        Some(s) => match s.parse::<IpAddr>() {
            Ok(ip) => IdPayload::ip(ip),
            Err(_) if s.contains('@') => IdPayload::rfc822(s),
            Err(_) => IdPayload::fqdn(s),
        },
    }
}

/// An identity in words.
pub(super) fn describe_id(id: &IdPayload) -> String {
    match id.id_type {
        wire::IdType::IPV4_ADDR | wire::IdType::IPV6_ADDR => match id.ip_addr() {
            Some(ip) => ip.to_string(),
            None => format!("{:?} of {} bytes", id.id_type, id.data.len()),
        },
        wire::IdType::FQDN | wire::IdType::RFC822_ADDR => {
            format!("{:?} {}", id.id_type, String::from_utf8_lossy(&id.data))
        }
        other => format!("{other:?} of {} bytes", id.data.len()),
    }
}

/// Identities are equal when type and data are (FQDN / RFC 822 ignoring ASCII case).
pub(super) fn same_identity(a: &IdPayload, b: &IdPayload) -> bool {
    a.id_type == b.id_type
        && match a.id_type {
            wire::IdType::FQDN | wire::IdType::RFC822_ADDR => a.data.eq_ignore_ascii_case(&b.data),
            _ => a.data == b.data,
        }
}

/// One transform in strongSwan's proposal keywords where known (`aes256gcm16`, `prfsha256`,
/// `ecp256`), the registry name otherwise.
fn describe_transform(t: &wire::Transform) -> String {
    match t.transform_type {
        wire::TransformType::ENCR => EncrAlg::from_id(t.id)
            .zip(t.key_length())
            .and_then(|(e, bits)| e.keyword(bits))
            .map(str::to_owned)
            .unwrap_or_else(|| match t.key_length() {
                Some(bits) => format!("{:?}-{bits}", wire::EncrId(t.id)),
                None => format!("{:?}", wire::EncrId(t.id)),
            }),
        wire::TransformType::INTEG => IntegAlg::from_id(t.id)
            .map(|i| i.keyword().to_owned())
            .unwrap_or_else(|| format!("{:?}", wire::IntegId(t.id))),
        wire::TransformType::PRF => PrfAlg::from_id(t.id)
            .map(|p| p.keyword().to_owned())
            .unwrap_or_else(|| format!("{:?}", wire::PrfId(t.id))),
        wire::TransformType::DH => DhGroup::from_id(t.id)
            .map(|g| g.keyword().to_owned())
            .unwrap_or_else(|| format!("{:?}", wire::DhGroup(t.id))),
        wire::TransformType::ESN => match t.id {
            0 => "noesn".to_owned(),
            1 => "esn".to_owned(),
            id => format!("ESN({id})"),
        },
        other => format!("{other:?}({})", t.id),
    }
}

/// Proposals in words: `aes256gcm16-prfsha256-ecp256, aes256-sha256-prfsha256-modp2048`.
pub(super) fn describe(proposals: &[Proposal]) -> String {
    if proposals.is_empty() {
        return "nothing".to_owned();
    }
    proposals
        .iter()
        .map(|p| {
            // strongSwan's order: ENCR, INTEG, PRF, D-H, ESN.
            let mut transforms: Vec<&wire::Transform> = p.transforms.iter().collect();
            transforms.sort_by_key(|t| match t.transform_type {
                wire::TransformType::ENCR => 0,
                wire::TransformType::INTEG => 1,
                wire::TransformType::PRF => 2,
                wire::TransformType::DH => 3,
                _ => 4,
            });
            transforms
                .into_iter()
                .map(describe_transform)
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An ESP proposal as strongSwan writes it, without the default `-noesn`.
pub(super) fn esp_name(p: &EspProposal) -> String {
    let s = p.to_string();
    s.strip_suffix("-noesn").map(str::to_owned).unwrap_or(s)
}

/// Traffic selectors in words: `10.1.0.0-10.1.255.255`, with protocol and ports when not any.
pub(super) fn describe_ts(ts: &[TrafficSelector]) -> String {
    if ts.is_empty() {
        return "nothing".to_owned();
    }
    ts.iter()
        .map(|t| {
            let (start, end) = match t.addresses {
                wire::AddressRange::V4 { start, end } => (start.to_string(), end.to_string()),
                wire::AddressRange::V6 { start, end } => (start.to_string(), end.to_string()),
            };
            let mut s = format!("{start}-{end}");
            if t.ip_protocol != 0 {
                s.push_str(&format!(" proto {}", t.ip_protocol));
            }
            if (t.start_port, t.end_port) != (0, u16::MAX) {
                s.push_str(&format!(" ports {}-{}", t.start_port, t.end_port));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when every selector of `got` lies within one of `proposed`.
pub(super) fn ts_within(got: &[TrafficSelector], proposed: &[TrafficSelector]) -> bool {
    !got.is_empty() && got.iter().all(|g| proposed.iter().any(|p| p.covers(g)))
}
