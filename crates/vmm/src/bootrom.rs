//! Boot ROMs: `-l bootrom,romfile[,varfile]` (bhyve's bootrom.c).
//!
//! Layout, as bhyve's: the ROM ends at 4 GiB and the variable store sits
//! right below it (OVMF's CODE/VARS split expects exactly that), both
//! inside the 16 MiB below 4 GiB, which stays clear of the I/O APIC,
//! HPET and local APIC. vCPU 0 starts at the reset vector 0xffff_fff0,
//! i.e. in the ROM's last 16 bytes.
//!
//! - The ROM is copied into an anonymous mapping made read-only and given
//!   to KVM as a `KVM_MEM_READONLY` slot: fetches and reads run at full
//!   speed, guest writes exit as MMIO and are dropped (firmware writing to
//!   its ROM is normal: flash probing, stray shadowing). A copy rather
//!   than a mapping of the file means a file changed on disk while the VM
//!   runs cannot fault bhyve.
//! - The variable store is MMIO with the few CFI flash commands EDK II
//!   uses to find its firmware volume writable and persistent (as
//!   bhyve's). Plain RAM would not do: EDK II probes by writing a command
//!   and reading back, concludes "behaves as RAM" and keeps variables in
//!   volatile memory. Programmed bytes are written through to the file.
//! - QEMU's PC also shows the ROM's last 128 KiB at 0xe0000–0xfffff (its
//!   "isa-bios" alias): SeaBIOS's reset vector far-jumps to f000:e05b,
//!   into that alias. We copy those bytes into guest RAM there before the
//!   MP/ACPI tables are written, so the tables win where they overlap: a
//!   UEFI ROM (bhyve's finds the tables in that area) never runs from the
//!   window, while a legacy BIOS does and then needs `-Y` (the MP table at
//!   0xf0000 would overwrite SeaBIOS's code) and no `-A`.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bhyve_devices::{Bus, BusDevice};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::kvm_vm::KvmVm;

/// The boot ROM region: 16 MiB ending at 4 GiB (bhyve's `BOOTROM_SIZE`).
pub const BOOTROM_SIZE: u64 = 16 << 20;
/// Where the ROM ends.
pub const BOOTROM_END: u64 = 1 << 32;
/// The ISA BIOS window the ROM's tail is copied to: up to 128 KiB ending
/// at 1 MiB.
pub const ISA_BIOS_END: u64 = 0x10_0000;
pub const ISA_BIOS_MAX: u64 = 128 << 10;
const PAGE_SIZE: u64 = 4096;

/// CFI basic command set, the part EDK II's flash driver uses.
const CFI_WRITE_BYTE: u8 = 0x10;
const CFI_CLEAR_STATUS: u8 = 0x50;
const CFI_READ_STATUS: u8 = 0x70;
const CFI_READ_ARRAY: u8 = 0xff;

/// `lpc.bootrom` and `lpc.bootvars`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootRomSpec {
    pub rom: String,
    pub vars: Option<String>,
}

/// Why a boot ROM cannot be used; bhyve's wording where it has one.
#[derive(Debug, thiserror::Error)]
pub enum BootRomError {
    #[error("Error opening bootrom \"{0}\": {1}")]
    Open(String, String),
    #[error("Could not fstat bootrom file \"{0}\": {1}")]
    Stat(String, String),
    #[error("Error opening bootrom variable file \"{0}\": {1}")]
    OpenVars(String, String),
    #[error("Could not fstat bootrom variable file \"{0}\": {1}")]
    StatVars(String, String),
    #[error("Invalid bootrom variable size {0}")]
    VarSize(u64),
    #[error("Invalid bootrom and variable aggregate size {0}")]
    AggregateSize(u64),
    #[error("ROM size {0} is invalid")]
    RomSize(u64),
    #[error("ROM size {0} is not a multiple of the page size")]
    RomAlign(u64),
    #[error("Incomplete read of bootrom file {0}: {1}")]
    Read(String, String),
    #[error("Incomplete read of bootrom variable file {0}: {1}")]
    ReadVars(String, String),
    #[error("bootrom: {0}")]
    Host(String),
}

/// What bhyve's messages show for an I/O error: strerror's text, without
/// Rust's " (os error N)".
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// A page-aligned, read-only copy of the ROM (KVM slots need page
/// alignment, which a `Vec` does not promise).
struct RomImage {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned, immutable after construction, and only
// unmapped in Drop.
unsafe impl Send for RomImage {}
unsafe impl Sync for RomImage {}

impl RomImage {
    /// Reads exactly `len` bytes of `file` into a fresh mapping.
    fn read(file: &mut File, len: usize) -> std::io::Result<Self> {
        // SAFETY: anonymous private mapping, no aliasing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let img = RomImage { ptr: p.cast(), len };
        // SAFETY: the mapping is `len` bytes, writable, owned by `img`.
        let buf = unsafe { std::slice::from_raw_parts_mut(img.ptr, len) };
        file.read_exact(buf)?;
        // SAFETY: same mapping; from now on nobody writes it.
        if unsafe { libc::mprotect(p, len, libc::PROT_READ) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(img)
    }

    /// A writable page-aligned copy of `data` (the variable store's
    /// array, which KVM reads through a read-only slot while we program
    /// it from the MMIO path).
    fn writable_copy(data: &[u8]) -> std::io::Result<Self> {
        let len = data.len().div_ceil(PAGE_SIZE as usize) * PAGE_SIZE as usize;
        // SAFETY: anonymous private mapping, no aliasing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(PAGE_SIZE as usize),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let img = RomImage {
            ptr: p.cast(),
            len: data.len(),
        };
        // SAFETY: the mapping holds at least `data.len()` writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), img.ptr, data.len()) };
        Ok(img)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: mapped and readable for `len` bytes while `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Only for a mapping made by [`RomImage::writable_copy`].
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: a writable mapping of `len` bytes owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for RomImage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `read`/`writable_copy` mapped
        // (whole pages: munmap rounds the length up).
        unsafe { libc::munmap(self.ptr.cast(), self.len.max(1)) };
    }
}

/// The variable store as a CFI flash: reads return the array (or a clear
/// status after a status command), a write is either a command or, right
/// after `CFI_WRITE_BYTE`, data to program.
///
/// Like QEMU's pflash, the array is also a read-only KVM slot while the
/// flash is in read-array mode ("romd"): firmware reads its variables
/// at memory speed instead of one exit per access, and only commands,
/// programming and status reads exit. The slot is removed while another
/// command is pending, so that reads reach the status logic.
pub struct CfiVarStore {
    file: File,
    path: String,
    data: RomImage,
    cmd: u8,
    write_failed: bool,
    romd: Option<Romd>,
}

/// The array's read-only KVM slot.
struct Romd {
    vm: Arc<kvm_ioctls::VmFd>,
    slot: u32,
    gpa: u64,
    mapped: bool,
}

impl CfiVarStore {
    /// Maps or unmaps the array slot to match the command state.
    fn sync_romd(&mut self) {
        let want = self.cmd == CFI_READ_ARRAY;
        let Some(r) = &mut self.romd else { return };
        if r.mapped == want {
            return;
        }
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot: r.slot,
            flags: kvm_bindings::KVM_MEM_READONLY,
            guest_phys_addr: r.gpa,
            memory_size: if want { self.data.len as u64 } else { 0 },
            userspace_addr: self.data.ptr as u64,
        };
        // SAFETY: KVM only reads the array through a read-only slot, and
        // the mapping lives as long as this store, which outlives the VM
        // (see `BootRom::install`). Size 0 deletes the slot.
        match unsafe { r.vm.set_user_memory_region(region) } {
            Ok(()) => r.mapped = want,
            Err(e) => {
                // Without the slot every access exits: slower, still right.
                log::warn!("bootrom variable store: KVM slot update failed ({e}); using MMIO only");
                if !want {
                    r.mapped = false;
                }
                self.romd = None;
            }
        }
    }

    fn program(&mut self, offset: u64, bytes: &[u8]) {
        let Some(dst) = usize::try_from(offset).ok().and_then(|o| {
            self.data
                .bytes_mut()
                .get_mut(o..o.checked_add(bytes.len())?)
        }) else {
            return;
        };
        dst.copy_from_slice(bytes);
        if let Err(e) = self.file.write_all_at(bytes, offset) {
            if !self.write_failed {
                log::warn!("bootrom variable file {}: {e}", self.path);
                self.write_failed = true;
            }
        }
    }
}

impl BusDevice for CfiVarStore {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match self.cmd {
            CFI_CLEAR_STATUS | CFI_READ_STATUS => {
                data.fill(0);
                self.cmd = CFI_READ_ARRAY;
                self.sync_romd();
            }
            _ => {
                let src = usize::try_from(offset)
                    .ok()
                    .and_then(|o| self.data.bytes().get(o..o.checked_add(data.len())?));
                match src {
                    Some(s) => data.copy_from_slice(s),
                    None => data.fill(0xff),
                }
            }
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if self.cmd == CFI_WRITE_BYTE {
            self.program(offset, data);
            self.cmd = CFI_READ_ARRAY;
        } else if let Some(&c) = data.first() {
            self.cmd = c;
        }
        self.sync_romd();
    }
}

/// A loaded boot ROM and its optional variable store.
pub struct BootRom {
    rom: RomImage,
    vars: Option<(u64, u64, Arc<Mutex<CfiVarStore>>)>,
}

impl BootRom {
    /// Opens and checks the files as bhyve does (same order, same limits).
    pub fn load(spec: &BootRomSpec) -> Result<Self, BootRomError> {
        let rom_path = &spec.rom;
        let mut rom =
            File::open(rom_path).map_err(|e| BootRomError::Open(rom_path.clone(), strerror(&e)))?;
        let meta = rom
            .metadata()
            .map_err(|e| BootRomError::Stat(rom_path.clone(), strerror(&e)))?;
        if meta.is_dir() {
            return Err(BootRomError::Open(
                rom_path.clone(),
                strerror(&std::io::Error::from_raw_os_error(libc::EISDIR)),
            ));
        }
        let rom_size = meta.len();
        let vars = match &spec.vars {
            Some(p) => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(p)
                    .map_err(|e| BootRomError::OpenVars(p.clone(), strerror(&e)))?;
                let len = f
                    .metadata()
                    .map_err(|e| BootRomError::StatVars(p.clone(), strerror(&e)))?
                    .len();
                Some((p.clone(), f, len))
            }
            None => None,
        };
        let var_size = vars.as_ref().map_or(0, |v| v.2);
        // bhyve accepts an empty varfile here and then fails to map it
        // without a word; say why instead.
        if var_size > BOOTROM_SIZE || (vars.is_some() && var_size < PAGE_SIZE) {
            return Err(BootRomError::VarSize(var_size));
        }
        let total = rom_size.saturating_add(var_size);
        if total > BOOTROM_SIZE {
            return Err(BootRomError::AggregateSize(total));
        }
        if rom_size == 0 {
            return Err(BootRomError::RomSize(rom_size));
        }
        if rom_size % PAGE_SIZE != 0 {
            return Err(BootRomError::RomAlign(rom_size));
        }
        let rom = RomImage::read(&mut rom, rom_size as usize)
            .map_err(|e| BootRomError::Read(rom_path.clone(), strerror(&e)))?;
        let vars = match vars {
            Some((path, file, len)) => {
                let mut data = vec![0u8; len as usize];
                file.read_exact_at(&mut data, 0)
                    .map_err(|e| BootRomError::ReadVars(path.clone(), strerror(&e)))?;
                let gpa = BOOTROM_END - rom_size - len;
                let data = RomImage::writable_copy(&data)
                    .map_err(|e| BootRomError::Host(format!("variable store: {e}")))?;
                let dev = CfiVarStore {
                    file,
                    path,
                    data,
                    cmd: CFI_READ_ARRAY,
                    write_failed: false,
                    romd: None,
                };
                Some((gpa, len, Arc::new(Mutex::new(dev))))
            }
            None => None,
        };
        Ok(BootRom { rom, vars })
    }

    /// Guest address and length of the ROM.
    pub fn rom_range(&self) -> (u64, u64) {
        let len = self.rom.len as u64;
        (BOOTROM_END - len, len)
    }

    /// Guest address and length of the variable store, if any.
    pub fn vars_range(&self) -> Option<(u64, u64)> {
        self.vars.as_ref().map(|(gpa, len, _)| (*gpa, *len))
    }

    pub fn rom_bytes(&self) -> &[u8] {
        self.rom.bytes()
    }

    /// Maps the ROM read-only into `vm`, in the KVM slot after `mem`'s
    /// RAM slots ([`KvmVm::map_memory`]), and fills the ISA BIOS window of
    /// `mem`. `self` must outlive `vm`.
    pub fn install(&self, vm: &KvmVm, mem: &GuestMemoryMmap) -> Result<(), BootRomError> {
        let (gpa, _) = self.rom_range();
        let slot = mem.num_regions() as u32;
        vm.map_readonly(slot, gpa, self.rom.bytes())
            .map_err(|e| BootRomError::Host(e.to_string()))?;
        if let Some((gpa, len, dev)) = &self.vars {
            // The array goes in the next slot when its size allows one.
            if len % PAGE_SIZE == 0 {
                let mut d = dev.lock().unwrap_or_else(|e| e.into_inner());
                d.romd = Some(Romd {
                    vm: vm.fd().clone(),
                    slot: slot + 1,
                    gpa: *gpa,
                    mapped: false,
                });
                d.sync_romd();
            }
        }
        self.copy_isa_bios(mem)
    }

    /// Copies the ROM's last (up to) 128 KiB to the ISA BIOS window in
    /// guest RAM, where QEMU-style BIOSes expect to run from.
    pub fn copy_isa_bios(&self, mem: &GuestMemoryMmap) -> Result<(), BootRomError> {
        let rom = self.rom.bytes();
        let n = rom.len().min(ISA_BIOS_MAX as usize);
        mem.write_slice(&rom[rom.len() - n..], GuestAddress(ISA_BIOS_END - n as u64))
            .map_err(|e| BootRomError::Host(format!("copying the ISA BIOS window: {e}")))
    }

    /// Puts the variable store on the MMIO bus.
    pub fn attach_vars(&self, mmio: &Bus) -> Result<(), BootRomError> {
        if let Some((gpa, len, dev)) = &self.vars {
            mmio.insert(*gpa, *len, dev.clone())
                .map_err(|e| BootRomError::Host(format!("variable store: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "bootrom_tests.rs"]
mod tests;
