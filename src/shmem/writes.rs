//! Write accounting: what each (sub)transaction wrote, told to the launcher when it commits, and
//! the wait of a write over the size cap.

use super::caches::{self, CacheSlot};
use super::slots::{my_slot, State};
use crate::xact::{Gathered, PerLevel};
use pgrx::pg_sys::{self, Oid, TimestampTz};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

/// What a transaction (or one of its subtransactions) wrote, told to the launcher when it
/// commits: before, a sweep could not see the rows yet, and would forget them.
struct Written {
    earliest_expiry: TimestampTz,
    entries: i64,
    /// Bytes written to each cache's table (a transaction seldom writes to more than one).
    bytes: Vec<(Oid, i64)>,
}

impl Default for Written {
    fn default() -> Written {
        Written { earliest_expiry: i64::MAX, entries: 0, bytes: Vec::new() }
    }
}

impl Written {
    fn add_bytes(&mut self, table: Oid, bytes: i64) {
        match self.bytes.iter_mut().find(|(written, _)| *written == table) {
            Some((_, total)) => *total = total.saturating_add(bytes),
            None => self.bytes.push((table, bytes)),
        }
    }
}

impl Gathered for Written {
    fn absorb(&mut self, inner: Written) {
        self.earliest_expiry = self.earliest_expiry.min(inner.earliest_expiry);
        self.entries = self.entries.saturating_add(inner.entries);
        for (table, bytes) in inner.bytes {
            self.add_bytes(table, bytes);
        }
    }
}

/// Over the size cap by this share (a quarter), a write waits for the evictor to make room.
const WAIT_OVER_CAP_DIVISOR: i64 = 4;
/// The longest one transaction's writes wait for room, all together (a `cache_set_many` of many
/// large values included): the evictor may be stopped (`eviction_enabled = off`) or have no worker
/// slot, and then writes go on (the cap is then passed).
const MAX_WAIT_FOR_ROOM: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a write naps between two looks at the live bytes while it waits for room.
const ROOM_NAP_MICROS: std::ffi::c_long = 1000;

thread_local! {
    /// What each open (sub)transaction level wrote, innermost last: a subtransaction rolled
    /// back takes its writes with it, one committed hands them to its parent.
    static WRITTEN: RefCell<PerLevel<Written>> = const { RefCell::new(PerLevel::new()) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// A cache was dropped: once committed, the worker is to sweep (and free what it kept).
    static CACHE_DROPPED: Cell<bool> = const { Cell::new(false) };
    /// How long this transaction's writes have waited for room so far.
    static WAITED: Cell<std::time::Duration> = const { Cell::new(std::time::Duration::ZERO) };
}

/// A cache was dropped: once this transaction commits, its database is due for a sweep, which
/// frees what the cache kept in shared memory.
pub fn note_cache_dropped() {
    register_callbacks();
    CACHE_DROPPED.set(true);
}

fn register_callbacks() {
    crate::xact::register_callbacks_once(
        &CALLBACKS_REGISTERED,
        Some(at_transaction_end),
        Some(at_subtransaction_end),
    );
}

/// A session wrote an entry of `bytes` bytes (key + value) that expires at `expires_at`: its
/// database has pg_cache, and once the transaction commits it is due for a sweep then. Called
/// after the write succeeded, so a role refused the write counts nothing and waits for nothing.
/// Over the size cap of the cache written to (`cap` bytes, as this session knows it, so known from
/// the first write; 0 for none), the write waits until the evictor has made room.
pub fn note_write(expires_at: TimestampTz, bytes: usize, cap: i64) {
    let Some(slot) = my_slot() else {
        return;
    };
    if slot.state() != State::Present {
        slot.set_state(State::Present);
    }
    register_callbacks();
    let table = crate::selected::table();
    WRITTEN.with_borrow_mut(|written| {
        let level = written.current();
        level.earliest_expiry = level.earliest_expiry.min(expires_at);
        level.entries = level.entries.saturating_add(1);
        level.add_bytes(table, bytes as i64);
    });
    let Some(cache) = caches::mine() else {
        return;
    };
    cache.set_size_cap(cap);
    if cap > 0 {
        wait_for_room(cache, cap);
    }
}

/// Waits while the committed live bytes of the cache are over its cap by more than a
/// quarter: the evictor, told by the launcher, removes the entries that expire soonest and
/// measures again. So writers cannot outrun it whatever the size of their values (a 1 MiB value
/// waits as a 1 KiB one does, and adds a thousand times more). Cancellable.
fn wait_for_room(slot: &CacheSlot, cap: i64) {
    let limit = cap.saturating_add(cap / WAIT_OVER_CAP_DIVISOR);
    let started = std::time::Instant::now();
    let budget = MAX_WAIT_FOR_ROOM.saturating_sub(WAITED.get());
    while slot.estimated_live_bytes() > limit && started.elapsed() < budget {
        pgrx::check_for_interrupts!();
        // SAFETY: a plain sleep; interrupts are checked before each.
        unsafe { pg_sys::pg_usleep(ROOM_NAP_MICROS) };
    }
    WAITED.set(WAITED.get() + started.elapsed());
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => {
            WAITED.set(std::time::Duration::ZERO);
            if CACHE_DROPPED.replace(false) {
                if let Some(slot) = my_slot() {
                    // SAFETY: reads the system clock.
                    slot.retry_at(unsafe { pg_sys::GetCurrentTimestamp() });
                }
            }
            let total = WRITTEN.with_borrow_mut(PerLevel::take_all);
            if let (true, Some(slot)) = (total.entries > 0, my_slot()) {
                slot.add_committed(total.earliest_expiry, total.entries);
                // SAFETY: reads a backend global set at connection.
                let database = unsafe { pg_sys::MyDatabaseId };
                for (table, bytes) in total.bytes {
                    if let Some(cache) = caches::existing(database, table) {
                        cache.add_written(bytes);
                    }
                }
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            WAITED.set(std::time::Duration::ZERO);
            CACHE_DROPPED.set(false);
            WRITTEN.with_borrow_mut(PerLevel::take_all);
        }
        _ => {}
    }
}

/// A subtransaction rolled back forgets what it wrote; one committed leaves it to its parent.
#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    WRITTEN.with_borrow_mut(|written| written.subtransaction_ended(event));
}

/// Bytes this transaction has written so far that would be counted at commit.
#[cfg(any(test, feature = "pg_test"))]
fn pending_bytes_in_transaction() -> i64 {
    WRITTEN.with_borrow(|written| {
        written.levels().flat_map(|level| level.bytes.iter().map(|(_, bytes)| bytes)).sum()
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::pending_bytes_in_transaction;
    use pgrx::prelude::*;
    use pgrx::PgTryBuilder;

    /// Runs `sql` in a subtransaction, then rolls it back (`commit` false) or releases it; the
    /// bytes pending just before the subtransaction ends, and whether `sql` failed.
    fn in_subtransaction(sql: &str, commit: bool) -> (i64, bool) {
        // SAFETY: a subtransaction of the test's transaction, ended below on every path.
        unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
        let failed = PgTryBuilder::new(|| {
            Spi::run(sql).expect("statement");
            false
        })
        .catch_others(|_| true)
        .execute();
        let pending = pending_bytes_in_transaction();
        // SAFETY: ends the subtransaction begun above.
        unsafe {
            if commit && !failed {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
        }
        (pending, failed)
    }

    #[pg_test]
    fn a_write_rolled_back_to_a_savepoint_is_not_counted() {
        let before = pending_bytes_in_transaction();
        assert_eq!(in_subtransaction("SELECT cache_set('undone', 'vvvv')", false), (before + 10, false));
        assert_eq!(pending_bytes_in_transaction(), before);
        assert_eq!(in_subtransaction("SELECT cache_set('kept', 'vvvv')", true), (before + 8, false));
        assert_eq!(pending_bytes_in_transaction(), before + 8);
    }

    #[pg_test]
    fn a_write_refused_for_privileges_counts_nothing() {
        Spi::run("CREATE ROLE cache_test_outsider").expect("role");
        let before = pending_bytes_in_transaction();
        let (pending, failed) = in_subtransaction(
            "SET LOCAL ROLE cache_test_outsider; SELECT cache_set('refused', 'vvvv')",
            false,
        );
        assert!(failed, "the write is refused");
        assert_eq!(pending, before, "nothing counted before the refusal");
    }
}
