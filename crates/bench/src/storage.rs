//! AHCI and NVMe 4 KiB random reads: the `ahci_io` and `nvme_io` test
//! guests in their benchmark mode (`bench=1`) under our bhyve's `ahci`
//! and `nvme` and under QEMU's ICH9 `ahci` + `ide-hd` and `nvme`, same
//! guest, same O_DIRECT disk file. The guests poll (no interrupts) and
//! time themselves with the TSC, as `virtio_blk_bench` does.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::ramdir::RunDir;
use crate::virtio::{alternating_runs, make_disk, tsc_hz, BlkParams, DISK_MIB};

/// The C guests' heap starts at 16 MiB and needs 48 MiB; QEMU's
/// firmware keeps a little at the top of RAM.
const MEM_MIB: u32 = 128;

pub const PHASES: &[&str] = &["randread-4k-qd1", "randread-4k-qd32"];

/// Which controller a run measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Controller {
    Ahci,
    Nvme,
}

impl Controller {
    fn guest(self) -> &'static str {
        match self {
            Controller::Ahci => "ahci_io",
            Controller::Nvme => "nvme_io",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Controller::Ahci => "ahci",
            Controller::Nvme => "nvme",
        }
    }

    /// Our `-s` argument for the disk.
    fn slot(self, disk: &Path) -> String {
        match self {
            Controller::Ahci => format!("4,ahci,hd:{},nocache", disk.display()),
            Controller::Nvme => format!("4,nvme,{},nocache", disk.display()),
        }
    }

    /// QEMU's devices for the disk.
    fn qemu_devices(self, disk: &Path) -> Vec<String> {
        let drive = format!("file={},if=none,id=d,format=raw,cache=none", disk.display());
        let mut v = vec!["-drive".to_string(), drive, "-device".to_string()];
        match self {
            Controller::Ahci => v.extend([
                "ahci,id=ahci0".to_string(),
                "-device".to_string(),
                "ide-hd,drive=d,bus=ahci0.0".to_string(),
            ]),
            Controller::Nvme => v.push("nvme,drive=d,serial=bench".to_string()),
        }
        v
    }
}

fn bhyve_cmd(bhyve: &Path, rundir: &Path, guest: &Path, cmdline: &str, slot: &str) -> Command {
    let mut c = Command::new(bhyve);
    c.env("BHYVE_RUNDIR", rundir)
        .arg("-m")
        .arg(format!("{MEM_MIB}M"))
        .args(["-l", "com1,stdio", "-l", "pc-testdev", "-s", "0,hostbridge"])
        .args(["-s", slot, "-o"])
        .arg(format!("boot.kernel={}", guest.display()))
        .arg("-o")
        .arg(format!("boot.cmdline={cmdline}"))
        .arg("bench");
    c
}

fn qemu_cmd(qemu: &str, guest: &Path, cmdline: &str, dev: &[String]) -> Command {
    let mut c = Command::new(qemu);
    c.args(["-accel", "kvm", "-M", "pc", "-cpu", "host", "-m"])
        .arg(MEM_MIB.to_string())
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-no-reboot", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        .args(dev)
        .arg("-kernel")
        .arg(guest)
        .arg("-append")
        .arg(cmdline);
    c
}

/// Runs the benchmark of `ctl`: `runs` rounds of our bhyve and QEMU
/// (alternating who goes first), `reqs` reads per phase; the disk file
/// lives in `dir` (must support O_DIRECT).
pub fn run(ctl: Controller, bhyve: &Path, qemu: &str, work: &Path, p: &BlkParams) -> Result<()> {
    let (dir, ram, runs, reqs) = (&p.dir, p.ram, p.runs, p.reqs);
    let guest = bhyve_testguests::write_guest(ctl.guest(), work)?;
    let disk = dir.join(format!(
        "bhyve-bench-{}-{}.img",
        ctl.name(),
        std::process::id()
    ));
    make_disk(&disk)?;
    let rundir = RunDir::new(work, ram);
    let result = (|| {
        let cmdline = format!("bench=1 reqs={reqs}");
        let hz = tsc_hz();
        let slot = ctl.slot(&disk);
        let dev = ctl.qemu_devices(&disk);
        let mut t = alternating_runs(runs, hz, PHASES, |ours| {
            if ours {
                bhyve_cmd(bhyve, rundir.path(), &guest, &cmdline, &slot)
            } else {
                qemu_cmd(qemu, &guest, &cmdline, &dev)
            }
        })?;
        println!(
            "{}: `{}` ({cmdline}), {DISK_MIB} MiB raw file, O_DIRECT (bhyve nocache, \
             qemu cache=none), {}, TSC {:.0} MHz, median of {} runs",
            ctl.name(),
            ctl.guest(),
            rundir.describe(),
            hz / 1e6,
            runs.max(1)
        );
        t.print();
        Ok(())
    })();
    let _ = std::fs::remove_file(&disk);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_name_the_disk() {
        let d = Path::new("/x/d.img");
        assert_eq!(Controller::Ahci.slot(d), "4,ahci,hd:/x/d.img,nocache");
        assert_eq!(Controller::Nvme.slot(d), "4,nvme,/x/d.img,nocache");
        let q = Controller::Ahci.qemu_devices(d);
        assert!(q.contains(&"ide-hd,drive=d,bus=ahci0.0".to_string()));
        assert!(Controller::Nvme
            .qemu_devices(d)
            .contains(&"nvme,drive=d,serial=bench".to_string()));
        assert!(bhyve_testguests::guest_bytes(Controller::Ahci.guest()).is_some());
        assert!(bhyve_testguests::guest_bytes(Controller::Nvme.guest()).is_some());
    }
}
