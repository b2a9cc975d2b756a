//! The cache table the running call works on, for the layers that count and account per cache
//! (`shmem`) but may not ask `access` which cache that is. `access::caches` sets it.

use pgrx::pg_sys::{self, Oid};
use std::cell::Cell;

thread_local! {
    static TABLE: Cell<Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

/// The selected cache's table; `InvalidOid` before any call selected one.
pub fn table() -> Oid {
    TABLE.get()
}

/// Selects `table`, returning the one selected before.
pub fn replace(table: Oid) -> Oid {
    TABLE.replace(table)
}
