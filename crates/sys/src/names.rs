//! Validation of interface and namespace names, and `struct ifreq` construction.

use std::io;

/// Returns an `InvalidInput` error with `msg`.
pub(crate) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Checks an interface name the way the kernel's `dev_valid_name` does, and also rejects `%`
/// (`TUNSETIFF` would treat `%d` as a template) and a leading `-` (it would read as an `ip` option).
pub(crate) fn check_ifname(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name == "."
        || name == ".."
        || name.starts_with('-')
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == b'%' || b == 0 || b.is_ascii_whitespace());
    if bad {
        return Err(invalid(format!(
            "invalid interface name {name:?}: 1 to {} bytes, no '/', ':', '%', whitespace, NUL or leading '-'",
            libc::IFNAMSIZ - 1
        )));
    }
    Ok(())
}

/// Checks a network namespace name (a file name under `/run/netns`).
pub(crate) fn check_netns(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.starts_with('-')
        || name.bytes().any(|b| b == b'/' || b == 0);
    if bad {
        return Err(invalid(format!(
            "invalid network namespace name {name:?}: 1 to 255 bytes, no '/', NUL or leading '-'"
        )));
    }
    Ok(())
}

/// How error messages name a namespace: `netns "NAME"` or `the current netns`.
pub(crate) fn ns_label(netns: Option<&str>) -> String {
    match netns {
        Some(ns) => format!("netns {ns:?}"),
        None => "the current netns".to_owned(),
    }
}

/// A zeroed `struct ifreq` carrying `name` (which must have passed [`check_ifname`]).
pub(crate) fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (a byte array and a union of integers, byte arrays,
    // sockaddrs and a raw pointer); all-zero bytes are a valid value of every field.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    debug_assert!(name.len() < libc::IFNAMSIZ);
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr
}
