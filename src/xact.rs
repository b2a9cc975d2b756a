//! What a transaction gathers level by level, so that a subtransaction rolled back (`ROLLBACK TO
//! SAVEPOINT`, an exception block) takes its part with it and one committed (`RELEASE`) hands its
//! part to its parent. The feed's pending changes and the write accounting both keep one.

use pgrx::pg_sys;
use std::cell::Cell;
use std::thread::LocalKey;

/// Registers the transaction and subtransaction callbacks of a module once for the backend's
/// life; `registered` is the module's flag.
pub fn register_callbacks_once(
    registered: &'static LocalKey<Cell<bool>>,
    at_transaction_end: pg_sys::XactCallback,
    at_subtransaction_end: pg_sys::SubXactCallback,
) {
    if !registered.get() {
        // SAFETY: plain functions without an argument, registered once per backend for its life.
        unsafe {
            pg_sys::RegisterXactCallback(at_transaction_end, std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(at_subtransaction_end, std::ptr::null_mut());
        }
        registered.set(true);
    }
}

/// What one level gathered; `absorb` merges a committed inner level into it.
pub trait Gathered: Default {
    fn absorb(&mut self, inner: Self);
}

/// What each open (sub)transaction level gathered, innermost last.
pub struct PerLevel<T>(Vec<(i32, T)>);

impl<T: Gathered> PerLevel<T> {
    pub const fn new() -> PerLevel<T> {
        PerLevel(Vec::new())
    }

    /// What the current (sub)transaction level has gathered, made empty when it has nothing yet.
    pub fn current(&mut self) -> &mut T {
        // SAFETY: reads the backend's transaction state.
        let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
        if self.0.last().is_none_or(|(top, _)| *top != level) {
            self.0.push((level, T::default()));
        }
        &mut self.0.last_mut().expect("pushed just above").1
    }

    /// Applies the end of the current subtransaction (from a subtransaction callback, during
    /// which the ending subtransaction is still the current level): a rollback drops what it and
    /// its inner levels gathered and returns it, merged; a commit hands it to the parent level.
    pub fn subtransaction_ended(&mut self, event: pg_sys::SubXactEvent::Type) -> Option<T> {
        use pg_sys::SubXactEvent::*;
        // SAFETY: reads the backend's transaction state.
        let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
        let position = self.0.iter().position(|(at, _)| *at >= level)?;
        match event {
            SUBXACT_EVENT_ABORT_SUB => {
                let mut dropped = T::default();
                self.0.drain(position..).for_each(|(_, inner)| dropped.absorb(inner));
                Some(dropped)
            }
            SUBXACT_EVENT_COMMIT_SUB => {
                let released: Vec<(i32, T)> = self.0.drain(position..).collect();
                if self.0.last().is_none_or(|(top, _)| *top != level - 1) {
                    self.0.push((level - 1, T::default()));
                }
                let parent = &mut self.0.last_mut().expect("pushed just above").1;
                released.into_iter().for_each(|(_, inner)| parent.absorb(inner));
                None
            }
            _ => None,
        }
    }

    /// What each open level gathered, outermost first (for tests).
    #[cfg(any(test, feature = "pg_test"))]
    pub fn levels(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|(_, gathered)| gathered)
    }

    /// Whether any open level's gathering satisfies `test`.
    pub fn any(&self, test: impl Fn(&T) -> bool) -> bool {
        self.0.iter().any(|(_, gathered)| test(gathered))
    }

    /// Everything the transaction gathered, merged, leaving nothing (at its commit or abort).
    pub fn take_all(&mut self) -> T {
        let mut all = T::default();
        std::mem::take(&mut self.0).into_iter().for_each(|(_, level)| all.absorb(level));
        all
    }
}

/// Runs `work` in a subtransaction of its own, kept when `work` returns true and rolled back when
/// it returns false. An error in `work` rolls the subtransaction back and is raised again, so a
/// caller's own subtransaction (a PL/pgSQL exception block) that catches it finds itself current,
/// as PL/Python and PL/Perl leave it.
pub fn in_subtransaction(work: impl FnOnce() -> bool) -> bool {
    // SAFETY: the pattern of PL/pgSQL's exception blocks: the memory context and resource owner
    // of the caller are restored after the subtransaction is begun and after it ends; `work`
    // leaves no SPI connection or snapshot of its own open (on an error, SPI's own end-of-
    // subtransaction cleanup closes what it opened in the subtransaction).
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        let restore = || {
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
        };
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let keep = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(work))
            .catch_others(|error| {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                restore();
                error.rethrow()
            })
            .execute();
        if keep {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        restore();
        keep
    }
}
