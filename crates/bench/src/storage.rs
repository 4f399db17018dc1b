//! AHCI and NVMe 4 KiB random reads: the `ahci_io` and `nvme_io` test
//! guests in their benchmark mode (`bench=1`) under our bhyve's `ahci`
//! and `nvme` and under QEMU's ICH9 `ahci` + `ide-hd` and `nvme`, same
//! guest, same O_DIRECT disk file. The guests poll (no interrupts) and
//! time themselves with the TSC, as `virtio_blk_bench` does.

use std::path::Path;

use anyhow::Result;

use crate::virtio::{qemu_drive, run_disk_bench, BlkParams, DiskBench};

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
        let mut v = qemu_drive(disk);
        v.push("-device".to_string());
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

/// Runs the benchmark of `ctl`: `p.runs` rounds of our bhyve and QEMU
/// (alternating who goes first), `p.reqs` reads per phase; the disk file
/// lives in `p.dir` (must support O_DIRECT).
pub fn run(ctl: Controller, bhyve: &Path, qemu: &str, work: &Path, p: &BlkParams) -> Result<()> {
    let bench = DiskBench {
        name: ctl.name(),
        guest: ctl.guest(),
        cmdline: format!("bench=1 reqs={}", p.reqs),
        mem_mib: MEM_MIB,
        phases: PHASES,
        slot: &|disk| ctl.slot(disk),
        qemu_devices: &|disk| ctl.qemu_devices(disk),
    };
    run_disk_bench(&bench, bhyve, qemu, work, p)
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
