//! Sliding hits that do not write: the new expiry of a hit is recorded as a pending touch in
//! shared memory (`shmem::touches`), and the database's eviction worker writes the touches in
//! batches of its own ([`apply_pending`]). Every decision on whether an entry is live goes
//! through [`live_until`] or [`expiry`] here, or through `pg_cache_pending_expiry` in the kept
//! statements, so an entry read within its sliding window never expires, written or not.
//!
//! Without the library preloaded there is no touch table, and before `ALTER EXTENSION pg_cache
//! UPDATE` the statements cannot see one: then a hit slides the row itself, as before 0.3.0;
//! so it does when the table (or the database's share of it) is full, and those fallbacks are
//! counted.

use super::statements::{timestamptz, with_statements};
use crate::access::{self, Direct, Row, Slid, Version};
use crate::expiry::{now, Policy};
use crate::gucs;
use crate::shmem::leases::{self, KeyId};
use crate::shmem::slots::{self as registry, Slot as DatabaseSlot};
use crate::shmem::stats::{self, Counter};
use crate::shmem::touches::{self, Hit};
use pgrx::pg_sys::{self, ItemPointerData, TimestampTz};
use std::cell::OnceCell;

/// The longest a recorded touch waits for the worker, and the shortest: applying touches more
/// often than this costs the worker more than it saves anyone.
const APPLY_WITHIN_MICROS: (i64, i64) = (100_000, 10_000_000);

/// Touches the worker writes per transaction.
pub const APPLY_BATCH: usize = 4096;

/// The expiry of `key`'s entry stored with the expiry `stored`, its pending touch included
/// (only a `sliding` entry is touched: an absolute one stored with the same expiry later is not).
pub fn expiry(key: &str, stored: TimestampTz, sliding: bool) -> TimestampTz {
    if !sliding || !touches::available() {
        return stored;
    }
    pending_expiry(access::table(), key, stored)
}

/// [`expiry`] of `key` in `table` (the kept statements name it).
pub fn pending_expiry(table: pg_sys::Oid, key: &str, stored: TimestampTz) -> TimestampTz {
    if !touches::available() {
        return stored;
    }
    touches::expiry(&KeyId::of(table, key), stored)
}

/// Whether `key`'s entry, stored with the expiry `stored`, is live at `now`: a pending touch is
/// looked for only once the stored expiry has passed (before, it decides nothing).
pub fn is_live(key: &str, stored: TimestampTz, sliding: bool, now: TimestampTz) -> bool {
    stored > now || expiry(key, stored, sliding) > now
}

/// What the hits of one call may do, decided once for all its keys.
pub struct Reading {
    table: pg_sys::Oid,
    /// Hits move sliding expiries (not a peek, a read-only transaction or a role that may not).
    slides: bool,
    /// Where touches are counted, when hits record them rather than write: looked up at the
    /// first sliding entry (the function lookup reads pg_depend once per backend, which a call
    /// that meets only absolute entries need not pay).
    deferring: OnceCell<Option<&'static DatabaseSlot>>,
    /// The read took a snapshot of its own (READ COMMITTED): what it read is the newest version.
    newest_read: bool,
    limit: i64,
    granularity: i64,
    /// When no touch can be recorded (the table is full), the hit slides the row itself; a
    /// batch does not: it would hold rows that writers then wait for.
    slides_when_full: bool,
    /// The clock when the call began: absolute entries are live or not as of then, as a
    /// statement's rows are as of its snapshot (a sliding one is judged at the clock's time under
    /// its partition's lock).
    started: TimestampTz,
}

impl Reading {
    /// For hits of `table` that move sliding expiries when `slides`.
    pub fn new(table: pg_sys::Oid, slides: bool) -> Reading {
        Reading {
            table,
            slides,
            deferring: OnceCell::new(),
            // SAFETY: reads a backend-local setting.
            newest_read: unsafe { pg_sys::XactIsoLevel } < pg_sys::XACT_REPEATABLE_READ as i32,
            limit: i64::from(gucs::MAX_TOUCHES_PER_DATABASE.get()),
            granularity: gucs::refresh_granularity_micros(),
            slides_when_full: true,
            started: now(),
        }
    }

    /// Where touches are counted, when this call's hits record them.
    fn deferring(&self) -> Option<&'static DatabaseSlot> {
        *self.deferring.get_or_init(|| {
            // Under row-level security the slide is the role's own UPDATE, which the policies
            // may narrow: no touch (the worker writes touches as the table's owner).
            registry::my_slot().filter(|_| {
                self.slides
                    && touches::available()
                    && access::has_pending_expiry_function()
                    && !leases::row_security_enforced(self.table)
            })
        })
    }

    /// For a batch (`cache_get_many`), which never holds a row: with the touch table full, its
    /// hits do not slide.
    pub fn for_batch(self) -> Reading {
        Reading { slides_when_full: false, ..self }
    }

    /// A hit of `row`, stored under `key`: until when the entry is live (`None`: it has
    /// expired), its expiry moved as its policy says (recorded as a touch, or written here).
    pub fn live_until(&self, key: &str, row: &Row) -> Option<TimestampTz> {
        let policy = Policy::from_columns(row.sliding, row.absolute_expires_at);
        if !matches!(policy, Policy::Sliding { .. }) {
            return (row.expires_at > self.started).then_some(row.expires_at);
        }
        let granularity = self.granularity;
        let Some(database) = self.deferring() else {
            // No touch is recorded; one may still be pending (the table or its share was full).
            let expires_at = pending_expiry(self.table, key, row.expires_at);
            let now = now();
            if expires_at <= now {
                return None;
            }
            let next = policy.slide(now, expires_at, granularity).filter(|_| self.slides);
            return Some(match next {
                Some(next) if slide(key, row, next) => next,
                _ => expires_at,
            });
        };
        let hit = touches::hit(
            &KeyId::of(self.table, key),
            row.ctid,
            row.expires_at,
            self.newest_read,
            database,
            self.limit,
            |now, expires_at| policy.slide(now, expires_at, granularity),
        );
        match hit {
            Hit::Expired => None,
            Hit::Live { expires_at, recorded } => {
                if recorded {
                    stats::count(Counter::TouchesRecorded, 1);
                    let (soonest, latest) = APPLY_WITHIN_MICROS;
                    database.due_by_touches(now() + granularity.clamp(soonest, latest));
                }
                Some(expires_at)
            }
            Hit::Superseded { expires_at } => Some(expires_at),
            Hit::NotRecorded { expires_at, next } => {
                stats::count(Counter::TouchFallbacks, 1);
                Some(if self.slides_when_full && slide(key, row, next) { next } else { expires_at })
            }
        }
    }
}

/// What one [`apply_pending`] did.
pub struct Applied {
    /// Touches written.
    pub written: i64,
    /// Some stay pending: another session held their rows.
    pub busy: bool,
    /// It took a whole batch: more may be pending.
    pub full: bool,
}

/// Frees what shared memory keeps for cache tables of this database that no longer exist
/// (`cache_drop`, `DROP EXTENSION`): their pending touches, which hold the database's share, and
/// their statistics slots. In a transaction.
pub fn forget_dropped_caches() {
    // SAFETY: reads a backend global set at connection.
    let database = unsafe { pg_sys::MyDatabaseId };
    touches::forget_tables(database, access::relation_exists);
    crate::shmem::caches::forget_where(database, access::relation_exists);
}

/// Writes up to [`APPLY_BATCH`] pending touches of this database's cache table, each only while
/// its row still holds the key and the expiry it was read with; those whose row another session
/// holds stay pending. In a transaction, as a role that may update the table.
pub fn apply_pending() -> Applied {
    let table = access::table();
    // SAFETY: reads a backend global set at connection.
    let database = unsafe { pg_sys::MyDatabaseId };
    let pending = touches::pending(database, table, APPLY_BATCH);
    let mut applied = 0;
    let mut busy = false;
    for touch in &pending {
        pgrx::check_for_interrupts!();
        let is_key = |key: &str| KeyId::of(table, key) == touch.key;
        let slid = match access::slide_version(touch.ctid, Version::Visible, is_key, touch.guard, touch.next)
        {
            Direct::Done(slid) => slid,
            // The table is not as a released version made it: the statement checks the same.
            Direct::Declined => slide_touched(touch.ctid, touch.guard, touch.next),
        };
        match slid {
            Slid::Written(ctid) => {
                applied += 1;
                touches::settle(touch, Some((touch.next, ctid)));
            }
            Slid::Unchanged => touches::settle(touch, None),
            Slid::Busy => busy = true,
        }
    }
    stats::count(Counter::TouchesApplied, applied);
    Applied { written: applied, busy, full: pending.len() == APPLY_BATCH }
}

/// Moves the expiry of the version of `row` that was read to `next`; false when another session
/// changed the entry meanwhile (its version stands).
fn slide(key: &str, row: &Row, next: TimestampTz) -> bool {
    // A read never waits, not even for a table lock a slide's write would need (CREATE INDEX,
    // a LOCK TABLE … IN SHARE MODE): then the entry keeps its expiry.
    // SAFETY: a lock request that does not wait; held to the end of the transaction, as the
    // UPDATE's own would be.
    let locked =
        unsafe { pg_sys::ConditionalLockRelationOid(access::table(), pg_sys::RowExclusiveLock as _) };
    if !locked {
        return false;
    }
    if let Direct::Done(moved) = access::slide(key, row.ctid, row.expires_at, next) {
        return moved;
    }
    let args = [
        row.ctid.into(),
        key.into(),
        timestamptz(next).into(),
        timestamptz(row.expires_at).into(),
        row.sliding.into(),
        row.absolute_expires_at.map(timestamptz).into(),
    ];
    with_statements(|client, statements| {
        client.update(&statements.slide, None, &args).expect("slide").len() == 1
    })
}

/// Writes a pending touch of the row version at `ctid`, read with the expiry `guard`, as the
/// expiry `next`, through the kept statement (where the direct path declines). The statement
/// finds the key's touch through `pg_cache_pending_expiry`, which also checks the key.
fn slide_touched(ctid: ItemPointerData, guard: TimestampTz, next: TimestampTz) -> Slid {
    with_statements(|client, statements| {
        let Some(apply_touch) = &statements.apply_touch else {
            return Slid::Unchanged;
        };
        let args = [ctid.into(), timestamptz(guard).into(), timestamptz(next).into()];
        let rows = client.update(apply_touch, None, &args).expect("apply touch");
        if rows.is_empty() {
            return Slid::Unchanged;
        }
        match rows.first().get::<ItemPointerData>(1).ok().flatten() {
            Some(written) => Slid::Written(written),
            None => Slid::Unchanged,
        }
    })
}
