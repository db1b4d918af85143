//! `probe watch --profile-dir`: the continuous profile as one pprof file per interval,
//! `profile-<UTC time>.pb.gz`, each written whole (through [`OutputFile`]) and the oldest
//! deleted once the directory's profiles pass the size cap. Only files of that name
//! pattern are ever deleted.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::output_file::{OutputError, OutputFile};

const PREFIX: &str = "profile-";
const SUFFIX: &str = ".pb.gz";

pub struct ProfileDir {
    dir: PathBuf,
    max_bytes: u64,
}

impl ProfileDir {
    /// Creates `dir` (0700) if missing and checks that files can be written in it: before
    /// anything is attached.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, OutputError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let created = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
        if let Err(source) = created {
            return Err(OutputError::Unwritable {
                dir: dir.to_owned(),
                source,
            });
        }
        // Dropped uncommitted: the check leaves nothing behind.
        OutputFile::prepare(&dir.join(format!("{PREFIX}check{SUFFIX}")))?;
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
        })
    }

    /// Writes one profile taken up to `at`, then deletes the oldest profiles while the
    /// directory holds more than the cap (never the one just written). Returns its path.
    pub fn write(&self, profile: &[u8], at: SystemTime) -> Result<PathBuf, OutputError> {
        let stamp = humantime::format_rfc3339_millis(at)
            .to_string()
            .replace(':', "");
        let path = self.dir.join(format!("{PREFIX}{stamp}{SUFFIX}"));
        OutputFile::prepare(&path)?.commit(|out| out.write_all(profile))?;
        self.enforce_cap(&path);
        Ok(path)
    }

    fn enforce_cap(&self, newest: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut profiles: Vec<(PathBuf, u64)> = entries
            .filter_map(Result::ok)
            .filter(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with(PREFIX) && name.ends_with(SUFFIX)
            })
            .filter_map(|entry| {
                let meta = entry.metadata().ok()?;
                meta.is_file().then(|| (entry.path(), meta.len()))
            })
            .collect();
        // The names sort by time.
        profiles.sort();
        let mut total: u64 = profiles.iter().map(|(_, len)| len).sum();
        for (path, len) in profiles {
            if total <= self.max_bytes || path == newest {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("probe-profile-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_oldest_profiles_go_once_the_cap_is_passed_and_nothing_else() {
        let dir = scratch("cap");
        let profiles = ProfileDir::open(&dir.join("sub"), 2500).unwrap();
        let unrelated = dir.join("sub/notes.txt");
        std::fs::write(&unrelated, vec![b'x'; 5000]).unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let written: Vec<PathBuf> = (0..4)
            .map(|i| {
                profiles
                    .write(&[7u8; 1000], start + Duration::from_secs(60 * i))
                    .unwrap()
            })
            .collect();
        assert_eq!(
            written[0].file_name().unwrap(),
            "profile-2027-01-15T080000.000Z.pb.gz"
        );
        let left: Vec<bool> = written.iter().map(|path| path.exists()).collect();
        assert_eq!(
            left,
            [false, false, true, true],
            "2 of 1000 bytes fit in 2500"
        );
        assert!(unrelated.exists(), "only profiles are deleted");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("sub")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_directory_is_said_at_once() {
        let err = ProfileDir::open(Path::new("/proc/version/profiles"), 1 << 20)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("/proc/version/profiles"), "{err}");
    }
}
