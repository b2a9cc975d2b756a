//! The PostgreSQL internals whose signatures differ between the major versions pg_cache builds
//! for (15 and 18; 16 and 17 share 18's shape for everything here but `index_beginscan` and
//! `RelationGetPrimaryKeyIndex`). Every `feature = "pgNN"` gate lives in this file, inside the
//! function bodies, so callers read the same on every version.

use pgrx::pg_sys;

/// Which indexes a heap update needs new entries in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IndexUpdate {
    /// A HOT update: none.
    None,
    /// Every index.
    All,
    /// Only summarizing indexes (BRIN), 16 and later.
    #[cfg_attr(feature = "pg15", allow(dead_code))]
    SummarizingOnly,
}

/// `heap_update`, with whether the new version needs index entries: from 16 an out-parameter,
/// in 15 read off the new tuple's heap-only flag.
///
/// # Safety
/// As `heap_update`: `relation` open and locked RowExclusive, `otid` a tuple of it, `newtup` a
/// tuple formed with its descriptor.
pub unsafe fn heap_update(
    relation: pg_sys::Relation,
    otid: pg_sys::ItemPointer,
    newtup: pg_sys::HeapTuple,
    wait: bool,
    failure: &mut pg_sys::TM_FailureData,
) -> (pg_sys::TM_Result::Type, IndexUpdate) {
    // SAFETY: the caller's contract, given in `# Safety` above.
    unsafe {
        let command = pg_sys::GetCurrentCommandId(true);
        let crosscheck = std::ptr::null_mut();
        let mut lock_mode = pg_sys::LockTupleMode::LockTupleExclusive;
        #[cfg(feature = "pg15")]
        {
            let result = pg_sys::heap_update(
                relation,
                otid,
                newtup,
                command,
                crosscheck,
                wait,
                failure,
                &mut lock_mode,
            );
            let heap_only = (*(*newtup).t_data).t_infomask2 & pg_sys::HEAP_ONLY_TUPLE as u16 != 0;
            (result, if heap_only { IndexUpdate::None } else { IndexUpdate::All })
        }
        #[cfg(not(feature = "pg15"))]
        {
            let mut update_indexes = pg_sys::TU_UpdateIndexes::TU_None;
            let result = pg_sys::heap_update(
                relation,
                otid,
                newtup,
                command,
                crosscheck,
                wait,
                failure,
                &mut lock_mode,
                &mut update_indexes,
            );
            let indexes = match update_indexes {
                pg_sys::TU_UpdateIndexes::TU_All => IndexUpdate::All,
                pg_sys::TU_UpdateIndexes::TU_Summarizing => IndexUpdate::SummarizingOnly,
                _ => IndexUpdate::None,
            };
            (result, indexes)
        }
    }
}

/// `index_beginscan` without instrumentation (an argument from 18 on).
///
/// # Safety
/// As `index_beginscan`: both relations open and locked, `snapshot` registered or active.
pub unsafe fn index_beginscan(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    keys: i32,
) -> pg_sys::IndexScanDesc {
    // SAFETY: the caller's contract, given in `# Safety` above.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
        {
            pg_sys::index_beginscan(heap, index, snapshot, keys, 0)
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16", feature = "pg17")))]
        {
            pg_sys::index_beginscan(heap, index, snapshot, std::ptr::null_mut(), keys, 0)
        }
    }
}

/// How [`insert_index_tuples`] treats a unique index that already holds the key.
#[derive(Clone, Copy)]
pub enum OnConflict {
    /// Raise 23505, as a plain INSERT or UPDATE does.
    Raise,
    /// The speculative insertion of `INSERT … ON CONFLICT`: for this arbiter index (the primary
    /// key), report the conflict instead of raising it.
    Report(pg_sys::Oid),
}

/// `ExecInsertIndexTuples` for a row version written by an update or insert; with
/// `OnConflict::Report`, whether an arbiter index found a conflict. `only_summarizing` exists
/// from 16 on (15 has no summarizing HOT updates).
///
/// # Safety
/// As `ExecInsertIndexTuples`: indexes opened by `ExecOpenIndices` (speculatively for
/// `Report`), `slot` holding the new version with its TID, memory in the executor state's context.
pub unsafe fn insert_index_tuples(
    result_relation: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
    indexes: IndexUpdate,
    on_conflict: OnConflict,
) -> bool {
    // SAFETY: the caller's contract, given in `# Safety` above.
    unsafe {
        let mut conflict = false;
        let (no_duplicate_error, conflict_out, arbiters) = match on_conflict {
            OnConflict::Raise => (false, std::ptr::null_mut(), std::ptr::null_mut()),
            OnConflict::Report(arbiter) => {
                (true, &raw mut conflict, pg_sys::lappend_oid(std::ptr::null_mut(), arbiter))
            }
        };
        #[cfg(feature = "pg15")]
        {
            let _ = indexes;
            pg_sys::ExecInsertIndexTuples(
                result_relation,
                slot,
                estate,
                false,
                no_duplicate_error,
                conflict_out,
                arbiters,
            );
        }
        #[cfg(not(feature = "pg15"))]
        {
            pg_sys::ExecInsertIndexTuples(
                result_relation,
                slot,
                estate,
                false,
                no_duplicate_error,
                conflict_out,
                arbiters,
                indexes == IndexUpdate::SummarizingOnly,
            );
        }
        conflict
    }
}

/// The OID of the table's valid primary-key index, or InvalidOid.
///
/// # Safety
/// `relation` open.
pub unsafe fn primary_key_index(relation: pg_sys::Relation) -> pg_sys::Oid {
    // SAFETY: the caller's contract, given in `# Safety` above.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
        {
            pg_sys::RelationGetPrimaryKeyIndex(relation)
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16", feature = "pg17")))]
        {
            pg_sys::RelationGetPrimaryKeyIndex(relation, false)
        }
    }
}

/// The attributes of a tuple descriptor: an array in the descriptor itself up to 17, after its
/// compact attributes from 18 on.
///
/// # Safety
/// `descriptor` valid with at least `count` attributes.
pub unsafe fn attributes<'a>(
    descriptor: pg_sys::TupleDesc,
    count: usize,
) -> &'a [pg_sys::FormData_pg_attribute] {
    // SAFETY: the caller's contract, given in `# Safety` above.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
        {
            (*descriptor).attrs.as_slice(count)
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16", feature = "pg17")))]
        {
            let natts = (*descriptor).natts as usize;
            let first =
                (*descriptor).compact_attrs.as_ptr().add(natts).cast::<pg_sys::FormData_pg_attribute>();
            std::slice::from_raw_parts(first, count)
        }
    }
}
