//! Where vCPU 0 starts: a kernel loaded by bhyve itself (`boot.kernel`),
//! a boot ROM's reset vector (`-l bootrom`), or the state bhyveload left
//! in the named VM.
//!
//! Every way the result is the VM's memory mapped from its file in the
//! store, the run lock held for bhyve's whole life, and an [`EntryState`].

use std::fs::File;
use std::path::Path;

use bhyve_firmware::{load_linux, EntryState, LoadError, MemLayout};
use vm_memory::GuestMemoryMmap;

use crate::bootrom::{BootRom, BootRomSpec};
use crate::memory::map_layout_file;
use crate::store::{RunLock, StoreError, VmDir, VmStore};
use crate::MachineError;

/// How the command line asks to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootSource {
    /// `-o boot.kernel=…`: load the kernel now (bhyveload's work included).
    Kernel {
        kernel: String,
        initrd: Option<String>,
        cmdline: String,
    },
    /// `-l bootrom,…`: start at the reset vector of a boot ROM.
    Rom(BootRomSpec),
    /// Run what bhyveload put in the named VM.
    Loaded,
}

/// A VM ready to run.
pub struct Booted {
    pub dir: VmDir,
    pub lock: RunLock,
    pub layout: MemLayout,
    pub mem: GuestMemoryMmap,
    pub entry: EntryState,
    /// Whether this run created the VM (rather than reusing one).
    pub created: bool,
    /// The boot ROM of a [`BootSource::Rom`] boot; the caller installs it
    /// ([`BootRom::install`] after the RAM, [`BootRom::attach_vars`] on
    /// the MMIO bus) and keeps it as long as the VM.
    pub rom: Option<BootRom>,
}

fn store_err(e: StoreError) -> MachineError {
    MachineError::new(e.to_string())
}

fn open_input(what: &str, path: &str) -> Result<File, MachineError> {
    File::open(path).map_err(|e| MachineError::new(format!("{what} {path}: {e}")))
}

/// A kernel to load: open files with the paths used in messages.
pub struct KernelInputs<'a> {
    pub kernel: (&'a mut File, &'a Path),
    pub initrd: Option<(&'a mut File, &'a Path)>,
    pub cmdline: &'a str,
}

/// Why [`load_kernel`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Load(String),
}

/// bhyveload's work, shared by `bhyveload` and bhyve's `boot.kernel`:
/// creates (or re-initializes) the named VM, maps its memory, optionally
/// wires it, and loads the kernel. On failure a VM this call created is
/// removed again; a re-initialized one stays, zeroed and without an entry.
pub fn load_kernel(
    store: &VmStore,
    name: &str,
    mem_size: u64,
    inputs: KernelInputs<'_>,
    wire: bool,
) -> Result<Booted, LoadFailure> {
    let layout = MemLayout::new(mem_size).map_err(|e| LoadFailure::Load(e.to_string()))?;
    let prepared = store.create_or_reinit(name, mem_size)?;
    let KernelInputs {
        kernel: (kernel, kernel_path),
        initrd,
        cmdline,
    } = inputs;
    let initrd_path = initrd.as_ref().map(|(_, p)| p.to_path_buf());
    let loaded = (|| {
        let file = prepared.dir.memory_file()?;
        let mem = map_layout_file(file, &layout).map_err(|e| LoadFailure::Load(e.to_string()))?;
        if wire {
            crate::memory::wire(&mem).map_err(|e| LoadFailure::Load(e.to_string()))?;
        }
        let entry =
            load_linux(&mem, &layout, kernel, initrd.map(|(f, _)| f), cmdline).map_err(|e| {
                // Name the file the error is about.
                let path = match (&e, &initrd_path) {
                    (LoadError::InitrdTooBig { .. }, Some(p)) => p.as_path(),
                    _ => kernel_path,
                };
                LoadFailure::Load(format!("{}: {e}", path.display()))
            })?;
        Ok((mem, entry))
    })();
    match loaded {
        Ok((mem, entry)) => Ok(Booted {
            dir: prepared.dir,
            lock: prepared.lock,
            layout,
            mem,
            entry,
            created: prepared.created,
            rom: None,
        }),
        Err(e) => {
            if prepared.created {
                if let Err(r) = prepared.dir.remove(prepared.lock) {
                    log::warn!("removing the half-created VM {name}: {r}");
                }
            }
            Err(e)
        }
    }
}

/// Prepares the VM `name` of `mem_size` bytes for `source`.
pub fn boot(
    store: &VmStore,
    name: &str,
    mem_size: u64,
    source: &BootSource,
) -> Result<Booted, MachineError> {
    let layout = MemLayout::new(mem_size).map_err(|e| MachineError::new(e.to_string()))?;
    match source {
        BootSource::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            // Open the inputs before touching the store: a typo must not
            // wipe an existing VM.
            let mut kernel_file = open_input("kernel", kernel)?;
            let mut initrd_file = initrd
                .as_deref()
                .map(|p| open_input("initrd", p))
                .transpose()?;
            let inputs = KernelInputs {
                kernel: (&mut kernel_file, Path::new(kernel)),
                initrd: initrd_file.as_mut().zip(initrd.as_deref().map(Path::new)),
                cmdline,
            };
            load_kernel(store, name, mem_size, inputs, false)
                .map_err(|e| MachineError::new(e.to_string()))
        }
        BootSource::Loaded => {
            let dir = match store.open(name) {
                Ok(d) => d,
                Err(StoreError::NotFound(_)) => {
                    return Err(MachineError::new("virtual machine cannot be booted".into()))
                }
                Err(e) => return Err(store_err(e)),
            };
            let lock = dir.lock_running().map_err(|e| match e {
                StoreError::AlreadyRunning(n) => {
                    MachineError::new(format!("virtual machine {n} is already running"))
                }
                e => store_err(e),
            })?;
            let loaded = dir.mem_size().map_err(store_err)?;
            if loaded != mem_size {
                return Err(MachineError::new(format!(
                    "memory size {} does not match the {} bhyveload set up for {name} (use the same -m)",
                    human(mem_size),
                    human(loaded)
                )));
            }
            let entry = dir.entry().map_err(store_err)?.ok_or_else(|| {
                MachineError::new(format!(
                    "virtual machine cannot be booted: nothing is loaded in {name} (run bhyveload first)"
                ))
            })?;
            let file = dir.memory_file().map_err(store_err)?;
            let mem =
                map_layout_file(file, &layout).map_err(|e| MachineError::new(e.to_string()))?;
            // Consumed: a reboot needs a fresh bhyveload, as on FreeBSD.
            dir.clear_entry().map_err(store_err)?;
            Ok(Booted {
                dir,
                lock,
                layout,
                mem,
                entry,
                created: false,
                rom: None,
            })
        }
        BootSource::Rom(spec) => boot_rom(store, name, &layout, spec),
    }
}

/// A ROM boot: like bhyve's, a fresh VM each time (an existing one is
/// re-initialized, memory zeroed) with vCPU 0 at the reset vector.
fn boot_rom(
    store: &VmStore,
    name: &str,
    layout: &MemLayout,
    spec: &BootRomSpec,
) -> Result<Booted, MachineError> {
    // Check the ROM before touching the store: a typo must not wipe a VM.
    let rom = BootRom::load(spec).map_err(|e| MachineError::new(e.to_string()))?;
    let prepared = store
        .create_or_reinit(name, layout.size())
        .map_err(store_err)?;
    let mem = prepared
        .dir
        .memory_file()
        .map_err(store_err)
        .and_then(|f| map_layout_file(f, layout).map_err(|e| MachineError::new(e.to_string())));
    match mem {
        Ok(mem) => Ok(Booted {
            dir: prepared.dir,
            lock: prepared.lock,
            layout: *layout,
            mem,
            entry: EntryState::reset(),
            created: prepared.created,
            rom: Some(rom),
        }),
        Err(e) => {
            if prepared.created {
                if let Err(r) = prepared.dir.remove(prepared.lock) {
                    log::warn!("removing the half-created VM {name}: {r}");
                }
            }
            Err(e)
        }
    }
}

/// A size in the unit bhyve's users type (`512M`, `2G`).
fn human(bytes: u64) -> String {
    const M: u64 = 1 << 20;
    if bytes.is_multiple_of(1 << 30) {
        format!("{}G", bytes >> 30)
    } else if bytes.is_multiple_of(M) {
        format!("{}M", bytes / M)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("bhyve-boot-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn loaded_needs_a_loaded_vm() {
        let root = scratch("loaded");
        let store = VmStore::at(&root);
        let e = boot(&store, "vm0", 16 << 20, &BootSource::Loaded)
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "virtual machine cannot be booted");
        let p = store.create_or_reinit("vm0", 16 << 20).unwrap();
        drop(p);
        let e = boot(&store, "vm0", 32 << 20, &BootSource::Loaded)
            .err()
            .unwrap();
        assert!(e.to_string().contains("does not match the 16M"), "{e}");
        let e = boot(&store, "vm0", 16 << 20, &BootSource::Loaded)
            .err()
            .unwrap();
        assert!(e.to_string().contains("run bhyveload first"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn bad_kernel_leaves_no_vm() {
        let root = scratch("kernel");
        let store = VmStore::at(&root);
        let src = |k: &str| BootSource::Kernel {
            kernel: k.into(),
            initrd: None,
            cmdline: String::new(),
        };
        let e = boot(&store, "vm1", 16 << 20, &src("/nonexistent/kernel"))
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with("kernel /nonexistent/kernel: "),
            "{e}"
        );
        let junk = root.join("junk");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(&junk, b"not a kernel at all").unwrap();
        let e = boot(&store, "vm1", 16 << 20, &src(junk.to_str().unwrap()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a Linux kernel"), "{e}");
        assert!(store.open("vm1").is_err());
        assert_eq!(human(3 << 30), "3G");
        let _ = std::fs::remove_dir_all(&root);
    }
}
