//! Reading files that someone else may have put in place: plugins and
//! their manifests in the plugin directory, the config file, certificates.
//!
//! Anything can sit at such a path. A symlink to `/dev/zero` read with
//! `std::fs::read` fills memory without end; a FIFO blocks `open()` until a
//! writer appears, and with it the thread that asked. So a file is read
//! only when it is a regular file (after following links), no larger than
//! a limit; the check is made before opening and again on the opened file
//! (the path may have been swapped in between), the file is opened
//! non-blocking, and the read stops one byte past the limit.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// The largest config file, manifest, certificate or key the gateway reads:
/// far above any real one, far below what a careless link could feed it.
/// (A plugin's own limit is `plugins.max_file_mb`.)
pub const MAX_SMALL_FILE_BYTES: u64 = 16 << 20;

/// How long reading one file may take before the caller gives up on it
/// (a regular file never takes this long; a stuck network file system
/// might).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Nothing is there (or a dangling symlink).
    #[error("no such file")]
    NotFound,
    /// A directory, FIFO, socket or device.
    #[error("is not a regular file (it is {0})")]
    NotRegular(&'static str),
    /// Larger than the limit.
    #[error("is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The file's size (at least).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Reading it took longer than [`READ_TIMEOUT`].
    #[error("reading it took longer than {} s", READ_TIMEOUT.as_secs())]
    TimedOut,
    /// Any other I/O error.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

fn kind_of(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "not a file"
    }
}

fn check(meta: &std::fs::Metadata, limit: u64) -> Result<(), FileError> {
    if !meta.is_file() {
        return Err(FileError::NotRegular(kind_of(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    Ok(())
}

/// Read `path` whole if it is a regular file of at most `limit` bytes.
/// Blocking: call it where blocking is fine, or through [`read_async`].
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let meta = std::fs::metadata(path).map_err(not_found)?;
    check(&meta, limit)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(not_found)?;
    let meta = file.metadata()?;
    check(&meta, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&mut file).take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// [`read_regular`] for UTF-8 text.
pub fn read_regular_text(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_regular(path, limit)?)
        .map_err(|_| FileError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")))
}

/// [`read_regular`] on a blocking thread, given up after [`READ_TIMEOUT`].
pub async fn read_async(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let owned = path.to_path_buf();
    match tokio::time::timeout(
        READ_TIMEOUT,
        tokio::task::spawn_blocking(move || read_regular(&owned, limit)),
    )
    .await
    {
        Ok(Ok(read)) => read,
        Ok(Err(join)) => Err(FileError::Io(std::io::Error::other(join.to_string()))),
        Err(_) => Err(FileError::TimedOut),
    }
}

fn not_found(e: std::io::Error) -> FileError {
    if e.kind() == std::io::ErrorKind::NotFound {
        FileError::NotFound
    } else {
        FileError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.wasm");
        std::fs::write(&file, b"hello").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap(), b"hello");
        assert!(matches!(
            read_regular(&file, 4),
            Err(FileError::TooLarge { size: 5, limit: 4 })
        ));

        let zero = dir.path().join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(
            read_regular(&zero, 1 << 30),
            Err(FileError::NotRegular("a character device"))
        ));

        let fifo = dir.path().join("fifo.wasm");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_regular(&fifo, 1 << 30),
            Err(FileError::NotRegular("a FIFO"))
        ));

        assert!(matches!(
            read_regular(dir.path(), 1 << 30),
            Err(FileError::NotRegular("a directory"))
        ));
        assert!(matches!(
            read_regular(&dir.path().join("none"), 1),
            Err(FileError::NotFound)
        ));
        let dangling = dir.path().join("dangling.wasm");
        std::os::unix::fs::symlink(dir.path().join("gone"), &dangling).unwrap();
        assert!(matches!(read_regular(&dangling, 1), Err(FileError::NotFound)));
    }
}
