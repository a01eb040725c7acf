//! TUN devices: `IFF_TUN | IFF_NO_PI`, optionally `IFF_VNET_HDR` with `TUNSETOFFLOAD`, optionally
//! multi-queue, created inside a named network namespace.
//!
//! Devices are never persistent: the kernel removes the interface when its last fd closes, so a
//! killed daemon leaves nothing behind. Creation refuses a name that already exists in the target
//! namespace instead of attaching to someone else's device.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::names::{check_ifname, check_netns, ifreq, invalid, ns_label};
use crate::netns;

/// Length of the virtio header (`struct virtio_net_hdr`, without `num_buffers`) that starts every
/// packet read from or written to a TUN with vnet_hdr on.
pub const VNET_HDR_LEN: usize = 10;

/// The offloads the kernel may use when handing packets to us (`TUNSETOFFLOAD`, `TUN_F_*`).
///
/// With any of them on, packets read from the TUN may carry a partial checksum
/// (`VIRTIO_NET_HDR_F_NEEDS_CSUM`) or be GSO super-packets of up to 64 KiB described by the virtio
/// header. Segmentation offloads require `csum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offload {
    /// `TUN_F_CSUM`: we accept packets with a partial checksum.
    pub csum: bool,
    /// `TUN_F_TSO4`: we accept TCP/IPv4 super-packets.
    pub tso4: bool,
    /// `TUN_F_TSO6`: we accept TCP/IPv6 super-packets.
    pub tso6: bool,
    /// `TUN_F_TSO_ECN`: we accept TSO super-packets with ECN (CWR) set.
    pub tso_ecn: bool,
    /// `TUN_F_USO4`: we accept UDP/IPv4 segmentation super-packets (kernel 6.2+).
    pub uso4: bool,
    /// `TUN_F_USO6`: we accept UDP/IPv6 segmentation super-packets (kernel 6.2+).
    pub uso6: bool,
}

impl Offload {
    /// No offload: every packet is a single, fully checksummed packet.
    pub const NONE: Offload = Offload {
        csum: false,
        tso4: false,
        tso6: false,
        tso_ecn: false,
        uso4: false,
        uso6: false,
    };

    /// Checksum offload plus TCP segmentation offload (IPv4, IPv6, ECN).
    pub const TCP: Offload = Offload {
        csum: true,
        tso4: true,
        tso6: true,
        tso_ecn: true,
        uso4: false,
        uso6: false,
    };

    /// [`Offload::TCP`] plus UDP segmentation offload (IPv4 and IPv6).
    pub const TCP_UDP: Offload = Offload {
        uso4: true,
        uso6: true,
        ..Offload::TCP
    };

    /// Whether no offload is requested.
    pub fn is_none(&self) -> bool {
        *self == Offload::NONE
    }

    /// The `TUN_F_*` bits for `TUNSETOFFLOAD`.
    pub fn bits(&self) -> libc::c_uint {
        [
            (self.csum, libc::TUN_F_CSUM),
            (self.tso4, libc::TUN_F_TSO4),
            (self.tso6, libc::TUN_F_TSO6),
            (self.tso_ecn, libc::TUN_F_TSO_ECN),
            (self.uso4, libc::TUN_F_USO4),
            (self.uso6, libc::TUN_F_USO6),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit)
    }
}

/// How to create a TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunConfig<'a> {
    /// Interface name (1 to 15 bytes); must not exist yet in the target namespace.
    pub name: &'a str,
    /// Named network namespace (`/run/netns/NAME`) to create the device in; `None`: the namespace
    /// of the calling thread.
    pub netns: Option<&'a str>,
    /// `IFF_VNET_HDR`: every packet read or written starts with a [`VNET_HDR_LEN`]-byte virtio header.
    pub vnet_hdr: bool,
    /// Offloads to enable; must be [`Offload::NONE`] when `vnet_hdr` is off.
    pub offload: Offload,
    /// Number of queues (fds): 1 is a single-queue device; more uses `IFF_MULTI_QUEUE`.
    pub queues: usize,
}

impl<'a> TunConfig<'a> {
    /// A single-queue device named `name` in the current namespace, no vnet_hdr, no offload.
    pub fn new(name: &'a str) -> Self {
        Self {
            name,
            netns: None,
            vnet_hdr: false,
            offload: Offload::NONE,
            queues: 1,
        }
    }
}

/// One queue of a TUN device: a non-blocking, close-on-exec fd on `/dev/net/tun`.
///
/// Dropping the last queue of a device removes the interface; the kernel does so asynchronously,
/// usually within a millisecond, so a new device with the same name may briefly be refused.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
    netns: Option<String>,
    vnet_hdr: bool,
}

impl Tun {
    /// Creates the device described by `config` and returns one `Tun` per queue.
    ///
    /// Errors (each message names the interface and the namespace):
    /// - `InvalidInput`: bad interface or namespace name, `queues == 0`, offload without vnet_hdr,
    ///   or segmentation offload without `csum`;
    /// - `NotFound`: the named namespace does not exist;
    /// - `AlreadyExists`: an interface with that name already exists in the namespace;
    /// - otherwise the failing `open`/`ioctl` error (e.g. `PermissionDenied` without `CAP_NET_ADMIN`).
    ///
    /// With a namespace, the work runs on a short-lived thread that joins it ([`netns::run_in`]).
    pub fn create(config: &TunConfig<'_>) -> io::Result<Vec<Tun>> {
        check_ifname(config.name)?;
        if let Some(ns) = config.netns {
            check_netns(ns)?;
        }
        let where_ = || format!("TUN {:?} in {}", config.name, ns_label(config.netns));
        if config.queues == 0 {
            return Err(invalid(format!("{}: queues must be at least 1", where_())));
        }
        if !config.vnet_hdr && !config.offload.is_none() {
            return Err(invalid(format!(
                "{}: offload {:?} needs vnet_hdr (the kernel describes offloaded packets in the virtio header)",
                where_(),
                config.offload
            )));
        }
        let o = config.offload;
        if !o.csum && (o.tso4 || o.tso6 || o.tso_ecn || o.uso4 || o.uso6) {
            return Err(invalid(format!(
                "{}: segmentation offload {o:?} needs csum",
                where_()
            )));
        }
        let fds = netns::run_in_opt(config.netns, || open_queues(config))??;
        Ok(fds
            .into_iter()
            .map(|fd| Tun {
                fd,
                name: config.name.to_owned(),
                netns: config.netns.map(str::to_owned),
                vnet_hdr: config.vnet_hdr,
            })
            .collect())
    }

    /// Reads one packet (with its virtio header first when vnet_hdr is on) into `buf`; returns its
    /// length. No packet waiting: `ErrorKind::WouldBlock`. A packet longer than `buf` is truncated,
    /// so size `buf` for 64 KiB plus the header when offloads are on.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call, and
        // `self.fd` is an open fd owned by `self`.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Writes one packet (with its virtio header first when vnet_hdr is on); returns the bytes
    /// written. A full queue gives `ErrorKind::WouldBlock`; a malformed packet or header gives
    /// `InvalidInput` (`EINVAL`).
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call, and
        // `self.fd` is an open fd owned by `self`.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace the device was created in (`None`: the creator's namespace).
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Whether packets carry a [`VNET_HDR_LEN`]-byte virtio header.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Opens all queues; runs in the target namespace. Dropping the fds on error removes the device.
fn open_queues(config: &TunConfig<'_>) -> io::Result<Vec<OwnedFd>> {
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "TUN {:?} in {}: {what}: {e}",
                config.name,
                ns_label(config.netns)
            ),
        )
    };
    let cname = CString::new(config.name).map_err(|e| invalid(e.to_string()))?;
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::if_nametoindex(cname.as_ptr()) } != 0 {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "interface {:?} already exists in {}; refusing to attach to it",
                config.name,
                ns_label(config.netns)
            ),
        ));
    }

    let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
    if config.vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if config.queues > 1 {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    let mut fds = Vec::with_capacity(config.queues);
    for _ in 0..config.queues {
        let fd = open_dev().map_err(|e| ctx("open /dev/net/tun", e))?;
        let mut ifr = ifreq(config.name);
        ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `ifr` is a live, initialised one.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "interface {:?} in {} is busy (created by someone else meanwhile?): {e}",
                        config.name,
                        ns_label(config.netns)
                    ),
                ));
            }
            return Err(ctx("TUNSETIFF", e));
        }
        if config.vnet_hdr {
            let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer; `size` is a live local.
            if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
                return Err(ctx("TUNSETVNETHDRSZ", io::Error::last_os_error()));
            }
            let bits = libc::c_ulong::from(config.offload.bits());
            // SAFETY: TUNSETOFFLOAD takes its argument by value (no pointer is dereferenced).
            if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, bits) } < 0 {
                return Err(ctx(
                    &format!("TUNSETOFFLOAD {:?}", config.offload),
                    io::Error::last_os_error(),
                ));
            }
        }
        fds.push(fd);
    }
    Ok(fds)
}

/// Opens `/dev/net/tun` with `O_RDWR | O_CLOEXEC | O_NONBLOCK`.
fn open_dev() -> io::Result<OwnedFd> {
    // SAFETY: the path is a NUL-terminated string literal.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open, is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
