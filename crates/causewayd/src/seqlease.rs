//! Sequence-number leases for manually keyed outbound SAs.
//!
//! An ESP sequence number is also the per-packet IV of the AEAD nonce (RFC 4106, RFC 7634), so a
//! sender must never use one twice under the same key. A manual SA keeps its key across daemon
//! restarts, so its counter must survive them too: before the SA uses numbers up to N, the daemon
//! records N in a file (`esp-<spi>.lease` in `[control] state_dir`, written to a temporary file,
//! synced, renamed); after a restart, the SA resumes at the recorded number, above anything it
//! may have used. Each restart thus skips what was left of the lease ([`LEASE`] numbers), and the
//! peer's replay window, which only moves forward, accepts the resumed numbers.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Sequence numbers granted per lease: a file write every ~4 M packets; a restart skips at most
/// this many (so a 32-bit SA survives about a thousand restarts).
pub const LEASE: u64 = 1 << 22;

/// The persisted ceiling of one outbound SA's sequence numbers.
#[derive(Debug)]
pub struct SeqLease {
    path: PathBuf,
    /// Numbers below this may be used; at or above it, the lease must be extended first.
    ceiling: u64,
}

impl SeqLease {
    /// The first sequence number the SA of `spi` may use after what `dir` records, without
    /// writing anything (a reload checks this before it changes anything): 1 when there is no
    /// lease yet; an error for an unreadable or damaged one.
    pub fn peek(dir: &Path, spi: u32) -> io::Result<u64> {
        let path = Self::path(dir, spi);
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: not a sequence number ({:?}); refusing to guess where the SA stopped \
                         (remove the file only together with new keys on both ends)",
                        path.display(),
                        text.trim()
                    ),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(1),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("reading {}: {e}", path.display()),
            )),
        }
        .map(|n| n.max(1))
    }

    fn path(dir: &Path, spi: u32) -> PathBuf {
        dir.join(format!("esp-{spi:08x}.lease"))
    }

    /// Reads the lease of `spi` in `dir` (creating the directory), and takes a new one: returns
    /// the lease and the first sequence number the SA may use.
    pub fn acquire(dir: &Path, spi: u32) -> io::Result<(SeqLease, u64)> {
        fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating state directory {}: {e}", dir.display()),
            )
        })?;
        let path = Self::path(dir, spi);
        let start = Self::peek(dir, spi)?;
        let mut lease = SeqLease {
            path,
            ceiling: start,
        };
        lease.extend_to(start.saturating_add(LEASE))?;
        Ok((lease, start))
    }

    /// Makes sure `seq` is covered, extending the lease (one file write) when it is not.
    pub fn cover(&mut self, seq: u64) -> io::Result<()> {
        if seq < self.ceiling {
            return Ok(());
        }
        self.extend_to(seq.saturating_add(LEASE))
    }

    fn extend_to(&mut self, ceiling: u64) -> io::Result<()> {
        let tmp = self.path.with_extension("lease.tmp");
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            writeln!(f, "{ceiling}")?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            io::Error::new(e.kind(), format!("writing {}: {e}", self.path.display()))
        })?;
        self.ceiling = ceiling;
        Ok(())
    }

    pub fn ceiling(&self) -> u64 {
        self.ceiling
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cwlease-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_restart_resumes_above_everything_leased() {
        let d = dir("restart");
        let (mut a, start) = SeqLease::acquire(&d, 0x1001).unwrap();
        assert_eq!(start, 1);
        assert_eq!(a.ceiling(), 1 + LEASE);
        // Using numbers within the lease writes nothing; crossing it extends first.
        a.cover(LEASE).unwrap();
        assert_eq!(a.ceiling(), 1 + LEASE);
        a.cover(1 + LEASE).unwrap();
        assert_eq!(a.ceiling(), 1 + 2 * LEASE);
        drop(a);
        // "Restart": the SA resumes at the recorded ceiling, above every number it could have used.
        let (b, start) = SeqLease::acquire(&d, 0x1001).unwrap();
        assert_eq!(start, 1 + 2 * LEASE);
        assert_eq!(b.ceiling(), 1 + 3 * LEASE);
        // Another SPI has its own lease.
        let (_, other) = SeqLease::acquire(&d, 0x2002).unwrap();
        assert_eq!(other, 1);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_lease_is_an_error_not_a_guess() {
        let d = dir("damaged");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("esp-00001001.lease"), "banana").unwrap();
        let e = SeqLease::acquire(&d, 0x1001).unwrap_err();
        assert!(e.to_string().contains("not a sequence number"), "{e}");
        let e = SeqLease::peek(&d, 0x1001).unwrap_err();
        assert!(e.to_string().contains("not a sequence number"), "{e}");
        // Peeking writes nothing.
        assert_eq!(SeqLease::peek(&d, 0x2002).unwrap(), 1);
        assert!(!d.join("esp-00002002.lease").exists());
        let _ = fs::remove_dir_all(&d);
    }
}
