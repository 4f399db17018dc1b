//! bhyvectl against VMs made through the store API, with a stand-in for
//! the running bhyve: the run lock held by this process and a control
//! server answering with a recording handler. (The real bhyve is covered
//! in bhyveload_workflow.rs.)

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use bhyve_vmm::control::{ControlHandler, ControlServer, Stats};
use bhyve_vmm::store::VmStore;

fn rundir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("bhyvectl-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn bhyvectl(rundir: &PathBuf, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bhyvectl"))
        .args(args)
        .env("BHYVE_RUNDIR", rundir)
        .env_remove("BHYVECTL_DESTROY_WAIT_MS")
        .output()
        .expect("run bhyvectl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[derive(Default)]
struct Fake {
    log: Mutex<Vec<String>>,
    /// Set by force_poweroff: the test's "bhyve" then exits (drops its lock).
    poweroff: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl ControlHandler for Fake {
    fn force_reset(&self) {
        self.log.lock().unwrap().push("reset".into());
    }
    fn force_poweroff(&self) {
        self.log.lock().unwrap().push("poweroff".into());
        if let Some(f) = self.poweroff.lock().unwrap().take() {
            f();
        }
    }
    fn inject_nmi(&self, vcpu: u32) -> Result<(), String> {
        if vcpu > 1 {
            return Err(format!("vcpu {vcpu} does not exist"));
        }
        self.log.lock().unwrap().push(format!("nmi {vcpu}"));
        Ok(())
    }
    fn stats(&self) -> Stats {
        vec![
            (
                0,
                vec![("vm exits io".into(), 12), ("vm exits hlt".into(), 3)],
            ),
            (
                1,
                vec![("vm exits io".into(), 4), ("vm exits hlt".into(), 0)],
            ),
        ]
    }
}

#[test]
fn usage_and_unknown_options() {
    let rd = rundir("usage");
    let o = bhyvectl(&rd, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Usage: bhyvectl --vm=<vmname>"));

    let o = bhyvectl(&rd, &["--vm=x", "--frobnicate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("bhyvectl: unrecognized option '--frobnicate'\n"));

    let o = bhyvectl(&rd, &["--vm=x", "--cpu=abc", "--get-stats"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid vcpu 'abc'"));

    let o = bhyvectl(&rd, &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    for opt in [
        "--destroy",
        "--get-stats",
        "--force-reset",
        "--force-poweroff",
        "--inject-nmi",
        "--list",
        "--cpu",
    ] {
        assert!(stdout(&o).contains(opt), "{opt} documented");
    }
}

#[test]
fn missing_vm_and_bad_names() {
    let rd = rundir("missing");
    for args in [
        &["--vm=nope", "--destroy"][..],
        &["--vm", "nope", "--get-stats"],
        &["--vm=nope"],
    ] {
        let o = bhyvectl(&rd, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&o), "bhyvectl: VM:nope is not created\n");
    }
    let o = bhyvectl(&rd, &["--vm=../etc", "--destroy"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid VM name '../etc'"));
    // Listing a run directory that does not exist yet lists nothing.
    let o = bhyvectl(&rd, &["--list"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "");
}

#[test]
fn list_and_destroy_stopped_vm() {
    let rd = rundir("list");
    let store = VmStore::at(&rd);
    drop(store.create_or_reinit("beta", 1 << 20).unwrap());
    drop(store.create_or_reinit("alpha", 1 << 20).unwrap());

    let o = bhyvectl(&rd, &["--list"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "alpha\tstopped\nbeta\tstopped\n");

    // Runtime operations need a running VM.
    for op in [
        "--get-stats",
        "--force-reset",
        "--force-poweroff",
        "--inject-nmi",
    ] {
        let o = bhyvectl(&rd, &["--vm=alpha", op]);
        assert_eq!(o.status.code(), Some(1), "{op}");
        assert_eq!(stderr(&o), "bhyvectl: VM alpha is not running\n", "{op}");
    }

    let o = bhyvectl(&rd, &["--vm=alpha", "--destroy"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&bhyvectl(&rd, &["--list"])), "beta\tstopped\n");
    assert!(!rd.join("alpha").exists());
    store.destroy("beta").unwrap();
    std::fs::remove_dir_all(&rd).unwrap();
}

#[test]
fn runtime_operations_reach_the_running_vm() {
    let rd = rundir("running");
    let store = VmStore::at(&rd);
    let dir = store.create_or_reinit("vm1", 1 << 20).unwrap().dir;
    let lock = dir.lock_running().unwrap();
    let fake = Arc::new(Fake::default());
    let server = ControlServer::start(&dir.ctl_socket_path(), fake.clone()).unwrap();

    assert_eq!(stdout(&bhyvectl(&rd, &["--list"])), "vm1\trunning\n");

    let o = bhyvectl(&rd, &["--vm=vm1", "--get-stats"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "vcpu0 stats:\n{:<40}\t12\n{:<40}\t3\n",
            "vm exits io", "vm exits hlt"
        )
    );
    let o = bhyvectl(&rd, &["--vm=vm1", "--get-stats", "--cpu=1"]);
    assert!(stdout(&o).starts_with("vcpu1 stats:\n"));
    let o = bhyvectl(&rd, &["--vm=vm1", "--get-stats", "--cpu=5"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "bhyvectl: VM vm1: no vcpu 5\n");

    assert_eq!(
        bhyvectl(&rd, &["--vm=vm1", "--inject-nmi"]).status.code(),
        Some(0)
    );
    assert_eq!(
        bhyvectl(&rd, &["--vm=vm1", "--inject-nmi", "--cpu", "1"])
            .status
            .code(),
        Some(0)
    );
    let o = bhyvectl(&rd, &["--vm=vm1", "--inject-nmi", "--cpu=9"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "bhyvectl: VM vm1: vcpu 9 does not exist\n");
    assert_eq!(
        bhyvectl(&rd, &["--vm=vm1", "--force-reset"]).status.code(),
        Some(0)
    );
    assert_eq!(*fake.log.lock().unwrap(), ["nmi 0", "nmi 1", "reset"]);

    // Destroying a running VM powers it off, waits for it to exit, then
    // removes it. Our "bhyve" exits when told to power off.
    let exit = Arc::new(Mutex::new(Some((lock, server))));
    let exit2 = Arc::clone(&exit);
    *fake.poweroff.lock().unwrap() = Some(Box::new(move || {
        // Exit from another thread: the server thread cannot join itself.
        let state = exit2.lock().unwrap().take();
        std::thread::spawn(move || drop(state));
    }));
    let o = bhyvectl(&rd, &["--vm=vm1", "--destroy"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(fake.log.lock().unwrap().last().unwrap(), "poweroff");
    assert_eq!(stdout(&bhyvectl(&rd, &["--list"])), "");
    std::fs::remove_dir_all(&rd).unwrap();
}

#[test]
fn destroy_refused_while_vm_stays_running() {
    let rd = rundir("stuck");
    let store = VmStore::at(&rd);
    let prep = store.create_or_reinit("vm1", 1 << 20).unwrap();
    // A loader at work: the lock is held, nobody answers the socket.
    let o = bhyvectl(&rd, &["--vm=vm1", "--force-poweroff"]);
    assert_eq!(stderr(&o), "bhyvectl: VM vm1 is not running\n");
    drop(prep.lock);
    let lock = prep.dir.lock_running().unwrap();
    let start = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_bhyvectl"))
        .args(["--vm=vm1", "--destroy"])
        .env("BHYVE_RUNDIR", &rd)
        .env("BHYVECTL_DESTROY_WAIT_MS", "300")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "bhyvectl: VM vm1 is still running; not destroyed\n"
    );
    let took = start.elapsed();
    assert!(took >= std::time::Duration::from_millis(300), "{took:?}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert!(rd.join("vm1").join("memory").exists());
    drop(lock);
    store.destroy("vm1").unwrap();
    std::fs::remove_dir_all(&rd).unwrap();
}

#[test]
fn destroy_of_a_vm_that_removes_itself_on_poweroff() {
    // bhyve -D: power-off makes bhyve remove the VM itself, so destroy
    // finds nothing left to remove, and that is success.
    let rd = rundir("selfremove");
    let store = VmStore::at(&rd);
    let dir = store.create_or_reinit("vm1", 1 << 20).unwrap().dir;
    let lock = dir.lock_running().unwrap();
    let fake = Arc::new(Fake::default());
    let server = ControlServer::start(&dir.ctl_socket_path(), fake.clone()).unwrap();
    let exit = Arc::new(Mutex::new(Some((lock, server, dir))));
    let exit2 = Arc::clone(&exit);
    *fake.poweroff.lock().unwrap() = Some(Box::new(move || {
        let state = exit2.lock().unwrap().take();
        std::thread::spawn(move || {
            if let Some((lock, server, dir)) = state {
                drop(server);
                dir.remove(lock).unwrap();
            }
        });
    }));
    let o = bhyvectl(&rd, &["--vm=vm1", "--destroy"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    assert!(!rd.join("vm1").exists());
    std::fs::remove_dir_all(&rd).unwrap();
}
