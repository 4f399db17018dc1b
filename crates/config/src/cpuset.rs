//! Host CPU pinning: `-p vcpu:hostcpu` (bhyve's `pincpu_parse`) and the
//! `vcpu.N.cpuset` lists it builds (`parse_cpuset`).

use std::collections::BTreeSet;

use crate::cnum::{scanf_ints, strtoul};
use crate::{Config, ConfigError};

/// FreeBSD's userland `CPU_SETSIZE`: host CPU numbers must be below it.
pub const CPU_SETSIZE: i32 = 1024;

/// bhyve builds the variable name in a 16-byte buffer; longer names are
/// cut off (only reachable with absurd vCPU numbers).
fn cpuset_key(vcpu: i32) -> String {
    let mut key = format!("vcpu.{vcpu}.cpuset");
    key.truncate(15);
    key
}

/// Applies `-p vcpu:hostcpu`: appends `hostcpu` to `vcpu.<vcpu>.cpuset`.
pub fn pincpu_parse(cfg: &mut Config, opt: &str) -> Result<(), ConfigError> {
    let usage = || ConfigError::Usage(format!("invalid vcpu pinning configuration '{opt}'"));
    let v = scanf_ints(opt, "%d:%d");
    let [vcpu, pcpu] = v[..] else {
        return Err(usage());
    };
    if vcpu < 0 || !(0..CPU_SETSIZE).contains(&pcpu) {
        return Err(usage());
    }
    let key = cpuset_key(vcpu);
    let value = match cfg.get(&key) {
        Some(old) => format!("{old},{pcpu}"),
        None => pcpu.to_string(),
    };
    cfg.set(&key, &value)
}

/// Parses a `vcpu.N.cpuset` list: host CPU numbers and `a-b` ranges
/// separated by commas (numbers in C syntax: `0x10` works).
pub fn parse_cpuset(vcpu: usize, list: &str) -> Result<BTreeSet<u32>, ConfigError> {
    let invalid = || ConfigError::Invalid(format!("invalid cpuset for vcpu {vcpu}: '{list}'"));
    let mut set = BTreeSet::new();
    let mut start: Option<i32> = None;
    let mut token = list;
    loop {
        let (value, end, _) = strtoul(token);
        if end == 0 {
            return Err(invalid());
        }
        // bhyve stores strtoul's result in an int.
        let pcpu = value as i32;
        if !(0..CPU_SETSIZE).contains(&pcpu) {
            return Err(ConfigError::Invalid(format!(
                "hostcpu '{pcpu}' outside valid range from 0 to {}",
                CPU_SETSIZE - 1
            )));
        }
        let rest = &token[end..];
        match rest.chars().next() {
            None | Some(',') => {
                if let Some(s) = start.take() {
                    if s > pcpu {
                        return Err(ConfigError::Invalid(format!(
                            "Invalid hostcpu range {s}-{pcpu}"
                        )));
                    }
                    set.extend((s..pcpu).map(|c| c as u32));
                }
                set.insert(pcpu as u32);
            }
            Some('-') => {
                if start.is_some() {
                    return Err(invalid());
                }
                start = Some(pcpu);
            }
            Some(_) => return Err(invalid()),
        }
        if rest.is_empty() {
            return Ok(set);
        }
        token = &rest[1..];
    }
}

/// The host CPU sets of vCPUs `0..ncpus` (bhyve's `build_vcpumaps`):
/// `None` where no `vcpu.N.cpuset` is configured.
pub fn vcpu_cpusets(cfg: &Config, ncpus: usize) -> Result<Vec<Option<BTreeSet<u32>>>, ConfigError> {
    (0..ncpus)
        .map(|vcpu| {
            cfg.get(&format!("vcpu.{vcpu}.cpuset"))
                .map(|list| parse_cpuset(vcpu, &list))
                .transpose()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_appends() {
        let mut cfg = Config::new();
        pincpu_parse(&mut cfg, "0:1").unwrap();
        pincpu_parse(&mut cfg, "1:2").unwrap();
        pincpu_parse(&mut cfg, "0:3").unwrap();
        // The re-set moves within node vcpu.0; the node keeps its place.
        assert_eq!(cfg.dump(), "vcpu.0.cpuset=1,3\nvcpu.1.cpuset=2\n");
        let sets = vcpu_cpusets(&cfg, 3).unwrap();
        assert_eq!(
            sets[0]
                .as_ref()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(sets[2], None);
    }

    #[test]
    fn pinning_errors() {
        let mut cfg = Config::new();
        for bad in ["", "1", "a:b", "-1:0", "0:-1", "0:1024", "1-2"] {
            let e = pincpu_parse(&mut cfg, bad).unwrap_err();
            assert_eq!(e.exit_code(), crate::EX_USAGE);
            assert_eq!(
                e.to_string(),
                format!("invalid vcpu pinning configuration '{bad}'")
            );
        }
        pincpu_parse(&mut cfg, "2:1023").unwrap();
    }

    #[test]
    fn cpuset_lists() {
        let v = |s| parse_cpuset(0, s).map(|s| s.into_iter().collect::<Vec<_>>());
        assert_eq!(v("1,3-5,0x8").unwrap(), [1, 3, 4, 5, 8]);
        assert_eq!(v("7").unwrap(), [7]);
        assert_eq!(v("2-2").unwrap(), [2]);
        assert_eq!(
            v("5-3").unwrap_err().to_string(),
            "Invalid hostcpu range 5-3"
        );
        assert_eq!(
            v("1-2-3").unwrap_err().to_string(),
            "invalid cpuset for vcpu 0: '1-2-3'"
        );
        assert_eq!(
            v("1,").unwrap_err().to_string(),
            "invalid cpuset for vcpu 0: '1,'"
        );
        assert_eq!(v("x").unwrap_err().exit_code(), 4);
        assert_eq!(
            v("1024").unwrap_err().to_string(),
            "hostcpu '1024' outside valid range from 0 to 1023"
        );
    }
}
