//! The platform devices every bhyve VM has: the HPET and the ACPI PM
//! timer tick at their rates, HPET timers interrupt on their I/O APIC
//! pins (edge and level), and S5 through PM1a_CNT powers off (exit 1).

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
