//! Staging and target paths as orchestrators give them: Swarm's right below
//! its roots (`/data/staged/<id>`), kubelet's several levels down
//! (`.../kubernetes.io/csi/<driver>/<hash>/globalmount`,
//! `.../pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount`). A path is taken
//! only below one of the allowed roots, without `.` or `..`, and through
//! no symbolic link below the root; netfs makes the directories missing
//! and later removes exactly those.

use std::io;
use std::path::{Path, PathBuf};

use tonic::Status;

use super::{invalid, required};

/// Where paths of one kind may lie, and the request field they come in.
pub struct Roots {
    pub field: &'static str,
    pub roots: Vec<PathBuf>,
}

impl Roots {
    /// Checks a path the orchestrator gave: absolute, plain, strictly
    /// below a root, no symbolic link between the root and its end, and a
    /// directory where it exists.
    pub fn check(&self, path: &str) -> Result<PathBuf, Status> {
        let field = self.field;
        required(path, field)?;
        let given = Path::new(path);
        // Checked on the text: `components` drops a `.` in the middle.
        let plain = given.is_absolute() && !path.split('/').any(|s| s == "." || s == "..");
        if !plain {
            return Err(invalid(format!(
                "{field} {path} must be an absolute path without `.` or `..`"
            )));
        }
        let clean: PathBuf = given.components().collect();
        let Some(root) = self.root_of(&clean) else {
            let roots = self.shown();
            return Err(invalid(format!(
                "{field} {path} is not below {roots}; the allowed roots are a setting \
                 (STAGING_ROOTS, PUBLISH_ROOTS: see docs/csi.md and docs/kubernetes.md)"
            )));
        };
        for step in below(root, &clean) {
            match std::fs::symlink_metadata(&step) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(invalid(format!(
                        "{field} {path} goes through the symbolic link {}; give the real path",
                        step.display()
                    )));
                }
                Ok(meta) if !meta.is_dir() => {
                    return Err(invalid(format!(
                        "{field} {path}: {} is not a directory",
                        step.display()
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => {
                    return Err(Status::internal(format!(
                        "{field} {path}: cannot read {}: {e}",
                        step.display()
                    )))
                }
            }
        }
        Ok(clean)
    }

    /// The deepest root `path` lies strictly below.
    fn root_of(&self, path: &Path) -> Option<&Path> {
        self.roots
            .iter()
            .filter(|r| path.starts_with(r) && path != r.as_path())
            .max_by_key(|r| r.components().count())
            .map(PathBuf::as_path)
    }

    fn shown(&self) -> String {
        let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        match roots.as_slice() {
            [one] => format!("the root {one}"),
            _ => format!("any of the roots {}", roots.join(", ")),
        }
    }

    /// Makes the directories missing from `path`'s root down to `path`,
    /// one at a time (`mkdir` makes no directory through a link), and
    /// answers those it made, outermost first. On failure, what it made
    /// is removed again.
    pub fn make(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let Some(root) = self.root_of(path) else {
            return Err(io::Error::other("not below an allowed root"));
        };
        let mut made = Vec::new();
        for step in below(root, path) {
            match std::fs::create_dir(&step) {
                Ok(()) => made.push(step),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let dir = std::fs::symlink_metadata(&step).is_ok_and(|m| m.is_dir());
                    if !dir {
                        remove(&made);
                        let what = format!("{} is not a directory", step.display());
                        return Err(io::Error::other(what));
                    }
                }
                Err(e) => {
                    remove(&made);
                    return Err(e);
                }
            }
        }
        Ok(made)
    }
}

/// The paths from just below `root` down to `path`, outermost first.
fn below(root: &Path, path: &Path) -> Vec<PathBuf> {
    let Ok(rest) = path.strip_prefix(root) else {
        return Vec::new();
    };
    let mut step = root.to_path_buf();
    rest.components()
        .map(|c| {
            step.push(c);
            step.clone()
        })
        .collect()
}

/// Removes directories netfs made, innermost first, stopping at the first
/// that is not empty or still mounted: nothing else is ever removed.
pub fn remove(made: &[PathBuf]) {
    for dir in made.iter().rev() {
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "directory netfs made left in place");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(dir: &Path) -> Roots {
        Roots {
            field: "target_path",
            roots: vec![dir.join("pods"), dir.join("other")],
        }
    }

    #[test]
    fn paths_below_a_root_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let deep = dir
            .path()
            .join("pods/uid/volumes/kubernetes.io~csi/pv/mount");
        assert_eq!(r.check(&deep.display().to_string()).unwrap(), deep);
        let shallow = dir.path().join("other/x");
        assert_eq!(r.check(&shallow.display().to_string()).unwrap(), shallow);
        for bad in [
            "relative/x".to_string(),
            format!("{}/pods/../etc", dir.path().display()),
            format!("{}/pods/./x", dir.path().display()),
            format!("{}/pods", dir.path().display()),
            format!("{}/podsx/y", dir.path().display()),
            "/etc/x".to_string(),
        ] {
            let err = r.check(&bad).expect_err(&bad);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}: {err:?}");
            assert!(err.message().starts_with("target_path "), "{err:?}");
        }
        assert_eq!(r.check("").unwrap_err().message(), "target_path is missing");
    }

    #[test]
    fn no_path_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        std::fs::create_dir_all(dir.path().join("pods")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("pods/uid")).unwrap();
        let via = dir.path().join("pods/uid/volumes/x");
        let err = r.check(&via.display().to_string()).unwrap_err();
        assert_eq!(
            err.message(),
            format!(
                "target_path {} goes through the symbolic link {}; give the real path",
                via.display(),
                dir.path().join("pods/uid").display()
            )
        );
        assert!(
            r.make(&via).is_err(),
            "mkdir makes nothing through the link"
        );
        assert!(!Path::new("/etc/volumes").exists());
    }

    #[test]
    fn makes_what_is_missing_and_removes_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let parent = dir.path().join("pods/uid/volumes");
        std::fs::create_dir_all(&parent).unwrap();
        let target = parent.join("pv/mount");
        let made = r.make(&target).unwrap();
        assert_eq!(made, [parent.join("pv"), target.clone()]);
        assert!(
            r.make(&target).unwrap().is_empty(),
            "nothing new the second time"
        );
        remove(&made);
        assert!(!parent.join("pv").exists());
        assert!(parent.exists(), "what was there stays");
        // A directory someone filled meanwhile stays, and so do its parents.
        let made = r.make(&target).unwrap();
        std::fs::write(target.join("file"), "x").unwrap();
        remove(&made);
        assert!(target.join("file").exists());
    }
}
