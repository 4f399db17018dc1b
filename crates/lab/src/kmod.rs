//! Which kernel modules to insert, and in what order.
//!
//! Debian's kernel packages ship no `modules.dep` (depmod writes it at
//! install time), so dependencies come from each module's own `.modinfo`
//! section: the `depends=a,b` string every module carries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::{io_err, LabError, Result};

/// The `.ko` files under a kernel's `lib/modules/<version>` tree, by name
/// (with `-` and `_` treated alike, as modprobe does).
pub struct ModuleTree {
    by_name: BTreeMap<String, PathBuf>,
}

fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

impl ModuleTree {
    pub fn scan(root: &Path) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let rd =
                std::fs::read_dir(&dir).map_err(io_err(format!("reading {}", dir.display())))?;
            for e in rd {
                let e = e.map_err(io_err(format!("reading {}", dir.display())))?;
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                    if let Some(stem) = n.strip_suffix(".ko") {
                        by_name.insert(canonical(stem), p);
                    }
                }
            }
        }
        if by_name.is_empty() {
            return Err(LabError::Missing(format!(
                "no kernel modules under {}",
                root.display()
            )));
        }
        Ok(Self { by_name })
    }

    pub fn path(&self, name: &str) -> Option<&Path> {
        self.by_name.get(&canonical(name)).map(PathBuf::as_path)
    }

    /// `wanted` and everything they depend on, each after its
    /// dependencies: the order for `insmod`.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for w in wanted {
            self.visit(&canonical(w), &mut done, &mut BTreeSet::new(), &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut BTreeSet<String>,
        path: &mut BTreeSet<String>,
        order: &mut Vec<(String, PathBuf)>,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if !path.insert(name.to_string()) {
            return Err(LabError::Format(format!(
                "module dependency cycle at {name}"
            )));
        }
        let file = self
            .by_name
            .get(name)
            .ok_or_else(|| LabError::Missing(format!("kernel module {name} not found")))?;
        let bytes = std::fs::read(file).map_err(io_err(format!("reading {}", file.display())))?;
        for dep in depends(&bytes) {
            self.visit(&canonical(&dep), done, path, order)?;
        }
        path.remove(name);
        done.insert(name.to_string());
        order.push((name.to_string(), file.clone()));
        Ok(())
    }
}

/// The module names in a `.ko`'s `depends=` modinfo string.
pub fn depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &ko[at + KEY.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(dir: &Path, rel: &str, deps: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut b = b"\x7fELF junk\0license=GPL\0depends=".to_vec();
        b.extend_from_slice(deps.as_bytes());
        b.extend_from_slice(b"\0retpoline=Y\0");
        std::fs::write(p, b).unwrap();
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let dir = std::env::temp_dir().join(format!("lab-kmod-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        module(&dir, "kernel/fs/9p/9p.ko", "9pnet,netfs,fscache");
        module(&dir, "kernel/net/9p/9pnet.ko", "");
        module(
            &dir,
            "kernel/net/9p/9pnet_virtio.ko",
            "9pnet,virtio_ring,virtio",
        );
        module(&dir, "kernel/fs/netfs/netfs.ko", "");
        module(&dir, "kernel/fs/fscache/fscache.ko", "netfs");
        module(&dir, "kernel/drivers/virtio/virtio.ko", "");
        module(&dir, "kernel/drivers/virtio/virtio_ring.ko", "virtio");
        module(&dir, "kernel/arch/x86/kvm/kvm-amd.ko", "kvm,ccp");
        module(&dir, "kernel/arch/x86/kvm/kvm.ko", "irqbypass");
        module(&dir, "kernel/virt/lib/irqbypass.ko", "");
        module(&dir, "kernel/drivers/crypto/ccp/ccp.ko", "");
        let t = ModuleTree::scan(&dir).unwrap();
        let names: Vec<_> = t
            .load_order(&["kvm-amd", "9pnet_virtio", "9p"])
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "irqbypass",
                "kvm",
                "ccp",
                "kvm_amd",
                "9pnet",
                "virtio",
                "virtio_ring",
                "9pnet_virtio",
                "netfs",
                "fscache",
                "9p"
            ]
        );
        assert!(matches!(t.load_order(&["nope"]), Err(LabError::Missing(_))));
        module(&dir, "kernel/a.ko", "b");
        module(&dir, "kernel/b.ko", "a");
        let t = ModuleTree::scan(&dir).unwrap();
        assert!(matches!(t.load_order(&["a"]), Err(LabError::Format(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
