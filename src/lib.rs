//! pg_cache: a key-value cache with absolute and sliding expiry, stored in an UNLOGGED table
//! inside the PostgreSQL you already run.

// Every unsafe operation sits in a block that says why it is sound.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

// Layers, each calling only those below it (checked by `layers::tests`):
// api, worker → store → feed → access, codec, shmem, bgw, expiry → gucs, error, compat.
mod access;
mod api;
mod bgw;
mod codec;
mod compat;
mod error;
mod expiry;
mod feed;
mod gucs;
#[cfg(test)]
mod layers;
mod selected;
mod shmem;
mod store;
mod worker;
mod xact;

::pgrx::pg_module_magic!();

pgrx::extension_sql_file!("../sql/cache_table.sql", name = "cache_table", bootstrap);
pgrx::extension_sql_file!("../sql/preload_warning.sql", name = "preload_warning", finalize);

#[allow(non_snake_case)]
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    // The eviction worker and its status need shared memory: only when preloaded.
    // SAFETY: reads a flag PostgreSQL sets while it loads preloaded libraries.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        shmem::slots::init();
        shmem::caches::init();
        feed::relay::init();
        shmem::leases::init();
        shmem::touches::init();
        worker::register_launcher();
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_cache'"]
    }
}
