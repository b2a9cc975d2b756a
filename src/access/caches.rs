//! The named caches of a database: the catalog `pg_cache_caches` in the extension's schema, one
//! row per cache, each cache a table of its own (`pg_cache_entries` for the cache `default`,
//! `pg_cache_entries_<id>` for the others), and the cache the running call works on.
//!
//! The catalog is read by a heap scan through the catalog caches' snapshot, never by SQL (no
//! `search_path`, no privilege on it needed), once per backend and again after a relcache
//! invalidation of the catalog, which `cache_create`, `cache_alter` and `cache_drop` send.

use super::table::{extension_schema_of_pg_cache, is_extension_table, relation_exists};
use crate::error;
use pgrx::datum::Interval;
use pgrx::heap_tuple::PgHeapTuple;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::PgTupleDesc;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use std::rc::Rc;

/// The cache every function uses when given none.
pub const DEFAULT: &str = "default";

/// Bytes a cache's name has at most (an identifier's limit).
pub const MAX_NAME_BYTES: usize = 63;

/// The catalog's name in the extension's schema.
pub const CATALOG: &str = "pg_cache_caches";

/// One cache, as its catalog row and its table say.
#[derive(Debug)]
pub struct Cache {
    pub name: String,
    pub table: Oid,
    /// Whether its table is logged (survives a crash, is read on standbys).
    pub logged: bool,
    /// Its cap on live key and value bytes; `None`: `pg_cache.max_size` applies.
    pub max_size: Option<i64>,
    /// What an entry written without any expiry gets instead of `pg_cache.default_sliding_expiration`.
    pub default_sliding: Option<Interval>,
    pub default_ttl: Option<Interval>,
}

impl Cache {
    /// Its size cap in bytes (0: none), `setting_bytes` being `pg_cache.max_size`'s.
    pub fn size_cap(&self, setting_bytes: i64) -> i64 {
        self.max_size.unwrap_or(setting_bytes)
    }
}

/// The name of the table of the cache numbered `id`.
pub fn table_name(id: i32) -> String {
    if id == 0 {
        "pg_cache_entries".to_owned()
    } else {
        format!("pg_cache_entries_{id}")
    }
}

/// Whether `name` follows the rule for cache names: a lowercase ASCII letter or `_`, then
/// lowercase letters, digits and `_`, at most [`MAX_NAME_BYTES`] bytes.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= MAX_NAME_BYTES
}

/// `name` checked against the rule (22004 for NULL, 22023 naming it otherwise).
pub fn checked_name<'a>(function: &str, argument: &str, name: Option<&'a str>) -> &'a str {
    let name = error::required(function, argument, name);
    if !is_valid_name(name) {
        let shown: String = name.chars().take(80).collect();
        error::invalid_argument(
            function,
            format!(
                "{argument} {shown:?} is not a valid cache name: a lowercase letter or _, then lowercase \
                 letters, digits and _, at most {MAX_NAME_BYTES} bytes"
            ),
        );
    }
    name
}

struct Known {
    /// The catalog's OID when they were read (None: the extension has no catalog yet).
    catalog: Option<Oid>,
    generation: u64,
    caches: HashMap<String, Rc<Cache>>,
}

thread_local! {
    static KNOWN: RefCell<Option<Known>> = const { RefCell::new(None) };
    /// Bumped by every relcache invalidation of the catalog (or of everything).
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static CATALOG_OID: Cell<Oid> = const { Cell::new(pg_sys::InvalidOid) };
    static CURRENT: RefCell<Option<Rc<Cache>>> = const { RefCell::new(None) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relation: Oid) {
    if relation == pg_sys::InvalidOid || relation == CATALOG_OID.get() {
        GENERATION.set(GENERATION.get().wrapping_add(1));
    }
}

fn register_callback() {
    if !CALLBACK_REGISTERED.get() {
        // SAFETY: a plain function without an argument, registered once for the backend's life.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0))
        };
        CALLBACK_REGISTERED.set(true);
    }
}

/// The catalog's OID; `None` before `ALTER EXTENSION pg_cache UPDATE` made it (or without the
/// extension).
pub fn catalog() -> Option<Oid> {
    let schema = extension_schema_of_pg_cache()?;
    let name = CString::new(CATALOG).expect("no NUL");
    // SAFETY: catalog lookups by name, schema OID and OID, in a transaction.
    let catalog = unsafe { pg_sys::get_relname_relid(name.as_ptr(), schema) };
    // Only the extension's own table: before the update that makes it, a database owner may put
    // anything of that name in the extension's schema (a view, whose heap scan would crash).
    // SAFETY: a catalog lookup by OID, in a transaction.
    let plain_table =
        || unsafe { pg_sys::get_rel_relkind(catalog) == pg_sys::RELKIND_RELATION as std::ffi::c_char };
    (catalog != pg_sys::InvalidOid && is_extension_table(catalog) && plain_table()).then_some(catalog)
}

/// Every cache of the database, read from the catalog when it changed since last read.
fn known<R>(body: impl FnOnce(&Known) -> R) -> R {
    register_callback();
    let fresh = KNOWN.with_borrow(|known| {
        known.as_ref().is_some_and(|known| {
            known.generation == GENERATION.get() && known.catalog.is_none_or(relation_exists)
        })
    });
    if !fresh {
        reread();
    }
    KNOWN.with_borrow(|known| body(known.as_ref().expect("just read")))
}

fn reread() {
    // Read first, keep after: an invalidation while reading makes the next call read again.
    let generation = GENERATION.get();
    let read = read_catalog();
    KNOWN.set(Some(Known { catalog: read.0, generation, caches: read.1 }));
}

/// The catalog's OID and its caches; without a catalog, the cache `default` alone.
fn read_catalog() -> (Option<Oid>, HashMap<String, Rc<Cache>>) {
    let Some(schema) = extension_schema_of_pg_cache() else {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "pg_cache: the extension is not created in this database"
        );
    };
    let Some(catalog) = catalog() else {
        // 0.2.0's SQL: one table, no catalog.
        let mut caches = HashMap::new();
        if let Some(table) = table_in(schema, 0).filter(|table| is_extension_table(*table)) {
            let cache = Cache {
                name: DEFAULT.to_owned(),
                table,
                logged: is_logged(table),
                max_size: None,
                default_sliding: None,
                default_ttl: None,
            };
            caches.insert(DEFAULT.to_owned(), Rc::new(cache));
        }
        return (None, caches);
    };
    CATALOG_OID.set(catalog);
    let mut caches = HashMap::new();
    // SAFETY: in a transaction: the catalog is opened, scanned with the catalog snapshot and
    // closed here; each tuple's attributes are copied out before the next is fetched.
    unsafe {
        let relation = pg_sys::table_open(catalog, pg_sys::AccessShareLock as _);
        let scan = pg_sys::systable_beginscan(
            relation,
            pg_sys::InvalidOid,
            false,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            let row = PgHeapTuple::from_heap_tuple(PgTupleDesc::from_pg_unchecked((*relation).rd_att), tuple);
            let (Ok(Some(name)), Ok(Some(id))) =
                (row.get_by_name::<String>("name"), row.get_by_name::<i32>("id"))
            else {
                continue;
            };
            // A table of that name that is not the extension's (a database owner's, made before
            // the cache, or after its table was dropped) is no cache: the cache is then absent.
            let Some(table) = table_in(schema, id).filter(|table| is_extension_table(*table)) else {
                continue;
            };
            let cache = Cache {
                name: name.clone(),
                table,
                logged: is_logged(table),
                max_size: row.get_by_name::<i64>("max_size").ok().flatten(),
                default_sliding: row.get_by_name::<Interval>("default_sliding").ok().flatten(),
                default_ttl: row.get_by_name::<Interval>("default_ttl").ok().flatten(),
            };
            caches.insert(name, Rc::new(cache));
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(relation, pg_sys::AccessShareLock as _);
    }
    (Some(catalog), caches)
}

/// The table of the cache numbered `id` in `schema`, if it exists.
fn table_in(schema: Oid, id: i32) -> Option<Oid> {
    let name = CString::new(table_name(id)).expect("no NUL");
    // SAFETY: a catalog lookup by name and schema OID, in a transaction.
    let table = unsafe { pg_sys::get_relname_relid(name.as_ptr(), schema) };
    (table != pg_sys::InvalidOid).then_some(table)
}

/// Whether `table` is a permanent (WAL-logged) relation; false for one dropped meanwhile.
pub fn is_logged(table: Oid) -> bool {
    // SAFETY: a catalog-cache lookup by OID, in a transaction; the tuple is released at once.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, table.into());
        if tuple.is_null() {
            return false;
        }
        let persistence = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple)).relpersistence;
        pg_sys::ReleaseSysCache(tuple);
        persistence == pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char
    }
}

/// The cache named `name`: 42704 when there is none.
pub fn named(function: &str, name: &str) -> Rc<Cache> {
    let lookup = || known(|known| (known.caches.get(name).cloned(), known.catalog.is_some()));
    let mut found = lookup();
    // Its table dropped (the extension dropped and created again) with no invalidation seen yet.
    if found.0.as_ref().is_some_and(|cache| !relation_exists(cache.table)) {
        reread();
        found = lookup();
    }
    match found {
        (Some(cache), _) => cache,
        (None, has_catalog) => {
            let hint = if has_catalog {
                "cache_list() shows the caches of this database; cache_create() makes one."
            } else {
                "Named caches need pg_cache 0.3.0's SQL: run ALTER EXTENSION pg_cache UPDATE."
            };
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("{function}: cache \"{name}\" does not exist"),
                hint
            );
        }
    }
}

/// 42704: the running call's cache was dropped while the call waited for its table.
pub fn dropped_meanwhile() -> ! {
    let name = CURRENT.with_borrow(|current| current.as_ref().map(|cache| cache.name.clone()));
    pgrx::ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        format!("pg_cache: cache \"{}\" was dropped", name.unwrap_or_else(|| DEFAULT.to_owned()))
    );
}

/// Every cache of the database, by name.
pub fn all() -> Vec<Rc<Cache>> {
    let read = || -> Vec<Rc<Cache>> { known(|known| known.caches.values().cloned().collect()) };
    let mut caches = read();
    // A table dropped with no invalidation seen yet: read again.
    if !caches.iter().all(|cache| relation_exists(cache.table)) {
        reread();
        caches = read();
    }
    caches.sort_by(|a, b| a.name.cmp(&b.name));
    caches
}

/// The cache the running call works on: the one selected by [`within`], else `default`.
pub fn current() -> Rc<Cache> {
    CURRENT.with_borrow(|current| current.clone()).unwrap_or_else(|| named("pg_cache", DEFAULT))
}

/// The table of the cache the running call works on.
pub fn table() -> Oid {
    current().table
}

/// Runs `body` with `cache` selected, selecting again what was before afterwards (also when
/// `body` raises an ERROR: pgrx unwinds through this frame). A trigger on a cache table that
/// calls pg_cache for another cache gets its own selection and gives this one back.
pub fn within<R>(cache: Rc<Cache>, body: impl FnOnce() -> R) -> R {
    struct Restore(Option<Rc<Cache>>, Oid);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0.take());
            crate::selected::replace(self.1);
        }
    }
    let table = crate::selected::replace(cache.table);
    let _restore = Restore(CURRENT.replace(Some(cache)), table);
    body()
}

/// Runs `body` on the cache named by a function's `cache` argument (checked: 22004, 22023,
/// 42704).
pub fn with_named<R>(function: &str, name: Option<&str>, body: impl FnOnce() -> R) -> R {
    let name = checked_name(function, "cache", name);
    within(named(function, name), body)
}

/// Tells every backend (at commit) that the catalog changed.
pub fn announce_change() {
    if let Some(catalog) = catalog() {
        // SAFETY: queues a relcache invalidation of an existing relation, in a transaction.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(catalog) };
    }
    GENERATION.set(GENERATION.get().wrapping_add(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for good in ["default", "sessions", "_x", "a1_b2", &"a".repeat(63)] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "Sessions", "1st", "with-dash", "é", "a b", &"a".repeat(64), "a.b"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn tables_are_named_by_number() {
        assert_eq!(table_name(0), "pg_cache_entries");
        assert_eq!(table_name(12), "pg_cache_entries_12");
    }
}
