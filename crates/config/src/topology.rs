//! The vCPU topology: `-c` parsing (bhyve's `topology_parse`) and reading
//! it back from the tree (`calc_topology`).

use crate::cnum::strtol;
use crate::{Config, ConfigError};

/// Most vCPUs a guest may have (bhyve(8): "The current maximum number of
/// guest virtual CPUs is 16").
pub const MAX_VCPUS: u16 = 16;

/// Applies a `-c` argument: `[[cpus=]n][,sockets=n][,cores=n][,threads=n]`.
/// A bare item sets `cpus`; later items override earlier ones. An empty
/// argument means one vCPU (all four set to 1). Unknown `key=value`
/// items are bhyve's "invalid cpu topology" usage error. The values are
/// stored unchecked, as bhyve does; [`Topology::from_config`] checks them.
pub fn topology_parse(cfg: &mut Config, opt: &str) -> Result<(), ConfigError> {
    if opt.is_empty() {
        for key in ["sockets", "cores", "threads", "cpus"] {
            cfg.set(key, "1")?;
        }
        return Ok(());
    }
    for item in opt.split(',') {
        let (key, value) = if let Some(v) = item.strip_prefix("cpus=") {
            ("cpus", v)
        } else if let Some(v) = item.strip_prefix("sockets=") {
            ("sockets", v)
        } else if let Some(v) = item.strip_prefix("cores=") {
            ("cores", v)
        } else if let Some(v) = item.strip_prefix("threads=") {
            ("threads", v)
        } else if item.contains('=') {
            return Err(ConfigError::Usage(format!("invalid cpu topology '{opt}'")));
        } else {
            ("cpus", item)
        };
        cfg.set(key, value)?;
    }
    Ok(())
}

/// The guest's CPU topology as bhyve computes it before creating vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    pub cpus: u16,
    pub sockets: u16,
    pub cores: u16,
    pub threads: u16,
}

/// bhyve's `parse_int_value`: a whole C integer (any base) in range.
fn parse_int_value(key: &str, value: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    let (v, end, overflow) = strtol(value);
    if overflow || end == 0 || end != value.len() || v < min || v > max {
        return Err(ConfigError::Invalid(format!(
            "Invalid value for {key}: '{value}'"
        )));
    }
    Ok(v)
}

impl Topology {
    /// [`Topology::calc`] plus the [`MAX_VCPUS`] limit.
    pub fn from_config(cfg: &Config) -> Result<Topology, ConfigError> {
        let t = Self::calc(cfg)?;
        t.check_limit()?;
        Ok(t)
    }

    /// bhyve's check of the vCPU count against what the hypervisor offers
    /// ("N vCPUs requested but only 16 available", exit 4). bhyve makes it
    /// after validating `memory.size`, hence separate from [`Topology::calc`].
    pub fn check_limit(&self) -> Result<(), ConfigError> {
        if self.cpus > MAX_VCPUS {
            return Err(ConfigError::Invalid(format!(
                "{} vCPUs requested but only {MAX_VCPUS} available",
                self.cpus
            )));
        }
        Ok(())
    }

    /// bhyve's `calc_topology`: reads `cpus`, `sockets`, `cores` and
    /// `threads`. Unset values default to 1, except `sockets`, which
    /// defaults to `cpus`; when `cpus` is unset it is the product of the
    /// others. Errors exit with 4.
    pub fn calc(cfg: &Config) -> Result<Topology, ConfigError> {
        let max = i64::from(u16::MAX);
        let read = |key: &str| -> Result<Option<u16>, ConfigError> {
            cfg.get(key)
                .map(|v| parse_int_value(key, &v, 1, max).map(|n| n as u16))
                .transpose()
        };
        let explicit = read("cpus")?;
        let cpus = explicit.unwrap_or(1);
        let cores = read("cores")?.unwrap_or(1);
        let threads = read("threads")?.unwrap_or(1);
        let sockets = read("sockets")?.unwrap_or(cpus);
        let product = u64::from(sockets) * u64::from(cores) * u64::from(threads);
        if product > u64::from(u16::MAX) {
            return Err(ConfigError::Invalid(format!(
                "Computed number of vCPUs too high: {product}"
            )));
        }
        let cpus = match explicit {
            Some(n) if u64::from(n) != product => {
                return Err(ConfigError::Invalid(format!(
                    "Topology ({sockets} sockets, {cores} cores, {threads} threads) \
                     does not match {n} vCPUs"
                )));
            }
            Some(n) => n,
            None => product as u16,
        };
        Ok(Topology {
            cpus,
            sockets,
            cores,
            threads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(c: &str) -> Result<Topology, ConfigError> {
        let mut cfg = Config::new();
        topology_parse(&mut cfg, c)?;
        Topology::from_config(&cfg)
    }

    fn t(cpus: u16, sockets: u16, cores: u16, threads: u16) -> Topology {
        Topology {
            cpus,
            sockets,
            cores,
            threads,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(
            Topology::from_config(&Config::new()).unwrap(),
            t(1, 1, 1, 1)
        );
        assert_eq!(topo("2").unwrap(), t(2, 2, 1, 1));
        assert_eq!(topo("cpus=4").unwrap(), t(4, 4, 1, 1));
        assert_eq!(topo("").unwrap(), t(1, 1, 1, 1));
        assert_eq!(topo("sockets=2,cores=2,threads=2").unwrap(), t(8, 2, 2, 2));
        assert_eq!(topo("4,sockets=1,cores=4").unwrap(), t(4, 1, 4, 1));
        assert_eq!(topo("0x4").unwrap(), t(4, 4, 1, 1));
        // last one wins
        assert_eq!(topo("2,cpus=3").unwrap(), t(3, 3, 1, 1));
    }

    #[test]
    fn errors() {
        let e = topo("cpus=2,maxcpus=4").unwrap_err();
        assert_eq!(e.exit_code(), crate::EX_USAGE);
        assert_eq!(e.to_string(), "invalid cpu topology 'cpus=2,maxcpus=4'");
        let e = topo("x").unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (4, "Invalid value for cpus: 'x'".into())
        );
        assert_eq!(
            topo("0").unwrap_err().to_string(),
            "Invalid value for cpus: '0'"
        );
        assert_eq!(
            topo("2,,").unwrap_err().to_string(),
            "Invalid value for cpus: ''"
        );
        assert_eq!(
            topo("4,cores=2").unwrap_err().to_string(),
            "Topology (4 sockets, 2 cores, 1 threads) does not match 4 vCPUs"
        );
        assert_eq!(
            topo("sockets=65535,cores=2").unwrap_err().to_string(),
            "Computed number of vCPUs too high: 131070"
        );
        let e = topo("17").unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (4, "17 vCPUs requested but only 16 available".into())
        );
        assert_eq!(topo("16").unwrap().cpus, 16);
    }
}
