//! TCP (RFC 9293) pieces the gateway touches: the MSS option of SYNs (clamped on tunnels so that
//! hosts never need fragmentation) and full checksums of segments it builds.

use crate::checksum;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_SYN: u8 = 0x02;
pub const FLAG_RST: u8 = 0x04;
pub const FLAG_PSH: u8 = 0x08;
pub const FLAG_ACK: u8 = 0x10;
pub const FLAG_CWR: u8 = 0x80;

const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// Clamps the MSS option of a TCP SYN (or SYN-ACK) at `tcp` (the TCP header and what follows)
/// to `max_mss`. When `partial_csum` is set the checksum field holds only the pseudo-header sum
/// (virtio `NEEDS_CSUM`) and is completed later over the changed bytes, so it is left alone;
/// otherwise it is updated incrementally (RFC 1624). Returns true when the MSS was lowered.
/// Malformed options are left untouched (the packet is forwarded as it is).
pub fn clamp_mss(tcp: &mut [u8], max_mss: u16, partial_csum: bool) -> bool {
    if tcp.len() < 20 || tcp[13] & FLAG_SYN == 0 {
        return false;
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() {
        return false;
    }
    let mut i = 20;
    while i < doff {
        match tcp[i] {
            OPT_EOL => return false,
            OPT_NOP => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || i + len > doff {
                    return false;
                }
                if kind == OPT_MSS && len == 4 {
                    let mss = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if mss <= max_mss {
                        return false;
                    }
                    tcp[i + 2..i + 4].copy_from_slice(&max_mss.to_be_bytes());
                    if !partial_csum {
                        // The option's 16-bit word sits at an even offset from the TCP header
                        // only when `i` is even; fold the change in word by word either way.
                        let check = u16::from_be_bytes([tcp[16], tcp[17]]);
                        let check = if (i + 2) % 2 == 0 {
                            checksum::update16(check, mss, max_mss)
                        } else {
                            let [oh, ol] = mss.to_be_bytes();
                            let [nh, nl] = max_mss.to_be_bytes();
                            // Bytes i+2 and i+3 straddle two words: (x, oh) (ol, y).
                            let x = tcp[i + 1];
                            let y = tcp.get(i + 4).copied().unwrap_or(0);
                            let c = checksum::update16(
                                check,
                                u16::from_be_bytes([x, oh]),
                                u16::from_be_bytes([x, nh]),
                            );
                            checksum::update16(
                                c,
                                u16::from_be_bytes([ol, y]),
                                u16::from_be_bytes([nl, y]),
                            )
                        };
                        tcp[16..18].copy_from_slice(&check.to_be_bytes());
                    }
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// Computes and writes the full TCP checksum of `segment` (TCP header + payload), with the
/// pseudo-header sum `pseudo` (see [`checksum::pseudo_v4`] / [`checksum::pseudo_v6`]).
pub fn set_checksum(segment: &mut [u8], pseudo: u32) {
    segment[16] = 0;
    segment[17] = 0;
    let c = checksum::finish(checksum::add(pseudo, segment));
    segment[16..18].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN with options: MSS 1460, then `extra` (to move the MSS to an odd offset).
    fn syn(mss: u16, lead_nop: bool) -> Vec<u8> {
        let mut opts = Vec::new();
        if lead_nop {
            opts.push(OPT_NOP);
        }
        opts.extend_from_slice(&[OPT_MSS, 4]);
        opts.extend_from_slice(&mss.to_be_bytes());
        opts.extend_from_slice(&[4, 2]); // SACK permitted
        while opts.len() % 4 != 0 {
            opts.push(OPT_NOP);
        }
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&443u16.to_be_bytes());
        t[12] = (((20 + opts.len()) / 4) as u8) << 4;
        t[13] = FLAG_SYN;
        t.extend_from_slice(&opts);
        let pseudo = checksum::pseudo_v4([10, 1, 0, 10], [10, 3, 0, 10], 6, t.len() as u16);
        set_checksum(&mut t, pseudo);
        t
    }

    fn verifies(t: &[u8]) -> bool {
        let pseudo = checksum::pseudo_v4([10, 1, 0, 10], [10, 3, 0, 10], 6, t.len() as u16);
        checksum::finish(checksum::add(pseudo, t)) == 0
    }

    #[test]
    fn clamps_and_keeps_the_checksum_valid() {
        for lead_nop in [false, true] {
            let mut t = syn(1460, lead_nop);
            assert!(verifies(&t));
            assert!(clamp_mss(&mut t, 1350, false));
            let at = if lead_nop { 23 } else { 22 };
            assert_eq!(u16::from_be_bytes([t[at], t[at + 1]]), 1350);
            assert!(verifies(&t), "checksum after clamping (nop={lead_nop})");
        }
    }

    #[test]
    fn leaves_small_mss_and_non_syn_alone() {
        let mut t = syn(1200, false);
        let before = t.clone();
        assert!(!clamp_mss(&mut t, 1350, false));
        assert_eq!(t, before);
        let mut t = syn(1460, false);
        t[13] = FLAG_ACK;
        assert!(!clamp_mss(&mut t, 1350, false));
    }

    #[test]
    fn partial_checksum_is_left_for_later() {
        let mut t = syn(1460, false);
        t[16] = 0xab;
        t[17] = 0xcd;
        assert!(clamp_mss(&mut t, 1350, true));
        assert_eq!(&t[16..18], &[0xab, 0xcd]);
    }

    #[test]
    fn malformed_options_do_not_panic() {
        let mut t = syn(1460, false);
        t[21] = 40; // option length beyond the header
        assert!(!clamp_mss(&mut t, 1350, false));
        let mut t = syn(1460, false);
        t[12] = 0xf0; // data offset beyond the buffer
        assert!(!clamp_mss(&mut t, 1350, false));
        assert!(!clamp_mss(&mut [0u8; 5], 1350, false));
    }
}
