//! Command lines from bhyve(8) EXAMPLES and the FreeBSD Handbook, checked
//! against the `config.dump` text bhyve prints for them, plus bad input.

use super::*;

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn parse(line: &str) -> Result<Parsed, ConfigError> {
    parse_bhyve_args(&args(line))
}

/// The dump `-o config.dump=1` prints for `line`. The option is appended
/// last so it sits right before `name` (set after all options).
fn dump(line: &str) -> String {
    let mut a = args(line);
    let name = a.pop().expect("vmname");
    a.extend(["-o".to_string(), "config.dump=1".to_string(), name]);
    match parse_bhyve_args(&a) {
        Ok(Parsed::Dump(cfg)) => cfg.dump(),
        other => panic!("{line}: {other:?}"),
    }
}

fn run_dump(line: &str) -> String {
    match parse(line) {
        Ok(Parsed::Run(cfg)) => cfg.dump(),
        other => panic!("{line}: {other:?}"),
    }
}

fn err(line: &str) -> (i32, String) {
    let e = parse(line).expect_err(line);
    (e.exit_code(), e.to_string())
}

fn lines(s: &[&str]) -> String {
    s.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn man_example_1() {
    let got = dump(
        "-c 2 -s 0,hostbridge -s 1,lpc -s 2,virtio-blk,/my/image \
         -l com1,stdio -A -H -P -m 1G vm1",
    );
    assert_eq!(
        got,
        lines(&[
            "acpi_tables_in_memory=true",
            "memory.size=1G",
            "x86.strictmsr=true",
            "x86.vmexit_on_hlt=true",
            "x86.vmexit_on_pause=true",
            "lpc.fwcfg=bhyve",
            "lpc.com1.path=stdio",
            "cpus=2",
            "pci.0.0.0.device=hostbridge",
            "pci.0.1.0.device=lpc",
            "pci.0.2.0.device=virtio-blk",
            "pci.0.2.0.path=/my/image",
            "acpi_tables=true",
            "config.dump=1",
            "name=vm1",
        ])
    );
}

#[test]
fn man_example_2() {
    let got = dump(
        "-s 0,hostbridge -s 1,lpc -s 2:0,virtio-net,tap0 \
         -s 2:1,virtio-net,tap1 \
         -s 2:2,virtio-net,tap2,mac=00:be:fa:76:45:00 \
         -s 3,virtio-blk,/my/image -l com1,stdio \
         -A -H -P -m 24G bigvm",
    );
    assert_eq!(
        got,
        lines(&[
            "acpi_tables_in_memory=true",
            "memory.size=24G",
            "x86.strictmsr=true",
            "x86.vmexit_on_hlt=true",
            "x86.vmexit_on_pause=true",
            "lpc.fwcfg=bhyve",
            "lpc.com1.path=stdio",
            "pci.0.0.0.device=hostbridge",
            "pci.0.1.0.device=lpc",
            "pci.0.2.0.device=virtio-net",
            "pci.0.2.0.backend=tap0",
            "pci.0.2.1.device=virtio-net",
            "pci.0.2.1.backend=tap1",
            "pci.0.2.2.device=virtio-net",
            "pci.0.2.2.backend=tap2",
            "pci.0.2.2.mac=00:be:fa:76:45:00",
            "pci.0.3.0.device=virtio-blk",
            "pci.0.3.0.path=/my/image",
            "acpi_tables=true",
            "config.dump=1",
            "name=bigvm",
        ])
    );
}

const EXAMPLE_3_DISKS: &str = "hd:/images/disk.1,hd:/images/disk.2,\
hd:/images/disk.3,hd:/images/disk.4,\
hd:/images/disk.5,hd:/images/disk.6,\
hd:/images/disk.7,hd:/images/disk.8,\
cd:/images/install.iso";

#[test]
fn man_example_3_as_printed_is_rejected() {
    // Slot 1 is given to lpc and then to ahci; bhyve stops at the second
    // -s (before it would notice the missing vmname).
    let line = format!(
        "-c 4 -s 0,amd_hostbridge -s 1,lpc -s 1:0,ahci,{EXAMPLE_3_DISKS} \
         -s 3,virtio-net,tap0 -l com1,/dev/nmdm0A -A -H -P -m 8G"
    );
    assert_eq!(err(&line), (4, "pci slot 0:1:0 already occupied!".into()));
    // Without the duplicate slot, the missing vmname is a usage error.
    let line = format!(
        "-c 4 -s 0,amd_hostbridge -s 1,lpc -s 2:0,ahci,{EXAMPLE_3_DISKS} \
         -s 3,virtio-net,tap0 -l com1,/dev/nmdm0A -A -H -P -m 8G"
    );
    assert_eq!(parse(&line).unwrap(), Parsed::Usage { code: 1 });
}

#[test]
fn man_example_3_corrected() {
    let got = dump(&format!(
        "-c 4 -s 0,amd_hostbridge -s 1,lpc -s 2:0,ahci,{EXAMPLE_3_DISKS} \
         -s 3,virtio-net,tap0 -l com1,/dev/nmdm0A -A -H -P -m 8G vm8"
    ));
    let mut want = vec![
        "acpi_tables_in_memory=true".to_string(),
        "memory.size=8G".into(),
        "x86.strictmsr=true".into(),
        "x86.vmexit_on_hlt=true".into(),
        "x86.vmexit_on_pause=true".into(),
        "lpc.fwcfg=bhyve".into(),
        "lpc.com1.path=/dev/nmdm0A".into(),
        "cpus=4".into(),
        "pci.0.0.0.device=hostbridge".into(),
        "pci.0.0.0.vendor=0x1022".into(),
        "pci.0.0.0.devid=0x7432".into(),
        "pci.0.1.0.device=lpc".into(),
        "pci.0.2.0.device=ahci".into(),
    ];
    for disk in 1..=8 {
        want.push(format!("pci.0.2.0.port.{}.type=hd", disk - 1));
        want.push(format!(
            "pci.0.2.0.port.{}.path=/images/disk.{disk}",
            disk - 1
        ));
    }
    want.extend([
        "pci.0.2.0.port.8.type=cd".to_string(),
        "pci.0.2.0.port.8.path=/images/install.iso".into(),
        "pci.0.3.0.device=virtio-net".into(),
        "pci.0.3.0.backend=tap0".into(),
        "acpi_tables=true".into(),
        "config.dump=1".into(),
        "name=vm8".into(),
    ]);
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    assert_eq!(got, lines(&want));
}

#[test]
fn man_example_4_uefi_vnc() {
    let got = dump(
        "-c 2 -m 4G -w -H \
         -s 0,hostbridge \
         -s 3,ahci-cd,/path/to/uefi-OS-install.iso \
         -s 4,ahci-hd,disk.img \
         -s 5,virtio-net,tap0 \
         -s 29,fbuf,tcp=0.0.0.0:5900,w=800,h=600,wait \
         -s 30,xhci,tablet \
         -s 31,lpc -l com1,stdio \
         -l bootrom,/usr/local/share/uefi-firmware/BHYVE_UEFI.fd \
         uefivm",
    );
    assert_eq!(
        got,
        lines(&[
            "acpi_tables=false",
            "acpi_tables_in_memory=true",
            "memory.size=4G",
            "x86.strictmsr=false",
            "x86.vmexit_on_hlt=true",
            "lpc.fwcfg=bhyve",
            "lpc.com1.path=stdio",
            "lpc.bootrom=/usr/local/share/uefi-firmware/BHYVE_UEFI.fd",
            "cpus=2",
            "pci.0.0.0.device=hostbridge",
            "pci.0.3.0.device=ahci",
            "pci.0.3.0.port.0.type=cd",
            "pci.0.3.0.port.0.path=/path/to/uefi-OS-install.iso",
            "pci.0.4.0.device=ahci",
            "pci.0.4.0.port.0.type=hd",
            "pci.0.4.0.port.0.path=disk.img",
            "pci.0.5.0.device=virtio-net",
            "pci.0.5.0.backend=tap0",
            "pci.0.29.0.device=fbuf",
            "pci.0.29.0.tcp=0.0.0.0:5900",
            "pci.0.29.0.w=800",
            "pci.0.29.0.h=600",
            "pci.0.29.0.wait=true",
            "pci.0.30.0.device=xhci",
            "pci.0.30.0.slot.1.device=tablet",
            "pci.0.31.0.device=lpc",
            "config.dump=1",
            "name=uefivm",
        ])
    );
}

#[test]
fn man_example_5_uefi_ipv6_vnc() {
    let got = dump(
        "-c 2 -m 4G -w -H \
         -s 0,hostbridge \
         -s 4,ahci-hd,disk.img \
         -s 5,virtio-net,tap0 \
         -s 29,fbuf,tcp=[::]:5900,w=800,h=600 \
         -s 30,xhci,tablet \
         -s 31,lpc -l com1,stdio \
         -l bootrom,/usr/local/share/uefi-firmware/BHYVE_UEFI.fd \
         uefivm",
    );
    assert_eq!(
        got,
        lines(&[
            "acpi_tables=false",
            "acpi_tables_in_memory=true",
            "memory.size=4G",
            "x86.strictmsr=false",
            "x86.vmexit_on_hlt=true",
            "lpc.fwcfg=bhyve",
            "lpc.com1.path=stdio",
            "lpc.bootrom=/usr/local/share/uefi-firmware/BHYVE_UEFI.fd",
            "cpus=2",
            "pci.0.0.0.device=hostbridge",
            "pci.0.4.0.device=ahci",
            "pci.0.4.0.port.0.type=hd",
            "pci.0.4.0.port.0.path=disk.img",
            "pci.0.5.0.device=virtio-net",
            "pci.0.5.0.backend=tap0",
            "pci.0.29.0.device=fbuf",
            "pci.0.29.0.tcp=[::]:5900",
            "pci.0.29.0.w=800",
            "pci.0.29.0.h=600",
            "pci.0.30.0.device=xhci",
            "pci.0.30.0.slot.1.device=tablet",
            "pci.0.31.0.device=lpc",
            "config.dump=1",
            "name=uefivm",
        ])
    );
}

/// The handbook's Linux guest lines share everything up to the disk slots.
fn handbook_linux(slots: &[&str], com1: &str) -> String {
    let mut want = vec![
        "acpi_tables_in_memory=true",
        "memory.size=1024M",
        "x86.strictmsr=true",
        "x86.vmexit_on_hlt=true",
        "x86.vmexit_on_pause=true",
        "lpc.fwcfg=bhyve",
        com1,
        "acpi_tables=true",
        "pci.0.0.0.device=hostbridge",
        "pci.0.1.0.device=lpc",
        "pci.0.2.0.device=virtio-net",
        "pci.0.2.0.backend=tap0",
    ];
    want.extend_from_slice(slots);
    want.extend(["cpus=4", "config.dump=1", "name=linuxguest"]);
    lines(&want)
}

#[test]
fn handbook_linux_install() {
    let got = dump(
        "-A -H -P -s 0:0,hostbridge -s 1:0,lpc -s 2:0,virtio-net,tap0 -s 3:0,virtio-blk,./linux.img \
         -s 4:0,ahci-cd,./somelinux.iso -l com1,stdio -c 4 -m 1024M linuxguest",
    );
    let want = handbook_linux(
        &[
            "pci.0.3.0.device=virtio-blk",
            "pci.0.3.0.path=./linux.img",
            "pci.0.4.0.device=ahci",
            "pci.0.4.0.port.0.type=cd",
            "pci.0.4.0.port.0.path=./somelinux.iso",
        ],
        "lpc.com1.path=stdio",
    );
    assert_eq!(got, want);
}

#[test]
fn handbook_linux_boot_zfs_and_nmdm() {
    let disk = ["pci.0.3.0.device=virtio-blk", "pci.0.3.0.path=./linux.img"];
    assert_eq!(
        dump(
            "-A -H -P -s 0:0,hostbridge -s 1:0,lpc -s 2:0,virtio-net,tap0 \
             -s 3:0,virtio-blk,./linux.img -l com1,stdio -c 4 -m 1024M linuxguest"
        ),
        handbook_linux(&disk, "lpc.com1.path=stdio")
    );
    assert_eq!(
        dump(
            "-A -H -P -s 0:0,hostbridge -s 1:0,lpc -s 2:0,virtio-net,tap0 \
             -s3:0,virtio-blk,/dev/zvol/zroot/linuxdisk0 -l com1,stdio -c 4 -m 1024M linuxguest"
        ),
        handbook_linux(
            &[
                "pci.0.3.0.device=virtio-blk",
                "pci.0.3.0.path=/dev/zvol/zroot/linuxdisk0"
            ],
            "lpc.com1.path=stdio"
        )
    );
    assert_eq!(
        dump(
            "-A -H -P -s 0:0,hostbridge -s 1:0,lpc -s 2:0,virtio-net,tap0 -s 3:0,virtio-blk,./linux.img \
             -l com1,/dev/nmdm0A -c 4 -m 1024M linuxguest"
        ),
        handbook_linux(&disk, "lpc.com1.path=/dev/nmdm0A")
    );
}

fn handbook_uefi_dump(firmware: &str, fbuf: bool, lpc_slot: u8) -> String {
    let lpc = format!("pci.0.{lpc_slot}.0.device=lpc");
    let bootrom = format!("lpc.bootrom=/usr/local/share/uefi-firmware/{firmware}");
    let mut want = vec![
        "acpi_tables_in_memory=true",
        "memory.size=1024M",
        "x86.strictmsr=true",
        "x86.vmexit_on_hlt=true",
        "x86.vmexit_on_pause=true",
        "lpc.fwcfg=bhyve",
        &bootrom,
        "acpi_tables=true",
        "pci.0.0.0.device=hostbridge",
        &lpc,
        "pci.0.2.0.device=virtio-net",
        "pci.0.2.0.backend=tap1",
        "pci.0.3.0.device=virtio-blk",
        "pci.0.3.0.path=./disk.img",
        "pci.0.4.0.device=ahci",
        "pci.0.4.0.port.0.type=cd",
        "pci.0.4.0.port.0.path=./install.iso",
    ];
    if fbuf {
        want.extend([
            "pci.0.29.0.device=fbuf",
            "pci.0.29.0.tcp=",
            "pci.0.29.0.w=800",
            "pci.0.29.0.h=600",
            "pci.0.29.0.wait=true",
        ]);
    }
    want.extend(["cpus=4", "config.dump=1", "name=guestname"]);
    lines(&want)
}

#[test]
fn handbook_uefi() {
    // The handbook leaves the vmname out; "guestname" is added.
    for fw in ["BHYVE_UEFI.fd", "BHYVE_UEFI_CSM.fd"] {
        let got = dump(&format!(
            "-AHP -s 0:0,hostbridge -s 1:0,lpc \
             -s 2:0,virtio-net,tap1 -s 3:0,virtio-blk,./disk.img \
             -s 4:0,ahci-cd,./install.iso -c 4 -m 1024M \
             -l bootrom,/usr/local/share/uefi-firmware/{fw} guestname"
        ));
        assert_eq!(got, handbook_uefi_dump(fw, false, 1));
    }
}

#[test]
fn handbook_uefi_framebuffer() {
    let got = dump(
        "-AHP -s 0:0,hostbridge -s 31:0,lpc \
         -s 2:0,virtio-net,tap1 -s 3:0,virtio-blk,./disk.img \
         -s 4:0,ahci-cd,./install.iso -c 4 -m 1024M \
         -s 29,fbuf,tcp=,w=800,h=600,wait \
         -l bootrom,/usr/local/share/uefi-firmware/BHYVE_UEFI.fd guestname",
    );
    // Slots are listed in the order they were configured.
    let want = handbook_uefi_dump("BHYVE_UEFI.fd", true, 31).replace("pci.0.31.0.device=lpc\n", "");
    let want = want.replace(
        "pci.0.0.0.device=hostbridge\n",
        "pci.0.0.0.device=hostbridge\npci.0.31.0.device=lpc\n",
    );
    assert_eq!(got, want);
}

#[test]
fn run_and_dump_position() {
    // Without config.dump: Run, and `name` is last.
    let got = run_dump("-c 2 -m 512 vm");
    assert_eq!(
        got,
        lines(&[
            "acpi_tables=false",
            "acpi_tables_in_memory=true",
            "memory.size=512",
            "x86.strictmsr=true",
            "lpc.fwcfg=bhyve",
            "cpus=2",
            "name=vm",
        ])
    );
    // config.dump=0 runs; a bad boolean is exit 4.
    assert!(matches!(
        parse("-o config.dump=no vm").unwrap(),
        Parsed::Run(_)
    ));
    assert_eq!(
        err("-o config.dump=maybe vm"),
        (
            4,
            "Invalid value maybe for boolean variable config.dump".into()
        )
    );
}

#[test]
fn every_flag_sets_bhyves_variable() {
    let got = run_dump(
        "-a -C -D -e -I -S -u -W -x -Y -K fr -U 8e1b1e4a-0000-4000-8000-000000000000 \
         -G w127.0.0.1:1234 -p 0:2 -p 0:3 -r /ckp vm",
    );
    assert_eq!(
        got,
        lines(&[
            "acpi_tables=false",
            "acpi_tables_in_memory=true",
            "memory.size=256M",
            "memory.guest_in_core=true",
            "memory.wired=true",
            "x86.strictmsr=true",
            "x86.strictio=true",
            "x86.x2apic=true",
            "x86.mptable=false",
            "lpc.fwcfg=bhyve",
            "destroy_on_poweroff=true",
            "rtc.use_localtime=false",
            "virtio_msix=false",
            "keyboard.layout=fr",
            "uuid=8e1b1e4a-0000-4000-8000-000000000000",
            "gdb.wait=true",
            "gdb.address=127.0.0.1",
            "gdb.port=1234",
            "vcpu.0.cpuset=2,3",
            "restore_file=/ckp",
            "name=vm",
        ])
    );
    assert_eq!(
        run_dump("-G 5555 vm")
            .lines()
            .filter(|l| l.starts_with("gdb"))
            .collect::<Vec<_>>(),
        ["gdb.port=5555"]
    );
    // -a after -x wins (re-set moves to the end of x86).
    assert!(run_dump("-x -a vm").contains("x86.strictmsr=true\nx86.x2apic=false\n"));
}

#[test]
fn getopt_forms() {
    // Combined letters and attached arguments.
    assert_eq!(
        run_dump("-AHP -c2 -m1G vm"),
        run_dump("-A -H -P -c 2 -m 1G vm")
    );
    // `--` ends the options.
    assert!(run_dump("-c 2 -- vm").ends_with("cpus=2\nname=vm\n"));
    // Options stop at the first operand: a second operand is usage(1).
    assert_eq!(parse("vm1 -c 2").unwrap(), Parsed::Usage { code: 1 });
    assert_eq!(parse("-c 2 vm1 vm2").unwrap(), Parsed::Usage { code: 1 });
    assert_eq!(parse("-h").unwrap(), Parsed::Usage { code: 0 });
    assert_eq!(parse("-h -z").unwrap(), Parsed::Usage { code: 0 });
    assert_eq!(parse("-z vm").unwrap(), Parsed::Usage { code: 1 });
    assert_eq!(parse("-j x vm").unwrap(), Parsed::Usage { code: 1 });
    // -f (fw_cfg user files) takes an argument, like bhyve 14's.
    assert_eq!(parse("-f").unwrap(), Parsed::Usage { code: 1 });
    assert_eq!(err("-f name=x vm").0, crate::EX_USAGE);
    assert!(
        run_dump("-f opt/x,string=y -f name=opt/z,string= vm").ends_with(
            "fwcfg.user.0.name=opt/x\nfwcfg.user.0.string=y\n\
         fwcfg.user.1.name=opt/z\nfwcfg.user.1.string=\nname=vm\n"
        )
    );
    assert_eq!(parse("vm -c").unwrap(), Parsed::Usage { code: 1 });
    assert_eq!(parse("-c").unwrap(), Parsed::Usage { code: 1 });
    assert_eq!(parse("").unwrap(), Parsed::Usage { code: 1 });
    // An option argument may start with '-': here it becomes the vCPU
    // count, which only the topology check rejects.
    let Parsed::Run(cfg) = parse("-c -H vm").unwrap() else {
        panic!()
    };
    assert_eq!(cfg.get("cpus").unwrap(), "-H");
    assert_eq!(
        crate::Topology::from_config(&cfg).unwrap_err().exit_code(),
        4
    );
}

#[test]
fn vmname_from_tree() {
    // bhyve takes the name from the tree, so -o name= works without an
    // operand, and the operand overrides it.
    assert!(run_dump("-o name=fromopt").ends_with("name=fromopt\n"));
    assert!(run_dump("-o name=fromopt vm").ends_with("name=vm\n"));
    // The usage check comes before config.dump.
    assert_eq!(
        parse("-o config.dump=1").unwrap(),
        Parsed::Usage { code: 1 }
    );
}

#[test]
fn help_requests() {
    for a in ["-s help", "-s h", "-s hel", "-c 2 -s help vm"] {
        assert_eq!(parse(a).unwrap(), Parsed::PciHelp, "{a}");
    }
    assert_eq!(
        parse_bhyve_args(&["-s".into(), "".into()]).unwrap(),
        Parsed::PciHelp
    );
    assert_eq!(parse("-l help").unwrap(), Parsed::LpcHelp);
    assert_eq!(parse("-l he").unwrap(), Parsed::LpcHelp);
    assert_eq!(err("-s helpme vm").0, 4);
    assert_eq!(err("-l helpme vm").0, crate::EX_USAGE);
}

#[test]
fn bad_input_exit_codes() {
    let usage = crate::EX_USAGE;
    assert_eq!(
        err("-c cpus=2,foo=1 vm"),
        (usage, "invalid cpu topology 'cpus=2,foo=1'".into())
    );
    assert_eq!(
        err("-l com9,stdio vm"),
        (
            usage,
            "invalid lpc device configuration 'com9,stdio'".into()
        )
    );
    assert_eq!(
        err("-l bootrom vm"),
        (4, "invalid bootrom option \"bootrom\"".into())
    );
    assert_eq!(
        err("-o novalue vm"),
        (usage, "invalid configuration option 'novalue'".into())
    );
    assert_eq!(
        err("-o x= vm"),
        (usage, "invalid configuration option 'x='".into())
    );
    assert_eq!(
        err("-p 1 vm"),
        (usage, "invalid vcpu pinning configuration '1'".into())
    );
    assert_eq!(
        err("-p 0:4096 vm"),
        (usage, "invalid vcpu pinning configuration '0:4096'".into())
    );
    assert_eq!(
        err("-s 32,hostbridge vm"),
        (4, "Invalid PCI slot info field \"32,hostbridge\"".into())
    );
    assert_eq!(
        err("-s 0:8,hostbridge vm"),
        (4, "Invalid PCI slot info field \"0:8,hostbridge\"".into())
    );
    assert_eq!(
        err("-s 256:0:0,hostbridge vm"),
        (
            4,
            "Invalid PCI slot info field \"256:0:0,hostbridge\"".into()
        )
    );
    assert_eq!(
        err("-s hostbridge vm"),
        (4, "Invalid PCI slot info field \"hostbridge\"".into())
    );
    assert_eq!(
        err("-s 3,virtio-foo vm"),
        (4, "pci slot 0:3:0: unknown device \"virtio-foo\"".into())
    );
    assert_eq!(
        err("-s 3,virtio-rnd -s 3:0,virtio-rnd vm"),
        (4, "pci slot 0:3:0 already occupied!".into())
    );
    assert_eq!(err("-s 3,virtio-input vm").0, 4);
    // Errors are reported in command-line order: the -s error comes first.
    assert_eq!(err("-s 99,x -c foo=1 vm").0, 4);
    // A variable cannot become a node.
    assert_eq!(err("-o pci.0=1 -s 0,hostbridge vm").0, 4);
    // -m is stored as given; parse_memsize reports it at run time.
    let Parsed::Run(cfg) = parse("-m 1Q vm").unwrap() else {
        panic!()
    };
    let e = crate::parse_memsize(&cfg.get("memory.size").unwrap()).unwrap_err();
    assert_eq!(
        (e.exit_code(), e.to_string()),
        (usage, "invalid memsize '1Q'".into())
    );
}

#[test]
fn k_files() {
    let dir = std::env::temp_dir().join(format!("bhyve-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.conf");
    std::fs::write(
        &good,
        "# vm\nname=kvm\ncpus=2\nmemory.size=%(base)M\nbase=512\n",
    )
    .unwrap();
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "cpus=2\nnot an assignment\n").unwrap();

    let Parsed::Run(cfg) = parse(&format!("-k {} -c 4", good.display())).unwrap() else {
        panic!("expected Run");
    };
    assert_eq!(cfg.get("name").unwrap(), "kvm");
    assert_eq!(cfg.get("cpus").unwrap(), "4");
    // %(var) references expand through get(), and dump shows them raw.
    assert_eq!(cfg.get("memory.size").unwrap(), "512M");
    assert_eq!(
        crate::parse_memsize(&cfg.get("memory.size").unwrap()).unwrap(),
        512 << 20
    );
    assert!(cfg.dump().contains("memory.size=%(base)M\n"));

    assert_eq!(
        err(&format!("-k {} vm", bad.display())),
        (
            4,
            format!(
                "{} line 2: invalid config option 'not an assignment'",
                bad.display()
            )
        )
    );
    let missing = dir.join("missing.conf");
    assert_eq!(
        err(&format!("-k {} vm", missing.display())),
        (
            4,
            format!(
                "Failed to open configuration file {}: No such file or directory",
                missing.display()
            )
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_message() {
    let u = usage_text("bhyve");
    assert!(u.starts_with("Usage: bhyve [-AaCDeHhPSuWwxY]\n             [-c [[cpus=]numcpus]"));
    assert!(u.contains("\n             [-p vcpu:hostcpu] [-r file] [-s pci] [-U uuid] vmname\n"));
    assert!(u.ends_with("       -Y: disable MPtable generation\n"));
    assert!(usage_text("b").contains("\n         [-G port]"));
}

#[test]
fn run_params_in_bhyves_order() {
    let cfg = |line: &str| match parse(line).unwrap() {
        Parsed::Run(cfg) => cfg,
        other => panic!("{other:?}"),
    };
    let p = run_params(&cfg("-c sockets=1,cores=2 -m 1G -p 1:3 -p 1:5 vm")).unwrap();
    assert_eq!(p.topology.cpus, 2);
    assert_eq!(p.memsize, 1 << 30);
    assert_eq!(p.cpusets[0], None);
    assert_eq!(
        p.cpusets[1]
            .as_ref()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [3, 5]
    );
    // Pinning of vCPUs beyond the count is ignored, as in bhyve.
    assert!(run_params(&cfg("-p 7:1 vm")).is_ok());
    let e = |line: &str| {
        let e = run_params(&cfg(line)).unwrap_err();
        (e.exit_code(), e.to_string())
    };
    assert_eq!(
        e("-c 3,cores=2 -m x vm"),
        (
            4,
            "Topology (3 sockets, 2 cores, 1 threads) does not match 3 vCPUs".into()
        )
    );
    assert_eq!(
        e("-o vcpu.0.cpuset=2-1 -m x vm"),
        (4, "Invalid hostcpu range 2-1".into())
    );
    // memory.size is checked before the vCPU limit.
    assert_eq!(
        e("-c 17 -m x vm"),
        (crate::EX_USAGE, "invalid memsize 'x'".into())
    );
    assert_eq!(
        e("-c 17 vm"),
        (4, "17 vCPUs requested but only 16 available".into())
    );
}
