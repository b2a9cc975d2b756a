//! What sessions and workers share, per database, in shared memory (only with the library
//! preloaded): the database slots the launcher schedules by (`slots`), the write accounting that
//! feeds them (`writes`), the statistics counters kept in them (`stats`), the lease table of `cache_get_or_lease`
//! (`leases`), and the sliding hits waiting to be written (`touches`).

pub mod caches;
pub mod leases;
mod probing;
pub mod slots;
pub mod stats;
pub mod touches;
pub mod writes;

/// The shared memory named `name`, of `size` bytes: made (zeroed) by the first process to ask,
/// found by name after that.
///
/// # Safety
/// In a shmem_startup_hook, with `size` bytes requested in the shmem_request_hook.
unsafe fn attach(name: &std::ffi::CStr, size: usize) -> *mut u8 {
    // SAFETY: the caller's contract; under AddinShmemInitLock (MainLWLockArray[21], as pgrx's
    // PgLwLock takes it), so one process makes the memory and the others find it.
    unsafe {
        let init_lock = &raw mut (*pgrx::pg_sys::MainLWLockArray.add(21)).lock;
        pgrx::pg_sys::LWLockAcquire(init_lock, pgrx::pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let memory = pgrx::pg_sys::ShmemInitStruct(name.as_ptr(), size, &mut found).cast::<u8>();
        if !found {
            memory.write_bytes(0, size);
        }
        pgrx::pg_sys::LWLockRelease(init_lock);
        memory
    }
}
