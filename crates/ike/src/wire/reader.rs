//! A forward-only cursor over received bytes. Every read is checked: a short buffer gives
//! `None`, never a panic, so the decoders above can turn it into a precise error.

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { rest: buf }
    }

    /// Bytes not read yet.
    pub(crate) fn len(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// Everything not read yet; the reader is empty afterwards.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.rest)
    }
}

/// Writes the big-endian length of `out[start..]` into `out[at..at + 2]`; `None` when that
/// length does not fit 16 bits.
pub(crate) fn patch_len16(out: &mut [u8], start: usize, at: usize) -> Option<()> {
    let len = u16::try_from(out.len().checked_sub(start)?).ok()?;
    out.get_mut(at..at.checked_add(2)?)?
        .copy_from_slice(&len.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(r.take(1), Some(&[1u8][..]));
        assert_eq!(r.u16(), Some(0x0203));
        assert_eq!(r.u32(), Some(0x0405_0607));
        assert_eq!(r.u64(), None);
    }

    #[test]
    fn failed_read_consumes_nothing() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32(), None);
        assert_eq!(r.len(), 3);
        assert_eq!(r.take(3), Some(&[1u8, 2, 3][..]));
        assert!(r.is_empty());
        assert_eq!(r.u16(), None);
        assert_eq!(r.rest(), &[] as &[u8]);
    }

    #[test]
    fn patch_len16_refuses_overflow() {
        let mut v = vec![0u8; 4];
        assert_eq!(patch_len16(&mut v, 0, 2), Some(()));
        assert_eq!(v, [0, 0, 0, 4]);
        let mut big = vec![0u8; 70_000];
        assert_eq!(patch_len16(&mut big, 0, 2), None);
        assert_eq!(patch_len16(&mut v, 0, 3), None);
    }
}
