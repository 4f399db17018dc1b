//! Where our bhyve's guest RAM lives during a benchmark.
//!
//! Our guest RAM is the named VM's `memory` file in the run directory;
//! QEMU's is anonymous memory, which it madvises for transparent huge
//! pages. The page size of guest RAM matters for storage: an O_DIRECT
//! request into 4 KiB pages pins and maps every page, and the host block
//! layer splits it at its segment limit, while 2 MiB pages make a 1 MiB
//! request a few segments. Measured on the development machine
//! (docs/PERFORMANCE.md): QEMU with its RAM in a `/dev/shm` file is as
//! slow on 1 MiB sequential I/O as we are there, and we are as fast as
//! its anonymous RAM on a tmpfs with huge pages. So by default the run
//! directory is a private tmpfs mounted `huge=within_size` (root only),
//! the same page size QEMU gets; `--ram shm` keeps `/dev/shm` (4 KiB
//! pages, a plain tmpfs as `/run/bhyve` usually is).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Which backing the run directory should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ram {
    /// A private tmpfs with transparent huge pages (falls back to
    /// [`Ram::Shm`] when it cannot be mounted).
    Huge,
    /// `/dev/shm` (or the work directory without it).
    Shm,
}

impl Ram {
    pub fn parse(s: &str) -> Option<Ram> {
        match s {
            "huge" => Some(Ram::Huge),
            "shm" => Some(Ram::Shm),
            _ => None,
        }
    }
}

/// The run directory of our bhyve for one benchmark; removed (and
/// unmounted) on drop.
pub struct RunDir {
    path: PathBuf,
    mount: Option<PathBuf>,
}

impl RunDir {
    pub fn new(work: &Path, ram: Ram) -> RunDir {
        if ram == Ram::Huge {
            let m = work.join("hugeram");
            match mount_huge_tmpfs(&m) {
                Ok(()) => {
                    return RunDir {
                        path: m.join("run"),
                        mount: Some(m),
                    }
                }
                Err(e) => {
                    eprintln!("bhyve-bench: no huge-page tmpfs ({e}); guest RAM on /dev/shm");
                    let _ = std::fs::remove_dir(&m);
                }
            }
        }
        let shm = Path::new("/dev/shm");
        let path = if shm.is_dir() {
            shm.join(format!("bhyve-bench-{}", std::process::id()))
        } else {
            work.join("run")
        };
        RunDir { path, mount: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For the table headers: what backs each VMM's RAM.
    pub fn describe(&self) -> String {
        let ours = if self.mount.is_some() {
            "tmpfs huge=within_size"
        } else {
            "tmpfs, 4 KiB pages"
        };
        format!("bhyve RAM {ours}, qemu RAM anonymous (THP {})", thp_mode())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        if let Some(m) = &self.mount {
            if let Ok(c) = CString::new(m.as_os_str().as_bytes()) {
                // SAFETY: plain syscall on a NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
            let _ = std::fs::remove_dir(m);
        }
    }
}

/// The kernel's THP mode for anonymous memory (the bracketed word).
fn thp_mode() -> String {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|s| {
            let a = s.find('[')?;
            let b = s[a..].find(']')?;
            Some(s[a + 1..a + b].to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mount_huge_tmpfs(at: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(at)?;
    let target = CString::new(at.as_os_str().as_bytes())?;
    // Twice the largest guest the benchmarks boot, so a run never fills it.
    let data = c"huge=within_size,size=512m,mode=0700";
    // SAFETY: NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::mount(
            c"bhyve-bench".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices() {
        assert_eq!(Ram::parse("huge"), Some(Ram::Huge));
        assert_eq!(Ram::parse("shm"), Some(Ram::Shm));
        assert_eq!(Ram::parse("anon"), None);
    }

    #[test]
    fn shm_dir_is_removed_on_drop() {
        let work = std::env::temp_dir().join(format!("ramdir-test-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap();
        let d = RunDir::new(&work, Ram::Shm);
        let p = d.path().to_path_buf();
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("memory"), b"x").unwrap();
        assert!(d.describe().contains("4 KiB"));
        drop(d);
        assert!(!p.exists());
        let _ = std::fs::remove_dir_all(&work);
    }

    #[test]
    fn huge_tmpfs_is_mounted_and_unmounted_as_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let work = std::env::temp_dir().join(format!("ramdir-huge-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap();
        let d = RunDir::new(&work, Ram::Huge);
        let m = work.join("hugeram");
        let mounts = || std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(mounts().contains(m.to_str().unwrap()), "not mounted");
        assert!(d.path().starts_with(&m));
        assert!(d.describe().contains("huge=within_size"));
        drop(d);
        assert!(!mounts().contains(m.to_str().unwrap()), "still mounted");
        assert!(!m.exists());
        std::fs::remove_dir_all(&work).unwrap();
    }
}
