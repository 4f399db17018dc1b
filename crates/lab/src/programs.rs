//! Dynamically linked Debian programs for L2 images (busybox has no
//! iperf3 or ethtool): the program, its ELF interpreter and every library
//! it needs (followed through the libraries' own `DT_NEEDED`), all taken
//! from the Debian packages fetched at run time, none from the host.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::cpio::Cpio;
use crate::{debs, elf, io_err, LabError, Result};

/// A program an L2 image can carry beside busybox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Program {
    /// `iperf3` (network throughput; `iperf3 -c` from L2 to a server in L1).
    Iperf3,
    /// `ethtool` (`ethtool -i eth0` names the driver bound to a NIC).
    Ethtool,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::Iperf3 => "iperf3",
            Program::Ethtool => "ethtool",
        }
    }

    /// The packages holding the program and its libraries (the package
    /// list is fixed; the libraries are found by name inside them).
    fn packages(self) -> &'static [&'static str] {
        match self {
            Program::Iperf3 => &["iperf3", "libiperf0", "libsctp1", "libssl3", "libc6"],
            Program::Ethtool => &["ethtool", "libmnl0", "libc6"],
        }
    }

    /// Where the program lies inside its package.
    fn path(self) -> &'static str {
        match self {
            Program::Iperf3 => "usr/bin/iperf3",
            Program::Ethtool => "sbin/ethtool",
        }
    }
}

/// Folders of a package's tree the dynamic loader searches.
const LIB_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64"];
/// Where the image keeps the libraries (a default path of Debian's ld.so).
const IMAGE_LIB_DIR: &str = "lib/x86_64-linux-gnu";

/// Resolves `rel` inside `root`, following symlinks (absolute ones
/// relative to `root`, as they would be in the installed system).
fn resolve(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut p = root.join(rel);
    for _ in 0..16 {
        let meta = std::fs::symlink_metadata(&p).ok()?;
        if !meta.file_type().is_symlink() {
            return meta.is_file().then_some(p);
        }
        let target = std::fs::read_link(&p).ok()?;
        p = if target.is_absolute() {
            root.join(target.strip_prefix("/").ok()?)
        } else {
            p.parent()?.join(target)
        };
    }
    None
}

/// Finds library `name` in the package trees.
fn find_lib(roots: &[PathBuf], name: &str) -> Option<PathBuf> {
    roots.iter().find_map(|r| {
        LIB_DIRS
            .iter()
            .find_map(|d| resolve(r, &Path::new(d).join(name)))
    })
}

/// Adds `program` as `bin/NAME`, its interpreter at the path it names,
/// and its libraries under `lib/x86_64-linux-gnu`.
pub fn add(cache: &Path, c: &mut Cpio, program: Program) -> Result<()> {
    let roots = program
        .packages()
        .iter()
        .map(|p| debs::unpack(cache, p))
        .collect::<Result<Vec<_>>>()?;
    let bin = resolve(&roots[0], Path::new(program.path())).ok_or_else(|| {
        LabError::Missing(format!(
            "{} holds no {}",
            program.packages()[0],
            program.path()
        ))
    })?;
    let data = std::fs::read(&bin).map_err(io_err(format!("reading {}", bin.display())))?;
    let dynamic = elf::dynamic(&data)?;
    c.file(&format!("bin/{}", program.name()), 0o755, &data);

    if let Some(interp) = &dynamic.interp {
        let name = Path::new(interp)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| LabError::Format(format!("odd interpreter {interp}")))?;
        let host = find_lib(&roots, name).ok_or_else(|| {
            LabError::Missing(format!(
                "the interpreter {interp} is in none of {:?}",
                program.packages()
            ))
        })?;
        c.host_file(interp.trim_start_matches('/'), 0o755, &host)?;
    }
    let mut todo = dynamic.needed;
    let mut done = BTreeSet::new();
    while let Some(lib) = todo.pop() {
        if !done.insert(lib.clone()) {
            continue;
        }
        let host = find_lib(&roots, &lib).ok_or_else(|| {
            LabError::Missing(format!(
                "{} needs {lib}, which is in none of {:?}",
                program.name(),
                program.packages()
            ))
        })?;
        let data = std::fs::read(&host).map_err(io_err(format!("reading {}", host.display())))?;
        todo.extend(elf::dynamic(&data)?.needed);
        c.file(&format!("{IMAGE_LIB_DIR}/{lib}"), 0o755, &data);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_package_tree() {
        let root = std::env::temp_dir().join(format!("lab-programs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let lib = root.join("lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(root.join("lib64")).unwrap();
        std::fs::write(lib.join("libx.so.1.2"), b"x").unwrap();
        std::os::unix::fs::symlink("libx.so.1.2", lib.join("libx.so.1")).unwrap();
        std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/libx.so.1", root.join("lib64/ld.so"))
            .unwrap();
        std::os::unix::fs::symlink("loop", lib.join("loop")).unwrap();
        let roots = [root.clone()];
        assert_eq!(find_lib(&roots, "libx.so.1"), Some(lib.join("libx.so.1.2")));
        assert_eq!(find_lib(&roots, "ld.so"), Some(lib.join("libx.so.1.2")));
        assert_eq!(find_lib(&roots, "loop"), None);
        assert_eq!(find_lib(&roots, "absent.so"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
