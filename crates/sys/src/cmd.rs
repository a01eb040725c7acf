//! Running iproute2's `ip` and turning its failures into `io::Error`s that quote the command.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Where the `ip` binary is: the first `ip` on `PATH`, else the usual sbin directories
/// (daemons often run with a short `PATH`), else plain `ip`.
fn ip_binary() -> &'static Path {
    static IP: OnceLock<PathBuf> = OnceLock::new();
    IP.get_or_init(|| {
        let from_path = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("ip"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let fixed = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].map(PathBuf::from);
        from_path
            .into_iter()
            .chain(fixed)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("ip"))
    })
}

/// Runs `ip [-n NETNS] ARGS...`. On failure the error message holds the exact command line,
/// its exit status and its stderr; the error kind is guessed from the stderr text.
pub(crate) fn ip(netns: Option<&str>, args: &[&str]) -> io::Result<()> {
    let mut argv: Vec<&str> = Vec::with_capacity(args.len() + 2);
    if let Some(ns) = netns {
        argv.extend(["-n", ns]);
    }
    argv.extend_from_slice(args);
    let cmdline = format!("ip {}", argv.join(" "));
    let out = Command::new(ip_binary())
        .args(&argv)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("`{cmdline}` could not be started: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr.trim();
    let kind = if stderr.contains("Cannot find device")
        || stderr.contains("does not exist")
        || stderr.contains("No such file or directory")
        || stderr.contains("No such device")
    {
        io::ErrorKind::NotFound
    } else if stderr.contains("File exists") {
        io::ErrorKind::AlreadyExists
    } else if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
        io::ErrorKind::PermissionDenied
    } else if stderr.contains("Invalid argument") || stderr.contains("Error: argument") {
        io::ErrorKind::InvalidInput
    } else {
        io::ErrorKind::Other
    };
    Err(io::Error::new(
        kind,
        format!("`{cmdline}` failed ({}): {stderr}", out.status),
    ))
}
