//! This program's own executable, as uploaded to targets.

use std::io::Write;
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

/// The running executable: its bytes, their SHA-256, and a gzip copy made on first need.
pub(crate) struct Binary {
    pub(crate) sha256: String,
    /// Shared, so replies to many children reference one copy.
    pub(crate) bytes: Arc<[u8]>,
    gzip: OnceLock<Vec<u8>>,
}

impl Binary {
    /// The running executable, read once per process.
    pub(crate) fn current() -> std::io::Result<Arc<Binary>> {
        static CURRENT: OnceLock<Arc<Binary>> = OnceLock::new();
        if let Some(b) = CURRENT.get() {
            return Ok(b.clone());
        }
        let bytes = std::fs::read("/proc/self/exe")
            .or_else(|_| std::env::current_exe().and_then(std::fs::read))?;
        let b = Binary::from_bytes(bytes);
        Ok(CURRENT.get_or_init(|| b).clone())
    }

    /// A binary held in memory (one for another architecture).
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Arc<Binary> {
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Arc::new(Binary {
            sha256,
            bytes: bytes.into(),
            gzip: OnceLock::new(),
        })
    }

    /// The gzip-compressed bytes.
    pub(crate) fn gzip(&self) -> &[u8] {
        self.gzip.get_or_init(|| {
            // Debug builds are large and compressed often in tests: favour speed.
            let level = if cfg!(debug_assertions) { 1 } else { 6 };
            let mut enc =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            enc.write_all(&self.bytes).expect("writing to a Vec");
            enc.finish().expect("writing to a Vec")
        })
    }
}
