//! Packet capture (`causeway capture`): packets of one connection, as the pipeline sees them
//! (inner packets for tunnels, before encryption), written by the workers to a classic pcap file
//! (LINKTYPE_RAW: each record is an IP packet, v4 or v6).
//!
//! When no capture runs, the packet path pays one relaxed atomic load per packet
//! ([`Capture::active`]); only while one runs do the workers take the session's lock, for the
//! packets they forward.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// pcap LINKTYPE_RAW: the packet begins with an IPv4 or IPv6 header.
const LINKTYPE_RAW: u32 = 101;
/// Snapshot length in the file header: a super-packet is one IP packet of up to 64 KB.
const SNAPLEN: u32 = 65_535;

/// Which packets of the connection a capture takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureDir {
    /// From the VNet to the connection (the connection chosen by the route).
    Egress,
    /// From the connection to the VNet.
    Ingress,
}

struct Session {
    conn: usize,
    /// None: both directions.
    dir: Option<CaptureDir>,
    remaining: u32,
    written: u64,
    out: BufWriter<File>,
    done: SyncSender<Result<u64, String>>,
}

impl Session {
    /// Flushes the file and tells the waiting control thread how it ended.
    fn finish(mut self, error: Option<String>) {
        let result = match (error, self.out.flush()) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(format!("writing the capture file: {e}")),
            (None, Ok(())) => Ok(self.written),
        };
        let _ = self.done.try_send(result);
    }
}

/// The capture registry shared by the daemon (which starts captures) and the workers.
#[derive(Default)]
pub struct Capture {
    active: AtomicBool,
    session: Mutex<Option<Session>>,
}

/// A started capture: wait for its end with [`Capture::wait`].
pub struct Pending {
    done: Receiver<Result<u64, String>>,
}

impl Capture {
    /// True while a capture runs: the only cost on the packet path otherwise.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Starts a capture of `count` packets of connection `conn` into `path` (created or
    /// truncated); refused while another capture runs.
    pub fn start(
        &self,
        conn: usize,
        dir: Option<CaptureDir>,
        count: u32,
        path: &Path,
    ) -> Result<Pending, String> {
        let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if s.is_some() {
            return Err("another capture is running (one at a time)".into());
        }
        let file = File::create(path)
            .map_err(|e| format!("creating capture file {}: {e}", path.display()))?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let mut hdr = Vec::with_capacity(24);
        hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        hdr.extend_from_slice(&2u16.to_le_bytes());
        hdr.extend_from_slice(&4u16.to_le_bytes());
        hdr.extend_from_slice(&0i32.to_le_bytes());
        hdr.extend_from_slice(&0u32.to_le_bytes());
        hdr.extend_from_slice(&SNAPLEN.to_le_bytes());
        hdr.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        // The header reaches the file at once: a reader sees the capture has started.
        out.write_all(&hdr)
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing capture file {}: {e}", path.display()))?;
        let (done, rx) = sync_channel(1);
        *s = Some(Session {
            conn,
            dir,
            remaining: count,
            written: 0,
            out,
            done,
        });
        self.active.store(true, Ordering::Relaxed);
        Ok(Pending { done: rx })
    }

    /// Waits until the capture has its count or `timeout` passes (then it is stopped); returns
    /// the number of packets written.
    pub fn wait(&self, p: Pending, timeout: Duration) -> Result<u64, String> {
        if let Ok(r) = p.done.recv_timeout(timeout) {
            return r;
        }
        let taken = {
            let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
            self.active.store(false, Ordering::Relaxed);
            s.take()
        };
        if let Some(session) = taken {
            session.finish(None);
        }
        // Either our finish above or a worker's, just before the lock.
        p.done
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_else(|_| Err("the capture ended without a result".into()))
    }

    /// Ends a capture of connection slot `conn` at once with `why` as its error (the
    /// connection is going away); nothing when no capture of it runs.
    pub fn end_for(&self, conn: usize, why: &str) {
        let taken = {
            let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
            if s.as_ref().is_none_or(|s| s.conn != conn) {
                return;
            }
            self.active.store(false, Ordering::Relaxed);
            s.take()
        };
        if let Some(session) = taken {
            let n = session.written;
            session.finish(Some(format!("{why}, after {n} packets")));
        }
    }

    /// Called by a worker, only when [`Capture::active`] is true, for a packet it forwards:
    /// appends `pkt` (an IP packet) if it belongs to the captured connection and direction.
    #[cold]
    pub(crate) fn record(&self, conn: usize, dir: CaptureDir, pkt: &[u8]) {
        let mut guard = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = guard.as_mut() else {
            return;
        };
        if s.conn != conn || s.dir.is_some_and(|d| d != dir) || s.remaining == 0 {
            return;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let len = pkt.len() as u32;
        let incl = len.min(SNAPLEN);
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&(ts.as_secs() as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&ts.subsec_micros().to_le_bytes());
        rec[8..12].copy_from_slice(&incl.to_le_bytes());
        rec[12..16].copy_from_slice(&len.to_le_bytes());
        let written = s
            .out
            .write_all(&rec)
            .and_then(|()| s.out.write_all(&pkt[..incl as usize]));
        let error = match written {
            Ok(()) => {
                s.written += 1;
                s.remaining -= 1;
                if s.remaining > 0 {
                    return;
                }
                None
            }
            Err(e) => Some(format!("writing the capture file: {e}")),
        };
        self.active.store(false, Ordering::Relaxed);
        if let Some(session) = guard.take() {
            session.finish(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_pcap_and_stops_at_the_count() {
        let dir = std::env::temp_dir().join(format!("cw-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let c = Capture::default();
        assert!(!c.active());
        let p = c.start(1, Some(CaptureDir::Egress), 2, &path).unwrap();
        assert!(c.active());
        assert!(c.start(1, None, 2, &path).is_err());
        let pkt = [0x45u8; 20];
        c.record(0, CaptureDir::Egress, &pkt); // other connection
        c.record(1, CaptureDir::Ingress, &pkt); // other direction
        c.record(1, CaptureDir::Egress, &pkt);
        c.record(1, CaptureDir::Egress, &pkt);
        assert!(!c.active());
        assert_eq!(c.wait(p, Duration::from_secs(1)), Ok(2));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 24 + 2 * (16 + 20));
        assert_eq!(&bytes[20..24], &101u32.to_le_bytes());
        // A timeout stops an unfinished capture and reports what it wrote.
        let p = c.start(1, None, 5, &path).unwrap();
        c.record(1, CaptureDir::Ingress, &pkt);
        assert_eq!(c.wait(p, Duration::from_millis(10)), Ok(1));
        assert!(!c.active());
        // A reload removing the captured connection ends the capture with an error at once;
        // removing another one does not.
        let p = c.start(1, None, 5, &path).unwrap();
        c.record(1, CaptureDir::Ingress, &pkt);
        c.end_for(0, "gone");
        assert!(c.active());
        c.end_for(1, "connection `c` removed");
        assert!(!c.active());
        let e = c.wait(p, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("removed, after 1 packets"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
