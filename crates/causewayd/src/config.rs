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
//!
//! [control]                                  # optional
//! socket = "/run/causeway/control.sock"      # default; must be absolute
//!
//! [[gateway]]
//! name = "er-gw"
//! type = "ExpressRoute"                      # or "Vpn"
//! sku = "Standard"                           # ErGwScale also takes scale_units = 1..40
//!
//! [[connection]]
//! name = "circuit-1"
//! gateway = "er-gw"
//! type = "ExpressRoute"                      # ("IPsec" is known but not implemented yet)
//! prefixes = ["10.2.0.0/16", "fd00:2::/48"]
//! routing_weight = 0                         # optional, 0..=32000, default 0
//! [connection.interface]                     # the circuit TUN: same keys as [vnet.interface]
//! name = "cw-er0"
//! netns = "lab-onprem"
//! addresses = ["10.2.0.10/16", "fd00:2::10/64"]
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
//!   never alongside a gateway of the other type; and, in this version, no `Vpn` gateway.
//! - connections: unique non-empty names; `gateway` names a gateway of the type the connection
//!   needs (`ExpressRoute` -> ExpressRoute, `IPsec` -> Vpn, and IPsec is not implemented yet);
//!   no more ExpressRoute connections on a gateway than its SKU's `max_connections`;
//!   `routing_weight` 0..=32000; at least one prefix; a connection's prefixes overlap neither
//!   each other nor the VNet address space (default routes `0.0.0.0/0` and `::/0` are exempt from
//!   both overlap rules: they are the catch-all that longest-prefix match resolves); the same
//!   prefix on two ExpressRoute connections needs different routing weights.
//! - interfaces (the VNet's and each connection's): a Linux interface name (1..=15 bytes of
//!   `[A-Za-z0-9_.-]`, not `.`/`..`, no leading `-`); each (netns, name) pair used once; a netns
//!   name that is a plain file name under `/run/netns`; `mtu` 576..=65535, and >= 1280 when the
//!   interface has an IPv6 address; the VNet interface does not take the gateway's own address
//!   ([`VnetConfig::gateway_address_v4`], [`VnetConfig::gateway_address_v6`]).
//! - `vnet.name` is not empty; `control.socket` is an absolute path.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use causeway_engine::prefix::{Family, InterfaceAddress, Prefix};
use causeway_engine::sku::{GatewayType, Sku};

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
}

/// The control socket (`[control]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// The absolute path of the control socket. Default [`DEFAULT_CONTROL_SOCKET`].
    pub socket: PathBuf,
}

/// Where the control socket is when `[control]` does not say.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/causeway/control.sock";

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
}

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
    /// highest wins. 0..=32000, default 0.
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
}

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
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
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
    let root: Node = match toml::from_str(text) {
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

const ROOT_KEYS: &[&str] = &["vnet", "control", "gateway", "connection"];
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
];
const CONTROL_KEYS: &[&str] = &["socket"];
const GATEWAY_KEYS: &[&str] = &["name", "type", "sku", "scale_units"];
const CONNECTION_KEYS: &[&str] = &[
    "name",
    "gateway",
    "type",
    "prefixes",
    "routing_weight",
    "interface",
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

// --- Not implemented in this version -------------------------------------------------------
// Everything about Vpn gateways and IPsec connections is validated as the model says; these
// two functions are the one place that then rejects them. Remove them (and their two call
// sites) when the VPN data plane lands.

/// Why a gateway of type `ty` cannot be used in this version, if it cannot.
fn unimplemented_gateway_type(ty: GatewayType) -> Option<&'static str> {
    match ty {
        GatewayType::ExpressRoute => None,
        GatewayType::Vpn => Some("Vpn gateways are not implemented in this version"),
    }
}

/// Why a connection of type `ty` cannot be used in this version, if it cannot.
fn unimplemented_connection_type(ty: ConnType) -> Option<&'static str> {
    match ty {
        ConnType::ExpressRoute => None,
        ConnType::IPsec => Some("IPsec connections are not implemented in this version"),
    }
}
// ---------------------------------------------------------------------------------------------

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
    InterfaceDraft {
        path: t.path.clone(),
        name,
        netns,
        addresses,
        mtu,
        txqueuelen,
        install_routes,
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
    let Some(node) = root.get("control") else {
        return Some(ControlConfig {
            socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
        });
    };
    let t = root.table(cx, node, "control")?;
    t.check_keys(cx, CONTROL_KEYS);
    match t.get("socket") {
        None => Some(ControlConfig {
            socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
        }),
        Some(node) => {
            let s = cx.string(node, &t.field("socket"))?;
            if !Path::new(s).is_absolute() {
                cx.error(
                    Some(node),
                    t.field("socket"),
                    format!("`{s}` is not an absolute path"),
                );
                return None;
            }
            Some(ControlConfig {
                socket: PathBuf::from(s),
            })
        }
    }
}

struct GatewayDraft<'n> {
    label: String,
    name: Option<String>,
    gateway_type: Option<At<'n, GatewayType>>,
    sku: Option<At<'n, Sku>>,
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
                        "the VNet already has an {} gateway ({}): at most one gateway of each type",
                        ty.value, other.label
                    ),
                );
            }
            if let Some(why) = unimplemented_gateway_type(ty.value) {
                cx.error(Some(ty.node), &type_field, why);
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
        out.push(GatewayDraft {
            label,
            name,
            gateway_type,
            sku,
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
                Ok(ct) => {
                    if let Some(why) = unimplemented_connection_type(ct) {
                        cx.error(Some(node), &type_field, why);
                    }
                    Some((ct, node))
                }
                Err(e) => {
                    cx.error(Some(node), &type_field, e);
                    None
                }
            });
        // The keys of an IPsec connection are not defined yet: only the common ones are read.
        if conn_type.map(|(c, _)| c) != Some(ConnType::IPsec) {
            t.check_keys(cx, CONNECTION_KEYS);
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

        let routing_weight = t
            .optional_int_in(cx, "routing_weight", 0..=i64::from(MAX_ROUTING_WEIGHT))
            .map_or(0, |(v, _)| v as u16);

        let interface = match conn_type.map(|(c, _)| c) {
            Some(ConnType::ExpressRoute) => t.required(cx, "interface").and_then(|node| {
                let it = t.table(cx, node, "interface")?;
                Some(read_interface(cx, &it))
            }),
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
        });
    }
    out
}

/// The checks across sections, then the typed result when all went well.
fn validate(cx: &mut Cx<'_>, root_node: &Node) -> Option<Config> {
    let root = cx.table(root_node, "")?;
    root.check_keys(cx, ROOT_KEYS);
    let vnet = read_vnet(cx, &root);
    let control = read_control(cx, &root);
    let gateways = read_gateways(cx, &root);
    let connections = read_connections(cx, &root, &gateways, vnet.as_ref());

    // ExpressRoute connections per gateway, against the SKU's limit.
    for (gi, g) in gateways.iter().enumerate() {
        let Some(sku) = &g.sku else { continue };
        if sku.value.gateway_type() != GatewayType::ExpressRoute {
            continue;
        }
        let on_it: Vec<&str> = connections
            .iter()
            .filter(|c| c.gateway_index == Some(gi) && c.conn_type == Some(ConnType::ExpressRoute))
            .map(|c| c.label.as_str())
            .collect();
        let max = sku.value.limits().max_connections as usize;
        if on_it.len() > max {
            cx.error(
                Some(sku.node),
                &sku.field,
                format!(
                    "the {} SKU allows at most {max} ExpressRoute connections, but {} use this gateway ({})",
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
                ConnType::IPsec => return None,
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
mtu = 576
"#;
        let c = ok(text);
        assert_eq!(c.control.socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert!(c.gateways.is_empty() && c.connections.is_empty());
        let i = &c.vnet.interface;
        assert_eq!(i.netns, None);
        assert!(i.addresses.is_empty());
        assert_eq!(
            (i.mtu, i.txqueuelen, i.install_routes),
            (576, Some(5000), false)
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
        let ConnectionKind::ExpressRoute { interface } = &c.connections[1].kind;
        assert_eq!(interface.txqueuelen, Some(1000));
        assert!(!interface.install_routes);
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
            "name, netns, addresses, mtu, txqueuelen, install_routes",
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
    fn vpn_gateways_are_not_implemented() {
        let text = VALID.to_owned() + VPN_GW;
        let all = expect(
            &text,
            "gateway[1] (vpn-gw).type",
            "Vpn gateways are not implemented in this version",
        );
        assert_eq!(all.len(), 1, "{all:?}");
        // The VPN SKU is still checked.
        let text = VALID.to_owned() + &VPN_GW.replace("VpnGw1", "VpnGw9");
        expect(&text, "gateway[1] (vpn-gw).sku", "unknown Vpn SKU `VpnGw9`");
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
        // IPsec: a known type that needs a Vpn gateway, and is not implemented.
        let ipsec = "\n[[connection]]\nname = \"site-1\"\ngateway = \"er-gw\"\ntype = \"IPsec\"\nprefixes = [\"10.5.0.0/16\"]\nshared_key = \"x\"\n";
        let text = VALID.to_owned() + ipsec;
        expect(
            &text,
            "connection[1] (site-1).type",
            "IPsec connections are not implemented in this version",
        );
        expect(&text, "connection[1] (site-1).type", "a connection of type IPsec needs a Vpn gateway, but `er-gw` (gateway[0] (er-gw)) is of type ExpressRoute");
        let text = VALID.to_owned() + VPN_GW + &ipsec.replace("\"er-gw\"", "\"vpn-gw\"");
        let all = expect(
            &text,
            "connection[1] (site-1).type",
            "IPsec connections are not implemented in this version",
        );
        assert_eq!(all.len(), 2, "{all:?}"); // and the Vpn gateway
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
            "lab.toml:20: gateway[1] (er-gw).type: Vpn gateways are not implemented in this version",
            "lab.toml:29: connection[0] (circuit-1).colour: unknown key",
            "lab.toml:25: connection[0] (circuit-1).gateway: there is no gateway named `nowhere` (gateways: er-gw)",
            "lab.toml:27: connection[0] (circuit-1).prefixes[0]: `10.2.0.1/16` has host bits set",
            "lab.toml:27: connection[0] (circuit-1).prefixes[1]: 10.1.2.0/24 overlaps the VNet address space 10.1.0.0/16",
            "lab.toml:28: connection[0] (circuit-1).routing_weight: must be 0..=32000, got 40000",
            "lab.toml:31: connection[0] (circuit-1).interface.name: interface name `cw/er0` contains '/'",
            "lab.toml:32: connection[0] (circuit-1).interface.netns: network namespace name `a/b` must not contain '/'",
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
