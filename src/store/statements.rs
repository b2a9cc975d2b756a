//! The kept statements: each planned once per backend and kept, for the table the extension
//! has now (re-planning on every call costs several times the call itself). Every operator,
//! function and cast they name is schema-qualified, and the table is named by its OID's schema.

use crate::access;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::{self, TimestampTz};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use std::cell::RefCell;
use std::rc::Rc;

pub(super) struct Statements {
    /// The table they were prepared for: a new one (the extension created again) needs new ones.
    table: pg_sys::Oid,
    /// Those that read or write tags, when the table has the column (a 0.1.0 table, before
    /// `ALTER EXTENSION pg_cache UPDATE`, has not).
    pub(super) tagged: Option<TagStatements>,
    pub(super) find: OwnedPreparedStatement,
    pub(super) slide: OwnedPreparedStatement,
    pub(super) upsert: OwnedPreparedStatement,
    pub(super) add: OwnedPreparedStatement,
    pub(super) lock_for_update: OwnedPreparedStatement,
    pub(super) write_value: OwnedPreparedStatement,
    pub(super) renew: OwnedPreparedStatement,
    pub(super) insert_if_absent: OwnedPreparedStatement,
    pub(super) expire: OwnedPreparedStatement,
    pub(super) delete: OwnedPreparedStatement,
    pub(super) take: OwnedPreparedStatement,
    pub(super) list_range: OwnedPreparedStatement,
    pub(super) list_from: OwnedPreparedStatement,
    pub(super) delete_range: OwnedPreparedStatement,
    pub(super) delete_from: OwnedPreparedStatement,
    pub(super) evict: OwnedPreparedStatement,
    pub(super) measure: OwnedPreparedStatement,
    pub(super) sample: OwnedPreparedStatement,
    /// Whether they see pending touches (`pg_cache_pending_expiry` exists).
    touches_seen: bool,
    /// A pending touch written where the direct path declines; `None` when touches are not seen.
    pub(super) apply_touch: Option<OwnedPreparedStatement>,
}

/// How the statements decide that a row is live: by its stored expiry, and by its pending touch
/// when the stored expiry has passed (through `pg_cache_pending_expiry`, once it exists).
struct Liveness {
    /// `schema.pg_cache_pending_expiry('table'::oid, ` when touches are seen.
    touched: Option<String>,
}

impl Liveness {
    fn new(table_oid: pg_sys::Oid, touches_seen: bool) -> Liveness {
        Liveness {
            touched: touches_seen.then(|| {
                format!("{}('{}'::pg_catalog.oid, ", access::QUALIFIED_PENDING_EXPIRY, table_oid.to_u32())
            }),
        }
    }

    /// The expiry of the row `alias` (`e.` or empty), its pending touch included.
    fn expiry(&self, alias: &str) -> String {
        match &self.touched {
            Some(call) => format!("{call}{alias}key, {alias}expires_at)"),
            None => format!("{alias}expires_at"),
        }
    }

    /// Whether the row `alias` is live at `at` (a parameter); the touch is looked up only for a
    /// sliding entry (only those are touched: an absolute one stored later with the same expiry
    /// is not extended) whose stored expiry has passed.
    fn live(&self, alias: &str, at: &str) -> String {
        let stored = format!("{alias}expires_at OPERATOR(pg_catalog.>) {at}");
        match self.touched {
            Some(_) => format!(
                "({stored} OR ({alias}sliding IS NOT NULL AND {} OPERATOR(pg_catalog.>) {at}))",
                self.expiry(alias)
            ),
            None => stored,
        }
    }
}

pub(super) struct TagStatements {
    pub(super) tags_of: OwnedPreparedStatement,
    pub(super) remove_any: OwnedPreparedStatement,
    pub(super) remove_all: OwnedPreparedStatement,
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
fn remove_by_tag_sql(table: &str, overlap: &str, live_at_2: &str) -> String {
    let condition = format!("tags OPERATOR(pg_catalog.{overlap}) $1");
    format!(
        "DELETE FROM {table} WHERE key OPERATOR(pg_catalog.=) ANY (ARRAY( \
         SELECT key FROM {table} WHERE {condition} ORDER BY key FOR UPDATE)) AND {condition} \
         RETURNING {live_at_2}"
    )
}

/// `SELECT` of live entries with keys from $1 on, `bound` narrowing the range; at most $3 rows.
fn list_sql(table: &str, bound: &str, live_at_2: &str) -> String {
    format!(
        "SELECT key, expires_at, sliding, absolute_expires_at, pg_catalog.octet_length(value) FROM {table} \
         WHERE key OPERATOR(pg_catalog.>=) $1 {bound} AND {live_at_2} \
         ORDER BY key LIMIT $3"
    )
}

/// `DELETE` of every entry with a key from $1 on, `bound` narrowing the range, locked in key order
/// (by key, so that a row updated while we waited for its lock goes in its new version).
fn delete_sql(table: &str, bound: &str, live_at_2: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE key OPERATOR(pg_catalog.=) ANY (ARRAY( \
         SELECT key FROM {table} WHERE key OPERATOR(pg_catalog.>=) $1 {bound} ORDER BY key FOR UPDATE)) \
         RETURNING {live_at_2}"
    )
}

thread_local! {
    /// Shared, not borrowed, while a statement runs: a trigger or a function called from inside
    /// one may call pg_cache again.
    /// One set per cache table used lately, the most recent last.
    static STATEMENTS: RefCell<Vec<Rc<Statements>>> = const { RefCell::new(Vec::new()) };
}

impl Statements {
    fn prepare(client: &SpiClient, table_oid: pg_sys::Oid, tagged: bool, touches_seen: bool) -> Statements {
        let table = access::qualified_table_name(table_oid);
        let liveness = Liveness::new(table_oid, touches_seen);
        let live_at_2 = liveness.live("", "$2");
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
                    format!("SELECT tags FROM {table} WHERE key OPERATOR(pg_catalog.=) $1 AND {live_at_2}"),
                    &[text(), timestamptz()],
                ),
                remove_any: prepare_mut(remove_by_tag_sql(&table, "&&", &live_at_2), &[text_array(), timestamptz()]),
                remove_all: prepare_mut(remove_by_tag_sql(&table, "@>", &live_at_2), &[text_array(), timestamptz()]),
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
            // cache_add: replaces only an entry expired by $7, its pending touch included;
            // RETURNING says whether it wrote.
            add: prepare_mut(
                upsert_sql(&table, tagged, &format!("WHERE NOT {} RETURNING true", liveness.live("e.", "$7"))),
                &[text(), bytea(), timestamptz(), interval(), timestamptz(), text_array(), timestamptz()],
            ),
            // cache_incr reads the counter locked, then writes it by ctid: the row cannot change
            // in between.
            lock_for_update: prepare_mut(
                format!(
                    "SELECT ctid, value, expires_at, sliding IS NOT NULL FROM {table} \
                     WHERE key OPERATOR(pg_catalog.=) $1 FOR UPDATE"
                ),
                &[text()],
            ),
            // The expiry too: it may be a pending touch's, which the new row version ends.
            write_value: prepare_mut(
                format!("UPDATE {table} SET value = $2, expires_at = $3 WHERE ctid OPERATOR(pg_catalog.=) $1"),
                &[tid(), bytea(), timestamptz()],
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
                     WHERE key OPERATOR(pg_catalog.=) $1 AND {}",
                    liveness.live("", "$5")
                ),
                &[text(), timestamptz(), interval(), timestamptz(), timestamptz()],
            ),
            delete: prepare_mut(
                format!(
                    "DELETE FROM {table} WHERE key OPERATOR(pg_catalog.=) $1 \
                     RETURNING expires_at, NULL::pg_catalog.bytea, sliding IS NOT NULL"
                ),
                &[text()],
            ),
            take: prepare_mut(
                format!(
                    "DELETE FROM {table} WHERE key OPERATOR(pg_catalog.=) $1 \
                     RETURNING expires_at, value, sliding IS NOT NULL"
                ),
                &[text()],
            ),
            // Live entries in [$1, $2) or from $1 on, in key order: a range of the primary key.
            list_range: prepare_mut(
                list_sql(&table, "AND key OPERATOR(pg_catalog.<) $4", &live_at_2),
                &[text(), timestamptz(), int8(), text()],
            ),
            list_from: prepare_mut(list_sql(&table, "", &live_at_2), &[text(), timestamptz(), int8()]),
            // Removals of a range lock its rows in key order (so concurrent batches never
            // deadlock), then delete exactly those; RETURNING says which were live at $2.
            delete_range: prepare_mut(
                delete_sql(&table, "AND key OPERATOR(pg_catalog.<) $3", &live_at_2),
                &[text(), timestamptz(), text()],
            ),
            delete_from: prepare_mut(delete_sql(&table, "", &live_at_2), &[text(), timestamptz()]),
            // One batch: lock what nobody else holds after ctid $3 (the next batch goes on where
            // this one ended, skipping the rows of the batches before it; whether that is a TID
            // range scan or a filtered sequential scan is the planner's choice), then delete
            // exactly those rows by ctid, saying how many key + value bytes each freed. A row a
            // pending touch keeps past the cutoff stays: the touch is looked up under the lock a
            // reader records one under, so a touch recorded before this look keeps the row, and
            // a reader coming after it finds the entry expired.
            evict: prepare_mut(
                format!(
                    "DELETE FROM {table} WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY( \
                     SELECT ctid FROM {table} WHERE ctid OPERATOR(pg_catalog.>) $3 \
                     AND NOT {} \
                     LIMIT $2 FOR UPDATE SKIP LOCKED)) \
                     RETURNING ctid, pg_catalog.octet_length(key)::pg_catalog.int8 OPERATOR(pg_catalog.+) \
                     pg_catalog.octet_length(value)::pg_catalog.int8, expires_at",
                    liveness.live("", "$1")
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
                              FILTER (WHERE {}), 0)::pg_catalog.int8 FROM {table}",
                    liveness.live("", "$1")
                ),
                &[timestamptz()],
            ),
            // Live entries of a sample of the table's pages ($2 percent), soonest expiring first,
            // by their expiry with pending touches (the hottest entries are the most touched).
            sample: prepare_mut(
                format!(
                    "SELECT * FROM (SELECT CASE WHEN sliding IS NULL THEN expires_at ELSE {} END AS expiry, \
                     pg_catalog.octet_length(key)::pg_catalog.int8 OPERATOR(pg_catalog.+) \
                     pg_catalog.octet_length(value)::pg_catalog.int8 \
                     FROM {table} TABLESAMPLE pg_catalog.system ($2)) sampled \
                     WHERE expiry OPERATOR(pg_catalog.>) $1 ORDER BY expiry",
                    liveness.expiry("")
                ),
                &[timestamptz(), PgBuiltInOids::FLOAT4OID.oid()],
            ),
            touches_seen,
            // The key is checked by its touch: the function extends the expiry only for the
            // touch of this row's key read with this expiry.
            apply_touch: touches_seen.then(|| {
                prepare_mut(
                    format!(
                        "UPDATE {table} SET expires_at = $3 WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY( \
                         SELECT ctid FROM {table} WHERE ctid OPERATOR(pg_catalog.=) $1 AND sliding IS NOT NULL \
                         AND expires_at OPERATOR(pg_catalog.=) $2 AND {} OPERATOR(pg_catalog.>=) $3 \
                         FOR UPDATE SKIP LOCKED)) RETURNING ctid",
                        liveness.expiry("")
                    ),
                    &[tid(), timestamptz(), timestamptz()],
                )
            }),
        }
    }
}

fn in_recovery() -> bool {
    // SAFETY: reads shared state PostgreSQL keeps for this check.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// On a standby, only a logged cache can be read.
pub(super) fn ensure_readable() {
    if in_recovery() && !access::caches::current().logged {
        crate::error::unavailable_in_recovery();
    }
}

/// On a standby, nothing can be written.
pub(super) fn ensure_writable() {
    ensure_readable();
    if in_recovery() {
        crate::error::read_only_on_standby(&access::caches::current().name);
    }
}

/// Cache tables whose statements a backend keeps at once (each set is about 20 plans).
const KEPT_TABLES: usize = 16;

pub(super) fn with_statements<R>(f: impl FnOnce(&mut SpiClient, &Statements) -> R) -> R {
    ensure_readable();
    let table = access::table();
    let tagged = access::has_tags_column(table);
    let touches_seen = access::has_pending_expiry_function();
    Spi::connect_mut(|client| {
        let kept = STATEMENTS.with_borrow(|kept| {
            kept.iter()
                .find(|prepared| {
                    prepared.table == table
                        && prepared.tagged.is_some() == tagged
                        && prepared.touches_seen == touches_seen
                })
                .cloned()
        });
        let statements = kept.unwrap_or_else(|| {
            let prepared = Rc::new(Statements::prepare(client, table, tagged, touches_seen));
            STATEMENTS.with_borrow_mut(|kept| {
                kept.retain(|other| other.table != table);
                if kept.len() >= KEPT_TABLES {
                    kept.remove(0);
                }
                kept.push(Rc::clone(&prepared));
            });
            prepared
        });
        f(client, &statements)
    })
}

pub(super) fn timestamptz(micros: TimestampTz) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(micros).expect("expiry within the timestamptz range")
}
