//! Content digests, and checking blobs against them.
//!
//! A digest names a file (`blobs/sha256/<hex>`), and digests come from untrusted places: a
//! base image's index, manifest and config, a registry's answers, the layer cache's records.
//! So a [`Digest`] holds exactly `sha256:` and 64 lowercase hex digits, checked when it is read
//! (serde goes through the same parser), and [`Digest::blob_path`] is the one way from a digest
//! to a file: `sha256:../../x` never becomes a path. The bytes a digest names are checked
//! against it before they are used ([`Digest::check`], [`Digest::check_file`], [`Verifier`]).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::ImageError;

const PREFIX: &str = "sha256:";

/// `sha256:` and 64 lowercase hex digits; nothing else can be held.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest of what `hasher` has seen.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Digest(format!("{PREFIX}{}", hex::encode(hasher.finalize())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// The blob's file in `blobs`, a directory of blobs named by their hex digest (a layout's
    /// `blobs/sha256`).
    pub fn blob_path(&self, blobs: &Path) -> PathBuf {
        blobs.join(self.hex())
    }

    /// Whether `bytes` are this blob (and `size` bytes long, when a descriptor says);
    /// `origin` (`oci:DIR`, `REGISTRY/REPOSITORY`, ...) names where they came from in the
    /// error.
    pub fn check(&self, bytes: &[u8], size: Option<u64>, origin: &str) -> Result<(), ImageError> {
        let mut verifier = Verifier::default();
        verifier.update(bytes);
        verifier.check(self, size, origin)
    }

    /// Like [`Digest::check`], for a file, read in pieces.
    pub fn check_file(
        &self,
        path: &Path,
        size: Option<u64>,
        origin: &str,
    ) -> Result<(), ImageError> {
        let mut file = std::fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
        let mut verifier = Verifier::default();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(|e| ImageError::io(path, e))?;
            if n == 0 {
                break;
            }
            verifier.update(&buf[..n]);
        }
        verifier.check(self, size, origin)
    }
}

/// Hashes and counts a blob's bytes as they stream past, to check them at the end.
#[derive(Default)]
pub struct Verifier {
    hasher: Sha256,
    size: u64,
}

impl Verifier {
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// How many bytes have been seen.
    pub fn bytes_seen(&self) -> u64 {
        self.size
    }

    /// Whether the bytes seen are the blob `digest`, of `size` bytes when that is known.
    pub fn check(self, digest: &Digest, size: Option<u64>, origin: &str) -> Result<(), ImageError> {
        if let Some(expected) = size.filter(|s| *s != self.size) {
            return Err(ImageError::SizeMismatch {
                digest: digest.clone(),
                origin: origin.to_string(),
                expected,
                actual: self.size,
            });
        }
        let actual = Digest::from_hasher(self.hasher);
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.clone(),
                origin: origin.to_string(),
                actual,
            });
        }
        Ok(())
    }
}

impl FromStr for Digest {
    type Err = ImageError;

    fn from_str(text: &str) -> Result<Self, ImageError> {
        let hex = text.strip_prefix(PREFIX).unwrap_or("");
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Digest(text.to_string()))
        } else {
            // Bounded: the text is untrusted and lands in an error message.
            Err(ImageError::MalformedDigest(
                text.chars().take(100).collect(),
            ))
        }
    }
}

impl TryFrom<String> for Digest {
    type Error = ImageError;

    fn try_from(text: String) -> Result<Self, ImageError> {
        text.parse()
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "a0d64d659ecd88bf81f1c22a3b18d459cedb234d91ef2c6083f8fd467dc13de6";

    #[test]
    fn only_sha256_and_64_lowercase_hex_digits_are_digests() {
        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        assert_eq!(digest.hex(), HEX);
        assert_eq!(digest.blob_path(Path::new("b")), Path::new("b").join(HEX));
        let refused = [
            "sha256:../../secret.json".to_string(),
            format!("sha256:{}", HEX.to_uppercase()),
            format!("sha256:{}", &HEX[1..]),
            format!("sha256:{HEX}0"),
            format!("sha256:{}/", &HEX[1..]),
            format!("sha512:{HEX}"),
            format!("SHA256:{HEX}"),
            format!(" sha256:{HEX}"),
            format!("sha256:{HEX}\n"),
            HEX.to_string(),
            "sha256:".to_string(),
            String::new(),
        ];
        for text in &refused {
            assert!(
                matches!(text.parse::<Digest>(), Err(ImageError::MalformedDigest(_))),
                "{text:?} was accepted"
            );
        }
        assert_eq!(refused.len(), 12);
    }

    #[test]
    fn serde_reads_digests_through_the_parser() {
        let ok: Digest = serde_json::from_str(&format!("\"sha256:{HEX}\"")).unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            format!("\"sha256:{HEX}\"")
        );
        let err = serde_json::from_str::<Digest>("\"sha256:../x\"").unwrap_err();
        assert!(err.to_string().contains("malformed digest"), "{err}");
    }

    #[test]
    fn blobs_are_checked_against_digest_and_size() {
        let digest = Digest::of(b"blob");
        digest.check(b"blob", Some(4), "here").unwrap();
        digest.check(b"blob", None, "here").unwrap();
        assert!(matches!(
            digest.check(b"blub", Some(4), "here"),
            Err(ImageError::DigestMismatch { actual, .. }) if actual == Digest::of(b"blub")
        ));
        assert!(matches!(
            digest.check(b"blob", Some(5), "here"),
            Err(ImageError::SizeMismatch {
                expected: 5,
                actual: 4,
                ..
            })
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = digest.blob_path(dir.path());
        std::fs::write(&path, b"blob").unwrap();
        digest.check_file(&path, Some(4), "here").unwrap();
        std::fs::write(&path, b"blub").unwrap();
        assert!(digest.check_file(&path, Some(4), "here").is_err());
    }
}
