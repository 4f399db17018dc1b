//! Small helper programs the lab's L1 side runs, built from C source on
//! the host at test time (L1 sees the host's files, but a static binary
//! does not care which libc L1 would find).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{io_err, run_cmd, Result};

const UINPUT_KEYS_C: &str = include_str!("uinput_keys.c");

/// Builds `lab-uinput-keys` (see `uinput_keys.c`: a uinput keyboard that
/// presses given keys on a trigger) into `dir` and returns its path.
pub fn uinput_keys(dir: &Path) -> Result<PathBuf> {
    build_c(dir, "lab-uinput-keys", UINPUT_KEYS_C)
}

fn build_c(dir: &Path, name: &str, source: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let src = dir.join(format!("{name}.c"));
    let out = dir.join(name);
    std::fs::write(&src, source).map_err(io_err(format!("writing {}", src.display())))?;
    run_cmd(
        Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uinput_keys_builds_and_refuses_bad_usage() {
        let dir = std::env::temp_dir().join(format!("lab-tools-{}", std::process::id()));
        let bin = uinput_keys(&dir).unwrap();
        let st = Command::new(&bin).status().unwrap();
        assert_eq!(st.code(), Some(64));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
