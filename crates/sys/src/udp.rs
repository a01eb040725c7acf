//! UDP sockets for the ESP-in-UDP underlay (RFC 3948, port 4500), IPv4 or IPv6.
//!
//! A [`UdpSocket`] is non-blocking and close-on-exec, created inside a named network namespace when
//! asked (the calling thread never changes namespace, see [`netns::run_in`]). Besides single
//! datagrams it offers:
//!
//! - batched sends with `sendmmsg(2)`: [`UdpSocket::send_batch`] (stack arrays, no allocation) or a
//!   reusable [`SendBatch`] allocated once by the caller;
//! - batched receives with `recvmmsg(2)` into a reusable [`RecvBatch`] that owns its buffers;
//! - UDP GSO ([`UdpSocket::send_gso`], `UDP_SEGMENT`): one call hands the kernel up to
//!   [`GSO_MAX_SEGMENTS`] datagrams of the same size;
//! - UDP GRO ([`UdpOptions::gro`], `UDP_GRO`): the kernel may deliver several datagrams of the same
//!   source as one coalesced read; [`RecvBatch::packet`] reports the segment size to split it.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment.

use std::io;
use std::marker::PhantomData;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::OnceLock;

use crate::names::{check_netns, invalid, ns_label};
use crate::netns;

/// The most datagrams one [`UdpSocket::send_gso`] call may produce. (Kernels before 6.10 allow 64;
/// later ones 128. We keep to the lower bound so that behaviour does not depend on the kernel.)
pub const GSO_MAX_SEGMENTS: usize = 64;

/// The most bytes one [`UdpSocket::send_gso`] call may carry: the largest UDP payload of a single
/// IPv4 datagram (65 535 − 20 − 8), which the kernel also enforces on the GSO super-datagram.
pub const GSO_MAX_BYTES: usize = 65_507;

/// How many messages [`UdpSocket::send_batch`] passes to one `sendmmsg` call (arrays on the stack).
pub const SEND_BATCH_CHUNK: usize = 128;

/// The most messages one `sendmmsg`/`recvmmsg` call handles (`UIO_MAXIOV`); larger
/// [`SendBatch`]/[`RecvBatch`] capacities are reduced to it.
pub const MAX_MMSG: usize = libc::UIO_MAXIOV as usize;

/// Room for the control messages of one received datagram (only `UDP_GRO`, 24 bytes, is expected).
const CMSG_BUF_LEN: usize = 64;

/// Socket options applied by [`UdpSocket::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Receive buffer size in bytes (`SO_RCVBUFFORCE`, which ignores `net.core.rmem_max` but needs
    /// `CAP_NET_ADMIN`; without it `SO_RCVBUF`, capped by `rmem_max`). 0 keeps the kernel default.
    pub recv_buffer: usize,
    /// Send buffer size in bytes (`SO_SNDBUFFORCE`, falling back to `SO_SNDBUF` as above).
    /// 0 keeps the kernel default.
    pub send_buffer: usize,
    /// `UDP_GRO`: let the kernel coalesce received datagrams; read them with [`RecvBatch`], which
    /// reports the segment size of each coalesced read.
    pub gro: bool,
}

impl Default for UdpOptions {
    /// 4 MiB receive and send buffers, GRO off.
    fn default() -> Self {
        UdpOptions {
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            gro: false,
        }
    }
}

/// A non-blocking, close-on-exec UDP socket bound to one IPv4 or IPv6 address
/// (`IPV6_V6ONLY` for IPv6: it neither sends to nor receives from IPv4 peers).
///
/// It is `Send + Sync`; every method takes `&self`. Wait for it with
/// [`crate::poll::wait_readable`] through [`AsFd`].
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    local: SocketAddr,
    netns: Option<String>,
    gro: bool,
    gso: OnceLock<bool>,
}

impl UdpSocket {
    /// Creates a UDP socket (inside `netns` when given, else in the calling thread's namespace),
    /// applies `opts`, and binds it to `addr` (port 0: the kernel picks one, see
    /// [`UdpSocket::local_addr`]).
    ///
    /// Errors name the address, the namespace and the failing step, and keep the OS error kind:
    /// `InvalidInput` for a bad namespace name, `NotFound` for a missing namespace,
    /// `AddrNotAvailable` when `addr` is not an address of the namespace, `AddrInUse` when the port
    /// is taken, and the `setsockopt` error when `gro` is asked on a kernel without `UDP_GRO`.
    pub fn bind(addr: SocketAddr, netns: Option<&str>, opts: &UdpOptions) -> io::Result<UdpSocket> {
        if let Some(ns) = netns {
            check_netns(ns)?;
        }
        let ctx = |step: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("UDP socket {addr} in {}: {step}: {e}", ns_label(netns)),
            )
        };
        let domain = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let fd = netns::run_in_opt(netns, move || new_socket(domain))
            .map_err(|e| ctx("entering the namespace", e))?
            .map_err(|e| ctx("socket", e))?;
        let fd_ = fd.as_fd();
        if addr.is_ipv6() {
            set_int(fd_, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
                .map_err(|e| ctx("setsockopt IPV6_V6ONLY", e))?;
        }
        set_buffer(fd_, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, opts.recv_buffer)
            .map_err(|e| ctx(&format!("receive buffer of {} bytes", opts.recv_buffer), e))?;
        set_buffer(fd_, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, opts.send_buffer)
            .map_err(|e| ctx(&format!("send buffer of {} bytes", opts.send_buffer), e))?;
        if opts.gro {
            set_int(fd_, libc::SOL_UDP, libc::UDP_GRO, 1)
                .map_err(|e| ctx("setsockopt UDP_GRO (needs Linux 5.0+)", e))?;
        }
        let (raw, len) = RawAddr::new(addr);
        // SAFETY: `raw` is a live, initialised sockaddr_in/sockaddr_in6 of `len` bytes that
        // outlives the call; `fd` is an open socket we own.
        if unsafe { libc::bind(fd.as_raw_fd(), raw.as_ptr(), len) } < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot bind UDP socket to {addr} in {}: {e}",
                    ns_label(netns)
                ),
            ));
        }
        let local = sockname(fd.as_fd()).map_err(|e| ctx("getsockname", e))?;
        Ok(UdpSocket {
            fd,
            local,
            netns: netns.map(str::to_owned),
            gro: opts.gro,
            gso: OnceLock::new(),
        })
    }

    /// The bound local address (with the port the kernel picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The namespace the socket was created in (`None`: the creator's namespace).
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Whether `UDP_GRO` is on ([`UdpOptions::gro`]).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// The receive buffer size as the kernel reports it (`SO_RCVBUF`: twice the requested size,
    /// the kernel's bookkeeping included).
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        get_int(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF).map(|v| v.max(0) as usize)
    }

    /// The send buffer size as the kernel reports it (`SO_SNDBUF`, doubled like the receive one).
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        get_int(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF).map(|v| v.max(0) as usize)
    }

    /// Sends one datagram to `dst`; returns its length.
    ///
    /// Errors: `InvalidInput` when `dst` is not of the socket's family; `WouldBlock` when the send
    /// buffer is full; `EMSGSIZE` (kind `Other`/uncategorised) when the datagram exceeds the route
    /// MTU (the DF bit is set, the kernel default) or 65 507 bytes.
    pub fn send_to(&self, buf: &[u8], dst: SocketAddr) -> io::Result<usize> {
        self.check_family(dst)?;
        let (raw, len) = RawAddr::new(dst);
        loop {
            // SAFETY: `buf` is valid for reads of `buf.len()` bytes and `raw` is an initialised
            // sockaddr of `len` bytes, both live for the call; `self.fd` is an open socket.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    0,
                    raw.as_ptr(),
                    len,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one datagram into `buf`; returns its length (a longer datagram is truncated to
    /// `buf.len()`) and its source. No datagram waiting: `WouldBlock`.
    ///
    /// With GRO on, a read may hold several coalesced datagrams without their boundaries: use
    /// [`RecvBatch`] on such a socket.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut raw = RawAddr::ZERO;
        let mut len = RawAddr::LEN;
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `raw` is a live, writable
            // buffer of `len` bytes and `len` a live socklen_t, both outliving the call.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    raw.as_mut_ptr(),
                    &mut len,
                )
            };
            if n >= 0 {
                return Ok((n as usize, raw.socket_addr(len)?));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Sends `msgs` with `sendmmsg`, [`SEND_BATCH_CHUNK`] messages per call, without allocating.
    ///
    /// Returns how many messages were sent: always a prefix of `msgs`. Fewer than `msgs.len()`
    /// means the send buffer filled up or message `n` failed; sending `msgs[n..]` again reports
    /// the error. An error for the very first message is returned as `Err` (`WouldBlock` when the
    /// send buffer is full). `InvalidInput` (nothing sent) when a destination is not of the
    /// socket's family.
    pub fn send_batch(&self, msgs: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
        for (_, dst) in msgs {
            self.check_family(*dst)?;
        }
        let mut hdrs = [zeroed_mmsghdr(); SEND_BATCH_CHUNK];
        let mut iovs = [EMPTY_IOVEC; SEND_BATCH_CHUNK];
        let mut addrs = [RawAddr::ZERO; SEND_BATCH_CHUNK];
        let mut sent = 0;
        for chunk in msgs.chunks(SEND_BATCH_CHUNK) {
            let n = chunk.len();
            for (i, (buf, dst)) in chunk.iter().enumerate() {
                iovs[i] = iovec_for(buf);
                let (raw, len) = RawAddr::new(*dst);
                addrs[i] = raw;
                hdrs[i].msg_hdr.msg_namelen = len;
            }
            link_headers(&mut hdrs[..n], &mut iovs[..n], &mut addrs[..n]);
            // SAFETY: `link_headers` pointed each of the `n` headers at its iovec and address in
            // `iovs`/`addrs`, which are not touched again before the call; each iovec describes a
            // borrowed slice of `msgs`, alive for this whole function.
            let result = unsafe { self.sendmmsg(&mut hdrs[..n]) };
            match result {
                Ok(k) => {
                    sent += k;
                    if k < n {
                        break;
                    }
                }
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// Sends `buf` as datagrams of `segment_size` bytes (the last may be shorter) to `dst` in one
    /// `sendmsg` call with a `UDP_SEGMENT` control message: the kernel (or the NIC) splits it.
    /// Returns `buf.len()`.
    ///
    /// Errors: `Unsupported` when [`UdpSocket::gso_supported`] is false (fall back to
    /// [`UdpSocket::send_batch`]); `InvalidInput` when `segment_size` is 0, `buf` is empty, longer
    /// than [`GSO_MAX_BYTES`], or would make more than [`GSO_MAX_SEGMENTS`] datagrams, or `dst` is
    /// not of the socket's family. From the kernel: `EINVAL` when `segment_size` plus the IP and
    /// UDP headers exceeds the route MTU, `EIO` when the outgoing device cannot checksum (GSO
    /// needs `tx-checksumming`), `WouldBlock` when the send buffer is full.
    pub fn send_gso(&self, buf: &[u8], segment_size: u16, dst: SocketAddr) -> io::Result<usize> {
        let seg = usize::from(segment_size);
        if seg == 0 || buf.is_empty() {
            return Err(invalid(format!(
                "send_gso to {dst}: segment size {seg} and length {} must be non-zero",
                buf.len()
            )));
        }
        if buf.len() > GSO_MAX_BYTES || buf.len().div_ceil(seg) > GSO_MAX_SEGMENTS {
            return Err(invalid(format!(
                "send_gso to {dst}: {} bytes in segments of {seg} exceed {GSO_MAX_SEGMENTS} segments or {GSO_MAX_BYTES} bytes",
                buf.len()
            )));
        }
        self.check_family(dst)?;
        if !self.gso_supported() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "send_gso from {}: UDP GSO (UDP_SEGMENT) is not supported by this kernel",
                    self.local
                ),
            ));
        }
        let (mut raw, len) = RawAddr::new(dst);
        let mut iov = iovec_for(buf);
        let mut control = CmsgBuf::ZERO;
        // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes.
        let (space, cmsg_len) = unsafe {
            (
                libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize,
                libc::CMSG_LEN(mem::size_of::<u16>() as u32) as usize,
            )
        };
        debug_assert!(space <= CMSG_BUF_LEN);
        let mut msg = zeroed_mmsghdr().msg_hdr;
        msg.msg_name = raw.as_mut_ptr().cast();
        msg.msg_namelen = len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` describes `control`, a live, 8-byte aligned buffer of CMSG_BUF_LEN >=
        // `space` bytes, so CMSG_FIRSTHDR returns a pointer to its start, valid for a cmsghdr
        // followed by `space - size_of::<cmsghdr>()` data bytes; we write the header and the u16
        // payload (unaligned write) within those bounds.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            debug_assert!(!cmsg.is_null());
            cmsg.write(libc::cmsghdr {
                cmsg_len: cmsg_len as _,
                cmsg_level: libc::SOL_UDP,
                cmsg_type: libc::UDP_SEGMENT,
            });
            libc::CMSG_DATA(cmsg)
                .cast::<u16>()
                .write_unaligned(segment_size);
        }
        loop {
            // SAFETY: `msg` points to `raw` (the destination), `iov` (describing `buf`, borrowed
            // for this call) and `control`, all live locals not otherwise accessed until the call
            // returns; `self.fd` is an open socket.
            let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Whether the kernel supports UDP GSO on this socket (Linux 4.18+). Probed once, by setting
    /// `UDP_SEGMENT` to 0 (no default segmentation), then cached.
    pub fn gso_supported(&self) -> bool {
        *self
            .gso
            .get_or_init(|| set_int(self.fd.as_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok())
    }

    /// `InvalidInput` unless `dst` has the socket's address family.
    fn check_family(&self, dst: SocketAddr) -> io::Result<()> {
        if dst.is_ipv4() == self.local.is_ipv4() {
            Ok(())
        } else {
            Err(invalid(format!(
                "cannot send to {dst} from UDP socket {}: address family mismatch",
                self.local
            )))
        }
    }

    /// Calls `sendmmsg` once on `hdrs` (retrying `EINTR`); returns how many were sent.
    ///
    /// # Safety
    ///
    /// Every header's `msg_name` must point to a live sockaddr of `msg_namelen` bytes and its
    /// `msg_iov` to `msg_iovlen` live iovecs describing readable memory; `msg_control` null.
    unsafe fn sendmmsg(&self, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
        let vlen = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
        loop {
            // SAFETY: `hdrs` is a live, exclusively borrowed array of `vlen` headers whose
            // pointers are valid (the caller's contract); `self.fd` is an open socket.
            let rc = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), hdrs.as_mut_ptr(), vlen, 0) };
            if rc >= 0 {
                return Ok(rc as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Reusable storage for batched sends: the `mmsghdr`, `iovec` and address arrays for up to
/// `capacity` messages, allocated once.
///
/// Each round starts with [`SendBatch::begin`], which returns an empty [`SendQueue`] borrowing the
/// storage; the queue borrows the pushed packets, so the packet buffers can be rewritten once the
/// queue is dropped, while the storage is kept (e.g. as a field of a worker):
///
/// ```no_run
/// # use causeway_sys::udp::{SendBatch, UdpSocket};
/// # fn f(sock: &UdpSocket, packets: &mut [Vec<u8>], dst: std::net::SocketAddr) -> std::io::Result<()> {
/// let mut batch = SendBatch::with_capacity(128);
/// loop {
///     // ... fill `packets` ...
///     let mut queue = batch.begin();
///     for p in packets.iter() {
///         queue.push(p, dst)?;
///     }
///     queue.flush(sock)?;
/// }
/// # }
/// ```
pub struct SendBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<RawAddr>,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

// SAFETY: the raw pointers in `hdrs` and `iovs` are only written by a `SendQueue` (which borrows
// the batch mutably) and only dereferenced by the kernel during its `flush`; between rounds they
// are stale values that nothing reads, so moving the storage to another thread is harmless.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Storage for `capacity` messages per flush (clamped to 1..=[`MAX_MMSG`]).
    pub fn with_capacity(capacity: usize) -> SendBatch {
        let n = capacity.clamp(1, MAX_MMSG);
        SendBatch {
            hdrs: vec![zeroed_mmsghdr(); n],
            iovs: vec![EMPTY_IOVEC; n],
            addrs: vec![RawAddr::ZERO; n],
        }
    }

    /// How many messages a queue holds before [`SendQueue::push`] refuses more.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Starts a round: an empty queue whose packets may borrow from anything that outlives it.
    pub fn begin<'a>(&mut self) -> SendQueue<'_, 'a> {
        SendQueue {
            batch: self,
            len: 0,
            _packets: PhantomData,
        }
    }
}

/// The messages queued for one `sendmmsg`, in a [`SendBatch`]'s storage; they borrow their
/// payloads for `'a`. Made by [`SendBatch::begin`].
pub struct SendQueue<'b, 'a> {
    batch: &'b mut SendBatch,
    len: usize,
    _packets: PhantomData<&'a [u8]>,
}

impl std::fmt::Debug for SendQueue<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendQueue")
            .field("len", &self.len)
            .field("capacity", &self.batch.capacity())
            .finish_non_exhaustive()
    }
}

impl<'a> SendQueue<'_, 'a> {
    /// Queues one datagram of `buf` to `dst`. A full queue (see [`SendBatch::capacity`]) refuses
    /// it with `InvalidInput`; check [`SendQueue::is_full`] and [`SendQueue::flush`] first.
    pub fn push(&mut self, buf: &'a [u8], dst: SocketAddr) -> io::Result<()> {
        let i = self.len;
        if i == self.batch.hdrs.len() {
            return Err(invalid(format!(
                "send batch full ({} messages): flush it first",
                self.batch.hdrs.len()
            )));
        }
        self.batch.iovs[i] = iovec_for(buf);
        let (raw, len) = RawAddr::new(dst);
        self.batch.addrs[i] = raw;
        self.batch.hdrs[i].msg_hdr.msg_namelen = len;
        self.len += 1;
        Ok(())
    }

    /// How many messages are queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the queue holds [`SendBatch::capacity`] messages.
    pub fn is_full(&self) -> bool {
        self.len == self.batch.hdrs.len()
    }

    /// Sends the queued messages with one `sendmmsg` on `socket` and empties the queue, whether
    /// or not all were sent (unsent datagrams are dropped; push them again to retry).
    ///
    /// Returns how many were sent, a prefix of the queue, like [`UdpSocket::send_batch`]: an error
    /// on the first message is an `Err` (`WouldBlock` for a full send buffer). An empty queue
    /// sends nothing and returns 0. `InvalidInput` (nothing sent) when a destination is not of the
    /// socket's family.
    pub fn flush(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let n = mem::take(&mut self.len);
        if n == 0 {
            return Ok(0);
        }
        for raw in &self.batch.addrs[..n] {
            socket.check_family(raw.socket_addr(RawAddr::LEN)?)?;
        }
        let b = &mut *self.batch;
        link_headers(&mut b.hdrs[..n], &mut b.iovs[..n], &mut b.addrs[..n]);
        // SAFETY: `link_headers` pointed the `n` headers at their iovecs and addresses in the
        // batch's vectors, which are not touched again before the call; each iovec describes a
        // slice pushed with lifetime `'a`, which outlives `self`.
        unsafe { socket.sendmmsg(&mut b.hdrs[..n]) }
    }
}

/// Per-datagram results of the last [`RecvBatch::recv`].
#[derive(Debug, Clone, Copy)]
struct RecvMeta {
    len: usize,
    src: SocketAddr,
    segment: Option<u16>,
    truncated: bool,
}

/// Reusable buffers for batched receives with `recvmmsg`: `count` buffers of `buf_size` bytes plus
/// their headers, addresses and control buffers, allocated once by [`RecvBatch::new`].
pub struct RecvBatch {
    buf_size: usize,
    data: Vec<u8>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<RawAddr>,
    control: Vec<CmsgBuf>,
    meta: Vec<RecvMeta>,
    received: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("buf_size", &self.buf_size)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

// SAFETY: the raw pointers in `hdrs` and `iovs` point into this batch's own heap buffers (which
// move with it) and are rewritten by every `recv` before the kernel uses them; nothing else
// dereferences them, so moving the batch to another thread is harmless.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `count` buffers (clamped to 1..=[`MAX_MMSG`]) of `buf_size` bytes each (at least 1).
    ///
    /// Size the buffers for the largest datagram expected; with GRO on, for a coalesced read of up
    /// to 64 KiB (65 535 bytes), since a read longer than its buffer is truncated and the rest
    /// lost.
    pub fn new(count: usize, buf_size: usize) -> RecvBatch {
        let count = count.clamp(1, MAX_MMSG);
        let buf_size = buf_size.max(1);
        let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        RecvBatch {
            buf_size,
            data: vec![0; count * buf_size],
            hdrs: vec![zeroed_mmsghdr(); count],
            iovs: vec![EMPTY_IOVEC; count],
            addrs: vec![RawAddr::ZERO; count],
            control: vec![CmsgBuf::ZERO; count],
            meta: vec![
                RecvMeta {
                    len: 0,
                    src: unspecified,
                    segment: None,
                    truncated: false,
                };
                count
            ],
            received: 0,
        }
    }

    /// Touches every page of the buffers, so that they are resident from now on (a zeroed
    /// allocation gets its pages only when first written: without this the resident size grows
    /// in steps as larger or more datagrams arrive).
    pub fn prefault(&mut self) {
        for i in (0..self.data.len()).step_by(4096) {
            // SAFETY: `i < self.data.len()`; a volatile write of the 0 already there, so that
            // the compiler keeps it.
            unsafe { ptr::write_volatile(self.data.as_mut_ptr().add(i), 0) };
        }
    }

    /// Receives up to [`RecvBatch::capacity`] datagrams waiting on `socket` with one
    /// `recvmmsg(MSG_DONTWAIT)`; returns how many (also [`RecvBatch::len`]). Nothing waiting:
    /// `WouldBlock`. The previous contents are overwritten (on error the batch is empty).
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received = 0;
        let count = self.hdrs.len();
        let data = self.data.as_mut_ptr();
        for (i, iov) in self.iovs.iter_mut().enumerate() {
            *iov = libc::iovec {
                iov_base: data.wrapping_add(i * self.buf_size).cast(),
                iov_len: self.buf_size,
            };
        }
        link_headers(&mut self.hdrs, &mut self.iovs, &mut self.addrs);
        let control = self.control.as_mut_ptr();
        for (i, hdr) in self.hdrs.iter_mut().enumerate() {
            hdr.msg_hdr.msg_namelen = RawAddr::LEN;
            hdr.msg_hdr.msg_control = control.wrapping_add(i).cast();
            hdr.msg_hdr.msg_controllen = CMSG_BUF_LEN as _;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let vlen = libc::c_uint::try_from(count).unwrap_or(libc::c_uint::MAX);
        let n = loop {
            // SAFETY: each of the `vlen` headers points at its own address slot, iovec (describing
            // a disjoint `buf_size`-byte range of `self.data`) and control buffer, all owned by
            // `self` and not otherwise accessed until the call returns; the timeout is null.
            let rc = unsafe {
                libc::recvmmsg(
                    socket.fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    vlen,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if rc >= 0 {
                break rc as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        for i in 0..n {
            let hdr = &self.hdrs[i].msg_hdr;
            let src = self.addrs[i].socket_addr(hdr.msg_namelen)?;
            self.meta[i] = RecvMeta {
                len: (self.hdrs[i].msg_len as usize).min(self.buf_size),
                src,
                segment: gro_segment(hdr),
                truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        self.received = n;
        Ok(n)
    }

    /// How many datagrams the last [`RecvBatch::recv`] received.
    pub fn len(&self) -> usize {
        self.received
    }

    /// Whether the last [`RecvBatch::recv`] received nothing (or failed).
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// How many datagrams one [`RecvBatch::recv`] can receive.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// The size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Received datagram `i` (`i < len()`, else panics): its bytes (mutable, e.g. to decrypt in
    /// place), its source, and the GRO segment size when the kernel coalesced several datagrams
    /// into this read (`UDP_GRO` control message).
    ///
    /// With `Some(size)`, the bytes are consecutive datagrams of `size` bytes from the same source,
    /// the last possibly shorter; `None` means one datagram (always the case with GRO off).
    pub fn packet(&mut self, i: usize) -> (&mut [u8], SocketAddr, Option<u16>) {
        assert!(
            i < self.received,
            "RecvBatch::packet({i}) but only {} received",
            self.received
        );
        let m = self.meta[i];
        let start = i * self.buf_size;
        (&mut self.data[start..start + m.len], m.src, m.segment)
    }

    /// Whether datagram `i` (`i < len()`, else panics) was longer than [`RecvBatch::buf_size`] and
    /// cut (`MSG_TRUNC`): its tail is lost.
    pub fn truncated(&self, i: usize) -> bool {
        assert!(
            i < self.received,
            "RecvBatch::truncated({i}) but only {} received",
            self.received
        );
        self.meta[i].truncated
    }
}

/// The `UDP_GRO` segment size in the control messages the kernel returned in `hdr`.
fn gro_segment(hdr: &libc::msghdr) -> Option<u16> {
    // SAFETY: the kernel set `msg_controllen` to the bytes it wrote into `msg_control` (one of our
    // live CmsgBuf, 8-byte aligned), so CMSG_FIRSTHDR/CMSG_NXTHDR return null or a pointer to a
    // complete cmsghdr inside that buffer; we read headers and data with unaligned reads and only
    // when `cmsg_len` says the data is there.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let c = cmsg.read_unaligned();
            let want = libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as usize;
            if c.cmsg_level == libc::SOL_UDP
                && c.cmsg_type == libc::UDP_GRO
                && c.cmsg_len as usize >= want
            {
                let size = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
                return u16::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// An 8-byte aligned control-message buffer.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_BUF_LEN]);

impl CmsgBuf {
    const ZERO: CmsgBuf = CmsgBuf([0; CMSG_BUF_LEN]);
}

/// A `sockaddr_in` or `sockaddr_in6`. Always fully initialised: it starts as an all-zero
/// `sockaddr_in6` (the larger variant, with no padding), and writing the `sockaddr_in` variant
/// (16 bytes, no padding) leaves the remaining bytes initialised.
#[derive(Clone, Copy)]
#[repr(C)]
union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl std::fmt::Debug for RawAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.socket_addr(RawAddr::LEN) {
            Ok(a) => write!(f, "RawAddr({a})"),
            Err(_) => f.write_str("RawAddr(?)"),
        }
    }
}

impl RawAddr {
    const ZERO: RawAddr = RawAddr {
        v6: libc::sockaddr_in6 {
            sin6_family: 0,
            sin6_port: 0,
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
            sin6_scope_id: 0,
        },
    };
    const LEN: libc::socklen_t = mem::size_of::<RawAddr>() as libc::socklen_t;

    /// The C form of `addr` and its length.
    fn new(addr: SocketAddr) -> (RawAddr, libc::socklen_t) {
        let mut raw = RawAddr::ZERO;
        match addr {
            SocketAddr::V4(a) => {
                raw.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                (raw, mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            SocketAddr::V6(a) => {
                raw.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo().to_be(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                (raw, mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }

    /// The Rust form of the `len`-byte address the kernel wrote (`InvalidData` if not IPv4/IPv6).
    fn socket_addr(&self, len: libc::socklen_t) -> io::Result<SocketAddr> {
        let len = len as usize;
        // SAFETY: both variants are plain integers and byte arrays, and every byte of the union is
        // initialised (see the type's doc), so reading either variant is sound.
        let (v4, v6) = unsafe { (self.v4, self.v6) };
        if v4.sin_family == libc::AF_INET as libc::sa_family_t
            && len >= mem::size_of::<libc::sockaddr_in>()
        {
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Ok(SocketAddrV4::new(ip, u16::from_be(v4.sin_port)).into())
        } else if v6.sin6_family == libc::AF_INET6 as libc::sa_family_t
            && len >= mem::size_of::<libc::sockaddr_in6>()
        {
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Ok(SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                u32::from_be(v6.sin6_flowinfo),
                v6.sin6_scope_id,
            )
            .into())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "unexpected socket address (family {}, {len} bytes)",
                    v4.sin_family
                ),
            ))
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        (self as *const RawAddr).cast()
    }

    fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (self as *mut RawAddr).cast()
    }
}

const EMPTY_IOVEC: libc::iovec = libc::iovec {
    iov_base: ptr::null_mut(),
    iov_len: 0,
};

/// An iovec describing `buf` (the kernel only reads through it when sending).
fn iovec_for(buf: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    }
}

/// An all-zero `mmsghdr`: null pointers, zero lengths and flags.
fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data (integers and raw pointers); all-zero bytes are a valid
    // value of every field (null pointers, zero lengths).
    unsafe { mem::zeroed() }
}

/// Points header `i` at `iovs[i]` (one iovec) and `addrs[i]`; keeps `msg_namelen`, clears the
/// control buffer. Pointers are derived once per slice so that they stay valid as long as the
/// slices are not accessed again.
fn link_headers(hdrs: &mut [libc::mmsghdr], iovs: &mut [libc::iovec], addrs: &mut [RawAddr]) {
    debug_assert!(hdrs.len() <= iovs.len() && hdrs.len() <= addrs.len());
    let iov = iovs.as_mut_ptr();
    let addr = addrs.as_mut_ptr();
    for (i, hdr) in hdrs.iter_mut().enumerate() {
        hdr.msg_hdr.msg_iov = iov.wrapping_add(i);
        hdr.msg_hdr.msg_iovlen = 1;
        hdr.msg_hdr.msg_name = addr.wrapping_add(i).cast();
        hdr.msg_hdr.msg_control = ptr::null_mut();
        hdr.msg_hdr.msg_controllen = 0;
        hdr.msg_hdr.msg_flags = 0;
        hdr.msg_len = 0;
    }
}

/// `socket(domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)`.
fn new_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; it returns a new fd or -1.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket, is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets an int socket option.
fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `value`, a live local.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads an int socket option.
fn get_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value` and updates `len`, both live
    // locals.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Sets a buffer size with the `force` option (needs `CAP_NET_ADMIN`), falling back to `plain`
/// (capped by the `net.core.*mem_max` sysctls) when not permitted. 0 leaves the default.
fn set_buffer(
    fd: BorrowedFd<'_>,
    force: libc::c_int,
    plain: libc::c_int,
    size: usize,
) -> io::Result<()> {
    if size == 0 {
        return Ok(());
    }
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    match set_int(fd, libc::SOL_SOCKET, force, value) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            set_int(fd, libc::SOL_SOCKET, plain, value)
        }
        other => other,
    }
}

/// The socket's bound address (`getsockname`).
fn sockname(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::ZERO;
    let mut len = RawAddr::LEN;
    // SAFETY: getsockname writes at most `len` bytes into `raw` and updates `len`, both live.
    if unsafe { libc::getsockname(fd.as_raw_fd(), raw.as_mut_ptr(), &mut len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    raw.socket_addr(len)
}
