//! Model files (checkpoints, tokenizers) named in a config, read safely.
//!
//! The operator's start-up `--config` may name any path (a relative one that is not
//! found from the working directory is looked up in `--models-dir`, where clients'
//! names point). A config that arrives over
//! HTTP may only name regular files inside the models directory (`--models-dir`):
//! relative names without `..`, symlinks resolved and re-checked against the
//! directory, and one "not available" error whatever the reason, so a client cannot
//! probe which paths exist on the server. Files are opened without blocking (a FIFO
//! cannot wedge the engine), must be regular files, and are size-checked against the
//! memory budget before a byte is read.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Which files a config may name.
#[derive(Clone, Debug)]
pub enum FileAccess {
    /// The operator's own config: any path; a relative one that does not exist from
    /// the working directory is taken from this models directory when it is there.
    Any(Option<PathBuf>),
    /// A client's config: files inside this (canonical) directory; `None` = no files.
    Within(Option<PathBuf>),
}

/// Longest file name echoed back in an error.
const MAX_ECHO: usize = 200;

fn not_available(key: &str, name: &str) -> Error {
    let shown: String = name.chars().take(MAX_ECHO).collect();
    Error::Config(format!(
        "{key} {shown:?} is not available: name a regular file (a model directory for `model`) inside the server's models directory (a relative name without `..`; the operator sets --models-dir)"
    ))
}

impl FileAccess {
    /// Access for client configs: inside `dir` (made canonical here), or no files.
    pub fn models_dir(dir: Option<&Path>) -> std::io::Result<FileAccess> {
        Ok(FileAccess::Within(match dir {
            Some(d) => Some(d.canonicalize()?),
            None => None,
        }))
    }

    /// Whether errors may name the path (the operator's own files).
    fn trusted(&self) -> bool {
        matches!(self, FileAccess::Any(_))
    }

    /// A model directory named `name` (resolved to `path`) that is not a directory:
    /// for clients the same refusal as every other, so that nothing tells which paths
    /// exist.
    pub fn require_dir(&self, key: &str, name: &str, path: &Path) -> Result<()> {
        if path.is_dir() {
            Ok(())
        } else if self.trusted() {
            Err(Error::Config(format!(
                "{key} {name:?} is not a directory: name a Hugging Face model directory"
            )))
        } else {
            Err(not_available(key, name))
        }
    }

    /// The file config key `key` names with `name`.
    pub fn resolve(&self, key: &str, name: &str) -> Result<PathBuf> {
        let root = match self {
            FileAccess::Any(dir) => {
                let path = PathBuf::from(name);
                let inside = dir.as_ref().map(|d| d.join(&path));
                return Ok(match inside {
                    Some(p) if path.is_relative() && !path.exists() && p.exists() => p,
                    _ => path,
                });
            }
            FileAccess::Within(None) => return Err(not_available(key, name)),
            FileAccess::Within(Some(root)) => root,
        };
        let rel = Path::new(name);
        let plain = !name.is_empty()
            && !name.contains('\0')
            && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(not_available(key, name));
        }
        // canonicalize resolves every symlink without opening the file
        let full = root
            .join(rel)
            .canonicalize()
            .map_err(|_| not_available(key, name))?;
        if !full.starts_with(root) {
            return Err(not_available(key, name));
        }
        Ok(full)
    }

    /// Read the regular file `path` (from [`FileAccess::resolve`] for `key` = `name`),
    /// refusing it when larger than `max_bytes`.
    pub fn read(&self, key: &str, name: &str, path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
        let fail = |why: String| {
            if self.trusted() {
                Error::Config(format!("{key}: cannot read {}: {why}", path.display()))
            } else {
                not_available(key, name)
            }
        };
        let file = open_nonblocking(path).map_err(|e| fail(e.to_string()))?;
        let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".into()));
        }
        let len = meta.len();
        if len > max_bytes {
            return Err(Error::Config(format!(
                "{key} {:?} has {len} bytes, more than the memory budget of {max_bytes} bytes (--max-model-bytes)",
                name.chars().take(MAX_ECHO).collect::<String>()
            )));
        }
        let mut bytes = try_vec_with_capacity::<u8>(len as usize, key)?;
        // a file that grows while it is read stops at the size checked above
        file.take(len)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(e.to_string()))?;
        Ok(bytes)
    }
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer;
    // O_NOFOLLOW: the last component may not have become a symlink since it was checked.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// An empty vector with room for `n` elements, or an error when the host cannot
/// give that much memory (never an abort).
pub fn try_vec_with_capacity<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::OutOfMemory(format!(
            "host memory for {what} ({} bytes)",
            n.saturating_mul(std::mem::size_of::<T>())
        ))
    })?;
    Ok(v)
}

/// `n` copies of `value`, reserved fallibly.
pub fn try_filled<T: Clone>(n: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = try_vec_with_capacity(n, what)?;
    v.resize(n, value);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch path removed when the test ends, passed or failed.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
            let _ = std::fs::remove_file(&self.0);
        }
    }

    impl std::ops::Deref for Scratch {
        type Target = PathBuf;
        fn deref(&self) -> &PathBuf {
            &self.0
        }
    }

    fn dir(test: &str) -> (Scratch, FileAccess) {
        let d = std::env::temp_dir().join(format!("wgformer-{test}-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/a.bin"), b"abc").unwrap();
        let access = FileAccess::models_dir(Some(&d)).unwrap();
        (Scratch(d), access)
    }

    #[test]
    fn names_inside_the_directory_only() {
        let (d, access) = dir("names");
        let p = access.resolve("checkpoint", "sub/a.bin").unwrap();
        assert_eq!(
            access.read("checkpoint", "sub/a.bin", &p, 10).unwrap(),
            b"abc"
        );
        let outside = Scratch(
            d.parent()
                .unwrap()
                .join(format!("wgformer-outside-{}", std::process::id())),
        );
        std::fs::write(&*outside, b"secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&*outside, d.join("link")).ok();
        for bad in [
            "",
            "/etc/passwd",
            &format!("../wgformer-outside-{}", std::process::id()),
            "sub/../sub/a.bin",
            "missing.bin",
            "link",
            "./sub/a.bin",
        ] {
            let e = access.resolve("checkpoint", bad).unwrap_err().to_string();
            assert!(e.contains("is not available"), "{bad}: {e}");
            assert!(!e.contains(d.to_str().unwrap()), "{bad}: {e}");
        }
        // a directory resolves but is not a regular file: the same answer
        let p = access.resolve("checkpoint", "sub").unwrap();
        let e = access.read("checkpoint", "sub", &p, 10).unwrap_err();
        assert!(e.to_string().contains("is not available"), "{e}");
        // too large for the budget
        let e = access.read("checkpoint", "sub/a.bin", &d.join("sub/a.bin"), 2);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("more than the memory budget"));
        let none = FileAccess::models_dir(None).unwrap();
        assert!(none.resolve("tokenizer", "sub/a.bin").is_err());
    }

    #[test]
    fn the_operator_names_any_path_and_relative_ones_also_from_the_models_dir() {
        let (d, _) = dir("operator");
        let op = FileAccess::Any(Some(d.to_path_buf()));
        // found only in the models directory
        assert_eq!(
            op.resolve("checkpoint", "sub/a.bin").unwrap(),
            d.join("sub/a.bin")
        );
        // a path that exists from the working directory, or an absolute one, as given
        assert_eq!(op.resolve("model", "src").unwrap(), PathBuf::from("src"));
        let abs = d.join("sub/a.bin");
        let abs = abs.to_str().unwrap();
        assert_eq!(op.resolve("checkpoint", abs).unwrap(), PathBuf::from(abs));
        // nowhere: as given, so the error names what the operator wrote
        assert_eq!(op.resolve("model", "nope").unwrap(), PathBuf::from("nope"));
        assert_eq!(
            FileAccess::Any(None)
                .resolve("checkpoint", "sub/a.bin")
                .unwrap(),
            PathBuf::from("sub/a.bin")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (d, access) = dir("fifo");
        let fifo = d.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let p = access.resolve("checkpoint", "fifo").unwrap();
        let e = access.read("checkpoint", "fifo", &p, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("is not available"), "{e}");
        let e = FileAccess::Any(None)
            .read("checkpoint", "fifo", &p, 1 << 20)
            .unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn absurd_reservations_are_errors() {
        let e = try_vec_with_capacity::<f32>(usize::MAX / 2, "test").unwrap_err();
        assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
    }
}
