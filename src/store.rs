//! The cache operations: each takes the direct path of `heap_access` where it can, and otherwise
//! runs a kept statement (new keys, removals, eviction, and whatever the direct path declines).
//! Each statement is planned once per backend and kept: re-planning on every call costs several
//! times the call itself.

use crate::expiry::Policy;
use crate::heap_access::{self, Direct, NewRow, Row};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::{self, ItemPointerData, TimestampTz};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use std::cell::RefCell;

/// The server's clock (`clock_timestamp()`), so a long transaction never sees an entry that has
/// expired since it began.
pub fn now() -> TimestampTz {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// A live entry found by [`hit`].
pub struct Hit {
    pub value: Option<Vec<u8>>,
    pub expires_at: TimestampTz,
}

/// What [`hit`] does with a live entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Return the value and slide the expiry (`cache_get`).
    Get,
    /// Slide the expiry only (`cache_refresh`).
    Refresh,
    /// Neither: just report the expiry (`cache_ttl`).
    Peek,
}

struct Statements {
    /// The table they were prepared for: a new one (the extension created again) needs new ones.
    table: pg_sys::Oid,
    find: OwnedPreparedStatement,
    slide: OwnedPreparedStatement,
    upsert: OwnedPreparedStatement,
    delete: OwnedPreparedStatement,
    evict: OwnedPreparedStatement,
}

thread_local! {
    static STATEMENTS: RefCell<Option<Statements>> = const { RefCell::new(None) };
}

impl Statements {
    fn prepare(client: &SpiClient, table_oid: pg_sys::Oid) -> Statements {
        let table = heap_access::qualified_table_name(table_oid);
        let timestamptz = || PgBuiltInOids::TIMESTAMPTZOID.oid();
        let text = || PgBuiltInOids::TEXTOID.oid();
        let prepare_mut = |sql: String, args: &[pg_sys::PgOid]| {
            client.prepare_mut(&sql, args).expect("cache statement").keep()
        };
        Statements {
            table: table_oid,
            // What the direct read does when it declines (see heap_access). Prepared as a
            // mutating statement, so SPI gives it a new snapshot per call, as for the others.
            find: prepare_mut(
                format!(
                    "SELECT ctid, expires_at, sliding, absolute_expires_at, CASE WHEN $2 THEN value END \
                     FROM {table} WHERE key OPERATOR(pg_catalog.=) $1"
                ),
                &[text(), PgBuiltInOids::BOOLOID.oid()],
            ),
            // The guard makes the slide a no-op when another session changed the entry after we
            // read it: the row version read (ctid) and, whatever a minor release's TID recheck
            // does with a row updated meanwhile, the expiry and window read. expires_at is the
            // only column written, so the update can be HOT.
            slide: prepare_mut(
                format!(
                    "UPDATE {table} SET expires_at = $3 \
                     WHERE ctid OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2 \
                     AND expires_at OPERATOR(pg_catalog.=) $4 \
                     AND sliding IS NOT DISTINCT FROM $5 \
                     AND absolute_expires_at IS NOT DISTINCT FROM $6"
                ),
                &[
                    PgBuiltInOids::TIDOID.oid(),
                    text(),
                    timestamptz(),
                    timestamptz(),
                    PgBuiltInOids::INTERVALOID.oid(),
                    timestamptz(),
                ],
            ),
            upsert: prepare_mut(
                format!(
                    "INSERT INTO {table} AS e (key, value, expires_at, sliding, absolute_expires_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, \
                     sliding = EXCLUDED.sliding, absolute_expires_at = EXCLUDED.absolute_expires_at"
                ),
                &[
                    text(),
                    PgBuiltInOids::BYTEAOID.oid(),
                    timestamptz(),
                    PgBuiltInOids::INTERVALOID.oid(),
                    timestamptz(),
                ],
            ),
            delete: prepare_mut(
                format!("DELETE FROM {table} WHERE key OPERATOR(pg_catalog.=) $1 RETURNING expires_at"),
                &[text()],
            ),
            // One batch: lock what nobody else holds, then delete exactly those rows by ctid.
            evict: prepare_mut(
                format!(
                    "DELETE FROM {table} WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY( \
                     SELECT ctid FROM {table} WHERE expires_at OPERATOR(pg_catalog.<=) $1 \
                     LIMIT $2 FOR UPDATE SKIP LOCKED))"
                ),
                &[timestamptz(), PgBuiltInOids::INT8OID.oid()],
            ),
        }
    }
}

fn ensure_not_in_recovery() {
    if unsafe { pg_sys::RecoveryInProgress() } {
        crate::error::unavailable_in_recovery();
    }
}

fn with_statements<R>(f: impl FnOnce(&mut SpiClient, &Statements) -> R) -> R {
    ensure_not_in_recovery();
    let table = heap_access::table();
    Spi::connect_mut(|client| {
        STATEMENTS.with(|cell| {
            let mut statements = cell.borrow_mut();
            if statements.as_ref().is_none_or(|prepared| prepared.table != table) {
                *statements = Some(Statements::prepare(client, table));
            }
            f(client, statements.as_ref().expect("prepared just above"))
        })
    })
}

fn timestamptz(micros: TimestampTz) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(micros).expect("expiry within the timestamptz range")
}

/// The row stored under `key`: directly, or through the kept statement where the direct read
/// declines.
fn find(key: &str, with_value: bool) -> Option<Row> {
    if let Direct::Done(row) = heap_access::find(key, with_value) {
        return row;
    }
    with_statements(|client, statements| {
        let rows = client.update(&statements.find, None, &[key.into(), with_value.into()]).expect("find");
        if rows.is_empty() {
            return None;
        }
        let row = rows.first();
        let ctid = row.get::<ItemPointerData>(1).expect("ctid")?;
        Some(Row {
            ctid,
            expires_at: row.get::<TimestampWithTimeZone>(2).expect("expires_at").map_or(TimestampTz::MIN, Into::into),
            sliding: row.get::<Interval>(3).expect("sliding"),
            absolute_expires_at: row.get::<TimestampWithTimeZone>(4).expect("absolute_expires_at").map(Into::into),
            value: row.get::<Vec<u8>>(5).expect("value"),
        })
    })
}

/// Moves the expiry of the version of `row` that was read to `next`; false when another session
/// changed the entry meanwhile (its version stands).
fn slide(key: &str, row: &Row, next: TimestampTz) -> bool {
    if let Direct::Done(moved) = heap_access::slide(row.ctid, next) {
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
    with_statements(|client, statements| client.update(&statements.slide, None, &args).expect("slide").len() == 1)
}

/// Looks `key` up and, when it is live, does what `lookup` says. Expired entries are never
/// returned or refreshed, evicted or not.
pub fn hit(key: &str, lookup: Lookup) -> Option<Hit> {
    ensure_not_in_recovery();
    let row = find(key, lookup == Lookup::Get)?;
    let now = now();
    if row.expires_at <= now {
        return None;
    }
    // A read-only transaction may still read the cache; it just cannot slide.
    if lookup == Lookup::Peek || unsafe { pg_sys::XactReadOnly } {
        return Some(Hit { value: row.value, expires_at: row.expires_at });
    }
    let policy = Policy::from_columns(row.sliding, row.absolute_expires_at);
    let next = policy.slide(now, row.expires_at, crate::gucs::refresh_granularity_micros());
    let expires_at = match next {
        Some(next) if slide(key, &row, next) => next,
        _ => row.expires_at,
    };
    Some(Hit { value: row.value, expires_at })
}

/// Inserts or replaces `key`: an existing entry is replaced directly, anything else (a new key, a
/// concurrent change, a table the direct path declines) goes through the upsert.
pub fn set(key: &str, value: &[u8], policy: Policy, now: TimestampTz) {
    ensure_not_in_recovery();
    let row = NewRow {
        value,
        expires_at: policy.expires_at(now),
        sliding: policy.sliding_column(),
        absolute_expires_at: policy.absolute_column(),
    };
    if let Direct::Done(true) = heap_access::replace(key, &row) {
        return;
    }
    with_statements(|client, statements| {
        let args = [
            key.into(),
            value.into(),
            timestamptz(row.expires_at).into(),
            row.sliding.into(),
            row.absolute_expires_at.map(timestamptz).into(),
        ];
        client.update(&statements.upsert, None, &args).expect("upsert");
    })
}

/// Deletes `key`; true when the deleted entry was live.
pub fn remove(key: &str) -> bool {
    with_statements(|client, statements| {
        let rows = client.update(&statements.delete, None, &[key.into()]).expect("delete");
        if rows.is_empty() {
            return false;
        }
        let expires_at = rows.first().get_one::<TimestampWithTimeZone>().expect("expires_at");
        expires_at.is_some_and(|at| TimestampTz::from(at) > now())
    })
}

/// Deletes up to `max_rows` entries expired by now, skipping rows other sessions hold locked.
pub fn evict_expired(max_rows: i64) -> i64 {
    with_statements(|client, statements| {
        let args = [timestamptz(now()).into(), max_rows.into()];
        client.update(&statements.evict, None, &args).expect("evict").len() as i64
    })
}
