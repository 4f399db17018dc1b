//! The real-OS lab: Debian's cloud kernel boots on our bhyve inside the
//! lab's L1 (QEMU TCG with emulated AMD-V; see crates/lab and README
//! "Lab"), through `bhyveload` (bzImage and PVH ELF) and through the
//! one-command path, with one and two vCPUs; and the VM lifecycle a bhyve
//! user relies on: reboot (exit 0, the VM stays), ACPI power-off (1), triple
//! fault (3), console input on com1, `bhyvectl --force-poweroff` and
//! `--destroy` on a running guest, and SIGTERM as an ACPI power-button
//! press that Linux acts on.
//!
//! One L1 boot serves every test of this file; L1 runs their guests one
//! at a time (see `LabOptions::parallel_jobs`).

mod lab_common;

use std::time::Duration;

use bhyve_lab::{shell_quote, GUEST_END_MARKER};
use lab_common::*;

/// The job lines loading `kernel` (`$BZIMAGE` or `$VMLINUX`), the initrd
/// and the L2 command line into the named VM `vm` with bhyveload
/// (`RESULT load`).
fn bhyveload(kernel: &str, vm: &str) -> String {
    format!(
        "$BHYVELOAD -m 256M -k \"{kernel}\" -i \"$INITRD\" -o boot.cmdline=\"$CMDLINE\" {vm}\n\
         result load $?\n"
    )
}

/// bhyveload + bhyve with a bzImage; the guest's `reboot` ends bhyve with
/// 0 and leaves the named VM in place until `bhyvectl --destroy`.
#[test]
fn bzimage_via_bhyveload_reboots_and_the_vm_stays() {
    let r = run(
        "echo LAB-SCRIPT-RAN",
        "",
        &(bhyveload("$BZIMAGE", "vm-a")
            + r#"
$BHYVE -A -c 1 -m 256M -l com1,stdio vm-a >console.log 2>bhyve.err </dev/null
result bhyve $?
cat bhyve.err
$BHYVECTL --list | grep -q '^vm-a' && result listed yes
$BHYVECTL --destroy --vm=vm-a
result destroy $?
$BHYVECTL --list | grep -q '^vm-a' || result gone yes
"#),
    );
    r.expect("load", "0");
    r.expect_console(&marker(1));
    r.expect_console("LAB-SCRIPT-RAN");
    r.expect_console(&format!("{GUEST_END_MARKER} status=0"));
    r.expect("bhyve", "0");
    r.expect("listed", "yes");
    r.expect("destroy", "0");
    r.expect("gone", "yes");
}

/// Two vCPUs both online; a line typed into com1 reaches the guest's
/// shell; `reboot=t` makes Linux reset by triple fault: bhyve exits 3.
#[test]
fn bzimage_two_cpus_console_input_and_triple_fault() {
    let r = run(
        "echo LAB-READY-FOR-INPUT; read line; echo \"LAB-GOT:$line\"",
        "reboot=t",
        &(bhyveload("$BZIMAGE", "vm-b")
            + r#"
mkfifo "$TMPDIR/com1-in-$$"
exec 7<>"$TMPDIR/com1-in-$$"
$BHYVE -A -c 2 -m 256M -l com1,stdio vm-b >console.log 2>bhyve.err <"$TMPDIR/com1-in-$$" &
pid=$!
wait_for console.log LAB-READY-FOR-INPUT 240 && echo "typed-into-com1" >&7
wait_bhyve $pid
cat bhyve.err
"#),
    );
    r.expect("load", "0");
    r.expect_console(&marker(2));
    r.expect_console("LAB-GOT:typed-into-com1");
    r.expect_bhyve("3");
}

/// Loads the PVH vmlinux with bhyveload, runs it with `cpus` vCPUs until
/// its script waits, then runs `bhyvectl ARGS --vm=VM` on the running guest.
fn bhyvectl_on_running_pvh_guest(vm: &str, cpus: u32, ctl: &str) -> Run {
    let r = run(
        "echo LAB-WAITING; sleep 600",
        "",
        &format!(
            r#"{}
$BHYVE -A -c {cpus} -m 256M -l com1,stdio {vm} >console.log 2>bhyve.err </dev/null &
pid=$!
wait_for console.log LAB-WAITING 240
$BHYVECTL {ctl} --vm={vm}
result ctl $?
wait_bhyve $pid
cat bhyve.err
$BHYVECTL --list | grep -q '^{vm}' && result listed yes || result listed no
"#,
            bhyveload("$VMLINUX", vm)
        ),
    );
    r.expect("load", "0");
    r.expect_console(&marker(cpus));
    r.expect("ctl", "0");
    assert!(!r.console.contains(GUEST_END_MARKER), "{}", r.explain());
    r
}

/// The PVH entry of the ELF vmlinux; `bhyvectl --force-poweroff` stops the
/// running guest: bhyve exits 1.
#[test]
fn pvh_via_bhyveload_and_force_poweroff() {
    let r = bhyvectl_on_running_pvh_guest("vm-c", 1, "--force-poweroff");
    r.expect_bhyve("1");
}

/// PVH with two vCPUs; `bhyvectl --destroy` on the running guest powers it
/// off and removes the VM.
#[test]
fn pvh_two_cpus_and_destroy_while_running() {
    let r = bhyvectl_on_running_pvh_guest("vm-d", 2, "--destroy");
    r.expect_bhyve("1");
    r.expect("listed", "no");
}

/// Boots `kernel` (`$BZIMAGE` or `$VMLINUX`) in one command
/// (`-o boot.kernel=`) with `cpus` vCPUs, the further bhyve arguments
/// `args` and the L2 command line words `extra`; checks the userspace
/// marker and that the script ran, and returns bhyve's exit status.
fn one_command(kernel: &str, cpus: u32, args: &str, vm: &str, extra: &str) -> String {
    let r = run(
        "echo LAB-SCRIPT-RAN",
        extra,
        &format!(
            r#"
$BHYVE -A -c {cpus} -m 256M {args} -l com1,stdio -o boot.kernel="{kernel}" -o boot.initrd="$INITRD" \
    -o boot.cmdline="$CMDLINE" {vm} >console.log 2>bhyve.err </dev/null
result bhyve $?
cat bhyve.err
"#
        ),
    );
    r.expect_console(&marker(cpus));
    r.expect_console("LAB-SCRIPT-RAN");
    r.result("bhyve")
        .unwrap_or_else(|| panic!("no bhyve status\n{}", r.explain()))
}

/// The one-command path, bzImage, two vCPUs, on the PCI platform (`-s
/// 0,hostbridge -s 31,lpc`: the reset register at 0xcf9 then shares its
/// port range with config mechanism #1); the guest reboots: exit 0.
#[test]
fn one_command_bzimage_two_cpus_pci_reboots() {
    let pci = "-s 0,hostbridge -s 31,lpc";
    assert_eq!(one_command("$BZIMAGE", 2, pci, "vm-e", ""), "0");
}

/// The one-command path, PVH, one vCPU; `lab.end=poweroff`: Linux powers
/// off through ACPI (S5 in PM1_CNT), bhyve exits 1.
#[test]
fn one_command_pvh_one_cpu_powers_off() {
    assert_eq!(
        one_command("$VMLINUX", 1, "", "vm-f", "lab.end=poweroff"),
        "1"
    );
}

/// The lab's own disk-image path (an ext4 image from `mkfs.ext4 -d` whose
/// `/test.sh` the guest's init runs when told `lab.disk=`), checked under
/// QEMU with KVM inside L1 — the yardstick — since our bhyve gets its disk
/// controllers in later work. The same images boot on both VMMs.
#[test]
fn disk_image_script_runs_under_qemu_in_l1() {
    let dir = lab().work_dir().join("disks");
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("script-disk.img");
    bhyve_lab::guest::ext4_image(
        &img,
        16,
        "echo LAB-FROM-DISK; cat /disk/data/hello.txt\n",
        &[("data/hello.txt", b"hello from an ext4 image\n")],
    )
    .unwrap();
    let r = run(
        "",
        "",
        &format!(
            r#"
qemu-system-x86_64 -accel kvm -M pc -cpu host -m 256 -nodefaults -no-user-config \
    -display none -no-reboot -serial file:console.log \
    -kernel "$BZIMAGE" -initrd "$INITRD" \
    -append "console=ttyS0 panic=-1 lab.disk=/dev/nvme0n1" \
    -drive file={},if=none,id=d,format=raw,readonly=on -device nvme,drive=d,serial=lab
result qemu $?
"#,
            shell_quote(&img.display().to_string())
        ),
    );
    r.expect("qemu", "0");
    r.expect_console(&marker(1));
    r.expect_console("LAB-FROM-DISK");
    r.expect_console("hello from an ext4 image");
}

/// Every job has a timeout, enforced in L1, and the lab keeps serving
/// jobs afterwards.
#[test]
fn lab_job_timeout_is_enforced() {
    let out = lab()
        .run(
            "echo started; sleep 120; echo not-reached",
            Duration::from_secs(3),
        )
        .unwrap();
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.status, 137);
    assert!(out.output.contains("started") && !out.output.contains("not-reached"));
    assert!(out.elapsed < Duration::from_secs(60), "{:?}", out.elapsed);
    let again = lab()
        .run("echo still-here", Duration::from_secs(30))
        .unwrap();
    assert_eq!((again.status, again.output.trim()), (0, "still-here"));
}

/// Many short jobs in a row, each answered once and in full: the control
/// channel loses nothing.
#[test]
fn lab_runs_many_jobs() {
    for i in 0..10 {
        let out = lab()
            .run(&format!("echo job-{i}"), Duration::from_secs(120))
            .unwrap();
        assert_eq!(
            (out.status, out.output.trim()),
            (0, format!("job-{i}").as_str())
        );
    }
}

/// Debian's kernel on the PCI platform: `-s 0,hostbridge -s 31,lpc -A -c
/// 2`. Linux enumerates our functions with bhyve's IDs through ECAM (the
/// MCFG region is reserved), sees no ACPI/PCI errors, offers the HPET and
/// ACPI PM clocksources, reads the host's date from the RTC, routes
/// interrupts through the I/O APIC, and `poweroff` ends bhyve with 1.
#[test]
fn linux_sees_the_pci_platform() {
    let script = r#"
for d in /sys/bus/pci/devices/*; do echo "LABR pci $(basename $d) $(cat $d/vendor):$(cat $d/device) $(cat $d/class)"; done
echo "LABR clocksources $(cat /sys/devices/system/clocksource/clocksource0/available_clocksource)"
echo "LABR rtc $(cat /sys/class/rtc/rtc0/since_epoch)"
echo "LABR ioapic $(grep -c IO-APIC /proc/interrupts)"
dmesg | grep -iE 'acpi (error|exception|bios error|warning)|firmware bug|mmconfig.*not|pci.*(error|fail)' | sed 's/^/LABR bad /'
dmesg | grep -iE 'mmconfig|ecam' | sed 's/^/LABR mcfg /'
r1=$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
r2=$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
echo "LABR rng $(cat /sys/class/misc/hw_random/rng_current) ${#r1} $([ "$r1" != "$r2" ] && echo differ)"
grep virtio /proc/interrupts | sed 's/^/LABR irq /'
for f in /sys/bus/pci/devices/0000:00:03.0/msi_irqs/*; do echo "LABR msimode $(cat $f)"; done
echo "LABR done"
"#;
    let job = format!(
        r#"
host_now=$(date +%s)
{}
result bhyve $?
result host_now $host_now
cat bhyve.err
"#,
        bhyve_l2("-c 2 -s 3,virtio-rnd", "vm-pci")
    );
    let r = run_on(virtio_images(), script, "lab.end=poweroff", &job);
    r.expect_console(&marker(2));
    r.expect_console("LABR done");
    let lines = r.labr();
    let has = |p: &str| lines.iter().any(|l| l.starts_with(p));
    assert!(
        has("pci 0000:00:00.0 0x1275:0x1275 0x060000"),
        "{lines:?}\n{}",
        r.explain()
    );
    assert!(has("pci 0000:00:1f.0 0x8086:0x7000 0x060100"), "{lines:?}");
    // virtio-rnd: Linux's virtio_pci and virtio_rng drive it, with MSI-X
    // (one vector for configuration, one for the queue).
    assert!(has("pci 0000:00:03.0 0x1af4:0x1005 0x108000"), "{lines:?}");
    assert!(
        has("rng virtio_rng.0 64 differ"),
        "/dev/hwrng did not give varying bytes: {lines:?}"
    );
    let msix: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("irq ") && l.contains("PCI-MSI"))
        .collect();
    assert_eq!(msix.len(), 2, "virtio MSI-X vectors: {lines:?}");
    let modes: Vec<&String> = lines.iter().filter(|l| l.starts_with("msimode ")).collect();
    assert!(
        modes.len() == 2 && modes.iter().all(|l| l.trim_end() == "msimode msix"),
        "{modes:?}"
    );
    assert!(
        msix.iter().any(|l| l.contains("virtio0-input")
            // "irq", "25:", then one count per vCPU (-c 2).
            && l.split_whitespace()
                .skip(2)
                .take(2)
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>()
                > 0),
        "no interrupt counted on the queue's vector: {msix:?}"
    );
    assert!(!has("bad "), "error lines in the guest log: {lines:?}");
    let clocks = lines
        .iter()
        .find(|l| l.starts_with("clocksources"))
        .unwrap();
    assert!(
        clocks.contains("hpet") && clocks.contains("acpi_pm"),
        "{clocks}"
    );
    let rtc: i64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("rtc "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RTC reading: {lines:?}"));
    let host: i64 = r.result("host_now").unwrap().parse().unwrap();
    // The RTC keeps local time (no -u); L1 runs in UTC, so they agree
    // within the boot's duration.
    assert!((rtc - host).abs() < 600, "rtc {rtc} host {host}");
    let ioapic: u32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("ioapic "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(ioapic > 0, "{lines:?}");
    assert!(has("mcfg "), "Linux did not mention MMCONFIG: {lines:?}");
    r.expect_bhyve("1");
}

/// SIGTERM to bhyve presses the ACPI power button (PWRBTN_STS + SCI);
/// Linux's ACPI button driver turns the fixed-hardware button event into
/// a KEY_POWER press on its "Power Button" input device; the guest's
/// handler, reading that device, prints a marker and powers off: bhyve
/// exits 1. Linux's own "reboot: Power down" shows the guest, not bhyve,
/// ended the run (bhyve also exits 1 when it powers off a guest that
/// never enabled ACPI).
#[test]
fn sigterm_reaches_linux_as_a_power_button_press() {
    // An input_event is 24 bytes on x86-64: struct timeval, u16 type,
    // u16 code, s32 value; EV_KEY = 1, KEY_POWER = 116. The device is
    // opened before the ready marker, so no event can be missed.
    let script = r#"
dev=
for e in /sys/class/input/event*; do
    n=$(cat $e/device/name); p=$(cat $e/device/phys)
    [ "$n" = "Power Button" ] && [ "${p#LNXPWRBN}" != "$p" ] && dev=/dev/input/${e##*/}
done
echo "LABR button ${dev:-none}"
dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1 | sed 's/^/LABR rng /'
grep virtio /proc/interrupts | sed 's/^/LABR irq /'
[ -n "$dev" ] || exit 1
exec 3<"$dev"
echo LAB-READY-FOR-SIGTERM
while :; do
    set -- $(dd bs=24 count=1 <&3 2>/dev/null | od -An -tu2 -j16 -N4)
    [ "${1:-}" = 1 ] && [ "${2:-}" = 116 ] && break
done
echo LAB-POWER-KEY-SEEN
poweroff -f
"#;
    let job = format!(
        r#"
{} &
pid=$!
if wait_for console.log LAB-READY-FOR-SIGTERM 240; then
    kill -TERM $pid
    result sent yes
fi
wait_bhyve $pid
cat bhyve.err
"#,
        bhyve_l2("-W -c 1 -s 3,virtio-rnd", "vm-btn")
    );
    let r = run_on(virtio_images(), script, "", &job);
    r.expect_console(&marker(1));
    assert!(
        r.console.contains("LABR button /dev/input/event"),
        "no fixed power button input device\n{}",
        r.explain()
    );
    // -W: virtio-rnd has one MSI vector, which Linux's virtio_pci does
    // not use: it falls back to INTx, through the I/O APIC.
    assert!(r.console.contains("LABR rng "), "{}", r.explain());
    let irq: Vec<&str> = r
        .console
        .lines()
        .filter(|l| l.contains("LABR irq "))
        .collect();
    assert!(
        irq.len() == 1 && irq[0].contains("IO-APIC") && irq[0].contains("fasteoi"),
        "virtio-rnd's interrupt with -W: {irq:?}\n{}",
        r.explain()
    );
    r.expect("sent", "yes");
    r.expect_console("LAB-POWER-KEY-SEEN");
    r.expect_console("reboot: Power down");
    assert!(!r.console.contains(GUEST_END_MARKER), "{}", r.explain());
    r.expect_bhyve("1");
}
