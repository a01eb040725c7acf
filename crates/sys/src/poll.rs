//! Waiting for readable file descriptors with `poll(2)`, and a [`Waker`] to interrupt the wait.
//!
//! A worker waits on its TUN fds plus a [`Waker`]'s fd; another thread calls [`Waker::wake`] to
//! make the wait return (for example to stop the worker), and the worker calls [`Waker::drain`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// How many fds [`wait_readable`] handles without allocating.
const STACK_FDS: usize = 8;

/// Waits until at least one of `fds` is readable or `timeout` passes (`None`: wait forever).
///
/// Sets `ready[i]` for each `fds[i]` that is readable, or has an error or hang-up to report (the
/// next read on it returns that error); clears the other entries of `ready`. Returns how many are
/// set: 0 on timeout. `EINTR` is retried with the remaining time. `ready` must be at least as long
/// as `fds` (`InvalidInput` otherwise). Does not allocate for up to 8 fds. The timeout has
/// nanosecond precision (`ppoll`), which the shaper's release times need.
pub fn wait_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
    ready: &mut [bool],
) -> io::Result<usize> {
    if ready.len() < fds.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "wait_readable: {} fds but only {} ready slots",
                fds.len(),
                ready.len()
            ),
        ));
    }
    let empty = libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    };
    let mut stack = [empty; STACK_FDS];
    let mut heap = Vec::new();
    let pfds: &mut [libc::pollfd] = if fds.len() <= STACK_FDS {
        &mut stack[..fds.len()]
    } else {
        heap.resize(fds.len(), empty);
        &mut heap
    };
    for (p, fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd.as_raw_fd();
        p.events = libc::POLLIN;
    }
    // An overflowing deadline means "forever".
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let nfds = libc::nfds_t::try_from(pfds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "wait_readable: too many fds"))?;
    loop {
        let ts = deadline.map(|d| timespec(d.saturating_duration_since(Instant::now())));
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `pfds` is a valid, exclusively borrowed array of `nfds` pollfd structs that
        // outlives the call; the fds are borrowed, so they stay open during the call. `ts_ptr` is
        // null or points to a timespec that lives until the call returns; the signal mask pointer
        // is null (mask unchanged).
        let rc = unsafe { libc::ppoll(pfds.as_mut_ptr(), nfds, ts_ptr, std::ptr::null()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            // Keep waiting if the deadline is further (a capped timespec).
            if let Some(d) = deadline {
                if Instant::now() < d {
                    continue;
                }
            }
        }
        break;
    }
    let mut count = 0;
    for (r, p) in ready.iter_mut().zip(pfds.iter()) {
        *r = p.revents != 0;
        count += usize::from(*r);
    }
    for r in &mut ready[fds.len()..] {
        *r = false;
    }
    Ok(count)
}

/// A duration as a `ppoll` timeout (nanosecond precision), capped at `i32::MAX` seconds.
fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs().min(i32::MAX as u64)).unwrap_or(i32::MAX.into()),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    }
}

/// An eventfd (`EFD_NONBLOCK | EFD_CLOEXEC`) that makes [`wait_readable`] return.
///
/// Put [`Waker::as_fd`] among the fds passed to [`wait_readable`]; [`Waker::wake`] from any thread
/// makes it readable until [`Waker::drain`] is called. `Waker` is `Send + Sync`; share it with `Arc`.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// Creates a waker (one eventfd).
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; it returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd, is open, and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Makes the waker's fd readable (wakes a thread blocked in [`wait_readable`] on it).
    /// Waking an already woken waker is harmless.
    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local u64 to an fd we own.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n < 0 {
            let e = io::Error::last_os_error();
            // EAGAIN: the counter is saturated, so the fd is readable already.
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Resets the waker; returns whether it had been woken since the last drain.
    pub fn drain(&self) -> io::Result<bool> {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local u64 from an fd we own.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(true)
    }

    /// The eventfd, to pass to [`wait_readable`].
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
