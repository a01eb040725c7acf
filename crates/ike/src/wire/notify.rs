//! The Notify payload (RFC 7296 section 3.10) and the notify message types.
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Protocol ID  |   SPI Size    |      Notify Message Type      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~                Security Parameter Index (SPI)                 ~
//! ~                       Notification Data                       ~
//! ```

use super::payload::{need, BodyError};
use super::reader::Reader;
use super::sa::{DhGroup, ProtocolId, Spi};
use super::PayloadType;

wire_number! {
    /// Notify Message Type. Types below 16384 report errors; 16384 and above carry status.
    pub struct NotifyType(u16);
    /// An unknown payload with the critical bit set; data: its one-octet type.
    UNSUPPORTED_CRITICAL_PAYLOAD = 1;
    /// A message for an IKE SA we do not know.
    INVALID_IKE_SPI = 4;
    /// The major version is not supported; the response header carries the closest one.
    INVALID_MAJOR_VERSION = 5;
    /// A malformed message; only inside an authenticated exchange.
    INVALID_SYNTAX = 7;
    /// A message ID out of the window; only inside an authenticated exchange.
    INVALID_MESSAGE_ID = 9;
    /// A packet for an SA we do not have (ESP with an unknown SPI).
    INVALID_SPI = 11;
    /// None of the proposals is acceptable.
    NO_PROPOSAL_CHOSEN = 14;
    /// The KE payload's group is not the one selected; data: the acceptable group (2 octets).
    INVALID_KE_PAYLOAD = 17;
    /// Authentication failed.
    AUTHENTICATION_FAILED = 24;
    /// Only a single pair of traffic selectors is acceptable.
    SINGLE_PAIR_REQUIRED = 34;
    /// No more Child SAs are accepted on this IKE SA.
    NO_ADDITIONAL_SAS = 35;
    /// No internal address can be assigned.
    INTERNAL_ADDRESS_FAILURE = 36;
    /// A CP payload was required and not sent.
    FAILED_CP_REQUIRED = 37;
    /// The traffic selectors are not acceptable.
    TS_UNACCEPTABLE = 38;
    /// An IPsec packet whose selectors do not match its SA; data: SPI then packet.
    INVALID_SELECTORS = 39;
    /// Temporarily unable to proceed (for instance a simultaneous rekey); retry later.
    TEMPORARY_FAILURE = 43;
    /// The Child SA to rekey does not exist.
    CHILD_SA_NOT_FOUND = 44;
    /// Sent with the first IKE_AUTH: other IKE SAs with this peer are stale.
    INITIAL_CONTACT = 16384;
    /// The number of outstanding requests the sender accepts; data: 4 octets.
    SET_WINDOW_SIZE = 16385;
    /// The responder narrowed and more traffic selectors would be acceptable in other SAs.
    ADDITIONAL_TS_POSSIBLE = 16386;
    /// IPComp supported; data: CPI and transform ID.
    IPCOMP_SUPPORTED = 16387;
    /// SHA-1 of SPIi, SPIr, source address and port (RFC 7296 section 2.23).
    NAT_DETECTION_SOURCE_IP = 16388;
    /// SHA-1 of SPIi, SPIr, destination address and port.
    NAT_DETECTION_DESTINATION_IP = 16389;
    /// A stateless cookie (section 2.6); data: 1 to 64 octets.
    COOKIE = 16390;
    /// The Child SA should be in transport mode.
    USE_TRANSPORT_MODE = 16391;
    /// Certificates may be looked up by URL.
    HTTP_CERT_LOOKUP_SUPPORTED = 16392;
    /// This CREATE_CHILD_SA rekeys the Child SA whose SPI (protocol, SPI) the notification names.
    REKEY_SA = 16393;
    /// The sender does not accept TFC padding.
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394;
    /// Non-first fragments are sent on this SA too.
    NON_FIRST_FRAGMENTS_ALSO = 16395;
    /// MOBIKE (RFC 4555) supported.
    MOBIKE_SUPPORTED = 16396;
    /// Multiple authentication exchanges (RFC 4739) supported.
    MULTIPLE_AUTH_SUPPORTED = 16404;
    /// Redirection (RFC 5685) supported.
    REDIRECT_SUPPORTED = 16406;
    /// Childless IKE SA initiation (RFC 6023) supported.
    CHILDLESS_IKEV2_SUPPORTED = 16418;
    /// IKE fragmentation (RFC 7383) supported.
    IKEV2_FRAGMENTATION_SUPPORTED = 16430;
    /// Hash algorithms for digital signatures (RFC 7427); data: 2-octet identifiers.
    SIGNATURE_HASH_ALGORITHMS = 16431;
    /// IKE_INTERMEDIATE exchanges (RFC 9242) supported.
    INTERMEDIATE_EXCHANGE_SUPPORTED = 16438;
}

impl NotifyType {
    /// True for error types (below 16384). RFC 7296 section 3.10.1: an unknown error type in a
    /// response means the request failed; unknown error types in requests and unknown status
    /// types are ignored.
    pub const fn is_error(self) -> bool {
        self.0 < 16384
    }
}

/// A Notify payload.
///
/// `protocol` is kept as received; RFC 7296 says it is zero and ignored when `spi` is empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notify {
    /// Protocol ID of the SA concerned, or [`ProtocolId::NONE`].
    pub protocol: ProtocolId,
    /// SPI of the SA concerned (empty for the IKE SA, which the header names).
    pub spi: Spi,
    /// Notify Message Type.
    pub notify_type: NotifyType,
    /// Notification Data.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notification with no SPI and no data.
    pub fn new(notify_type: NotifyType) -> Notify {
        Notify {
            protocol: ProtocolId::NONE,
            spi: Spi::None,
            notify_type,
            data: Vec::new(),
        }
    }

    /// A notification with no SPI and some data.
    pub fn with_data(notify_type: NotifyType, data: impl Into<Vec<u8>>) -> Notify {
        Notify {
            data: data.into(),
            ..Notify::new(notify_type)
        }
    }

    /// INVALID_KE_PAYLOAD naming the group the responder wants.
    pub fn invalid_ke_payload(group: DhGroup) -> Notify {
        Notify::with_data(NotifyType::INVALID_KE_PAYLOAD, group.0.to_be_bytes())
    }

    /// UNSUPPORTED_CRITICAL_PAYLOAD naming the payload type.
    pub fn unsupported_critical_payload(payload_type: PayloadType) -> Notify {
        Notify::with_data(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, [payload_type.0])
    }

    /// REKEY_SA for the Child SA of `protocol` whose inbound SPI (as the sender knows it) is
    /// `spi`.
    pub fn rekey_sa(protocol: ProtocolId, spi: u32) -> Notify {
        Notify {
            protocol,
            spi: Spi::U32(spi),
            ..Notify::new(NotifyType::REKEY_SA)
        }
    }

    /// The group of an INVALID_KE_PAYLOAD notification with 2 octets of data.
    pub fn invalid_ke_group(&self) -> Option<DhGroup> {
        if self.notify_type != NotifyType::INVALID_KE_PAYLOAD {
            return None;
        }
        <[u8; 2]>::try_from(self.data.as_slice())
            .ok()
            .map(|b| DhGroup(u16::from_be_bytes(b)))
    }

    /// The payload type of an UNSUPPORTED_CRITICAL_PAYLOAD notification with 1 octet of data.
    pub fn unsupported_payload_type(&self) -> Option<PayloadType> {
        match (self.notify_type, self.data.as_slice()) {
            (NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, [t]) => Some(PayloadType(*t)),
            _ => None,
        }
    }

    /// The hash algorithm identifiers of a SIGNATURE_HASH_ALGORITHMS notification whose data
    /// has an even length.
    pub fn signature_hash_algorithms(&self) -> Option<Vec<u16>> {
        let chunks = self.data.chunks_exact(2);
        if self.notify_type != NotifyType::SIGNATURE_HASH_ALGORITHMS
            || !chunks.remainder().is_empty()
        {
            return None;
        }
        Some(chunks.map(|c| u16::from_be_bytes([c[0], c[1]])).collect())
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.protocol.0, self.spi.len()]);
        out.extend_from_slice(&self.notify_type.0.to_be_bytes());
        self.spi.write(out);
        out.extend_from_slice(&self.data);
    }

    pub(crate) fn decode_body(body: &[u8]) -> Result<Notify, BodyError> {
        let mut r = Reader::new(body);
        let [protocol, spi_size, t0, t1] = need(
            r.array::<4>(),
            "Notify payload shorter than its fixed fields",
        )?;
        let spi = need(
            r.take(usize::from(spi_size)),
            "Notify SPI beyond the payload",
        )?;
        let spi = need(Spi::from_bytes(spi), "Notify SPI size is not 0, 4 or 8")?;
        Ok(Notify {
            protocol: ProtocolId(protocol),
            spi,
            notify_type: NotifyType(u16::from_be_bytes([t0, t1])),
            data: r.rest().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let mut out = Vec::new();
        Notify::rekey_sa(ProtocolId::ESP, 0x0102_0304).encode_body(&mut out);
        assert_eq!(out, [3, 4, 0x40, 0x09, 1, 2, 3, 4]);
        assert_eq!(
            Notify::decode_body(&out).unwrap(),
            Notify::rekey_sa(ProtocolId::ESP, 0x0102_0304)
        );
        assert!(Notify::decode_body(&[3, 4, 0x40, 0x09, 1, 2, 3]).is_err());
        assert!(Notify::decode_body(&[3, 2, 0x40, 0x09, 1, 2]).is_err());
        assert!(Notify::decode_body(&[0, 0, 0x40]).is_err());
    }

    #[test]
    fn data_helpers() {
        let n = Notify::invalid_ke_payload(DhGroup::MODP_2048);
        assert_eq!(n.data, [0, 14]);
        assert_eq!(n.invalid_ke_group(), Some(DhGroup::MODP_2048));
        assert_eq!(Notify::new(NotifyType::COOKIE).invalid_ke_group(), None);
        let u = Notify::unsupported_critical_payload(PayloadType(200));
        assert_eq!(u.unsupported_payload_type(), Some(PayloadType(200)));
        let h = Notify::with_data(NotifyType::SIGNATURE_HASH_ALGORITHMS, [0, 2, 0, 3, 0, 4]);
        assert_eq!(h.signature_hash_algorithms(), Some(vec![2, 3, 4]));
        assert!(NotifyType::NO_PROPOSAL_CHOSEN.is_error());
        assert!(!NotifyType::COOKIE.is_error());
        assert_eq!(
            format!("{:?}", NotifyType::NAT_DETECTION_SOURCE_IP),
            "NAT_DETECTION_SOURCE_IP"
        );
        assert_eq!(format!("{}", NotifyType(12345)), "NotifyType(12345)");
    }
}
