//! Compiled components, cached by content digest: in memory (a bounded LRU), and on disk so a
//! restart, an eviction, or a second node sharing the directory skips Cranelift.
//!
//! Memory: compiled code is large (a Rust plugin's is a few hundred KiB, a Python runtime's
//! tens of MiB), so the in-memory copies are kept in least-recently-used order under a byte
//! budget (`plugin_cache_memory_mb`); what falls out is one disk read away. Code that a loaded
//! plugin uses stays mapped while the plugin lives, whatever this cache keeps: the budget
//! bounds only what is kept for later.
//!
//! Compiling: Cranelift takes tens of milliseconds for a Rust plugin and seconds for Python,
//! already spread over every core. A semaphore lets `compile_concurrency` compiles run at once
//! on the node; the rest wait their turn (first come, first served) instead of failing. Without
//! it, 200 concurrent uploads ran 200 compiles at once, each holding megabytes while it ran,
//! and the process kept most of that afterwards (RSS 100 → 700 MB; queued: 85 → 220 MB).
//!
//! Disk layout: `<dir>/<engine>/<sha256>.cwasm`, where `<engine>` is a hash of wasmtime's
//! precompile-compatibility key (version and code-generation settings): an artifact is only
//! ever loaded by an engine that can run it. Files are written to a temporary name and renamed,
//! so a crash never leaves half a file behind. A file that fails to load is removed and
//! compiled again.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hashlink::LinkedHashMap;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
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
    memory: Mutex<Lru>,
    /// One permit per compile allowed to run at once.
    compiles: Semaphore,
    compile_concurrency: usize,
}

/// Compiled components by digest, least recently used first, with their sizes.
struct Lru {
    entries: LinkedHashMap<Digest, (Component, usize)>,
    bytes: usize,
    budget: usize,
}

/// What the in-memory cache holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheUsage {
    /// Compiled components kept in memory.
    pub components: usize,
    /// Their compiled size, in bytes.
    pub bytes: usize,
    /// Compiles running now.
    pub compiling: usize,
}

impl ComponentCache {
    /// A cache for `engine`, persisting under `dir` when given, keeping up to `budget` bytes of
    /// compiled code in memory and running up to `compile_concurrency` compiles at once.
    pub(crate) fn new(
        engine: Engine,
        dir: Option<&Path>,
        budget: usize,
        compile_concurrency: usize,
    ) -> Result<Self, SetupError> {
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
        let compile_concurrency = compile_concurrency.max(1);
        Ok(Self {
            engine,
            dir,
            memory: Mutex::new(Lru {
                entries: LinkedHashMap::new(),
                bytes: 0,
                budget,
            }),
            compiles: Semaphore::new(compile_concurrency),
            compile_concurrency,
        })
    }

    /// The compiled component for `bytes` (whose digest is `digest`), from memory, disk, or
    /// Cranelift, in that order. Compiling waits for a compile slot, then runs on the blocking
    /// pool.
    pub(crate) async fn get(
        &self,
        digest: Digest,
        bytes: &[u8],
    ) -> Result<(Component, Origin), LoadError> {
        if let Some(found) = self.cached(digest) {
            return Ok(found);
        }
        let _slot = self
            .compiles
            .acquire()
            .await
            .expect("the compile semaphore is never closed");
        // Whoever held the slot before may have compiled these very bytes.
        if let Some(found) = self.cached(digest) {
            return Ok(found);
        }
        let engine = self.engine.clone();
        let owned = bytes.to_vec();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, owned))
            .await
            .map_err(|error| LoadError::Invalid(format!("the compiler task failed: {error}")))?
            .map_err(|error| LoadError::Invalid(format!("{error:#}")))?;
        if let Some(path) = self.path(&digest)
            && let Err(error) = persist(&component, &path)
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

    /// The compiled component for `digest` from memory or disk, without compiling.
    pub(crate) fn cached(&self, digest: Digest) -> Option<(Component, Origin)> {
        if let Some((component, _)) = self
            .memory
            .lock()
            .expect("cache lock")
            .entries
            .to_back(&digest)
        {
            return Some((component.clone(), Origin::Memory));
        }
        let path = self.path(&digest)?;
        if !path.exists() {
            return None;
        }
        match deserialize(&self.engine, &path) {
            Ok(component) => {
                self.remember(digest, &component);
                Some((component, Origin::Disk))
            }
            Err(error) => {
                tracing::warn!(
                    message = "Cached component failed to load; compiling again.",
                    path = %path.display(),
                    %error,
                );
                // The compile writes it anew; until then nobody should read it again.
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Drops the in-memory copy of `digest`.
    pub(crate) fn forget(&self, digest: &Digest) {
        let mut memory = self.memory.lock().expect("cache lock");
        if let Some((_, size)) = memory.entries.remove(digest) {
            memory.bytes -= size;
        }
    }

    /// Drops `digest` from memory and from disk: nothing will load it again.
    pub(crate) fn discard(&self, digest: &Digest) {
        self.forget(digest);
        if let Some(path) = self.path(digest) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(
                    message = "Could not remove a compiled component from the disk cache.",
                    path = %path.display(),
                    %error,
                ),
            }
        }
    }

    /// What the in-memory cache holds, and the compiles running.
    pub(crate) fn usage(&self) -> CacheUsage {
        let memory = self.memory.lock().expect("cache lock");
        CacheUsage {
            components: memory.entries.len(),
            bytes: memory.bytes,
            compiling: self.compile_concurrency - self.compiles.available_permits(),
        }
    }

    fn path(&self, digest: &Digest) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{digest}.cwasm")))
    }

    /// Keeps `component` as the most recently used, evicting the least recently used ones
    /// beyond the budget. One larger than the whole budget is not kept.
    fn remember(&self, digest: Digest, component: &Component) {
        let image = component.image_range();
        let size = image.end.addr() - image.start.addr();
        let mut memory = self.memory.lock().expect("cache lock");
        if let Some((_, old)) = memory.entries.remove(&digest) {
            memory.bytes -= old;
        }
        if size > memory.budget {
            return;
        }
        while memory.bytes + size > memory.budget {
            let Some((_, (_, evicted))) = memory.entries.pop_front() else {
                break;
            };
            memory.bytes -= evicted;
        }
        memory.entries.insert(digest, (component.clone(), size));
        memory.bytes += size;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A built-in with a custom section appended: a valid component with a digest of its own.
    fn salted(salt: u8) -> Vec<u8> {
        let mut bytes = plugin_artifacts::CONTENT_GUARD.to_vec();
        bytes.extend_from_slice(&[0x00, 3, 1, b's', salt]);
        bytes
    }

    fn cache(dir: Option<&Path>, budget: usize, concurrency: usize) -> ComponentCache {
        let engine = super::super::engine::build(8, 32 << 20).unwrap();
        ComponentCache::new(engine, dir, budget, concurrency).unwrap()
    }

    async fn compile(cache: &ComponentCache, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        cache.get(digest, bytes).await.unwrap();
        digest
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_keeps_the_most_recently_used_within_its_budget() {
        let unbounded = cache(None, usize::MAX, 1);
        compile(&unbounded, &salted(0)).await;
        let one = unbounded.usage().bytes;
        assert!(one > 0);

        // Room for two (the salt changes no compiled byte).
        let cache = cache(None, 2 * one + one / 2, 1);
        let a = compile(&cache, &salted(1)).await;
        let b = compile(&cache, &salted(2)).await;
        assert!(cache.cached(a).is_some(), "a is used now, b least recently");
        let c = compile(&cache, &salted(3)).await;
        assert_eq!(cache.usage().components, 2);
        assert!(cache.usage().bytes <= 2 * one + one / 2);
        assert!(cache.cached(b).is_none(), "b was evicted (no disk cache)");
        assert_eq!(
            cache.cached(a).map(|(_, origin)| origin),
            Some(Origin::Memory)
        );
        assert!(cache.cached(c).is_some());
        cache.forget(&a);
        assert_eq!(cache.usage().components, 1);
        assert_eq!(cache.usage().bytes, one);

        // A budget smaller than one component keeps none.
        let tiny = super::tests::cache(None, one - 1, 1);
        compile(&tiny, &salted(4)).await;
        assert_eq!(tiny.usage(), CacheUsage::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compiles_wait_for_a_slot_and_all_finish() {
        let cache = Arc::new(cache(None, 0, 1));
        let loads: Vec<_> = (10..14)
            .map(|salt| {
                let cache = cache.clone();
                tokio::spawn(async move { compile(&cache, &salted(salt)).await })
            })
            .collect();
        let mut most = 0;
        while !loads.iter().all(|load| load.is_finished()) {
            most = most.max(cache.usage().compiling);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for load in loads {
            load.await.unwrap();
        }
        assert_eq!(most, 1, "one compile at a time, and one did run");
        assert_eq!(cache.usage().compiling, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn discarded_code_is_gone_from_disk_and_forgotten_code_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(Some(dir.path()), usize::MAX, 1);
        let digest = compile(&cache, &salted(20)).await;
        cache.forget(&digest);
        assert_eq!(
            cache.cached(digest).map(|(_, origin)| origin),
            Some(Origin::Disk)
        );
        cache.discard(&digest);
        assert!(cache.cached(digest).is_none());
        let files = std::fs::read_dir(cache.dir.as_ref().unwrap())
            .unwrap()
            .count();
        assert_eq!(files, 0);
        // Discarding what is not there is fine.
        cache.discard(&digest);
    }
}
