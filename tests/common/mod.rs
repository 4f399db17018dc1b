//! Helpers shared by the bhyve integration tests: a private run directory
//! per test, the test guests on disk, and running bhyve with a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BHYVE: &str = env!("CARGO_BIN_EXE_bhyve");
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A temporary directory holding the run directory and guest files.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bhyve-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run")).unwrap();
        Scratch { dir }
    }

    pub fn guest(&self, name: &str) -> PathBuf {
        bhyve_testguests::write_guest(name, &self.dir).unwrap()
    }

    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    pub fn rundir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BHYVE);
        c.args(args)
            .env("BHYVE_RUNDIR", self.rundir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs bhyve to completion (killed after [`DEADLINE`]).
    pub fn run(&self, args: &[&str]) -> Output {
        let child = self.command(args).spawn().unwrap();
        wait_deadline(child)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn wait_deadline(mut child: Child) -> Output {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > DEADLINE {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `-o boot.kernel=PATH`.
pub fn kernel_opt(p: &Path) -> String {
    format!("boot.kernel={}", p.display())
}

pub mod disk;
pub mod ipxe;
pub mod net;
pub mod seabios;
pub mod vm;
