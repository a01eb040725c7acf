//! Packet sockets (`AF_PACKET`) bound to one interface: what [`PacketSocket::send`] writes goes
//! onto the interface exactly as given, past the IP stack (no routing, no checksum or length
//! fix-ups), and [`PacketSocket::recv`] sees every packet the interface sends or receives. With
//! [`PacketSocket::bind`] and [`PacketSocket::sender`] they carry IP packets (`SOCK_DGRAM`);
//! with [`PacketSocket::bind_frames`] whole link-layer frames (`SOCK_RAW`, Ethernet header
//! included). The tests use them to put malformed packets onto a TUN (the daemon reads them as
//! if a host had sent them), to capture datagrams on a veth, and to relay frames between two
//! veths with loss and reordering (the lab kernel has no netem); the daemon does not.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A packet socket bound to one interface of the namespace it was made in.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    frames: bool,
}

/// The `sll_pkttype` of a frame the interface sent (not received).
const PACKET_OUTGOING: u8 = 4;

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

impl PacketSocket {
    /// Opens a packet socket on `ifname` in the calling thread's network namespace (use
    /// [`crate::netns::run_in`] for another one) that receives every IP packet of the interface.
    pub fn bind(ifname: &str) -> io::Result<PacketSocket> {
        PacketSocket::open(ifname, true, false)
    }

    /// Like [`PacketSocket::bind`], with whole frames: [`PacketSocket::recv`] returns them with
    /// their link-layer header and [`PacketSocket::send`] takes them so.
    pub fn bind_frames(ifname: &str) -> io::Result<PacketSocket> {
        PacketSocket::open(ifname, true, true)
    }

    /// Like [`PacketSocket::bind`], for sending only: it receives nothing (so it costs nothing
    /// while the interface is busy).
    pub fn sender(ifname: &str) -> io::Result<PacketSocket> {
        PacketSocket::open(ifname, false, false)
    }

    fn open(ifname: &str, receive: bool, frames: bool) -> io::Result<PacketSocket> {
        let name = CString::new(ifname)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
        // SAFETY: `name` is a valid C string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {ifname:?}"),
            ));
        }
        // Protocol 0: a socket that receives nothing until bound to a protocol.
        let proto = if receive { ETH_P_ALL.to_be() } else { 0 };
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                if frames {
                    libc::SOCK_RAW
                } else {
                    libc::SOCK_DGRAM
                } | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if !receive {
            return Ok(PacketSocket {
                fd,
                ifindex,
                frames,
            });
        }
        let sll = sockaddr(ifindex, ETH_P_ALL);
        // SAFETY: `sll` is a fully initialised sockaddr_ll and its size is passed with it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket {
            fd,
            ifindex,
            frames,
        })
    }

    /// Sends one IP packet (IPv4 or IPv6, by its first nibble), or one frame for a socket of
    /// [`PacketSocket::bind_frames`], onto the interface, as it is.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        let proto = if self.frames {
            ETH_P_ALL
        } else if packet.first().is_some_and(|b| b >> 4 == 6) {
            ETH_P_IPV6
        } else {
            ETH_P_IP
        };
        let sll = sockaddr(self.ifindex, proto);
        // SAFETY: sendto reads `packet` and `sll`, both valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Receives the next packet (sent or received by the interface) into `buf`, waiting at
    /// most `timeout`; `None` when none came.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        Ok(self.recv_from(buf, timeout)?.map(|(n, _)| n))
    }

    /// Like [`PacketSocket::recv`], also telling whether the interface sent the packet
    /// (`true`) rather than received it.
    pub fn recv_from(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> io::Result<Option<(usize, bool)>> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros().max(1) as libc::suseconds_t,
        };
        // SAFETY: setsockopt reads a timeval we own, with its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut from = sockaddr(0, 0);
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: recvfrom writes at most `buf.len()` bytes into `buf` and at most `len` bytes
        // into `from`, both ours.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some((n as usize, from.sll_pkttype == PACKET_OUTGOING)))
    }
}

fn sockaddr(ifindex: i32, proto: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex;
    sll
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_is_named() {
        let e = PacketSocket::bind("cw-no-such0").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("cw-no-such0"), "{e}");
    }
}
