//! The read path without SPI: one primary-key probe straight through the index, as the executor's
//! index scan would make it, minus the executor. A `cache_get` hit then costs about what a plain
//! `SELECT value FROM t WHERE id = $1` costs, instead of that plus a nested SPI query.

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

/// The row stored under `key`, with its value when `with_value`.
pub fn find(key: &str, with_value: bool) -> Option<Row> {
    let relations = relations();
    unsafe {
        // The permission the executor would check for this SELECT.
        let user = pg_sys::GetUserId();
        if pg_sys::pg_class_aclcheck(relations.table, user, pg_sys::ACL_SELECT as pg_sys::AclMode)
            != pg_sys::AclResult::ACLCHECK_OK
        {
            pg_sys::aclcheck_error(
                pg_sys::AclResult::ACLCHECK_NO_PRIV,
                pg_sys::ObjectType::OBJECT_TABLE,
                pg_sys::get_rel_name(relations.table),
            );
        }
        // Locks stay until the end of the transaction, as the executor's do.
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let table = pg_sys::table_open(relations.table, lock);
        let index = pg_sys::index_open(relations.primary_key, lock);
        let key_datum = key.into_datum().expect("a text datum");
        let mut scan_key = pg_sys::ScanKeyData::default();
        // Byte-wise equality, the primary key's "C" collation.
        pg_sys::ScanKeyInit(
            &mut scan_key,
            1,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            Oid::from(pg_sys::F_TEXTEQ),
            key_datum,
        );
        scan_key.sk_collation = pg_sys::C_COLLATION_OID;
        let scan = pg_sys::index_beginscan(table, index, read_snapshot(), 1, 0);
        pg_sys::index_rescan(scan, &mut scan_key, 1, std::ptr::null_mut(), 0);
        let slot = pg_sys::table_slot_create(table, std::ptr::null_mut());
        let row =
            pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot).then(|| {
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
                    sliding: column(SLIDING).and_then(|datum| {
                        Interval::from_polymorphic_datum(datum, false, pg_sys::INTERVALOID)
                    }),
                    absolute_expires_at: column(ABSOLUTE_EXPIRES_AT)
                        .map(|datum| datum.value() as TimestampTz),
                    value: if with_value {
                        column(VALUE).and_then(|datum| {
                            Vec::<u8>::from_polymorphic_datum(datum, false, pg_sys::BYTEAOID)
                        })
                    } else {
                        None
                    },
                }
            });
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::table_close(table, pg_sys::NoLock as pg_sys::LOCKMODE);
        row
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::find;
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
    fn absent_keys_are_not_found() {
        assert!(find("no such key", true).is_none());
    }
}
