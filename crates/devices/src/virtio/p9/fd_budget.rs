//! How many host file descriptors the 9p sessions of this process may
//! hold together. Every fid holds descriptors, so a guest (or several
//! guests' worth of shares) could otherwise take all of RLIMIT_NOFILE
//! and make the rest of bhyve fail (accept, eventfd, open of a disk):
//! the budget is the soft limit minus a reserve for everything else,
//! shared by every 9p device; a session over it gets ENFILE.
//!
//! The soft limit is raised to the hard one once, when the first share
//! is opened (as QEMU does at start-up): Linux keeps a fid per cached
//! dentry, and 1024 descriptors is little. bhyve(8) on FreeBSD raises
//! nothing; only a configuration with a 9p device does so here, and
//! then only the soft limit, which the process could raise itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::share::Res;

/// Descriptors one fid may keep open: its file, the file opened for
/// I/O, and the directory it was found in (shared with other fids, but
/// kept alive by this one).
pub const FDS_PER_FID: usize = 3;
/// Descriptors left for the rest of bhyve (vCPUs, eventfds and irqfds
/// of every queue and vector, disks, taps, sockets) and for the
/// transient ones of a 9p request (a walk's intermediate directories).
pub const RESERVE: usize = 512;

/// A budget of descriptors shared by sessions.
#[derive(Debug)]
pub struct FdBudget {
    limit: usize,
    used: AtomicUsize,
}

impl FdBudget {
    pub fn new(limit: usize) -> Arc<FdBudget> {
        Arc::new(FdBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// The process-wide budget of every 9p device (raises the soft
    /// RLIMIT_NOFILE on first use).
    pub fn global() -> Arc<FdBudget> {
        static G: OnceLock<Arc<FdBudget>> = OnceLock::new();
        G.get_or_init(|| FdBudget::new(limit_for(raise_fd_limit())))
            .clone()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes the descriptors of one fid; ENFILE when the budget is spent.
    pub fn charge_fid(self: &Arc<Self>) -> Res<Charge> {
        let n = FDS_PER_FID;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&v| v <= self.limit)
            })
            .map_err(|_| libc::ENFILE)?;
        Ok(Charge(Some((self.clone(), n))))
    }
}

/// Descriptors taken from a budget, given back on drop.
#[derive(Debug, Default)]
pub struct Charge(Option<(Arc<FdBudget>, usize)>);

impl Charge {
    /// Nothing taken (yet): a fid being built.
    pub fn none() -> Charge {
        Charge(None)
    }

    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some((b, n)) = self.0.take() {
            b.used.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// The budget for a soft limit of `soft` descriptors.
pub fn limit_for(soft: u64) -> usize {
    usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(RESERVE)
}

/// Lifts the soft RLIMIT_NOFILE to the hard one; returns the soft limit
/// in force afterwards.
fn raise_fd_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is a valid rlimit for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            // Unknown: assume the traditional default.
            return 1024;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    l.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_bounded_and_given_back() {
        let b = FdBudget::new(2 * FDS_PER_FID + 1);
        let c1 = b.charge_fid().unwrap();
        let c2 = b.charge_fid().unwrap();
        assert_eq!(b.charge_fid().err(), Some(libc::ENFILE));
        assert_eq!(b.used(), 2 * FDS_PER_FID);
        drop(c1);
        let c3 = b.charge_fid().unwrap();
        drop((c2, c3));
        assert_eq!(b.used(), 0);
        assert!(Charge::none().is_none());
    }

    #[test]
    fn limit_leaves_the_reserve() {
        assert_eq!(limit_for(1024), 1024 - RESERVE);
        assert_eq!(limit_for(100), 0);
        assert_eq!(limit_for(u64::MAX), usize::MAX - RESERVE);
        // The process's own budget follows its (raised) soft limit.
        let g = FdBudget::global();
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
        assert_eq!(l.rlim_cur, l.rlim_max, "soft limit raised");
        assert_eq!(g.limit(), limit_for(l.rlim_cur));
    }
}
