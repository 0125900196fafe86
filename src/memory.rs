//! The memory budget: every byte that grows with what producers send (the views of
//! retained states, wherever they are held; cached frames) is charged to one server-wide [`Budget`], per stream through an [`Account`]. A
//! [`Charge`] is returned to its account when it is dropped, so what is accounted is
//! what is alive, whoever holds it.
//!
//! The budget itself only counts; what to do when it is reached (shorter history, then
//! refusing new streams, then refusing states) is decided by the hub (`hub.rs`).

use std::{
    fmt,
    mem::size_of,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc, Mutex, Weak,
    },
};

use crate::model::State;

/// Fixed cost charged per retained state on top of its arrays: the state, its shared
/// handle and the history entry that holds it.
const STATE_OVERHEAD: usize = 128;

/// Bytes a state's view costs in memory: its arrays plus a fixed overhead.
pub fn state_bytes(state: &State) -> usize {
    STATE_OVERHEAD
        + state.phases.capacity() * size_of::<f64>()
        + state.spins.capacity() * size_of::<i8>()
}

/// The server-wide limit and what is charged against it.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Every live account, for the per-stream gauge.
    accounts: Mutex<Vec<Weak<Account>>>,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
            accounts: Mutex::new(Vec::new()),
        })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Whether `bytes` more would stay within `fraction` of the limit.
    pub fn fits(&self, bytes: usize, fraction: Fraction) -> bool {
        self.used().saturating_add(bytes) <= fraction.of(self.limit)
    }

    /// Bytes that must be freed before `bytes` more fit within `fraction` of the limit.
    pub fn shortfall(&self, bytes: usize, fraction: Fraction) -> usize {
        self.used()
            .saturating_add(bytes)
            .saturating_sub(fraction.of(self.limit))
    }

    /// A new account (one per stream, named after it) charging this budget.
    pub fn account(self: &Arc<Budget>, name: &str) -> Arc<Account> {
        let account = Arc::new(Account {
            name: name.to_owned(),
            budget: self.clone(),
            used: AtomicUsize::new(0),
        });
        let mut accounts = self.accounts.lock().expect("account list poisoned");
        accounts.retain(|a| a.strong_count() > 0);
        accounts.push(Arc::downgrade(&account));
        account
    }

    /// Each live account's name and the bytes charged to it now.
    pub fn accounts(&self) -> Vec<(String, usize)> {
        let accounts = self.accounts.lock().expect("account list poisoned");
        accounts
            .iter()
            .filter_map(Weak::upgrade)
            .map(|a| (a.name.clone(), a.used()))
            .collect()
    }
}

/// A share of the limit, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction(pub u8);

impl Fraction {
    /// The whole limit.
    pub const ALL: Fraction = Fraction(100);

    pub(crate) fn of(self, limit: usize) -> usize {
        limit / 100 * usize::from(self.0) + limit % 100 * usize::from(self.0) / 100
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// One stream's share of the budget.
#[derive(Debug)]
pub struct Account {
    name: String,
    budget: Arc<Budget>,
    used: AtomicUsize,
}

impl Account {
    /// Bytes charged to this account now.
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// The budget this account charges.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Charges `bytes` until the returned [`Charge`] is dropped.
    pub fn charge(self: &Arc<Account>, bytes: usize) -> Charge {
        let mut c = Charge {
            account: self.clone(),
            bytes: 0,
        };
        c.grow(bytes);
        c
    }
}

/// Bytes charged to an account while this lives; it can grow, and gives everything
/// back when dropped.
#[derive(Debug)]
pub struct Charge {
    account: Arc<Account>,
    bytes: usize,
}

impl Charge {
    /// Charges `bytes` more.
    pub fn grow(&mut self, bytes: usize) {
        self.bytes += bytes;
        self.account.used.fetch_add(bytes, Relaxed);
        self.account.budget.used.fetch_add(bytes, Relaxed);
    }

    /// Gives back everything charged so far, keeping the charge for later growth.
    pub fn clear(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        self.account.used.fetch_sub(bytes, Relaxed);
        self.account.budget.used.fetch_sub(bytes, Relaxed);
    }

    /// Bytes charged now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_given_back_when_dropped() {
        let budget = Budget::new(1000);
        let a = budget.account("a");
        let b = budget.account("b");
        let mut x = a.charge(300);
        let y = b.charge(200);
        assert_eq!((a.used(), b.used(), budget.used()), (300, 200, 500));
        x.grow(100);
        assert_eq!(budget.used(), 600);
        assert!(budget.fits(400, Fraction::ALL));
        assert!(!budget.fits(401, Fraction::ALL));
        assert!(budget.fits(300, Fraction(90)));
        assert!(!budget.fits(301, Fraction(90)));
        assert_eq!(budget.shortfall(400, Fraction(90)), 100);
        assert_eq!(
            budget.accounts(),
            vec![("a".to_owned(), 400), ("b".to_owned(), 200)]
        );
        drop(y);
        assert_eq!((b.used(), budget.used()), (0, 400));
        drop(b);
        assert_eq!(budget.accounts(), vec![("a".to_owned(), 400)]);
        x.clear();
        assert_eq!((a.used(), budget.used()), (0, 0));
        x.grow(7);
        drop(x);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn fractions_do_not_overflow() {
        assert_eq!(Fraction(90).of(usize::MAX), usize::MAX / 100 * 90 + 13);
        assert_eq!(Fraction(90).of(1000), 900);
        assert_eq!(Fraction::ALL.of(7), 7);
    }
}
