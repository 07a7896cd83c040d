//! One control plane per data directory: a running control plane holds an
//! exclusive lock on `control.lock` there, so that a second one started on
//! the same state by mistake stops at once, and so that the admin commands
//! know whether to talk to a running server or to work on the state
//! themselves. The kernel drops the lock when its holder exits, however
//! it exits, so a `kill -9` leaves nothing to clean up.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "control.lock";

/// The held lock; dropping it lets the next holder in.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds it.
    #[error(
        "{} is in use by another control plane (or an admin command) holding {}",
        dir.display(),
        path.display()
    )]
    Held { dir: PathBuf, path: PathBuf },
    #[error("cannot lock {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl DataLock {
    /// Takes the lock of `dir` (creating both), or says who has it.
    pub fn try_acquire(dir: &Path) -> Result<DataLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        if !try_lock(&file).map_err(io)? {
            return Err(LockError::Held {
                dir: dir.to_owned(),
                path,
            });
        }
        Ok(DataLock { _file: file })
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `false` when another open file holds it.
#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for as long as `file` lives.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        e => Err(e),
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DataLock::try_acquire(&data).unwrap();
        let err = DataLock::try_acquire(&data).unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err.to_string().contains("control.lock"), "{err}");
        drop(first);
        DataLock::try_acquire(&data).expect("free once the holder is gone");
    }
}
