//! [`SecretBytes`]: key material that is zeroized on drop and never printed.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Secret bytes (keys, SKEYSEED, shared secrets): zeroized when dropped, `Debug` shows only the
/// length. Allocated once at its final size, so no reallocation leaves a copy behind.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Copies `bytes` into a new secret.
    pub fn from_slice(bytes: &[u8]) -> SecretBytes {
        SecretBytes(bytes.to_vec())
    }

    /// `len` zero bytes, to be filled in place through [`SecretBytes::as_mut_bytes`].
    pub fn zeroed(len: usize) -> SecretBytes {
        SecretBytes(vec![0; len])
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, writable.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted, {} bytes>)", self.0.len())
    }
}
