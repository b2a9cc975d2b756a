//! The hot paths without SPI: one primary-key probe straight through the index, as the executor's
//! index scan would make it, minus the executor; and replacing the row it finds straight through
//! the heap. A `cache_get` hit then costs about what a plain `SELECT value FROM t WHERE id = $1`
//! costs, instead of that plus a nested SPI query; a `cache_set` of an existing key about what a
//! plain upsert costs.

use crate::compat::{self, IndexUpdate};
use pgrx::datum::Interval;
use pgrx::pg_sys::{self, ItemPointerData, Oid, TimestampTz};
use pgrx::prelude::*;
use std::cell::Cell;

/// The cache table and its primary key, looked up once per backend.
#[derive(Clone, Copy)]
struct Relations {
    table: Oid,
    primary_key: Oid,
}

thread_local! {
    static RELATIONS: Cell<Option<Relations>> = const { Cell::new(None) };
}

/// Columns of the cache table, 1-based as in the tuple descriptor.
const VALUE: usize = 2;
const EXPIRES_AT: usize = 3;
const SLIDING: usize = 4;
const ABSOLUTE_EXPIRES_AT: usize = 5;

/// An entry as stored, live or not.
pub struct Row {
    pub ctid: ItemPointerData,
    pub expires_at: TimestampTz,
    pub sliding: Option<Interval>,
    pub absolute_expires_at: Option<TimestampTz>,
    pub value: Option<Vec<u8>>,
}

/// The cache table's OID.
pub fn table() -> Oid {
    relations().table
}

/// The cache table's name, schema-qualified and quoted for SQL.
pub fn qualified_table_name(table: Oid) -> String {
    unsafe {
        let name = pg_sys::quote_qualified_identifier(
            pg_sys::get_namespace_name(pg_sys::get_rel_namespace(table)),
            pg_sys::get_rel_name(table),
        );
        std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
    }
}

fn relations() -> Relations {
    let cached = RELATIONS.get().filter(|relations| {
        // Still there: the extension may have been dropped and created again since.
        unsafe {
            pg_sys::SearchSysCacheExists(
                pg_sys::SysCacheIdentifier::RELOID as i32,
                relations.table.into(),
                0.into(),
                0.into(),
                0.into(),
            )
        }
    });
    cached.unwrap_or_else(|| {
        let found = Spi::connect(|client| {
            client
                .select(
                    "SELECT c.oid, i.indexrelid FROM pg_catalog.pg_class c \
                     JOIN pg_catalog.pg_extension e ON e.extname = 'pg_cache' AND c.relnamespace = e.extnamespace \
                     JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary \
                     WHERE c.relname = 'pg_cache_entries'",
                    Some(1),
                    &[],
                )
                .ok()
                .and_then(|rows| rows.first().get_two::<Oid, Oid>().ok())
        });
        let Some((Some(table), Some(primary_key))) = found else {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                "pg_cache: the extension is not created in this database"
            );
        };
        let relations = Relations { table, primary_key };
        RELATIONS.set(Some(relations));
        relations
    })
}

/// The snapshot SPI would read with: the running statement's while this transaction has written
/// nothing, else a new one that sees this transaction's own writes (a `cache_set` earlier in the
/// same statement included).
unsafe fn read_snapshot() -> pg_sys::Snapshot {
    if pg_sys::GetCurrentTransactionIdIfAny() == pg_sys::InvalidTransactionId && pg_sys::ActiveSnapshotSet() {
        pg_sys::GetActiveSnapshot()
    } else {
        pg_sys::CommandCounterIncrement();
        pg_sys::GetTransactionSnapshot()
    }
}

fn text_datum(text: &str) -> pg_sys::Datum {
    text.into_datum().expect("a text datum")
}

/// Whether the current role holds every privilege in `modes` on the cache table.
fn has_privileges(table: Oid, modes: u32) -> bool {
    let modes = modes as pg_sys::AclMode;
    unsafe {
        pg_sys::pg_class_aclmask(table, pg_sys::GetUserId(), modes, pg_sys::AclMaskHow::ACLMASK_ALL) == modes
    }
}

/// Opens the table and its primary key with `lock` (held to the end of the transaction, as the
/// executor's locks are), probes the key, and hands the slot of the row found to `read`.
unsafe fn probe<R>(
    relations: Relations,
    lock: u32,
    key: pg_sys::Datum,
    read: impl FnOnce(pg_sys::Relation, pg_sys::Relation, *mut pg_sys::TupleTableSlot) -> R,
) -> Option<R> {
    let lock = lock as pg_sys::LOCKMODE;
    let table = pg_sys::table_open(relations.table, lock);
    let index = pg_sys::index_open(relations.primary_key, lock);
    let mut scan_key = pg_sys::ScanKeyData::default();
    // Byte-wise equality, the primary key's "C" collation.
    pg_sys::ScanKeyInit(
        &mut scan_key,
        1,
        pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
        Oid::from(pg_sys::F_TEXTEQ),
        key,
    );
    scan_key.sk_collation = pg_sys::C_COLLATION_OID;
    let scan = compat::index_beginscan(table, index, read_snapshot(), 1, 0);
    pg_sys::index_rescan(scan, &mut scan_key, 1, std::ptr::null_mut(), 0);
    let slot = pg_sys::table_slot_create(table, std::ptr::null_mut());
    let found = pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
    let result = found.then(|| read(table, index, slot));
    pg_sys::ExecDropSingleTupleTableSlot(slot);
    pg_sys::index_endscan(scan);
    pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
    pg_sys::table_close(table, pg_sys::NoLock as pg_sys::LOCKMODE);
    result
}

/// The row stored under `key`, with its value when `with_value`.
pub fn find(key: &str, with_value: bool) -> Option<Row> {
    let relations = relations();
    // The permission the executor would check for this SELECT.
    if !has_privileges(relations.table, pg_sys::ACL_SELECT) {
        unsafe {
            pg_sys::aclcheck_error(
                pg_sys::AclResult::ACLCHECK_NO_PRIV,
                pg_sys::ObjectType::OBJECT_TABLE,
                pg_sys::get_rel_name(relations.table),
            )
        };
    }
    unsafe {
        probe(relations, pg_sys::AccessShareLock, text_datum(key), |_, _, slot| {
            pg_sys::slot_getsomeattrs_int(slot, ABSOLUTE_EXPIRES_AT as i32);
            let column = |attribute: usize| {
                let null = *(*slot).tts_isnull.add(attribute - 1);
                (!null).then(|| *(*slot).tts_values.add(attribute - 1))
            };
            Row {
                ctid: (*slot).tts_tid,
                expires_at: column(EXPIRES_AT)
                    .map(|datum| datum.value() as TimestampTz)
                    .unwrap_or(TimestampTz::MIN),
                sliding: column(SLIDING)
                    .and_then(|datum| Interval::from_polymorphic_datum(datum, false, pg_sys::INTERVALOID)),
                absolute_expires_at: column(ABSOLUTE_EXPIRES_AT).map(|datum| datum.value() as TimestampTz),
                value: if with_value {
                    column(VALUE)
                        .and_then(|datum| Vec::<u8>::from_polymorphic_datum(datum, false, pg_sys::BYTEAOID))
                } else {
                    None
                },
            }
        })
    }
}

/// A full row for [`replace`].
pub struct NewRow<'a> {
    pub value: &'a [u8],
    pub expires_at: TimestampTz,
    pub sliding: Option<Interval>,
    pub absolute_expires_at: Option<TimestampTz>,
}

/// Replaces the row stored under `key` with a new version, straight through the heap: what the
/// upsert's ON CONFLICT DO UPDATE does for an existing key, minus a nested executor. False when
/// there is no such row, when another session changed it since our snapshot, when the role lacks
/// a privilege the upsert needs, or in a read-only transaction: the caller then upserts through
/// SPI, which handles all of those (and raises the errors).
pub fn replace(key: &str, row: &NewRow) -> bool {
    // The executor refuses writes in a read-only transaction; the upsert raises that error.
    if unsafe { pg_sys::XactReadOnly } {
        return false;
    }
    let relations = relations();
    if !has_privileges(relations.table, pg_sys::ACL_SELECT | pg_sys::ACL_INSERT | pg_sys::ACL_UPDATE) {
        return false;
    }
    let key_datum = text_datum(key);
    unsafe {
        probe(relations, pg_sys::RowExclusiveLock, key_datum, |table, index, slot| {
            let mut old_tid = (*slot).tts_tid;
            let mut values = [
                key_datum,
                row.value.into_datum().expect("a bytea datum"),
                pg_sys::Datum::from(row.expires_at),
                row.sliding.into_datum().unwrap_or(pg_sys::Datum::from(0)),
                row.absolute_expires_at.map_or(pg_sys::Datum::from(0), pg_sys::Datum::from),
            ];
            let mut nulls = [false, false, false, row.sliding.is_none(), row.absolute_expires_at.is_none()];
            let tuple = pg_sys::heap_form_tuple((*table).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            let mut failure = pg_sys::TM_FailureData::default();
            let mut lock_mode = pg_sys::LockTupleMode::LockTupleExclusive;
            // Waits for a session holding the row; anything but a clean update goes to the upsert.
            let (result, indexes) = compat::heap_update(
                table,
                &mut old_tid,
                tuple,
                pg_sys::GetCurrentCommandId(true),
                std::ptr::null_mut(),
                true,
                &mut failure,
                &mut lock_mode,
            );
            if result != pg_sys::TM_Result::TM_Ok {
                return false;
            }
            // Not a HOT update: the new version needs a primary-key entry of its own.
            if indexes == IndexUpdate::All {
                let mut key_values = [key_datum];
                let mut key_nulls = [false];
                pg_sys::index_insert(
                    index,
                    key_values.as_mut_ptr(),
                    key_nulls.as_mut_ptr(),
                    &mut (*tuple).t_self,
                    table,
                    pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES,
                    true,
                    pg_sys::BuildIndexInfo(index),
                );
            }
            true
        })
        .unwrap_or(false)
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{find, replace, NewRow};
    use pgrx::prelude::*;

    #[pg_test]
    fn finds_an_entry_set_earlier_in_the_same_transaction() {
        Spi::run("SELECT cache_set('probe', 'v', sliding => '5 min', ttl => '1 hour')").unwrap();
        let row = find("probe", true).expect("the entry is found");
        assert_eq!(row.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(row.sliding.map(|window| window.as_micros()), Some(300_000_000));
        assert!(row.absolute_expires_at.is_some_and(|cap| cap > row.expires_at));
    }

    #[pg_test]
    fn reads_the_value_only_when_asked() {
        Spi::run("SELECT cache_set('probe', 'v')").unwrap();
        assert!(find("probe", false).expect("the entry is found").value.is_none());
    }

    #[pg_test]
    fn replace_rewrites_an_existing_row_and_leaves_new_keys_to_the_upsert() {
        let row = NewRow {
            value: b"new",
            expires_at: i64::MAX / 2,
            sliding: None,
            absolute_expires_at: Some(i64::MAX / 2),
        };
        assert!(!replace("probe", &row), "no row to replace yet");
        Spi::run("SELECT cache_set('probe', 'old', sliding => '5 min')").unwrap();
        assert!(replace("probe", &row));
        let stored = find("probe", true).expect("the entry is found");
        assert_eq!(stored.value.as_deref(), Some(&b"new"[..]));
        assert!(stored.sliding.is_none());
        assert_eq!(stored.absolute_expires_at, Some(i64::MAX / 2));
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM pg_cache_entries WHERE key = 'probe'").unwrap(),
            Some(1)
        );
    }

    #[pg_test]
    fn absent_keys_are_not_found() {
        assert!(find("no such key", true).is_none());
    }
}
