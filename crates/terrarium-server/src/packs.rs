//! Packs the team server keeps for compute nodes: files on disk beside the server (never in its
//! database), named by the sha256 of their bytes, fetched by nodes through signed links.
//!
//! A link is `/api/v1/packs/sha256:HEX?expires=UNIX&signature=HEX`: an HMAC-SHA256, under a key
//! only the server holds (`.link-key` in the pack directory, made at first start), of the
//! pack's digest and the link's expiry. A node with the link fetches that one pack until then,
//! with no token: a job's batch script carries the link, never a user's token.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;

/// The largest pack a server takes.
pub const MAX_PACK_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// The longest a link may live.
pub const MAX_LINK_LIFETIME: time::Duration = time::Duration::days(30);

/// How long a pack is kept after the last link to it was given: longer than any link lives,
/// so no link outlives its pack.
pub const KEEP_AFTER_LAST_LINK: std::time::Duration =
    std::time::Duration::from_secs(31 * 24 * 3600);

/// What a link lives for when the client does not say.
pub const DEFAULT_LINK_LIFETIME: &str = "7d";

const KEY_FILE: &str = ".link-key";

/// Uploads a server takes at once; more are answered `busy` (503).
pub const MAX_UPLOADS: usize = 4;

/// The packs a server keeps, and the key its links are signed with.
pub struct PackStore {
    dir: PathBuf,
    key: [u8; 32],
    /// A permit per upload in progress.
    pub uploads: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for PackStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PackStore {
    /// Open (or make, private to this user) the pack directory `dir` and its link key.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let key_path = dir.join(KEY_FILE);
        let mut key = [0u8; 32];
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
        {
            Ok(mut file) => {
                std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
                file.write_all(&key)?;
                file.sync_all()?;
            }
            // Made before, or by another server process sharing the directory just now.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut read = Vec::new();
                for _ in 0..50 {
                    read = std::fs::read(&key_path)?;
                    if read.len() == key.len() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                key = read.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} is not a link key (32 bytes); remove it to make a new one (links given out before stop working)",
                            key_path.display()
                        ),
                    )
                })?;
            }
            Err(err) => return Err(err),
        }
        // Uploads a stopped server left behind.
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".upload-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            uploads: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Mark the pack `digest` as linked now (its modification time), so that [`sweep`] keeps
    /// it for [`KEEP_AFTER_LAST_LINK`] more.
    ///
    /// [`sweep`]: Self::sweep
    pub fn touch(&self, digest: &str) -> std::io::Result<()> {
        std::fs::File::options()
            .append(true)
            .open(self.path(digest))?
            .set_modified(std::time::SystemTime::now())
    }

    /// Remove the packs no link was given for in `keep` (by modification time); return how
    /// many. Nothing else in the directory is touched.
    pub fn sweep(&self, keep: std::time::Duration) -> std::io::Result<usize> {
        let Some(before) = std::time::SystemTime::now().checked_sub(keep) else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with("sha256-") && name.ends_with(".tpack")) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at < before);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Where the pack `digest` (checked by [`check_digest`]) is kept.
    pub fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join(format!("sha256-{hex}.tpack"))
    }

    fn mac(&self, digest: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(format!("terrarium pack link\n{digest}\n{expires}").as_bytes());
        mac
    }

    /// The path and query of a link to the pack `digest`, valid until `expires` (UNIX seconds).
    pub fn link(&self, digest: &str, expires: i64) -> String {
        let signature = hex::encode(self.mac(digest, expires).finalize().into_bytes());
        format!(
            "{}/packs/{digest}?expires={expires}&signature={signature}",
            crate::wire::API_PREFIX
        )
    }

    /// Refuse a link's signature unless this server made it for `digest` and it has not expired.
    pub fn verify(&self, digest: &str, expires: i64, signature: &str) -> Result<(), ApiError> {
        let bytes = hex::decode(signature)
            .map_err(|_| ApiError::forbidden("the link's signature is not this server's"))?;
        self.mac(digest, expires)
            .verify_slice(&bytes)
            .map_err(|_| ApiError::forbidden("the link's signature is not this server's"))?;
        if expires <= time::OffsetDateTime::now_utc().unix_timestamp() {
            return Err(ApiError::forbidden(format!(
                "the link expired at {}; submit the job again for a new one",
                crate::auth::format_time(
                    time::OffsetDateTime::from_unix_timestamp(expires)
                        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
                )
            )));
        }
        Ok(())
    }
}

/// The digest a pack file is kept under: `sha256:` and the hex of its bytes' SHA-256, streamed.
pub fn file_digest(path: &Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 18];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Refuse anything but `sha256:` and 64 lowercase hex digits: the digest names a file.
pub fn check_digest(digest: &str) -> Result<(), ApiError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(ApiError::invalid(format!(
            "`{}` is not a pack digest: expected sha256: and 64 lowercase hex digits",
            digest.escape_debug()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn links_are_signed_for_one_pack_and_one_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackStore::open(dir.path()).unwrap();
        let later = time::OffsetDateTime::now_utc().unix_timestamp() + 60;
        let link = store.link(DIGEST, later);
        let signature = link.rsplit_once("signature=").unwrap().1;
        store.verify(DIGEST, later, signature).unwrap();
        // Another expiry, another pack, or a changed signature is refused.
        assert!(store.verify(DIGEST, later + 1, signature).is_err());
        let other = DIGEST.replace("00000000", "11111111");
        assert!(store.verify(&other, later, signature).is_err());
        assert!(store.verify(DIGEST, later, "00").is_err());
        assert!(store.verify(DIGEST, later, "not hex").is_err());
        // An expired link is refused even with its own signature.
        let past = later - 120;
        let old = store.link(DIGEST, past);
        let message = store
            .verify(DIGEST, past, old.rsplit_once("signature=").unwrap().1)
            .unwrap_err()
            .message;
        assert!(message.contains("expired"), "{message}");
        // The key outlives the process: a reopened store accepts its links; another does not.
        let reopened = PackStore::open(dir.path()).unwrap();
        reopened.verify(DIGEST, later, signature).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(PackStore::open(elsewhere.path())
            .unwrap()
            .verify(DIGEST, later, signature)
            .is_err());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn packs_no_link_was_given_for_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackStore::open(dir.path()).unwrap();
        let old = DIGEST.replace("00000000", "11111111");
        for digest in [DIGEST, old.as_str()] {
            std::fs::write(store.path(digest), b"pack").unwrap();
        }
        std::fs::write(dir.path().join("other.tpack"), b"not a pack").unwrap();
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
        for path in [
            store.path(DIGEST),
            store.path(&old),
            dir.path().join("other.tpack"),
        ] {
            std::fs::File::options()
                .append(true)
                .open(path)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        // A link given now keeps its pack.
        store.touch(DIGEST).unwrap();
        assert_eq!(store.sweep(KEEP_AFTER_LAST_LINK).unwrap(), 1);
        assert!(store.path(DIGEST).is_file());
        assert!(!store.path(&old).exists());
        assert!(dir.path().join("other.tpack").is_file());
        assert!(dir.path().join(KEY_FILE).is_file());
    }

    #[test]
    fn digests_name_files_and_nothing_else() {
        check_digest(DIGEST).unwrap();
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:",
            "md5:00",
            &DIGEST.to_uppercase(),
            &format!("{DIGEST}0"),
            &DIGEST.replace("00", "/."),
        ] {
            assert!(check_digest(bad).is_err(), "{bad}");
        }
    }
}
