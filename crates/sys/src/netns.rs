//! Named network namespaces, as made by `ip netns add NAME` (bind mounts under `/run/netns`).
//!
//! [`run_in`] runs a closure on a short-lived dedicated thread that first joins the namespace with
//! `setns(2)`; the calling thread never changes namespace. File descriptors created by the closure
//! (sockets, TUN fds) stay bound to that namespace and remain valid after the thread has ended.
//! Each call costs one thread spawn and join (tens of microseconds): fine for setup and status
//! queries, not for a per-packet path.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::thread;

use crate::cmd;
use crate::names::check_netns;

/// The directory where `ip netns` keeps its namespace bind mounts.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The path of the named namespace: `/run/netns/NAME`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_RUN_DIR).join(name)
}

/// Whether the named namespace exists (its name is valid and `/run/netns/NAME` is present).
pub fn exists(name: &str) -> bool {
    check_netns(name).is_ok() && path(name).exists()
}

/// The names of the namespaces in `/run/netns`, sorted. An absent directory gives an empty list.
pub fn list() -> io::Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in dir {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Opens `/run/netns/NAME` (close-on-exec). A missing namespace is `NotFound` naming it.
fn open(name: &str) -> io::Result<OwnedFd> {
    check_netns(name)?;
    let p = path(name);
    match File::open(&p) {
        Ok(f) => Ok(f.into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "network namespace {name:?} does not exist ({} not found)",
                p.display()
            ),
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "cannot open network namespace {name:?} ({}): {e}",
                p.display()
            ),
        )),
    }
}

/// Runs `f` inside the named network namespace, on a dedicated thread that calls
/// `setns(fd, CLONE_NEWNET)` first, and returns its result.
///
/// Errors: `NotFound` naming the namespace when `/run/netns/NAME` is missing, `InvalidInput` for a
/// bad name, the `setns` error (e.g. `PermissionDenied` without `CAP_SYS_ADMIN`) naming the
/// namespace, or a failure to spawn the thread. A panic in `f` is resumed on the calling thread.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let ns = open(name)?;
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name(format!("netns:{name}"))
            .spawn_scoped(scope, move || -> io::Result<T> {
                // SAFETY: `ns` is an open fd owned by this closure; setns only changes the network
                // namespace of this (dedicated, short-lived) thread and touches no Rust memory.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    let e = io::Error::last_os_error();
                    return Err(io::Error::new(
                        e.kind(),
                        format!("setns into network namespace {name:?} failed: {e}"),
                    ));
                }
                drop(ns);
                Ok(f())
            })?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs `f` in the named namespace ([`run_in`]) when `netns` is `Some`, or directly on the calling
/// thread (no thread spawned) when it is `None`.
pub fn run_in_opt<T: Send>(netns: Option<&str>, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    match netns {
        Some(name) => run_in(name, f),
        None => Ok(f()),
    }
}

/// Creates a named namespace with `ip netns add NAME` (for tests and lab scripts).
pub fn add(name: &str) -> io::Result<()> {
    check_netns(name)?;
    cmd::ip(None, &["netns", "add", name])
}

/// Deletes a named namespace with `ip netns del NAME` (for tests and lab scripts). The namespace
/// itself lives on while some fd (e.g. an open TUN) or process still refers to it.
pub fn delete(name: &str) -> io::Result<()> {
    check_netns(name)?;
    cmd::ip(None, &["netns", "del", name])
}
