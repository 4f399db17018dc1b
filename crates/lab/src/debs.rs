//! Debian packages fetched at run time (`apt-get download` + `dpkg -x`),
//! unpacked once into the lab's cache and reused.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{io_err, run_cmd, LabError, Result};

/// The candidate version apt would install.
pub fn candidate_version(pkg: &str) -> Result<String> {
    let out = run_cmd(Command::new("apt-cache").args(["show", "--no-all-versions", pkg]))
        .map_err(|e| no_package(pkg, e))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| no_package(pkg, LabError::Format("no Version field".into())))
}

fn no_package(pkg: &str, e: LabError) -> LabError {
    LabError::Missing(format!(
        "Debian package {pkg} is not available ({e}); run `apt-get update` \
         (the lab fetches its kernels and busybox from Debian at run time)"
    ))
}

/// The versioned package a kernel metapackage such as `linux-image-amd64`
/// depends on (`linux-image-6.1.0-NN-amd64`): the one holding the files.
pub fn kernel_package(meta: &str) -> Result<String> {
    let out = run_cmd(Command::new("apt-cache").args(["depends", meta]))
        .map_err(|e| no_package(meta, e))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|d| d.starts_with("linux-image-"))
        .map(str::to_string)
        .ok_or_else(|| no_package(meta, LabError::Format("no linux-image dependency".into())))
}

/// Holds an exclusive lock on the cache (released when the file closes) so
/// two lab runs do not unpack the same package at once.
struct CacheLock(#[allow(dead_code)] File);

impl CacheLock {
    fn take(cache: &Path) -> Result<Self> {
        std::fs::create_dir_all(cache).map_err(io_err(format!("creating {}", cache.display())))?;
        let f = File::create(cache.join(".lock")).map_err(io_err("creating the cache lock"))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(LabError::Io {
                what: "locking the lab cache".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self(f))
    }
}

/// Unpacks `pkg` (its candidate version) under `cache` and returns the
/// folder holding its files. Cached: a second call does no network I/O.
pub fn unpack(cache: &Path, pkg: &str) -> Result<PathBuf> {
    let version = candidate_version(pkg)?;
    let dir = cache.join(format!("{pkg}_{}", version.replace(':', "%3a")));
    let done = dir.join(".unpacked");
    if done.exists() {
        return Ok(dir);
    }
    let _lock = CacheLock::take(cache)?;
    if done.exists() {
        return Ok(dir);
    }
    let dl = cache.join("downloads");
    std::fs::create_dir_all(&dl).map_err(io_err(format!("creating {}", dl.display())))?;
    run_cmd(
        Command::new("apt-get")
            .current_dir(&dl)
            // Downloads into a folder of ours; apt's sandbox user could not
            // write there.
            .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{pkg}={version}")),
    )
    .map_err(|e| no_package(pkg, e))?;
    // apt names the file pkg_version_arch.deb, with ':' as %3a.
    let prefix = format!("{pkg}_{}_", version.replace(':', "%3a"));
    let deb = std::fs::read_dir(&dl)
        .map_err(io_err(format!("reading {}", dl.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .ok_or_else(|| LabError::Missing(format!("apt-get download {pkg} left no .deb")))?;
    let _ = std::fs::remove_dir_all(&dir);
    run_cmd(Command::new("dpkg").arg("-x").arg(&deb).arg(&dir))?;
    let _ = std::fs::remove_file(&deb);
    File::create(&done).map_err(io_err(format!("creating {}", done.display())))?;
    Ok(dir)
}

/// An unpacked kernel package: its bzImage and module tree.
pub struct Kernel {
    pub version: String,
    pub bzimage: PathBuf,
    pub modules: PathBuf,
}

/// Fetches the kernel a metapackage names (`linux-image-amd64`,
/// `linux-image-cloud-amd64`).
pub fn kernel(cache: &Path, meta: &str) -> Result<Kernel> {
    let pkg = kernel_package(meta)?;
    let root = unpack(cache, &pkg)?;
    let version = pkg.trim_start_matches("linux-image-").to_string();
    let bzimage = root.join(format!("boot/vmlinuz-{version}"));
    let modules = root.join(format!("lib/modules/{version}"));
    if !bzimage.is_file() {
        return Err(LabError::Missing(format!(
            "{pkg} holds no {}",
            bzimage.display()
        )));
    }
    Ok(Kernel {
        version,
        bzimage,
        modules,
    })
}

/// Debian's statically linked busybox.
pub fn busybox(cache: &Path) -> Result<PathBuf> {
    let bb = unpack(cache, "busybox-static")?.join("bin/busybox");
    if !bb.is_file() {
        return Err(LabError::Missing(
            "busybox-static holds no bin/busybox".into(),
        ));
    }
    Ok(bb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_package_says_what_to_do() {
        let cache = std::env::temp_dir().join(format!("lab-debs-{}", std::process::id()));
        let e = unpack(&cache, "no-such-package-for-the-bhyve-lab")
            .expect_err("no such package")
            .to_string();
        assert!(e.contains("no-such-package-for-the-bhyve-lab"), "{e}");
        assert!(e.contains("apt-get update"), "{e}");
        let _ = std::fs::remove_dir_all(cache);
    }
}
