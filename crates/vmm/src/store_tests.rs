//! Unit tests of the named-VM store (kept apart to keep store.rs short).
use super::*;
use bhyve_firmware::EntryMode;

pub(crate) fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("bhyve-store-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    p
}

fn entry() -> EntryState {
    EntryState {
        mode: EntryMode::Long64,
        rip: 0x100200,
        rsp: 0x8ff0,
        rbx: 0,
        rsi: 0x7000,
        cr3: 0x9000,
        gdt_base: 0x500,
        gdt_limit: 0x1f,
    }
}

#[test]
fn names() {
    for ok in ["vm1", "a", "my-vm_2.test", "X"] {
        assert!(validate_name(ok).is_ok(), "{ok}");
    }
    let long = "a".repeat(MAX_NAME_LEN + 1);
    for bad in [
        "", ".", "..", ".hidden", "a/b", "../x", "sp ace", "ü", &long,
    ] {
        assert!(validate_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn lifecycle() {
    let root = scratch("life");
    let store = VmStore::at(&root);
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(store.open("vm1"), Err(StoreError::NotFound(_))));

    let p = store.create_or_reinit("vm1", 1 << 20).unwrap();
    assert!(p.created);
    assert!(p.dir.is_running(), "loader holds the lock");
    assert_eq!(p.dir.mem_size().unwrap(), 1 << 20);
    assert_eq!(p.dir.entry().unwrap(), None);
    p.dir.save_entry(&entry()).unwrap();
    drop(p.lock);

    let d = store.open("vm1").unwrap();
    assert!(!d.is_running());
    assert_eq!(d.entry().unwrap(), Some(entry()));
    assert_eq!(
        store.list().unwrap(),
        vec![VmInfo {
            name: "vm1".into(),
            running: false
        }]
    );

    // A running VM refuses reinit and destroy.
    let run = d.lock_running().unwrap();
    assert!(d.is_running());
    assert!(matches!(
        store.create_or_reinit("vm1", 1 << 20),
        Err(StoreError::AlreadyRunning(_))
    ));
    assert!(matches!(
        store.destroy("vm1"),
        Err(StoreError::AlreadyRunning(_))
    ));
    assert!(store.list().unwrap()[0].running);
    d.clear_entry().unwrap();
    assert_eq!(d.entry().unwrap(), None);
    drop(run);

    // Reuse zeroes memory and re-sizes it.
    fs::write(d.memory_path(), vec![0xaau8; 1 << 20]).unwrap();
    d.save_entry(&entry()).unwrap();
    let p = store.create_or_reinit("vm1", 2 << 20).unwrap();
    assert!(!p.created);
    assert_eq!(p.dir.mem_size().unwrap(), 2 << 20);
    assert_eq!(p.dir.entry().unwrap(), None);
    let mem = fs::read(p.dir.memory_path()).unwrap();
    assert!(mem.iter().all(|&b| b == 0));
    drop(p);

    store.destroy("vm1").unwrap();
    assert!(matches!(store.open("vm1"), Err(StoreError::NotFound(_))));
    assert!(matches!(store.destroy("vm1"), Err(StoreError::NotFound(_))));
    // No leftovers (hidden work directories included).
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn failed_new_vm_leaves_nothing() {
    let root = scratch("fail");
    let store = VmStore::at(&root);
    assert!(matches!(
        store.create_or_reinit("vm1", 1000),
        Err(StoreError::BadSize(1000))
    ));
    assert!(matches!(
        store.create_or_reinit("a/b", 4096),
        Err(StoreError::BadName(_))
    ));
    let p = store.create_or_reinit("vm1", 4096).unwrap();
    p.dir.remove(p.lock).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn corrupt_state_is_an_error() {
    let root = scratch("corrupt");
    let store = VmStore::at(&root);
    let p = store.create_or_reinit("vm1", 8192).unwrap();
    drop(p.lock);
    let d = p.dir;
    fs::write(d.path().join(VM_FILE), "memory.size=8192\nmode=real16\n").unwrap();
    assert!(matches!(d.entry(), Err(StoreError::Corrupt { .. })));
    fs::write(d.path().join(VM_FILE), "memory.size=4096\n").unwrap();
    assert!(matches!(d.mem_size(), Err(StoreError::Corrupt { .. })));
    fs::write(d.path().join(VM_FILE), "memory.size=lots\n").unwrap();
    assert!(matches!(d.mem_size(), Err(StoreError::Corrupt { .. })));
    store.destroy("vm1").unwrap();
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn lock_of_a_replaced_directory_is_refused() {
    let root = scratch("relock");
    let store = VmStore::at(&root);
    drop(store.create_or_reinit("vm1", 4096).unwrap());
    let d = store.open("vm1").unwrap();
    // Opened, then the VM is destroyed before flock: the lock is moot.
    let f = d.open_lock_file().unwrap();
    store.destroy("vm1").unwrap();
    assert!(matches!(d.lock_opened(f), Err(StoreError::NotFound(_))));
    // ... or destroyed and created anew under the same name.
    drop(store.create_or_reinit("vm1", 4096).unwrap());
    let f = d.open_lock_file().unwrap();
    store.destroy("vm1").unwrap();
    drop(store.create_or_reinit("vm1", 4096).unwrap());
    assert!(matches!(d.lock_opened(f), Err(StoreError::NotFound(_))));
    assert!(d.lock_running().is_ok());
    store.destroy("vm1").unwrap();
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn untrusted_run_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = scratch("trust");
    let store = VmStore::at(&root);
    drop(store.create_or_reinit("vm1", 4096).unwrap());
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    let denied = |r: Result<()>| {
        assert!(
            matches!(&r, Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied),
            "{r:?}"
        )
    };
    denied(store.open("vm1").map(drop));
    denied(store.list().map(drop));
    denied(store.destroy("vm1"));
    denied(store.create_or_reinit("vm2", 4096).map(drop));
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    // Owned by another user (only root can arrange that).
    if getuid() == 0 {
        std::os::unix::fs::chown(&root, Some(1), None).unwrap();
        let r = store.open("vm1").map(drop);
        std::os::unix::fs::chown(&root, Some(0), None).unwrap();
        denied(r);
    }
    store.destroy("vm1").unwrap();
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn symlinks_and_oversized_vm_files_are_refused() {
    let root = scratch("links");
    let store = VmStore::at(&root);
    let p = store.create_or_reinit("vm1", 4096).unwrap();
    drop(p.lock);
    let d = p.dir;
    let target = root.join("elsewhere");
    fs::write(&target, "memory.size=4096\n").unwrap();
    // A symlinked vm file does not count as a VM, nor is it read.
    fs::remove_file(d.path().join(VM_FILE)).unwrap();
    std::os::unix::fs::symlink(&target, d.path().join(VM_FILE)).unwrap();
    assert!(matches!(store.open("vm1"), Err(StoreError::NotFound(_))));
    assert!(d.mem_size().is_err());
    // Writing replaces the symlink, never writes through it.
    fs::remove_file(d.path().join(VM_FILE)).unwrap();
    fs::write(d.path().join(VM_FILE), "memory.size=4096\n").unwrap();
    std::os::unix::fs::symlink(&target, d.path().join(".vm.tmp")).unwrap();
    d.save_entry(&entry()).unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap(), "memory.size=4096\n");
    assert_eq!(d.entry().unwrap(), Some(entry()));
    // Symlinked memory and lock files are refused.
    fs::remove_file(d.memory_path()).unwrap();
    std::os::unix::fs::symlink(&target, d.memory_path()).unwrap();
    assert!(d.memory_file().is_err());
    fs::remove_file(d.memory_path()).unwrap();
    fs::remove_file(d.path().join(LOCK_FILE)).unwrap();
    std::os::unix::fs::symlink(&target, d.path().join(LOCK_FILE)).unwrap();
    assert!(d.lock_running().is_err());
    fs::remove_file(d.path().join(LOCK_FILE)).unwrap();
    // Oversized or non-regular vm files are corrupt state.
    fs::write(d.path().join(VM_FILE), vec![b'#'; 5000]).unwrap();
    assert!(matches!(d.entry(), Err(StoreError::Corrupt { .. })));
    fs::remove_file(d.path().join(VM_FILE)).unwrap();
    fs::create_dir(d.path().join(VM_FILE)).unwrap();
    assert!(matches!(d.read_vm_file(), Err(StoreError::Corrupt { .. })));
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn stale_work_directories_are_cleaned() {
    let root = scratch("stale");
    let store = VmStore::at(&root);
    fs::DirBuilder::new().mode(0o700).create(&root).unwrap();
    let me = std::process::id();
    // PIDs above the kernel's maximum (2^22) never exist.
    let stale = [
        format!(".vm1.new-{me}"),
        ".vm1.new-999999999".to_string(),
        ".vm1.gone-999999999".to_string(),
    ];
    let keep = [
        // init (PID 1) is alive: its work directory stays.
        ".vm1.new-1".to_string(),
        ".vm10.new-999999999".to_string(),
    ];
    for d in stale.iter().chain(&keep) {
        fs::create_dir(root.join(d)).unwrap();
        fs::write(root.join(d).join("memory"), b"x").unwrap();
    }
    let p = store.create_or_reinit("vm1", 4096).unwrap();
    for d in &stale {
        assert!(!root.join(d).exists(), "{d}");
    }
    for d in &keep {
        assert!(root.join(d).exists(), "{d}");
    }
    p.dir.remove(p.lock).unwrap();
    fs::remove_dir_all(&root).unwrap();
}
