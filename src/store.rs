//! The cache operations: each takes the direct path of `heap_access` where it can, and otherwise
//! runs a kept statement (new keys, removals, eviction, and whatever the direct path declines).
//! Each statement is planned once per backend and kept: re-planning on every call costs several
//! times the call itself.

use crate::expiry::Policy;
use crate::heap_access::{self, Direct, Existing, NewRow, Row};
use crate::invalidation::{self, Change};
use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};
use pgrx::pg_sys::{self, ItemPointerData, TimestampTz};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use std::cell::RefCell;
use std::rc::Rc;

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
    /// Those that read or write tags, when the table has the column (a 0.1.0 table, before
    /// `ALTER EXTENSION pg_cache UPDATE`, has not).
    tagged: Option<TagStatements>,
    find: OwnedPreparedStatement,
    slide: OwnedPreparedStatement,
    upsert: OwnedPreparedStatement,
    add: OwnedPreparedStatement,
    lock_for_update: OwnedPreparedStatement,
    write_value: OwnedPreparedStatement,
    renew: OwnedPreparedStatement,
    insert_if_absent: OwnedPreparedStatement,
    expire: OwnedPreparedStatement,
    delete: OwnedPreparedStatement,
    take: OwnedPreparedStatement,
    list_range: OwnedPreparedStatement,
    list_from: OwnedPreparedStatement,
    delete_range: OwnedPreparedStatement,
    delete_from: OwnedPreparedStatement,
    evict: OwnedPreparedStatement,
    measure: OwnedPreparedStatement,
    sample: OwnedPreparedStatement,
}

struct TagStatements {
    tags_of: OwnedPreparedStatement,
    remove_any: OwnedPreparedStatement,
    remove_all: OwnedPreparedStatement,
}

/// `INSERT` of a whole entry ($1 to $5, and the tags $6 when the table has them) that replaces
/// the entry stored under the key, `condition` saying which may be replaced.
fn upsert_sql(table: &str, tagged: bool, condition: &str) -> String {
    let (tags_column, tags_value, set_tags) =
        if tagged { (", tags", ", $6", ", tags = EXCLUDED.tags") } else { ("", "", "") };
    format!(
        "INSERT INTO {table} AS e (key, value, expires_at, sliding, absolute_expires_at{tags_column}) \
         VALUES ($1, $2, $3, $4, $5{tags_value}) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, \
         sliding = EXCLUDED.sliding, absolute_expires_at = EXCLUDED.absolute_expires_at{set_tags} {condition}"
    )
}

/// `DELETE` of every entry whose tags `overlap` ($1), locked in key order; RETURNING says which
/// were live at $2. By key, with the condition again: a row another session updated while we
/// waited for its lock is deleted in its new version (by ctid, the old version's snapshot would
/// not see it).
fn remove_by_tag_sql(table: &str, overlap: &str) -> String {
    let condition = format!("tags OPERATOR(pg_catalog.{overlap}) $1");
    format!(
        "DELETE FROM {table} WHERE key OPERATOR(pg_catalog.=) ANY (ARRAY( \
         SELECT key FROM {table} WHERE {condition} ORDER BY key FOR UPDATE)) AND {condition} \
         RETURNING expires_at OPERATOR(pg_catalog.>) $2"
    )
}

/// `SELECT` of live entries with keys from $1 on, `bound` narrowing the range; at most $3 rows.
fn list_sql(table: &str, bound: &str) -> String {
    format!(
        "SELECT key, expires_at, sliding, absolute_expires_at, pg_catalog.octet_length(value) FROM {table} \
         WHERE key OPERATOR(pg_catalog.>=) $1 {bound} AND expires_at OPERATOR(pg_catalog.>) $2 \
         ORDER BY key LIMIT $3"
    )
}

/// `DELETE` of every entry with a key from $1 on, `bound` narrowing the range, locked in key order
/// (by key, so that a row updated while we waited for its lock goes in its new version).
fn delete_sql(table: &str, bound: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE key OPERATOR(pg_catalog.=) ANY (ARRAY( \
         SELECT key FROM {table} WHERE key OPERATOR(pg_catalog.>=) $1 {bound} ORDER BY key FOR UPDATE)) \
         RETURNING expires_at OPERATOR(pg_catalog.>) $2"
    )
}

thread_local! {
    /// Shared, not borrowed, while a statement runs: a trigger or a function called from inside
    /// one may call pg_cache again.
    static STATEMENTS: RefCell<Option<Rc<Statements>>> = const { RefCell::new(None) };
}

impl Statements {
    fn prepare(client: &SpiClient, table_oid: pg_sys::Oid, tagged: bool) -> Statements {
        let table = heap_access::qualified_table_name(table_oid);
        let timestamptz = || PgBuiltInOids::TIMESTAMPTZOID.oid();
        let text = || PgBuiltInOids::TEXTOID.oid();
        let bytea = || PgBuiltInOids::BYTEAOID.oid();
        let interval = || PgBuiltInOids::INTERVALOID.oid();
        let int8 = || PgBuiltInOids::INT8OID.oid();
        let tid = || PgBuiltInOids::TIDOID.oid();
        let text_array = || PgBuiltInOids::TEXTARRAYOID.oid();
        let prepare_mut = |sql: String, args: &[pg_sys::PgOid]| {
            client.prepare_mut(&sql, args).expect("cache statement").keep()
        };
        Statements {
            table: table_oid,
            tagged: tagged.then(|| TagStatements {
                tags_of: prepare_mut(
                    format!(
                        "SELECT tags FROM {table} WHERE key OPERATOR(pg_catalog.=) $1 \
                         AND expires_at OPERATOR(pg_catalog.>) $2"
                    ),
                    &[text(), timestamptz()],
                ),
                remove_any: prepare_mut(remove_by_tag_sql(&table, "&&"), &[text_array(), timestamptz()]),
                remove_all: prepare_mut(remove_by_tag_sql(&table, "@>"), &[text_array(), timestamptz()]),
            }),
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
            // The slide of a hit never waits: a row another session holds locked keeps its
            // expiry (SKIP LOCKED). The guard makes it a no-op when another session changed the
            // entry after we read it: the row version read (ctid) and, whatever a minor
            // release's TID recheck does with a row updated meanwhile, the expiry and window
            // read. expires_at is the only column written, so the update can be HOT.
            slide: prepare_mut(
                format!(
                    "UPDATE {table} SET expires_at = $3 WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY( \
                     SELECT ctid FROM {table} \
                     WHERE ctid OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2 \
                     AND expires_at OPERATOR(pg_catalog.=) $4 \
                     AND (sliding OPERATOR(pg_catalog.=) $5 OR (sliding IS NULL AND $5 IS NULL)) \
                     AND (absolute_expires_at OPERATOR(pg_catalog.=) $6 \
                          OR (absolute_expires_at IS NULL AND $6 IS NULL)) \
                     FOR UPDATE SKIP LOCKED))"
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
                upsert_sql(&table, tagged, ""),
                &[text(), bytea(), timestamptz(), interval(), timestamptz(), text_array()],
            ),
            // cache_add: replaces only an entry expired by $7; RETURNING says whether it wrote.
            add: prepare_mut(
                upsert_sql(&table, tagged, "WHERE e.expires_at OPERATOR(pg_catalog.<=) $7 RETURNING true"),
                &[text(), bytea(), timestamptz(), interval(), timestamptz(), text_array(), timestamptz()],
            ),
            // cache_incr reads the counter locked, then writes it by ctid: the row cannot change
            // in between.
            lock_for_update: prepare_mut(
                format!(
                    "SELECT ctid, value, expires_at FROM {table} WHERE key OPERATOR(pg_catalog.=) $1 FOR UPDATE"
                ),
                &[text()],
            ),
            write_value: prepare_mut(
                format!("UPDATE {table} SET value = $2 WHERE ctid OPERATOR(pg_catalog.=) $1"),
                &[tid(), bytea()],
            ),
            // A counter started again has no tags, as after a set without them.
            renew: prepare_mut(
                format!(
                    "UPDATE {table} SET value = $2, expires_at = $3, sliding = $4, absolute_expires_at = $5{} \
                     WHERE ctid OPERATOR(pg_catalog.=) $1",
                    if tagged { ", tags = NULL" } else { "" }
                ),
                &[tid(), bytea(), timestamptz(), interval(), timestamptz()],
            ),
            insert_if_absent: prepare_mut(
                format!(
                    "INSERT INTO {table} (key, value, expires_at, sliding, absolute_expires_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING RETURNING true"
                ),
                &[text(), bytea(), timestamptz(), interval(), timestamptz()],
            ),
            expire: prepare_mut(
                format!(
                    "UPDATE {table} SET expires_at = $2, sliding = $3, absolute_expires_at = $4 \
                     WHERE key OPERATOR(pg_catalog.=) $1 AND expires_at OPERATOR(pg_catalog.>) $5"
                ),
                &[text(), timestamptz(), interval(), timestamptz(), timestamptz()],
            ),
            delete: prepare_mut(
                format!("DELETE FROM {table} WHERE key OPERATOR(pg_catalog.=) $1 RETURNING expires_at"),
                &[text()],
            ),
            take: prepare_mut(
                format!("DELETE FROM {table} WHERE key OPERATOR(pg_catalog.=) $1 RETURNING expires_at, value"),
                &[text()],
            ),
            // Live entries in [$1, $2) or from $1 on, in key order: a range of the primary key.
            list_range: prepare_mut(list_sql(&table, "AND key OPERATOR(pg_catalog.<) $4"), &[text(), timestamptz(), int8(), text()]),
            list_from: prepare_mut(list_sql(&table, ""), &[text(), timestamptz(), int8()]),
            // Removals of a range lock its rows in key order (so concurrent batches never
            // deadlock), then delete exactly those; RETURNING says which were live at $2.
            delete_range: prepare_mut(delete_sql(&table, "AND key OPERATOR(pg_catalog.<) $3"), &[text(), timestamptz(), text()]),
            delete_from: prepare_mut(delete_sql(&table, ""), &[text(), timestamptz()]),
            // One batch: lock what nobody else holds after ctid $3 (the next batch goes on where
            // this one ended, skipping the rows of the batches before it; whether that is a TID
            // range scan or a filtered sequential scan is the planner's choice), then delete
            // exactly those rows by ctid.
            evict: prepare_mut(
                format!(
                    "DELETE FROM {table} WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY( \
                     SELECT ctid FROM {table} WHERE ctid OPERATOR(pg_catalog.>) $3 \
                     AND expires_at OPERATOR(pg_catalog.<=) $1 \
                     LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING ctid"
                ),
                &[timestamptz(), PgBuiltInOids::INT8OID.oid(), tid()],
            ),
            // When the next entry expires (one that expired since the sweep's deletes included:
            // it makes the database due again at once), and the key + value bytes of the live
            // ones (TOASTed values are measured without being read).
            measure: prepare_mut(
                format!(
                    "SELECT pg_catalog.min(expires_at), \
                     coalesce(pg_catalog.sum(pg_catalog.octet_length(key) OPERATOR(pg_catalog.+) \
                                             pg_catalog.octet_length(value)) \
                              FILTER (WHERE expires_at OPERATOR(pg_catalog.>) $1), 0)::pg_catalog.int8 FROM {table}"
                ),
                &[timestamptz()],
            ),
            // Live entries of a sample of the table's pages ($2 percent), soonest expiring first.
            sample: prepare_mut(
                format!(
                    "SELECT expires_at, pg_catalog.octet_length(key)::pg_catalog.int8 OPERATOR(pg_catalog.+) \
                     pg_catalog.octet_length(value)::pg_catalog.int8 \
                     FROM {table} TABLESAMPLE pg_catalog.system ($2) \
                     WHERE expires_at OPERATOR(pg_catalog.>) $1 ORDER BY expires_at"
                ),
                &[timestamptz(), PgBuiltInOids::FLOAT4OID.oid()],
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
    let tagged = heap_access::has_tags_column(table);
    Spi::connect_mut(|client| {
        let kept = STATEMENTS.with(|cell| {
            cell.borrow()
                .as_ref()
                .filter(|prepared| prepared.table == table && prepared.tagged.is_some() == tagged)
                .cloned()
        });
        let statements = kept.unwrap_or_else(|| {
            let prepared = Rc::new(Statements::prepare(client, table, tagged));
            STATEMENTS.with(|cell| *cell.borrow_mut() = Some(Rc::clone(&prepared)));
            prepared
        });
        f(client, &statements)
    })
}

fn timestamptz(micros: TimestampTz) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(micros).expect("expiry within the timestamptz range")
}

/// The row stored under `key`: directly, or through the kept statement where the direct read
/// declines.
fn find(key: &str, with_value: bool) -> Option<Row> {
    match heap_access::find(key, with_value) {
        Direct::Done(row) => row,
        Direct::Declined => find_through_statement(key, with_value),
    }
}

/// The row stored under `key`, read by the kept statement.
fn find_through_statement(key: &str, with_value: bool) -> Option<Row> {
    with_statements(|client, statements| {
        let rows = client.update(&statements.find, None, &[key.into(), with_value.into()]).expect("find");
        if rows.is_empty() {
            return None;
        }
        let row = rows.first();
        let ctid = row.get::<ItemPointerData>(1).expect("ctid")?;
        Some(Row {
            ctid,
            expires_at: row
                .get::<TimestampWithTimeZone>(2)
                .expect("expires_at")
                .map_or(TimestampTz::MIN, Into::into),
            sliding: row.get::<Interval>(3).expect("sliding"),
            absolute_expires_at: row
                .get::<TimestampWithTimeZone>(4)
                .expect("absolute_expires_at")
                .map(Into::into),
            value: row.get::<Vec<u8>>(5).expect("value"),
        })
    })
}

/// Moves the expiry of the version of `row` that was read to `next`; false when another session
/// changed the entry meanwhile (its version stands).
fn slide(key: &str, row: &Row, next: TimestampTz) -> bool {
    // A read never waits, not even for a table lock a slide's write would need (CREATE INDEX,
    // a LOCK TABLE … IN SHARE MODE): then the entry keeps its expiry.
    // SAFETY: a lock request that does not wait; held to the end of the transaction, as the
    // UPDATE's own would be.
    let locked =
        unsafe { pg_sys::ConditionalLockRelationOid(heap_access::table(), pg_sys::RowExclusiveLock as _) };
    if !locked {
        return false;
    }
    if let Direct::Done(moved) = heap_access::slide(key, row.ctid, row.expires_at, next) {
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

/// Looks `key` up and, when it is live, does what `lookup` says. Expired entries are never
/// returned or refreshed, evicted or not.
pub fn hit(key: &str, lookup: Lookup) -> Option<Hit> {
    ensure_not_in_recovery();
    let row = find(key, lookup == Lookup::Get)?;
    live(key, row, lookup)
}

/// [`hit`] for several keys, read in one pass (each hit slides as `hit` slides it).
pub fn hit_many(keys: &[&str]) -> Vec<Option<Hit>> {
    ensure_not_in_recovery();
    let rows = match heap_access::find_many(keys, true) {
        Direct::Done(rows) => rows,
        // Declined for one key is declined for all: straight to the statement.
        Direct::Declined => keys.iter().map(|key| find_through_statement(key, true)).collect(),
    };
    keys.iter().zip(rows).map(|(key, row)| live(key, row?, Lookup::Get)).collect()
}

/// What a lookup of `row`, stored under `key`, gives: nothing when it expired, else the hit,
/// slid as `lookup` says.
fn live(key: &str, row: Row, lookup: Lookup) -> Option<Hit> {
    let now = now();
    if row.expires_at <= now {
        return None;
    }
    // A read-only transaction still reads; it just does not slide. So does a get by a role that
    // may read but not update the table (cache_refresh, whose point is the slide, raises 42501).
    // SAFETY: reads a backend-local flag.
    let read_only = unsafe { pg_sys::XactReadOnly };
    let may_not_slide = lookup == Lookup::Get && !heap_access::may_update_expiry(heap_access::table());
    if lookup == Lookup::Peek || read_only || may_not_slide {
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

/// The tags of an entry: `None` for none (the column is NULL then).
pub type Tags<'a> = Option<&'a [String]>;

/// Refuses tags where the table cannot hold them.
fn ensure_taggable(statements: &Statements, tags: Tags) {
    if tags.is_some() {
        tag_statements(statements);
    }
}

/// The statements on tags; an error when the table has no tags column.
fn tag_statements(statements: &Statements) -> &TagStatements {
    statements.tagged.as_ref().unwrap_or_else(|| crate::error::tags_need_update())
}

/// How many rows of a removal's `RETURNING <was live>` say true.
fn count_live(rows: pgrx::spi::SpiTupleTable) -> i64 {
    rows.filter(|row| row.get::<bool>(1).ok().flatten().unwrap_or(false)).count() as i64
}

/// The row an entry written at `now` with `policy` is stored as.
fn new_row<'a>(value: &'a [u8], policy: Policy, now: TimestampTz, tags: Tags<'a>) -> NewRow<'a> {
    NewRow {
        value,
        expires_at: policy.expires_at(now),
        sliding: policy.sliding_column(),
        absolute_expires_at: policy.absolute_column(),
        tags,
    }
}

/// Inserts or replaces `key`: an existing entry is replaced directly, anything else (a new key, a
/// concurrent change, a table the direct path declines) goes through the upsert.
pub fn set(key: &str, value: &[u8], policy: Policy, now: TimestampTz, tags: Tags) {
    ensure_not_in_recovery();
    let row = new_row(value, policy, now, tags);
    invalidation::note(Change::Key(key));
    if !matches!(heap_access::write(key, &row, Existing::Replace), Direct::Done(true)) {
        with_statements(|client, statements| {
            ensure_taggable(statements, tags);
            client.update(&statements.upsert, None, &upsert_args(key, &row)).expect("upsert");
        });
    }
    // Counted once written: a refused write counts nothing.
    crate::registry::note_write(row.expires_at, key.len() + value.len());
}

/// The upsert's arguments ($1 to $6) for `row` stored under `key`.
fn upsert_args<'a>(key: &'a str, row: &NewRow<'a>) -> Vec<DatumWithOid<'a>> {
    vec![
        key.into(),
        row.value.into(),
        timestamptz(row.expires_at).into(),
        row.sliding.into(),
        row.absolute_expires_at.map(timestamptz).into(),
        row.tags.map(<[String]>::to_vec).into(),
    ]
}

/// Deletes `key`: directly, or through the kept statement where the direct delete declines.
/// The deleted entry's expiry, and its value when `with_value`.
fn delete(key: &str, with_value: bool) -> Option<(TimestampTz, Option<Vec<u8>>)> {
    ensure_not_in_recovery();
    let deleted = match heap_access::delete(key, with_value) {
        Direct::Done(deleted) => deleted.map(|deleted| (deleted.expires_at, deleted.value)),
        Direct::Declined => with_statements(|client, statements| {
            let statement = if with_value { &statements.take } else { &statements.delete };
            let rows = client.update(statement, None, &[key.into()]).expect("delete");
            if rows.is_empty() {
                return None;
            }
            let row = rows.first();
            let expires_at: TimestampTz = row.get::<TimestampWithTimeZone>(1).expect("expires_at")?.into();
            let value = if with_value { row.get::<Vec<u8>>(2).expect("value") } else { None };
            Some((expires_at, value))
        }),
    };
    if deleted.is_some() {
        invalidation::note(Change::Key(key));
    }
    deleted
}

/// Deletes `key`; true when the deleted entry was live.
pub fn remove(key: &str) -> bool {
    delete(key, false).is_some_and(|(expires_at, _)| expires_at > now())
}

/// Deletes `key` and returns its value when the entry was live.
pub fn take(key: &str) -> Option<Vec<u8>> {
    let (expires_at, value) = delete(key, true)?;
    (expires_at > now()).then_some(value).flatten()
}

/// Sets `key` only when no live entry has it (an expired one is replaced); true when it set.
/// A concurrent add of the same key waits for the first to commit and then finds it live.
pub fn add(key: &str, value: &[u8], policy: Policy, now: TimestampTz, tags: Tags) -> bool {
    ensure_not_in_recovery();
    let row = new_row(value, policy, now, tags);
    // A new key is inserted directly; a stored one (live or expired) goes to the statement.
    let added = matches!(heap_access::write(key, &row, Existing::Keep), Direct::Done(true)) || {
        // The upsert's arguments, and the time before which an entry counts as expired ($7).
        let mut args = upsert_args(key, &row);
        args.push(timestamptz(now).into());
        with_statements(|client, statements| {
            ensure_taggable(statements, tags);
            !client.update(&statements.add, None, &args).expect("add").is_empty()
        })
    };
    if added {
        crate::registry::note_write(row.expires_at, key.len() + value.len());
        invalidation::note(Change::Key(key));
    }
    added
}

/// What `incr` found stored under the key.
pub enum Counter {
    /// The new value, written.
    Written(i64),
    /// The live value is not a decimal integer.
    NotAnInteger,
    /// Adding would overflow a bigint.
    Overflow,
}

/// `incr` straight through the heap where it can: a live counter rewritten in place, or a new
/// key inserted. `None` when the statements must run (an expired entry, a value that is not a
/// counter, a concurrent change, a table the direct paths decline).
fn incr_directly(key: &str, delta: i64, policy: Policy, now: TimestampTz) -> Option<Counter> {
    let mut next = None;
    let rewritten = heap_access::rewrite_value(key, now, |stored| {
        next = parse_counter(stored)?.checked_add(delta);
        next.map(|next| next.to_string().into_bytes())
    });
    if let Direct::Done(true) = rewritten {
        return next.map(Counter::Written);
    }
    let value = delta.to_string().into_bytes();
    let row = new_row(&value, policy, now, None);
    matches!(heap_access::write(key, &row, Existing::Keep), Direct::Done(true))
        .then_some(Counter::Written(delta))
}

/// Adds `delta` to the counter under `key`: a live one keeps its expiry; an absent or expired
/// one starts at `delta` with `policy`. The row is locked while it is read and written, so
/// concurrent increments add up exactly.
pub fn incr(key: &str, delta: i64, policy: Policy, now: TimestampTz) -> Counter {
    ensure_not_in_recovery();
    invalidation::note(Change::Key(key));
    let counter = incr_locked(key, delta, policy, now);
    if let Counter::Written(_) = counter {
        // A counter is short: at most 20 digits.
        crate::registry::note_write(policy.expires_at(now), key.len() + 20);
    }
    counter
}

/// [`incr`]'s write: directly, or through the statements with the row locked.
fn incr_locked(key: &str, delta: i64, policy: Policy, now: TimestampTz) -> Counter {
    if let Some(counter) = incr_directly(key, delta, policy, now) {
        return counter;
    }
    let fresh = |client: &mut SpiClient, statements: &Statements, ctid: Option<ItemPointerData>| {
        let value = delta.to_string().into_bytes();
        let expiry = [
            timestamptz(policy.expires_at(now)).into(),
            policy.sliding_column().into(),
            policy.absolute_column().map(timestamptz).into(),
        ];
        match ctid {
            Some(ctid) => {
                let [expires_at, sliding, absolute] = expiry;
                let args = [ctid.into(), value.as_slice().into(), expires_at, sliding, absolute];
                client.update(&statements.renew, None, &args).expect("renew");
                true
            }
            None => {
                let [expires_at, sliding, absolute] = expiry;
                let args = [key.into(), value.as_slice().into(), expires_at, sliding, absolute];
                !client.update(&statements.insert_if_absent, None, &args).expect("insert").is_empty()
            }
        }
    };
    with_statements(|client, statements| loop {
        let rows = client.update(&statements.lock_for_update, None, &[key.into()]).expect("lock");
        if rows.is_empty() {
            // A concurrent first increment may insert the key between our read and our insert:
            // then read again, and add to it.
            if fresh(client, statements, None) {
                return Counter::Written(delta);
            }
            continue;
        }
        let row = rows.first();
        let ctid = row.get::<ItemPointerData>(1).expect("ctid").expect("a stored row has a ctid");
        let expires_at: Option<TimestampTz> =
            row.get::<TimestampWithTimeZone>(3).expect("expires_at").map(Into::into);
        if expires_at.is_none_or(|at| at <= now) {
            fresh(client, statements, Some(ctid));
            return Counter::Written(delta);
        }
        let stored = row.get::<&[u8]>(2).expect("value").unwrap_or_default();
        let Some(current) = parse_counter(stored) else {
            return Counter::NotAnInteger;
        };
        let Some(next) = current.checked_add(delta) else {
            return Counter::Overflow;
        };
        let args = [ctid.into(), next.to_string().into_bytes().as_slice().into()];
        client.update(&statements.write_value, None, &args).expect("write counter");
        return Counter::Written(next);
    })
}

/// A counter's stored value: ASCII decimal digits with an optional leading `-`, nothing else.
fn parse_counter(stored: &[u8]) -> Option<i64> {
    let digits = stored.strip_prefix(b"-").unwrap_or(stored);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(stored).ok()?.parse().ok()
}

/// Gives a live entry `policy` from now on, keeping its value; false when absent or expired.
pub fn expire(key: &str, policy: Policy, now: TimestampTz) -> bool {
    ensure_not_in_recovery();
    let args = [
        key.into(),
        timestamptz(policy.expires_at(now)).into(),
        policy.sliding_column().into(),
        policy.absolute_column().map(timestamptz).into(),
        timestamptz(now).into(),
    ];
    let expired = with_statements(|client, statements| {
        client.update(&statements.expire, None, &args).expect("expire").len() == 1
    });
    if expired {
        crate::registry::note_write(policy.expires_at(now), 0);
        invalidation::note(Change::Key(key));
    }
    expired
}

/// A live entry as `cache_keys` lists it.
pub struct Listed {
    pub key: String,
    pub expires_at: TimestampWithTimeZone,
    pub sliding: Option<Interval>,
    pub absolute_expires_at: Option<TimestampWithTimeZone>,
    pub value_bytes: i32,
}

/// The smallest string greater than every string that starts with `prefix`, byte-wise (UTF-8
/// orders as code points do); `None` when there is none (an empty prefix, or only U+10FFFF).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Live entries whose key starts with `prefix`, in key order, at most `max_rows`.
pub fn list(prefix: &str, max_rows: i64) -> Vec<Listed> {
    ensure_not_in_recovery();
    let now = timestamptz(now());
    with_statements(|client, statements| {
        let rows = match prefix_end(prefix) {
            Some(end) => client.update(
                &statements.list_range,
                None,
                &[prefix.into(), now.into(), max_rows.into(), end.as_str().into()],
            ),
            None => client.update(&statements.list_from, None, &[prefix.into(), now.into(), max_rows.into()]),
        }
        .expect("list");
        rows.map(|row| Listed {
            key: row.get::<String>(1).expect("key").expect("a key"),
            expires_at: row.get(2).expect("expires_at").expect("an expiry"),
            sliding: row.get(3).expect("sliding"),
            absolute_expires_at: row.get(4).expect("absolute_expires_at"),
            value_bytes: row.get(5).expect("value_bytes").unwrap_or(0),
        })
        .collect()
    })
}

/// Removes every entry whose key starts with `prefix` (all of them for the empty prefix),
/// locking them in key order; returns how many, and how many of those were live.
pub fn remove_prefix(prefix: &str) -> (i64, i64) {
    ensure_not_in_recovery();
    let now = timestamptz(now());
    with_statements(|client, statements| {
        let rows = match prefix_end(prefix) {
            Some(end) => client.update(
                &statements.delete_range,
                None,
                &[prefix.into(), now.into(), end.as_str().into()],
            ),
            None => client.update(&statements.delete_from, None, &[prefix.into(), now.into()]),
        }
        .expect("remove range");
        let removed = rows.len() as i64;
        let live = count_live(rows);
        if removed > 0 {
            invalidation::note(if prefix.is_empty() { Change::All } else { Change::Prefix(prefix) });
        }
        (removed, live)
    })
}

/// A live entry's tags: `Some(None)` when it has none, `None` when absent or expired.
pub fn tags_of(key: &str) -> Option<Option<Vec<String>>> {
    ensure_not_in_recovery();
    with_statements(|client, statements| {
        let rows = client
            .update(&tag_statements(statements).tags_of, None, &[key.into(), timestamptz(now()).into()])
            .expect("tags");
        (!rows.is_empty()).then(|| rows.first().get::<Vec<String>>(1).expect("tags"))
    })
}

/// Removes every entry tagged with any of `tags` (all of them when `match_all`), locking them in
/// key order; returns how many live ones it removed.
pub fn remove_by_tag(tags: &[String], match_all: bool) -> i64 {
    ensure_not_in_recovery();
    with_statements(|client, statements| {
        let tagged = tag_statements(statements);
        let statement = if match_all { &tagged.remove_all } else { &tagged.remove_any };
        let args = [tags.to_vec().into(), timestamptz(now()).into()];
        let rows = client.update(statement, None, &args).expect("remove by tag");
        if !rows.is_empty() {
            invalidation::note(Change::Tags(tags));
        }
        count_live(rows)
    })
}

/// Deletes up to `max_rows` entries expired by now, skipping rows other sessions hold locked.
pub fn evict_expired(max_rows: i64) -> i64 {
    evict_until(now(), max_rows, ItemPointerData::default()).0
}

/// Deletes up to `max_rows` entries that expire by `cutoff` and are stored after `after` (a
/// ctid; the default one is before every row), skipping rows other sessions hold locked. How
/// many, and the last ctid deleted (`after` when none).
pub fn evict_until(cutoff: TimestampTz, max_rows: i64, after: ItemPointerData) -> (i64, ItemPointerData) {
    ensure_not_in_recovery();
    with_statements(|client, statements| {
        let args = [timestamptz(cutoff).into(), max_rows.into(), after.into()];
        let rows = client.update(&statements.evict, None, &args).expect("evict");
        let evicted = rows.len() as i64;
        let last = rows
            .filter_map(|row| row.get::<ItemPointerData>(1).ok().flatten())
            .max_by_key(|&ctid| pgrx::itemptr::item_pointer_get_both(ctid))
            .unwrap_or(after);
        (evicted, last)
    })
}

/// When the next entry expires (None: no entry left; in the past for one that expired since the
/// sweep deleted), and the key + value bytes of the live entries.
pub fn measure() -> (Option<TimestampTz>, i64) {
    with_statements(|client, statements| {
        let rows = client.update(&statements.measure, None, &[timestamptz(now()).into()]).expect("measure");
        let row = rows.first();
        let next = row.get::<TimestampWithTimeZone>(1).expect("next expiry").map(Into::into);
        (next, row.get::<i64>(2).expect("live bytes").unwrap_or(0))
    })
}

/// Rows the size cap's sample of the table aims at: enough to place the cutoff within a few
/// percent of the bytes to free.
const SIZE_SAMPLE_ROWS: f64 = 3000.0;

/// The expiry up to which removing the live entries frees about `to_free` of the `live` bytes:
/// the entries that expire soonest, as a sample of the table's pages shows them. Approximate,
/// like Redis's volatile-ttl; it needs no index on the expiry, so sliding updates stay HOT.
pub fn size_cutoff(to_free: i64, live: i64) -> TimestampTz {
    let now = now();
    let table = heap_access::table();
    let rows = Spi::get_one_with_args::<f32>(
        "SELECT reltuples FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
        &[table.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(1.0)
    .max(1.0);
    let percent = (SIZE_SAMPLE_ROWS / f64::from(rows) * 100.0).clamp(0.5, 100.0) as f32;
    with_statements(|client, statements| {
        let sample: Vec<(TimestampTz, i64)> = client
            .update(&statements.sample, None, &[timestamptz(now).into(), percent.into()])
            .expect("sample")
            .filter_map(|row| {
                let at = row.get::<TimestampWithTimeZone>(1).ok().flatten()?;
                Some((at.into(), row.get::<i64>(2).ok().flatten().unwrap_or(0)))
            })
            .collect();
        let sampled: i64 = sample.iter().map(|(_, bytes)| bytes).sum();
        if sampled == 0 {
            return now;
        }
        // Each sampled byte stands for live / sampled bytes of the table.
        let mut freed = 0.0;
        for (at, bytes) in &sample {
            freed += *bytes as f64 * live as f64 / sampled as f64;
            if freed >= to_free as f64 {
                return *at;
            }
        }
        sample.last().map_or(now, |(at, _)| *at)
    })
}
