//! The extension, its schema, its owner and its tables: found through the catalog caches by OID,
//! never by SQL, so nothing in anyone's `search_path` can stand in for it.

use pgrx::pg_sys::{self, Oid};
use std::cell::Cell;
use std::ffi::CStr;

/// Whether a relation with OID `relation` exists.
pub fn relation_exists(relation: Oid) -> bool {
    // SAFETY: a catalog-cache existence check by OID, in a transaction.
    unsafe {
        pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            relation.into(),
            0.into(),
            0.into(),
            0.into(),
        )
    }
}

/// The schema of the extension pg_cache; `None` without it.
pub fn extension_schema_of_pg_cache() -> Option<Oid> {
    // SAFETY: catalog lookups by name and OID, in a transaction (every caller runs in one);
    // each returns InvalidOid when the object is absent.
    unsafe {
        let extension = pg_sys::get_extension_oid(c"pg_cache".as_ptr(), true);
        if extension == pg_sys::InvalidOid {
            return None;
        }
        extension_row(extension).map(|(schema, _)| schema)
    }
}

/// The role owning the extension pg_cache; `None` without it.
pub fn extension_owner() -> Option<Oid> {
    // SAFETY: as in `extension_schema_of_pg_cache`.
    unsafe {
        let extension = pg_sys::get_extension_oid(c"pg_cache".as_ptr(), true);
        if extension == pg_sys::InvalidOid {
            return None;
        }
        extension_row(extension).map(|(_, owner)| owner)
    }
}

/// The schema and owner of the extension `extension` (`pg_extension.extnamespace`, `extowner`),
/// read through its OID index (PostgreSQL 15 has no catalog cache of pg_extension).
///
/// # Safety
/// In a transaction.
unsafe fn extension_row(extension: Oid) -> Option<(Oid, Oid)> {
    // SAFETY: in a transaction (the caller's): pg_extension is opened, scanned by its OID index and closed
    // here; the tuple is read before the scan ends.
    unsafe {
        let catalog = pg_sys::table_open(pg_sys::ExtensionRelationId, pg_sys::AccessShareLock as _);
        let mut key = pg_sys::ScanKeyData::default();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_extension_oid as pg_sys::AttrNumber,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            Oid::from(pg_sys::F_OIDEQ),
            extension.into(),
        );
        let scan = pg_sys::systable_beginscan(
            catalog,
            Oid::from(pg_sys::ExtensionOidIndexId),
            true,
            std::ptr::null_mut(),
            1,
            &mut key,
        );
        let tuple = pg_sys::systable_getnext(scan);
        let row = (!tuple.is_null()).then(|| {
            let form = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_extension>(tuple);
            (form.extnamespace, form.extowner)
        });
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(catalog, pg_sys::AccessShareLock as _);
        row.filter(|(schema, _)| *schema != pg_sys::InvalidOid)
    }
}

/// The cache table's name, schema-qualified and quoted for SQL.
pub fn qualified_table_name(table: Oid) -> String {
    let Some(name) = try_qualified_table_name(table) else {
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("pg_cache: the table with OID {} was dropped", table.to_u32())
        );
    };
    name
}

/// The table's name, schema-qualified and quoted for SQL; `None` for one dropped meanwhile.
pub fn try_qualified_table_name(table: Oid) -> Option<String> {
    // SAFETY: catalog lookups of the namespace and relation names by OID, in a transaction; each
    // returns NULL for a relation dropped meanwhile (checked before use); the quoted name is
    // copied before returning.
    unsafe {
        let relation = pg_sys::get_rel_name(table);
        if relation.is_null() {
            return None;
        }
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(table));
        if schema.is_null() {
            return None;
        }
        let name = pg_sys::quote_qualified_identifier(schema, relation);
        Some(CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// Whether `table` is a member of the extension pg_cache: a table someone else made under a cache
/// table's name is never taken for one (only the extension's owner can make a table a member).
pub fn is_extension_table(table: Oid) -> bool {
    // SAFETY: catalog lookups by name and OID, in a transaction.
    unsafe {
        let extension = pg_sys::get_extension_oid(c"pg_cache".as_ptr(), true);
        extension != pg_sys::InvalidOid
            && pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, table) == extension
    }
}

thread_local! {
    /// The OID of `pg_cache_pending_expiry(oid, text, timestamptz)` once found.
    static PENDING_EXPIRY: Cell<Option<Oid>> = const { Cell::new(None) };
}

/// Whether the extension has `pg_catalog.pg_cache_pending_expiry(oid, text, timestamptz)` (a
/// member of it), which the kept statements call to see pending touches: the SQL of a version
/// before 0.3.0, before `ALTER EXTENSION pg_cache UPDATE`, has not, and then no hit is deferred.
/// In pg_catalog, where no database owner can put a function of that name, or an overload that
/// would make the statements' calls ambiguous.
pub fn has_pending_expiry_function() -> bool {
    let cached = PENDING_EXPIRY.get().filter(|function| {
        // SAFETY: a catalog-cache existence check by OID, in a transaction.
        unsafe {
            pg_sys::SearchSysCacheExists(
                pg_sys::SysCacheIdentifier::PROCOID as i32,
                (*function).into(),
                0.into(),
                0.into(),
                0.into(),
            )
        }
    });
    if cached.is_some() {
        return true;
    }
    // SAFETY: catalog lookups by OID and by name, argument types and schema, in a transaction;
    // the argument vector is palloc'd in the current memory context.
    let found = unsafe {
        let arguments = [pg_sys::OIDOID, pg_sys::TEXTOID, pg_sys::TIMESTAMPTZOID];
        let vector = pg_sys::buildoidvector(arguments.as_ptr(), arguments.len() as i32);
        pg_sys::GetSysCacheOid(
            pg_sys::SysCacheIdentifier::PROCNAMEARGSNSP as i32,
            pg_sys::Anum_pg_proc_oid as pg_sys::AttrNumber,
            pg_sys::Datum::from(c"pg_cache_pending_expiry".as_ptr()),
            pg_sys::Datum::from(vector),
            pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE).into(),
            0.into(),
        )
    };
    // Only the extension's own (pg_catalog admits no one else's, but a superuser's could be
    // there before the update that creates it).
    // SAFETY: catalog lookups by OID, in a transaction.
    let ours = found != pg_sys::InvalidOid
        && unsafe {
            let extension = pg_sys::get_extension_oid(c"pg_cache".as_ptr(), true);
            extension != pg_sys::InvalidOid
                && pg_sys::getExtensionOfObject(pg_sys::ProcedureRelationId, found) == extension
        };
    if !ours {
        return false;
    }
    PENDING_EXPIRY.set(Some(found));
    true
}

/// `pg_cache_pending_expiry`, qualified for SQL.
pub const QUALIFIED_PENDING_EXPIRY: &str = "pg_catalog.pg_cache_pending_expiry";
