//! Reading a fuzz input as a stream of small fields, and writing seeds in the same layout.
//!
//! Every read succeeds: past the end of the input a field reads as zero bytes (so a number is 0
//! and a frame is empty). Targets loop `while !input.is_empty()`, so every input terminates and
//! every input means something.

/// A cursor over the fuzz input.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.take(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// A length-prefixed byte string: a little-endian `u16` length, then that many bytes.
    pub fn frame(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let n = self.data.len();
        self.take(n)
    }
}

/// Writes the fields of a seed in the layout [`Input`] reads.
#[derive(Debug, Default, Clone)]
pub struct Seed(pub Vec<u8>);

impl Seed {
    pub fn new() -> Seed {
        Seed(Vec::new())
    }

    pub fn u8(mut self, v: u8) -> Seed {
        self.0.push(v);
        self
    }

    pub fn u16(mut self, v: u16) -> Seed {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(mut self, v: u32) -> Seed {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(mut self, v: u64) -> Seed {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(mut self, b: &[u8]) -> Seed {
        self.0.extend_from_slice(b);
        self
    }

    /// A length-prefixed frame (at most 65 535 bytes).
    pub fn frame(mut self, b: &[u8]) -> Seed {
        let n = u16::try_from(b.len()).expect("a frame holds at most 65535 bytes");
        self.0.extend_from_slice(&n.to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }

    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_seed_writes_and_zeroes_past_the_end() {
        let s = Seed::new().u8(7).u16(0x1234).frame(b"abc").u32(9).build();
        let mut i = Input::new(&s);
        assert_eq!(i.u8(), 7);
        assert_eq!(i.u16(), 0x1234);
        assert_eq!(i.frame(), b"abc");
        assert_eq!(i.u32(), 9);
        assert!(i.is_empty());
        assert_eq!((i.u64(), i.frame()), (0, &b""[..]));
        let mut short = Input::new(&[0xff, 0x00, 1, 2]);
        assert_eq!(short.frame(), &[1, 2]);
    }
}
