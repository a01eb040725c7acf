//! Per-packet cost of ESP: `OutboundSa::seal` and `InboundSa::open` next to the raw AEAD of
//! `aws-lc-rs` they call, so that what our ESP code adds shows as a ratio.
//!
//! Run: `cargo bench -p causeway-benches --bench esp` (add a filter such as `esp_open/aes256`).
//!
//! For each cipher (`aes128gcm16`, `aes256gcm16`, `chacha20poly1305`) and inner IPv4 packet of
//! 64, 512 and 1400 bytes:
//!
//! - `esp_seal/<cipher>_esp/<size>`: one `OutboundSa::seal` per iteration, in place, in the same
//!   buffer (its contents change every time; the AEAD's cost does not depend on them). No ESN,
//!   as the daemon's default: an 8-byte AAD. Every result is checked against one reference seal
//!   (`causeway_benches::esp::layout`: where the ESP packet lies and how many bytes the AEAD
//!   encrypts), so that nothing here hardcodes the packet format.
//! - `esp_seal/<cipher>_aead/<size>`: `LessSafeKey::seal_in_place_separate_tag` alone over the
//!   bytes ESP encrypts for that packet (the packet, 0-3 pad bytes and the 2-byte trailer), with
//!   the nonce (`salt || 64-bit sequence number`) and the AAD (`SPI || 32-bit sequence number`)
//!   built per packet as `causeway_esp` builds them.
//! - `esp_open/<cipher>_esp/<size>`: one `InboundSa::open` per iteration. `open` decrypts in
//!   place and its replay window refuses a sequence number twice, so each packet can be opened
//!   once: batches of 256 packets pre-sealed with sequence numbers 1..=256 are copied into work
//!   buffers and a fresh inbound SA is built before each batch, outside the timed part. Every
//!   timed `open` must succeed (sequence number and inner range checked), or the benchmark panics.
//! - `esp_open/<cipher>_aead/<size>`: `LessSafeKey::open_in_place` alone over
//!   `ciphertext || tag` of the same length, batched the same way.
//!
//! Throughput is in inner-packet bytes (the IP packet carried), for both, so criterion's rate is
//! what a tunnel could carry on one core with nothing else to do. After criterion's own report,
//! a table prints the medians side by side with the ratio ESP / raw AEAD (read back from
//! criterion's `new/estimates.json` files of this run).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use causeway_benches::esp::{self, RawAead, CIPHERS, SIZES};
use causeway_esp::{Cipher, HEADROOM, ICV_LEN};
use criterion::{BenchmarkId, Criterion, Throughput};

/// Packets sealed ahead and opened per timed batch.
const BATCH: usize = 256;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

fn id(cipher: Cipher, what: &str, len: usize) -> BenchmarkId {
    BenchmarkId::new(format!("{cipher}_{what}"), len)
}

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("esp_seal");
    for cipher in CIPHERS {
        for len in SIZES {
            group.throughput(Throughput::Bytes(len as u64));

            let layout = esp::layout(cipher, len);
            let mut tx = esp::outbound(cipher);
            let mut buf = esp::inner_buffer(len);
            group.bench_function(id(cipher, "esp", len), |b| {
                b.iter(|| {
                    let r = tx.seal(black_box(&mut buf), HEADROOM, len, 4);
                    if !matches!(&r, Ok(x) if *x == layout.esp) {
                        panic!("esp_seal/{cipher}/{len}: {r:?}");
                    }
                    black_box(r)
                })
            });

            let aead = RawAead::new(cipher);
            let mut buf = esp::inner_buffer(len);
            let n = layout.encrypted;
            let mut seq = 0u64;
            group.bench_function(id(cipher, "aead", len), |b| {
                b.iter(|| {
                    seq += 1;
                    let tag =
                        aead.seal(black_box(seq), black_box(&mut buf[HEADROOM..HEADROOM + n]));
                    black_box(tag)
                })
            });
        }
    }
    group.finish();
}

/// Times `open_one(packet, index in batch)` over `iters` packets, in batches of [`BATCH`]: the
/// work buffers are refilled from `sealed` and `fresh()` is called before each batch, untimed.
fn batched<S>(
    iters: u64,
    sealed: &[Vec<u8>],
    work: &mut [Vec<u8>],
    mut fresh: impl FnMut() -> S,
    mut open_one: impl FnMut(&mut S, &mut [u8], usize),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH as u64) as usize;
        let mut state = fresh();
        for (w, s) in work[..n].iter_mut().zip(sealed) {
            w.copy_from_slice(s);
        }
        let start = Instant::now();
        for (i, p) in work[..n].iter_mut().enumerate() {
            open_one(&mut state, black_box(p), i);
        }
        total += start.elapsed();
        left -= n as u64;
    }
    total
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("esp_open");
    for cipher in CIPHERS {
        for len in SIZES {
            group.throughput(Throughput::Bytes(len as u64));

            let layout = esp::layout(cipher, len);
            let sealed = esp::sealed_batch(cipher, len, BATCH);
            let mut work = sealed.clone();
            let inner = layout.header..layout.header + len;
            group.bench_function(id(cipher, "esp", len), |b| {
                b.iter_custom(|iters| {
                    batched(
                        iters,
                        &sealed,
                        &mut work,
                        || esp::inbound(cipher),
                        |rx, p, i| match rx.open(p) {
                            Ok(o) if o.seq == i as u64 + 1 && o.inner == inner => {
                                black_box(o);
                            }
                            other => panic!("esp_open/{cipher}/{len}: packet {i}: {other:?}"),
                        },
                    )
                })
            });

            let aead = RawAead::new(cipher);
            let n = layout.encrypted;
            let sealed = aead.sealed_batch(len, n, BATCH);
            let mut work = sealed.clone();
            assert_eq!(sealed[0].len(), n + ICV_LEN);
            group.bench_function(id(cipher, "aead", len), |b| {
                b.iter_custom(|iters| {
                    batched(
                        iters,
                        &sealed,
                        &mut work,
                        || (),
                        |_, p, i| match aead.open(i as u64 + 1, p) {
                            Some(l) if l == n => {}
                            other => panic!("aead_open/{cipher}/{len}: packet {i}: {other:?}"),
                        },
                    )
                })
            });
        }
    }
    group.finish();
}

/// Where criterion writes its estimates (the order criterion itself uses, with this workspace's
/// `target/` in place of asking `cargo metadata`).
fn criterion_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CRITERION_HOME") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("criterion");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

/// Median ns per iteration of `group/function/len`, if this run (started at `since`) measured it.
fn median_ns(group: &str, function: &str, len: usize, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(function)
        .join(len.to_string())
        .join("new/estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn summary(since: SystemTime) {
    let mut lines = Vec::new();
    for cipher in CIPHERS {
        for len in SIZES {
            let mut cells = format!("{:<17} {len:>5}", cipher.name());
            let mut any = false;
            for group in ["esp_seal", "esp_open"] {
                let e = median_ns(group, &format!("{cipher}_esp"), len, since);
                let a = median_ns(group, &format!("{cipher}_aead"), len, since);
                let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.1}"));
                let ratio = match (e, a) {
                    (Some(e), Some(a)) if a > 0.0 => format!("{:.2}", e / a),
                    _ => "-".into(),
                };
                let gbps = e.map_or("-".to_string(), |e| format!("{:.2}", len as f64 * 8.0 / e));
                any |= e.is_some() || a.is_some();
                cells += &format!(" | {:>8} {:>8} {:>5} {:>6}", f(e), f(a), ratio, gbps);
            }
            if any {
                lines.push(cells);
            }
        }
    }
    if lines.is_empty() {
        return;
    }
    println!();
    println!("ESP against the raw AEAD (criterion medians of this run, ns per packet; Gbit/s of inner packets on one core):");
    println!(
        "{:<17} {:>5} | {:>8} {:>8} {:>5} {:>6} | {:>8} {:>8} {:>5} {:>6}",
        "cipher", "bytes", "seal", "aead", "ratio", "Gbit/s", "open", "aead", "ratio", "Gbit/s"
    );
    for l in lines {
        println!("{l}");
    }
}

fn main() {
    let since = SystemTime::now();
    let mut c = config().configure_from_args();
    seal(&mut c);
    open(&mut c);
    c.final_summary();
    summary(since);
}
