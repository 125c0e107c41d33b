//! SQLite is single-instance: `serve` holds an exclusive lock on `<database file>.lock` for its
//! whole life, and a second `serve` on the same file refuses to start. The lock is the
//! operating system's (`flock`), so it goes away with the process however it ends.
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InstanceLockError {
    #[error(
        "another sgcache instance is already serving {database} (it holds {lock}); \
         SQLite is single-instance: use PostgreSQL to run several"
    )]
    Held { database: String, lock: String },
    #[error("cannot lock {lock}: {source}")]
    Io {
        lock: String,
        source: std::io::Error,
    },
}

/// Held while the daemon runs; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Locks `<database>.lock` beside a SQLite database file (see [`crate::db::sqlite_path`]).
    pub fn acquire(database: &Path) -> Result<InstanceLock, InstanceLockError> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io = |source| InstanceLockError::Io {
            lock: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(InstanceLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(InstanceLockError::Held {
                database: database.display().to_string(),
                lock: path.display().to_string(),
            }),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("var/cache.sqlite");
        let first = InstanceLock::acquire(&db).expect("lock, creating var/");
        assert_eq!(first.path(), dir.path().join("var/cache.sqlite.lock"));
        let second = InstanceLock::acquire(&db).expect_err("held");
        let line = second.to_string();
        assert!(line.contains("already serving"), "{line}");
        assert!(!line.contains('\n'));
        drop(first);
        InstanceLock::acquire(&db).expect("free again");
    }
}
