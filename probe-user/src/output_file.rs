//! Writing an output file so that nothing is lost and nothing is half-written: the path is
//! checked (and a temporary file created beside it) before anything is attached, so an
//! hour of recording is never lost to a typo; the data goes to the temporary file, which is
//! renamed into place only once complete. A symbolic link at the path is refused, never
//! followed, and the temporary file is created exclusively, so a planted link cannot
//! redirect the write either.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why an output file cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{path} is a symbolic link; refusing to write through it (remove it or pick another name)"
    )]
    Symlink { path: PathBuf },
    #[error("{path} is a directory")]
    Directory { path: PathBuf },
    /// The cause is the source, not part of the message: printed as a chain (`{:#}`), a
    /// message that held it too said it twice.
    #[error("cannot write to {dir} (pick another output path)")]
    Unwritable {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An output file being prepared: the temporary file beside the final path. Dropped
/// without [`OutputFile::commit`], it removes the temporary file.
#[derive(Debug)]
pub struct OutputFile {
    path: PathBuf,
    temporary: PathBuf,
    file: Option<File>,
}

impl OutputFile {
    /// Checks that `path` can be written (not a link, not a directory, its directory
    /// writable) by creating the temporary file it will be written through.
    pub fn prepare(path: &Path) -> Result<OutputFile, OutputError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(OutputError::Symlink { path: path.into() })
            }
            Ok(meta) if meta.is_dir() => return Err(OutputError::Directory { path: path.into() }),
            _ => {}
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy();
        let temporary = dir.join(format!(".{name}.probe-{}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temporary)
            .map_err(|source| OutputError::Unwritable {
                dir: dir.clone(),
                source,
            })?;
        Ok(OutputFile {
            path: path.into(),
            temporary,
            file: Some(file),
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the contents with `write`, flushes them to disk and renames the file into
    /// place (replacing a regular file of that name). Under sudo the file is given to the
    /// invoking user, who asked for it.
    pub fn commit(
        mut self,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), OutputError> {
        let failed = |source| OutputError::Write {
            path: self.path.clone(),
            source,
        };
        let Some(file) = self.file.take() else {
            return Err(failed(io::Error::other("already written")));
        };
        let mut out = BufWriter::new(file);
        write(&mut out).map_err(failed)?;
        let file = out.into_inner().map_err(|err| failed(err.into_error()))?;
        give_to_invoking_user(&file);
        file.sync_all().map_err(failed)?;
        std::fs::rename(&self.temporary, &self.path).map_err(failed)?;
        Ok(())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if self.file.is_some() || self.temporary.exists() {
            // Nothing useful is in it; the caller reports why it was not committed.
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Under sudo, hands the file to the user who ran sudo (SUDO_UID / SUDO_GID), as a file
/// they asked for; a failure leaves it owned by root, which is only less convenient.
fn give_to_invoking_user(file: &File) {
    let id = |name| std::env::var(name).ok()?.parse::<u32>().ok();
    if let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) {
        let _ = std::os::unix::fs::fchown(file, Some(uid), Some(gid));
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("probe-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_through_a_temporary_file_and_renames() {
        let dir = scratch("ok");
        let path = dir.join("out.svg");
        std::fs::write(&path, "old").unwrap();
        let output = OutputFile::prepare(&path).unwrap();
        assert_eq!(
            entries(&dir).len(),
            2,
            "the temporary file exists beside it"
        );
        output.commit(|out| out.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(entries(&dir), ["out.svg"]);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = scratch("fail");
        let path = dir.join("out.svg");
        let output = OutputFile::prepare(&path).unwrap();
        let err = output
            .commit(|_| Err(io::Error::other("disk full")))
            .unwrap_err();
        assert!(err.to_string().contains("out.svg"), "{err}");
        assert!(entries(&dir).is_empty());
        drop(OutputFile::prepare(&path).unwrap());
        assert!(entries(&dir).is_empty(), "dropped uncommitted: removed");
    }

    #[test]
    fn refuses_links_directories_and_missing_directories() {
        let dir = scratch("bad");
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.join("link.svg");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = OutputFile::prepare(&link).unwrap_err();
        assert!(matches!(err, OutputError::Symlink { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(matches!(
            OutputFile::prepare(&dir).unwrap_err(),
            OutputError::Directory { .. }
        ));
        let err = OutputFile::prepare(&dir.join("no/such/dir/out.svg")).unwrap_err();
        assert!(err.to_string().starts_with("cannot write to"), "{err}");
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
    }
}
