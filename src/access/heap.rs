//! Hand-written heap and index access to the cache table: the primary-key probe behind reads;
//! row versions written straight into the heap (a replaced value, a slid expiry, a counter); new
//! rows inserted speculatively, as `INSERT … ON CONFLICT` inserts them; rows deleted. A
//! `cache_get` hit then costs about what a plain `SELECT value FROM t WHERE key = $1` costs, and
//! a write about what the statement costs, instead of that plus a nested SPI query.
//!
//! Every path here does what the executor would do for the statement it stands in for, or
//! declines and lets the caller run the kept SPI statement, which does it all:
//! - it runs only while the table is exactly as a released pg_cache made it ([`Shape`]): no
//!   triggers, rules, row-level security, CHECK constraints, inheritance, and the columns of a
//!   released version; its primary key the one the extension made. Anything else (a user's
//!   `ALTER TABLE`, an index rebuilt by `REINDEX … CONCURRENTLY` and not yet valid) declines;
//! - the table and its primary key are looked up in the relcache on every call, after the lock
//!   is taken, so DDL and index rebuilds are seen at once;
//! - table privileges are checked as the statement would check them; without them it declines,
//!   so the statement raises the error (or succeeds through column privileges);
//! - writes decline in a read-only transaction (the statement raises 25006), wait for and
//!   respect concurrent writers as `heap_update` does, and insert into every index the executor
//!   would (`ExecOpenIndices` / `ExecInsertIndexTuples`, which see indexes still being built);
//! - reads use the snapshot SPI would: a new one per call (in READ COMMITTED), after a command
//!   counter increment so the caller's own earlier writes are seen.

use super::caches::table;
use super::table::relation_exists;
use crate::compat::{self, IndexUpdate, OnConflict};
use pgrx::datum::Interval;
use pgrx::pg_sys::{self, ItemPointerData, Oid, TimestampTz};
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use std::ffi::CStr;

/// What a direct path did: its result, or nothing because the SPI statement must run instead.
pub enum Direct<T> {
    Done(T),
    Declined,
}

impl<T> Direct<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Direct<U> {
        match self {
            Direct::Done(done) => Direct::Done(f(done)),
            Direct::Declined => Direct::Declined,
        }
    }
}

/// Columns of the cache table, 1-based as in the tuple descriptor.
const KEY: usize = 1;
const VALUE: usize = 2;
const EXPIRES_AT: usize = 3;
const SLIDING: usize = 4;
const ABSOLUTE_EXPIRES_AT: usize = 5;
const TAGS: usize = 6;

/// The columns of the table as the current version creates it: name, type, NOT NULL.
const COLUMNS: [(&CStr, Oid, bool); 6] = [
    (c"key", pg_sys::TEXTOID, true),
    (c"value", pg_sys::BYTEAOID, true),
    (c"expires_at", pg_sys::TIMESTAMPTZOID, true),
    (c"sliding", pg_sys::INTERVALOID, false),
    (c"absolute_expires_at", pg_sys::TIMESTAMPTZOID, false),
    (c"tags", pg_sys::TEXTARRAYOID, false),
];

/// Columns of the table as 0.1.0 created it: the first five, without tags. Its functions keep
/// working on that table, with a newer library, until `ALTER EXTENSION pg_cache UPDATE`.
const COLUMNS_0_1_0: usize = 5;

/// An entry as stored, live or not.
pub struct Row {
    pub ctid: ItemPointerData,
    pub expires_at: TimestampTz,
    pub sliding: Option<Interval>,
    pub absolute_expires_at: Option<TimestampTz>,
    pub value: Option<Vec<u8>>,
}

/// Whether the current role holds every privilege in `modes` on the table itself.
pub fn has_privileges(table: Oid, modes: u32) -> bool {
    let modes = modes as pg_sys::AclMode;
    // SAFETY: a catalog lookup of the table's ACL for the current user, in a transaction.
    unsafe {
        pg_sys::pg_class_aclmask(table, pg_sys::GetUserId(), modes, pg_sys::AclMaskHow::ACLMASK_ALL) == modes
    }
}

/// Raises the error a statement raises without a privilege on `table` (42501).
pub fn refuse_privilege(table: Oid) -> ! {
    // SAFETY: a catalog lookup of the table's name, in a transaction; aclcheck_error raises an
    // ERROR and does not return.
    unsafe {
        pg_sys::aclcheck_error(
            pg_sys::AclResult::ACLCHECK_NO_PRIV,
            pg_sys::ObjectType::OBJECT_TABLE,
            pg_sys::get_rel_name(table),
        );
    }
    unreachable!("aclcheck_error raises an ERROR")
}

/// Whether the open table is exactly as a released pg_cache made it, so that writing a row
/// version by hand does all the statement would.
unsafe fn is_as_released(table: pg_sys::Relation, for_write: bool) -> bool {
    // SAFETY: the caller holds `table` open (see `open`): its relcache entry, descriptor and constraints stay
    // valid while it is.
    unsafe {
        let form = &*(*table).rd_rel;
        // Written only unlogged, as created: no WAL, no publication, so no replica identity to
        // check. A logged cache's table is read here and written by the kept statements, which
        // WAL-log and decode as any statement does.
        let unlogged = form.relpersistence == pg_sys::RELPERSISTENCE_UNLOGGED as std::ffi::c_char;
        let logged = form.relpersistence == pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char;
        if form.relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char
            || form.relam != pg_sys::HEAP_TABLE_AM_OID
            || !(unlogged || (logged && !for_write))
            || form.relhastriggers
            || form.relhasrules
            || form.relrowsecurity
            || form.relhassubclass
            || form.relispartition
            || !(*table).trigdesc.is_null()
        {
            return false;
        }
        let descriptor = (*table).rd_att;
        let columns = (*descriptor).natts as usize;
        if columns != COLUMNS.len() && columns != COLUMNS_0_1_0 {
            return false;
        }
        let constraints = (*descriptor).constr;
        if !constraints.is_null() && ((*constraints).num_check > 0 || (*constraints).has_generated_stored) {
            return false;
        }
        let attributes = compat::attributes(descriptor, columns);
        COLUMNS.iter().zip(attributes).all(|((name, type_oid, not_null), attribute)| {
            !attribute.attisdropped
                && attribute.atttypid == *type_oid
                && attribute.attnotnull == *not_null
                && attribute.attgenerated == 0
                && CStr::from_ptr(attribute.attname.data.as_ptr()) == *name
        }) && attributes[KEY - 1].attcollation == pg_sys::C_COLLATION_OID
    }
}

/// Whether the open index is the primary key the extension made: a unique B-tree on the key
/// alone, byte-wise.
unsafe fn is_released_primary_key(index: pg_sys::Relation) -> bool {
    // SAFETY: the caller holds `index` open: its relcache entry (rd_index, rd_rel, rd_indcollation) stays
    // valid while it is.
    unsafe {
        let form = &*(*index).rd_index;
        (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID
            && form.indisunique
            && form.indisvalid
            && form.indnatts == 1
            && form.indkey.values.as_slice(1)[0] == KEY as i16
            && *(*index).rd_indcollation == pg_sys::C_COLLATION_OID
    }
}

/// The cache table and its primary key, open and locked.
struct Opened {
    table: pg_sys::Relation,
    index: pg_sys::Relation,
}

/// Opens the cache table and its current primary key with `lock` (held to the end of the
/// transaction, as the executor's locks are); `None`, with nothing left open, when either is not
/// as a released version made it.
unsafe fn open(lock: u32) -> Option<Opened> {
    // SAFETY: in a transaction (a SQL function's or a worker's); each relation is opened with `lock` and
    // closed again on every path that does not hand it back in `Opened`.
    unsafe {
        let lock = lock as pg_sys::LOCKMODE;
        // Locked first, then opened: a cache dropped meanwhile (its DROP committed while this call
        // waited for the lock) is an error naming it, not a failure to open an OID.
        let oid = self::table();
        pg_sys::LockRelationOid(oid, lock);
        if !relation_exists(oid) {
            super::caches::dropped_meanwhile();
        }
        let table = pg_sys::table_open(oid, pg_sys::NoLock as pg_sys::LOCKMODE);
        // On a standby, a cache made UNLOGGED since the call looked (cache_alter on the primary)
        // has no data here: the documented error, not a missing file.
        if (*(*table).rd_rel).relpersistence == pg_sys::RELPERSISTENCE_UNLOGGED as std::ffi::c_char
            && pg_sys::RecoveryInProgress()
        {
            pg_sys::table_close(table, pg_sys::NoLock as pg_sys::LOCKMODE);
            crate::error::unavailable_in_recovery();
        }
        // After the lock: the relcache has taken in any DDL, and names today's primary key.
        let primary_key = compat::primary_key_index(table);
        let for_write = lock != pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        if !is_as_released(table, for_write) || primary_key == pg_sys::InvalidOid {
            pg_sys::table_close(table, pg_sys::NoLock as pg_sys::LOCKMODE);
            return None;
        }
        let index = pg_sys::index_open(primary_key, lock);
        if !is_released_primary_key(index) {
            close(Opened { table, index });
            return None;
        }
        Some(Opened { table, index })
    }
}

unsafe fn close(opened: Opened) {
    // SAFETY: `opened` came from `open` and is taken by value, so each relation is closed once.
    unsafe {
        pg_sys::index_close(opened.index, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::table_close(opened.table, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}

/// Pushes the snapshot a query run through SPI in a volatile function would get: the caller's
/// earlier writes made visible, then a new snapshot (READ COMMITTED) or the transaction's.
/// The caller pops it.
unsafe fn push_read_snapshot() -> pg_sys::Snapshot {
    // SAFETY: in a transaction; the snapshot pushed here is popped by the caller (`Probe::end`).
    unsafe {
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::GetActiveSnapshot()
    }
}

fn text_datum(text: &str) -> pg_sys::Datum {
    text.into_datum().expect("a text datum")
}

/// An index scan of the primary key of `opened`, with the read snapshot, probing one key after
/// another.
struct Probe {
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    /// Byte-wise equality with the key (the primary key's "C" collation), made once: each probe
    /// sets only its argument.
    key: pg_sys::ScanKeyData,
}

impl Probe {
    unsafe fn begin(opened: &Opened) -> Probe {
        // SAFETY: `opened` holds the table and its index open and locked for the scan's life; the snapshot
        // pushed here is popped in `end`.
        unsafe {
            let snapshot = push_read_snapshot();
            let mut key = pg_sys::ScanKeyData::default();
            pg_sys::ScanKeyInit(
                &mut key,
                1,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                Oid::from(pg_sys::F_TEXTEQ),
                pg_sys::Datum::from(0),
            );
            key.sk_collation = pg_sys::C_COLLATION_OID;
            Probe {
                scan: compat::index_beginscan(opened.table, opened.index, snapshot, 1),
                slot: pg_sys::table_slot_create(opened.table, std::ptr::null_mut()),
                key,
            }
        }
    }

    /// The slot of the row stored under `key`, if any.
    unsafe fn find(&mut self, key: pg_sys::Datum) -> Option<*mut pg_sys::TupleTableSlot> {
        // SAFETY: the scan and slot were made by `begin` and live until `end`; `key` is a text datum that
        // outlives the rescan.
        unsafe {
            self.key.sk_argument = key;
            pg_sys::index_rescan(self.scan, &mut self.key, 1, std::ptr::null_mut(), 0);
            pg_sys::index_getnext_slot(self.scan, pg_sys::ScanDirection::ForwardScanDirection, self.slot)
                .then_some(self.slot)
        }
    }

    unsafe fn end(self) {
        // SAFETY: frees what `begin` made, once (self by value), and pops its snapshot.
        unsafe {
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::index_endscan(self.scan);
            pg_sys::PopActiveSnapshot();
        }
    }
}

/// Probes the primary key of `opened` for `key` and hands the slot of the row found to `read`.
unsafe fn probe<R>(
    opened: &Opened,
    key: pg_sys::Datum,
    read: impl FnOnce(*mut pg_sys::TupleTableSlot) -> R,
) -> Option<R> {
    // SAFETY: `opened` is open and locked; the probe is begun, used and ended here.
    unsafe {
        let mut probe = Probe::begin(opened);
        let result = probe.find(key).map(read);
        probe.end();
        result
    }
}

/// The entry in `slot`, with its value when `with_value`.
unsafe fn read_row(slot: *mut pg_sys::TupleTableSlot, with_value: bool) -> Row {
    // SAFETY: `slot` holds a row of the cache table from a scan of it; its attributes are deformed before
    // they are read, and a value is copied out of the slot.
    unsafe {
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
    }
}

/// For each of `keys` (distinct), in order, the row stored under it, if any, handed to `each`
/// with the key's index, the key as a text datum, and the value's datum (detoasted, valid only
/// during the call, in a memory context reset after it: a batch of large values holds one at a
/// time): one open of the table, one snapshot, one scan re-aimed at each key.
pub fn find_each(
    keys: &[&str],
    mut each: impl FnMut(usize, pg_sys::Datum, &Row, pg_sys::Datum),
) -> Direct<()> {
    // The privilege the statement `SELECT … FROM t WHERE key = $1` would need.
    with_opened(Needs::Read(pg_sys::ACL_SELECT), |opened| {
        // SAFETY: the table and index are open and locked (`with_opened`); the probe's snapshot is
        // popped by `end`; the value is read from the probe's slot while it holds the row, and
        // whatever detoasting allocates lives in the per-row context until `each` returns.
        unsafe {
            let mut per_row = PgMemoryContexts::new("pg_cache read");
            let mut probe = Probe::begin(opened);
            for (i, key) in keys.iter().enumerate() {
                pgrx::check_for_interrupts!();
                let key_datum = text_datum(key);
                let Some(slot) = probe.find(key_datum) else {
                    continue;
                };
                let row = read_row(slot, false);
                let stored = *(*slot).tts_values.add(VALUE - 1);
                let pointer = stored.cast_mut_ptr::<pg_sys::varlena>();
                if pgrx::varlena::varatt_is_4b_c(pointer) || pgrx::varlena::varatt_is_1b_e(pointer) {
                    // Compressed or TOASTed: detoasted in the per-row context.
                    per_row.switch_to(|_| {
                        each(
                            i,
                            key_datum,
                            &row,
                            pg_sys::Datum::from(pg_sys::pg_detoast_datum_packed(pointer)),
                        );
                    });
                    per_row.reset();
                } else {
                    each(i, key_datum, &row, stored);
                }
            }
            probe.end();
            Direct::Done(())
        }
    })
}

/// The row stored under `key`, with its value when `with_value`: a probe of the primary key.
fn find_one(key: &str, with_value: bool) -> Direct<Option<Row>> {
    // The privilege the statement `SELECT … FROM t WHERE key = $1` would need.
    with_opened(Needs::Read(pg_sys::ACL_SELECT), |opened| {
        // SAFETY: the table and index are open and locked (`with_opened`); the row is copied out
        // of the probe's slot while it is valid.
        Direct::Done(unsafe { probe(opened, text_datum(key), |slot| read_row(slot, with_value)) })
    })
}

/// The row stored under `key`, with its value when `with_value`.
pub fn find(key: &str, with_value: bool) -> Direct<Option<Row>> {
    find_one(key, with_value)
}

/// Whether the current role may move an entry's expiry: UPDATE on the table or on its
/// `expires_at` column. A hit without it reads and does not slide, as in a read-only transaction.
pub fn may_update_expiry(table: Oid) -> bool {
    has_privileges(table, pg_sys::ACL_UPDATE)
        // SAFETY: a catalog lookup of the column's ACL; the table and column exist.
        || unsafe {
            pg_sys::pg_attribute_aclcheck(table, EXPIRES_AT as i16, pg_sys::GetUserId(), pg_sys::ACL_UPDATE as _)
                == pg_sys::AclResult::ACLCHECK_OK
        }
}

/// Whether a write may go straight to the heap: not in a read-only transaction (the statement
/// raises that error), and with the table privileges the statement needs.
fn may_write(table: Oid, modes: u32) -> bool {
    // SAFETY: reads a backend-local flag.
    !unsafe { pg_sys::XactReadOnly } && has_privileges(table, modes)
}

/// What a direct path needs of the current role, as its statement would: privileges to read, or
/// to write (which also needs a read-write transaction; the statement raises 25006 otherwise).
enum Needs {
    Read(u32),
    Write(u32),
}

/// The start and end every direct path shares: declined without the privileges its statement
/// needs, or when the table or its primary key is not as a released version made it; else
/// `body` runs with both open and locked (AccessShare to read, RowExclusive to write, held to the
/// end of the transaction as the executor's locks are), and they are closed after it.
fn with_opened<R>(needs: Needs, body: impl FnOnce(&Opened) -> Direct<R>) -> Direct<R> {
    let table = table();
    let (allowed, lock) = match needs {
        Needs::Read(modes) => (has_privileges(table, modes), pg_sys::AccessShareLock),
        Needs::Write(modes) => (may_write(table, modes), pg_sys::RowExclusiveLock),
    };
    if !allowed {
        return Direct::Declined;
    }
    // SAFETY: in a transaction (a SQL function's or a worker's); `open` hands back both relations
    // open and locked, or nothing open, and they are closed once, after `body`. An ERROR in `body`
    // aborts the transaction, whose resource owner closes them.
    unsafe {
        let Some(opened) = open(lock) else {
            return Direct::Declined;
        };
        let result = body(&opened);
        close(opened);
        result
    }
}

/// Writes `new` as the next version of the row at `old_tid` and gives it the index entries the
/// executor's UPDATE would. Anything but `TM_Ok` writes nothing: that version is no longer the
/// latest (another session updated or deleted it; a session holding it is waited for first
/// when `wait`, else `TM_BeingModified` comes back at once).
unsafe fn update_row(
    table: pg_sys::Relation,
    old_tid: ItemPointerData,
    new: pg_sys::HeapTuple,
    wait: bool,
) -> pg_sys::TM_Result::Type {
    // SAFETY: as `compat::heap_update` needs: `table` open and locked RowExclusive by the caller, `old_tid` a
    // version of one of its rows, `new` formed with its descriptor.
    unsafe {
        let mut old_tid = old_tid;
        let mut failure = pg_sys::TM_FailureData::default();
        let (result, indexes) = compat::heap_update(table, &mut old_tid, new, wait, &mut failure);
        if result == pg_sys::TM_Result::TM_Ok && indexes != IndexUpdate::None {
            let all = Indexes::open(table, false);
            all.insert(new, indexes, OnConflict::Raise);
            all.close();
        }
        result
    }
}

/// What the executor's UPDATE raises when the row it read changed meanwhile and the transaction
/// reads with one snapshot (REPEATABLE READ, SERIALIZABLE): in READ COMMITTED it moves on.
fn refuse_concurrent_change(result: pg_sys::TM_Result::Type) {
    let changed = matches!(result, pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted);
    // SAFETY: reads a backend-local setting.
    if changed && unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            "could not serialize access due to concurrent update"
        );
    }
}

/// The indexes of a table, opened as the executor opens them for a statement
/// (`ExecOpenIndices`): every live index, those being built by `CREATE INDEX CONCURRENTLY` or
/// `REINDEX … CONCURRENTLY` included. They, their descriptions and the slot live and die with an
/// executor state of their own.
struct Indexes {
    estate: *mut pg_sys::EState,
    result_relation: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
}

impl Indexes {
    /// `speculative`: opened for the speculative insertion of `INSERT … ON CONFLICT`.
    unsafe fn open(table: pg_sys::Relation, speculative: bool) -> Indexes {
        // SAFETY: `table` is open and locked RowExclusive by the caller; the executor state and index
        // relations made here are released by `close`.
        unsafe {
            let estate = pg_sys::CreateExecutorState();
            let caller_context = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
            let result_relation =
                pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>()) as *mut pg_sys::ResultRelInfo;
            pg_sys::InitResultRelInfo(result_relation, table, 0, std::ptr::null_mut(), 0);
            pg_sys::ExecOpenIndices(result_relation, speculative);
            let slot = pg_sys::MakeSingleTupleTableSlot((*table).rd_att, &pg_sys::TTSOpsHeapTuple);
            pg_sys::MemoryContextSwitchTo(caller_context);
            Indexes { estate, result_relation, slot }
        }
    }

    /// Whether `arbiter` is the only index that can refuse a row: no other unique index (a
    /// user's, or the copy `REINDEX … CONCURRENTLY` builds) and no exclusion constraint. The
    /// statement's pre-check waits for sessions inserting the key before it inserts anything, so
    /// such an index never refuses its row for a conflict the upsert resolves; a speculative
    /// insertion without that wait would be refused (23505, 23P01) or deadlock on it.
    unsafe fn only_arbiter_refuses(&self, arbiter: Oid) -> bool {
        // SAFETY: the index relations read here were opened by `ExecOpenIndices` in `open` and stay open
        // until `close`.
        unsafe {
            let count = (*self.result_relation).ri_NumIndices as usize;
            let indexes = std::slice::from_raw_parts((*self.result_relation).ri_IndexRelationDescs, count);
            indexes.iter().all(|&index| {
                let form = &*(*index).rd_index;
                form.indexrelid == arbiter || !(form.indisunique || form.indisexclusion)
            })
        }
    }

    /// Inserts index entries for the new row version `tuple` into every index the executor
    /// would: ready ones, partial and expression ones evaluated as it does. With
    /// `OnConflict::Report`, as for a speculative insertion: whether the arbiter found a conflict.
    unsafe fn insert(&self, tuple: pg_sys::HeapTuple, indexes: IndexUpdate, on_conflict: OnConflict) -> bool {
        // SAFETY: as `compat::insert_index_tuples` needs: indexes opened by `ExecOpenIndices`, `tuple` a row
        // version of the table stored in a slot of it.
        unsafe {
            let caller_context = pg_sys::MemoryContextSwitchTo((*self.estate).es_query_cxt);
            pg_sys::ExecStoreHeapTuple(tuple, self.slot, false);
            let conflict = compat::insert_index_tuples(
                self.result_relation,
                self.slot,
                self.estate,
                indexes,
                on_conflict,
            );
            pg_sys::ExecClearTuple(self.slot);
            pg_sys::MemoryContextSwitchTo(caller_context);
            conflict
        }
    }

    unsafe fn close(self) {
        // SAFETY: releases, once, what `open` made.
        unsafe {
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::ExecCloseIndices(self.result_relation);
            pg_sys::FreeExecutorState(self.estate);
        }
    }
}

/// Inserts `tuple` as a new row the way `INSERT … ON CONFLICT (key)` inserts one (ExecInsert's
/// speculative insertion): the heap tuple carries a token that sessions finding it wait on,
/// every index gets its entry, and the primary key reports a conflict (the key committed by
/// another session since our snapshot, or being inserted by one) instead of raising 23505. On a
/// conflict the tuple is undone (super-deleted) and `Done(false)` returned: the caller runs the
/// upsert, which waits for the other session and resolves it. The statement's pre-check of the
/// arbiter is the caller's probe; what it could not see, the insertion itself finds, which is
/// enough only while the primary key is the one index that can refuse a row: otherwise declined.
unsafe fn insert_row(opened: &Opened, tuple: pg_sys::HeapTuple) -> Direct<bool> {
    // SAFETY: `opened` is open and locked RowExclusive, `tuple` formed with its descriptor; the speculative
    // insertion is finished or undone on every path.
    unsafe {
        let arbiter = (*opened.index).rd_id;
        let indexes = Indexes::open(opened.table, true);
        if !indexes.only_arbiter_refuses(arbiter) {
            indexes.close();
            return Direct::Declined;
        }
        let transaction = pg_sys::GetCurrentTransactionId();
        let token = pg_sys::SpeculativeInsertionLockAcquire(transaction);
        pgrx::itemptr::item_pointer_set_all(
            &mut (*(*tuple).t_data).t_ctid,
            token,
            pg_sys::SpecTokenOffsetNumber as pg_sys::OffsetNumber,
        );
        pg_sys::heap_insert(
            opened.table,
            tuple,
            pg_sys::GetCurrentCommandId(true),
            pg_sys::HEAP_INSERT_SPECULATIVE as i32,
            std::ptr::null_mut(),
        );
        let conflict = indexes.insert(tuple, IndexUpdate::All, OnConflict::Report(arbiter));
        let mut tid = (*tuple).t_self;
        if conflict {
            pg_sys::heap_abort_speculative(opened.table, &mut tid);
        } else {
            pg_sys::heap_finish_speculative(opened.table, &mut tid);
        }
        // Sessions waiting on the token now see a finished row, or none.
        pg_sys::SpeculativeInsertionLockRelease(transaction);
        indexes.close();
        Direct::Done(!conflict)
    }
}

/// Writes the row version in `slot` again with each of `columns` set to its value (every other
/// column as it was: a TOASTed value keeps its TOAST pointer), as [`update_row`] does; the
/// outcome, and where the new version went.
unsafe fn update_columns(
    table: pg_sys::Relation,
    slot: *mut pg_sys::TupleTableSlot,
    columns: &[(usize, pg_sys::Datum)],
    wait: bool,
) -> (pg_sys::TM_Result::Type, ItemPointerData) {
    // SAFETY: `slot` holds a row version of `table`, which the caller holds open and locked RowExclusive; the
    // new tuple is formed with the table's descriptor.
    unsafe {
        let mut should_free = false;
        let old = pg_sys::ExecFetchSlotHeapTuple(slot, false, &mut should_free);
        let mut numbers: Vec<i32> = columns.iter().map(|(column, _)| *column as i32).collect();
        let mut values: Vec<pg_sys::Datum> = columns.iter().map(|(_, value)| *value).collect();
        let mut nulls = vec![false; columns.len()];
        let new = pg_sys::heap_modify_tuple_by_cols(
            old,
            (*table).rd_att,
            columns.len() as i32,
            numbers.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        let result = update_row(table, (*slot).tts_tid, new, wait);
        (result, (*new).t_self)
    }
}

/// Which version of a row a slide looks at.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The exact version at the ctid, whatever became of it since (the reader just read it).
    Read,
    /// The version at the ctid only while the current snapshot sees it (the worker, writing a
    /// touch recorded earlier: the ctid may since hold anything).
    Visible,
}

/// Moves the expiry of the row version of `key` at `ctid`, read by [`find`] in this call with
/// the expiry `read_expiry`, to `expires_at`: the statement `UPDATE t SET expires_at = $3 WHERE
/// ctid = $1 AND key = $2 AND expires_at = $4 …`, as a HOT update when the page has room. False, a
/// no-op, when another session changed or removed the row since it was read: its version stands
/// (in REPEATABLE READ and SERIALIZABLE that is a serialization failure, as for the statement).
pub fn slide(
    key: &str,
    ctid: ItemPointerData,
    read_expiry: TimestampTz,
    expires_at: TimestampTz,
) -> Direct<bool> {
    match slide_version(ctid, Version::Read, |stored| stored == key, read_expiry, expires_at) {
        Direct::Done(slid) => Direct::Done(matches!(slid, Slid::Written(_))),
        Direct::Declined => Direct::Declined,
    }
}

/// What [`slide_version`] did.
#[derive(Clone, Copy, Debug)]
pub enum Slid {
    /// Wrote the new expiry as the version now at this ctid.
    Written(ItemPointerData),
    /// Nothing: the row changed, is gone, or holds another key or expiry.
    Unchanged,
    /// Nothing: another session holds the row (locked, or changing it) and a slide never waits.
    Busy,
}

/// [`slide`] of the row at `ctid` in `version`, when its key is one `is_key` accepts and its
/// expiry is still `read_expiry`.
pub fn slide_version(
    ctid: ItemPointerData,
    version: Version,
    is_key: impl FnOnce(&str) -> bool,
    read_expiry: TimestampTz,
    expires_at: TimestampTz,
) -> Direct<Slid> {
    with_opened(Needs::Write(pg_sys::ACL_SELECT | pg_sys::ACL_UPDATE), |opened| {
        // SAFETY: the table is open and locked RowExclusive (`with_opened`); the slot made here
        // is dropped before returning, and the version it holds is checked before it is written;
        // a snapshot pushed here is popped before returning.
        unsafe {
            let mut tid = ctid;
            let slot = pg_sys::table_slot_create(opened.table, std::ptr::null_mut());
            let snapshot = match version {
                Version::Read => &raw mut pg_sys::SnapshotAnyData,
                Version::Visible => push_read_snapshot(),
            };
            // heap_update then decides whether that version is still the latest.
            let fetched = pg_sys::table_tuple_fetch_row_version(opened.table, &mut tid, snapshot, slot);
            // The version at ctid is still the one read: the statement's guard.
            // (A sliding one: an absolute entry stored since with the same expiry is not slid.)
            let same_row = fetched && {
                pg_sys::slot_getsomeattrs_int(slot, SLIDING as i32);
                let stored_key =
                    <&str>::from_polymorphic_datum(*(*slot).tts_values.add(KEY - 1), false, pg_sys::TEXTOID);
                stored_key.is_some_and(is_key)
                    && (*(*slot).tts_values.add(EXPIRES_AT - 1)).value() as TimestampTz == read_expiry
                    && !*(*slot).tts_isnull.add(SLIDING - 1)
            };
            let slid = if same_row {
                // A hit never waits: a row another session holds (locked or changing) keeps its
                // expiry.
                let (result, written) = update_columns(
                    opened.table,
                    slot,
                    &[(EXPIRES_AT, pg_sys::Datum::from(expires_at))],
                    false,
                );
                refuse_concurrent_change(result);
                match result {
                    pg_sys::TM_Result::TM_Ok => Slid::Written(written),
                    pg_sys::TM_Result::TM_BeingModified => Slid::Busy,
                    _ => Slid::Unchanged,
                }
            } else {
                Slid::Unchanged
            };
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            if version == Version::Visible {
                pg_sys::PopActiveSnapshot();
            }
            Direct::Done(slid)
        }
    })
}

/// A full row for [`write`].
pub struct NewRow<'a> {
    pub value: &'a [u8],
    pub expires_at: TimestampTz,
    pub sliding: Option<Interval>,
    pub absolute_expires_at: Option<TimestampTz>,
    pub tags: Option<&'a [String]>,
}

/// `row` stored under `key`, as a tuple of the open table.
unsafe fn form_row(opened: &Opened, key: pg_sys::Datum, row: &NewRow) -> pg_sys::HeapTuple {
    // SAFETY: `opened` is open; the datums built here live in the current memory context until the tuple is
    // formed from them.
    unsafe {
        let tags = row.tags.map(|tags| tags.to_vec().into_datum().expect("a text[] datum"));
        let mut values = [
            key,
            row.value.into_datum().expect("a bytea datum"),
            pg_sys::Datum::from(row.expires_at),
            row.sliding.into_datum().unwrap_or(pg_sys::Datum::from(0)),
            row.absolute_expires_at.map_or(pg_sys::Datum::from(0), pg_sys::Datum::from),
            tags.unwrap_or(pg_sys::Datum::from(0)),
        ];
        let mut nulls =
            [false, false, false, row.sliding.is_none(), row.absolute_expires_at.is_none(), tags.is_none()];
        // The descriptor has these columns, or the first five of them: is_as_released checked it.
        pg_sys::heap_form_tuple((*opened.table).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr())
    }
}

/// What [`write`] does with a row already stored under the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (`cache_set`).
    Replace,
    /// Leave it to the caller's statement (`cache_add`, `cache_incr`: what it holds decides).
    Keep,
}

/// Writes `row` under `key` straight through the heap and every index: a new version of the row
/// stored there (what the upsert's ON CONFLICT DO UPDATE does for an existing key, when
/// `existing` says so), or a new row inserted speculatively (what its INSERT does for a new
/// key). `Done(false)` when nothing was written: a row is stored and `existing` keeps it, another
/// session changed or inserted the key meanwhile; the caller then runs its statement.
pub fn write(key: &str, row: &NewRow, existing: Existing) -> Direct<bool> {
    let mut written = true;
    write_many(&[(key, row)], existing, |_| written = false).map(|()| written)
}

/// [`write`] of several distinct keys, in the order given (key order: the order in which rows
/// are locked): one open of the table, one snapshot (as one statement has), each row in a memory
/// context reset after it. An entry not written is handed to `refused` (its index) at once, before
/// the next one is written, so the caller's statement for it locks its row in the same order.
pub fn write_many(
    entries: &[(&str, &NewRow)],
    existing: Existing,
    mut refused: impl FnMut(usize),
) -> Direct<()> {
    // In SERIALIZABLE the probe's predicate lock on the key's B-tree page would make transactions
    // writing different keys on that page conflict; the upsert's pre-check takes none.
    // SAFETY: reads a backend-local setting.
    if unsafe { pg_sys::XactIsoLevel } == pg_sys::XACT_SERIALIZABLE as i32 {
        return Direct::Declined;
    }
    // A 0.1.0 table cannot hold tags: the statement says so.
    let tagged = entries.iter().any(|(_, row)| row.tags.is_some());
    // What the upsert needs: INSERT, and UPDATE and SELECT for ON CONFLICT DO UPDATE.
    let needs = Needs::Write(pg_sys::ACL_SELECT | pg_sys::ACL_INSERT | pg_sys::ACL_UPDATE);
    with_opened(needs, |opened| {
        // SAFETY: the table and index are open and locked RowExclusive (`with_opened`); the
        // probe's snapshot stays active while writing, as the statement's does, and is popped by
        // `end`; tuples are formed with the table's descriptor in the per-row context, which is
        // current only while the row is written and is reset after it (a `cache_set_many` of
        // large values holds one at a time).
        unsafe {
            if tagged && (*(*opened.table).rd_att).natts as usize != TAGS {
                return Direct::Declined;
            }
            let mut per_row = PgMemoryContexts::new("pg_cache write");
            let mut probe = Probe::begin(opened);
            for (i, (key, row)) in entries.iter().enumerate() {
                pgrx::check_for_interrupts!();
                // The probe outside the per-row context: the index scan keeps what it allocates
                // on the way (the B-tree's killed items) for the scan's life.
                let key_datum = text_datum(key);
                let found = probe.find(key_datum);
                let written = per_row.switch_to(|_| write_found(opened, found, key_datum, row, existing));
                per_row.reset();
                if !written {
                    refused(i);
                }
            }
            probe.end();
            Direct::Done(())
        }
    })
}

/// Writes `row` under the key `key_datum` with the table and its primary key open, over the
/// row version `found` there (if any).
unsafe fn write_found(
    opened: &Opened,
    found: Option<*mut pg_sys::TupleTableSlot>,
    key_datum: pg_sys::Datum,
    row: &NewRow,
    existing: Existing,
) -> bool {
    // SAFETY: as `write_many` says; `found` is the probe's slot, valid until its next probe.
    unsafe {
        match found {
            Some(slot) if existing == Existing::Replace => {
                update_row(opened.table, (*slot).tts_tid, form_row(opened, key_datum, row), true)
                    == pg_sys::TM_Result::TM_Ok
            }
            Some(_) => false,
            None => matches!(insert_row(opened, form_row(opened, key_datum, row)), Direct::Done(true)),
        }
    }
}

/// Rewrites the value of the live entry under `key` to what `rewrite` makes of it, keeping
/// everything else: the statements `SELECT value … FOR UPDATE` then `UPDATE t SET value = $2
/// WHERE ctid = $1`, with the version read standing in for the lock. `live_until` says, from the
/// row read, until when the entry is live (`None`: expired); an expiry other than the stored one
/// (a pending touch) is written with the value. `Done(false)`, nothing written, when there is no
/// live entry, `rewrite` declines, or another session changed the entry since it was read (in
/// REPEATABLE READ and SERIALIZABLE that is a serialization failure, as for the statements): the
/// caller then runs them.
pub fn rewrite_value(
    key: &str,
    live_until: impl FnOnce(&Row) -> Option<TimestampTz>,
    rewrite: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Direct<bool> {
    with_opened(Needs::Write(pg_sys::ACL_SELECT | pg_sys::ACL_UPDATE), |opened| {
        // SAFETY: the table is open and locked RowExclusive (`with_opened`); the probe's slot is
        // valid while `rewrite` reads the value copied out of it and while it is written.
        let written = unsafe {
            probe(opened, text_datum(key), |slot| {
                let row = read_row(slot, true);
                let Some(expires_at) = live_until(&row) else {
                    return false;
                };
                let Some(value) = row.value.and_then(|value| rewrite(&value)) else {
                    return false;
                };
                let mut columns = vec![(VALUE, value.as_slice().into_datum().expect("a bytea datum"))];
                if expires_at != row.expires_at {
                    columns.push((EXPIRES_AT, pg_sys::Datum::from(expires_at)));
                }
                let (result, _) = update_columns(opened.table, slot, &columns, true);
                refuse_concurrent_change(result);
                result == pg_sys::TM_Result::TM_Ok
            })
        };
        Direct::Done(written.unwrap_or(false))
    })
}

/// An entry [`delete`] removed.
pub struct Deleted {
    pub expires_at: TimestampTz,
    /// It had a sliding window (only those are touched).
    pub sliding: bool,
    pub value: Option<Vec<u8>>,
}

/// Deletes the row stored under `key`, with its value when `with_value`: the statement `DELETE
/// FROM t WHERE key = $1 RETURNING expires_at[, value]`. `Done(None)` when there is no such row,
/// or another session deleted it since it was read (in READ COMMITTED; in REPEATABLE READ and
/// SERIALIZABLE that is a serialization failure, as for the statement). Declined when another
/// session updated it meanwhile: the statement then deletes its newest version.
pub fn delete(key: &str, with_value: bool) -> Direct<Option<Deleted>> {
    with_opened(Needs::Write(pg_sys::ACL_SELECT | pg_sys::ACL_DELETE), |opened| {
        // SAFETY: the table is open and locked RowExclusive (`with_opened`); the row's columns
        // are copied out of the probe's slot before the row is deleted.
        let outcome = unsafe {
            probe(opened, text_datum(key), |slot| {
                // Read before the delete: a TOASTed value goes with the row.
                let row = read_row(slot, with_value);
                let mut tid = row.ctid;
                let mut failure = pg_sys::TM_FailureData::default();
                let result = pg_sys::heap_delete(
                    opened.table,
                    &mut tid,
                    pg_sys::GetCurrentCommandId(true),
                    std::ptr::null_mut(),
                    true,
                    &mut failure,
                    false,
                );
                refuse_concurrent_change(result);
                match result {
                    pg_sys::TM_Result::TM_Ok => Direct::Done(Some(Deleted {
                        expires_at: row.expires_at,
                        sliding: row.sliding.is_some(),
                        value: row.value,
                    })),
                    pg_sys::TM_Result::TM_Deleted => Direct::Done(None),
                    _ => Direct::Declined,
                }
            })
        };
        outcome.unwrap_or(Direct::Done(None))
    })
}

/// Whether the cache table has the tags column (the table of 0.1.0, before `ALTER EXTENSION
/// pg_cache UPDATE`, has not).
pub fn has_tags_column(table: Oid) -> bool {
    // SAFETY: a catalog lookup of a column by name, in a transaction.
    unsafe { pg_sys::get_attnum(table, c"tags".as_ptr()) == TAGS as pg_sys::AttrNumber }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{delete, find, write, Direct, Existing, NewRow};
    use pgrx::prelude::*;

    fn found(key: &str, with_value: bool) -> Option<super::Row> {
        match find(key, with_value) {
            Direct::Done(row) => row,
            Direct::Declined => panic!("the direct read declined on the table as the extension made it"),
        }
    }

    #[pg_test]
    fn finds_an_entry_set_earlier_in_the_same_transaction() {
        Spi::run("SELECT cache_set('probe:same transaction', 'v', sliding => '5 min', ttl => '1 hour')")
            .unwrap();
        let row = found("probe:same transaction", true).expect("the entry is found");
        assert_eq!(row.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(row.sliding.map(|window| window.as_micros()), Some(300_000_000));
        assert!(row.absolute_expires_at.is_some_and(|cap| cap > row.expires_at));
    }

    #[pg_test]
    fn reads_the_value_only_when_asked() {
        Spi::run("SELECT cache_set('probe:value when asked', 'v')").unwrap();
        assert!(found("probe:value when asked", false).expect("the entry is found").value.is_none());
    }

    fn new_row(value: &[u8]) -> NewRow<'_> {
        NewRow {
            value,
            expires_at: i64::MAX / 2,
            sliding: None,
            absolute_expires_at: Some(i64::MAX / 2),
            tags: None,
        }
    }

    fn stored_count(key: &str) -> i64 {
        Spi::get_one_with_args::<i64>("SELECT count(*) FROM pg_cache_entries WHERE key = $1", &[key.into()])
            .unwrap()
            .unwrap()
    }

    #[pg_test]
    fn write_inserts_a_new_key_and_replaces_an_existing_row() {
        assert!(matches!(write("probe:write", &new_row(b"first"), Existing::Replace), Direct::Done(true)));
        assert_eq!(found("probe:write", true).expect("inserted").value.as_deref(), Some(&b"first"[..]));
        Spi::run("SELECT cache_set('probe:write', 'old', sliding => '5 min')").unwrap();
        assert!(matches!(write("probe:write", &new_row(b"new"), Existing::Replace), Direct::Done(true)));
        let stored = found("probe:write", true).expect("the entry is found");
        assert_eq!(stored.value.as_deref(), Some(&b"new"[..]));
        assert!(stored.sliding.is_none());
        assert_eq!(stored.absolute_expires_at, Some(i64::MAX / 2));
        assert_eq!(stored_count("probe:write"), 1);
        // Every index has the inserted row: an index-only count through the primary key agrees.
        Spi::run("SET LOCAL enable_seqscan = off").unwrap();
        assert_eq!(stored_count("probe:write"), 1);
    }

    #[pg_test]
    fn write_keeps_a_stored_row_when_asked() {
        Spi::run("INSERT INTO pg_cache_entries (key, value, expires_at) VALUES ('probe:keep', 'old', now() - interval '1 s')").unwrap();
        assert!(matches!(write("probe:keep", &new_row(b"new"), Existing::Keep), Direct::Done(false)));
        assert_eq!(found("probe:keep", true).expect("still stored").value.as_deref(), Some(&b"old"[..]));
        assert!(matches!(write("fresh", &new_row(b"new"), Existing::Keep), Direct::Done(true)));
    }

    #[pg_test]
    fn delete_removes_the_row_and_returns_what_it_held() {
        Spi::run("SELECT cache_set('probe:delete', 'v', ttl => '1 hour')").unwrap();
        let Direct::Done(Some(deleted)) = delete("probe:delete", true) else {
            panic!("the direct delete removes an existing row");
        };
        assert_eq!(deleted.value.as_deref(), Some(&b"v"[..]));
        assert!(found("probe:delete", false).is_none());
        assert!(matches!(delete("probe:delete", false), Direct::Done(None)));
    }

    #[pg_test]
    fn absent_keys_are_not_found() {
        assert!(found("no such key", true).is_none());
    }

    #[pg_test]
    fn declines_once_the_table_is_altered() {
        // The table lock first: two tests altering the table, each holding the RowExclusiveLock
        // of its own write while it waits for the other's, would deadlock (tests run at once).
        Spi::run("LOCK TABLE pg_cache_entries IN ACCESS EXCLUSIVE MODE").unwrap();
        Spi::run("SELECT cache_set('probe:altered', 'v')").unwrap();
        Spi::run("ALTER TABLE pg_cache_entries ADD COLUMN extra int").unwrap();
        assert!(matches!(find("probe:altered", true), Direct::Declined));
        assert!(matches!(write("probe:altered", &new_row(b"new"), Existing::Replace), Direct::Declined));
        assert!(matches!(delete("probe:altered", false), Direct::Declined));
    }

    #[pg_test]
    fn declines_when_a_trigger_or_row_security_is_added() {
        // The table lock first: two tests altering the table, each holding the RowExclusiveLock
        // of its own write while it waits for the other's, would deadlock (tests run at once).
        Spi::run("LOCK TABLE pg_cache_entries IN ACCESS EXCLUSIVE MODE").unwrap();
        Spi::run("SELECT cache_set('probe:trigger', 'v')").unwrap();
        Spi::run("ALTER TABLE pg_cache_entries ENABLE ROW LEVEL SECURITY").unwrap();
        assert!(matches!(find("probe:trigger", true), Direct::Declined));
        Spi::run("ALTER TABLE pg_cache_entries DISABLE ROW LEVEL SECURITY").unwrap();
        assert!(matches!(find("probe:trigger", true), Direct::Done(Some(_))));
        Spi::run(
            "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'; \
             CREATE TRIGGER noop BEFORE UPDATE ON pg_cache_entries FOR EACH ROW EXECUTE FUNCTION noop()",
        )
        .unwrap();
        assert!(matches!(find("probe:trigger", true), Direct::Declined));
    }
}
