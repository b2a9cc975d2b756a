//! Every difference between the PostgreSQL versions pg_cache builds for, in one place: wrappers
//! with the same name and arguments as the server function, minus what a version added, plus a
//! version-independent form of what it returns. Call `compat::heap_update(...)` where
//! `pg_sys::heap_update(...)` would differ by version; everything not here is the same in 15 and
//! 18 (and in 16 and 17, which take 18's side unless a wrapper says otherwise).
//!
//! Checked against pgrx 0.18.1's bindings for 15 and 18. The same in both, so not wrapped:
//! `ExecOpenIndices`, `heap_insert`, `heap_delete`, `InitResultRelInfo`,
//! `GetOldestNonRemovableTransactionId`, `ExecVacuum`, `heap_abort_speculative`,
//! `heap_finish_speculative`, `SpeculativeInsertionLockAcquire`,
//! `SpeculativeInsertionLockRelease`, `table_tuple_lock` and `heap_lock_tuple`.

// Server function names, so that a call reads as the function it stands for; not every wrapper
// has a caller yet.
#![allow(non_snake_case, dead_code)]

use pgrx::pg_sys;

/// Which indexes need an entry for the new version of a row after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexUpdate {
    /// A HOT update, or no update at all: no index needs an entry.
    None,
    /// Not a HOT update: every index needs an entry for the new version.
    All,
    /// A HOT update that changed a column of a summarizing index (BRIN): only those need an
    /// entry. 16 and later; 15 makes such an update non-HOT (`All`).
    SummarizingOnly,
}

#[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
fn index_update(update_indexes: pg_sys::TU_UpdateIndexes::Type) -> IndexUpdate {
    match update_indexes {
        pg_sys::TU_UpdateIndexes::TU_None => IndexUpdate::None,
        pg_sys::TU_UpdateIndexes::TU_Summarizing => IndexUpdate::SummarizingOnly,
        _ => IndexUpdate::All,
    }
}

/// `heap_update`, returning its result and which indexes need an entry for the new version
/// (`IndexUpdate::None` unless the result is `TM_Ok`). 16 added the `update_indexes`
/// out-parameter; in 15 a new version needs index entries when it is not a heap-only tuple.
#[cfg(feature = "pg15")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn heap_update(
    relation: pg_sys::Relation,
    otid: pg_sys::ItemPointer,
    newtup: pg_sys::HeapTuple,
    cid: pg_sys::CommandId,
    crosscheck: pg_sys::Snapshot,
    wait: bool,
    tmfd: *mut pg_sys::TM_FailureData,
    lockmode: *mut pg_sys::LockTupleMode::Type,
) -> (pg_sys::TM_Result::Type, IndexUpdate) {
    let result = pg_sys::heap_update(relation, otid, newtup, cid, crosscheck, wait, tmfd, lockmode);
    let heap_only = (*(*newtup).t_data).t_infomask2 & pg_sys::HEAP_ONLY_TUPLE as u16 != 0;
    let indexes =
        if result != pg_sys::TM_Result::TM_Ok || heap_only { IndexUpdate::None } else { IndexUpdate::All };
    (result, indexes)
}

/// `heap_update`, returning its result and which indexes need an entry for the new version
/// (`IndexUpdate::None` unless the result is `TM_Ok`).
#[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
#[allow(clippy::too_many_arguments)]
pub unsafe fn heap_update(
    relation: pg_sys::Relation,
    otid: pg_sys::ItemPointer,
    newtup: pg_sys::HeapTuple,
    cid: pg_sys::CommandId,
    crosscheck: pg_sys::Snapshot,
    wait: bool,
    tmfd: *mut pg_sys::TM_FailureData,
    lockmode: *mut pg_sys::LockTupleMode::Type,
) -> (pg_sys::TM_Result::Type, IndexUpdate) {
    let mut update_indexes = pg_sys::TU_UpdateIndexes::TU_None;
    let result = pg_sys::heap_update(
        relation,
        otid,
        newtup,
        cid,
        crosscheck,
        wait,
        tmfd,
        lockmode,
        &mut update_indexes,
    );
    let indexes =
        if result == pg_sys::TM_Result::TM_Ok { index_update(update_indexes) } else { IndexUpdate::None };
    (result, indexes)
}

/// `simple_heap_update` (which raises an error unless the update succeeds), returning which
/// indexes need an entry for the new version. 16 added the `update_indexes` out-parameter.
#[cfg(feature = "pg15")]
pub unsafe fn simple_heap_update(
    relation: pg_sys::Relation,
    otid: pg_sys::ItemPointer,
    tup: pg_sys::HeapTuple,
) -> IndexUpdate {
    pg_sys::simple_heap_update(relation, otid, tup);
    if (*(*tup).t_data).t_infomask2 & pg_sys::HEAP_ONLY_TUPLE as u16 != 0 {
        IndexUpdate::None
    } else {
        IndexUpdate::All
    }
}

/// `simple_heap_update` (which raises an error unless the update succeeds), returning which
/// indexes need an entry for the new version.
#[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
pub unsafe fn simple_heap_update(
    relation: pg_sys::Relation,
    otid: pg_sys::ItemPointer,
    tup: pg_sys::HeapTuple,
) -> IndexUpdate {
    let mut update_indexes = pg_sys::TU_UpdateIndexes::TU_None;
    pg_sys::simple_heap_update(relation, otid, tup, &mut update_indexes);
    index_update(update_indexes)
}

/// `table_tuple_update`, returning its result and which indexes need an entry for the new version
/// (`IndexUpdate::None` unless the result is `TM_Ok`). 16 made `update_indexes` a
/// `TU_UpdateIndexes` instead of a bool.
#[allow(clippy::too_many_arguments)]
pub unsafe fn table_tuple_update(
    rel: pg_sys::Relation,
    otid: pg_sys::ItemPointer,
    slot: *mut pg_sys::TupleTableSlot,
    cid: pg_sys::CommandId,
    snapshot: pg_sys::Snapshot,
    crosscheck: pg_sys::Snapshot,
    wait: bool,
    tmfd: *mut pg_sys::TM_FailureData,
    lockmode: *mut pg_sys::LockTupleMode::Type,
) -> (pg_sys::TM_Result::Type, IndexUpdate) {
    #[cfg(feature = "pg15")]
    let (result, indexes) = {
        let mut update_indexes = false;
        let result = pg_sys::table_tuple_update(
            rel,
            otid,
            slot,
            cid,
            snapshot,
            crosscheck,
            wait,
            tmfd,
            lockmode,
            &mut update_indexes,
        );
        (result, if update_indexes { IndexUpdate::All } else { IndexUpdate::None })
    };
    #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
    let (result, indexes) = {
        let mut update_indexes = pg_sys::TU_UpdateIndexes::TU_None;
        let result = pg_sys::table_tuple_update(
            rel,
            otid,
            slot,
            cid,
            snapshot,
            crosscheck,
            wait,
            tmfd,
            lockmode,
            &mut update_indexes,
        );
        (result, index_update(update_indexes))
    };
    (result, if result == pg_sys::TM_Result::TM_Ok { indexes } else { IndexUpdate::None })
}

/// `ExecInsertIndexTuples` for a new row version: `indexes` says which indexes get an entry
/// (`IndexUpdate::All` for an insert; what [`heap_update`] returned for an update). With
/// `IndexUpdate::None` nothing is inserted and the list of conflicting indexes is empty (NIL).
/// 16 added the `onlySummarizing` argument.
#[allow(clippy::too_many_arguments)]
pub unsafe fn ExecInsertIndexTuples(
    resultRelInfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
    update: bool,
    noDupErr: bool,
    specConflict: *mut bool,
    arbiterIndexes: *mut pg_sys::List,
    indexes: IndexUpdate,
) -> *mut pg_sys::List {
    if indexes == IndexUpdate::None {
        return std::ptr::null_mut();
    }
    #[cfg(feature = "pg15")]
    {
        // 15's heap_update never makes a HOT update that summarizing indexes need.
        assert!(indexes == IndexUpdate::All, "pg_cache: no summarizing-only index update in PostgreSQL 15");
        pg_sys::ExecInsertIndexTuples(
            resultRelInfo,
            slot,
            estate,
            update,
            noDupErr,
            specConflict,
            arbiterIndexes,
        )
    }
    #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
    {
        let onlySummarizing = indexes == IndexUpdate::SummarizingOnly;
        pg_sys::ExecInsertIndexTuples(
            resultRelInfo,
            slot,
            estate,
            update,
            noDupErr,
            specConflict,
            arbiterIndexes,
            onlySummarizing,
        )
    }
}

/// `index_beginscan`. 18 added the `instrument` argument (statistics for EXPLAIN ANALYZE of
/// parallel index scans; none here). Unlike the rest, 16 and 17 take 15's side.
pub unsafe fn index_beginscan(
    heapRelation: pg_sys::Relation,
    indexRelation: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    nkeys: std::ffi::c_int,
    norderbys: std::ffi::c_int,
) -> pg_sys::IndexScanDesc {
    #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
    {
        pg_sys::index_beginscan(heapRelation, indexRelation, snapshot, nkeys, norderbys)
    }
    #[cfg(feature = "pg18")]
    {
        pg_sys::index_beginscan(heapRelation, indexRelation, snapshot, std::ptr::null_mut(), nkeys, norderbys)
    }
}

/// `RelationGetPrimaryKeyIndex`: the table's primary key, unless it is deferrable (InvalidOid
/// then, as up to 17). 18 added `deferrable_ok`; 16 and 17 take 15's side.
pub unsafe fn RelationGetPrimaryKeyIndex(relation: pg_sys::Relation) -> pg_sys::Oid {
    #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
    {
        pg_sys::RelationGetPrimaryKeyIndex(relation)
    }
    #[cfg(feature = "pg18")]
    {
        pg_sys::RelationGetPrimaryKeyIndex(relation, false)
    }
}

/// `ExecCheckIndexConstraints` before inserting (the pre-check of a speculative insertion): no
/// tuple of ours to leave out yet. 18 added `tupleid`, the TID of a tuple just inserted that the
/// check skips; 16 and 17 take 15's side.
pub unsafe fn ExecCheckIndexConstraints(
    resultRelInfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
    conflictTid: pg_sys::ItemPointer,
    arbiterIndexes: *mut pg_sys::List,
) -> bool {
    #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
    {
        pg_sys::ExecCheckIndexConstraints(resultRelInfo, slot, estate, conflictTid, arbiterIndexes)
    }
    #[cfg(feature = "pg18")]
    {
        // An invalid TID, as 15 to 17 pass internally.
        let mut invalid = pg_sys::ItemPointerData::default();
        pgrx::itemptr::item_pointer_set_all(
            &mut invalid,
            pg_sys::InvalidBlockNumber,
            pg_sys::InvalidOffsetNumber,
        );
        pg_sys::ExecCheckIndexConstraints(
            resultRelInfo,
            slot,
            estate,
            conflictTid,
            &mut invalid,
            arbiterIndexes,
        )
    }
}
