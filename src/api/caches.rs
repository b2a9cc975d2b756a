//! Named caches: creating, altering, dropping and listing them. Each is a table of its own in the
//! extension's schema, a member of the extension, owned by the extension's owner; only that
//! owner (or a superuser) creates, alters and drops caches, and so raises a cap.

use crate::access::{self, caches};
use crate::error::{self, required};
use crate::shmem::caches as cache_slots;
use pgrx::datum::Interval;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgTryBuilder;

/// The storage options every cache table gets, as `pg_cache_entries` has them (`LIKE` does not
/// copy them): room for HOT slides, and autovacuum that keeps up with a churning table.
const TABLE_OPTIONS: &str = "fillfactor = 85, autovacuum_vacuum_scale_factor = 0.05, \
     autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.05, \
     toast.autovacuum_vacuum_scale_factor = 0.05";

/// 42501 unless the current role is the extension's owner (or a member of it) or a superuser.
fn require_extension_owner(function: &str) {
    let owner = access::extension_owner();
    // SAFETY: reads the current role and its memberships, in a transaction.
    let allowed = unsafe {
        pg_sys::superuser()
            || owner.is_some_and(|owner| pg_sys::has_privs_of_role(pg_sys::GetUserId(), owner))
    };
    if !allowed {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("{function}: only the owner of the extension pg_cache may create, alter or drop caches")
        );
    }
}

/// The catalog, schema-qualified for SQL; 0A000 before the update that makes it.
fn qualified_catalog(function: &str) -> String {
    let Some(catalog) = caches::catalog() else {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{function}: named caches need pg_cache 0.3.0's SQL"),
            "Run ALTER EXTENSION pg_cache UPDATE."
        );
    };
    access::qualified_table_name(catalog)
}

/// A `max_size` argument in bytes: `None` for `'default'` (then `pg_cache.max_size` applies),
/// else a size as `pg_size_bytes` reads it ('512MB', '0' for no cap).
fn checked_max_size(function: &str, max_size: &str) -> Option<i64> {
    if max_size == "default" {
        return None;
    }
    let bytes = PgTryBuilder::new(|| {
        Spi::get_one_with_args::<i64>("SELECT pg_catalog.pg_size_bytes($1)", &[max_size.into()])
            .ok()
            .flatten()
            .unwrap_or(0)
    })
    .catch_others(|_| {
        error::invalid_argument(
            function,
            format!(
                "max_size {max_size:?} is not a size: give bytes or a unit (kB, MB, GB, TB), or 'default'"
            ),
        )
    })
    .execute();
    if bytes < 0 {
        error::invalid_argument(function, format!("max_size must not be negative, got {max_size:?}"));
    }
    Some(bytes)
}

/// A default expiry: a positive, finite interval; `'0'` clears it (in `cache_alter`).
fn checked_default(function: &str, argument: &str, interval: Interval) -> Option<Interval> {
    let micros = interval.as_micros();
    if micros == 0 {
        return None;
    }
    if micros < 0 || micros >= i128::from(i64::MAX) {
        error::invalid_argument(
            function,
            format!("{argument} must be a positive, finite interval (or '0' for none), got {interval}"),
        );
    }
    Some(interval)
}

/// Creates the cache `name`: a table of its own, UNLOGGED unless `logged`, with its own size cap
/// (`max_size`, as `pg_cache.max_size` reads it; NULL: that setting applies) and its own
/// defaults for entries written with no expiry. Its table starts with the privileges granted on
/// the cache `default`'s table.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_create(
    name: Option<&str>,
    logged: default!(Option<bool>, false),
    max_size: default!(Option<&str>, "NULL"),
    default_sliding: default!(Option<Interval>, "NULL"),
    default_ttl: default!(Option<Interval>, "NULL"),
) {
    const FUNCTION: &str = "cache_create";
    let name = caches::checked_name(FUNCTION, "name", name);
    let logged = required(FUNCTION, "logged", logged);
    let max_size = max_size.and_then(|size| checked_max_size(FUNCTION, size));
    let default_sliding = default_sliding.and_then(|at| checked_default(FUNCTION, "default_sliding", at));
    let default_ttl = default_ttl.and_then(|at| checked_default(FUNCTION, "default_ttl", at));
    require_extension_owner(FUNCTION);
    let catalog = qualified_catalog(FUNCTION);
    Spi::connect_mut(|client| {
        // One creation at a time: the next number is taken from the catalog.
        client
            .update(&format!("LOCK TABLE {catalog} IN SHARE ROW EXCLUSIVE MODE"), None, &[])
            .expect("lock the catalog");
        let exists = !client
            .select(
                &format!("SELECT 1 FROM {catalog} WHERE name OPERATOR(pg_catalog.=) $1"),
                None,
                &[name.into()],
            )
            .expect("look the name up")
            .is_empty();
        if exists {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("{FUNCTION}: cache \"{name}\" already exists")
            );
        }
        let mut id = client
            .select(&format!("SELECT pg_catalog.max(id) OPERATOR(pg_catalog.+) 1 FROM {catalog}"), None, &[])
            .expect("next number")
            .first()
            .get::<i32>(1)
            .expect("a number")
            .unwrap_or(1);
        // Past the numbers whose table name someone else's table has (in the extension's
        // schema a database owner may create tables).
        let schema = catalog.rsplit_once('.').map_or("", |(schema, _)| schema).to_owned();
        while table_exists(&format!("{schema}.{}", caches::table_name(id))) {
            pgrx::check_for_interrupts!();
            id = id
                .checked_add(1)
                .unwrap_or_else(|| error::invalid_argument(FUNCTION, "no cache number is left"));
        }
        client
            .update(
                &format!(
                    "INSERT INTO {catalog} (name, id, logged, max_size, default_sliding, default_ttl) \
                     VALUES ($1, $2, $3, $4, $5, $6)"
                ),
                None,
                &[
                    name.into(),
                    id.into(),
                    logged.into(),
                    max_size.into(),
                    default_sliding.into(),
                    default_ttl.into(),
                ],
            )
            .expect("record the cache");
    });
    caches::announce_change();
}

pgrx::extension_sql!(
    r#"
CREATE TRIGGER pg_cache_caches_made AFTER INSERT ON @extschema@.pg_cache_caches
    FOR EACH ROW EXECUTE FUNCTION @extschema@.pg_cache_caches_made();
-- A trigger fires whatever the privileges; nobody needs to attach this function to a table.
REVOKE ALL ON FUNCTION @extschema@.pg_cache_caches_made() FROM PUBLIC;
"#,
    name = "pg_cache_caches_made_trigger",
    requires = ["cache_table", pg_cache_caches_made]
);

/// Makes the table of a cache recorded in the catalog when it has none: after `cache_create`
/// records it, and after a restore of a dump (pg_dump dumps the catalog, not the caches' tables,
/// which are members of the extension).
#[pg_trigger]
fn pg_cache_caches_made<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::datum::TryFromDatumError> {
    const FUNCTION: &str = "cache_create";
    // Only on the catalog (anyone could attach a trigger function to a table of their own).
    let on = trigger.relation().ok().map(|relation| relation.oid());
    if on.is_none() || on != caches::catalog() {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "pg_cache_caches_made: only for the catalog pg_cache_caches"
        );
    }
    require_extension_owner(FUNCTION);
    let row = trigger.new().expect("an INSERT trigger");
    let name: String = row.get_by_name("name")?.expect("NOT NULL");
    let id: i32 = row.get_by_name("id")?.expect("NOT NULL");
    let logged: bool = row.get_by_name("logged")?.expect("NOT NULL");
    if cache_slots::in_use() >= crate::gucs::MAX_CACHES.get() as usize && crate::shmem::slots::preloaded() {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            format!(
                "{FUNCTION}: the server keeps {} caches (pg_cache.max_caches) and has no room for another",
                crate::gucs::MAX_CACHES.get()
            ),
            "Drop caches no longer used (the eviction worker frees their room within seconds), or raise pg_cache.max_caches and restart."
        );
    }
    let default_table = access::qualified_table_name(caches::named(FUNCTION, caches::DEFAULT).table);
    let schema = default_table.rsplit_once('.').map_or("", |(schema, _)| schema).to_owned();
    // Cache table names need no quoting: lowercase letters, digits and _.
    let table = format!("{schema}.{}", caches::table_name(id));
    // Made here, never taken over: a table of that name already there is someone else's (a
    // database owner may create tables in the extension's schema).
    if table_exists(&table) {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
            format!(
                "{FUNCTION}: the table {table} of cache \"{name}\" exists already, and is not the cache's"
            ),
            "Drop or rename it; a cache's table is made by pg_cache, never taken over."
        );
    }
    Spi::connect_mut(|client| create_table(client, &name, &table, &default_table, logged));
    caches::announce_change();
    // Its statistics slot now, so that pg_cache.max_caches counts it from the start (the worker
    // frees it again if this transaction rolls back, not while it runs).
    // SAFETY: reads a backend global set at connection.
    let database = unsafe { pg_sys::MyDatabaseId };
    if let Some(oid) = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
        &[table.as_str().into()],
    )
    .ok()
    .flatten()
    {
        cache_slots::claim_for_new_cache(database, oid);
    }
    Ok(Some(row))
}

/// Whether a relation or a type has the name `table` (a type of that name, an enum or a domain,
/// would make `CREATE TABLE` fail as surely as a table).
fn table_exists(table: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL OR pg_catalog.to_regtype($1) IS NOT NULL",
        &[table.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Creates `table` for the cache `name`, as `default_table` is made, as a member of the
/// extension owned by its owner, with the privileges granted on `default_table`.
fn create_table(client: &mut SpiClient, name: &str, table: &str, default_table: &str, logged: bool) {
    let persistence = if logged { "" } else { "UNLOGGED " };
    run(
        client,
        &format!(
            "CREATE {persistence}TABLE {table} (LIKE {default_table} INCLUDING ALL) WITH ({TABLE_OPTIONS})"
        ),
    );
    run(client, &format!("ALTER EXTENSION pg_cache ADD TABLE {table}"));
    let owner = access::extension_owner().expect("the extension exists");
    run(client, &format!("ALTER TABLE {table} OWNER TO {}", role_name(owner)));
    copy_grants(client, default_table, table);
    let comment = format!("pg_cache storage of the cache {name}; use the cache_* functions");
    run(client, &format!("COMMENT ON TABLE {table} IS {}", quote_literal(&comment)));
}

/// Changes a cache's options; NULL leaves one as it is. `logged` rewrites the table, as
/// `ALTER TABLE … SET LOGGED` does (locking it out for the rewrite), and says so; `max_size
/// => 'default'` makes `pg_cache.max_size` apply again, an interval `'0'` clears a default.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_alter(
    name: Option<&str>,
    logged: default!(Option<bool>, "NULL"),
    max_size: default!(Option<&str>, "NULL"),
    default_sliding: default!(Option<Interval>, "NULL"),
    default_ttl: default!(Option<Interval>, "NULL"),
) {
    const FUNCTION: &str = "cache_alter";
    let name = caches::checked_name(FUNCTION, "name", name);
    let max_size = max_size.map(|size| checked_max_size(FUNCTION, size));
    let default_sliding = default_sliding.map(|at| checked_default(FUNCTION, "default_sliding", at));
    let default_ttl = default_ttl.map(|at| checked_default(FUNCTION, "default_ttl", at));
    require_extension_owner(FUNCTION);
    let catalog = qualified_catalog(FUNCTION);
    let cache = caches::named(FUNCTION, name);
    let table = access::qualified_table_name(cache.table);
    Spi::connect_mut(|client| {
        if let Some(logged) = logged.filter(|logged| *logged != cache.logged) {
            let to = if logged { "LOGGED" } else { "UNLOGGED" };
            run(client, &format!("ALTER TABLE {table} SET {to}"));
            pgrx::notice!(
                "{FUNCTION}: rewrote the table of cache \"{name}\" ({table}) to make it {}; it was locked \
                 for reads and writes while rewritten",
                to.to_lowercase()
            );
        }
        let mut sets = Vec::new();
        let mut args: Vec<pgrx::datum::DatumWithOid> = vec![name.into()];
        if let Some(logged) = logged {
            args.push(logged.into());
            sets.push(format!("logged = ${}", args.len()));
        }
        if let Some(max_size) = max_size {
            args.push(max_size.into());
            sets.push(format!("max_size = ${}::pg_catalog.int8", args.len()));
        }
        if let Some(sliding) = default_sliding {
            args.push(sliding.into());
            sets.push(format!("default_sliding = ${}::pg_catalog.interval", args.len()));
        }
        if let Some(ttl) = default_ttl {
            args.push(ttl.into());
            sets.push(format!("default_ttl = ${}::pg_catalog.interval", args.len()));
        }
        if !sets.is_empty() {
            client
                .update(
                    &format!("UPDATE {catalog} SET {} WHERE name OPERATOR(pg_catalog.=) $1", sets.join(", ")),
                    None,
                    &args,
                )
                .expect("update the cache");
        }
    });
    caches::announce_change();
}

/// Drops a cache and its entries (not `default`). Calls running on it finish first (the drop
/// waits for their locks); later ones get 42704.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_drop(name: Option<&str>) {
    const FUNCTION: &str = "cache_drop";
    let name = caches::checked_name(FUNCTION, "name", name);
    require_extension_owner(FUNCTION);
    if name == caches::DEFAULT {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{FUNCTION}: the cache \"default\" cannot be dropped"),
            "cache_clear() removes its entries; DROP EXTENSION pg_cache removes every cache."
        );
    }
    let catalog = qualified_catalog(FUNCTION);
    let cache = caches::named(FUNCTION, name);
    let table = access::qualified_table_name(cache.table);
    Spi::connect_mut(|client| {
        run(client, &format!("ALTER EXTENSION pg_cache DROP TABLE {table}"));
        run(client, &format!("DROP TABLE {table}"));
        client
            .update(
                &format!("DELETE FROM {catalog} WHERE name OPERATOR(pg_catalog.=) $1"),
                None,
                &[name.into()],
            )
            .expect("forget the cache");
    });
    caches::announce_change();
    // The worker frees what the cache kept in shared memory at its next sweep: once this
    // commits, at once.
    crate::shmem::writes::note_cache_dropped();
}

/// The caches of this database: options, the entries the statistics system counts (expired ones
/// not yet evicted included) and the live bytes the worker last measured (NULL without
/// preloading or before its first sweep of the cache; both NULL for a role that may not read the
/// cache), and the table behind each (to GRANT on).
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn cache_list() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(logged, bool),
        name!(max_size, Option<i64>),
        name!(default_sliding, Option<Interval>),
        name!(default_ttl, Option<Interval>),
        name!(entries, Option<i64>),
        name!(live_bytes, Option<i64>),
        name!(table_name, String),
    ),
> {
    // SAFETY: reads a backend global set at connection.
    let database = unsafe { pg_sys::MyDatabaseId };
    let rows: Vec<_> = caches::all()
        .into_iter()
        .filter_map(|cache| {
            // A cache dropped since the list was read is left out.
            let table_name = access::try_qualified_table_name(cache.table)?;
            // How full a cache is, only for roles that may read it.
            let readable = access::has_privileges(cache.table, pg_sys::ACL_SELECT);
            // Read-only SPI: listing takes no transaction id (and so works on a standby).
            let entries = readable
                .then(|| {
                    Spi::connect(|client| {
                        client
                            .select(
                                "SELECT pg_catalog.pg_stat_get_live_tuples($1)",
                                Some(1),
                                &[cache.table.into()],
                            )?
                            .first()
                            .get_one::<i64>()
                    })
                    .ok()
                    .flatten()
                })
                .flatten();
            let live_bytes = readable
                .then(|| cache_slots::existing(database, cache.table).map(|slot| slot.live_bytes()))
                .flatten();
            Some((
                cache.name.clone(),
                cache.logged,
                cache.max_size,
                cache.default_sliding,
                cache.default_ttl,
                entries,
                live_bytes,
                table_name,
            ))
        })
        .collect();
    TableIterator::new(rows)
}

fn run(client: &mut SpiClient, sql: &str) {
    client.update(sql, None, &[]).unwrap_or_else(|error| panic!("{sql}: {error}"));
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The role `role`'s name, quoted for SQL.
fn role_name(role: pg_sys::Oid) -> String {
    Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.quote_ident(rolname) FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) $1",
        &[role.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| "CURRENT_USER".to_owned())
}

/// Grants on `to` what is granted on `from` to roles other than its owner: on the table and on
/// its columns, with their grant options.
fn copy_grants(client: &mut SpiClient, from: &str, to: &str) {
    let grantee = "CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' \
                   ELSE pg_catalog.quote_ident(r.rolname) END";
    let option = "CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END";
    let grants: Vec<String> = client
        .select(
            &format!(
                "SELECT pg_catalog.format('GRANT %s ON TABLE %s TO %s%s', a.privilege_type, $2::pg_catalog.text, {grantee}, {option}) \
                 FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a \
                 LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee \
                 WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass AND a.grantee OPERATOR(pg_catalog.<>) c.relowner \
                 UNION ALL \
                 SELECT pg_catalog.format('GRANT %s (%I) ON TABLE %s TO %s%s', a.privilege_type, t.attname, $2::pg_catalog.text, {grantee}, {option}) \
                 FROM pg_catalog.pg_attribute t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.attrelid \
                 CROSS JOIN LATERAL pg_catalog.aclexplode(t.attacl) a \
                 LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee \
                 WHERE t.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass AND t.attnum OPERATOR(pg_catalog.>) 0 \
                   AND NOT t.attisdropped AND a.grantee OPERATOR(pg_catalog.<>) c.relowner"
            ),
            None,
            &[from.into(), to.into()],
        )
        .expect("read the grants")
        .filter_map(|row| row.get::<String>(1).ok().flatten())
        .collect();
    for grant in grants {
        run(client, &grant);
    }
}
