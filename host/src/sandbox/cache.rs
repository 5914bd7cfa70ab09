//! Compiled components, cached by content digest: in memory for the process, and on disk so a
//! restart (or a second node sharing the directory) skips Cranelift.
//!
//! Disk layout: `<dir>/<engine>/<sha256>.cwasm`, where `<engine>` is a hash of wasmtime's
//! precompile-compatibility key (version and code-generation settings): an artifact is only
//! ever loaded by an engine that can run it. Files are written to a temporary name and renamed,
//! so a crash never leaves half a file behind. A file that fails to load is recompiled and
//! overwritten.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::{LoadError, SetupError};

/// The SHA-256 of a component's bytes: its identity everywhere in DMS (cache keys, events,
/// uploads).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl std::str::FromStr for Digest {
    type Err = String;

    /// Parses 64 hex digits, as [`Digest`] displays.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| format!("{text:?} is not a SHA-256 digest in hex"))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

/// Where a component came from on load, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Already compiled in this process.
    Memory,
    /// Loaded from the disk cache.
    Disk,
    /// Compiled now with Cranelift.
    Compiled,
}

pub(crate) struct ComponentCache {
    engine: Engine,
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<Digest, Component>>,
}

impl ComponentCache {
    /// A cache for `engine`, persisting under `dir` when given.
    pub(crate) fn new(engine: Engine, dir: Option<&Path>) -> Result<Self, SetupError> {
        let dir = match dir {
            None => None,
            Some(dir) => {
                let mut hasher = std::hash::DefaultHasher::new();
                engine.precompile_compatibility_hash().hash(&mut hasher);
                let dir = dir.join(format!("{:016x}", hasher.finish()));
                crate::private_files::create_dir(&dir).map_err(|source| SetupError::CacheDir {
                    path: dir.clone(),
                    source,
                })?;
                Some(dir)
            }
        };
        Ok(Self {
            engine,
            dir,
            memory: Mutex::new(HashMap::new()),
        })
    }

    /// The compiled component for `bytes` (whose digest is `digest`), from memory, disk, or
    /// Cranelift, in that order. Compiling runs on the blocking pool: it takes tens of
    /// milliseconds for a Rust plugin and seconds for Python or JavaScript.
    pub(crate) async fn get(
        &self,
        digest: Digest,
        bytes: &[u8],
    ) -> Result<(Component, Origin), LoadError> {
        if let Some(component) = self.memory.lock().expect("cache lock").get(&digest) {
            return Ok((component.clone(), Origin::Memory));
        }
        let path = self
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("{digest}.cwasm")));
        if let Some(path) = &path
            && path.exists()
        {
            match deserialize(&self.engine, path) {
                Ok(component) => {
                    self.remember(digest, &component);
                    return Ok((component, Origin::Disk));
                }
                Err(error) => tracing::warn!(
                    message = "Cached component failed to load; compiling again.",
                    path = %path.display(),
                    %error,
                ),
            }
        }

        let engine = self.engine.clone();
        let owned = bytes.to_vec();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, owned))
            .await
            .map_err(|error| LoadError::Invalid(format!("the compiler task failed: {error}")))?
            .map_err(|error| LoadError::Invalid(format!("{error:#}")))?;
        if let Some(path) = &path
            && let Err(error) = persist(&component, path)
        {
            tracing::warn!(
                message = "Could not write the compiled component to the disk cache.",
                path = %path.display(),
                %error,
            );
        }
        self.remember(digest, &component);
        Ok((component, Origin::Compiled))
    }

    /// Drops the in-memory copy of `digest`.
    pub(crate) fn forget(&self, digest: &Digest) {
        self.memory.lock().expect("cache lock").remove(digest);
    }

    fn remember(&self, digest: Digest, component: &Component) {
        self.memory
            .lock()
            .expect("cache lock")
            .insert(digest, component.clone());
    }
}

/// Loads a compiled artifact from the cache directory.
#[allow(
    unsafe_code,
    reason = "wasmtime can only trust compiled code it is told to trust"
)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize_file` runs the native code in the file, so the file must
    // come from `Component::serialize` of a compatible engine. It does: only `persist` writes
    // this directory (created 0700, owned by the server's user), file names are content digests
    // of the source component, the directory is keyed by the engine's compatibility hash, and
    // writes are atomic (temporary file + rename). wasmtime also checks the artifact's header
    // and version before using it. Anyone who can write this directory can already replace
    // the server binary.
    unsafe { Component::deserialize_file(engine, path) }
}

fn persist(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|error| std::io::Error::other(format!("{error:#}")))?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}
