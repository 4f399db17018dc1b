//! Named VMs: FreeBSD's `/dev/vmm/<name>` reproduced as a directory.
//!
//! On FreeBSD a VM is a kernel object that outlives the processes using it:
//! bhyveload(8) creates it and loads the guest, bhyve(8) runs it, and
//! bhyvectl(8) destroys it. Here the VM is `<rundir>/<name>/` holding
//! `memory` (guest RAM, low part then the part above 4 GiB), `vm`
//! (`memory.size=` then the loader's [`EntryState`] lines), `lock` (flock
//! held by the running bhyve) and `ctl.sock` (its control socket).
//!
//! Directories appear and disappear atomically (built under a hidden name,
//! then renamed), so a failed operation never leaves a half-made VM.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bhyve_firmware::EntryState;

const MEMORY_FILE: &str = "memory";
const VM_FILE: &str = "vm";
const LOCK_FILE: &str = "lock";
const CTL_SOCKET: &str = "ctl.sock";
const MEM_KEY: &str = "memory.size";

/// Longest accepted VM name. Keeps `<rundir>/<name>/ctl.sock` well within
/// the 108 bytes of a unix socket path for the usual run directories.
pub const MAX_NAME_LEN: usize = 48;

/// Guest memory is mapped and handed to KVM in whole pages.
const PAGE_SIZE: u64 = 4096;

/// A `vm` file holds a handful of short lines; anything bigger is not ours.
const MAX_VM_FILE: u64 = 4096;

/// Opening files of the store never follows a symlink planted in a VM dir.
fn open_nofollow() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW);
    o
}

fn getuid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Whether process `pid` exists (EPERM: it does, owned by someone else).
fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid VM name '{0}': use letters, digits, '.', '_' and '-' (not first '.'), at most {MAX_NAME_LEN} characters")]
    BadName(String),
    #[error("VM:{0} is not created")]
    NotFound(String),
    #[error("VM {0} is running")]
    AlreadyRunning(String),
    #[error("invalid memory size {0}: must be a non-zero multiple of 4 KiB")]
    BadSize(u64),
    #[error("VM {name}: corrupt state: {msg}")]
    Corrupt { name: String, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a VM name: it becomes a path component, so no '/', no leading
/// '.' (which also rules out `.` and `..` and our hidden work names).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_string()))
    }
}

/// One entry of [`VmStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    pub name: String,
    pub running: bool,
}

/// The directory holding all named VMs.
#[derive(Debug, Clone)]
pub struct VmStore {
    root: PathBuf,
}

impl VmStore {
    /// `$BHYVE_RUNDIR`, else `/run/bhyve` as root, else
    /// `$XDG_RUNTIME_DIR/bhyve`, else `/tmp/bhyve-$UID`.
    pub fn from_env() -> Self {
        let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let uid = getuid();
        let root = if let Some(dir) = nonempty("BHYVE_RUNDIR") {
            PathBuf::from(dir)
        } else if uid == 0 {
            PathBuf::from("/run/bhyve")
        } else if let Some(xdg) = nonempty("XDG_RUNTIME_DIR") {
            Path::new(&xdg).join("bhyve")
        } else {
            PathBuf::from(format!("/tmp/bhyve-{uid}"))
        };
        VmStore { root }
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        VmStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the run directory (0700) if needed, then checks it.
    fn ensure_root(&self) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io_err(&self.root))?;
        if self.check_root()? {
            Ok(())
        } else {
            Err(io_err(&self.root)(io::ErrorKind::NotFound.into()))
        }
    }

    /// Whether the run directory exists; if it does it must be trustworthy:
    /// a directory owned by us and writable by nobody else (in a shared
    /// /tmp someone else could have planted it, or could swap our files).
    fn check_root(&self) -> Result<bool> {
        let md = match fs::metadata(&self.root) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&self.root)(e)),
        };
        let refuse = |why: &str| {
            Err(io_err(&self.root)(io::Error::new(
                io::ErrorKind::PermissionDenied,
                why.to_string(),
            )))
        };
        if !md.is_dir() {
            return refuse("not a directory");
        }
        if md.uid() != getuid() {
            return refuse("run directory owned by another user");
        }
        if md.mode() & 0o022 != 0 {
            return refuse("run directory writable by group or others");
        }
        Ok(true)
    }

    /// Existing VMs, sorted by name. A missing run directory means none.
    pub fn list(&self) -> Result<Vec<VmInfo>> {
        if !self.check_root()? {
            return Ok(Vec::new());
        }
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.root)(e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io_err(&self.root))?;
            let Some(name) = ent.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let is_vm = fs::symlink_metadata(ent.path().join(VM_FILE)).is_ok_and(|m| m.is_file());
            if validate_name(&name).is_err() || !is_vm {
                continue;
            }
            let running = VmDir::at(&name, ent.path()).is_running();
            out.push(VmInfo { name, running });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn vm_path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// An existing VM.
    pub fn open(&self, name: &str) -> Result<VmDir> {
        validate_name(name)?;
        if !self.check_root()? {
            return Err(StoreError::NotFound(name.to_string()));
        }
        let path = self.vm_path(name);
        if !fs::symlink_metadata(path.join(VM_FILE)).is_ok_and(|m| m.is_file()) {
            return Err(StoreError::NotFound(name.to_string()));
        }
        Ok(VmDir::at(name, path))
    }

    /// bhyveload's view: a new VM of `mem_size` bytes, or an existing one
    /// that is not running re-initialized (memory zeroed and re-sized,
    /// entry state dropped), as FreeBSD's vm_reinit + vm_setup_memory do.
    /// The returned lock keeps bhyve out while the loader works.
    pub fn create_or_reinit(&self, name: &str, mem_size: u64) -> Result<Prepared> {
        validate_name(name)?;
        if mem_size == 0 || mem_size & (PAGE_SIZE - 1) != 0 {
            return Err(StoreError::BadSize(mem_size));
        }
        self.ensure_root()?;
        match self.open(name) {
            Ok(dir) => {
                let lock = dir.lock_running()?;
                dir.reinit(mem_size)?;
                Ok(Prepared {
                    dir,
                    lock,
                    created: false,
                })
            }
            Err(StoreError::NotFound(_)) => self.create(name, mem_size),
            Err(e) => Err(e),
        }
    }

    /// Removes hidden work directories of `name` (`.{name}.new-PID`,
    /// `.{name}.gone-PID`) left by processes that died mid-operation.
    fn clean_stale(&self, name: &str) {
        let Ok(rd) = fs::read_dir(&self.root) else {
            return;
        };
        let me = std::process::id() as i32;
        for ent in rd.flatten() {
            let file_name = ent.file_name();
            let Some(rest) = file_name
                .to_str()
                .and_then(|f| f.strip_prefix('.')?.strip_prefix(name))
            else {
                continue;
            };
            let pid = rest
                .strip_prefix(".new-")
                .or_else(|| rest.strip_prefix(".gone-"))
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<i32>().ok());
            match pid {
                // Our own: a leftover of a reused PID (we are not using it).
                Some(pid) if pid == me || !pid_alive(pid) => {
                    log::info!("removing stale {}", ent.path().display());
                    let _ = fs::remove_dir_all(ent.path());
                }
                _ => {}
            }
        }
    }

    fn create(&self, name: &str, mem_size: u64) -> Result<Prepared> {
        self.clean_stale(name);
        let tmp = self
            .root
            .join(format!(".{name}.new-{}", std::process::id()));
        let build = || -> Result<(VmDir, RunLock)> {
            let _ = fs::remove_dir_all(&tmp);
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&tmp)
                .map_err(io_err(&tmp))?;
            let staged = VmDir::at(name, tmp.clone());
            // flock follows the open file, so the lock survives the rename.
            let lock = staged.lock_running()?;
            staged.reinit(mem_size)?;
            Ok((staged, lock))
        };
        let (_, lock) = match build() {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let path = self.vm_path(name);
        // rename(2) onto an existing non-empty directory fails, so a racing
        // bhyveload that created the same name first wins cleanly.
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_err(&path)(e));
        }
        Ok(Prepared {
            dir: VmDir::at(name, path),
            lock,
            created: true,
        })
    }

    /// Removes a VM that is not running.
    pub fn destroy(&self, name: &str) -> Result<()> {
        let dir = self.open(name)?;
        let lock = dir.lock_running()?;
        dir.remove(lock)
    }
}

/// Result of [`VmStore::create_or_reinit`].
#[derive(Debug)]
pub struct Prepared {
    pub dir: VmDir,
    /// Held until the loader is done; dropping it lets bhyve run the VM.
    pub lock: RunLock,
    /// False when an existing VM was re-initialized.
    pub created: bool,
}

/// The run lock of a VM: an exclusive flock on its `lock` file, released
/// when dropped (or when the process dies, however it dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// One named VM.
#[derive(Debug, Clone)]
pub struct VmDir {
    name: String,
    path: PathBuf,
}

impl VmDir {
    fn at(name: &str, path: PathBuf) -> Self {
        VmDir {
            name: name.to_string(),
            path,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn memory_path(&self) -> PathBuf {
        self.path.join(MEMORY_FILE)
    }

    pub fn ctl_socket_path(&self) -> PathBuf {
        self.path.join(CTL_SOCKET)
    }

    fn open_lock_file(&self) -> Result<File> {
        let p = self.path.join(LOCK_FILE);
        open_nofollow()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&p)
            .map_err(io_err(&p))
    }

    /// Takes the run lock: held by bhyve for its whole life, and briefly by
    /// bhyveload and destroy. Another holder → [`StoreError::AlreadyRunning`].
    pub fn lock_running(&self) -> Result<RunLock> {
        let file = self.open_lock_file()?;
        self.lock_opened(file)
    }

    fn lock_opened(&self, file: File) -> Result<RunLock> {
        // `is_running` probes hold the lock for microseconds; a few retries
        // keep such a probe from being mistaken for a running bhyve.
        for attempt in 0..20 {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return self.check_lock_current(file);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io_err(&self.path.join(LOCK_FILE))(e));
            }
            if attempt < 19 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Err(StoreError::AlreadyRunning(self.name.clone()))
    }

    /// The lock we got may belong to a VM directory that was destroyed (or
    /// destroyed and re-created) while we waited: then it guards nothing.
    fn check_lock_current(&self, file: File) -> Result<RunLock> {
        let p = self.path.join(LOCK_FILE);
        let held = file.metadata().map_err(io_err(&p))?;
        match fs::symlink_metadata(&p) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                Ok(RunLock { _file: file })
            }
            Ok(_) => Err(StoreError::NotFound(self.name.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(self.name.clone()))
            }
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Whether some process holds the run lock (a running bhyve, or a
    /// loader at work).
    pub fn is_running(&self) -> bool {
        let Ok(file) = open_nofollow().read(true).open(self.path.join(LOCK_FILE)) else {
            return false;
        };
        // SAFETY: flock on a descriptor we own; closing it drops the lock.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
    }

    fn read_vm_file(&self) -> Result<String> {
        let p = self.path.join(VM_FILE);
        // O_NONBLOCK: a FIFO planted as `vm` must not hang the open.
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&p)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::NotFound(self.name.clone()),
                _ => io_err(&p)(e),
            })?;
        let md = f.metadata().map_err(io_err(&p))?;
        if !md.is_file() {
            return Err(self.corrupt("vm file is not a regular file"));
        }
        if md.len() > MAX_VM_FILE {
            return Err(self.corrupt(format!("vm file is larger than {MAX_VM_FILE} bytes")));
        }
        let mut text = String::new();
        f.take(MAX_VM_FILE + 1)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => self.corrupt("vm file is not UTF-8"),
                _ => io_err(&p)(e),
            })?;
        if text.len() as u64 > MAX_VM_FILE {
            return Err(self.corrupt(format!("vm file is larger than {MAX_VM_FILE} bytes")));
        }
        Ok(text)
    }

    fn corrupt(&self, msg: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            name: self.name.clone(),
            msg: msg.into(),
        }
    }

    /// Replaces `vm` atomically (write a temporary, then rename).
    fn write_vm_file(&self, text: &str) -> Result<()> {
        let tmp = self.path.join(".vm.tmp");
        // A stale temporary (a writer died) or anything planted there goes;
        // create_new + O_NOFOLLOW then guarantee a fresh file of our own.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp)(e)),
        }
        let mut f = open_nofollow()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        let dst = self.path.join(VM_FILE);
        fs::rename(&tmp, &dst).map_err(io_err(&dst))
    }

    /// Guest memory size in bytes, checked against the memory file.
    pub fn mem_size(&self) -> Result<u64> {
        let text = self.read_vm_file()?;
        let size = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(MEM_KEY)?.strip_prefix('='))
            .ok_or_else(|| self.corrupt("no memory.size"))?
            .trim()
            .parse::<u64>()
            .map_err(|_| self.corrupt("bad memory.size"))?;
        if size == 0 || size & (PAGE_SIZE - 1) != 0 {
            return Err(self.corrupt(format!("bad memory.size {size}")));
        }
        let mp = self.memory_path();
        let flen = fs::symlink_metadata(&mp).map_err(io_err(&mp))?.len();
        if flen != size {
            return Err(self.corrupt(format!(
                "memory file is {flen} bytes, memory.size is {size}"
            )));
        }
        Ok(size)
    }

    /// Opens the guest memory file read-write (for MAP_SHARED mapping).
    pub fn memory_file(&self) -> Result<File> {
        let p = self.memory_path();
        open_nofollow()
            .read(true)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))
    }

    /// The entry state a loader left, if any is still unconsumed.
    pub fn entry(&self) -> Result<Option<EntryState>> {
        let text = self.read_vm_file()?;
        let rest: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with(MEM_KEY))
            .map(|l| format!("{l}\n"))
            .collect();
        if rest.trim().is_empty() {
            return Ok(None);
        }
        EntryState::from_kv(&rest)
            .map(Some)
            .map_err(|e| self.corrupt(e.to_string()))
    }

    pub fn save_entry(&self, entry: &EntryState) -> Result<()> {
        let size = self.mem_size()?;
        self.write_vm_file(&format!("{MEM_KEY}={size}\n{}", entry.to_kv()))
    }

    /// Drops the entry state: called once a run consumed it, so a rebooted
    /// VM needs a fresh bhyveload, as on FreeBSD.
    pub fn clear_entry(&self) -> Result<()> {
        let size = self.mem_size()?;
        self.write_vm_file(&format!("{MEM_KEY}={size}\n"))
    }

    /// Zeroes and re-sizes the memory and forgets the entry state. The
    /// caller holds the run lock.
    fn reinit(&self, mem_size: u64) -> Result<()> {
        let mp = self.memory_path();
        let f = open_nofollow()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&mp)
            .map_err(io_err(&mp))?;
        // Truncating to 0 first frees the old pages; the re-grown file is
        // sparse and reads as zeros, like fresh guest RAM.
        f.set_len(0).map_err(io_err(&mp))?;
        f.set_len(mem_size).map_err(io_err(&mp))?;
        self.write_vm_file(&format!("{MEM_KEY}={mem_size}\n"))
    }

    /// Removes the VM while the caller holds its run lock (bhyveload undoing
    /// a failed load of a new VM, or destroy). The directory first moves to
    /// a hidden name so the VM disappears atomically.
    pub fn remove(self, lock: RunLock) -> Result<()> {
        let parent = self.path.parent().unwrap_or(Path::new("."));
        let grave = parent.join(format!(".{}.gone-{}", self.name, std::process::id()));
        // Left by an earlier process with our PID: rename cannot replace it.
        let _ = fs::remove_dir_all(&grave);
        fs::rename(&self.path, &grave).map_err(io_err(&self.path))?;
        drop(lock);
        fs::remove_dir_all(&grave).map_err(io_err(&grave))
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
