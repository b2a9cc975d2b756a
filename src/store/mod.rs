//! The cache operations: each takes the direct path of `heap_access` where it can, and otherwise
//! runs a kept statement (new keys, removals, eviction, and whatever the direct path declines).
//! Each statement is planned once per backend and kept: re-planning on every call costs several
//! times the call itself.

mod eviction;
pub mod leases;
mod statements;
mod touches;

pub use eviction::{evict_expired, evict_until, measure, size_cutoff};
pub use touches::{apply_pending as apply_touches, forget_dropped_caches, pending_expiry};

use crate::access::{self, Direct, Existing, NewRow, Row};
use crate::expiry::Policy;
use crate::feed::{self, Change};
use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};
use pgrx::pg_sys::{self, ItemPointerData, TimestampTz};
use pgrx::spi::SpiClient;
use pgrx::IntoDatum;
use statements::{ensure_readable, ensure_writable, timestamptz, with_statements, Statements, TagStatements};

pub use crate::expiry::now;

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
/// The row stored under `key`: directly, or through the kept statement where the direct read
/// declines.
fn find(key: &str, with_value: bool) -> Option<Row> {
    match access::find(key, with_value) {
        Direct::Done(row) => row,
        Direct::Declined => find_through_statement(key, with_value),
    }
}

/// The row stored under `key`, read by the kept statement.
fn find_through_statement(key: &str, with_value: bool) -> Option<Row> {
    with_statements(|client, statements| {
        // `select`, not `update`: a read takes no transaction id (and so works on a standby).
        let rows = client.select(&statements.find, None, &[key.into(), with_value.into()]).expect("find");
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

/// Looks `key` up and, when it is live, does what `lookup` says. Expired entries are never
/// returned or refreshed, evicted or not.
pub fn hit(key: &str, lookup: Lookup) -> Option<Hit> {
    ensure_readable();
    let row = find(key, lookup == Lookup::Get)?;
    let reading = reading(lookup);
    live(key, row, &reading)
}

/// The value of `key`'s entry if it has expired, but not before `since`; nothing is slid.
pub fn expired_value(key: &str, since: TimestampTz) -> Option<Vec<u8>> {
    ensure_readable();
    let row = find(key, true)?;
    let expires_at = touches::expiry(key, row.expires_at, row.sliding.is_some());
    (expires_at <= now() && expires_at > since).then_some(row.value).flatten()
}

/// [`hit`] of several distinct keys, in one pass: each live entry, in the order of `keys`, handed
/// to `emit` with its index, its key and its value as datums (valid only during the call)
/// instead of copied out. Each hit slides as `hit` slides it, except that a batch never writes a
/// row itself when the touch table is full.
pub fn hit_each(keys: &[&str], mut emit: impl FnMut(usize, pg_sys::Datum, pg_sys::Datum)) {
    ensure_readable();
    let reading = reading(Lookup::Get).for_batch();
    let direct = access::find_each(keys, |i, key, row, value| {
        if reading.live_until(keys[i], row).is_some() {
            emit(i, key, value);
        }
    });
    if let Direct::Declined = direct {
        // Declined for one key is declined for all: straight to the statement.
        for (i, key) in keys.iter().enumerate() {
            let Some(row) = find_through_statement(key, true) else {
                continue;
            };
            if reading.live_until(key, &row).is_some() {
                if let Some(value) = row.value.as_deref().and_then(IntoDatum::into_datum) {
                    emit(i, (*key).into_datum().expect("a text datum"), value);
                }
            }
        }
    }
}

/// What the hits of a `lookup` may do: all but a peek slide, except in a read-only transaction
/// or for a role that may read but not update the table (cache_refresh, whose point is the
/// slide, raises 42501 then, as the slide's UPDATE would, before anything is recorded).
fn reading(lookup: Lookup) -> touches::Reading {
    // SAFETY: reads a backend-local flag.
    let read_only = unsafe { pg_sys::XactReadOnly };
    let table = access::table();
    let may_not_slide = lookup != Lookup::Peek && !read_only && !access::may_update_expiry(table);
    if may_not_slide && lookup == Lookup::Refresh {
        access::refuse_privilege(table);
    }
    touches::Reading::new(table, !(lookup == Lookup::Peek || read_only || may_not_slide))
}

/// What a lookup of `row`, stored under `key`, gives: nothing when it expired (pending touches
/// included), else the hit, slid as `reading` says.
fn live(key: &str, row: Row, reading: &touches::Reading) -> Option<Hit> {
    let expires_at = reading.live_until(key, &row)?;
    Some(Hit { value: row.value, expires_at })
}

/// Accounts a write of `bytes` expiring at `expires_at` to the running call's cache, under its
/// size cap.
fn note_write(expires_at: TimestampTz, bytes: usize) {
    let setting = i64::from(crate::gucs::MAX_SIZE.get()) * 1024;
    crate::shmem::writes::note_write(expires_at, bytes, access::caches::current().size_cap(setting));
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
    set_many(&[(key, value)], policy, now, tags);
}

/// [`set`] of several distinct keys, given in key order (so that the rows are locked in that
/// order and concurrent batches never deadlock): one open of the table for all of them, the
/// upsert for those the direct path did not write.
pub fn set_many(pairs: &[(&str, &[u8])], policy: Policy, now: TimestampTz, tags: Tags) {
    ensure_writable();
    let rows: Vec<NewRow> = pairs.iter().map(|(_, value)| new_row(value, policy, now, tags)).collect();
    for (key, _) in pairs {
        feed::note(Change::Key(key));
        leases::changed_key(key);
    }
    let entries: Vec<(&str, &NewRow)> = pairs.iter().map(|(key, _)| *key).zip(&rows).collect();
    let upsert = |(key, row): &(&str, &NewRow)| {
        with_statements(|client, statements| {
            ensure_taggable(statements, tags);
            client.update(&statements.upsert, None, &upsert_args(key, row)).expect("upsert");
        });
    };
    if let Direct::Declined = access::write_many(&entries, Existing::Replace, |i| upsert(&entries[i])) {
        entries.iter().for_each(upsert);
    }
    // Counted once written: a refused write counts nothing.
    for (key, row) in &entries {
        note_write(row.expires_at, key.len() + row.value.len());
    }
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
/// The deleted entry.
fn delete(key: &str, with_value: bool) -> Option<access::Deleted> {
    ensure_writable();
    // A removal cancels the key's lease whether or not an entry was there to remove.
    leases::changed_key(key);
    let deleted = match access::delete(key, with_value) {
        Direct::Done(deleted) => deleted,
        Direct::Declined => with_statements(|client, statements| {
            let statement = if with_value { &statements.take } else { &statements.delete };
            let rows = client.update(statement, None, &[key.into()]).expect("delete");
            if rows.is_empty() {
                return None;
            }
            let row = rows.first();
            let expires_at: TimestampTz = row.get::<TimestampWithTimeZone>(1).expect("expires_at")?.into();
            let value = if with_value { row.get::<Vec<u8>>(2).expect("value") } else { None };
            let sliding = row.get::<bool>(3).expect("sliding").unwrap_or(false);
            Some(access::Deleted { expires_at, sliding, value })
        }),
    };
    if deleted.is_some() {
        feed::note(Change::Key(key));
    }
    deleted
}

/// Deletes `key`; true when the deleted entry was live.
pub fn remove(key: &str) -> bool {
    delete(key, false)
        .is_some_and(|deleted| touches::is_live(key, deleted.expires_at, deleted.sliding, now()))
}

/// Deletes `key` and returns its value when the entry was live.
pub fn take(key: &str) -> Option<Vec<u8>> {
    let deleted = delete(key, true)?;
    touches::is_live(key, deleted.expires_at, deleted.sliding, now()).then_some(deleted.value).flatten()
}

/// Sets `key` only when no live entry has it (an expired one is replaced); true when it set.
/// A concurrent add of the same key waits for the first to commit and then finds it live.
pub fn add(key: &str, value: &[u8], policy: Policy, now: TimestampTz, tags: Tags) -> bool {
    ensure_writable();
    let row = new_row(value, policy, now, tags);
    // A new key is inserted directly; a stored one (live or expired) goes to the statement.
    let added = matches!(access::write(key, &row, Existing::Keep), Direct::Done(true)) || {
        // The upsert's arguments, and the time before which an entry counts as expired ($7).
        let mut args = upsert_args(key, &row);
        args.push(timestamptz(now).into());
        with_statements(|client, statements| {
            ensure_taggable(statements, tags);
            !client.update(&statements.add, None, &args).expect("add").is_empty()
        })
    };
    if added {
        note_write(row.expires_at, key.len() + value.len());
        feed::note(Change::Key(key));
        leases::changed_key(key);
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
    /// No live counter, and none was to be created.
    Absent,
}

/// `incr` straight through the heap where it can: a live counter rewritten in place, or a new
/// key inserted. `None` when the statements must run (an expired entry, a value that is not a
/// counter, a concurrent change, a table the direct paths decline, or no live counter when
/// `create` is `None`).
fn incr_directly(key: &str, delta: i64, create: Option<Policy>, now: TimestampTz) -> Option<Counter> {
    let mut next = None;
    // A pending touch is written with the counter: the new row version is not the one touched.
    let live_until =
        |row: &Row| Some(touches::expiry(key, row.expires_at, row.sliding.is_some())).filter(|at| *at > now);
    let rewritten = access::rewrite_value(key, live_until, |stored| {
        next = parse_counter(stored)?.checked_add(delta);
        next.map(|next| next.to_string().into_bytes())
    });
    if let Direct::Done(true) = rewritten {
        return next.map(Counter::Written);
    }
    let policy = create?;
    let value = delta.to_string().into_bytes();
    let row = new_row(&value, policy, now, None);
    matches!(access::write(key, &row, Existing::Keep), Direct::Done(true)).then_some(Counter::Written(delta))
}

/// Adds `delta` to the counter under `key`: a live one keeps its expiry; an absent or expired
/// one starts at `delta` with the `create` policy, or is left alone (`Absent`) when `create` is
/// `None`. The row is locked while it is read and written, so concurrent increments add up
/// exactly.
pub fn incr(key: &str, delta: i64, create: Option<Policy>, now: TimestampTz) -> Counter {
    ensure_writable();
    feed::note(Change::Key(key));
    let counter = incr_locked(key, delta, create, now);
    if let Counter::Written(_) = counter {
        leases::changed_key(key);
    }
    if let Counter::Written(_) = counter {
        // A counter is short: at most 20 digits. A live counter keeps its expiry, already known
        // to the evictor: no new earliest expiry.
        let expires_at = create.map_or(crate::expiry::NEVER, |policy| policy.expires_at(now));
        note_write(expires_at, key.len() + 20);
    }
    counter
}

/// [`incr`]'s write: directly, or through the statements with the row locked.
fn incr_locked(key: &str, delta: i64, create: Option<Policy>, now: TimestampTz) -> Counter {
    if let Some(counter) = incr_directly(key, delta, create, now) {
        return counter;
    }
    let fresh = |client: &mut SpiClient, statements: &Statements, ctid: Option<ItemPointerData>| {
        let Some(policy) = create else {
            return false;
        };
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
            if create.is_none() {
                return Counter::Absent;
            }
            // A concurrent first increment may insert the key between our read and our insert:
            // then read again, and add to it.
            if fresh(client, statements, None) {
                return Counter::Written(delta);
            }
            continue;
        }
        let row = rows.first();
        let ctid = row.get::<ItemPointerData>(1).expect("ctid").expect("a stored row has a ctid");
        let sliding = row.get::<bool>(4).expect("sliding").unwrap_or(false);
        let expires_at: Option<TimestampTz> = row
            .get::<TimestampWithTimeZone>(3)
            .expect("expires_at")
            .map(|stored| touches::expiry(key, stored.into(), sliding));
        let Some(expires_at) = expires_at.filter(|at| *at > now) else {
            if !fresh(client, statements, Some(ctid)) {
                return Counter::Absent;
            }
            return Counter::Written(delta);
        };
        let stored = row.get::<&[u8]>(2).expect("value").unwrap_or_default();
        let Some(current) = parse_counter(stored) else {
            return Counter::NotAnInteger;
        };
        let Some(next) = current.checked_add(delta) else {
            return Counter::Overflow;
        };
        // A pending touch is written with the counter: the new row version is not the one touched.
        let args =
            [ctid.into(), next.to_string().into_bytes().as_slice().into(), timestamptz(expires_at).into()];
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
    ensure_writable();
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
        note_write(policy.expires_at(now), 0);
        feed::note(Change::Key(key));
        leases::changed_key(key);
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
    ensure_readable();
    let now = timestamptz(now());
    with_statements(|client, statements| {
        let rows = match prefix_end(prefix) {
            Some(end) => client.select(
                &statements.list_range,
                None,
                &[prefix.into(), now.into(), max_rows.into(), end.as_str().into()],
            ),
            None => client.select(&statements.list_from, None, &[prefix.into(), now.into(), max_rows.into()]),
        }
        .expect("list");
        rows.map(|row| {
            let key = row.get::<String>(1).expect("key").expect("a key");
            let stored: TimestampWithTimeZone = row.get(2).expect("expires_at").expect("an expiry");
            let sliding: Option<Interval> = row.get(3).expect("sliding");
            let expires_at = timestamptz(touches::expiry(&key, stored.into(), sliding.is_some()));
            Listed {
                key,
                expires_at,
                sliding,
                absolute_expires_at: row.get(4).expect("absolute_expires_at"),
                value_bytes: row.get(5).expect("value_bytes").unwrap_or(0),
            }
        })
        .collect()
    })
}

/// Removes every entry whose key starts with `prefix` (all of them for the empty prefix),
/// locking them in key order; returns how many, and how many of those were live.
pub fn remove_prefix(prefix: &str) -> (i64, i64) {
    ensure_writable();
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
        // Keys not stored now may be computed under a lease: every lease of the table ends.
        leases::changed_all();
        if removed > 0 {
            feed::note(if prefix.is_empty() { Change::All } else { Change::Prefix(prefix) });
        }
        (removed, live)
    })
}

/// A live entry's tags: `Some(None)` when it has none, `None` when absent or expired.
pub fn tags_of(key: &str) -> Option<Option<Vec<String>>> {
    ensure_readable();
    with_statements(|client, statements| {
        let rows = client
            .select(&tag_statements(statements).tags_of, None, &[key.into(), timestamptz(now()).into()])
            .expect("tags");
        (!rows.is_empty()).then(|| rows.first().get::<Vec<String>>(1).expect("tags"))
    })
}

/// Removes every entry tagged with any of `tags` (all of them when `match_all`), locking them in
/// key order; returns how many live ones it removed.
pub fn remove_by_tag(tags: &[String], match_all: bool) -> i64 {
    ensure_writable();
    with_statements(|client, statements| {
        let tagged = tag_statements(statements);
        let statement = if match_all { &tagged.remove_all } else { &tagged.remove_any };
        let args = [tags.to_vec().into(), timestamptz(now()).into()];
        let rows = client.update(statement, None, &args).expect("remove by tag");
        // A fill under a lease may carry these tags: every lease of the table ends.
        leases::changed_all();
        if !rows.is_empty() {
            feed::note(Change::Tags(tags));
        }
        count_live(rows)
    })
}
