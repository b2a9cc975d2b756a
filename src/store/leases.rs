//! Leases in transactions: a miss that grants one, a fill that stores the value only while its
//! lease is current, and the writes that cancel leases when they commit.
//!
//! Granting and releasing happen at once, outside the caller's transaction (a rollback does not
//! undo a lease). A fill is transactional: its lease ends, and waiters wake, when it commits; a
//! rolled-back fill (or savepoint) releases the lease. A write of a key (`cache_set`,
//! `cache_remove`, …) cancels the key's lease when it commits, and a removal by tag or prefix, or
//! `cache_clear`, every lease of the table, so a fill that comes after it is refused (Facebook's
//! lease rule). Eviction cancels nothing: it says nothing about whether a value is still right.

use super::{hit, now, Hit, Lookup};
use crate::shmem::leases::{self as table, End, Grant, KeyId};
use crate::xact::{Gathered, PerLevel};
use pgrx::pg_sys::{self, TimestampTz};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;

/// A transaction's writes naming more keys than this cancel every lease of the table instead.
const MAX_NAMED_KEYS: usize = 10_000;

/// Calls that read the key again because it changed while they read, before they give up and
/// report `wait`.
const MAX_REREADS: usize = 16;

/// What a transaction level did that leases care about.
#[derive(Default)]
struct Pending {
    /// The keys written, each once.
    changed: HashSet<KeyId>,
    /// A write of more keys than [`MAX_NAMED_KEYS`], or by tag or prefix: every lease of the
    /// table (its OID) ends.
    changed_all: Option<u32>,
    filled: Vec<(KeyId, [u8; 16])>,
}

impl Gathered for Pending {
    fn absorb(&mut self, inner: Pending) {
        self.changed_all = self.changed_all.or(inner.changed_all);
        self.changed.extend(inner.changed);
        self.filled.extend(inner.filled);
        self.bound();
    }
}

impl Pending {
    /// Beyond [`MAX_NAMED_KEYS`] distinct keys, every lease of the table ends instead.
    fn bound(&mut self) {
        if self.changed.len() > MAX_NAMED_KEYS {
            self.changed_all = self.changed_all.or(self.changed.iter().next().map(|key| key.table));
            self.changed = HashSet::new();
        }
    }

    fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.changed_all.is_none() && self.filled.is_empty()
    }
}

thread_local! {
    static PENDING: RefCell<PerLevel<Pending>> = const { RefCell::new(PerLevel::new()) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

fn pending(gather: impl FnOnce(&mut Pending)) {
    if !CALLBACKS_REGISTERED.get() {
        // SAFETY: plain functions without an argument, registered once per backend for its life.
        unsafe {
            pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(at_subtransaction_end), std::ptr::null_mut());
        }
        CALLBACKS_REGISTERED.set(true);
    }
    PENDING.with_borrow_mut(|levels| {
        let level = levels.current();
        gather(level);
        level.bound();
    });
}

/// A write of `key` in this transaction: its lease ends when the transaction commits, also a
/// lease granted after this write and before its commit (its holder could not see the write).
pub fn changed_key(key: &str) {
    if table::available() {
        let id = KeyId::of(crate::access::table(), key);
        pending(|level| {
            level.changed.insert(id);
        });
    }
}

/// A write of keys this transaction cannot name (by tag or prefix, or all): every lease of the
/// table ends when it commits.
pub fn changed_all() {
    if table::available() {
        let table = crate::access::table().to_u32();
        pending(|level| level.changed_all = Some(table));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        // A prepared transaction commits in another session, which could not end its leases:
        // its writes cancel leases now, and a fill is refused (its lease released).
        XACT_EVENT_PRE_PREPARE => {
            let mut all = PENDING.with_borrow_mut(PerLevel::take_all);
            let fills = std::mem::take(&mut all.filled);
            apply(all, true);
            if !fills.is_empty() {
                apply(Pending { filled: fills, ..Pending::default() }, false);
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "pg_cache: cannot PREPARE a transaction that ran cache_fill",
                    "Fill in a transaction of its own; its lease was released."
                );
            }
        }
        // After the commit: nothing here may raise an error.
        XACT_EVENT_COMMIT => {
            let all = PENDING.with_borrow_mut(PerLevel::take_all);
            apply(all, true);
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            let all = PENDING.with_borrow_mut(PerLevel::take_all);
            apply(all, false);
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _subxact: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if let Some(rolled_back) = PENDING.with_borrow_mut(|levels| levels.subtransaction_ended(event)) {
        apply(rolled_back, false);
    }
}

/// Ends the leases of what a transaction (or savepoint) did: at its commit, fills end their
/// leases as filled and writes cancel; at its rollback, fills release their leases.
fn apply(pending: Pending, committed: bool) {
    if pending.is_empty() {
        return;
    }
    let now = now();
    if !committed {
        for (key, lease) in &pending.filled {
            table::end(key, lease, End::Released, now);
        }
        return;
    }
    for (key, lease) in &pending.filled {
        table::end(key, lease, End::Filled, now);
    }
    // Nothing to cancel while no lease is held anywhere (the common case: no lock taken).
    if !table::any_held() {
        return;
    }
    // SAFETY: reads a backend global.
    let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
    if let Some(oid) = pending.changed_all {
        table::cancel(database, oid, None::<std::iter::Empty<&KeyId>>, now);
    } else if !pending.changed.is_empty() {
        table::cancel(database, 0, Some(pending.changed.iter()), now);
    }
}

/// What `cache_get_or_lease` answers.
pub enum Answer {
    /// A live entry. With a lease, this caller was picked to refresh it early (XFetch).
    Hit(Hit, Option<[u8; 16]>),
    /// No live entry, and this caller holds the lease to compute it; with the value of the
    /// entry that expired less than `grace` ago, if any.
    Miss([u8; 16], Option<Vec<u8>>),
    /// The entry expired less than `grace` ago and another caller holds the lease: its value.
    Stale(Vec<u8>),
    /// No live entry, and another caller holds the lease (still, after waiting up to `wait`).
    Wait,
}

/// How a caller asks.
pub struct Asking {
    pub lease_ttl: i64,
    pub wait: i64,
    pub beta: f64,
    pub grace: i64,
    /// Raised when no lease can be granted: `limit` are held in the database (true) or server.
    pub full: fn(usize, bool) -> !,
    /// Raised when the caller would wait in a transaction that cannot see a fill.
    pub cannot_wait: fn() -> !,
    /// Raised when a read-only transaction would take a lease it could never fill.
    pub read_only: fn() -> !,
    /// Raised when a transaction whose snapshot may predate a write would take a lease.
    pub cannot_lease: fn() -> !,
}

/// A live entry, or a lease for one caller, the others waiting for its fill (up to `wait`).
/// A transaction that cannot fill (read-only) or whose snapshot may predate a write committed
/// before the lease (REPEATABLE READ, SERIALIZABLE) is given no lease; it is answered `stale` or
/// `wait` while another caller holds one.
pub fn get_or_lease(key: &str, asking: &Asking) -> Answer {
    let oid = crate::access::table();
    let id = KeyId::of(oid, key);
    let give_up_at = now().saturating_add(asking.wait);
    let may_lease = !read_only() && !snapshot_per_transaction();
    let answer = (|| {
        let mut rereads = 0;
        loop {
            let read_at = now();
            if let Some(found) = hit(key, Lookup::Get) {
                let refresh = if may_lease { early_refresh(&id, &found, asking) } else { None };
                return Answer::Hit(found, refresh);
            }
            let now = now();
            let held = if may_lease {
                match table::grant(
                    &id,
                    now,
                    read_at,
                    now.saturating_add(asking.lease_ttl),
                    per_database_limit(),
                ) {
                    Grant::Granted(lease) => return Answer::Miss(lease, stale(key, asking.grace)),
                    Grant::ChangedSince if rereads < MAX_REREADS => {
                        rereads += 1;
                        continue;
                    }
                    Grant::ChangedSince => return Answer::Wait,
                    Grant::Full { limit, per_database } => (asking.full)(limit, per_database),
                    Grant::Held { deadline } => deadline,
                }
            } else {
                match table::held_until(&id, now) {
                    Some(deadline) => deadline,
                    None if read_only() => (asking.read_only)(),
                    None => (asking.cannot_lease)(),
                }
            };
            // Stale while another caller revalidates: at once, without waiting.
            if let Some(value) = stale(key, asking.grace) {
                return Answer::Stale(value);
            }
            if asking.wait == 0 || now >= give_up_at {
                return Answer::Wait;
            }
            if snapshot_per_transaction() {
                (asking.cannot_wait)();
            }
            // A transaction that wrote entries may hold a row lock the holder's fill needs:
            // waiting for that fill could only time out (no deadlock detector sees a condition
            // variable).
            if wrote_entries() {
                return Answer::Wait;
            }
            table::prepare_to_wait();
            // Checked again once prepared, so a fill that ends the lease now is not missed.
            if table::held_until(&id, now).is_some() {
                table::wait_until(held.min(give_up_at), now);
            }
            table::stop_waiting();
        }
    })();
    table::stop_waiting();
    answer
}

/// REPEATABLE READ or SERIALIZABLE: one snapshot for the whole transaction.
fn snapshot_per_transaction() -> bool {
    // SAFETY: reads the transaction's isolation level.
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// The value of `key`'s entry if it expired less than `grace` ago (still stored: see
/// `pg_cache.stale_retention`).
fn stale(key: &str, grace: i64) -> Option<Vec<u8>> {
    if grace <= 0 {
        return None;
    }
    super::expired_value(key, now().saturating_sub(grace))
}

/// XFetch (Vattani et al.): a hit recomputes early with probability growing as the expiry nears,
/// `now - delta * beta * ln(u) >= expiry`, delta the last fill's computing time. Only one lease
/// at a time: the others keep hitting.
fn early_refresh(id: &KeyId, found: &Hit, asking: &Asking) -> Option<[u8; 16]> {
    if asking.beta <= 0.0 || found.expires_at == crate::expiry::NEVER {
        return None;
    }
    // SAFETY: draws from the backend's seeded generator.
    let u = unsafe { pg_sys::pg_prng_double(&raw mut pg_sys::pg_global_prng_state) };
    let scale = -(1.0 - u).ln() * asking.beta; // 1 - u is in (0, 1]
    let now = now();
    // A fill that takes longer than its lease is refused: delta is at most lease_ttl, so the
    // table is only looked at near the expiry.
    if (now as f64) + (asking.lease_ttl as f64) * scale < found.expires_at as f64 {
        return None;
    }
    let (Some(delta), false) = table::recompute_time(id, now) else {
        return None;
    };
    if (now as f64) + (delta as f64) * scale < found.expires_at as f64 {
        return None;
    }
    match table::grant(id, now, TimestampTz::MAX, now.saturating_add(asking.lease_ttl), per_database_limit())
    {
        Grant::Granted(lease) => Some(lease),
        _ => None,
    }
}

fn read_only() -> bool {
    // SAFETY: reads a backend-local flag.
    unsafe { pg_sys::XactReadOnly }
}

/// Whether this transaction wrote (or filled) entries so far: every write notes its key.
fn wrote_entries() -> bool {
    PENDING.with_borrow(|levels| levels.any(|level| !level.is_empty()))
}

fn per_database_limit() -> usize {
    crate::gucs::MAX_LEASES_PER_DATABASE.get() as usize
}

/// Gives up `lease` on `key` at once; true when it was the key's current lease.
pub fn release(key: &str, lease: &[u8; 16]) -> bool {
    table::end(&KeyId::of(crate::access::table(), key), lease, End::Released, now())
}

pub fn available() -> bool {
    table::available()
}

/// `cache_fill`: stores `value` under `key` only while `lease` is its current lease; false when it
/// is not (expired and taken by another caller, released, or cancelled by a write). The write
/// runs in a subtransaction and the lease is looked at again after it: a write of the key that
/// committed while the fill waited for its row lock cancelled the lease, and the fill is undone,
/// so an older computation never overwrites a newer write.
pub fn fill(
    key: &str,
    value: &[u8],
    lease: [u8; 16],
    policy: crate::expiry::Policy,
    tags: super::Tags,
) -> bool {
    let id = KeyId::of(crate::access::table(), key);
    if !table::is_current(&id, &lease, now()) {
        return false;
    }
    // Noted first: if the write fails, the rollback (of the transaction, or of the savepoint
    // that catches the error) releases the lease. At commit, a lease no longer current is left
    // alone.
    pending(|level| level.filled.push((id, lease)));
    crate::xact::in_subtransaction(|| {
        super::set(key, value, policy, now(), tags);
        table::is_current(&id, &lease, now())
    })
}
