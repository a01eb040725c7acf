//! Interface configuration through iproute2's `ip` (`ip -n NETNS ...` when a namespace is given),
//! and a cheap link-state query through `ioctl`s that spawns no process.
//!
//! Every configuration function fails with an `io::Error` whose message quotes the exact `ip`
//! command line, its exit status and its stderr. The error kind is `NotFound` for a missing
//! interface or namespace, `AlreadyExists`, `PermissionDenied`, `InvalidInput` or `Other`.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cmd;
use crate::names::{check_ifname, check_netns, ifreq, invalid, ns_label};
use crate::netns;

/// Checks the namespace and interface names shared by every function.
fn check(netns: Option<&str>, ifname: &str) -> io::Result<()> {
    if let Some(ns) = netns {
        check_netns(ns)?;
    }
    check_ifname(ifname)
}

/// Sets the MTU: `ip link set dev IF mtu MTU`.
pub fn set_mtu(netns: Option<&str>, ifname: &str, mtu: u32) -> io::Result<()> {
    check(netns, ifname)?;
    let mtu = mtu.to_string();
    cmd::ip(netns, &["link", "set", "dev", ifname, "mtu", &mtu])
}

/// Sets the transmit queue length: `ip link set dev IF txqueuelen QLEN`.
pub fn set_txqueuelen(netns: Option<&str>, ifname: &str, qlen: u32) -> io::Result<()> {
    check(netns, ifname)?;
    let qlen = qlen.to_string();
    cmd::ip(netns, &["link", "set", "dev", ifname, "txqueuelen", &qlen])
}

/// Brings the interface up: `ip link set dev IF up`.
pub fn set_up(netns: Option<&str>, ifname: &str) -> io::Result<()> {
    check(netns, ifname)?;
    cmd::ip(netns, &["link", "set", "dev", ifname, "up"])
}

/// Assigns an address: `ip address replace ADDR/LEN dev IF` (idempotent), with `nodad` for IPv6
/// so the address is usable at once. `InvalidInput` if `prefix_len` is too long for the family.
pub fn add_address(
    netns: Option<&str>,
    ifname: &str,
    addr: IpAddr,
    prefix_len: u8,
) -> io::Result<()> {
    check(netns, ifname)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(invalid(format!(
            "prefix length /{prefix_len} is too long for {addr}"
        )));
    }
    let cidr = format!("{addr}/{prefix_len}");
    let mut args = vec!["address", "replace", &cidr, "dev", ifname];
    if addr.is_ipv6() {
        args.push("nodad");
    }
    cmd::ip(netns, &args)
}

/// Routes `dest` (`"10.2.0.0/16"`, `"fd00::/8"`, a bare address, or `"default"`) out of the
/// interface: `ip route replace DEST dev IF` (idempotent). The family follows from `dest`.
pub fn add_route(netns: Option<&str>, dest: &str, ifname: &str) -> io::Result<()> {
    check(netns, ifname)?;
    check_dest(dest)?;
    let family = if dest.contains(':') { "-6" } else { "-4" };
    cmd::ip(netns, &[family, "route", "replace", dest, "dev", ifname])
}

/// Removes every address of the interface: `ip address flush dev IF`.
pub fn flush_addresses(netns: Option<&str>, ifname: &str) -> io::Result<()> {
    check(netns, ifname)?;
    cmd::ip(netns, &["address", "flush", "dev", ifname])
}

/// Removes the route to `dest` out of the interface: `ip route del DEST dev IF`. A route that is
/// not there (already gone, or the interface with it) is not an error.
pub fn del_route(netns: Option<&str>, dest: &str, ifname: &str) -> io::Result<()> {
    check(netns, ifname)?;
    check_dest(dest)?;
    let family = if dest.contains(':') { "-6" } else { "-4" };
    match cmd::ip(netns, &[family, "route", "del", dest, "dev", ifname]) {
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.to_string().contains("No such process") =>
        {
            Ok(())
        }
        r => r,
    }
}

/// Accepts `default`, `ADDR` or `ADDR/LEN` with a prefix length that fits the family.
fn check_dest(dest: &str) -> io::Result<()> {
    if dest == "default" {
        return Ok(());
    }
    let bad = || {
        invalid(format!(
            "invalid route destination {dest:?}: expected ADDR/LEN or \"default\""
        ))
    };
    let (addr, len) = match dest.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (dest, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    if let Some(len) = len {
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len > if addr.is_ipv4() { 32 } else { 128 } {
            return Err(bad());
        }
    }
    Ok(())
}

/// Stops the kernel from generating IPv6 link-local addresses on the interface (so it sends no
/// router solicitations or DAD probes): `ip link set dev IF addrgenmode none`, which sets
/// `net.ipv6.conf.IF.addr_gen_mode = 1`. Call it before [`set_up`]. Best effort: a failure (e.g.
/// IPv6 disabled) is returned for logging but is harmless to ignore.
pub fn disable_ipv6_autoconf(netns: Option<&str>, ifname: &str) -> io::Result<()> {
    check(netns, ifname)?;
    cmd::ip(
        netns,
        &["link", "set", "dev", ifname, "addrgenmode", "none"],
    )
}

/// What [`link_state`] reports about an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkState {
    /// The interface exists in the namespace (all other fields are false/0 when it does not).
    pub exists: bool,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Up with its lower layer ready (`IFF_RUNNING`; for a TUN: some queue fd is attached).
    pub running: bool,
    /// MTU in bytes.
    pub mtu: u32,
}

/// Reads an interface's state with `SIOCGIFFLAGS` / `SIOCGIFMTU` (no `ip` process).
///
/// A missing interface is `Ok` with `exists: false`; a missing namespace is a `NotFound` error
/// naming it. With a namespace this costs one short-lived thread; to query often, keep a
/// [`LinkProbe`].
pub fn link_state(netns: Option<&str>, ifname: &str) -> io::Result<LinkState> {
    check(netns, ifname)?;
    LinkProbe::new(netns)?.state(ifname)
}

/// A datagram socket bound to one namespace, for repeated [`LinkProbe::state`] queries without a
/// thread per query.
#[derive(Debug)]
pub struct LinkProbe {
    sock: OwnedFd,
    netns: Option<String>,
}

impl LinkProbe {
    /// Creates the socket inside `netns` (`None`: the calling thread's namespace).
    pub fn new(netns: Option<&str>) -> io::Result<Self> {
        if let Some(ns) = netns {
            check_netns(ns)?;
        }
        let sock = netns::run_in_opt(netns, || {
            // SAFETY: socket takes no pointers; it returns a new fd or -1.
            let fd =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just returned by socket, is open, and nothing else owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })??;
        Ok(Self {
            sock,
            netns: netns.map(str::to_owned),
        })
    }

    /// The state of `ifname` in this probe's namespace (see [`link_state`]).
    pub fn state(&self, ifname: &str) -> io::Result<LinkState> {
        check_ifname(ifname)?;
        let fail = |what: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "{what} for {ifname:?} in {}: {e}",
                    ns_label(self.netns.as_deref())
                ),
            )
        };
        let mut ifr = ifreq(ifname);
        // SAFETY: SIOCGIFFLAGS reads and writes a `struct ifreq`; `ifr` is a live, initialised one.
        if unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENODEV) {
                return Ok(LinkState::default());
            }
            return Err(fail("SIOCGIFFLAGS", e));
        }
        // SAFETY: after a successful SIOCGIFFLAGS the kernel has written `ifru_flags`; every bit
        // pattern is a valid c_short.
        let flags = libc::c_int::from(unsafe { ifr.ifr_ifru.ifru_flags }) & 0xffff;
        let mut ifr = ifreq(ifname);
        // SAFETY: SIOCGIFMTU reads and writes a `struct ifreq`; `ifr` is a live, initialised one.
        if unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENODEV) {
                return Ok(LinkState::default());
            }
            return Err(fail("SIOCGIFMTU", e));
        }
        // SAFETY: after a successful SIOCGIFMTU the kernel has written `ifru_mtu`; every bit
        // pattern is a valid c_int.
        let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
        Ok(LinkState {
            exists: true,
            up: flags & libc::IFF_UP != 0,
            running: flags & libc::IFF_RUNNING != 0,
            mtu: u32::try_from(mtu).unwrap_or(0),
        })
    }
}
