//! The Python venv with the official client, shared by the integration test and the reads
//! bench (included by `#[path]`): made under `tests/python/.venv` on first use.
use std::path::{Path, PathBuf};
use std::process::Command;

pub const CLIENT_VERSION: &str = "shotgun_api3==3.10.3";

/// The venv's interpreter with `shotgun_api3` installed (made on first use), or `None` when
/// python3 or PyPI is not available.
pub fn venv_python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/.venv");
    let python = root.join("bin/python");
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", "import shotgun_api3"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && works(&python) {
        return Some(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&root)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                CLIENT_VERSION,
            ])
            .status()
            .is_ok_and(|s| s.success());
    (made && works(&python)).then_some(python)
}
