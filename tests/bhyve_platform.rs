//! The platform devices every bhyve VM has: the HPET and the ACPI PM
//! timer tick at their rates, HPET timers interrupt on their I/O APIC
//! pins (edge and level), and S5 through PM1a_CNT powers off (exit 1).
//! The RTC shows the host's date (local, or UTC with `-u`), its NVRAM the
//! memory and vCPUs, and its periodic interrupt reaches I/O APIC pin 8.

mod common;

use common::*;

#[test]
fn hpet_and_pm_timer_tick_and_interrupt_then_s5_powers_off() {
    let s = Scratch::new("hpetpm");
    let k = kernel_opt(&s.guest("hpet_pm"));
    let o = s.run(&["-l", "com1,stdio", "-l", "pc-testdev", "-o", &k, "vm0"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", stderr(&o));
    let mut lines = out.lines();
    let counts = lines.next().unwrap_or_default();
    let nums: Vec<u64> = counts
        .strip_prefix("hpet_pm: pm ")
        .unwrap_or_else(|| panic!("{out}"))
        .split(" hpet ")
        .map(|n| u64::from_str_radix(n.trim_start_matches("0x"), 16).unwrap())
        .collect();
    let (pm, hpet) = (nums[0] as f64, nums[1] as f64);
    assert!(pm >= 35795.0, "{out}");
    let ratio = hpet / pm;
    let expect = 16_777_216.0 / 3_579_545.0;
    assert!(
        (ratio / expect - 1.0).abs() < 0.05,
        "HPET/PM ticks {ratio} vs {expect}: {out}"
    );
    assert_eq!(
        lines.collect::<Vec<_>>(),
        [
            "hpet_pm: timer 0 edge interrupt on pin 20",
            "hpet_pm: timer 1 0x3 level interrupts on pin 21",
            "hpet_pm: entering S5",
        ],
        "{out}"
    );
}

/// A POSIX zone 5:30 east of UTC, so local time and UTC differ on any
/// host (no zoneinfo files needed).
const TZ_EAST_0530: (&str, i64) = ("IST-5:30", 5 * 3600 + 1800);

/// The seconds since 1970 that an `rtc: bcd|binary C Y M D h m s` line
/// shows; `bcd`: the hex digits are decimal digits.
fn rtc_line_secs(line: &str, prefix: &str, bcd: bool) -> i64 {
    let f: Vec<u32> = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} lacks {prefix:?}"))
        .split_whitespace()
        .map(|n| {
            let digits = n.trim_start_matches("0x");
            u32::from_str_radix(digits, if bcd { 10 } else { 16 }).unwrap()
        })
        .collect();
    assert_eq!(f.len(), 7, "{line}");
    bhyve_devices::calendar::DateTime {
        year: i64::from(f[0] * 100 + f[1]),
        month: f[2],
        day: f[3],
        hour: f[4],
        min: f[5],
        sec: f[6],
        wday: 0,
    }
    .to_secs()
    .unwrap_or_else(|| panic!("not a time: {line}"))
}

/// `tag` names the scratch directory (tests run in parallel).
fn run_rtc_guest(tag: &str, extra: &[&str], expect_offset: i64, expect_cmos: &str) {
    let s = Scratch::new(tag);
    let k = kernel_opt(&s.guest("rtc"));
    let mut args = extra.to_vec();
    args.extend(["-l", "com1,stdio", "-l", "pc-testdev", "-o", &k, "vm0"]);
    let child = s.command(&args).env("TZ", TZ_EAST_0530.0).spawn().unwrap();
    let o = wait_deadline(child);
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(bhyve_testguests::PASS_STATUS),
        "{out}\n{}",
        stderr(&o)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[0], "rtc: update edge");
    let bcd = rtc_line_secs(lines[1], "rtc: bcd ", true);
    let bin = rtc_line_secs(lines[2], "rtc: binary ", false);
    assert!((0..=2).contains(&(bin - bcd)), "{out}");
    // Read a few seconds before `host`; a minute of slack either way
    // (the date may roll over in between: whole seconds are compared).
    let want = host + expect_offset;
    assert!(
        (bcd - want).abs() <= 60,
        "guest shows {bcd}, host {want} (offset {expect_offset}): {out}"
    );
    assert_eq!(lines[3], format!("rtc: cmos {expect_cmos}"), "{out}");
    assert_eq!(lines[4], "rtc: 0x5 periodic interrupts on pin 8");
}

#[test]
fn rtc_keeps_local_time_and_describes_memory_and_cpus() {
    // 4 GiB: 3 GiB below the hole (0xbf00 64 KiB units above 16 MiB),
    // 1 GiB above 4 GiB (0x4000 units); 2 vCPUs (0x5f holds count - 1).
    run_rtc_guest(
        "rtc-local",
        &["-c", "2", "-m", "4G"],
        TZ_EAST_0530.1,
        "0xbf00 0x4000 0x1",
    );
}

#[test]
fn rtc_keeps_utc_with_u() {
    run_rtc_guest("rtc-utc", &["-u"], 0, "0xf00 0x0 0x0");
}
