//! The daemon's configuration file (TOML): reading, validation and the typed result.
//!
//! [`load`] and [`parse`] return either a [`Config`] in which every rule below holds, or every
//! problem found in the file ([`ConfigErrors`]); nothing is returned until the whole file is valid.
//! Each error names the file, the line where it is known, the field and the rule broken:
//!
//! ```text
//! causeway.toml:14: gateway[0] (er-gw).sku: unknown ExpressRoute SKU `Standrd` (known: ...)
//! causeway.toml:31: connection[1] (circuit-2).prefixes[0]: `10.2.0.1/16` has host bits set (...)
//! ```
//!
//! The file:
//!
//! ```toml
//! [vnet]
//! name = "vnet1"
//! address_space = ["10.1.0.0/16", "fd00:1::/48"]
//! gateway_subnet = "10.1.255.0/27"          # IPv4, inside address_space, /29 or larger
//! # gateway_subnet_v6 = "fd00:1:0:ffff::/64" # optional: inside an IPv6 address_space prefix, /124 or larger
//! [vnet.interface]                           # the VNet-side TUN
//! name = "cw-vnet0"
//! netns = "lab-vnet"                         # optional (default: the daemon's own netns)
//! addresses = ["10.1.0.10/16", "fd00:1::10/64"]  # optional
//! mtu = 1500                                 # optional, default 1500
//! txqueuelen = 1000                          # optional, default 1000
//! install_routes = true                      # optional, default true
//! offload = true                             # optional, default true; false: no TUN offloads
//!
//! [control]                                  # optional
//! socket = "/run/causeway/control.sock"      # default; must be absolute
//! # listen = "127.0.0.1:9475"                # optional TCP listener for the control API...
//! # token_file = "/etc/causeway/token"       # ...with its bearer token (both or neither)
//!
//! [metrics]                                  # optional; absent: no metrics server
//! listen = "127.0.0.1:9474"                  # ADDRESS:PORT of the Prometheus HTTP endpoint
//!
//! [[gateway]]
//! name = "er-gw"
//! type = "ExpressRoute"
//! sku = "Standard"                           # ErGwScale also takes scale_units = 1..40
//!
//! [[gateway]]
//! name = "vpn-gw"
//! type = "Vpn"
//! sku = "VpnGw1"                             # Basic, Standard, HighPerformance, VpnGw1..5[AZ]
//! # shaping = true                           # false: capacity measurements only (no SKU rates)
//!
//! [[connection]]
//! name = "circuit-1"
//! gateway = "er-gw"
//! type = "ExpressRoute"
//! prefixes = ["10.2.0.0/16", "fd00:2::/48"]
//! routing_weight = 0                         # optional, 0..=32000, default 0
//! [connection.interface]                     # the circuit TUN: same keys as [vnet.interface]
//! name = "cw-er0"
//! netns = "lab-onprem"
//! addresses = ["10.2.0.10/16", "fd00:2::10/64"]
//!
//! [[connection]]
//! name = "s2s-1"
//! gateway = "vpn-gw"
//! type = "IPsec"
//! local_address = "192.0.2.1"                # this gateway's underlay address (the UDP socket
//!                                            # is bound in the daemon's own netns)
//! peer_address = "192.0.2.2"                 # the on-premises VPN device
//! prefixes = ["10.3.0.0/16"]                 # the remote traffic selectors
//! local_port = 4500                          # optional, 1..=65535, default 4500
//! peer_port = 4500                           # optional, 1..=65535, default 4500
//! mtu = 1400                                 # optional tunnel MTU, 576..=9000, default 1400
//! mss_clamp = 1350                           # optional, 536..=mtu-40 or 0 (off), default mtu-50
//! # Keys negotiated by IKEv2 with a pre-shared key: exactly one of
//! shared_key = "..."                         # text as written, or "0x..." hex
//! # shared_key_file = "/etc/causeway/s2s-1.psk"  # absolute; a regular file, mode 0600 or stricter
//! initiate = true                            # optional, default true; false: responder only
//! # optional, defaults from DOMAIN.md (DEFAULT_* constants):
//! # ike_proposals = ["aes256gcm16-prfsha256-ecp256", "aes256-sha256-modp2048"]
//! # esp_proposals = ["aes256gcm16", "aes256-sha256"]    # "-esn" suffix: extended sequence numbers
//! # ike_lifetime = "8h"                      # 300 s..=2 d, default 28800 s
//! # child_lifetime = "27000s"                # 300 s..=2 d, default 27000 s
//! # child_lifetime_bytes = "102400000KB"     # >= 1024KB (1 KB = 1024 bytes), default 102400000KB
//! # dpd_timeout = "45s"                      # 9 s..=3600 s, default 45 s
//! # local_id = "vpn.example.net"             # default: local_address
//! # remote_id = "192.0.2.2"                  # default: peer_address
//!
//! [[connection]]                             # the other keying: SAs keyed by hand
//! name = "s2s-2"
//! gateway = "vpn-gw"
//! type = "IPsec"
//! local_address = "192.0.2.1"
//! peer_address = "192.0.2.3"
//! prefixes = ["10.4.0.0/16"]
//! [connection.manual_sa]
//! esp = "aes256gcm16"                        # or aes128gcm16, chacha20poly1305, aes256-sha256, aes128-sha256
//! out_spi = 0x00001001                       # 256..=0xffffffff
//! out_key = "HEX"                            # AEAD: key + 4-byte salt (36 bytes for aes256gcm16);
//!                                            # CBC: encryption key + 32-byte HMAC key (64 for aes256-sha256)
//! in_spi = 0x00002002                        # unique among all IPsec connections
//! in_key = "HEX"
//! esn = false                                # optional, default false
//! replay_window = 1024                       # optional, multiple of 64 in 1024..=1048576
//! ```
//!
//! The rules, besides TOML syntax, unknown keys, value types and required keys:
//!
//! - prefixes and addresses must parse (no host bits set in a prefix); `vnet.address_space` is
//!   not empty and its prefixes do not overlap each other; `vnet.gateway_subnet` is IPv4, /29 or
//!   larger and inside an address-space prefix; `vnet.gateway_subnet_v6` is IPv6, /124 or larger
//!   and inside an IPv6 address-space prefix.
//! - gateways: unique non-empty names; at most one gateway per type; a known type and SKU;
//!   `scale_units` (1..=40) with `ErGwScale` and only there; a `Basic` SKU (which cannot coexist)
//!   never alongside a gateway of the other type; no more connections of the gateway's type on
//!   it than its SKU's `max_connections` (circuits, or site-to-site tunnels).
//! - connections: unique non-empty names; `gateway` names a gateway of the type the connection
//!   needs (`ExpressRoute` -> ExpressRoute, `IPsec` -> Vpn); each type takes its own keys (an
//!   ExpressRoute key on an IPsec connection, or the reverse, is an unknown key); at least one
//!   prefix; a connection's prefixes overlap neither each other nor the VNet address space
//!   (default routes `0.0.0.0/0` and `::/0` are exempt from both overlap rules: they are the
//!   catch-all that longest-prefix match resolves); the same prefix on two ExpressRoute
//!   connections needs different routing weights, on two IPsec connections it is an error (no
//!   weights for tunnels), and on an ExpressRoute and an IPsec connection it is fine (the
//!   circuit wins, the tunnel is the backup).
//! - ExpressRoute connections: `routing_weight` 0..=32000; an `interface`.
//! - IPsec connections: `local_address` and `peer_address` unicast IPs (not unspecified,
//!   multicast or broadcast) of one family and different; ports 1..=65535; (local_address,
//!   local_port, peer_address, peer_port) used by one connection only; `mtu` 576..=9000, at least
//!   1280 when the VNet has IPv6; `mss_clamp` 0 or 536..=mtu-40 (all of these for both kinds of
//!   keying).
//! - keying ([`Keying`]): either `[connection.manual_sa]` ([`Keying::Manual`]) or IKEv2 with a
//!   pre-shared key, `shared_key` or `shared_key_file` ([`Keying::Ike`]); not both, not
//!   neither, and not both `shared_key` and `shared_key_file`. The IKE keys (`initiate`,
//!   proposals, lifetimes, `dpd_timeout`, identities) are refused on a manually keyed
//!   connection; `esn` and `replay_window` exist only in `[connection.manual_sa]`.
//! - `[connection.manual_sa]`: a known `esp` cipher ([`Cipher`]), SPIs in 256..=0xffffffff, each
//!   `in_spi` used once in the file (inbound ESP is demultiplexed by SPI), keys that are hex of
//!   the cipher's key-material length, and `replay_window` a multiple of 64 in 1024..=1048576.
//! - IKEv2 ([`IkeConfig`]): `shared_key` not empty (nor only whitespace), text as written or
//!   `0x` then hex ([`SharedKey::parse`]); `shared_key_file` an absolute path to a regular file
//!   with no permission bits for group or others, read at load time (so [`parse`] reads it too),
//!   at most [`MAX_SHARED_KEY_FILE_LEN`] bytes, one trailing newline stripped, then read as
//!   `shared_key`; `ike_proposals` / `esp_proposals` non-empty arrays of strongSwan proposal
//!   strings that [`IkeProposal::parse`] / [`EspProposal::parse`] accept, no proposal twice;
//!   durations as `"45s"`, `"5m"`, `"8h"`, `"2d"` or a number of seconds, `ike_lifetime` and
//!   `child_lifetime` in [`LIFETIME_RANGE`], `dpd_timeout` in [`DPD_TIMEOUT_RANGE`] (the child
//!   lifetime may exceed the IKE lifetime: RFC 7296 does not order them);
//!   `child_lifetime_bytes` as `"102400000KB"` (`B`, `KB`, `MB`, `GB`, 1 KB = 1024 bytes as in
//!   the Azure documentation) or a number of bytes, at least [`MIN_CHILD_LIFETIME_BYTES`];
//!   `local_id` / `remote_id` 1..=255 bytes without control characters.
//! - keys are never echoed: not in errors, not in `Debug` output ([`SecretKey`] and
//!   [`SharedKey`] print `<redacted>`), and the file text and parsed tree are zeroized after
//!   reading (best effort: the TOML parser's own temporaries are out of reach). The contents of
//!   a `shared_key_file` appear in no message.
//! - interfaces (the VNet's and each connection's): a Linux interface name (1..=15 bytes of
//!   `[A-Za-z0-9_.-]`, not `.`/`..`, no leading `-`); each (netns, name) pair used once; a netns
//!   name that is a plain file name under `/run/netns`; `mtu` 576..=65535, and >= 1280 when the
//!   interface has an IPv6 address; the VNet interface does not take the gateway's own address
//!   ([`VnetConfig::gateway_address_v4`], [`VnetConfig::gateway_address_v6`]).
//! - `vnet.name` is not empty; `control.socket` is an absolute path; `metrics.listen` and
//!   `control.listen`, when present, are socket addresses (`ADDRESS:PORT`, port not 0);
//!   `control.listen` and `control.token_file` come together, and the token file is checked as
//!   a `shared_key_file` is (absolute, regular, private to its owner, at most 4096 bytes).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_engine::flow::{FlowTimeouts, DEFAULT_MAX_FLOWS};
use causeway_engine::prefix::{Family, InterfaceAddress, Prefix};
use causeway_engine::sku::{GatewayType, Sku};
use causeway_esp::cipher::MAX_KEY_MATERIAL_LEN;
use causeway_esp::{Cipher, KeyError, KeyMaterial, ReplayWindow};
use causeway_ike::crypto::{EspProposal, IkeProposal, ProposalError, SecretBytes};
use zeroize::Zeroize;

// ---------------------------------------------------------------------------------------------
// The typed result
// ---------------------------------------------------------------------------------------------

/// A whole, valid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from (as given to [`load`] or [`parse`]).
    pub path: PathBuf,
    /// The virtual network the gateways serve (`[vnet]`).
    pub vnet: VnetConfig,
    /// The control socket (`[control]`).
    pub control: ControlConfig,
    /// The Prometheus metrics endpoint (`[metrics]`).
    pub metrics: MetricsConfig,
    /// The gateways (`[[gateway]]`), in file order.
    pub gateways: Vec<GatewayConfig>,
    /// The connections (`[[connection]]`), in file order.
    pub connections: Vec<ConnectionConfig>,
}

/// The virtual network (`[vnet]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnetConfig {
    /// The VNet's name (not empty).
    pub name: String,
    /// The VNet's address space: IPv4 and/or IPv6 prefixes that do not overlap each other.
    pub address_space: Vec<Prefix>,
    /// The IPv4 gateway subnet: inside `address_space`, /29 or larger.
    pub gateway_subnet: Prefix,
    /// An optional IPv6 gateway subnet: inside an IPv6 `address_space` prefix, /124 or larger.
    pub gateway_subnet_v6: Option<Prefix>,
    /// The VNet-side TUN interface.
    pub interface: InterfaceConfig,
}

impl VnetConfig {
    /// The gateway's own IPv4 address: host 4 of `gateway_subnet` (hosts .0 to .3 of the subnet
    /// are reserved, as in Azure). For `10.1.255.0/27` that is `10.1.255.4`.
    ///
    /// # Panics
    ///
    /// If `gateway_subnet` is not an IPv4 prefix of length 29 or shorter, which a validated
    /// config never has.
    pub fn gateway_address_v4(&self) -> Ipv4Addr {
        derive_gateway_v4(&self.gateway_subnet)
            .expect("a validated gateway_subnet is an IPv4 prefix of /29 or larger")
    }

    /// The gateway's own IPv6 address, if the VNet has IPv6:
    ///
    /// - with `gateway_subnet_v6`: its host `::4`;
    /// - otherwise, when `address_space` has an IPv6 prefix, host `::4` of the **last /64 inside
    ///   the first IPv6 address-space prefix** (`fd00:1::/48` gives `fd00:1:0:ffff::4`). Should
    ///   that prefix be longer than /64, host `::4` of the prefix itself (None when it has fewer
    ///   than 5 addresses);
    /// - otherwise None.
    pub fn gateway_address_v6(&self) -> Option<Ipv6Addr> {
        derive_gateway_v6(self.gateway_subnet_v6.as_ref(), &self.address_space)
    }
}

/// A TUN interface the daemon creates (`[vnet.interface]`, `[connection.interface]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// The interface name: 1..=15 bytes of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// The named network namespace (`/run/netns/NAME`) to create it in; None: the daemon's own.
    pub netns: Option<String>,
    /// Addresses to assign, with their prefix lengths (may be empty).
    pub addresses: Vec<InterfaceAddress>,
    /// The MTU: 576..=65535, at least 1280 with an IPv6 address. Default 1500.
    pub mtu: u32,
    /// The transmit queue length to set; None: the daemon's default, 1000.
    pub txqueuelen: Option<u32>,
    /// Whether to install routes through this interface (to the prefixes reachable through it).
    /// Default true.
    pub install_routes: bool,
    /// Whether the TUN is opened with offloads (`TUNSETOFFLOAD`: checksum, TSO4/6, TSO-ECN), so
    /// that the kernel hands over 64 KB super-packets and packets with partial checksums. False:
    /// the virtio header stays but no offload is set, so every packet read is a single, fully
    /// checksummed one (slower; for comparison and for testing). Default true.
    pub offload: bool,
}

/// The control socket (`[control]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// The absolute path of the control socket. Default [`DEFAULT_CONTROL_SOCKET`].
    pub socket: PathBuf,
    /// The absolute path of the directory for state that survives a restart (sequence-number
    /// leases of manual SAs). Default [`DEFAULT_STATE_DIR`].
    pub state_dir: PathBuf,
    /// The TCP address to serve the control API on too (`listen`), and the bearer token its
    /// requests must carry (read from `token_file`); both or neither.
    pub tcp: Option<(SocketAddr, SharedKey)>,
}

/// The Prometheus metrics endpoint (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// The TCP address and port to serve `GET /metrics` on; None (the default): no server.
    /// Any address is accepted; one that is not loopback exposes the counters to the network.
    pub listen: Option<SocketAddr>,
}

/// Where the control socket is when `[control]` does not say.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/causeway/control.sock";

/// Where the daemon keeps state that must survive a restart (the sequence-number leases of
/// manually keyed SAs), when `[control] state_dir` is not set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/causeway";

/// The default interface MTU.
pub const DEFAULT_MTU: u32 = 1500;

/// A gateway (`[[gateway]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The gateway's name, unique among gateways.
    pub name: String,
    /// ExpressRoute or Vpn (at most one gateway of each type).
    pub gateway_type: GatewayType,
    /// The SKU, which sets the gateway's limits (`Sku::limits`).
    pub sku: Sku,
    /// Whether the SKU's rates are enforced (bits/s, packets/s, the per-tunnel cap). Default
    /// true; false is for measuring what the machine can forward (the connection count still
    /// follows the SKU).
    pub shaping: bool,
    /// `max_flows`: a lower limit of concurrent flows than the SKU's (a lab, a test); None:
    /// the SKU's (`FlowLimits::from_sku`). 1..= the SKU's flows (VPN SKUs, which publish none:
    /// `flow::DEFAULT_MAX_FLOWS`).
    pub max_flows: Option<u64>,
    /// `max_new_flows_per_sec`: a lower new-flow rate than the SKU's; None: the SKU's (VPN
    /// SKUs: not limited). 1..= the SKU's rate (VPN SKUs: [`MAX_NEW_FLOWS_PER_SEC`]).
    pub max_new_flows_per_sec: Option<u64>,
    /// `[gateway.flow_timeouts]`: idle timeouts of the flow table (defaults: `FlowTimeouts`).
    pub flow_timeouts: FlowTimeouts,
}

/// The largest `max_new_flows_per_sec` of a gateway whose SKU publishes no rate (VPN).
pub const MAX_NEW_FLOWS_PER_SEC: u64 = 10_000_000;
/// Idle timeouts of `[gateway.flow_timeouts]`, in seconds.
pub const FLOW_TIMEOUT_RANGE: RangeInclusive<u64> = 1..=604_800;

/// A connection of a gateway (`[[connection]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The connection's name, unique among connections.
    pub name: String,
    /// The name of the gateway it belongs to.
    pub gateway: String,
    /// The index of that gateway in [`Config::gateways`].
    pub gateway_index: usize,
    /// The on-premises prefixes reachable through the connection.
    pub prefixes: Vec<Prefix>,
    /// The route preference among ExpressRoute connections offering the same prefix: the
    /// highest wins. 0..=32000, default 0. Always 0 for IPsec connections (tunnels have no
    /// weight: the key is not accepted there).
    pub routing_weight: u16,
    /// What kind of connection it is, with the settings of that kind.
    pub kind: ConnectionKind,
}

/// The kind of a connection, with its kind-specific settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionKind {
    /// An ExpressRoute circuit connection: plain forwarding through a TUN interface.
    ExpressRoute {
        /// The circuit-side TUN.
        interface: InterfaceConfig,
    },
    /// A site-to-site IPsec tunnel of the Vpn gateway: ESP in UDP (RFC 3948) to an on-premises
    /// VPN device.
    IPsec(IpsecConfig),
}

/// A site-to-site IPsec connection (`type = "IPsec"`): the tunnel's endpoints and its SAs.
///
/// The UDP socket is bound to (`local_address`, `local_port`) in the daemon's own network
/// namespace (the underlay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecConfig {
    /// This gateway's underlay address; the same family as `peer_address`, neither unspecified
    /// nor multicast.
    pub local_address: IpAddr,
    /// The on-premises VPN device; not `local_address`.
    pub peer_address: IpAddr,
    /// The local UDP port (NAT traversal encapsulation). Default [`DEFAULT_IPSEC_PORT`].
    pub local_port: u16,
    /// The peer's UDP port. Default [`DEFAULT_IPSEC_PORT`].
    pub peer_port: u16,
    /// The tunnel MTU: inner packets larger than this are too big for the tunnel.
    /// 576..=9000, at least 1280 when the VNet has IPv6. Default [`DEFAULT_TUNNEL_MTU`].
    pub mtu: u32,
    /// The TCP MSS that SYNs are clamped to in both directions; None: no clamping (`0` in the
    /// file). 536..=`mtu` - 40; default `mtu` - 50 (1350 with the default MTU), at least 536.
    pub mss_clamp: Option<u16>,
    /// How the tunnel's SAs get their keys: by hand (`[connection.manual_sa]`) or by IKEv2 with
    /// a pre-shared key (`shared_key` / `shared_key_file`).
    pub keying: Keying,
}

/// How an IPsec connection's SAs are keyed: exactly one of the two in a valid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keying {
    /// A fixed pair of SAs from `[connection.manual_sa]`.
    Manual(ManualSa),
    /// IKEv2 (RFC 7296) with pre-shared-key authentication negotiates, rekeys and keeps alive
    /// the SAs (`shared_key` or `shared_key_file`, and the optional IKE keys).
    Ike(IkeConfig),
}

impl Keying {
    /// The manual SAs, for a manually keyed connection.
    pub fn manual(&self) -> Option<&ManualSa> {
        match self {
            Keying::Manual(sa) => Some(sa),
            Keying::Ike(_) => None,
        }
    }

    /// The IKEv2 settings, for an IKE-keyed connection.
    pub fn ike(&self) -> Option<&IkeConfig> {
        match self {
            Keying::Manual(_) => None,
            Keying::Ike(ike) => Some(ike),
        }
    }

    /// `"manual"` or `"ike"`.
    pub fn name(&self) -> &'static str {
        match self {
            Keying::Manual(_) => "manual",
            Keying::Ike(_) => "ike",
        }
    }
}

/// A pair of manually keyed ESP SAs (`[connection.manual_sa]`), one per direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualSa {
    /// The ESP transform of both SAs (`esp`): an AEAD, or AES-CBC with HMAC-SHA-256-128.
    pub cipher: Cipher,
    /// The SPI of outbound packets (the peer's inbound SA): 256..=0xffffffff.
    pub out_spi: u32,
    /// The outbound keying material, of `cipher.key_material_len()` bytes: for an AEAD the key
    /// then its 4-byte salt, for AES-CBC the encryption key then the 32-byte integrity key.
    pub out_key: SecretKey,
    /// The SPI of inbound packets: 256..=0xffffffff, unique among the IPsec connections of the
    /// file (inbound ESP is demultiplexed by SPI).
    pub in_spi: u32,
    /// The inbound keying material, of `cipher.key_material_len()` bytes.
    pub in_key: SecretKey,
    /// 64-bit extended sequence numbers (RFC 4303). Default false.
    pub esn: bool,
    /// The anti-replay window of the inbound SA, in packets: a multiple of 64 in
    /// 1024..=1048576. Default [`ReplayWindow::DEFAULT_SIZE`] (1024).
    pub replay_window: u32,
}

/// ESP keying material from the configuration (see [`ManualSa::out_key`] for the layout).
///
/// The bytes are zeroized on drop (each clone holds its own copy and zeroizes it), never
/// printed (`Debug` and `Display` show `<redacted>`) and compared in constant time.
#[derive(Clone)]
pub struct SecretKey {
    bytes: [u8; MAX_KEY_MATERIAL_LEN],
    len: usize,
}

impl SecretKey {
    /// Parses hex keying material for `cipher` with the rules of [`KeyMaterial::from_hex`]
    /// (`0x` prefix optional; ASCII whitespace and colons ignored; exactly
    /// `cipher.key_material_len()` bytes). The error never contains the key.
    pub fn from_hex(cipher: Cipher, text: &str) -> Result<SecretKey, KeyError> {
        // Validation, and its error messages, are the ESP crate's.
        drop(KeyMaterial::from_hex(cipher, text)?);
        let mut key = SecretKey {
            bytes: [0; MAX_KEY_MATERIAL_LEN],
            len: 0,
        };
        let trimmed = text.trim_start();
        let body = match trimmed.get(..2) {
            Some("0x") | Some("0X") => &trimmed[2..],
            _ => trimmed,
        };
        let mut digits = 0usize;
        for c in body.chars() {
            // Every other character is a hex digit: `from_hex` accepted the text.
            let Some(v) = c.to_digit(16) else { continue };
            if let Some(b) = key.bytes.get_mut(digits / 2) {
                // `v` < 16, so the cast is lossless.
                *b |= (v as u8) << if digits & 1 == 0 { 4 } else { 0 };
            }
            digits += 1;
        }
        key.len = (digits / 2).min(MAX_KEY_MATERIAL_LEN);
        Ok(key)
    }

    /// The keying material for an SA of `cipher`.
    ///
    /// # Panics
    ///
    /// If the key's length is not `cipher.key_material_len()`. A key of a validated
    /// [`ManualSa`] always fits that SA's `cipher`.
    pub fn key_material(&self, cipher: Cipher) -> KeyMaterial {
        match KeyMaterial::new(cipher, &self.bytes[..self.len]) {
            Ok(km) => km,
            Err(e) => panic!("SecretKey::key_material: {e}"),
        }
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl PartialEq for SecretKey {
    /// Constant time in the key bytes.
    fn eq(&self, other: &SecretKey) -> bool {
        let diff = self
            .bytes
            .iter()
            .zip(&other.bytes)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        self.len == other.len && diff == 0
    }
}

impl Eq for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The default UDP port of both ends of an IPsec connection (NAT traversal, RFC 3948).
pub const DEFAULT_IPSEC_PORT: u16 = 4500;

/// The IKEv2 settings of an IPsec connection keyed by IKE (`shared_key` or `shared_key_file`).
///
/// Every field has its value from the file or its default (DOMAIN.md); see the `DEFAULT_*`
/// constants and [`IkeConfig::with_defaults`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeConfig {
    /// The pre-shared key (RFC 7296 2.15), from `shared_key` or read from `shared_key_file`
    /// at load time. Never printed.
    pub psk: SharedKey,
    /// Whether this end starts the IKE SA (and restarts it after a failure or dead peer
    /// detection); false: responder only. Default true.
    pub initiate: bool,
    /// The IKE SA proposals offered (initiator) or accepted (responder), in order of
    /// preference: not empty, no two alike. Default [`DEFAULT_IKE_PROPOSALS`].
    pub ike_proposals: Vec<IkeProposal>,
    /// The ESP (Child SA) proposals, in order of preference: not empty, no two alike. ESN is
    /// negotiated through them (`-esn` suffix). Default [`DEFAULT_ESP_PROPOSALS`].
    pub esp_proposals: Vec<EspProposal>,
    /// The IKE SA lifetime: rekey before it. [`LIFETIME_RANGE`]; default
    /// [`DEFAULT_IKE_LIFETIME`] (28,800 s).
    pub ike_lifetime: Duration,
    /// The Child (ESP) SA lifetime in time: rekey before it, or before `child_lifetime_bytes`,
    /// whichever comes first. [`LIFETIME_RANGE`]; default [`DEFAULT_CHILD_LIFETIME`] (27,000 s).
    /// Not required to be shorter than `ike_lifetime`.
    pub child_lifetime: Duration,
    /// The Child SA lifetime in bytes (1 KB = 1024 bytes): at least
    /// [`MIN_CHILD_LIFETIME_BYTES`]; default [`DEFAULT_CHILD_LIFETIME_BYTES`]
    /// (102,400,000 KB = 104,857,600,000 bytes).
    pub child_lifetime_bytes: u64,
    /// Dead peer detection: the SAs are closed when the peer has not answered for this long.
    /// [`DPD_TIMEOUT_RANGE`]; default [`DEFAULT_DPD_TIMEOUT`] (45 s).
    pub dpd_timeout: Duration,
    /// The identity this end sends (IDi/IDr) as written (`local_id`); None: `local_address`
    /// as an IP-address identity.
    pub local_id: Option<String>,
    /// The identity the peer must send (`remote_id`); None: `peer_address` as an IP-address
    /// identity.
    pub remote_id: Option<String>,
}

impl IkeConfig {
    /// The settings of a file that gives only the key: every other field at its default.
    pub fn with_defaults(psk: SharedKey) -> IkeConfig {
        IkeConfig {
            psk,
            initiate: true,
            ike_proposals: default_ike_proposals(),
            esp_proposals: default_esp_proposals(),
            ike_lifetime: DEFAULT_IKE_LIFETIME,
            child_lifetime: DEFAULT_CHILD_LIFETIME,
            child_lifetime_bytes: DEFAULT_CHILD_LIFETIME_BYTES,
            dpd_timeout: DEFAULT_DPD_TIMEOUT,
            local_id: None,
            remote_id: None,
        }
    }
}

/// The IKE proposals offered when the file has no `ike_proposals`, strongest first
/// (DOMAIN.md): AES-GCM-256 (strongSwan's AEAD spelling needs an explicit PRF), then
/// AES-256-CBC; DH groups 19, 31, 14, and 2 (MODP-1024, legacy) last.
pub const DEFAULT_IKE_PROPOSALS: &[&str] = &[
    "aes256gcm16-prfsha256-ecp256",
    "aes256gcm16-prfsha256-curve25519",
    "aes256-sha256-modp2048",
    "aes256-sha256-ecp256",
    "aes256-sha1-modp2048",
    "aes256-sha256-modp1024",
];

/// The ESP proposals offered when the file has no `esp_proposals` (DOMAIN.md): AES-GCM-256,
/// AES-GCM-128, AES-256-CBC with HMAC-SHA-256-128; no ESN, no PFS.
pub const DEFAULT_ESP_PROPOSALS: &[&str] = &["aes256gcm16", "aes128gcm16", "aes256-sha256"];

/// [`DEFAULT_IKE_PROPOSALS`], parsed (those that [`IkeProposal::parse`] accepts: all of them).
pub fn default_ike_proposals() -> Vec<IkeProposal> {
    DEFAULT_IKE_PROPOSALS
        .iter()
        .filter_map(|s| IkeProposal::parse(s).ok())
        .collect()
}

/// [`DEFAULT_ESP_PROPOSALS`], parsed.
pub fn default_esp_proposals() -> Vec<EspProposal> {
    DEFAULT_ESP_PROPOSALS
        .iter()
        .filter_map(|s| EspProposal::parse(s).ok())
        .collect()
}

/// The IKE SA lifetime when the file does not say (DOMAIN.md): 28,800 s (8 h).
pub const DEFAULT_IKE_LIFETIME: Duration = Duration::from_secs(28_800);

/// The Child SA lifetime when the file does not say (DOMAIN.md): 27,000 s (7.5 h).
pub const DEFAULT_CHILD_LIFETIME: Duration = Duration::from_secs(27_000);

/// The range of `ike_lifetime` and `child_lifetime`, in seconds: DOMAIN.md's minimum of 300 s,
/// and at most 2 days (this implementation's bound).
pub const LIFETIME_RANGE: RangeInclusive<u64> = 300..=172_800;

/// One KB in `child_lifetime_bytes` (and in the Azure documentation): 1024 bytes.
pub const KB: u64 = 1024;

/// The Child SA byte lifetime when the file does not say (DOMAIN.md): 102,400,000 KB, i.e.
/// 104,857,600,000 bytes.
pub const DEFAULT_CHILD_LIFETIME_BYTES: u64 = 102_400_000 * KB;

/// The smallest `child_lifetime_bytes` (DOMAIN.md): 1,024 KB (1,048,576 bytes).
pub const MIN_CHILD_LIFETIME_BYTES: u64 = 1024 * KB;

/// The dead-peer-detection timeout when the file does not say (DOMAIN.md): 45 s.
pub const DEFAULT_DPD_TIMEOUT: Duration = Duration::from_secs(45);

/// The range of `dpd_timeout`, in seconds (DOMAIN.md).
pub const DPD_TIMEOUT_RANGE: RangeInclusive<u64> = 9..=3600;

/// The longest `local_id` / `remote_id`, in bytes.
pub const MAX_IKE_ID_LEN: usize = 255;

/// The largest `shared_key_file` accepted, in bytes.
pub const MAX_SHARED_KEY_FILE_LEN: usize = 4096;

/// An IKE pre-shared key (`shared_key`, `shared_key_file`): arbitrary bytes, at least one.
///
/// Zeroized on drop (each clone holds its own copy), never printed (`Debug` and `Display` show
/// `<redacted>`), compared in constant time (in the bytes; the lengths may differ in time).
#[derive(Clone)]
pub struct SharedKey(SecretBytes);

impl SharedKey {
    /// Reads a key as the file writes it: `0x` (or `0X`) then hex digits, ASCII whitespace and
    /// colons ignored, give those bytes; anything else is the bytes as written (UTF-8 text in
    /// `shared_key`). At least one byte, and not only whitespace. The error never contains
    /// the key.
    pub fn parse(raw: &[u8]) -> Result<SharedKey, String> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err("must not be empty (nor only whitespace)".to_owned());
        }
        let Some(hex) = raw.strip_prefix(b"0x").or_else(|| raw.strip_prefix(b"0X")) else {
            return Ok(SharedKey(SecretBytes::from_slice(raw)));
        };
        let mut digits = 0usize;
        for (i, &c) in hex.iter().enumerate() {
            if c.is_ascii_hexdigit() {
                digits += 1;
            } else if !(c.is_ascii_whitespace() || c == b':') {
                return Err(format!(
                    "a key written `0x...` must be hex: invalid character at position {} (write a text key without the `0x` prefix)",
                    i + 3
                ));
            }
        }
        if digits == 0 {
            return Err("a key written `0x...` must have at least one byte of hex".to_owned());
        }
        if digits & 1 != 0 {
            return Err("a key written `0x...` must be hex: odd number of hex digits".to_owned());
        }
        let mut key = SecretBytes::zeroed(digits / 2);
        let out = key.as_mut_bytes();
        let mut n = 0usize;
        for &c in hex {
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => continue,
            };
            out[n / 2] |= v << if n & 1 == 0 { 4 } else { 0 };
            n += 1;
        }
        Ok(SharedKey(key))
    }

    /// The key's bytes (for `psk_auth`).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The key as the IKE crate's secret type.
    pub fn as_secret_bytes(&self) -> &SecretBytes {
        &self.0
    }

    /// The number of bytes (never 0 in a validated config).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when it holds no byte (never in a validated config).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl SharedKey {
    /// Whether `candidate` is this key: constant time in the key bytes (the lengths may differ
    /// in time). Also checks the control API's bearer token.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let a = self.as_bytes();
        let diff = a
            .iter()
            .zip(candidate)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        a.len() == candidate.len() && diff == 0
    }
}

impl PartialEq for SharedKey {
    /// Constant time in the key bytes.
    fn eq(&self, other: &SharedKey) -> bool {
        self.matches(other.as_bytes())
    }
}

impl Eq for SharedKey {}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads `shared_key_file`: an absolute path to a regular file, private to its owner (no
/// permission bits for group or others), of at most [`MAX_SHARED_KEY_FILE_LEN`] bytes; one
/// trailing newline (`\n` or `\r\n`) is stripped and the rest is read as [`SharedKey::parse`]
/// reads `shared_key`. Errors name the path, never the contents.
fn read_shared_key_file(path: &Path) -> Result<SharedKey, String> {
    let key = read_private_file(path, "pre-shared key")?;
    SharedKey::parse(&key).map_err(|e| format!("the key in `{}`: {e}", path.display()))
}

/// Reads `[control] token_file`, checked as `shared_key_file` is; the token is the file's
/// contents without surrounding whitespace: printable ASCII, no spaces (an HTTP header value).
fn read_token_file(path: &Path) -> Result<SharedKey, String> {
    let raw = read_private_file(path, "control token")?;
    let token = raw.trim_ascii();
    if token.is_empty() || !token.iter().all(u8::is_ascii_graphic) {
        return Err(format!(
            "the token in `{}` must be printable ASCII without spaces",
            path.display()
        ));
    }
    Ok(SharedKey(SecretBytes::from_slice(token)))
}

/// Reads a secret file (`what`: "pre-shared key", "control token"): an absolute path to a
/// regular file, private to its owner (no permission bits for group or others), of at most
/// [`MAX_SHARED_KEY_FILE_LEN`] bytes, not empty; one trailing newline (`\n` or `\r\n`) is
/// stripped. Errors name the path, never the contents.
fn read_private_file(path: &Path, what: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

    let shown = path.display();
    if !path.is_absolute() {
        return Err(format!("`{shown}` is not an absolute path"));
    }
    // Non-blocking, so that a FIFO does not hang the open; it is then refused as not a file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open `{shown}`: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("`{shown}` is not a regular file"));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "`{shown}` is accessible by group or others (mode {mode:04o}): a {what} must be private to its owner (chmod 600 {shown})"
        ));
    }
    let mut contents = zeroize::Zeroizing::new(Vec::with_capacity(MAX_SHARED_KEY_FILE_LEN + 1));
    (&file)
        .take(MAX_SHARED_KEY_FILE_LEN as u64 + 1)
        .read_to_end(&mut contents)
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if contents.len() > MAX_SHARED_KEY_FILE_LEN {
        return Err(format!(
            "`{shown}` is larger than {MAX_SHARED_KEY_FILE_LEN} bytes: not a {what} file"
        ));
    }
    let mut len = contents.len();
    if contents.ends_with(b"\n") {
        len -= 1;
        if contents[..len].ends_with(b"\r") {
            len -= 1;
        }
    }
    if len == 0 {
        return Err(format!("`{shown}` is empty: it must hold the {what}"));
    }
    contents.truncate(len);
    Ok(contents)
}

/// The default tunnel MTU of an IPsec connection (DOMAIN.md).
pub const DEFAULT_TUNNEL_MTU: u32 = 1400;

/// The range of an IPsec connection's `mtu`.
pub const TUNNEL_MTU_RANGE: RangeInclusive<u32> = 576..=9000;

/// The smallest `mss_clamp` (the IPv4 default MSS, RFC 879).
pub const MIN_MSS_CLAMP: u16 = 536;

/// Largest `routing_weight`.
pub const MAX_ROUTING_WEIGHT: u16 = 32_000;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The field, as a path: `vnet.interface.mtu`, `gateway[0] (er-gw).sku`,
    /// `connection[1] (circuit-2).prefixes[0]`. Empty for errors about the whole file (syntax,
    /// unreadable file).
    pub field: String,
    /// The rule that is broken, in words.
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.rule)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file (never empty when returned by [`load`]/[`parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Reads and validates the configuration file at `path`.
///
/// The file may hold ESP keys: its text is zeroized once it has been read.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&zeroize::Zeroizing::new(text), path),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            field: String::new(),
            rule: format!("cannot read the configuration file: {e}"),
        }])),
    }
}

/// Validates configuration `text`; `path` names the file in errors and in [`Config::path`].
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut cx = Cx {
        file: path,
        text,
        errors: Vec::new(),
    };
    let mut root: Node = match toml::from_str(text) {
        Ok(root) => root,
        Err(e) => {
            let line = e.span().map(|s| cx.line_of(s.start));
            let message = e.message().trim().replace('\n', "; ");
            cx.errors.push(ConfigError {
                file: path.to_path_buf(),
                line,
                field: String::new(),
                rule: format!("TOML syntax error: {message}"),
            });
            return Err(ConfigErrors(cx.errors));
        }
    };
    let config = validate(&mut cx, &root);
    // The tree holds the key strings; the typed result keeps its own (zeroizing) copies.
    scrub(&mut root);
    match config {
        Some(config) if cx.errors.is_empty() => Ok(config),
        _ => {
            if cx.errors.is_empty() {
                // Every path that yields no config reports why; this is a safety net.
                cx.error(None, "", "the configuration is incomplete");
            }
            Err(ConfigErrors(cx.errors))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A TOML tree that keeps the position of every value
// ---------------------------------------------------------------------------------------------

// `toml` reports a value's byte range to a `toml::Spanned<T>`, which asks for it with these
// struct and field names (serde_spanned's protocol). `Spanned` itself fails on the few values
// that have no position (implicit tables such as `a` in `[a.b]` or `a.b = 1`), so `Node` speaks
// the protocol itself and accepts both. The test `line_numbers` fails should the names change.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];
// How `toml` hands a date-time to `deserialize_any`: a map with this single key.
const DATETIME_FIELD: &str = "$__toml_private_datetime";

/// A TOML value and its byte range in the text (None for implicit tables).
#[derive(Debug, Clone)]
struct Node {
    span: Option<Range<usize>>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    String(String),
    Integer(i64),
    Float,
    Boolean(bool),
    Datetime,
    Array(Vec<Node>),
    /// Entries in file order.
    Table(Vec<(String, Node)>),
}

impl Kind {
    fn describe(&self) -> &'static str {
        match self {
            Kind::String(_) => "a string",
            Kind::Integer(_) => "an integer",
            Kind::Float => "a float",
            Kind::Boolean(_) => "a boolean",
            Kind::Datetime => "a date-time",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

impl Node {
    fn bare(kind: Kind) -> Node {
        Node { span: None, kind }
    }
}

/// Zeroizes every string value of a tree (the keys of `[connection.manual_sa]` among them).
fn scrub(node: &mut Node) {
    match &mut node.kind {
        Kind::String(s) => s.zeroize(),
        Kind::Array(items) => items.iter_mut().for_each(scrub),
        Kind::Table(entries) => entries.iter_mut().for_each(|(_, v)| scrub(v)),
        Kind::Integer(_) | Kind::Float | Kind::Boolean(_) | Kind::Datetime => {}
    }
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, NodeVisitor { spanned: true })
    }
}

/// Deserializes the value inside a span (asking for the span again would recurse).
struct BareSeed;

impl<'de> serde::de::DeserializeSeed<'de> for BareSeed {
    type Value = Node;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor { spanned: false })
    }
}

struct NodeVisitor {
    spanned: bool,
}

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::bare(Kind::Boolean(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::bare(Kind::Integer(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::bare(Kind::Integer(
            i64::try_from(v).unwrap_or(i64::MAX),
        )))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::bare(Kind::Float))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::bare(Kind::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::bare(Kind::String(v)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::bare(Kind::Array(items)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        use serde::de::Error as _;
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Node::bare(Kind::Table(Vec::new())));
        };
        if self.spanned && first == SPANNED_START {
            let start: usize = map.next_value()?;
            let mut end = start;
            let mut value = None;
            while let Some(key) = map.next_key::<String>()? {
                if key == SPANNED_END {
                    end = map.next_value()?;
                } else if key == SPANNED_VALUE {
                    value = Some(map.next_value_seed(BareSeed)?);
                } else {
                    return Err(A::Error::custom(format!("unexpected span field `{key}`")));
                }
            }
            let mut node = value.ok_or_else(|| A::Error::custom("span without a value"))?;
            node.span = Some(start..end);
            return Ok(node);
        }
        if first == DATETIME_FIELD {
            map.next_value::<serde::de::IgnoredAny>()?;
            return Ok(Node::bare(Kind::Datetime));
        }
        let mut entries = vec![(first, map.next_value::<Node>()?)];
        while let Some(entry) = map.next_entry::<String, Node>()? {
            entries.push(entry);
        }
        Ok(Node::bare(Kind::Table(entries)))
    }
}

// ---------------------------------------------------------------------------------------------
// Reading helpers: every type or presence problem becomes an error, reading goes on
// ---------------------------------------------------------------------------------------------

/// The validation context: collects errors.
struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Cx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    /// Records an error at `at` (its line, when it has one).
    fn error(&mut self, at: Option<&Node>, field: impl Into<String>, rule: impl Into<String>) {
        let line = at
            .and_then(|n| n.span.as_ref())
            .map(|s| self.line_of(s.start));
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            field: field.into(),
            rule: rule.into(),
        });
    }

    fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
        self.error(
            Some(node),
            field,
            format!("expected {expected}, found {}", node.kind.describe()),
        );
    }

    fn string<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n str> {
        match &node.kind {
            Kind::String(s) => Some(s),
            _ => {
                self.wrong_type(node, field, "a string");
                None
            }
        }
    }

    fn integer(&mut self, node: &Node, field: &str) -> Option<i64> {
        match node.kind {
            Kind::Integer(v) => Some(v),
            _ => {
                self.wrong_type(node, field, "an integer");
                None
            }
        }
    }

    /// An integer in `range`, or an error.
    fn integer_in(&mut self, node: &Node, field: &str, range: RangeInclusive<i64>) -> Option<i64> {
        let v = self.integer(node, field)?;
        if range.contains(&v) {
            Some(v)
        } else {
            self.error(
                Some(node),
                field,
                format!("must be {}..={}, got {v}", range.start(), range.end()),
            );
            None
        }
    }

    fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        match node.kind {
            Kind::Boolean(v) => Some(v),
            _ => {
                self.wrong_type(node, field, "a boolean (true or false)");
                None
            }
        }
    }

    fn array<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Array(items) => Some(items),
            _ => {
                self.wrong_type(node, field, "an array");
                None
            }
        }
    }

    /// `node` as a table whose fields are named `path.KEY`.
    fn table<'n>(&mut self, node: &'n Node, path: &str) -> Option<Table<'n>> {
        match &node.kind {
            Kind::Table(entries) => Some(Table {
                node,
                entries,
                path: path.to_owned(),
            }),
            _ => {
                self.wrong_type(node, path, "a table");
                None
            }
        }
    }
}

/// A TOML table being read, and the path of its fields.
struct Table<'n> {
    node: &'n Node,
    entries: &'n [(String, Node)],
    path: String,
}

impl<'n> Table<'n> {
    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Reports every key not in `known`.
    fn check_keys(&self, cx: &mut Cx<'_>, known: &[&str]) {
        for (key, value) in self.entries {
            if !known.contains(&key.as_str()) {
                cx.error(
                    Some(value),
                    self.field(key),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn required(&self, cx: &mut Cx<'_>, key: &str) -> Option<&'n Node> {
        let node = self.get(key);
        if node.is_none() {
            cx.error(Some(self.node), self.field(key), "required key is missing");
        }
        node
    }

    fn required_str(&self, cx: &mut Cx<'_>, key: &str) -> Option<(&'n str, &'n Node)> {
        let node = self.required(cx, key)?;
        Some((cx.string(node, &self.field(key))?, node))
    }

    fn optional_str(&self, cx: &mut Cx<'_>, key: &str) -> Option<(&'n str, &'n Node)> {
        let node = self.get(key)?;
        Some((cx.string(node, &self.field(key))?, node))
    }

    fn optional_int(&self, cx: &mut Cx<'_>, key: &str) -> Option<(i64, &'n Node)> {
        let node = self.get(key)?;
        Some((cx.integer(node, &self.field(key))?, node))
    }

    fn optional_int_in(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        range: RangeInclusive<i64>,
    ) -> Option<(i64, &'n Node)> {
        let node = self.get(key)?;
        Some((cx.integer_in(node, &self.field(key), range)?, node))
    }

    fn optional_bool(&self, cx: &mut Cx<'_>, key: &str) -> Option<bool> {
        let node = self.get(key)?;
        cx.boolean(node, &self.field(key))
    }

    /// An array of strings: the well-typed items as (field, text, node).
    fn strings(&self, cx: &mut Cx<'_>, key: &str) -> Vec<Item<'n>> {
        let Some(node) = self.get(key) else {
            return Vec::new();
        };
        let field = self.field(key);
        let Some(items) = cx.array(node, &field) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let field = format!("{field}[{i}]");
                let text = cx.string(item, &field)?;
                Some(Item {
                    field,
                    text,
                    node: item,
                })
            })
            .collect()
    }

    /// A sub-table.
    fn table(&self, cx: &mut Cx<'_>, node: &'n Node, key: &str) -> Option<Table<'n>> {
        cx.table(node, &self.field(key))
    }
}

/// A string item of an array, with its field path.
struct Item<'n> {
    field: String,
    text: &'n str,
    node: &'n Node,
}

/// Something parsed from the file, with where it came from.
#[derive(Clone)]
struct At<'n, T> {
    value: T,
    field: String,
    node: &'n Node,
}

/// Parses each item as a prefix; `all_ok` is false when any failed.
fn parse_prefixes<'n>(cx: &mut Cx<'_>, items: Vec<Item<'n>>) -> (Vec<At<'n, Prefix>>, bool) {
    let mut out = Vec::new();
    let mut all_ok = true;
    for item in items {
        match item.text.parse::<Prefix>() {
            Ok(p) => out.push(At {
                value: p,
                field: item.field,
                node: item.node,
            }),
            Err(e) => {
                all_ok = false;
                cx.error(Some(item.node), item.field, e);
            }
        }
    }
    (out, all_ok)
}

/// How a field path names an entry of an array of tables: `gateway[0] (er-gw)`.
fn entry_label(section: &str, index: usize, table: &Node) -> String {
    let name =
        match &table.kind {
            Kind::Table(entries) => entries
                .iter()
                .find(|(k, _)| k == "name")
                .and_then(|(_, v)| match &v.kind {
                    Kind::String(s) if !s.is_empty() => Some(s.as_str()),
                    _ => None,
                }),
            _ => None,
        };
    match name {
        Some(name) => format!("{section}[{index}] ({name})"),
        None => format!("{section}[{index}]"),
    }
}

/// The entries of an array of tables (`[[gateway]]`): (index, label, table).
fn array_of_tables<'n>(
    cx: &mut Cx<'_>,
    root: &Table<'n>,
    key: &str,
) -> Vec<(usize, String, Table<'n>)> {
    let Some(node) = root.get(key) else {
        return Vec::new();
    };
    let Kind::Array(items) = &node.kind else {
        cx.error(
            Some(node),
            key,
            format!(
                "expected an array of tables ([[{key}]]), found {}",
                node.kind.describe()
            ),
        );
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let label = entry_label(key, i, item);
            let table = cx.table(item, &label)?;
            Some((i, label, table))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

const ROOT_KEYS: &[&str] = &["vnet", "control", "metrics", "gateway", "connection"];
const VNET_KEYS: &[&str] = &[
    "name",
    "address_space",
    "gateway_subnet",
    "gateway_subnet_v6",
    "interface",
];
const INTERFACE_KEYS: &[&str] = &[
    "name",
    "netns",
    "addresses",
    "mtu",
    "txqueuelen",
    "install_routes",
    "offload",
];
const CONTROL_KEYS: &[&str] = &["socket", "state_dir", "listen", "token_file"];
const METRICS_KEYS: &[&str] = &["listen"];
const GATEWAY_KEYS: &[&str] = &[
    "name",
    "type",
    "sku",
    "scale_units",
    "shaping",
    "max_flows",
    "max_new_flows_per_sec",
    "flow_timeouts",
];
const FLOW_TIMEOUT_KEYS: &[&str] = &[
    "tcp_handshake",
    "tcp_established",
    "tcp_closing",
    "udp",
    "udp_stream",
    "icmp",
    "other",
];
const ER_CONNECTION_KEYS: &[&str] = &[
    "name",
    "gateway",
    "type",
    "prefixes",
    "routing_weight",
    "interface",
];
const IPSEC_CONNECTION_KEYS: &[&str] = &[
    "name",
    "gateway",
    "type",
    "prefixes",
    "local_address",
    "peer_address",
    "local_port",
    "peer_port",
    "mtu",
    "mss_clamp",
    "manual_sa",
    "shared_key",
    "shared_key_file",
    "initiate",
    "ike_proposals",
    "esp_proposals",
    "ike_lifetime",
    "child_lifetime",
    "child_lifetime_bytes",
    "dpd_timeout",
    "local_id",
    "remote_id",
];
/// The keys of an IPsec connection that set IKEv2 keying.
const IKE_KEY_KEYS: &[&str] = &["shared_key", "shared_key_file"];
/// The keys of an IPsec connection that only IKEv2 keying takes.
const IKE_ONLY_KEYS: &[&str] = &[
    "initiate",
    "ike_proposals",
    "esp_proposals",
    "ike_lifetime",
    "child_lifetime",
    "child_lifetime_bytes",
    "dpd_timeout",
    "local_id",
    "remote_id",
];
const MANUAL_SA_KEYS: &[&str] = &[
    "esp",
    "out_spi",
    "out_key",
    "in_spi",
    "in_key",
    "esn",
    "replay_window",
];

/// Longest IPv4 gateway subnet.
const MAX_GATEWAY_SUBNET_LEN_V4: u8 = 29;
/// Longest IPv6 gateway subnet (16 addresses, so that host ::4 exists with room to spare).
const MAX_GATEWAY_SUBNET_LEN_V6: u8 = 124;
/// MTU range, and the IPv6 minimum link MTU.
const MTU_RANGE: RangeInclusive<i64> = 576..=65535;
const MIN_MTU_V6: u32 = 1280;
/// Linux `IFNAMSIZ` less the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// Connection types known to the config model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnType {
    ExpressRoute,
    IPsec,
}

impl ConnType {
    fn parse(s: &str) -> Result<ConnType, String> {
        match s {
            "ExpressRoute" => Ok(ConnType::ExpressRoute),
            "IPsec" => Ok(ConnType::IPsec),
            _ => Err(format!(
                "unknown connection type `{s}` (known: ExpressRoute, IPsec)"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ConnType::ExpressRoute => "ExpressRoute",
            ConnType::IPsec => "IPsec",
        }
    }

    /// The gateway type this connection type belongs to.
    fn gateway_type(self) -> GatewayType {
        match self {
            ConnType::ExpressRoute => GatewayType::ExpressRoute,
            ConnType::IPsec => GatewayType::Vpn,
        }
    }

    /// The keys a connection of this type takes.
    fn keys(self) -> &'static [&'static str] {
        match self {
            ConnType::ExpressRoute => ER_CONNECTION_KEYS,
            ConnType::IPsec => IPSEC_CONNECTION_KEYS,
        }
    }

    /// The other connection type.
    fn other(self) -> ConnType {
        match self {
            ConnType::ExpressRoute => ConnType::IPsec,
            ConnType::IPsec => ConnType::ExpressRoute,
        }
    }
}

/// Reports the keys a connection of type `ct` does not take, saying so when a key belongs to
/// the other type.
fn check_connection_keys(cx: &mut Cx<'_>, t: &Table<'_>, ct: ConnType) {
    let known = ct.keys();
    for (key, value) in t.entries {
        if known.contains(&key.as_str()) {
            continue;
        }
        let other = ct.other();
        let rule = if ct == ConnType::IPsec && MANUAL_SA_KEYS.contains(&key.as_str()) {
            let ike = match key.as_str() {
                "esn" => " (with IKEv2 keying, ESN is negotiated: add `-esn` to an esp_proposals entry, e.g. \"aes256gcm16-esn\")",
                "replay_window" => " (IKEv2-keyed SAs use the default window of 1024 packets)",
                _ => " (IKEv2 keying negotiates it)",
            };
            format!(
                "unknown key for an IPsec connection: `{key}` belongs in [connection.manual_sa]{ike}"
            )
        } else if other.keys().contains(&key.as_str()) {
            format!(
                "unknown key for an {} connection: `{key}` is a key of {} connections (expected one of: {})",
                ct.name(),
                other.name(),
                known.join(", ")
            )
        } else {
            format!("unknown key (expected one of: {})", known.join(", "))
        };
        cx.error(Some(value), t.field(key), rule);
    }
}

/// An interface as read, with positions for the cross-checks.
struct InterfaceDraft<'n> {
    /// `vnet.interface`, `connection[0] (circuit-1).interface`.
    path: String,
    name: Option<At<'n, String>>,
    netns: Option<String>,
    addresses: Vec<At<'n, InterfaceAddress>>,
    mtu: u32,
    txqueuelen: Option<u32>,
    install_routes: bool,
    offload: bool,
}

impl InterfaceDraft<'_> {
    fn build(&self) -> Option<InterfaceConfig> {
        Some(InterfaceConfig {
            name: self.name.as_ref()?.value.clone(),
            netns: self.netns.clone(),
            addresses: self.addresses.iter().map(|a| a.value).collect(),
            mtu: self.mtu,
            txqueuelen: self.txqueuelen,
            install_routes: self.install_routes,
            offload: self.offload,
        })
    }
}

fn ifname_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_IFNAME_LEN {
        return Some(format!(
            "interface name `{name}` must be 1 to {MAX_IFNAME_LEN} bytes long (Linux IFNAMSIZ), not {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Some(format!(
            "interface name `{name}` contains {c:?}: only A-Z, a-z, 0-9, '_', '.' and '-' are allowed"
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` is not a valid interface name"));
    }
    if name.starts_with('-') {
        return Some(format!("interface name `{name}` must not start with '-'"));
    }
    None
}

fn netns_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("network namespace name must not be empty".to_owned());
    }
    if name.contains('/') {
        return Some(format!(
            "network namespace name `{name}` must not contain '/' (it names a file under /run/netns)"
        ));
    }
    if name == "."
        || name == ".."
        || name.starts_with('-')
        || name.contains('\0')
        || name.len() > 255
    {
        return Some(format!(
            "`{name}` is not a valid network namespace name (1 to 255 bytes, not `.` or `..`, no NUL or leading '-')"
        ));
    }
    None
}

fn read_interface<'n>(cx: &mut Cx<'_>, t: &Table<'n>) -> InterfaceDraft<'n> {
    t.check_keys(cx, INTERFACE_KEYS);
    let name = t.required_str(cx, "name").and_then(|(name, node)| {
        if let Some(problem) = ifname_problem(name) {
            cx.error(Some(node), t.field("name"), problem);
            None
        } else {
            Some(At {
                value: name.to_owned(),
                field: t.field("name"),
                node,
            })
        }
    });
    let netns = t.optional_str(cx, "netns").map(|(ns, node)| {
        if let Some(problem) = netns_problem(ns) {
            cx.error(Some(node), t.field("netns"), problem);
        }
        ns.to_owned()
    });
    let mut addresses = Vec::new();
    for item in t.strings(cx, "addresses") {
        match item.text.parse::<InterfaceAddress>() {
            Ok(a) => addresses.push(At {
                value: a,
                field: item.field,
                node: item.node,
            }),
            Err(e) => cx.error(Some(item.node), item.field, e),
        }
    }
    let mut mtu = DEFAULT_MTU;
    if let Some((v, node)) = t.optional_int_in(cx, "mtu", MTU_RANGE) {
        mtu = v as u32;
        if let Some(v6) = addresses.iter().find(|a| a.value.addr.is_ipv6()) {
            if mtu < MIN_MTU_V6 {
                cx.error(
                    Some(node),
                    t.field("mtu"),
                    format!(
                        "must be at least {MIN_MTU_V6} (the IPv6 minimum) because the interface has the IPv6 address {}, got {mtu}",
                        v6.value
                    ),
                );
            }
        }
    }
    let txqueuelen = t
        .optional_int_in(cx, "txqueuelen", 0..=i64::from(u32::MAX))
        .map(|(v, _)| v as u32);
    let install_routes = t.optional_bool(cx, "install_routes").unwrap_or(true);
    let offload = t.optional_bool(cx, "offload").unwrap_or(true);
    InterfaceDraft {
        path: t.path.clone(),
        name,
        netns,
        addresses,
        mtu,
        txqueuelen,
        install_routes,
        offload,
    }
}

struct VnetDraft<'n> {
    name: Option<String>,
    /// The prefixes that parsed.
    address_space: Vec<At<'n, Prefix>>,
    /// Whether every address-space entry parsed (the containment checks need all of them).
    address_space_complete: bool,
    gateway_subnet: Option<Prefix>,
    /// Outer None: invalid; inner None: not given.
    gateway_subnet_v6: Option<Option<Prefix>>,
    interface: Option<InterfaceDraft<'n>>,
}

fn read_vnet<'n>(cx: &mut Cx<'_>, root: &Table<'n>) -> Option<VnetDraft<'n>> {
    let node = root.required(cx, "vnet")?;
    let t = root.table(cx, node, "vnet")?;
    t.check_keys(cx, VNET_KEYS);

    let name = t.required_str(cx, "name").and_then(|(name, node)| {
        if name.trim().is_empty() {
            cx.error(Some(node), t.field("name"), "must not be empty");
            None
        } else {
            Some(name.to_owned())
        }
    });

    let space_node = t.required(cx, "address_space");
    let items = t.strings(cx, "address_space");
    let mut address_space_complete = space_node.is_some_and(|n| match &n.kind {
        Kind::Array(a) => a.len() == items.len(),
        _ => false,
    });
    if let Some(n) = space_node {
        if matches!(&n.kind, Kind::Array(a) if a.is_empty()) {
            cx.error(
                Some(n),
                t.field("address_space"),
                "must list at least one prefix",
            );
        }
    }
    let (address_space, parsed_all) = parse_prefixes(cx, items);
    address_space_complete &= parsed_all && !address_space.is_empty();
    for (i, p) in address_space.iter().enumerate() {
        if let Some(q) = address_space[..i]
            .iter()
            .find(|q| q.value.overlaps(&p.value))
        {
            cx.error(
                Some(p.node),
                &p.field,
                format!(
                    "{} overlaps {} {}: address-space prefixes must not overlap",
                    p.value, q.field, q.value
                ),
            );
        }
    }
    let space_list = || {
        address_space
            .iter()
            .map(|p| p.value.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };

    let gateway_subnet = t.required_str(cx, "gateway_subnet").and_then(|(text, node)| {
        let field = t.field("gateway_subnet");
        let p = match text.parse::<Prefix>() {
            Ok(p) => p,
            Err(e) => {
                cx.error(Some(node), field, e);
                return None;
            }
        };
        let mut ok = true;
        if p.family() != Family::V4 {
            cx.error(
                Some(node),
                &field,
                format!("{p} is not an IPv4 prefix (an IPv6 gateway subnet goes in gateway_subnet_v6)"),
            );
            return None;
        }
        if p.len() > MAX_GATEWAY_SUBNET_LEN_V4 {
            cx.error(
                Some(node),
                &field,
                format!(
                    "{p} is smaller than /{MAX_GATEWAY_SUBNET_LEN_V4}: the gateway subnet must be /{MAX_GATEWAY_SUBNET_LEN_V4} or larger"
                ),
            );
            ok = false;
        }
        if address_space_complete && !address_space.iter().any(|s| s.value.covers(&p)) {
            cx.error(
                Some(node),
                &field,
                format!(
                    "{p} is outside every vnet.address_space prefix ({})",
                    space_list()
                ),
            );
            ok = false;
        }
        ok.then_some(p)
    });

    let gateway_subnet_v6 = match t.optional_str(cx, "gateway_subnet_v6") {
        None if t.get("gateway_subnet_v6").is_some() => None,
        None => Some(None),
        Some((text, node)) => {
            let field = t.field("gateway_subnet_v6");
            match text.parse::<Prefix>() {
                Err(e) => {
                    cx.error(Some(node), field, e);
                    None
                }
                Ok(p) if p.family() != Family::V6 => {
                    cx.error(
                        Some(node),
                        field,
                        format!(
                            "{p} is not an IPv6 prefix (the IPv4 gateway subnet is gateway_subnet)"
                        ),
                    );
                    None
                }
                Ok(p) => {
                    let mut ok = true;
                    if p.len() > MAX_GATEWAY_SUBNET_LEN_V6 {
                        cx.error(
                            Some(node),
                            &field,
                            format!(
                                "{p} is smaller than /{MAX_GATEWAY_SUBNET_LEN_V6}: the IPv6 gateway subnet must be /{MAX_GATEWAY_SUBNET_LEN_V6} or larger"
                            ),
                        );
                        ok = false;
                    }
                    if address_space_complete && !address_space.iter().any(|s| s.value.covers(&p)) {
                        cx.error(
                            Some(node),
                            &field,
                            format!(
                                "{p} is outside every IPv6 vnet.address_space prefix ({})",
                                space_list()
                            ),
                        );
                        ok = false;
                    }
                    ok.then_some(Some(p))
                }
            }
        }
    };

    let interface = t.required(cx, "interface").and_then(|node| {
        let it = t.table(cx, node, "interface")?;
        Some(read_interface(cx, &it))
    });

    Some(VnetDraft {
        name,
        address_space,
        address_space_complete,
        gateway_subnet,
        gateway_subnet_v6,
        interface,
    })
}

fn read_control(cx: &mut Cx<'_>, root: &Table<'_>) -> Option<ControlConfig> {
    let mut control = ControlConfig {
        socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        tcp: None,
    };
    let Some(node) = root.get("control") else {
        return Some(control);
    };
    let t = root.table(cx, node, "control")?;
    t.check_keys(cx, CONTROL_KEYS);
    let mut ok = true;
    for (key, slot) in [
        ("socket", &mut control.socket),
        ("state_dir", &mut control.state_dir),
    ] {
        let Some(node) = t.get(key) else { continue };
        let Some(s) = cx.string(node, &t.field(key)) else {
            ok = false;
            continue;
        };
        if Path::new(s).is_absolute() {
            *slot = PathBuf::from(s);
        } else {
            cx.error(
                Some(node),
                t.field(key),
                format!("`{s}` is not an absolute path"),
            );
            ok = false;
        }
    }
    let listen = read_listen(cx, &t);
    let token = t.get("token_file").map(|node| {
        let field = t.field("token_file");
        cx.string(node, &field)
            .and_then(|path| match read_token_file(Path::new(path)) {
                Ok(k) => Some(k),
                Err(e) => {
                    cx.error(Some(node), field, e);
                    None
                }
            })
    });
    match (listen, token) {
        (Some(Some(addr)), Some(Some(token))) => control.tcp = Some((addr, token)),
        (None, None) => {}
        (Some(Some(_)), None) => {
            cx.error(
                t.get("listen"),
                t.field("listen"),
                "a TCP control listener needs `token_file` (the bearer token its clients send)",
            );
            ok = false;
        }
        (None, Some(Some(_))) => {
            cx.error(
                t.get("token_file"),
                t.field("token_file"),
                "`token_file` is for the TCP control listener: give `listen` too, or remove it",
            );
            ok = false;
        }
        // Reported already.
        _ => ok = false,
    }
    ok.then_some(control)
}

/// The `listen` key of `t`: None when absent, Some(None) when invalid (reported).
fn read_listen(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<Option<SocketAddr>> {
    let node = t.get("listen")?;
    let Some(s) = cx.string(node, &t.field("listen")) else {
        return Some(None);
    };
    Some(match s.trim().parse::<SocketAddr>() {
        Ok(addr) if addr.port() == 0 => {
            cx.error(
                Some(node),
                t.field("listen"),
                format!("`{s}` has port 0: give the port to listen on"),
            );
            None
        }
        Ok(addr) => Some(addr),
        Err(_) => {
            cx.error(
                Some(node),
                t.field("listen"),
                format!(
                    "`{s}` is not a socket address (ADDRESS:PORT, e.g. `127.0.0.1:9474` or `[::1]:9474`)"
                ),
            );
            None
        }
    })
}

fn read_metrics(cx: &mut Cx<'_>, root: &Table<'_>) -> Option<MetricsConfig> {
    let mut metrics = MetricsConfig::default();
    let Some(node) = root.get("metrics") else {
        return Some(metrics);
    };
    let t = root.table(cx, node, "metrics")?;
    t.check_keys(cx, METRICS_KEYS);
    match read_listen(cx, &t) {
        None => Some(metrics),
        Some(None) => None,
        Some(Some(addr)) => {
            metrics.listen = Some(addr);
            Some(metrics)
        }
    }
}

struct GatewayDraft<'n> {
    label: String,
    name: Option<String>,
    gateway_type: Option<At<'n, GatewayType>>,
    sku: Option<At<'n, Sku>>,
    shaping: bool,
    max_flows: Option<u64>,
    max_new_flows_per_sec: Option<u64>,
    flow_timeouts: FlowTimeouts,
}

/// An optional flow limit `key`: an integer, at least 1 and at most `max` (with what the
/// maximum is) when the SKU is known. Invalid ones are reported (and read as None).
fn read_flow_limit(
    cx: &mut Cx<'_>,
    t: &Table<'_>,
    key: &str,
    max: Option<(u64, String)>,
) -> Option<u64> {
    let node = t.get(key)?;
    let field = t.field(key);
    let v = cx.integer(node, &field)?;
    if v < 1 {
        cx.error(Some(node), field, format!("must be at least 1, got {v}"));
        return None;
    }
    let v = v as u64;
    if let Some((m, what)) = max {
        if v > m {
            cx.error(
                Some(node),
                field,
                format!("must be at most {m} ({what}): it can only lower the limit, got {v}"),
            );
            return None;
        }
    }
    Some(v)
}

/// `[gateway.flow_timeouts]`: each key an optional duration; absent keys keep the defaults.
fn read_flow_timeouts(cx: &mut Cx<'_>, t: &Table<'_>) -> FlowTimeouts {
    let d = FlowTimeouts::default();
    let Some(node) = t.get("flow_timeouts") else {
        return d;
    };
    let Some(ft) = t.table(cx, node, "flow_timeouts") else {
        return d;
    };
    ft.check_keys(cx, FLOW_TIMEOUT_KEYS);
    let mut get = |key: &str, default: Duration| {
        read_duration(cx, &ft, key, &FLOW_TIMEOUT_RANGE, "e.g. \"30s\", \"5m\"")
            .flatten()
            .unwrap_or(default)
    };
    FlowTimeouts {
        tcp_handshake: get("tcp_handshake", d.tcp_handshake),
        tcp_established: get("tcp_established", d.tcp_established),
        tcp_closing: get("tcp_closing", d.tcp_closing),
        udp: get("udp", d.udp),
        udp_stream: get("udp_stream", d.udp_stream),
        icmp: get("icmp", d.icmp),
        other: get("other", d.other),
    }
}

fn read_gateways<'n>(cx: &mut Cx<'_>, root: &Table<'n>) -> Vec<GatewayDraft<'n>> {
    let mut out: Vec<GatewayDraft<'n>> = Vec::new();
    for (i, label, t) in array_of_tables(cx, root, "gateway") {
        // Fields are named `gateway[i] (NAME).KEY`; the name itself `gateway[i].name`.
        let name_field = format!("gateway[{i}].name");
        t.check_keys(cx, GATEWAY_KEYS);
        let name = match t.get("name") {
            None => {
                cx.error(Some(t.node), &name_field, "required key is missing");
                None
            }
            Some(node) => cx.string(node, &name_field).and_then(|n| {
                if n.trim().is_empty() {
                    cx.error(Some(node), &name_field, "must not be empty");
                    return None;
                }
                if let Some(other) = out.iter().find(|g| g.name.as_deref() == Some(n)) {
                    cx.error(
                        Some(node),
                        &name_field,
                        format!(
                            "duplicate gateway name `{n}` (also {}): gateway names must be unique",
                            other.label
                        ),
                    );
                }
                Some(n.to_owned())
            }),
        };

        let type_field = t.field("type");
        let gateway_type =
            t.required_str(cx, "type")
                .and_then(|(s, node)| match s.parse::<GatewayType>() {
                    Ok(ty) => Some(At {
                        value: ty,
                        field: type_field.clone(),
                        node,
                    }),
                    Err(e) => {
                        cx.error(Some(node), &type_field, e);
                        None
                    }
                });
        if let Some(ty) = &gateway_type {
            if let Some(other) = out
                .iter()
                .find(|g| g.gateway_type.as_ref().is_some_and(|o| o.value == ty.value))
            {
                cx.error(
                    Some(ty.node),
                    &type_field,
                    format!(
                        "the VNet already has {} {} gateway ({}): at most one gateway of each type",
                        if ty.value == GatewayType::ExpressRoute {
                            "an"
                        } else {
                            "a"
                        },
                        ty.value,
                        other.label
                    ),
                );
            }
        }

        let sku_name = t.required_str(cx, "sku");
        let units_node = t.get("scale_units");
        let units: Option<Option<u32>> = match t.optional_int(cx, "scale_units") {
            None if units_node.is_some() => None, // wrong type, reported
            None => Some(None),
            Some((v, node)) => match u32::try_from(v) {
                Ok(v) => Some(Some(v)),
                Err(_) => {
                    cx.error(
                        Some(node),
                        t.field("scale_units"),
                        format!("scale_units must be 1..=40, got {v}"),
                    );
                    None
                }
            },
        };
        let sku = match (&gateway_type, sku_name, units) {
            (Some(ty), Some((sku_name, sku_node)), Some(units)) => {
                match Sku::parse(ty.value, sku_name, units) {
                    Ok(sku) => Some(At {
                        value: sku,
                        field: t.field("sku"),
                        node: sku_node,
                    }),
                    Err(e) => {
                        // Blame the SKU name when it is unknown, else scale_units.
                        let name_known = Sku::parse(ty.value, sku_name, None).is_ok()
                            || (ty.value == GatewayType::ExpressRoute && sku_name == "ErGwScale");
                        if name_known {
                            cx.error(
                                Some(units_node.unwrap_or(t.node)),
                                t.field("scale_units"),
                                e,
                            );
                        } else {
                            cx.error(Some(sku_node), t.field("sku"), e);
                        }
                        None
                    }
                }
            }
            _ => None,
        };
        let shaping = t.optional_bool(cx, "shaping").unwrap_or(true);
        let limits = sku.as_ref().map(|s| (s.value, s.value.limits()));
        let max_flows = read_flow_limit(
            cx,
            &t,
            "max_flows",
            limits.map(|(sku, l)| match l.flows {
                Some(f) => (f, format!("the flows of SKU {sku}")),
                None => (
                    DEFAULT_MAX_FLOWS as u64,
                    format!("SKU {sku} publishes no flow limit; the table's bound"),
                ),
            }),
        );
        let max_new_flows_per_sec = read_flow_limit(
            cx,
            &t,
            "max_new_flows_per_sec",
            limits.map(|(sku, l)| match l.new_flows_per_sec {
                Some(r) => (r, format!("the new connections/s of SKU {sku}")),
                None => (
                    MAX_NEW_FLOWS_PER_SEC,
                    format!("SKU {sku} publishes no new-connection rate"),
                ),
            }),
        );
        let flow_timeouts = read_flow_timeouts(cx, &t);
        out.push(GatewayDraft {
            label,
            name,
            gateway_type,
            sku,
            shaping,
            max_flows,
            max_new_flows_per_sec,
            flow_timeouts,
        });
    }

    // A SKU that cannot coexist (Basic) next to a gateway of the other type.
    for g in &out {
        let (Some(ty), Some(sku)) = (&g.gateway_type, &g.sku) else {
            continue;
        };
        if sku.value.limits().coexist {
            continue;
        }
        if let Some(other) = out
            .iter()
            .find(|o| o.gateway_type.as_ref().is_some_and(|t| t.value != ty.value))
        {
            let other_ty = other.gateway_type.as_ref().map(|t| t.value);
            cx.error(
                Some(sku.node),
                &sku.field,
                format!(
                    "the {} SKU of the {} gateway cannot coexist with the {} gateway ({}): use a non-Basic SKU",
                    sku.value,
                    ty.value,
                    other_ty.map_or_else(String::new, |t| t.to_string()),
                    other.label
                ),
            );
        }
    }
    out
}

struct ConnectionDraft<'n> {
    label: String,
    name: Option<String>,
    gateway: Option<String>,
    gateway_index: Option<usize>,
    conn_type: Option<ConnType>,
    prefixes: Vec<At<'n, Prefix>>,
    prefixes_complete: bool,
    routing_weight: u16,
    interface: Option<InterfaceDraft<'n>>,
    ipsec: Option<IpsecDraft<'n>>,
}

fn read_connections<'n>(
    cx: &mut Cx<'_>,
    root: &Table<'n>,
    gateways: &[GatewayDraft<'n>],
    vnet: Option<&VnetDraft<'n>>,
) -> Vec<ConnectionDraft<'n>> {
    let mut out: Vec<ConnectionDraft<'n>> = Vec::new();
    for (i, label, t) in array_of_tables(cx, root, "connection") {
        let name_field = format!("connection[{i}].name");
        let name = match t.get("name") {
            None => {
                cx.error(Some(t.node), &name_field, "required key is missing");
                None
            }
            Some(node) => cx.string(node, &name_field).and_then(|n| {
                if n.trim().is_empty() {
                    cx.error(Some(node), &name_field, "must not be empty");
                    return None;
                }
                if let Some(other) = out.iter().find(|c| c.name.as_deref() == Some(n)) {
                    cx.error(
                        Some(node),
                        &name_field,
                        format!(
                            "duplicate connection name `{n}` (also {}): connection names must be unique",
                            other.label
                        ),
                    );
                }
                Some(n.to_owned())
            }),
        };

        let type_field = t.field("type");
        let conn_type = t
            .required_str(cx, "type")
            .and_then(|(s, node)| match ConnType::parse(s) {
                Ok(ct) => Some((ct, node)),
                Err(e) => {
                    cx.error(Some(node), &type_field, e);
                    None
                }
            });
        match conn_type {
            Some((ct, _)) => check_connection_keys(cx, &t, ct),
            // Unknown type: only keys of no type are reported.
            None => {
                let mut all = ER_CONNECTION_KEYS.to_vec();
                all.extend(
                    IPSEC_CONNECTION_KEYS
                        .iter()
                        .filter(|k| !ER_CONNECTION_KEYS.contains(k)),
                );
                t.check_keys(cx, &all);
            }
        }

        let gateway_field = t.field("gateway");
        let mut gateway_index = None;
        let gateway = t.required_str(cx, "gateway").map(|(g, node)| {
            match gateways.iter().position(|d| d.name.as_deref() == Some(g)) {
                Some(index) => gateway_index = Some(index),
                None => {
                    let mut names: Vec<&str> = Vec::new();
                    for n in gateways.iter().filter_map(|d| d.name.as_deref()) {
                        if !names.contains(&n) {
                            names.push(n);
                        }
                    }
                    cx.error(
                        Some(node),
                        &gateway_field,
                        format!(
                            "there is no gateway named `{g}` (gateways: {})",
                            if names.is_empty() {
                                "none".to_owned()
                            } else {
                                names.join(", ")
                            }
                        ),
                    );
                }
            }
            (g.to_owned(), node)
        });
        // The connection type must match the gateway's type.
        if let (Some((ct, type_node)), Some(index)) = (conn_type, gateway_index) {
            let gw = &gateways[index];
            if let Some(gt) = &gw.gateway_type {
                if gt.value != ct.gateway_type() {
                    cx.error(
                        Some(type_node),
                        &type_field,
                        format!(
                            "a connection of type {} needs {} {} gateway, but `{}` ({}) is of type {}",
                            ct.name(),
                            if ct.gateway_type() == GatewayType::ExpressRoute { "an" } else { "a" },
                            ct.gateway_type(),
                            gw.name.as_deref().unwrap_or_default(),
                            gw.label,
                            gt.value
                        ),
                    );
                }
            }
        }

        let prefixes_node = t.required(cx, "prefixes");
        let items = t.strings(cx, "prefixes");
        let mut prefixes_complete = prefixes_node.is_some_and(|n| match &n.kind {
            Kind::Array(a) => a.len() == items.len(),
            _ => false,
        });
        if let Some(n) = prefixes_node {
            if matches!(&n.kind, Kind::Array(a) if a.is_empty()) {
                cx.error(
                    Some(n),
                    t.field("prefixes"),
                    "must list at least one prefix",
                );
            }
        }
        let (prefixes, parsed_all) = parse_prefixes(cx, items);
        prefixes_complete &= parsed_all;
        for (j, p) in prefixes.iter().enumerate() {
            if p.value.is_default() {
                continue;
            }
            if let Some(q) = prefixes[..j]
                .iter()
                .find(|q| !q.value.is_default() && q.value.overlaps(&p.value))
            {
                let rule = if q.value == p.value {
                    format!("{} is listed twice (also {})", p.value, q.field)
                } else {
                    format!(
                        "{} overlaps {} {}: a connection's prefixes must not overlap each other",
                        p.value, q.field, q.value
                    )
                };
                cx.error(Some(p.node), &p.field, rule);
            }
            if let Some(vnet) = vnet {
                if let Some(s) = vnet
                    .address_space
                    .iter()
                    .find(|s| s.value.overlaps(&p.value))
                {
                    cx.error(
                        Some(p.node),
                        &p.field,
                        format!(
                            "{} overlaps the VNet address space {} ({}): on-premises prefixes must not overlap the VNet",
                            p.value, s.value, s.field
                        ),
                    );
                }
            }
        }

        let ct = conn_type.map(|(c, _)| c);
        // IPsec connections take no routing_weight (reported as an unknown key above).
        let routing_weight = if ct == Some(ConnType::IPsec) {
            0
        } else {
            t.optional_int_in(cx, "routing_weight", 0..=i64::from(MAX_ROUTING_WEIGHT))
                .map_or(0, |(v, _)| v as u16)
        };

        let interface = match ct {
            Some(ConnType::ExpressRoute) => t.required(cx, "interface").and_then(|node| {
                let it = t.table(cx, node, "interface")?;
                Some(read_interface(cx, &it))
            }),
            _ => None,
        };
        let ipsec = match ct {
            Some(ConnType::IPsec) => Some(read_ipsec(cx, &t, vnet)),
            _ => None,
        };

        out.push(ConnectionDraft {
            label,
            name,
            gateway: gateway.map(|(g, _)| g),
            gateway_index,
            conn_type: conn_type.map(|(c, _)| c),
            prefixes,
            prefixes_complete,
            routing_weight,
            interface,
            ipsec,
        });
    }
    out
}

/// An IPsec connection's own keys as read, with positions for the cross-checks.
struct IpsecDraft<'n> {
    local_address: Option<At<'n, IpAddr>>,
    peer_address: Option<At<'n, IpAddr>>,
    /// The two addresses are of one family and differ.
    endpoints_ok: bool,
    local_port: Option<u16>,
    peer_port: Option<u16>,
    mtu: Option<u32>,
    /// Outer None: invalid; inner None: clamping disabled.
    mss_clamp: Option<Option<u16>>,
    /// `[connection.manual_sa]`, when the connection has it.
    manual_sa: Option<ManualSaDraft<'n>>,
    /// The IKEv2 keys, when the connection has any.
    ike: Option<IkeDraft>,
}

impl IpsecDraft<'_> {
    fn build(&self) -> Option<IpsecConfig> {
        if !self.endpoints_ok {
            return None;
        }
        let keying = match (&self.manual_sa, &self.ike) {
            (Some(sa), None) => Keying::Manual(ManualSa {
                cipher: sa.cipher?,
                out_spi: sa.out_spi?,
                out_key: sa.out_key.clone()?,
                in_spi: sa.in_spi.as_ref()?.value,
                in_key: sa.in_key.clone()?,
                esn: sa.esn?,
                replay_window: sa.replay_window?,
            }),
            (None, Some(ike)) => Keying::Ike(ike.build()?),
            // Both or neither: reported.
            _ => return None,
        };
        Some(IpsecConfig {
            local_address: self.local_address.as_ref()?.value,
            peer_address: self.peer_address.as_ref()?.value,
            local_port: self.local_port?,
            peer_port: self.peer_port?,
            mtu: self.mtu?,
            mss_clamp: self.mss_clamp?,
            keying,
        })
    }

    /// The tunnel's (local, peer) UDP endpoints, when all four parts are valid.
    fn endpoints(&self) -> Option<(SocketAddr, SocketAddr)> {
        if !self.endpoints_ok {
            return None;
        }
        Some((
            SocketAddr::new(self.local_address.as_ref()?.value, self.local_port?),
            SocketAddr::new(self.peer_address.as_ref()?.value, self.peer_port?),
        ))
    }
}

/// `[connection.manual_sa]` as read.
struct ManualSaDraft<'n> {
    cipher: Option<Cipher>,
    out_spi: Option<u32>,
    out_key: Option<SecretKey>,
    in_spi: Option<At<'n, u32>>,
    in_key: Option<SecretKey>,
    esn: Option<bool>,
    replay_window: Option<u32>,
}

/// The smallest SPI a manual SA may use (0..=255 are reserved, RFC 4303 section 2.1).
const MIN_SPI: u32 = 256;

/// `mss_clamp` when the file does not say: `mtu` - 50 (DOMAIN.md's 1350 for the default 1400),
/// at least [`MIN_MSS_CLAMP`].
fn default_mss_clamp(mtu: u32) -> u16 {
    let mss = mtu.saturating_sub(50).max(u32::from(MIN_MSS_CLAMP));
    u16::try_from(mss).unwrap_or(u16::MAX)
}

/// An optional value read by `read`, or `default` when the key is absent; None when the key is
/// there but invalid (reported).
fn or_default<T>(
    t: &Table<'_>,
    key: &str,
    default: T,
    read: impl FnOnce() -> Option<T>,
) -> Option<T> {
    match t.get(key) {
        None => Some(default),
        Some(_) => read(),
    }
}

/// A tunnel endpoint address: a unicast IPv4 or IPv6 address.
fn read_endpoint<'n>(cx: &mut Cx<'_>, t: &Table<'n>, key: &str) -> Option<At<'n, IpAddr>> {
    let (text, node) = t.required_str(cx, key)?;
    let field = t.field(key);
    let Ok(addr) = text.trim().parse::<IpAddr>() else {
        cx.error(
            Some(node),
            field,
            format!("`{text}` is not an IPv4 or IPv6 address"),
        );
        return None;
    };
    let what = match addr {
        _ if addr.is_unspecified() => Some("the unspecified address"),
        _ if addr.is_multicast() => Some("a multicast address"),
        IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
        _ => None,
    };
    if let Some(what) = what {
        cx.error(
            Some(node),
            field,
            format!("{addr} is {what}: a tunnel endpoint must be a unicast address"),
        );
        return None;
    }
    Some(At {
        value: addr,
        field,
        node,
    })
}

fn read_ipsec<'n>(cx: &mut Cx<'_>, t: &Table<'n>, vnet: Option<&VnetDraft<'n>>) -> IpsecDraft<'n> {
    let local_address = read_endpoint(cx, t, "local_address");
    let peer_address = read_endpoint(cx, t, "peer_address");
    let mut endpoints_ok = true;
    if let (Some(l), Some(p)) = (&local_address, &peer_address) {
        if l.value.is_ipv4() != p.value.is_ipv4() {
            let family = |a: IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
            cx.error(
                Some(p.node),
                &p.field,
                format!(
                    "{} is an {} address but local_address {} is {}: both ends of a tunnel must be of the same family",
                    p.value,
                    family(p.value),
                    l.value,
                    family(l.value)
                ),
            );
            endpoints_ok = false;
        } else if l.value == p.value {
            cx.error(
                Some(p.node),
                &p.field,
                format!(
                    "{} is also the local_address: the peer must be another host",
                    p.value
                ),
            );
            endpoints_ok = false;
        }
    }

    let port = |cx: &mut Cx<'_>, key: &str| {
        or_default(t, key, DEFAULT_IPSEC_PORT, || {
            t.optional_int_in(cx, key, 1..=i64::from(u16::MAX))
                .map(|(v, _)| v as u16)
        })
    };
    let local_port = port(cx, "local_port");
    let peer_port = port(cx, "peer_port");

    let vnet_v6 = vnet.and_then(|v| {
        v.address_space
            .iter()
            .find(|p| p.value.family() == Family::V6)
    });
    let mtu_range = i64::from(*TUNNEL_MTU_RANGE.start())..=i64::from(*TUNNEL_MTU_RANGE.end());
    let mtu = or_default(t, "mtu", DEFAULT_TUNNEL_MTU, || {
        let (v, node) = t.optional_int_in(cx, "mtu", mtu_range)?;
        let mtu = v as u32;
        if let Some(v6) = vnet_v6.filter(|_| mtu < MIN_MTU_V6) {
            cx.error(
                Some(node),
                t.field("mtu"),
                format!(
                    "must be at least {MIN_MTU_V6} (the IPv6 minimum) because the VNet has the IPv6 address space {}, got {mtu}",
                    v6.value
                ),
            );
            return None;
        }
        Some(mtu)
    });

    let mss_clamp = match t.get("mss_clamp") {
        None => mtu.map(|m| Some(default_mss_clamp(m))),
        Some(node) => {
            let field = t.field("mss_clamp");
            // With an invalid mtu (reported) the widest range applies.
            let max = i64::from(mtu.unwrap_or(*TUNNEL_MTU_RANGE.end())) - 40;
            match cx.integer(node, &field) {
                None => None,
                Some(0) => Some(None),
                Some(v) if (i64::from(MIN_MSS_CLAMP)..=max).contains(&v) => Some(Some(v as u16)),
                Some(v) => {
                    cx.error(
                        Some(node),
                        field,
                        format!(
                            "must be {MIN_MSS_CLAMP}..={max} (mtu - 40), or 0 to disable clamping, got {v}"
                        ),
                    );
                    None
                }
            }
        }
    };

    // Keying: [connection.manual_sa], or IKEv2 (shared_key or shared_key_file); one of them.
    let manual_node = t.get("manual_sa");
    let ike_key_given: Vec<&str> = IKE_KEY_KEYS
        .iter()
        .copied()
        .filter(|k| t.get(k).is_some())
        .collect();
    let ike_only_given: Vec<&str> = IKE_ONLY_KEYS
        .iter()
        .copied()
        .filter(|k| t.get(k).is_some())
        .collect();
    match (manual_node, ike_key_given.is_empty()) {
        (None, true) => cx.error(
            Some(t.node),
            &t.path,
            "an IPsec connection needs keys: `shared_key` or `shared_key_file` for IKEv2 with a pre-shared key, or a [connection.manual_sa] table for keys set by hand",
        ),
        (Some(_), false) => {
            for key in &ike_key_given {
                cx.error(
                    t.get(key),
                    t.field(key),
                    "the connection also has [connection.manual_sa]: keys are either set by hand ([connection.manual_sa]) or negotiated by IKEv2 (`shared_key` or `shared_key_file`), not both",
                );
            }
        }
        (Some(_), true) => {
            for key in &ike_only_given {
                cx.error(
                    t.get(key),
                    t.field(key),
                    "only IKEv2-keyed connections (with `shared_key` or `shared_key_file`) take this key; this one is keyed by hand ([connection.manual_sa])",
                );
            }
        }
        (None, false) => {}
    }
    let manual_sa = manual_node.and_then(|node| {
        t.table(cx, node, "manual_sa")
            .map(|st| read_manual_sa(cx, &st))
    });
    let ike = (!ike_key_given.is_empty() || (manual_node.is_none() && !ike_only_given.is_empty()))
        .then(|| read_ike(cx, t));

    IpsecDraft {
        local_address,
        peer_address,
        endpoints_ok,
        local_port,
        peer_port,
        mtu,
        mss_clamp,
        manual_sa,
        ike,
    }
}

/// The IKEv2 keys of an IPsec connection, as read.
struct IkeDraft {
    /// None: missing (reported) or invalid (reported).
    psk: Option<SharedKey>,
    initiate: Option<bool>,
    ike_proposals: Option<Vec<IkeProposal>>,
    esp_proposals: Option<Vec<EspProposal>>,
    ike_lifetime: Option<Duration>,
    child_lifetime: Option<Duration>,
    child_lifetime_bytes: Option<u64>,
    dpd_timeout: Option<Duration>,
    local_id: Option<Option<String>>,
    remote_id: Option<Option<String>>,
}

impl IkeDraft {
    fn build(&self) -> Option<IkeConfig> {
        Some(IkeConfig {
            psk: self.psk.clone()?,
            initiate: self.initiate?,
            ike_proposals: self.ike_proposals.clone()?,
            esp_proposals: self.esp_proposals.clone()?,
            ike_lifetime: self.ike_lifetime?,
            child_lifetime: self.child_lifetime?,
            child_lifetime_bytes: self.child_lifetime_bytes?,
            dpd_timeout: self.dpd_timeout?,
            local_id: self.local_id.clone()?,
            remote_id: self.remote_id.clone()?,
        })
    }
}

fn read_ike(cx: &mut Cx<'_>, t: &Table<'_>) -> IkeDraft {
    let psk = match (t.get("shared_key"), t.get("shared_key_file")) {
        (Some(_), Some(file_node)) => {
            cx.error(
                Some(file_node),
                t.field("shared_key_file"),
                "the connection also has `shared_key`: give the pre-shared key once, inline (`shared_key`) or in a file (`shared_key_file`)",
            );
            None
        }
        (Some(node), None) => {
            let field = t.field("shared_key");
            cx.string(node, &field)
                .and_then(|text| match SharedKey::parse(text.as_bytes()) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        cx.error(Some(node), field, e);
                        None
                    }
                })
        }
        (None, Some(node)) => {
            let field = t.field("shared_key_file");
            cx.string(node, &field)
                .and_then(|path| match read_shared_key_file(Path::new(path)) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        cx.error(Some(node), field, e);
                        None
                    }
                })
        }
        // The connection's missing keys are reported by the caller.
        (None, None) => None,
    };
    let initiate = or_default(t, "initiate", true, || t.optional_bool(cx, "initiate"));
    let ike_proposals = read_proposals(cx, t, "ike_proposals", IkeProposal::parse)
        .map(|p| p.unwrap_or_else(default_ike_proposals));
    let esp_proposals = read_proposals(cx, t, "esp_proposals", EspProposal::parse)
        .map(|p| p.unwrap_or_else(default_esp_proposals));
    let lifetime = |cx: &mut Cx<'_>, key: &str, default: Duration| {
        read_duration(cx, t, key, &LIFETIME_RANGE, "e.g. \"8h\", \"27000s\"")
            .map(|d| d.unwrap_or(default))
    };
    let ike_lifetime = lifetime(cx, "ike_lifetime", DEFAULT_IKE_LIFETIME);
    let child_lifetime = lifetime(cx, "child_lifetime", DEFAULT_CHILD_LIFETIME);
    let dpd_timeout = read_duration(
        cx,
        t,
        "dpd_timeout",
        &DPD_TIMEOUT_RANGE,
        "e.g. \"45s\", \"2m\"",
    )
    .map(|d| d.unwrap_or(DEFAULT_DPD_TIMEOUT));
    let child_lifetime_bytes =
        read_byte_count(cx, t, "child_lifetime_bytes", MIN_CHILD_LIFETIME_BYTES)
            .map(|b| b.unwrap_or(DEFAULT_CHILD_LIFETIME_BYTES));
    let local_id = read_ike_id(cx, t, "local_id");
    let remote_id = read_ike_id(cx, t, "remote_id");
    IkeDraft {
        psk,
        initiate,
        ike_proposals,
        esp_proposals,
        ike_lifetime,
        child_lifetime,
        child_lifetime_bytes,
        dpd_timeout,
        local_id,
        remote_id,
    }
}

/// An optional array of proposal strings. Outer None: invalid (reported); inner None: absent.
fn read_proposals<T: PartialEq>(
    cx: &mut Cx<'_>,
    t: &Table<'_>,
    key: &str,
    parse: fn(&str) -> Result<T, ProposalError>,
) -> Option<Option<Vec<T>>> {
    let Some(node) = t.get(key) else {
        return Some(None);
    };
    let field = t.field(key);
    let count = cx.array(node, &field)?.len();
    if count == 0 {
        cx.error(
            Some(node),
            field,
            "must list at least one proposal (or leave the key out for the defaults)",
        );
        return None;
    }
    let items = t.strings(cx, key);
    let mut ok = items.len() == count;
    let mut out: Vec<(T, String)> = Vec::new();
    for item in items {
        match parse(item.text) {
            Ok(p) => {
                if let Some((_, other)) = out.iter().find(|(q, _)| *q == p) {
                    cx.error(
                        Some(item.node),
                        &item.field,
                        format!(
                            "{:?} is the same proposal as {other}: list each proposal once",
                            item.text
                        ),
                    );
                    ok = false;
                } else {
                    out.push((p, item.field));
                }
            }
            Err(e) => {
                cx.error(Some(item.node), &item.field, e.to_string());
                ok = false;
            }
        }
    }
    ok.then(|| Some(out.into_iter().map(|(p, _)| p).collect()))
}

/// Splits `"27000s"`, `"8 h"`, `"45"` into the number and its unit (possibly empty).
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return None;
    }
    let unit = text[digits..].trim_start();
    // More than u64 digits: too large, never a syntax error.
    let n = text[..digits].parse::<u64>().unwrap_or(u64::MAX);
    Some((n, unit))
}

/// An optional duration: a string with a unit (`s`, `m`, `h`, `d`), or a number of seconds
/// (integer or string), in `range` seconds. Outer None: invalid (reported); inner None: absent.
fn read_duration(
    cx: &mut Cx<'_>,
    t: &Table<'_>,
    key: &str,
    range: &RangeInclusive<u64>,
    examples: &str,
) -> Option<Option<Duration>> {
    let Some(node) = t.get(key) else {
        return Some(None);
    };
    let field = t.field(key);
    let (secs, got) = match &node.kind {
        Kind::Integer(v) => (u64::try_from(*v).ok(), v.to_string()),
        Kind::String(text) => {
            let Some((n, unit)) = number_and_unit(text) else {
                cx.error(
                    Some(node),
                    field,
                    format!("{text:?} is not a duration (use {examples})"),
                );
                return None;
            };
            let scale = match unit.to_ascii_lowercase().as_str() {
                "" | "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => {
                    cx.error(
                        Some(node),
                        field,
                        format!("{text:?} is not a duration (use {examples})"),
                    );
                    return None;
                }
            };
            let secs = n.checked_mul(scale);
            let got = match secs {
                Some(s) => format!("{text:?} ({s} s)"),
                None => format!("{text:?}"),
            };
            (secs, got)
        }
        _ => {
            cx.wrong_type(
                node,
                &field,
                "a string (a duration such as \"45s\") or an integer (seconds)",
            );
            return None;
        }
    };
    match secs {
        Some(s) if range.contains(&s) => Some(Some(Duration::from_secs(s))),
        _ => {
            cx.error(
                Some(node),
                field,
                format!(
                    "must be {}..={} seconds ({}..={}), got {got}",
                    range.start(),
                    range.end(),
                    human_duration(*range.start()),
                    human_duration(*range.end())
                ),
            );
            None
        }
    }
}

/// `45s`, `5m`, `8h`, `2d`: the largest unit that divides `secs`.
fn human_duration(secs: u64) -> String {
    match secs {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// An optional byte count: a string with a unit (`B`, `KB`, `MB`, `GB`, 1024-based, case
/// ignored), or a number of bytes (integer or string), at least `min`. Outer None: invalid
/// (reported); inner None: absent.
fn read_byte_count(cx: &mut Cx<'_>, t: &Table<'_>, key: &str, min: u64) -> Option<Option<u64>> {
    let Some(node) = t.get(key) else {
        return Some(None);
    };
    let field = t.field(key);
    let (bytes, written) = match &node.kind {
        Kind::Integer(v) => (u64::try_from(*v).ok(), format!("{v} bytes")),
        Kind::String(text) => {
            let scale = number_and_unit(text).and_then(|(n, unit)| {
                let scale = match unit.to_ascii_uppercase().as_str() {
                    "" | "B" => 1,
                    "KB" => KB,
                    "MB" => KB * KB,
                    "GB" => KB * KB * KB,
                    _ => return None,
                };
                Some(n.checked_mul(scale))
            });
            let Some(bytes) = scale else {
                cx.error(
                    Some(node),
                    field,
                    format!(
                        "{text:?} is not a byte count (use e.g. \"102400000KB\", \"100GB\"; units: B, KB, MB, GB, with 1 KB = 1024 bytes; a bare number means bytes)"
                    ),
                );
                return None;
            };
            let Some(bytes) = bytes else {
                cx.error(
                    Some(node),
                    field,
                    format!("{text:?} is too large (more than {} bytes)", u64::MAX),
                );
                return None;
            };
            (Some(bytes), format!("{text:?} ({bytes} bytes)"))
        }
        _ => {
            cx.wrong_type(
                node,
                &field,
                "a string (a byte count such as \"102400000KB\") or an integer (bytes)",
            );
            return None;
        }
    };
    match bytes {
        Some(b) if b >= min => Some(Some(b)),
        _ => {
            cx.error(
                Some(node),
                field,
                format!(
                    "must be at least {}KB ({min} bytes), got {written}",
                    min / KB
                ),
            );
            None
        }
    }
}

/// An optional IKE identity: not blank, at most [`MAX_IKE_ID_LEN`] bytes, no control
/// characters. Outer None: invalid (reported); inner None: absent.
fn read_ike_id(cx: &mut Cx<'_>, t: &Table<'_>, key: &str) -> Option<Option<String>> {
    let Some(node) = t.get(key) else {
        return Some(None);
    };
    let field = t.field(key);
    let id = cx.string(node, &field)?;
    let problem = if id.trim().is_empty() {
        Some("must not be empty (leave the key out to use the IP address)".to_owned())
    } else if id.len() > MAX_IKE_ID_LEN {
        Some(format!(
            "must be at most {MAX_IKE_ID_LEN} bytes long, not {}",
            id.len()
        ))
    } else if id.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    };
    match problem {
        Some(p) => {
            cx.error(Some(node), field, p);
            None
        }
        None => Some(Some(id.to_owned())),
    }
}

/// An SPI: 256..=0xffffffff.
fn read_spi<'n>(cx: &mut Cx<'_>, t: &Table<'n>, key: &str) -> Option<At<'n, u32>> {
    let node = t.required(cx, key)?;
    let field = t.field(key);
    let v = cx.integer(node, &field)?;
    match u32::try_from(v) {
        Ok(spi) if spi >= MIN_SPI => Some(At {
            value: spi,
            field,
            node,
        }),
        _ => {
            cx.error(
                Some(node),
                field,
                format!(
                    "must be {MIN_SPI}..={} (0x100..=0xffffffff: SPIs 0..=255 are reserved by RFC 4303), got {v}",
                    u32::MAX
                ),
            );
            None
        }
    }
}

/// Keying material for `cipher` (None: the cipher is unknown, and only the hex is checked).
/// Errors never contain the key.
fn read_key(
    cx: &mut Cx<'_>,
    t: &Table<'_>,
    key: &str,
    cipher: Option<Cipher>,
) -> Option<SecretKey> {
    let (text, node) = t.required_str(cx, key)?;
    let field = t.field(key);
    match cipher {
        Some(cipher) => match SecretKey::from_hex(cipher, text) {
            Ok(k) => Some(k),
            Err(e) => {
                cx.error(Some(node), field, e.to_string());
                None
            }
        },
        None => {
            // Any cipher: only the hex errors, not the length, mean something here.
            match KeyMaterial::from_hex(Cipher::Aes256Gcm16, text) {
                Ok(_) | Err(KeyError::WrongLength { .. }) => {}
                Err(e) => cx.error(Some(node), field, e.to_string()),
            }
            None
        }
    }
}

fn read_manual_sa<'n>(cx: &mut Cx<'_>, t: &Table<'n>) -> ManualSaDraft<'n> {
    t.check_keys(cx, MANUAL_SA_KEYS);
    let cipher = t
        .required_str(cx, "esp")
        .and_then(|(text, node)| match text.parse::<Cipher>() {
            Ok(c) => Some(c),
            Err(e) => {
                cx.error(Some(node), t.field("esp"), e.to_string());
                None
            }
        });
    let out_spi = read_spi(cx, t, "out_spi").map(|a| a.value);
    let out_key = read_key(cx, t, "out_key", cipher);
    let in_spi = read_spi(cx, t, "in_spi");
    let in_key = read_key(cx, t, "in_key", cipher);
    let esn = or_default(t, "esn", false, || t.optional_bool(cx, "esn"));
    let replay_window = match t.get("replay_window") {
        None => Some(ReplayWindow::DEFAULT_SIZE),
        Some(node) => {
            let field = t.field("replay_window");
            let (min, max) = (ReplayWindow::MIN_SIZE, ReplayWindow::MAX_SIZE);
            cx.integer(node, &field)
                .and_then(|v| match u32::try_from(v) {
                    Ok(w) if (min..=max).contains(&w) && w % 64 == 0 => Some(w),
                    _ => {
                        cx.error(
                            Some(node),
                            field,
                            format!("must be a multiple of 64 in {min}..={max}, got {v}"),
                        );
                        None
                    }
                })
        }
    };
    ManualSaDraft {
        cipher,
        out_spi,
        out_key,
        in_spi,
        in_key,
        esn,
        replay_window,
    }
}

/// The checks across sections, then the typed result when all went well.
fn validate(cx: &mut Cx<'_>, root_node: &Node) -> Option<Config> {
    let root = cx.table(root_node, "")?;
    root.check_keys(cx, ROOT_KEYS);
    let vnet = read_vnet(cx, &root);
    let control = read_control(cx, &root);
    let metrics = read_metrics(cx, &root);
    let gateways = read_gateways(cx, &root);
    let connections = read_connections(cx, &root, &gateways, vnet.as_ref());

    // Connections per gateway (circuits, or site-to-site tunnels), against the SKU's limit.
    for (gi, g) in gateways.iter().enumerate() {
        let Some(sku) = &g.sku else { continue };
        let (conn_type, what) = match sku.value.gateway_type() {
            GatewayType::ExpressRoute => (ConnType::ExpressRoute, "ExpressRoute connections"),
            GatewayType::Vpn => (ConnType::IPsec, "IPsec connections (site-to-site tunnels)"),
        };
        let on_it: Vec<&str> = connections
            .iter()
            .filter(|c| c.gateway_index == Some(gi) && c.conn_type == Some(conn_type))
            .map(|c| c.label.as_str())
            .collect();
        let max = sku.value.limits().max_connections as usize;
        if on_it.len() > max {
            cx.error(
                Some(sku.node),
                &sku.field,
                format!(
                    "the {} SKU allows at most {max} {what}, but {} use this gateway ({})",
                    sku.value,
                    on_it.len(),
                    on_it.join(", ")
                ),
            );
        }
    }

    // The same prefix on two ExpressRoute connections needs different routing weights.
    let mut seen: HashMap<(Prefix, u16), &str> = HashMap::new();
    for c in &connections {
        if c.conn_type != Some(ConnType::ExpressRoute) {
            continue;
        }
        let mut here = Vec::new();
        for p in &c.prefixes {
            let key = (p.value, c.routing_weight);
            if let Some(other) = seen.get(&key) {
                cx.error(
                    Some(p.node),
                    &p.field,
                    format!(
                        "{} is also a prefix of {other} with the same routing_weight {}: the route would be ambiguous (give one connection a different routing_weight)",
                        p.value, c.routing_weight
                    ),
                );
            }
            here.push(key);
        }
        for key in here {
            seen.entry(key).or_insert(c.label.as_str());
        }
    }

    // The same prefix on two IPsec connections: tunnels have no weight to choose by. (The same
    // prefix on an ExpressRoute and an IPsec connection is fine: ExpressRoute wins, the tunnel
    // is the backup.)
    let mut seen: HashMap<Prefix, &str> = HashMap::new();
    for c in &connections {
        if c.conn_type != Some(ConnType::IPsec) {
            continue;
        }
        for p in &c.prefixes {
            if let Some(other) = seen.get(&p.value) {
                cx.error(
                    Some(p.node),
                    &p.field,
                    format!(
                        "{} is also a prefix of {other}: two IPsec connections cannot offer the same prefix (tunnels have no routing_weight, so the route would be ambiguous)",
                        p.value
                    ),
                );
            }
        }
        for p in &c.prefixes {
            seen.entry(p.value).or_insert(c.label.as_str());
        }
    }

    // Each tunnel's (local_address, local_port, peer_address, peer_port) once; each in_spi once.
    let tunnels: Vec<(&str, &IpsecDraft<'_>)> = connections
        .iter()
        .filter_map(|c| Some((c.label.as_str(), c.ipsec.as_ref()?)))
        .collect();
    for (i, (_, t)) in tunnels.iter().enumerate() {
        if let (Some((local, peer)), Some(peer_at)) = (t.endpoints(), &t.peer_address) {
            if let Some((other, _)) = tunnels[..i]
                .iter()
                .find(|(_, o)| o.endpoints() == Some((local, peer)))
            {
                cx.error(
                    Some(peer_at.node),
                    &peer_at.field,
                    format!(
                        "{other} already uses local {local} and peer {peer}: each tunnel needs its own (local_address, local_port, peer_address, peer_port)"
                    ),
                );
            }
        }
        let Some(spi) = t.manual_sa.as_ref().and_then(|sa| sa.in_spi.as_ref()) else {
            continue;
        };
        if let Some((other, _)) = tunnels[..i].iter().find(|(_, o)| {
            o.manual_sa
                .as_ref()
                .and_then(|sa| sa.in_spi.as_ref())
                .is_some_and(|o| o.value == spi.value)
        }) {
            cx.error(
                Some(spi.node),
                &spi.field,
                format!(
                    "{:#010x} is also the in_spi of {other}: inbound ESP is told apart by SPI alone, so every in_spi must be unique",
                    spi.value
                ),
            );
        }
    }

    // Each (netns, interface name) once.
    let interfaces: Vec<&InterfaceDraft<'_>> = vnet
        .as_ref()
        .and_then(|v| v.interface.as_ref())
        .into_iter()
        .chain(connections.iter().filter_map(|c| c.interface.as_ref()))
        .collect();
    for (i, it) in interfaces.iter().enumerate() {
        let Some(name) = &it.name else { continue };
        if let Some(other) = interfaces[..i]
            .iter()
            .find(|o| o.netns == it.netns && o.name.as_ref().is_some_and(|n| n.value == name.value))
        {
            let ns = match &it.netns {
                Some(ns) => format!("network namespace `{ns}`"),
                None => "the daemon's own network namespace".to_owned(),
            };
            cx.error(
                Some(name.node),
                &name.field,
                format!(
                    "interface `{}` in {ns} is already used by {}",
                    name.value, other.path
                ),
            );
        }
    }

    // The VNet interface must not take the gateway's own addresses.
    if let Some(v) = &vnet {
        if let Some(it) = &v.interface {
            let space: Vec<Prefix> = v.address_space.iter().map(|p| p.value).collect();
            let gw4 = v.gateway_subnet.as_ref().and_then(derive_gateway_v4);
            let gw6 = match v.gateway_subnet_v6 {
                Some(sub6) if v.address_space_complete => derive_gateway_v6(sub6.as_ref(), &space),
                _ => None,
            };
            for a in &it.addresses {
                let hit = match a.value.addr {
                    IpAddr::V4(x) => gw4 == Some(x),
                    IpAddr::V6(x) => gw6 == Some(x),
                };
                if hit {
                    cx.error(
                        Some(a.node),
                        &a.field,
                        format!(
                            "{} is the gateway's own address (host 4 of its gateway subnet): pick another address",
                            a.value.addr
                        ),
                    );
                }
            }
        }
    }

    // Assemble (any None has been reported).
    let vnet = vnet?;
    let vnet = VnetConfig {
        name: vnet.name?,
        address_space: if vnet.address_space_complete {
            vnet.address_space.iter().map(|p| p.value).collect()
        } else {
            return None;
        },
        gateway_subnet: vnet.gateway_subnet?,
        gateway_subnet_v6: vnet.gateway_subnet_v6?,
        interface: vnet.interface.as_ref()?.build()?,
    };
    let gateways = gateways
        .iter()
        .map(|g| {
            Some(GatewayConfig {
                name: g.name.clone()?,
                gateway_type: g.gateway_type.as_ref()?.value,
                sku: g.sku.as_ref()?.value,
                shaping: g.shaping,
                max_flows: g.max_flows,
                max_new_flows_per_sec: g.max_new_flows_per_sec,
                flow_timeouts: g.flow_timeouts,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let connections = connections
        .iter()
        .map(|c| {
            if !c.prefixes_complete {
                return None;
            }
            let kind = match c.conn_type? {
                ConnType::ExpressRoute => ConnectionKind::ExpressRoute {
                    interface: c.interface.as_ref()?.build()?,
                },
                ConnType::IPsec => ConnectionKind::IPsec(c.ipsec.as_ref()?.build()?),
            };
            Some(ConnectionConfig {
                name: c.name.clone()?,
                gateway: c.gateway.clone()?,
                gateway_index: c.gateway_index?,
                prefixes: c.prefixes.iter().map(|p| p.value).collect(),
                routing_weight: c.routing_weight,
                kind,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Config {
        path: cx.file.to_path_buf(),
        vnet,
        control: control?,
        metrics: metrics?,
        gateways,
        connections,
    })
}

fn derive_gateway_v4(subnet: &Prefix) -> Option<Ipv4Addr> {
    if subnet.len() > MAX_GATEWAY_SUBNET_LEN_V4 {
        return None;
    }
    match subnet.host(4)? {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn derive_gateway_v6(subnet_v6: Option<&Prefix>, space: &[Prefix]) -> Option<Ipv6Addr> {
    let host = match subnet_v6 {
        Some(subnet) => subnet.host(4)?,
        None => {
            let p = space.iter().find(|p| p.family() == Family::V6)?;
            if p.len() <= 64 {
                // The last /64 inside p: every bit between p's length and /64 set.
                let subnet_bits = ((1u128 << (64 - p.len())) - 1) << 64;
                IpAddr::V6(Ipv6Addr::from(p.bits() | subnet_bits | 4))
            } else {
                p.host(4)?
            }
        }
    };
    match host {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "test.toml";

    /// The contract's example: valid.
    const VALID: &str = r#"
[vnet]
name = "vnet1"
address_space = ["10.1.0.0/16", "fd00:1::/48"]
gateway_subnet = "10.1.255.0/27"
[vnet.interface]
name = "cw-vnet0"
netns = "lab-vnet"
addresses = ["10.1.0.10/16", "fd00:1::10/64"]
mtu = 1500

[control]
socket = "/run/causeway/control.sock"

[[gateway]]
name = "er-gw"
type = "ExpressRoute"
sku = "Standard"

[[connection]]
name = "circuit-1"
gateway = "er-gw"
type = "ExpressRoute"
prefixes = ["10.2.0.0/16", "fd00:2::/48"]
routing_weight = 0
[connection.interface]
name = "cw-er0"
netns = "lab-onprem"
addresses = ["10.2.0.10/16", "fd00:2::10/64"]
"#;

    /// An extra ExpressRoute connection on `er-gw`.
    fn circuit(name: &str, prefixes: &str, weight: u16, ifname: &str) -> String {
        format!(
            r#"
[[connection]]
name = "{name}"
gateway = "er-gw"
type = "ExpressRoute"
prefixes = [{prefixes}]
routing_weight = {weight}
[connection.interface]
name = "{ifname}"
netns = "lab-onprem"
"#
        )
    }

    /// VALID with `old` replaced by `new` (which must be there).
    fn edit(old: &str, new: &str) -> String {
        assert!(VALID.contains(old), "VALID has no {old:?}");
        VALID.replacen(old, new, 1)
    }

    fn ok(text: &str) -> Config {
        match parse(text, Path::new(FILE)) {
            Ok(c) => c,
            Err(e) => panic!("unexpected errors:\n{e}"),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text, Path::new(FILE)) {
            Ok(c) => panic!("expected errors, got {c:#?}"),
            Err(e) => {
                assert!(!e.0.is_empty());
                // Display is one error per line.
                let shown = e.to_string();
                assert_eq!(shown.lines().count(), e.0.len(), "{shown}");
                e.0.iter().map(|e| e.to_string()).collect()
            }
        }
    }

    /// Asserts that one error names the file, `field` exactly, and a rule containing `rule`.
    fn expect(text: &str, field: &str, rule: &str) -> Vec<String> {
        let all = errors(text);
        let found = all.iter().any(|e| {
            e.starts_with(FILE)
                && e.contains(&format!(": {field}: "))
                && e.split_once(&format!(": {field}: "))
                    .is_some_and(|(_, r)| r.contains(rule))
        });
        assert!(
            found,
            "no error for field `{field}` with rule `{rule}`; got:\n{}",
            all.join("\n")
        );
        all
    }

    /// Like [`expect`], and the error carries line `line`.
    fn expect_at(text: &str, line: usize, field: &str, rule: &str) {
        let all = expect(text, field, rule);
        let prefix = format!("{FILE}:{line}: {field}: ");
        assert!(
            all.iter()
                .any(|e| e.starts_with(&prefix) && e[prefix.len()..].contains(rule)),
            "no error at line {line} for `{field}`; got:\n{}",
            all.join("\n")
        );
    }

    /// Like [`expect_at`], returning every error.
    fn expect_at_all(text: &str, line: usize, field: &str, rule: &str) -> Vec<String> {
        expect_at(text, line, field, rule);
        errors(text)
    }

    /// The 1-based line of the first occurrence of `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        let at = text
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in text"));
        1 + text[..at].matches('\n').count()
    }

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn a(s: &str) -> InterfaceAddress {
        s.parse().unwrap()
    }

    // --- valid configurations ---------------------------------------------------------------

    #[test]
    fn the_contract_example_parses_into_the_expected_values() {
        let c = ok(VALID);
        assert_eq!(c.path, PathBuf::from(FILE));
        assert_eq!(c.vnet.name, "vnet1");
        assert_eq!(
            c.vnet.address_space,
            vec![p("10.1.0.0/16"), p("fd00:1::/48")]
        );
        assert_eq!(c.vnet.gateway_subnet, p("10.1.255.0/27"));
        assert_eq!(c.vnet.gateway_subnet_v6, None);
        assert_eq!(
            c.vnet.interface,
            InterfaceConfig {
                name: "cw-vnet0".into(),
                netns: Some("lab-vnet".into()),
                addresses: vec![a("10.1.0.10/16"), a("fd00:1::10/64")],
                mtu: 1500,
                txqueuelen: None,
                install_routes: true,
                offload: true,
            }
        );
        assert_eq!(
            c.vnet.gateway_address_v4(),
            "10.1.255.4".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            c.vnet.gateway_address_v6(),
            Some("fd00:1:0:ffff::4".parse().unwrap())
        );
        assert_eq!(
            c.control.socket,
            PathBuf::from("/run/causeway/control.sock")
        );
        assert_eq!(
            c.gateways,
            vec![GatewayConfig {
                name: "er-gw".into(),
                gateway_type: GatewayType::ExpressRoute,
                sku: Sku::ErStandard,
                shaping: true,
                max_flows: None,
                max_new_flows_per_sec: None,
                flow_timeouts: FlowTimeouts::default(),
            }]
        );
        assert_eq!(
            c.connections,
            vec![ConnectionConfig {
                name: "circuit-1".into(),
                gateway: "er-gw".into(),
                gateway_index: 0,
                prefixes: vec![p("10.2.0.0/16"), p("fd00:2::/48")],
                routing_weight: 0,
                kind: ConnectionKind::ExpressRoute {
                    interface: InterfaceConfig {
                        name: "cw-er0".into(),
                        netns: Some("lab-onprem".into()),
                        addresses: vec![a("10.2.0.10/16"), a("fd00:2::10/64")],
                        mtu: 1500,
                        txqueuelen: None,
                        install_routes: true,
                        offload: true,
                    },
                },
            }]
        );
    }

    #[test]
    fn defaults_and_optional_keys() {
        let text = r#"
[vnet]
name = "v"
address_space = ["10.1.0.0/16"]
gateway_subnet = "10.1.0.0/29"
[vnet.interface]
name = "tun0"
txqueuelen = 5000
install_routes = false
offload = false
mtu = 576
"#;
        let c = ok(text);
        assert_eq!(c.control.socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert!(c.gateways.is_empty() && c.connections.is_empty());
        let i = &c.vnet.interface;
        assert_eq!(i.netns, None);
        assert!(i.addresses.is_empty());
        assert_eq!(
            (i.mtu, i.txqueuelen, i.install_routes, i.offload),
            (576, Some(5000), false, false)
        );
        // The smallest gateway subnet: host 4 of a /29.
        assert_eq!(c.vnet.gateway_address_v4().to_string(), "10.1.0.4");
        // No IPv6 anywhere: no IPv6 gateway address.
        assert_eq!(c.vnet.gateway_address_v6(), None);
        // [control] without socket: the default.
        let c = ok(&format!("{text}\n[control]\n"));
        assert_eq!(c.control.socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
    }

    #[test]
    fn gateway_address_v6_derivations() {
        // Explicit IPv6 gateway subnet: its host ::4.
        let c = ok(&edit(
            "gateway_subnet = \"10.1.255.0/27\"",
            "gateway_subnet = \"10.1.255.0/27\"\ngateway_subnet_v6 = \"fd00:1:0:abcd::/64\"",
        ));
        assert_eq!(c.vnet.gateway_subnet_v6, Some(p("fd00:1:0:abcd::/64")));
        assert_eq!(
            c.vnet.gateway_address_v6(),
            Some("fd00:1:0:abcd::4".parse().unwrap())
        );
        // The first IPv6 prefix is used, whatever its position; the last /64 inside it.
        let c = ok(&edit(
            "[\"10.1.0.0/16\", \"fd00:1::/48\"]",
            "[\"10.1.0.0/16\", \"fd00:9::/32\", \"fd00:1::/48\"]",
        ));
        assert_eq!(
            c.vnet.gateway_address_v6(),
            Some("fd00:9:ffff:ffff::4".parse().unwrap())
        );
        // A /64 address space: that /64 itself.
        let mut v = c.vnet.clone();
        v.address_space = vec![p("10.1.0.0/16"), p("fd00:1:2:3::/64")];
        assert_eq!(
            v.gateway_address_v6(),
            Some("fd00:1:2:3::4".parse().unwrap())
        );
        // Longer than /64: host ::4 of the prefix itself; too small for ::4: none.
        v.address_space = vec![p("fd00:1:2:3::100/120")];
        assert_eq!(
            v.gateway_address_v6(),
            Some("fd00:1:2:3::104".parse().unwrap())
        );
        v.address_space = vec![p("fd00::/127")];
        assert_eq!(v.gateway_address_v6(), None);
        v.address_space = vec![p("::/0")];
        assert_eq!(
            v.gateway_address_v6(),
            Some("ffff:ffff:ffff:ffff::4".parse().unwrap())
        );
    }

    #[test]
    fn the_fixture_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/valid.toml");
        let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.path, path);
        assert_eq!(c.gateways[0].sku, Sku::ErGwScale(2));
        assert_eq!(c.connections.len(), 2);
        assert_eq!(c.connections[0].routing_weight, 100);
        assert_eq!(c.connections[1].routing_weight, 0);
        assert_eq!(c.connections[1].gateway_index, 0);
        assert_eq!(c.connections[1].prefixes[1], p("0.0.0.0/0"));
        let ConnectionKind::ExpressRoute { interface } = &c.connections[1].kind else {
            panic!("{:?}", c.connections[1].kind);
        };
        assert_eq!(interface.txqueuelen, Some(1000));
        assert!(!interface.install_routes);
        assert!(!interface.offload);
        // Absent: offloads on.
        assert!(c.vnet.interface.offload);
    }

    #[test]
    fn the_coexistence_fixture_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/coexist.toml");
        let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.gateways.iter().map(|g| g.sku).collect::<Vec<_>>(),
            vec![
                Sku::ErStandard,
                Sku::VpnGw {
                    generation: 1,
                    az: false
                }
            ]
        );
        assert_eq!(c.connections.len(), 3);
        // The circuit's prefix is the first tunnel's backup.
        assert_eq!(c.connections[0].prefixes[0], c.connections[1].prefixes[0]);
        let t1 = ipsec(&c, 1);
        assert_eq!(c.connections[1].gateway_index, 1);
        assert_eq!((t1.mtu, t1.mss_clamp), (1400, Some(1350)));
        assert_eq!(sa(t1).cipher, Cipher::Aes256Gcm16);
        assert_eq!((sa(t1).out_spi, sa(t1).in_spi), (0x1001, 0x2002));
        assert_eq!((sa(t1).esn, sa(t1).replay_window), (true, 2048));
        let t2 = ipsec(&c, 2);
        assert_eq!(t2.local_address, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!((t2.local_port, t2.peer_port), (4501, 4500));
        assert_eq!((t2.mtu, t2.mss_clamp), (1400, None));
        assert_eq!(sa(t2).cipher, Cipher::ChaCha20Poly1305);
        assert_eq!((sa(t2).esn, sa(t2).replay_window), (false, 1024));
        // Spaces and colons in the hex are ignored.
        assert_eq!(
            sa(t2).out_key,
            SecretKey::from_hex(
                Cipher::ChaCha20Poly1305,
                "a1a2a3a4b1b2b3b4c1c2c3c4d1d2d3d4e1e2e3e4f1f2f3f4a5a6a7a8b5b6b7b8c5c6c7c8"
            )
            .unwrap()
        );
    }

    #[test]
    fn the_examples_of_config_md_are_valid() {
        let doc = include_str!("../../../docs/CONFIG.md");
        let mut checked = 0;
        let mut rest = doc;
        while let Some(start) = rest.find("```toml\n") {
            let body = &rest[start + 8..];
            let end = body.find("```").expect("an unterminated ```toml block");
            let block = &body[..end];
            rest = &body[end + 3..];
            if block.contains("[vnet]") {
                ok(block);
                checked += 1;
            }
        }
        assert!(checked >= 2, "{checked} complete examples in CONFIG.md");
    }

    #[test]
    fn an_unreadable_file_is_an_error() {
        let e = load(Path::new("/nonexistent/causeway.toml")).unwrap_err();
        assert_eq!(e.0.len(), 1);
        let s = e.to_string();
        assert!(
            s.starts_with("/nonexistent/causeway.toml: cannot read"),
            "{s}"
        );
    }

    #[test]
    fn dotted_keys_and_inline_tables_are_accepted() {
        // Implicit tables carry no position; they must still be read.
        let text = r#"
control.socket = "/tmp/cw.sock"
vnet.name = "v"
vnet.address_space = ["10.1.0.0/16"]
vnet.gateway_subnet = "10.1.0.0/24"
vnet.interface = { name = "tun0", mtu = 9000 }
gateway = [{ name = "g", type = "ExpressRoute", sku = "ErGw1AZ" }]
"#;
        let c = ok(text);
        assert_eq!(c.control.socket, PathBuf::from("/tmp/cw.sock"));
        assert_eq!(c.vnet.interface.mtu, 9000);
        assert_eq!(c.gateways[0].sku, Sku::ErGw1AZ);
        // Errors under implicit tables are still reported (without a line for the table).
        let all = errors(&text.replace("vnet.name = \"v\"", "vnet.bogus = 1"));
        assert!(
            all.contains(&format!("{FILE}: vnet.name: required key is missing")),
            "{all:?}"
        );
        assert!(
            all.iter()
                .any(|e| e.starts_with(&format!("{FILE}:3: vnet.bogus: unknown key"))),
            "{all:?}"
        );
    }

    #[test]
    fn every_ergwscale_and_expressroute_sku() {
        for (name, sku) in [
            ("Basic", Sku::ErBasic),
            ("Standard", Sku::ErStandard),
            ("HighPerformance", Sku::ErHighPerformance),
            ("UltraPerformance", Sku::ErUltraPerformance),
            ("ErGw1AZ", Sku::ErGw1AZ),
            ("ErGw2AZ", Sku::ErGw2AZ),
            ("ErGw3AZ", Sku::ErGw3AZ),
        ] {
            let c = ok(&edit("sku = \"Standard\"", &format!("sku = \"{name}\"")));
            assert_eq!(c.gateways[0].sku, sku);
        }
        for units in [1, 40] {
            let c = ok(&edit(
                "sku = \"Standard\"",
                &format!("sku = \"ErGwScale\"\nscale_units = {units}"),
            ));
            assert_eq!(c.gateways[0].sku, Sku::ErGwScale(units));
        }
    }

    // --- syntax, keys and types -------------------------------------------------------------

    #[test]
    fn syntax_errors_carry_the_line() {
        let text = edit("mtu = 1500", "mtu = = 1500");
        let all = errors(&text);
        assert_eq!(all.len(), 1, "{all:?}");
        let line = line_of(&text, "mtu = =");
        assert!(
            all[0].starts_with(&format!("{FILE}:{line}: TOML syntax error: ")),
            "{all:?}"
        );
        let text = edit("name = \"er-gw\"", "name = \"er-gw\"\nname = \"again\"");
        let all = errors(&text);
        let line = line_of(&text, "name = \"again\"");
        assert!(
            all[0].starts_with(&format!("{FILE}:{line}: TOML syntax error: ")),
            "{all:?}"
        );
        assert!(all[0].contains("duplicate key"), "{all:?}");
        assert!(!all[0].contains('\n'));
    }

    #[test]
    fn line_numbers() {
        // Also guards the span protocol (see SPANNED_NAME).
        let text = edit("mtu = 1500", "mtu = 99999");
        expect_at(
            &text,
            line_of(&text, "mtu = 99999"),
            "vnet.interface.mtu",
            "576..=65535",
        );
        let text = edit(
            "prefixes = [\"10.2.0.0/16\",",
            "prefixes = [\n  \"10.2.0.1/16\",",
        );
        expect_at(
            &text,
            line_of(&text, "  \"10.2.0.1/16\""),
            "connection[0] (circuit-1).prefixes[0]",
            "host bits set",
        );
        // A missing key: the line of its table's header.
        let text = edit("sku = \"Standard\"\n", "");
        expect_at(
            &text,
            line_of(&text, "[[gateway]]"),
            "gateway[0] (er-gw).sku",
            "required key is missing",
        );
        assert_eq!(line_of(VALID, "mtu = 1500"), 10);
    }

    #[test]
    fn unknown_keys_are_all_reported() {
        let text = "colour = \"blue\"\n".to_owned()
            + &edit("[control]", "[control]\nmode = 1")
                .replace("mtu = 1500", "mtu = 1500\nmut = 1400")
                .replace("name = \"vnet1\"", "name = \"vnet1\"\nregion = \"x\"")
                .replace("sku = \"Standard\"", "sku = \"Standard\"\nzones = [1]")
                .replace("routing_weight = 0", "routing_weight = 0\nweight = 0")
                .replace(
                    "netns = \"lab-onprem\"",
                    "netns = \"lab-onprem\"\nmac = \"x\"",
                )
            + "\n[extra]\nx = 1\n";
        let all = errors(&text);
        for field in [
            "colour",
            "control.mode",
            "vnet.interface.mut",
            "vnet.region",
            "gateway[0] (er-gw).zones",
            "connection[0] (circuit-1).weight",
            "connection[0] (circuit-1).interface.mac",
            "extra",
        ] {
            assert!(
                all.iter()
                    .any(|e| e.contains(&format!(": {field}: unknown key (expected one of: "))),
                "{field} not reported:\n{}",
                all.join("\n")
            );
        }
        assert_eq!(all.len(), 8, "{}", all.join("\n"));
        expect(
            &text,
            "vnet.interface.mut",
            "name, netns, addresses, mtu, txqueuelen, install_routes, offload",
        );
    }

    #[test]
    fn wrong_value_types() {
        expect(
            &edit("name = \"vnet1\"", "name = 1"),
            "vnet.name",
            "expected a string, found an integer",
        );
        expect(
            &edit("mtu = 1500", "mtu = \"1500\""),
            "vnet.interface.mtu",
            "expected an integer, found a string",
        );
        expect(
            &edit("mtu = 1500", "mtu = 1500.0"),
            "vnet.interface.mtu",
            "expected an integer, found a float",
        );
        expect(
            &edit("mtu = 1500", "install_routes = \"yes\""),
            "vnet.interface.install_routes",
            "expected a boolean",
        );
        expect(
            &edit(
                "netns = \"lab-onprem\"",
                "netns = \"lab-onprem\"\noffload = \"off\"",
            ),
            "connection[0] (circuit-1).interface.offload",
            "expected a boolean (true or false), found a string",
        );
        expect(
            &edit(
                "address_space = [\"10.1.0.0/16\", \"fd00:1::/48\"]",
                "address_space = \"10.1.0.0/16\"",
            ),
            "vnet.address_space",
            "expected an array, found a string",
        );
        expect(
            &edit("routing_weight = 0", "routing_weight = 1979-05-27"),
            "connection[0] (circuit-1).routing_weight",
            "found a date-time",
        );
        expect(
            &edit("\"fd00:2::/48\"]", "48]"),
            "connection[0] (circuit-1).prefixes[1]",
            "expected a string, found an integer",
        );
        expect(
            &format!("control = 5\n{}", edit("[control]\n", "[ctl]\n")),
            "control",
            "expected a table, found an integer",
        );
        expect(
            &edit("[vnet.interface]", "interface = \"tun\"\n[x]"),
            "vnet.interface",
            "expected a table, found a string",
        );
        expect(
            &edit("[[gateway]]", "[gateway]").replace("[[connection]]", "[connection]"),
            "gateway",
            "expected an array of tables ([[gateway]]), found a table",
        );
    }

    #[test]
    fn missing_required_keys() {
        expect("", "vnet", "required key is missing");
        let text = r#"
[vnet]
[vnet.interface]
[[gateway]]
[[connection]]
type = "ExpressRoute"
"#;
        for field in [
            "vnet.name",
            "vnet.address_space",
            "vnet.gateway_subnet",
            "vnet.interface.name",
            "gateway[0].name",
            "gateway[0].type",
            "gateway[0].sku",
            "connection[0].name",
            "connection[0].gateway",
            "connection[0].prefixes",
            "connection[0].interface",
        ] {
            expect(text, field, "required key is missing");
        }
        expect(
            &edit("[vnet.interface]", "[ifc]"),
            "vnet.interface",
            "required key is missing",
        );
    }

    // --- prefixes and the VNet ---------------------------------------------------------------

    #[test]
    fn malformed_prefixes_and_addresses() {
        expect(
            &edit("\"10.1.0.0/16\", \"fd00", "\"10.1.0.1/16\", \"fd00"),
            "vnet.address_space[0]",
            "`10.1.0.1/16` has host bits set (did you mean `10.1.0.0/16`?)",
        );
        expect(
            &edit("\"fd00:1::/48\"]", "\"fd00:1::/129\"]"),
            "vnet.address_space[1]",
            "longer than the 128-bit address",
        );
        expect(
            &edit("\"10.2.0.0/16\",", "\"10.2.0.0\","),
            "connection[0] (circuit-1).prefixes[0]",
            "expected ADDRESS/LENGTH",
        );
        expect(
            &edit("\"10.2.0.0/16\",", "\"10.2.0.x/16\","),
            "connection[0] (circuit-1).prefixes[0]",
            "not an IPv4 or IPv6 address",
        );
        expect(
            &edit("\"10.1.0.10/16\"", "\"10.1.0.10/40\""),
            "vnet.interface.addresses[0]",
            "longer than the 32-bit address",
        );
        expect(
            &edit("\"fd00:2::10/64\"", "\"fd00:2::10\""),
            "connection[0] (circuit-1).interface.addresses[1]",
            "not an interface address",
        );
        expect(
            &edit(
                "gateway_subnet = \"10.1.255.0/27\"",
                "gateway_subnet = \"10.1.255.1/27\"",
            ),
            "vnet.gateway_subnet",
            "host bits set",
        );
    }

    #[test]
    fn gateway_subnet_rules() {
        expect(
            &edit("\"10.1.255.0/27\"", "\"10.9.255.0/27\""),
            "vnet.gateway_subnet",
            "10.9.255.0/27 is outside every vnet.address_space prefix (10.1.0.0/16, fd00:1::/48)",
        );
        expect(
            &edit("\"10.1.255.0/27\"", "\"10.1.255.0/30\""),
            "vnet.gateway_subnet",
            "10.1.255.0/30 is smaller than /29",
        );
        expect(
            &edit("\"10.1.255.0/27\"", "\"fd00:1:0:ffff::/64\""),
            "vnet.gateway_subnet",
            "is not an IPv4 prefix",
        );
        let v6 = |s: &str| {
            edit(
                "gateway_subnet = \"10.1.255.0/27\"",
                &format!("gateway_subnet = \"10.1.255.0/27\"\ngateway_subnet_v6 = \"{s}\""),
            )
        };
        ok(&v6("fd00:1::/124"));
        expect(
            &v6("fd00:1::/125"),
            "vnet.gateway_subnet_v6",
            "smaller than /124",
        );
        expect(
            &v6("fd00:9::/64"),
            "vnet.gateway_subnet_v6",
            "fd00:9::/64 is outside every IPv6 vnet.address_space prefix",
        );
        expect(
            &v6("10.1.254.0/24"),
            "vnet.gateway_subnet_v6",
            "is not an IPv6 prefix",
        );
        expect(
            &v6("fd00:1::1/64"),
            "vnet.gateway_subnet_v6",
            "host bits set",
        );
    }

    #[test]
    fn address_space_rules() {
        expect(
            &edit(
                "[\"10.1.0.0/16\", \"fd00:1::/48\"]",
                "[\"10.1.0.0/16\", \"fd00:1::/48\", \"10.1.128.0/17\"]",
            ),
            "vnet.address_space[2]",
            "10.1.128.0/17 overlaps vnet.address_space[0] 10.1.0.0/16",
        );
        expect(
            &edit(
                "[\"10.1.0.0/16\", \"fd00:1::/48\"]",
                "[\"10.1.0.0/16\", \"fd00:1::/48\", \"fd00::/16\"]",
            ),
            "vnet.address_space[2]",
            "address-space prefixes must not overlap",
        );
        let all = expect(
            &edit("[\"10.1.0.0/16\", \"fd00:1::/48\"]", "[]"),
            "vnet.address_space",
            "must list at least one prefix",
        );
        // The gateway subnet cannot be inside nothing: said once, not twice.
        assert_eq!(all.len(), 1, "{all:?}");
        expect(
            &edit("name = \"vnet1\"", "name = \"\""),
            "vnet.name",
            "must not be empty",
        );
        expect(
            &edit("name = \"vnet1\"", "name = \"  \""),
            "vnet.name",
            "must not be empty",
        );
    }

    #[test]
    fn connection_prefix_rules() {
        expect(
            &edit("\"fd00:2::/48\"]", "\"fd00:2::/48\", \"10.2.3.0/24\"]"),
            "connection[0] (circuit-1).prefixes[2]",
            "10.2.3.0/24 overlaps connection[0] (circuit-1).prefixes[0] 10.2.0.0/16",
        );
        expect(
            &edit("\"fd00:2::/48\"]", "\"fd00:2::/48\", \"10.2.0.0/16\"]"),
            "connection[0] (circuit-1).prefixes[2]",
            "10.2.0.0/16 is listed twice",
        );
        expect(
            &edit("\"fd00:2::/48\"]", "\"fd00:2::/48\", \"10.1.7.0/24\"]"),
            "connection[0] (circuit-1).prefixes[2]",
            "10.1.7.0/24 overlaps the VNet address space 10.1.0.0/16",
        );
        expect(
            &edit("\"fd00:2::/48\"]", "\"fd00::/16\"]"),
            "connection[0] (circuit-1).prefixes[1]",
            "overlaps the VNet address space fd00:1::/48",
        );
        expect(
            &edit("[\"10.2.0.0/16\", \"fd00:2::/48\"]", "[]"),
            "connection[0] (circuit-1).prefixes",
            "must list at least one prefix",
        );
        // Default routes are allowed, next to specific prefixes too.
        let c = ok(&edit(
            "\"fd00:2::/48\"]",
            "\"fd00:2::/48\", \"0.0.0.0/0\", \"::/0\"]",
        ));
        assert!(
            c.connections[0].prefixes[2].is_default() && c.connections[0].prefixes[3].is_default()
        );
    }

    #[test]
    fn the_same_prefix_on_two_circuits_needs_different_weights() {
        let text = VALID.to_owned()
            + &circuit("circuit-2", "\"10.3.0.0/16\", \"fd00:2::/48\"", 0, "cw-er1");
        expect_at(
            &text,
            line_of(&text, "\"10.3.0.0/16\", \"fd00:2::/48\""),
            "connection[1] (circuit-2).prefixes[1]",
            "fd00:2::/48 is also a prefix of connection[0] (circuit-1) with the same routing_weight 0: the route would be ambiguous",
        );
        // Also for default routes.
        let text = edit("\"fd00:2::/48\"]", "\"fd00:2::/48\", \"0.0.0.0/0\"]")
            + &circuit("circuit-2", "\"0.0.0.0/0\"", 0, "cw-er1");
        expect(
            &text,
            "connection[1] (circuit-2).prefixes[0]",
            "0.0.0.0/0 is also a prefix of connection[0] (circuit-1)",
        );
        // Different weights: that is what routing_weight is for.
        let c = ok(&(VALID.to_owned()
            + &circuit(
                "circuit-2",
                "\"10.2.0.0/16\", \"fd00:2::/48\"",
                100,
                "cw-er1",
            )));
        assert_eq!(c.connections[1].routing_weight, 100);
        assert_eq!(c.connections[1].prefixes, c.connections[0].prefixes);
        // Overlapping but different prefixes on two circuits are fine (longest match decides).
        ok(&(VALID.to_owned() + &circuit("circuit-2", "\"10.2.1.0/24\"", 0, "cw-er1")));
    }

    // --- gateways ------------------------------------------------------------------------------

    const VPN_GW: &str = "\n[[gateway]]\nname = \"vpn-gw\"\ntype = \"Vpn\"\nsku = \"VpnGw1\"\n";

    /// A VNet and nothing else (IPv4 only).
    const MINIMAL_VNET: &str = "[vnet]\nname = \"v\"\naddress_space = [\"10.1.0.0/16\"]\ngateway_subnet = \"10.1.255.0/27\"\n[vnet.interface]\nname = \"cw-vnet0\"\n";

    /// Test keying material for aes256gcm16 (32-byte key + 4-byte salt).
    const OUT_KEY: &str =
        "5e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1fdeadbeef";
    const IN_KEY: &str = "c0ffee00112233445566778899aabbccddeeff00112233445566778899aabbccfeedface";

    /// An IPsec connection on `vpn-gw`, from 192.0.2.1 to `peer`, with the contract's SA.
    fn tunnel(name: &str, prefixes: &str, peer: &str, in_spi: u32) -> String {
        format!(
            r#"
[[connection]]
name = "{name}"
gateway = "vpn-gw"
type = "IPsec"
local_address = "192.0.2.1"
peer_address = "{peer}"
prefixes = [{prefixes}]
[connection.manual_sa]
esp = "aes256gcm16"
out_spi = 0x00001001
out_key = "{OUT_KEY}"
in_spi = {in_spi:#010x}
in_key = "{IN_KEY}"
"#
        )
    }

    /// VALID, the Vpn gateway and the contract's IPsec connection `s2s-1` (connection[1]).
    fn vpn_valid() -> String {
        VALID.to_owned() + VPN_GW + &tunnel("s2s-1", "\"10.3.0.0/16\"", "192.0.2.2", 0x2002)
    }

    /// `vpn_valid()` with `old` replaced by `new` in the IPsec connection (which must have it).
    fn vpn_edit(old: &str, new: &str) -> String {
        let text = vpn_valid();
        let at = text.find("name = \"s2s-1\"").unwrap();
        assert!(text[at..].contains(old), "s2s-1 has no {old:?}");
        format!("{}{}", &text[..at], text[at..].replacen(old, new, 1))
    }

    /// The IPsec settings of connection `i`.
    fn ipsec(c: &Config, i: usize) -> &IpsecConfig {
        match &c.connections[i].kind {
            ConnectionKind::IPsec(t) => t,
            other => panic!("connection[{i}] is {other:?}"),
        }
    }

    /// The manual SAs of a manually keyed connection.
    fn sa(t: &IpsecConfig) -> &ManualSa {
        t.keying
            .manual()
            .unwrap_or_else(|| panic!("not manually keyed: {t:?}"))
    }

    const S2S: &str = "connection[1] (s2s-1)";

    /// The keys an IPsec connection takes, as listed in `unknown key` errors.
    const IPSEC_KEYS: &str = "name, gateway, type, prefixes, local_address, peer_address, local_port, peer_port, mtu, mss_clamp, manual_sa, shared_key, shared_key_file, initiate, ike_proposals, esp_proposals, ike_lifetime, child_lifetime, child_lifetime_bytes, dpd_timeout, local_id, remote_id";

    /// A pre-shared key for the IKE tests (never a real one).
    const PSK: &str = "Tr0ub4dor&3-correct-horse-battery-staple";

    /// An IKE-keyed IPsec connection on `vpn-gw`, from 192.0.2.1 to `peer`, with `extra` lines
    /// after the prefixes.
    fn ike_tunnel(name: &str, prefixes: &str, peer: &str, extra: &str) -> String {
        format!(
            r#"
[[connection]]
name = "{name}"
gateway = "vpn-gw"
type = "IPsec"
local_address = "192.0.2.1"
peer_address = "{peer}"
prefixes = [{prefixes}]
{extra}"#
        )
    }

    /// VALID, the Vpn gateway and the issue's IKE connection `s2s-1` (connection[1]) with only
    /// `shared_key` and `initiate`.
    fn ike_valid() -> String {
        VALID.to_owned()
            + VPN_GW
            + &ike_tunnel(
                "s2s-1",
                "\"10.3.0.0/16\"",
                "192.0.2.2",
                &format!("shared_key = \"{PSK}\"\ninitiate = true\n"),
            )
    }

    /// `ike_valid()` with `lines` added to s2s-1.
    fn ike_with(lines: &str) -> String {
        format!("{}{lines}\n", ike_valid())
    }

    /// The IKE settings of connection `i`.
    fn ike(c: &Config, i: usize) -> &IkeConfig {
        let t = ipsec(c, i);
        t.keying
            .ike()
            .unwrap_or_else(|| panic!("not IKE-keyed: {t:?}"))
    }

    /// VALID with a gateway table inserted before the first connection.
    fn with_gateway(gw: &str) -> String {
        edit("\n[[connection]]", &format!("{gw}\n[[connection]]"))
    }

    #[test]
    fn gateway_names_and_types() {
        let text = with_gateway("[[gateway]]\nname = \"er-gw\"\ntype = \"Vpn\"\nsku = \"VpnGw1\"");
        expect(
            &text,
            "gateway[1].name",
            "duplicate gateway name `er-gw` (also gateway[0] (er-gw))",
        );
        let text = with_gateway(
            "[[gateway]]\nname = \"er-2\"\ntype = \"ExpressRoute\"\nsku = \"Standard\"",
        );
        expect_at(
            &text,
            line_of(&text, "name = \"er-2\"") + 1,
            "gateway[1] (er-2).type",
            "the VNet already has an ExpressRoute gateway (gateway[0] (er-gw)): at most one gateway of each type",
        );
        expect(
            &edit("type = \"ExpressRoute\"\nsku", "type = \"Er\"\nsku"),
            "gateway[0] (er-gw).type",
            "unknown gateway type `Er` (known: ExpressRoute, Vpn)",
        );
        expect(
            &edit("name = \"er-gw\"", "name = \"\""),
            "gateway[0].name",
            "must not be empty",
        );
    }

    #[test]
    fn gateway_skus() {
        expect(
            &edit("sku = \"Standard\"", "sku = \"Standrd\""),
            "gateway[0] (er-gw).sku",
            "unknown ExpressRoute SKU `Standrd` (known: Basic, Standard,",
        );
        expect(
            &edit("sku = \"Standard\"", "sku = \"VpnGw1\""),
            "gateway[0] (er-gw).sku",
            "unknown ExpressRoute SKU `VpnGw1`",
        );
        expect(
            &edit("sku = \"Standard\"", "sku = \"ErGwScale\""),
            "gateway[0] (er-gw).scale_units",
            "ErGwScale needs `scale_units` (1..=40)",
        );
        for bad in ["0", "41", "-1", "5000000000"] {
            expect(
                &edit(
                    "sku = \"Standard\"",
                    &format!("sku = \"ErGwScale\"\nscale_units = {bad}"),
                ),
                "gateway[0] (er-gw).scale_units",
                &format!("scale_units must be 1..=40, got {bad}"),
            );
        }
        expect(
            &edit(
                "sku = \"Standard\"",
                "sku = \"ErGwScale\"\nscale_units = \"4\"",
            ),
            "gateway[0] (er-gw).scale_units",
            "expected an integer, found a string",
        );
        expect(
            &edit("sku = \"Standard\"", "sku = \"Standard\"\nscale_units = 4"),
            "gateway[0] (er-gw).scale_units",
            "`scale_units` is only valid with ErGwScale, not with Standard",
        );
    }

    #[test]
    fn basic_sku_does_not_coexist() {
        let text = edit("sku = \"Standard\"", "sku = \"Basic\"") + VPN_GW;
        expect(
            &text,
            "gateway[0] (er-gw).sku",
            "the Basic SKU of the ExpressRoute gateway cannot coexist with the Vpn gateway (gateway[1] (vpn-gw))",
        );
        let text = VALID.to_owned() + &VPN_GW.replace("VpnGw1", "Basic");
        expect(
            &text,
            "gateway[1] (vpn-gw).sku",
            "the Basic SKU of the Vpn gateway cannot coexist with the ExpressRoute gateway (gateway[0] (er-gw))",
        );
        // A Basic gateway alone is fine.
        assert_eq!(
            ok(&edit("sku = \"Standard\"", "sku = \"Basic\"")).gateways[0].sku,
            Sku::ErBasic
        );
    }

    #[test]
    fn shaping_can_be_turned_off_for_measurements_and_takes_a_boolean() {
        let c = ok(&edit(
            "sku = \"Standard\"",
            "sku = \"Standard\"\nshaping = false",
        ));
        assert!(!c.gateways[0].shaping);
        assert!(ok(VALID).gateways[0].shaping);
        expect(
            &edit(
                "sku = \"Standard\"",
                "sku = \"Standard\"\nshaping = \"off\"",
            ),
            "gateway[0] (er-gw).shaping",
            "boolean",
        );
    }

    #[test]
    fn flow_limits_may_only_lower_the_skus_and_timeouts_take_durations() {
        let sku = "sku = \"Standard\"";
        let c = ok(&edit(
            sku,
            "sku = \"Standard\"\nmax_flows = 20\nmax_new_flows_per_sec = 5\n\
             [gateway.flow_timeouts]\ntcp_established = \"10m\"\nudp = 5",
        ));
        let g = &c.gateways[0];
        assert_eq!((g.max_flows, g.max_new_flows_per_sec), (Some(20), Some(5)));
        assert_eq!(g.flow_timeouts.tcp_established, Duration::from_secs(600));
        assert_eq!(g.flow_timeouts.udp, Duration::from_secs(5));
        assert_eq!(
            g.flow_timeouts.tcp_closing,
            FlowTimeouts::default().tcp_closing
        );
        let v = ok(VALID);
        assert_eq!(
            (v.gateways[0].max_flows, v.gateways[0].max_new_flows_per_sec),
            (None, None)
        );
        // Standard: 200 000 flows, 7 000 new connections/s.
        let field = "gateway[0] (er-gw).max_flows";
        expect(
            &edit(sku, "sku = \"Standard\"\nmax_flows = 200001"),
            field,
            "at most 200000",
        );
        expect(
            &edit(sku, "sku = \"Standard\"\nmax_flows = 0"),
            field,
            "at least 1",
        );
        expect(
            &edit(sku, "sku = \"Standard\"\nmax_flows = \"many\""),
            field,
            "integer",
        );
        ok(&edit(sku, "sku = \"Standard\"\nmax_flows = 200000"));
        expect(
            &edit(sku, "sku = \"Standard\"\nmax_new_flows_per_sec = 7001"),
            "gateway[0] (er-gw).max_new_flows_per_sec",
            "at most 7000",
        );
        // ErGwScale scales: 3 units, 300 000 flows.
        ok(&edit(
            sku,
            "sku = \"ErGwScale\"\nscale_units = 3\nmax_flows = 300000",
        ));
        expect(
            &edit(
                sku,
                "sku = \"ErGwScale\"\nscale_units = 3\nmax_flows = 300001",
            ),
            field,
            "at most 300000",
        );
        // VPN SKUs publish no flow limits: the table's default bound.
        let vpn = VALID.to_owned() + VPN_GW + "max_flows = 262145\n";
        expect(
            &vpn,
            "gateway[1] (vpn-gw).max_flows",
            "publishes no flow limit",
        );
        let vpn = VALID.to_owned() + VPN_GW + "max_flows = 100\nmax_new_flows_per_sec = 50\n";
        assert_eq!(ok(&vpn).gateways[1].max_flows, Some(100));
        let t = "gateway[0] (er-gw).flow_timeouts";
        expect(
            &edit(
                sku,
                "sku = \"Standard\"\n[gateway.flow_timeouts]\nudp = \"0s\"",
            ),
            &format!("{t}.udp"),
            "must be 1..=604800 seconds",
        );
        expect(
            &edit(
                sku,
                "sku = \"Standard\"\n[gateway.flow_timeouts]\ntcp = \"1m\"",
            ),
            &format!("{t}.tcp"),
            "unknown key",
        );
        expect(
            &edit(sku, "sku = \"Standard\"\nflow_timeouts = 5"),
            t,
            "table",
        );
    }

    #[test]
    fn vpn_gateways_and_every_vpn_sku() {
        let c = ok(&(VALID.to_owned() + VPN_GW));
        assert_eq!(
            c.gateways[1],
            GatewayConfig {
                name: "vpn-gw".into(),
                gateway_type: GatewayType::Vpn,
                sku: Sku::VpnGw {
                    generation: 1,
                    az: false
                },
                shaping: true,
                max_flows: None,
                max_new_flows_per_sec: None,
                flow_timeouts: FlowTimeouts::default(),
            }
        );
        let mut names = vec![
            ("Basic".to_owned(), Sku::VpnBasic),
            ("Standard".to_owned(), Sku::VpnStandard),
            ("HighPerformance".to_owned(), Sku::VpnHighPerformance),
        ];
        for generation in 1..=5 {
            for az in [false, true] {
                let name = format!("VpnGw{generation}{}", if az { "AZ" } else { "" });
                names.push((name, Sku::VpnGw { generation, az }));
            }
        }
        for (name, sku) in names {
            // Alone (a Basic SKU cannot coexist with the ExpressRoute gateway).
            let text = format!("{MINIMAL_VNET}{}", VPN_GW.replace("VpnGw1", &name));
            assert_eq!(ok(&text).gateways[0].sku, sku, "{name}");
        }
        let text = VALID.to_owned() + &VPN_GW.replace("VpnGw1", "VpnGw9");
        expect(&text, "gateway[1] (vpn-gw).sku", "unknown Vpn SKU `VpnGw9`");
        // One Vpn gateway per VNet.
        let text = VALID.to_owned() + VPN_GW + &VPN_GW.replace("vpn-gw", "vpn-gw2");
        expect(
            &text,
            "gateway[2] (vpn-gw2).type",
            "the VNet already has a Vpn gateway (gateway[1] (vpn-gw)): at most one gateway of each type",
        );
    }

    // --- connections ----------------------------------------------------------------------------

    #[test]
    fn connection_names_and_gateways() {
        let text = VALID.to_owned() + &circuit("circuit-1", "\"10.3.0.0/16\"", 0, "cw-er1");
        expect(
            &text,
            "connection[1].name",
            "duplicate connection name `circuit-1` (also connection[0] (circuit-1))",
        );
        expect(
            &edit("name = \"circuit-1\"", "name = \"\""),
            "connection[0].name",
            "must not be empty",
        );
        expect(
            &edit("gateway = \"er-gw\"", "gateway = \"er-gw2\""),
            "connection[0] (circuit-1).gateway",
            "there is no gateway named `er-gw2` (gateways: er-gw)",
        );
    }

    #[test]
    fn connection_types() {
        // An ExpressRoute connection on the Vpn gateway.
        let text = VALID.to_owned()
            + VPN_GW
            + &circuit("circuit-2", "\"10.3.0.0/16\"", 0, "cw-er1")
                .replace("\"er-gw\"", "\"vpn-gw\"");
        expect(
            &text,
            "connection[1] (circuit-2).type",
            "a connection of type ExpressRoute needs an ExpressRoute gateway, but `vpn-gw` (gateway[1] (vpn-gw)) is of type Vpn",
        );
        // An IPsec connection on the ExpressRoute gateway: only the type mismatch is wrong.
        let text = VALID.to_owned()
            + &tunnel("site-1", "\"10.5.0.0/16\"", "192.0.2.2", 0x2002)
                .replace("\"vpn-gw\"", "\"er-gw\"");
        let all = expect(&text, "connection[1] (site-1).type", "a connection of type IPsec needs a Vpn gateway, but `er-gw` (gateway[0] (er-gw)) is of type ExpressRoute");
        assert_eq!(all.len(), 1, "{all:?}");
        expect(
            &edit(
                "type = \"ExpressRoute\"\nprefixes",
                "type = \"GRE\"\nprefixes",
            ),
            "connection[0] (circuit-1).type",
            "unknown connection type `GRE` (known: ExpressRoute, IPsec)",
        );
    }

    #[test]
    fn connections_per_gateway_follow_the_sku() {
        let mut text = VALID.to_owned();
        for i in 2..=5 {
            text += &circuit(
                &format!("circuit-{i}"),
                &format!("\"10.{i}0.0.0/16\""),
                0,
                &format!("cw-er{i}"),
            );
        }
        expect_at(
            &text,
            line_of(&text, "sku = \"Standard\""),
            "gateway[0] (er-gw).sku",
            "the Standard SKU allows at most 4 ExpressRoute connections, but 5 use this gateway (connection[0] (circuit-1), ",
        );
        // HighPerformance carries 8; ErGwScale 4 per unit.
        ok(&text.replace("sku = \"Standard\"", "sku = \"HighPerformance\""));
        ok(&text.replace("sku = \"Standard\"", "sku = \"ErGwScale\"\nscale_units = 2"));
        expect(
            &text.replace("sku = \"Standard\"", "sku = \"ErGwScale\"\nscale_units = 1"),
            "gateway[0] (er-gw).sku",
            "the ErGwScale(1 units) SKU allows at most 4 ExpressRoute connections, but 5",
        );
    }

    #[test]
    fn routing_weight_range() {
        for bad in ["32001", "-1"] {
            expect(
                &edit("routing_weight = 0", &format!("routing_weight = {bad}")),
                "connection[0] (circuit-1).routing_weight",
                &format!("must be 0..=32000, got {bad}"),
            );
        }
        assert_eq!(
            ok(&edit("routing_weight = 0", "routing_weight = 32000")).connections[0].routing_weight,
            32000
        );
        assert_eq!(
            ok(&edit("routing_weight = 0\n", "")).connections[0].routing_weight,
            0
        );
    }

    // --- interfaces -----------------------------------------------------------------------------

    #[test]
    fn interface_names() {
        for bad in [
            "",
            "cw-vnet0-toolong",
            "cw vnet",
            "cw/0",
            "cw:0",
            "cw%d",
            "é",
        ] {
            expect(
                &edit("name = \"cw-vnet0\"", &format!("name = \"{bad}\"")),
                "vnet.interface.name",
                "interface name",
            );
        }
        expect(
            &edit("name = \"cw-vnet0\"", "name = \"cw-vnet0-toolong\""),
            "vnet.interface.name",
            "must be 1 to 15 bytes long (Linux IFNAMSIZ), not 16",
        );
        expect(
            &edit("name = \"cw-vnet0\"", "name = \"cw+0\""),
            "vnet.interface.name",
            "contains '+': only A-Z, a-z, 0-9, '_', '.' and '-' are allowed",
        );
        expect(
            &edit("name = \"cw-vnet0\"", "name = \"..\""),
            "vnet.interface.name",
            "not a valid interface name",
        );
        expect(
            &edit("name = \"cw-vnet0\"", "name = \"-cw\""),
            "vnet.interface.name",
            "must not start with '-'",
        );
        assert_eq!(
            ok(&edit("name = \"cw-vnet0\"", "name = \"a.b_C-123456789\""))
                .vnet
                .interface
                .name,
            "a.b_C-123456789"
        );
    }

    #[test]
    fn interface_netns_and_uniqueness() {
        expect(
            &edit("netns = \"lab-vnet\"", "netns = \"\""),
            "vnet.interface.netns",
            "network namespace name must not be empty",
        );
        expect(
            &edit("netns = \"lab-vnet\"", "netns = \"a/b\""),
            "vnet.interface.netns",
            "must not contain '/'",
        );
        expect(
            &edit("netns = \"lab-vnet\"", "netns = \"..\""),
            "vnet.interface.netns",
            "not a valid network namespace name",
        );
        // The same name in the same netns.
        let text = edit("netns = \"lab-vnet\"", "netns = \"lab-onprem\"")
            .replace("\"cw-vnet0\"", "\"cw-er0\"");
        expect(
            &text,
            "connection[0] (circuit-1).interface.name",
            "interface `cw-er0` in network namespace `lab-onprem` is already used by vnet.interface",
        );
        let text = VALID.to_owned() + &circuit("circuit-2", "\"10.3.0.0/16\"", 0, "cw-er0");
        expect(
            &text,
            "connection[1] (circuit-2).interface.name",
            "already used by connection[0] (circuit-1).interface",
        );
        // Both in the daemon's own namespace.
        let text = edit("netns = \"lab-vnet\"\n", "")
            .replace("netns = \"lab-onprem\"\n", "")
            .replace("\"cw-vnet0\"", "\"cw-er0\"");
        expect(
            &text,
            "connection[0] (circuit-1).interface.name",
            "in the daemon's own network namespace is already used by vnet.interface",
        );
        // The same name in two namespaces is fine.
        ok(&VALID.replace("\"cw-vnet0\"", "\"cw-er0\""));
    }

    #[test]
    fn interface_mtu() {
        for bad in ["575", "65536", "0", "-1500"] {
            expect(
                &edit("mtu = 1500", &format!("mtu = {bad}")),
                "vnet.interface.mtu",
                &format!("must be 576..=65535, got {bad}"),
            );
        }
        expect(
            &edit("mtu = 1500", "mtu = 1279"),
            "vnet.interface.mtu",
            "must be at least 1280 (the IPv6 minimum) because the interface has the IPv6 address fd00:1::10/64, got 1279",
        );
        // Without an IPv6 address 576 is fine.
        let c = ok(&edit("mtu = 1500", "mtu = 576").replace(", \"fd00:1::10/64\"]", "]"));
        assert_eq!(c.vnet.interface.mtu, 576);
        assert_eq!(
            ok(&edit("mtu = 1500", "mtu = 1280")).vnet.interface.mtu,
            1280
        );
        expect(
            &edit(
                "netns = \"lab-onprem\"",
                "netns = \"lab-onprem\"\nmtu = 100",
            ),
            "connection[0] (circuit-1).interface.mtu",
            "must be 576..=65535",
        );
        expect(
            &edit("mtu = 1500", "txqueuelen = -1"),
            "vnet.interface.txqueuelen",
            "must be 0..=4294967295, got -1",
        );
    }

    #[test]
    fn the_vnet_interface_does_not_take_the_gateway_address() {
        expect(
            &edit("\"10.1.0.10/16\"", "\"10.1.255.4/27\""),
            "vnet.interface.addresses[0]",
            "10.1.255.4 is the gateway's own address",
        );
        expect(
            &edit("\"fd00:1::10/64\"", "\"fd00:1:0:ffff::4/64\""),
            "vnet.interface.addresses[1]",
            "fd00:1:0:ffff::4 is the gateway's own address",
        );
        let text = edit(
            "gateway_subnet = \"10.1.255.0/27\"",
            "gateway_subnet = \"10.1.255.0/27\"\ngateway_subnet_v6 = \"fd00:1:0:abcd::/64\"",
        );
        // With an explicit IPv6 gateway subnet the derived address is free...
        ok(&text.replace("\"fd00:1::10/64\"", "\"fd00:1:0:ffff::4/64\""));
        // ...and host ::4 of the subnet is taken.
        expect(
            &text.replace("\"fd00:1::10/64\"", "\"fd00:1:0:abcd::4/64\""),
            "vnet.interface.addresses[1]",
            "fd00:1:0:abcd::4 is the gateway's own address",
        );
        // Other interfaces may use it (they are not in the VNet).
        ok(&edit("\"10.2.0.10/16\"", "\"10.1.255.4/27\""));
    }

    // --- control and the whole file --------------------------------------------------------------

    #[test]
    fn control_state_dir_is_absolute_with_a_default() {
        assert_eq!(
            ok(VALID).control.state_dir,
            PathBuf::from(DEFAULT_STATE_DIR)
        );
        let text = edit(
            "socket = \"/run/causeway/control.sock\"",
            "socket = \"/run/causeway/control.sock\"\nstate_dir = \"var/lib/x\"",
        );
        expect(
            &text,
            "control.state_dir",
            "`var/lib/x` is not an absolute path",
        );
        let text = edit(
            "socket = \"/run/causeway/control.sock\"",
            "socket = \"/run/causeway/control.sock\"\nstate_dir = \"/tmp/cw-state\"",
        );
        assert_eq!(ok(&text).control.state_dir, PathBuf::from("/tmp/cw-state"));
    }

    #[test]
    fn control_socket_is_absolute() {
        expect(
            &edit(
                "socket = \"/run/causeway/control.sock\"",
                "socket = \"run/control.sock\"",
            ),
            "control.socket",
            "`run/control.sock` is not an absolute path",
        );
        expect(
            &edit("socket = \"/run/causeway/control.sock\"", "socket = \"\""),
            "control.socket",
            "is not an absolute path",
        );
        expect(
            &edit("socket = \"/run/causeway/control.sock\"", "socket = 1"),
            "control.socket",
            "expected a string",
        );
    }

    #[test]
    fn control_listen_comes_with_a_private_token_file() {
        assert_eq!(ok(VALID).control.tcp, None);
        let dir = scratch_dir("token");
        let good = key_file(&dir, "token", b"  s3cret-token\n", 0o600);
        let open = key_file(&dir, "open-token", b"s3cret-token\n", 0o640);
        let spaced = key_file(&dir, "spaced-token", b"s3cret token\n", 0o600);
        let with = |keys: &str| {
            edit(
                "socket = \"/run/causeway/control.sock\"\n",
                &format!("socket = \"/run/causeway/control.sock\"\n{keys}\n"),
            )
        };
        let both = |listen: &str, token: &Path| {
            with(&format!(
                "listen = \"{listen}\"\ntoken_file = \"{}\"",
                token.display()
            ))
        };
        let (addr, token) = ok(&both("127.0.0.1:9475", &good)).control.tcp.unwrap();
        assert_eq!(addr, "127.0.0.1:9475".parse().unwrap());
        assert!(token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-tokeN"));
        expect(
            &both("127.0.0.1:9475", &open),
            "control.token_file",
            "is accessible by group or others (mode 0640): a control token must be private to its owner",
        );
        expect(
            &both("127.0.0.1:9475", &spaced),
            "control.token_file",
            "must be printable ASCII without spaces",
        );
        expect(
            &both("127.0.0.1", &good),
            "control.listen",
            "`127.0.0.1` is not a socket address",
        );
        expect(
            &with("listen = \"127.0.0.1:9475\""),
            "control.listen",
            "needs `token_file`",
        );
        expect(
            &with(&format!("token_file = \"{}\"", good.display())),
            "control.token_file",
            "give `listen` too",
        );
    }

    #[test]
    fn metrics_listen_is_an_optional_socket_address() {
        assert_eq!(ok(VALID).metrics.listen, None);
        let with = |table: &str| {
            edit(
                "socket = \"/run/causeway/control.sock\"\n",
                &format!("socket = \"/run/causeway/control.sock\"\n\n[metrics]\n{table}\n"),
            )
        };
        assert_eq!(ok(&with("")).metrics.listen, None);
        assert_eq!(
            ok(&with("listen = \"127.0.0.1:9474\"")).metrics.listen,
            Some("127.0.0.1:9474".parse().unwrap())
        );
        // Not loopback: allowed (documented as exposing the counters).
        assert_eq!(
            ok(&with("listen = \"[::]:9474\"")).metrics.listen,
            Some("[::]:9474".parse().unwrap())
        );
        let text = with("listen = \"127.0.0.1\"");
        expect_at(
            &text,
            line_of(&text, "listen ="),
            "metrics.listen",
            "`127.0.0.1` is not a socket address (ADDRESS:PORT",
        );
        expect(
            &with("listen = \"localhost:9474\""),
            "metrics.listen",
            "`localhost:9474` is not a socket address",
        );
        expect(
            &with("listen = \"127.0.0.1:0\""),
            "metrics.listen",
            "has port 0",
        );
        expect(
            &with("listen = 9474"),
            "metrics.listen",
            "expected a string",
        );
        expect(
            &with("port = 9474"),
            "metrics.port",
            "unknown key (expected one of: listen)",
        );
        expect(
            &format!("metrics = 1\n{VALID}"),
            "metrics",
            "expected a table",
        );
    }

    // --- IPsec connections -------------------------------------------------------------------

    #[test]
    fn the_ipsec_contract_example_parses_into_the_expected_values() {
        assert_eq!(OUT_KEY.len(), 72);
        assert_eq!(IN_KEY.len(), 72);
        let c = ok(&vpn_valid());
        let conn = &c.connections[1];
        assert_eq!(
            (
                conn.name.as_str(),
                conn.gateway.as_str(),
                conn.gateway_index
            ),
            ("s2s-1", "vpn-gw", 1)
        );
        assert_eq!(
            (conn.prefixes.clone(), conn.routing_weight),
            (vec![p("10.3.0.0/16")], 0)
        );
        let cipher = Cipher::Aes256Gcm16;
        let expected = IpsecConfig {
            local_address: "192.0.2.1".parse().unwrap(),
            peer_address: "192.0.2.2".parse().unwrap(),
            local_port: 4500,
            peer_port: 4500,
            mtu: 1400,
            mss_clamp: Some(1350),
            keying: Keying::Manual(ManualSa {
                cipher,
                out_spi: 0x1001,
                out_key: SecretKey::from_hex(cipher, OUT_KEY).unwrap(),
                in_spi: 0x2002,
                in_key: SecretKey::from_hex(cipher, IN_KEY).unwrap(),
                esn: false,
                replay_window: 1024,
            }),
        };
        assert_eq!(ipsec(&c, 1), &expected);
        assert_ne!(sa(&expected).out_key, sa(&expected).in_key);
        assert_eq!(conn.kind, ConnectionKind::IPsec(expected));
    }

    #[test]
    fn ipsec_optional_keys() {
        let text = vpn_edit(
            "prefixes",
            "local_port = 1\npeer_port = 65535\nmtu = 9000\nmss_clamp = 8960\nprefixes",
        )
        .replace(
            &format!("in_key = \"{IN_KEY}\""),
            &format!("in_key = \"{IN_KEY}\"\nesn = true\nreplay_window = 1048576"),
        );
        let t = ipsec(&ok(&text), 1).clone();
        assert_eq!(
            (t.local_port, t.peer_port, t.mtu, t.mss_clamp),
            (1, 65535, 9000, Some(8960))
        );
        assert_eq!((sa(&t).esn, sa(&t).replay_window), (true, 1 << 20));
        // mss_clamp = 0 disables clamping.
        let t = ipsec(&ok(&vpn_edit("prefixes", "mss_clamp = 0\nprefixes")), 1).clone();
        assert_eq!(t.mss_clamp, None);
        // Without mss_clamp: mtu - 50, at least 536.
        for (mtu, mss) in [(1500, 1450), (1280, 1230), (9000, 8950)] {
            let c = ok(&vpn_edit("prefixes", &format!("mtu = {mtu}\nprefixes")));
            assert_eq!(ipsec(&c, 1).mss_clamp, Some(mss), "mtu {mtu}");
        }
        // The smallest tunnel MTU needs an IPv4-only VNet.
        let text = MINIMAL_VNET.to_owned()
            + VPN_GW
            + &tunnel("s2s-1", "\"10.3.0.0/16\"", "192.0.2.2", 0x2002)
                .replace("prefixes", "mtu = 576\nprefixes");
        let c = ok(&text);
        assert_eq!((ipsec(&c, 0).mtu, ipsec(&c, 0).mss_clamp), (576, Some(536)));
        // Every cipher, with its key length.
        for (esp, cipher, hex) in [
            ("aes128gcm16", Cipher::Aes128Gcm16, "ab".repeat(20)),
            ("AES256GCM16", Cipher::Aes256Gcm16, "ab".repeat(36)),
            (
                "chacha20poly1305",
                Cipher::ChaCha20Poly1305,
                "ab".repeat(36),
            ),
        ] {
            let text = vpn_edit("esp = \"aes256gcm16\"", &format!("esp = \"{esp}\""))
                .replace(OUT_KEY, &hex)
                .replace(IN_KEY, &format!("0X{hex}"));
            let c = ok(&text);
            let sa = sa(ipsec(&c, 1));
            assert_eq!(sa.cipher, cipher);
            assert_eq!(sa.out_key, sa.in_key);
            assert_eq!(
                sa.out_key.key_material(cipher).len(),
                cipher.key_material_len()
            );
        }
    }

    #[test]
    fn ipsec_endpoint_addresses() {
        let local = format!("{S2S}.local_address");
        let peer = format!("{S2S}.peer_address");
        for key in ["local_address", "peer_address"] {
            let line = if key == "local_address" {
                "local_address = \"192.0.2.1\"\n"
            } else {
                "peer_address = \"192.0.2.2\"\n"
            };
            expect(
                &vpn_edit(line, ""),
                &format!("{S2S}.{key}"),
                "required key is missing",
            );
        }
        expect(
            &vpn_edit("\"192.0.2.1\"", "\"192.0.2\""),
            &local,
            "`192.0.2` is not an IPv4 or IPv6 address",
        );
        expect(
            &vpn_edit("\"192.0.2.2\"", "\"192.0.2.2/32\""),
            &peer,
            "`192.0.2.2/32` is not an IPv4 or IPv6 address",
        );
        expect(
            &vpn_edit("\"192.0.2.2\"", "4"),
            &peer,
            "expected a string, found an integer",
        );
        for (addr, what) in [
            ("0.0.0.0", "the unspecified address"),
            ("::", "the unspecified address"),
            ("224.0.0.5", "a multicast address"),
            ("ff02::1", "a multicast address"),
            ("255.255.255.255", "the broadcast address"),
        ] {
            expect(
                &vpn_edit("\"192.0.2.1\"", &format!("\"{addr}\"")),
                &local,
                &format!("{addr} is {what}: a tunnel endpoint must be a unicast address"),
            );
            expect(
                &vpn_edit("\"192.0.2.2\"", &format!("\"{addr}\"")),
                &peer,
                &format!("{addr} is {what}"),
            );
        }
        let text = vpn_edit("\"192.0.2.2\"", "\"2001:db8::2\"");
        expect_at(
            &text,
            line_of(&text, "peer_address = \"2001:db8::2\""),
            &peer,
            "2001:db8::2 is an IPv6 address but local_address 192.0.2.1 is IPv4: both ends of a tunnel must be of the same family",
        );
        expect(
            &vpn_edit("\"192.0.2.2\"", "\"192.0.2.1\""),
            &peer,
            "192.0.2.1 is also the local_address: the peer must be another host",
        );
        // IPv6 underlay.
        let c = ok(&vpn_edit("\"192.0.2.1\"", "\"2001:db8::1\"")
            .replace("\"192.0.2.2\"", "\"2001:db8::2\""));
        assert_eq!(
            ipsec(&c, 1).peer_address,
            "2001:db8::2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipsec_ports_mtu_and_mss() {
        for key in ["local_port", "peer_port"] {
            for bad in ["0", "65536", "-1"] {
                expect(
                    &vpn_edit("prefixes", &format!("{key} = {bad}\nprefixes")),
                    &format!("{S2S}.{key}"),
                    &format!("must be 1..=65535, got {bad}"),
                );
            }
        }
        let mtu = format!("{S2S}.mtu");
        for bad in ["575", "9001"] {
            expect(
                &vpn_edit("prefixes", &format!("mtu = {bad}\nprefixes")),
                &mtu,
                &format!("must be 576..=9000, got {bad}"),
            );
        }
        // The VNet has IPv6: the IPv6 minimum MTU.
        let text = vpn_edit("prefixes", "mtu = 1279\nmss_clamp = 1200\nprefixes");
        let all = expect_at_all(
            &text,
            line_of(&text, "mtu = 1279"),
            &mtu,
            "must be at least 1280 (the IPv6 minimum) because the VNet has the IPv6 address space fd00:1::/48, got 1279",
        );
        assert_eq!(all.len(), 1, "{all:?}");
        let mss = format!("{S2S}.mss_clamp");
        for bad in ["535", "1361", "-1", "70000"] {
            expect(
                &vpn_edit("prefixes", &format!("mss_clamp = {bad}\nprefixes")),
                &mss,
                &format!("must be 536..=1360 (mtu - 40), or 0 to disable clamping, got {bad}"),
            );
        }
        expect(
            &vpn_edit("prefixes", "mtu = 1300\nmss_clamp = 1261\nprefixes"),
            &mss,
            "must be 536..=1260 (mtu - 40)",
        );
        ok(&vpn_edit(
            "prefixes",
            "mtu = 1300\nmss_clamp = 1260\nprefixes",
        ));
        expect(
            &vpn_edit("prefixes", "mss_clamp = \"1350\"\nprefixes"),
            &mss,
            "expected an integer, found a string",
        );
    }

    #[test]
    fn keying_is_required_and_manual_sa_keys_are_checked() {
        let text = vpn_valid();
        let at = text.find("[connection.manual_sa]").unwrap();
        let without = text[..at].to_owned();
        let all = expect_at_all(
            &without,
            line_of(&without, "name = \"s2s-1\"") - 1,
            S2S,
            "an IPsec connection needs keys: `shared_key` or `shared_key_file` for IKEv2 with a pre-shared key, or a [connection.manual_sa] table for keys set by hand",
        );
        assert_eq!(all.len(), 1, "{all:?}");
        expect(
            &(without.clone() + "manual_sa = \"psk\"\n"),
            &format!("{S2S}.manual_sa"),
            "expected a table, found a string",
        );
        let text = vpn_edit("esp =", "ike = \"aes256gcm16-prfsha256-ecp256\"\nesp =");
        let all = expect(
            &text,
            &format!("{S2S}.manual_sa.ike"),
            "unknown key (expected one of: esp, out_spi, out_key, in_spi, in_key, esn, replay_window)",
        );
        assert_eq!(all.len(), 1, "{all:?}");
        for key in ["esp", "out_spi", "out_key", "in_spi", "in_key"] {
            let text = vpn_valid();
            let at = text.find("[connection.manual_sa]").unwrap();
            let line_start = at + text[at..].find(&format!("\n{key} =")).unwrap() + 1;
            let line_end = line_start + text[line_start..].find('\n').unwrap() + 1;
            let text = format!("{}{}", &text[..line_start], &text[line_end..]);
            expect_at(
                &text,
                line_of(&text, "[connection.manual_sa]"),
                &format!("{S2S}.manual_sa.{key}"),
                "required key is missing",
            );
        }
        expect(
            &vpn_edit(
                &format!("in_key = \"{IN_KEY}\""),
                &format!("in_key = \"{IN_KEY}\"\nesn = 1"),
            ),
            &format!("{S2S}.manual_sa.esn"),
            "expected a boolean",
        );
    }

    #[test]
    fn manual_sa_cipher_and_spis() {
        let text = vpn_edit("esp = \"aes256gcm16\"", "esp = \"aes256-sha1\"");
        let all = expect_at_all(
            &text,
            line_of(&text, "esp = "),
            &format!("{S2S}.manual_sa.esp"),
            "unknown ESP cipher \"aes256-sha1\"; known ciphers are aes256gcm16, aes128gcm16, chacha20poly1305, aes256-sha256, aes128-sha256",
        );
        // Without a known cipher the key lengths cannot be checked (and are not reported).
        assert_eq!(all.len(), 1, "{all:?}");
        // ... but hex is hex.
        let all =
            errors(&text.replace(&format!("out_key = \"{OUT_KEY}\""), "out_key = \"0x12g4\""));
        assert_eq!(all.len(), 2, "{all:?}");
        expect(
            &text.replace(&format!("out_key = \"{OUT_KEY}\""), "out_key = \"0x12g4\""),
            &format!("{S2S}.manual_sa.out_key"),
            "key is not hex: invalid character at position 5",
        );
        for key in ["out_spi", "in_spi"] {
            let old = if key == "out_spi" {
                "out_spi = 0x00001001"
            } else {
                "in_spi = 0x00002002"
            };
            for bad in ["0", "255", "-1", "4294967296"] {
                let text = vpn_edit(old, &format!("{key} = {bad}"));
                expect_at(
                    &text,
                    line_of(&text, &format!("{key} = {bad}")),
                    &format!("{S2S}.manual_sa.{key}"),
                    &format!("must be 256..=4294967295 (0x100..=0xffffffff: SPIs 0..=255 are reserved by RFC 4303), got {bad}"),
                );
            }
            for good in ["256", "0xffffffff"] {
                ok(&vpn_edit(old, &format!("{key} = {good}")));
            }
            expect(
                &vpn_edit(old, &format!("{key} = \"0x1001\"")),
                &format!("{S2S}.manual_sa.{key}"),
                "expected an integer, found a string",
            );
        }
    }

    #[test]
    fn manual_sa_keys_and_replay_window() {
        let out_key = format!("{S2S}.manual_sa.out_key");
        let in_key = format!("{S2S}.manual_sa.in_key");
        expect(
            &vpn_edit(OUT_KEY, &OUT_KEY[..70]),
            &out_key,
            "key for aes256gcm16 must be 36 bytes (32 key + 4 salt), got 35",
        );
        expect(
            &vpn_edit(IN_KEY, &IN_KEY[..71]),
            &in_key,
            "key is not hex: odd number of hex digits",
        );
        // A 16-byte key (plus salt) is for aes128gcm16.
        let text = vpn_edit("esp = \"aes256gcm16\"", "esp = \"aes128gcm16\"");
        expect(
            &text,
            &out_key,
            "key for aes128gcm16 must be 20 bytes (16 key + 4 salt), got 36",
        );
        expect(
            &vpn_edit(IN_KEY, "0x"),
            &in_key,
            "must be 36 bytes (32 key + 4 salt), got 0",
        );
        expect(
            &vpn_edit(&format!("\"{IN_KEY}\""), "0x1234"),
            &in_key,
            "expected a string, found an integer",
        );
        let window = format!("{S2S}.manual_sa.replay_window");
        for bad in ["0", "64", "1000", "1088", "1048577", "2097152", "-1024"] {
            let text = vpn_edit(
                &format!("in_key = \"{IN_KEY}\""),
                &format!("in_key = \"{IN_KEY}\"\nreplay_window = {bad}"),
            );
            if bad == "1088" {
                // 1088 = 17 x 64 is fine.
                assert_eq!(sa(ipsec(&ok(&text), 1)).replay_window, 1088);
                continue;
            }
            expect(
                &text,
                &window,
                &format!("must be a multiple of 64 in 1024..=1048576, got {bad}"),
            );
        }
    }

    #[test]
    fn keys_never_appear_in_errors_or_debug_output() {
        // The whole parsed config, in both Debug forms.
        let c = ok(&vpn_valid());
        for shown in [format!("{c:?}"), format!("{c:#?}")] {
            assert!(shown.contains("<redacted>"), "{shown}");
            for key in [OUT_KEY, IN_KEY] {
                assert!(!shown.to_lowercase().contains(&key[..16]), "{shown}");
            }
            // Nor as bytes ([0x5e, 0x1f, 0x0a, ...] in decimal).
            assert!(!shown.contains("94, 31, 10"), "{shown}");
        }
        let sa = sa(ipsec(&c, 1));
        assert_eq!(format!("{}", sa.out_key), "<redacted>");
        assert_eq!(format!("{:?}", sa.in_key), "<redacted>");
        // A bad key of every kind: its text is not in the message, nor in any other error.
        for bad in [
            OUT_KEY[..70].to_owned(),
            format!("{OUT_KEY}00"),
            format!("{}x{}", &OUT_KEY[..40], &OUT_KEY[41..]),
            OUT_KEY[..71].to_owned(),
        ] {
            let text = vpn_edit(OUT_KEY, &bad);
            let all = expect(&text, &format!("{S2S}.manual_sa.out_key"), "key ");
            for e in &all {
                assert!(!e.contains(&bad[..16]), "{e}");
                assert!(!e.contains(&IN_KEY[..16]), "{e}");
            }
            let e = parse(&text, Path::new(FILE)).unwrap_err();
            assert!(!format!("{e:?}").contains(&bad[..16]));
        }
        // Keys with an unknown cipher, and a key in the wrong place.
        let text = vpn_edit("esp = \"aes256gcm16\"", &format!("esp = \"{IN_KEY}x\""));
        for e in errors(&text) {
            assert!(!e.contains(&OUT_KEY[..16]), "{e}");
        }
    }

    #[test]
    fn secret_keys_compare_clone_and_give_key_material() {
        let cipher = Cipher::Aes256Gcm16;
        let a = SecretKey::from_hex(cipher, OUT_KEY).unwrap();
        let spaced: String = OUT_KEY
            .as_bytes()
            .chunks(8)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            SecretKey::from_hex(cipher, &format!("0x{spaced}")).unwrap(),
            a
        );
        assert_eq!(a.clone(), a);
        assert_ne!(SecretKey::from_hex(cipher, IN_KEY).unwrap(), a);
        assert!(matches!(
            SecretKey::from_hex(Cipher::Aes128Gcm16, OUT_KEY),
            Err(KeyError::WrongLength {
                expected: 20,
                got: 36,
                ..
            })
        ));
        // The material opens what the ESP crate sealed with the same hex.
        let km = a.key_material(cipher);
        let direct = KeyMaterial::from_hex(cipher, OUT_KEY).unwrap();
        let mut tx = causeway_esp::OutboundSa::new(0x1001, cipher, &direct, false).unwrap();
        let mut rx = causeway_esp::InboundSa::new(0x1001, cipher, &km, false, 1024).unwrap();
        let mut buf = [0u8; causeway_esp::HEADROOM + 20 + causeway_esp::TAILROOM];
        let esp = tx.seal(&mut buf, causeway_esp::HEADROOM, 20, 4).unwrap();
        assert!(rx.open(&mut buf[esp]).is_ok());
    }

    #[test]
    fn ipsec_connection_keys() {
        // ExpressRoute keys on an IPsec connection, and the reverse.
        let text = vpn_edit("prefixes", "routing_weight = 10\nprefixes")
            + "[connection.interface]\nname = \"cw-s2s\"\n";
        let all = errors(&text);
        assert_eq!(all.len(), 2, "{all:?}");
        for key in ["routing_weight", "interface"] {
            expect(
                &text,
                &format!("{S2S}.{key}"),
                &format!("unknown key for an IPsec connection: `{key}` is a key of ExpressRoute connections (expected one of: {IPSEC_KEYS})"),
            );
        }
        let text = edit(
            "routing_weight = 0",
            "routing_weight = 0\nlocal_address = \"192.0.2.1\"\nmss_clamp = 1350",
        );
        expect(
            &text,
            "connection[0] (circuit-1).local_address",
            "unknown key for an ExpressRoute connection: `local_address` is a key of IPsec connections (expected one of: name, gateway, type, prefixes, routing_weight, interface)",
        );
        expect(
            &text,
            "connection[0] (circuit-1).mss_clamp",
            "unknown key for an ExpressRoute connection",
        );
        let text = vpn_valid()
            .replace("[connection.manual_sa]", "[connection.manual_sa]\n")
            .replacen("name = \"s2s-1\"", "name = \"s2s-1\"\npsk = \"secret\"", 1);
        expect(
            &text,
            &format!("{S2S}.psk"),
            "unknown key (expected one of: name, gateway, type, prefixes, local_address",
        );
        // With an unknown type, the keys of either type are accepted (only the type is wrong).
        let all = errors(&vpn_edit("type = \"IPsec\"", "type = \"Ipsec\""));
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(
            all[0].contains("unknown connection type `Ipsec`"),
            "{all:?}"
        );
    }

    #[test]
    fn ipsec_prefixes() {
        let field = |i: usize| format!("{S2S}.prefixes[{i}]");
        expect(
            &vpn_edit("\"10.3.0.0/16\"", "\"10.3.0.0/16\", \"10.3.1.0/24\""),
            &field(1),
            "10.3.1.0/24 overlaps connection[1] (s2s-1).prefixes[0] 10.3.0.0/16: a connection's prefixes must not overlap each other",
        );
        expect(
            &vpn_edit("\"10.3.0.0/16\"", "\"10.3.0.0/16\", \"10.1.0.0/24\""),
            &field(1),
            "10.1.0.0/24 overlaps the VNet address space 10.1.0.0/16",
        );
        expect(
            &vpn_edit("\"10.3.0.0/16\"", "\"10.3.0.1/16\""),
            &field(0),
            "has host bits set",
        );
        expect(
            &vpn_edit("[\"10.3.0.0/16\"]", "[]"),
            &format!("{S2S}.prefixes"),
            "must list at least one prefix",
        );
        // The circuit's prefix on a tunnel: allowed (ExpressRoute wins, the tunnel is the backup).
        let c = ok(&vpn_edit(
            "\"10.3.0.0/16\"",
            "\"10.2.0.0/16\", \"fd00:2::/48\", \"0.0.0.0/0\"",
        ));
        assert_eq!(
            c.connections[1].prefixes[..2],
            c.connections[0].prefixes[..]
        );
        // The same prefix on two tunnels: ambiguous.
        let text = vpn_valid()
            + &tunnel(
                "s2s-2",
                "\"10.4.0.0/16\", \"10.3.0.0/16\"",
                "192.0.2.3",
                0x3003,
            );
        expect_at(
            &text,
            line_of(&text, "\"10.4.0.0/16\", \"10.3.0.0/16\""),
            "connection[2] (s2s-2).prefixes[1]",
            "10.3.0.0/16 is also a prefix of connection[1] (s2s-1): two IPsec connections cannot offer the same prefix (tunnels have no routing_weight, so the route would be ambiguous)",
        );
        // Default routes too; overlapping but different prefixes are fine (longest match).
        let text = vpn_edit("\"10.3.0.0/16\"", "\"10.3.0.0/16\", \"::/0\"")
            + &tunnel("s2s-2", "\"::/0\"", "192.0.2.3", 0x3003);
        expect(
            &text,
            "connection[2] (s2s-2).prefixes[0]",
            "::/0 is also a prefix of connection[1] (s2s-1)",
        );
        ok(&(vpn_valid() + &tunnel("s2s-2", "\"10.3.128.0/17\"", "192.0.2.3", 0x3003)));
    }

    #[test]
    fn tunnels_are_unique_by_endpoints_and_inbound_spi() {
        // Another peer, another in_spi: fine (the same out_spi too: each peer has its own).
        let c = ok(&(vpn_valid() + &tunnel("s2s-2", "\"10.4.0.0/16\"", "192.0.2.3", 0x3003)));
        assert_eq!(sa(ipsec(&c, 2)).out_spi, sa(ipsec(&c, 1)).out_spi);
        // The same four-tuple.
        let text = vpn_valid() + &tunnel("s2s-2", "\"10.4.0.0/16\"", "192.0.2.2", 0x3003);
        expect_at(
            &text,
            line_of(&text, "name = \"s2s-2\"") + 4,
            "connection[2] (s2s-2).peer_address",
            "connection[1] (s2s-1) already uses local 192.0.2.1:4500 and peer 192.0.2.2:4500: each tunnel needs its own (local_address, local_port, peer_address, peer_port)",
        );
        // Another port makes it another tunnel.
        ok(&text.replace(
            "peer_address = \"192.0.2.2\"\nprefixes = [\"10.4",
            "peer_address = \"192.0.2.2\"\npeer_port = 4501\nprefixes = [\"10.4",
        ));
        let v6 = |t: String| {
            t.replace("\"192.0.2.1\"", "\"2001:db8::1\"")
                .replace("\"192.0.2.2\"", "\"2001:db8::2\"")
        };
        expect(
            &v6(text.clone()),
            "connection[2] (s2s-2).peer_address",
            "already uses local [2001:db8::1]:4500 and peer [2001:db8::2]:4500",
        );
        // The same in_spi on two tunnels.
        let text = vpn_valid() + &tunnel("s2s-2", "\"10.4.0.0/16\"", "192.0.2.3", 0x2002);
        expect_at(
            &text,
            line_of(&text, "name = \"s2s-2\"") + 10 ,
            "connection[2] (s2s-2).manual_sa.in_spi",
            "0x00002002 is also the in_spi of connection[1] (s2s-1): inbound ESP is told apart by SPI alone, so every in_spi must be unique",
        );
    }

    #[test]
    fn ipsec_connections_per_vpn_gateway_follow_the_sku() {
        let many = |n: u32, sku: &str| {
            let mut text = VALID.to_owned() + &VPN_GW.replace("VpnGw1", sku);
            for i in 1..=n {
                text += &tunnel(
                    &format!("s2s-{i}"),
                    &format!("\"10.{}.{}.0/24\"", 100 + i / 200, i % 200),
                    &format!("198.51.{}.{}", i / 200, 1 + i % 200),
                    0x1_0000 + i,
                );
            }
            text
        };
        ok(&many(30, "VpnGw1"));
        let text = many(31, "VpnGw1");
        expect_at(
            &text,
            line_of(&text, "sku = \"VpnGw1\""),
            "gateway[1] (vpn-gw).sku",
            "the VpnGw1 SKU allows at most 30 IPsec connections (site-to-site tunnels), but 31 use this gateway (connection[1] (s2s-1), ",
        );
        ok(&many(31, "VpnGw4AZ"));
        ok(&many(100, "VpnGw5"));
        expect(
            &many(101, "VpnGw5"),
            "gateway[1] (vpn-gw).sku",
            "the VpnGw5 SKU allows at most 100 IPsec connections (site-to-site tunnels), but 101",
        );
        expect(
            &many(11, "Standard"),
            "gateway[1] (vpn-gw).sku",
            "the Standard SKU allows at most 10 IPsec connections",
        );
        // The ExpressRoute connections do not count against the Vpn gateway, nor the reverse.
        let mut text = many(30, "VpnGw1");
        for i in 2..=4 {
            text += &circuit(
                &format!("circuit-{i}"),
                &format!("\"10.{i}0.0.0/16\""),
                0,
                &format!("cw-er{i}"),
            );
        }
        ok(&text);
    }

    // --- IKEv2 keying ------------------------------------------------------------------------

    /// A fresh directory for files of one test.
    fn scratch_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("causeway-config-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes `contents` to `dir/name` with permission bits `mode`.
    fn key_file(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// `ike_valid()` with the key read from `path` instead of `shared_key`.
    fn with_key_file(path: &Path) -> String {
        ike_valid().replace(
            &format!("shared_key = \"{PSK}\""),
            &format!("shared_key_file = \"{}\"", path.display()),
        )
    }

    #[test]
    fn the_default_proposals_are_those_of_the_domain() {
        let ike = default_ike_proposals();
        assert_eq!(
            ike.len(),
            DEFAULT_IKE_PROPOSALS.len(),
            "every default parses"
        );
        assert_eq!(ike.len(), 6);
        assert_eq!(
            ike.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            [
                "aes256gcm16-prfsha256-ecp256",
                "aes256gcm16-prfsha256-curve25519",
                "aes256-sha256-prfsha256-modp2048",
                "aes256-sha256-prfsha256-ecp256",
                "aes256-sha1-prfsha1-modp2048",
                "aes256-sha256-prfsha256-modp1024",
            ]
        );
        // DH groups 19, 31, 14, 19, 14, 2: MODP-1024 (legacy) last.
        assert_eq!(
            ike.iter().map(|p| p.dh.id()).collect::<Vec<_>>(),
            [19, 31, 14, 19, 14, 2]
        );
        let esp = default_esp_proposals();
        assert_eq!(
            esp.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            [
                "aes256gcm16-noesn",
                "aes128gcm16-noesn",
                "aes256-sha256-noesn"
            ]
        );
        assert_eq!(DEFAULT_CHILD_LIFETIME_BYTES, 104_857_600_000);
        assert_eq!(MIN_CHILD_LIFETIME_BYTES, 1_048_576);
        assert_eq!(DEFAULT_IKE_LIFETIME.as_secs(), 28_800);
        assert_eq!(DEFAULT_CHILD_LIFETIME.as_secs(), 27_000);
        assert_eq!(DEFAULT_DPD_TIMEOUT.as_secs(), 45);
    }

    #[test]
    fn the_ike_contract_example_parses_into_the_defaults() {
        let c = ok(&ike_valid());
        let t = ipsec(&c, 1);
        assert_eq!(
            (t.local_port, t.peer_port, t.mtu, t.mss_clamp),
            (4500, 4500, 1400, Some(1350))
        );
        assert_eq!(t.keying.name(), "ike");
        assert!(t.keying.manual().is_none());
        let expected = IkeConfig::with_defaults(SharedKey::parse(PSK.as_bytes()).unwrap());
        assert_eq!(ike(&c, 1), &expected);
        let i = ike(&c, 1);
        assert_eq!(i.psk.as_bytes(), PSK.as_bytes());
        assert!(i.initiate);
        assert_eq!(i.ike_proposals, default_ike_proposals());
        assert_eq!(i.esp_proposals, default_esp_proposals());
        assert_eq!(i.ike_lifetime, Duration::from_secs(28_800));
        assert_eq!(i.child_lifetime, Duration::from_secs(27_000));
        assert_eq!(i.child_lifetime_bytes, 102_400_000 * 1024);
        assert_eq!(i.dpd_timeout, Duration::from_secs(45));
        assert_eq!((&i.local_id, &i.remote_id), (&None, &None));
        // `initiate` is optional too.
        let c = ok(&ike_valid().replace("initiate = true\n", ""));
        assert_eq!(ike(&c, 1), &expected);
    }

    #[test]
    fn every_ike_key_overrides_its_default() {
        let text = ike_valid().replace("initiate = true", "initiate = false")
            + r#"ike_proposals = ["AES256GCM16-PRFSHA384-ECP384", "aes128-sha1-modp2048"]
esp_proposals = ["aes256gcm16-esn", "aes128-sha256-ecp256"]
ike_lifetime = "8h"
child_lifetime = "27000s"
child_lifetime_bytes = "102400000KB"
dpd_timeout = "45s"
local_id = "vpn.example.net"
remote_id = "onprem@example.com"
local_port = 4501
peer_port = 500
mtu = 1420
mss_clamp = 1360
"#;
        let c = ok(&text);
        let t = ipsec(&c, 1);
        assert_eq!(
            (t.local_port, t.peer_port, t.mtu, t.mss_clamp),
            (4501, 500, 1420, Some(1360))
        );
        let i = ike(&c, 1);
        assert!(!i.initiate);
        assert_eq!(
            i.ike_proposals,
            vec![
                IkeProposal::parse("aes256gcm16-prfsha384-ecp384").unwrap(),
                IkeProposal::parse("aes128-sha1-modp2048").unwrap()
            ]
        );
        assert!(i.esp_proposals[0].esn);
        assert!(!i.esp_proposals[1].esn);
        assert_eq!(
            i.esp_proposals[1].dh,
            Some(causeway_ike::crypto::DhGroup::Ecp256)
        );
        assert_eq!(i.ike_lifetime, Duration::from_secs(8 * 3600));
        assert_eq!(i.child_lifetime, Duration::from_secs(27_000));
        assert_eq!(i.child_lifetime_bytes, DEFAULT_CHILD_LIFETIME_BYTES);
        assert_eq!(i.dpd_timeout, Duration::from_secs(45));
        assert_eq!(i.local_id.as_deref(), Some("vpn.example.net"));
        assert_eq!(i.remote_id.as_deref(), Some("onprem@example.com"));
    }

    #[test]
    fn keying_is_manual_or_ike_never_both() {
        // Both kinds.
        let text = vpn_valid().replacen(
            "prefixes = [\"10.3.0.0/16\"]",
            &format!("prefixes = [\"10.3.0.0/16\"]\nshared_key = \"{PSK}\""),
            1,
        );
        let all = expect_at_all(
            &text,
            line_of(&text, "shared_key ="),
            &format!("{S2S}.shared_key"),
            "the connection also has [connection.manual_sa]: keys are either set by hand ([connection.manual_sa]) or negotiated by IKEv2 (`shared_key` or `shared_key_file`), not both",
        );
        assert_eq!(all.len(), 1, "{all:?}");
        // IKE keys on a manually keyed connection: each is reported.
        let text = vpn_valid().replacen(
            "prefixes = [\"10.3.0.0/16\"]",
            "prefixes = [\"10.3.0.0/16\"]\ninitiate = false\ndpd_timeout = \"30s\"",
            1,
        );
        let all = errors(&text);
        assert_eq!(all.len(), 2, "{all:?}");
        for key in ["initiate", "dpd_timeout"] {
            expect_at(
                &text,
                line_of(&text, &format!("{key} =")),
                &format!("{S2S}.{key}"),
                "only IKEv2-keyed connections (with `shared_key` or `shared_key_file`) take this key; this one is keyed by hand ([connection.manual_sa])",
            );
        }
        // IKE keys without a key: the missing key is reported, and the others are checked.
        let text = ike_valid().replace(&format!("shared_key = \"{PSK}\"\n"), "")
            + "dpd_timeout = \"1s\"\n";
        let all = errors(&text);
        assert_eq!(all.len(), 2, "{all:?}");
        expect(&text, S2S, "an IPsec connection needs keys");
        expect(
            &text,
            &format!("{S2S}.dpd_timeout"),
            "must be 9..=3600 seconds",
        );
        // The key inline and in a file.
        let text = ike_with("shared_key_file = \"/etc/causeway/s2s-1.psk\"");
        let all = expect_at_all(
            &text,
            line_of(&text, "shared_key_file"),
            &format!("{S2S}.shared_key_file"),
            "the connection also has `shared_key`: give the pre-shared key once, inline (`shared_key`) or in a file (`shared_key_file`)",
        );
        assert_eq!(all.len(), 1, "{all:?}");
        // The manual SA's own keys at the connection level: where they belong.
        let text = ike_with("esn = true\nreplay_window = 2048\nout_spi = 0x1001");
        let all = errors(&text);
        assert_eq!(all.len(), 3, "{all:?}");
        expect(
            &text,
            &format!("{S2S}.esn"),
            "unknown key for an IPsec connection: `esn` belongs in [connection.manual_sa] (with IKEv2 keying, ESN is negotiated: add `-esn` to an esp_proposals entry, e.g. \"aes256gcm16-esn\")",
        );
        expect(
            &text,
            &format!("{S2S}.replay_window"),
            "unknown key for an IPsec connection: `replay_window` belongs in [connection.manual_sa] (IKEv2-keyed SAs use the default window of 1024 packets)",
        );
        expect(
            &text,
            &format!("{S2S}.out_spi"),
            "`out_spi` belongs in [connection.manual_sa] (IKEv2 keying negotiates it)",
        );
        // IKE keys on an ExpressRoute connection.
        let text = edit(
            "routing_weight = 0",
            "routing_weight = 0\nshared_key = \"x\"",
        );
        expect(
            &text,
            "connection[0] (circuit-1).shared_key",
            "unknown key for an ExpressRoute connection: `shared_key` is a key of IPsec connections",
        );
    }

    #[test]
    fn inline_shared_keys() {
        let field = format!("{S2S}.shared_key");
        let set = |v: &str| ike_valid().replace(&format!("\"{PSK}\""), v);
        for (bad, rule) in [
            ("\"\"", "must not be empty (nor only whitespace)"),
            ("\" \\t \"", "must not be empty (nor only whitespace)"),
            ("\"0x\"", "a key written `0x...` must have at least one byte of hex"),
            (
                "\"0x0123456789abcdeX\"",
                "a key written `0x...` must be hex: invalid character at position 18 (write a text key without the `0x` prefix)",
            ),
            ("\"0xabc\"", "a key written `0x...` must be hex: odd number of hex digits"),
            ("42", "expected a string, found an integer"),
        ] {
            let text = set(bad);
            let all = expect_at_all(&text, line_of(&text, "shared_key ="), &field, rule);
            assert_eq!(all.len(), 1, "{bad}: {all:?}");
        }
        // Text as written (UTF-8, spaces kept), or hex after `0x`.
        for (value, bytes) in [
            ("\" spaced key \"", b" spaced key ".to_vec()),
            ("\"clé\"", "clé".as_bytes().to_vec()),
            ("\"0x00ff10\"", vec![0, 0xff, 0x10]),
            ("\"0XDE:AD be ef\"", vec![0xde, 0xad, 0xbe, 0xef]),
            ("\"0\"", b"0".to_vec()),
        ] {
            let c = ok(&set(value));
            assert_eq!(ike(&c, 1).psk.as_bytes(), &bytes[..], "{value}");
            assert_eq!(ike(&c, 1).psk.len(), bytes.len());
        }
    }

    #[test]
    fn shared_key_files() {
        let dir = scratch_dir("psk");
        let field = format!("{S2S}.shared_key_file");
        // A private file: its contents, without the trailing newline (LF or CRLF).
        for (name, contents) in [
            ("plain.psk", format!("{PSK}\n")),
            ("crlf.psk", format!("{PSK}\r\n")),
            ("bare.psk", PSK.to_owned()),
        ] {
            let path = key_file(&dir, name, contents.as_bytes(), 0o600);
            let c = ok(&with_key_file(&path));
            assert_eq!(ike(&c, 1).psk.as_bytes(), PSK.as_bytes(), "{name}");
            // The same key as inline.
            assert_eq!(ike(&c, 1), ike(&ok(&ike_valid()), 1));
        }
        // Read-only for the owner is fine; hex and arbitrary bytes too; only one newline goes.
        let path = key_file(&dir, "hex.psk", b"0x0102\n", 0o400);
        assert_eq!(ike(&ok(&with_key_file(&path)), 1).psk.as_bytes(), [1, 2]);
        let path = key_file(&dir, "bytes.psk", b"\xff\x00\xfe\n\n", 0o600);
        assert_eq!(
            ike(&ok(&with_key_file(&path)), 1).psk.as_bytes(),
            b"\xff\x00\xfe\n"
        );
        // Through a symbolic link: the target's mode counts.
        let link = dir.join("link.psk");
        std::os::unix::fs::symlink(dir.join("plain.psk"), &link).unwrap();
        ok(&with_key_file(&link));

        let check = |path: &Path, rule: &str| {
            let text = with_key_file(path);
            let all = expect_at_all(&text, line_of(&text, "shared_key_file"), &field, rule);
            assert_eq!(all.len(), 1, "{all:?}");
            for e in &all {
                assert!(!e.contains(&PSK[..12]), "{e}");
            }
        };
        for mode in [0o640, 0o604, 0o620, 0o602, 0o610, 0o644, 0o666] {
            let path = key_file(&dir, "open.psk", format!("{PSK}\n").as_bytes(), mode);
            check(
                &path,
                &format!(
                    "`{p}` is accessible by group or others (mode {mode:04o}): a pre-shared key must be private to its owner (chmod 600 {p})",
                    p = path.display()
                ),
            );
        }
        check(
            &key_file(&dir, "empty.psk", b"", 0o600),
            &format!(
                "`{}` is empty: it must hold the pre-shared key",
                dir.join("empty.psk").display()
            ),
        );
        check(
            &key_file(&dir, "newline.psk", b"\n", 0o600),
            "is empty: it must hold the pre-shared key",
        );
        check(
            &key_file(&dir, "blank.psk", b"  \n", 0o600),
            &format!(
                "the key in `{}`: must not be empty (nor only whitespace)",
                dir.join("blank.psk").display()
            ),
        );
        check(
            &key_file(&dir, "badhex.psk", format!("0x{PSK}\n").as_bytes(), 0o600),
            "the key in `",
        );
        let big = vec![b'k'; MAX_SHARED_KEY_FILE_LEN + 1];
        check(
            &key_file(&dir, "big.psk", &big, 0o600),
            "is larger than 4096 bytes: not a pre-shared key file",
        );
        ok(&with_key_file(&key_file(&dir, "max.psk", &big[1..], 0o600)));
        check(&dir, &format!("`{}` is not a regular file", dir.display()));
        check(
            &dir.join("missing.psk"),
            &format!(
                "cannot open `{}`: No such file or directory",
                dir.join("missing.psk").display()
            ),
        );
        check(
            Path::new("etc/causeway/s2s-1.psk"),
            "`etc/causeway/s2s-1.psk` is not an absolute path",
        );
        let text = ike_valid().replace(
            &format!("shared_key = \"{PSK}\""),
            "shared_key_file = [\"/a\"]",
        );
        expect(&text, &field, "expected a string, found an array");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ike_and_esp_proposals() {
        let ike_field = format!("{S2S}.ike_proposals");
        let esp_field = format!("{S2S}.esp_proposals");
        let text = ike_with("ike_proposals = [\"aes256-sha512-modp2048\"]");
        let all = expect_at_all(
            &text,
            line_of(&text, "ike_proposals"),
            &format!("{ike_field}[0]"),
            "unknown IKE proposal keyword \"sha512\"; known keywords are: aes, aes128, aes256,",
        );
        assert_eq!(all.len(), 1, "{all:?}");
        expect(
            &ike_with("ike_proposals = [\"aes256gcm16-ecp256\"]"),
            &format!("{ike_field}[0]"),
            "IKE proposal has no PRF (an AEAD cipher needs an explicit PRF, e.g. aes256gcm16-prfsha256-ecp256)",
        );
        expect(
            &ike_with("ike_proposals = [\"aes256-sha256\"]"),
            &format!("{ike_field}[0]"),
            "IKE proposal has no Diffie-Hellman group",
        );
        // Each item is checked, all errors reported.
        let text = ike_with(
            "ike_proposals = [\"aes256-sha256-modp2048\", \"aes256-sha2_256-modp2048\", 7, \"3des\"]",
        );
        let all = errors(&text);
        assert_eq!(all.len(), 3, "{all:?}");
        expect(
            &text,
            &format!("{ike_field}[1]"),
            "\"aes256-sha2_256-modp2048\" is the same proposal as connection[1] (s2s-1).ike_proposals[0]: list each proposal once",
        );
        expect(
            &text,
            &format!("{ike_field}[2]"),
            "expected a string, found an integer",
        );
        expect(
            &text,
            &format!("{ike_field}[3]"),
            "unknown IKE proposal keyword \"3des\"",
        );
        expect(
            &ike_with("ike_proposals = []"),
            &ike_field,
            "must list at least one proposal (or leave the key out for the defaults)",
        );
        expect(
            &ike_with("ike_proposals = \"aes256-sha256-modp2048\""),
            &ike_field,
            "expected an array, found a string",
        );
        // ESP: no PRF, ESN and PFS allowed.
        expect(
            &ike_with("esp_proposals = [\"aes256gcm16-prfsha256\"]"),
            &format!("{esp_field}[0]"),
            "unknown ESP proposal keyword \"prfsha256\"; known keywords are:",
        );
        expect(
            &ike_with("esp_proposals = [\"aes256\"]"),
            &format!("{esp_field}[0]"),
            "ESP proposal has no integrity algorithm (AES-CBC needs one, e.g. aes256-sha256)",
        );
        expect(
            &ike_with("esp_proposals = [\"aes256gcm16-sha256\"]"),
            &format!("{esp_field}[0]"),
            "ESP proposal combines an AEAD cipher with an integrity algorithm",
        );
        expect(
            &ike_with("esp_proposals = [\"aes256gcm16\", \"aes256gcm128\"]"),
            &format!("{esp_field}[1]"),
            "is the same proposal as connection[1] (s2s-1).esp_proposals[0]",
        );
        // `-esn` and `-noesn` are different proposals.
        let c = ok(&ike_with(
            "esp_proposals = [\"aes256gcm16-esn\", \"aes256gcm16\"]",
        ));
        assert_eq!(
            ike(&c, 1)
                .esp_proposals
                .iter()
                .map(|p| p.esn)
                .collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn durations_and_byte_counts() {
        let f = |key: &str| format!("{S2S}.{key}");
        let text = ike_with("ike_lifetime = \"8x\"");
        expect_at(
            &text,
            line_of(&text, "ike_lifetime"),
            &f("ike_lifetime"),
            "\"8x\" is not a duration (use e.g. \"8h\", \"27000s\")",
        );
        // The exact message of the issue.
        assert!(errors(&text).iter().any(
            |e| e.ends_with("ike_lifetime: \"8x\" is not a duration (use e.g. \"8h\", \"27000s\")")
        ));
        for bad in [
            "\"h\"",
            "\"\"",
            "\"1.5h\"",
            "\"-5s\"",
            "\"8 hours\"",
            "\"1h30m\"",
        ] {
            expect(
                &ike_with(&format!("child_lifetime = {bad}")),
                &f("child_lifetime"),
                &format!("{bad} is not a duration (use e.g. \"8h\", \"27000s\")"),
            );
        }
        expect(
            &ike_with("dpd_timeout = \"45 sec\""),
            &f("dpd_timeout"),
            "\"45 sec\" is not a duration (use e.g. \"45s\", \"2m\")",
        );
        // Units, case, spaces, bare numbers (seconds), TOML integers.
        for (value, secs) in [
            ("\"45s\"", 45),
            ("\"45\"", 45),
            ("45", 45),
            ("\"9s\"", 9),
            ("\"1h\"", 3600),
            ("\"60m\"", 3600),
            ("\" 2 M \"", 120),
            ("\"3600S\"", 3600),
        ] {
            let c = ok(&ike_with(&format!("dpd_timeout = {value}")));
            assert_eq!(ike(&c, 1).dpd_timeout, Duration::from_secs(secs), "{value}");
        }
        for (value, secs) in [
            ("\"5m\"", 300),
            ("300", 300),
            ("\"2d\"", 172_800),
            ("\"48h\"", 172_800),
        ] {
            let c = ok(&ike_with(&format!(
                "ike_lifetime = {value}\nchild_lifetime = {value}"
            )));
            assert_eq!(ike(&c, 1).ike_lifetime, Duration::from_secs(secs));
            assert_eq!(ike(&c, 1).child_lifetime, Duration::from_secs(secs));
        }
        // A child lifetime longer than the IKE lifetime is allowed (RFC 7296 does not order
        // them).
        let c = ok(&ike_with("ike_lifetime = \"1h\"\nchild_lifetime = \"2h\""));
        assert!(ike(&c, 1).child_lifetime > ike(&c, 1).ike_lifetime);
        // Ranges.
        for (key, value, got) in [
            ("dpd_timeout", "8", "8"),
            ("dpd_timeout", "\"0s\"", "\"0s\" (0 s)"),
            ("dpd_timeout", "\"61m\"", "\"61m\" (3660 s)"),
            ("dpd_timeout", "-1", "-1"),
        ] {
            let text = ike_with(&format!("{key} = {value}"));
            expect_at(
                &text,
                line_of(&text, key),
                &f(key),
                &format!("must be 9..=3600 seconds (9s..=1h), got {got}"),
            );
        }
        for key in ["ike_lifetime", "child_lifetime"] {
            for (value, got) in [
                ("299", "299"),
                ("\"4m\"", "\"4m\" (240 s)"),
                ("\"3d\"", "\"3d\" (259200 s)"),
                ("\"99999999999999999999d\"", "\"99999999999999999999d\""),
                ("\"999999999999999d\"", "\"999999999999999d\""),
            ] {
                expect(
                    &ike_with(&format!("{key} = {value}")),
                    &f(key),
                    &format!("must be 300..=172800 seconds (5m..=2d), got {got}"),
                );
            }
        }
        expect(
            &ike_with("ike_lifetime = 8.5"),
            &f("ike_lifetime"),
            "expected a string (a duration such as \"45s\") or an integer (seconds), found a float",
        );
        // Byte counts: B, KB, MB, GB, 1024-based; a bare number is bytes.
        let bytes = f("child_lifetime_bytes");
        for (value, n) in [
            ("\"102400000KB\"", 104_857_600_000u64),
            ("\"102400000 kb\"", 104_857_600_000),
            ("\"1024KB\"", 1_048_576),
            ("\"1MB\"", 1_048_576),
            ("\"100GB\"", 100 << 30),
            ("\"1048576B\"", 1_048_576),
            ("\"1048576\"", 1_048_576),
            ("1048576", 1_048_576),
        ] {
            let c = ok(&ike_with(&format!("child_lifetime_bytes = {value}")));
            assert_eq!(ike(&c, 1).child_lifetime_bytes, n, "{value}");
        }
        for bad in ["\"100XB\"", "\"KB\"", "\"1.5GB\"", "\"10 K\"", "\"1KiB\""] {
            expect(
                &ike_with(&format!("child_lifetime_bytes = {bad}")),
                &bytes,
                &format!("{bad} is not a byte count (use e.g. \"102400000KB\", \"100GB\"; units: B, KB, MB, GB, with 1 KB = 1024 bytes; a bare number means bytes)"),
            );
        }
        for (value, got) in [
            ("\"1023KB\"", "\"1023KB\" (1047552 bytes)"),
            ("1048575", "1048575 bytes"),
            ("-1", "-1 bytes"),
        ] {
            let text = ike_with(&format!("child_lifetime_bytes = {value}"));
            expect_at(
                &text,
                line_of(&text, "child_lifetime_bytes"),
                &bytes,
                &format!("must be at least 1024KB (1048576 bytes), got {got}"),
            );
        }
        expect(
            &ike_with("child_lifetime_bytes = \"99999999999GB\""),
            &bytes,
            "\"99999999999GB\" is too large (more than 18446744073709551615 bytes)",
        );
        expect(
            &ike_with("child_lifetime_bytes = true"),
            &bytes,
            "expected a string (a byte count such as \"102400000KB\") or an integer (bytes), found a boolean",
        );
        expect(
            &ike_with("initiate = \"yes\"").replace("initiate = true\n", ""),
            &f("initiate"),
            "expected a boolean (true or false), found a string",
        );
    }

    #[test]
    fn ike_identities() {
        let c = ok(&ike_with(
            "local_id = \"192.0.2.1\"\nremote_id = \"@onprem.example.com\"",
        ));
        assert_eq!(ike(&c, 1).local_id.as_deref(), Some("192.0.2.1"));
        assert_eq!(ike(&c, 1).remote_id.as_deref(), Some("@onprem.example.com"));
        for key in ["local_id", "remote_id"] {
            let field = format!("{S2S}.{key}");
            for (value, rule) in [
                (
                    "\"\"".to_owned(),
                    "must not be empty (leave the key out to use the IP address)".to_owned(),
                ),
                (
                    format!("\"{}\"", "a".repeat(256)),
                    "must be at most 255 bytes long, not 256".to_owned(),
                ),
                (
                    "\"a\\nb\"".to_owned(),
                    "must not contain control characters".to_owned(),
                ),
                (
                    "1".to_owned(),
                    "expected a string, found an integer".to_owned(),
                ),
            ] {
                let text = ike_with(&format!("{key} = {value}"));
                expect_at(&text, line_of(&text, key), &field, &rule);
            }
            ok(&ike_with(&format!("{key} = \"{}\"", "a".repeat(255))));
        }
    }

    #[test]
    fn ike_tunnels_follow_the_tunnel_rules() {
        // Endpoints once, whatever the keying; in_spi uniqueness concerns manual SAs only.
        let text = vpn_valid()
            + &ike_tunnel(
                "s2s-2",
                "\"10.4.0.0/16\"",
                "192.0.2.2",
                &format!("shared_key = \"{PSK}\"\n"),
            );
        expect(
            &text,
            "connection[2] (s2s-2).peer_address",
            "connection[1] (s2s-1) already uses local 192.0.2.1:4500 and peer 192.0.2.2:4500",
        );
        let text = vpn_valid()
            + &ike_tunnel(
                "s2s-2",
                "\"10.4.0.0/16\"",
                "192.0.2.3",
                &format!("shared_key = \"{PSK}\"\n"),
            )
            + &tunnel("s2s-3", "\"10.5.0.0/16\"", "192.0.2.4", 0x3003);
        let c = ok(&text);
        assert_eq!(ipsec(&c, 1).keying.name(), "manual");
        assert_eq!(ipsec(&c, 2).keying.name(), "ike");
        assert_eq!(ipsec(&c, 3).keying.name(), "manual");
        // Prefix rules and the SKU's tunnel count apply alike.
        expect(
            &(ike_valid()
                + &ike_tunnel(
                    "s2s-2",
                    "\"10.3.0.0/16\"",
                    "192.0.2.3",
                    "shared_key = \"k\"\n",
                )),
            "connection[2] (s2s-2).prefixes[0]",
            "10.3.0.0/16 is also a prefix of connection[1] (s2s-1)",
        );
        // IPv6 underlay.
        let c = ok(&ike_valid()
            .replace("\"192.0.2.1\"", "\"2001:db8::1\"")
            .replace("\"192.0.2.2\"", "\"2001:db8::2\""));
        assert!(ipsec(&c, 1).peer_address.is_ipv6());
    }

    #[test]
    fn shared_keys_never_appear_in_errors_or_debug_output() {
        let c = ok(&ike_valid());
        for shown in [format!("{c:?}"), format!("{c:#?}")] {
            assert!(shown.contains("psk: <redacted>"), "{shown}");
            assert!(!shown.contains(&PSK[..8]), "{shown}");
            // Nor as bytes (`Tr0u` is [84, 114, 48, 117]).
            assert!(!shown.contains("84, 114, 48"), "{shown}");
        }
        let psk = &ike(&c, 1).psk;
        assert_eq!(format!("{psk}"), "<redacted>");
        assert_eq!(format!("{psk:?}"), "<redacted>");
        assert_eq!(format!("{:?}", ike(&c, 1)).matches("<redacted>").count(), 1);
        // Bad keys: the message says what is wrong, never the key.
        let secret = "0x5ec2e7c0ffee5ec2e7";
        for bad in [format!("{secret}Z"), format!("{secret}1")] {
            let text = ike_valid().replace(PSK, &bad);
            for e in errors(&text) {
                assert!(!e.contains("5ec2e7"), "{e}");
            }
            let e = parse(&text, Path::new(FILE)).unwrap_err();
            assert!(!format!("{e:?}").contains("5ec2e7"));
        }
        // A connection with errors elsewhere: the key is nowhere in the messages.
        let text = ike_valid().replace("initiate = true", "initiate = 1\nmtu = 1")
            + "ike_proposals = [\"nope\"]\n";
        let all = errors(&text);
        assert_eq!(all.len(), 3, "{all:?}");
        for e in all {
            assert!(!e.contains(&PSK[..8]), "{e}");
        }
        // Key files: the contents are never shown, whatever is wrong.
        let dir = scratch_dir("leak");
        for (name, contents, mode) in [
            ("open.psk", format!("{PSK}\n"), 0o644),
            ("hex.psk", format!("0x{PSK}\n"), 0o600),
            ("big.psk", PSK.repeat(200), 0o600),
        ] {
            let path = key_file(&dir, name, contents.as_bytes(), mode);
            let text = with_key_file(&path);
            let e = parse(&text, Path::new(FILE)).unwrap_err();
            assert_eq!(e.0.len(), 1, "{e}");
            assert!(!e.to_string().contains(&PSK[..8]), "{e}");
            assert!(!format!("{e:?}").contains(&PSK[..8]), "{e:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // Constant-time comparison still compares.
        let a = SharedKey::parse(b"abc").unwrap();
        assert_eq!(a, SharedKey::parse(b"0x616263").unwrap());
        assert_ne!(a, SharedKey::parse(b"abd").unwrap());
        assert_ne!(a, SharedKey::parse(b"abcd").unwrap());
        assert_eq!(a.clone(), a);
        assert_eq!(a.as_secret_bytes().as_bytes(), b"abc");
    }

    #[test]
    fn the_ike_fixture_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/ike.toml");
        let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.connections.len(), 3);
        let i = ike(&c, 1);
        assert_eq!(i.psk.as_bytes(), b"fixture-only: never use this key");
        assert!(i.initiate);
        assert_eq!(i.ike_proposals, default_ike_proposals());
        let i = ike(&c, 2);
        assert!(!i.initiate);
        assert_eq!(i.psk.as_bytes(), [0x6b, 0x65, 0x79, 0x21]);
        assert_eq!(
            i.ike_proposals
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            [
                "aes256gcm16-prfsha256-ecp256",
                "aes256-sha256-prfsha256-modp2048"
            ]
        );
        assert_eq!(
            i.esp_proposals
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            ["aes256gcm16-noesn", "aes256-sha256-noesn"]
        );
        assert_eq!(
            (i.ike_lifetime, i.child_lifetime, i.dpd_timeout),
            (
                Duration::from_secs(3600),
                Duration::from_secs(1200),
                Duration::from_secs(30)
            )
        );
        assert_eq!(i.child_lifetime_bytes, 10 << 30);
        assert_eq!(i.remote_id.as_deref(), Some("site-2.example.com"));
        assert_eq!(ipsec(&c, 2).peer_port, 4500);
    }

    #[test]
    fn every_error_of_a_file_is_reported() {
        let text = r#"
[vnet]
name = ""
address_space = ["10.1.0.0/16", "10.1.0.0/24"]
gateway_subnet = "10.1.255.0/30"
[vnet.interface]
name = "this-name-is-too-long"
mtu = 100

[control]
socket = "relative.sock"

[[gateway]]
name = "er-gw"
type = "ExpressRoute"
sku = "Premium"

[[gateway]]
name = "er-gw"
type = "Vpn"
sku = "VpnGw2"

[[connection]]
name = "circuit-1"
gateway = "nowhere"
type = "ExpressRoute"
prefixes = ["10.2.0.1/16", "10.1.2.0/24"]
routing_weight = 40000
colour = "red"
[connection.interface]
name = "cw/er0"
netns = "a/b"

[[connection]]
name = "s2s-1"
gateway = "er-gw"
type = "IPsec"
local_address = "192.0.2.1"
peer_address = "192.0.2.1"
prefixes = ["10.3.0.0/16"]
mss_clamp = 1400
[connection.manual_sa]
esp = "aes256gcm16"
out_spi = 255
out_key = "0011"
in_spi = 0x2002
in_key = "zz"
replay_window = 1000
"#;
        let e = parse(text, Path::new("lab.toml")).unwrap_err();
        let shown = e.to_string();
        let expected = [
            "lab.toml:3: vnet.name: must not be empty",
            "lab.toml:4: vnet.address_space[1]: 10.1.0.0/24 overlaps vnet.address_space[0] 10.1.0.0/16",
            "lab.toml:5: vnet.gateway_subnet: 10.1.255.0/30 is smaller than /29",
            "lab.toml:7: vnet.interface.name: interface name `this-name-is-too-long` must be 1 to 15 bytes",
            "lab.toml:8: vnet.interface.mtu: must be 576..=65535, got 100",
            "lab.toml:11: control.socket: `relative.sock` is not an absolute path",
            "lab.toml:16: gateway[0] (er-gw).sku: unknown ExpressRoute SKU `Premium`",
            "lab.toml:19: gateway[1].name: duplicate gateway name `er-gw`",
            "lab.toml:29: connection[0] (circuit-1).colour: unknown key",
            "lab.toml:25: connection[0] (circuit-1).gateway: there is no gateway named `nowhere` (gateways: er-gw)",
            "lab.toml:27: connection[0] (circuit-1).prefixes[0]: `10.2.0.1/16` has host bits set",
            "lab.toml:27: connection[0] (circuit-1).prefixes[1]: 10.1.2.0/24 overlaps the VNet address space 10.1.0.0/16",
            "lab.toml:28: connection[0] (circuit-1).routing_weight: must be 0..=32000, got 40000",
            "lab.toml:31: connection[0] (circuit-1).interface.name: interface name `cw/er0` contains '/'",
            "lab.toml:32: connection[0] (circuit-1).interface.netns: network namespace name `a/b` must not contain '/'",
            "lab.toml:37: connection[1] (s2s-1).type: a connection of type IPsec needs a Vpn gateway, but `er-gw` (gateway[0] (er-gw)) is of type ExpressRoute",
            "lab.toml:39: connection[1] (s2s-1).peer_address: 192.0.2.1 is also the local_address: the peer must be another host",
            "lab.toml:41: connection[1] (s2s-1).mss_clamp: must be 536..=1360 (mtu - 40), or 0 to disable clamping, got 1400",
            "lab.toml:44: connection[1] (s2s-1).manual_sa.out_spi: must be 256..=4294967295",
            "lab.toml:45: connection[1] (s2s-1).manual_sa.out_key: key for aes256gcm16 must be 36 bytes (32 key + 4 salt), got 2",
            "lab.toml:47: connection[1] (s2s-1).manual_sa.in_key: key is not hex: invalid character at position 1",
            "lab.toml:48: connection[1] (s2s-1).manual_sa.replay_window: must be a multiple of 64 in 1024..=1048576, got 1000",
        ];
        for want in expected {
            assert!(
                shown.lines().any(|l| l.starts_with(want)),
                "missing {want:?} in:\n{shown}"
            );
        }
        assert_eq!(e.0.len(), expected.len(), "{shown}");
        // The struct view of one of them.
        assert_eq!(
            e.0[0],
            ConfigError {
                file: PathBuf::from("lab.toml"),
                line: Some(3),
                field: "vnet.name".into(),
                rule: "must not be empty".into(),
            }
        );
    }
}
