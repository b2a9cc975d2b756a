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

/// A shared-memory hook of PostgreSQL's (`shmem_request_hook`, `shmem_startup_hook`).
type Hook = Option<unsafe extern "C-unwind" fn()>;

/// Puts `request` and `startup` ahead of the hooks installed so far, which it returns, for them
/// to call first ([`call_previous`]).
///
/// # Safety
/// In `_PG_init` while the library is preloaded, before any other process exists.
unsafe fn install_hooks(
    request: unsafe extern "C-unwind" fn(),
    startup: unsafe extern "C-unwind" fn(),
) -> (Hook, Hook) {
    // SAFETY: the caller's contract: nothing else reads or writes the hooks meanwhile.
    unsafe {
        let previous = (pgrx::pg_sys::shmem_request_hook, pgrx::pg_sys::shmem_startup_hook);
        pgrx::pg_sys::shmem_request_hook = Some(request);
        pgrx::pg_sys::shmem_startup_hook = Some(startup);
        previous
    }
}

/// Calls the hook that was installed before ours, if any.
///
/// # Safety
/// In the hook of the same kind.
unsafe fn call_previous(previous: Hook) {
    if let Some(previous) = previous {
        // SAFETY: the caller's contract; an ERROR in it becomes a Rust panic, as pgrx's calls do.
        unsafe { pgrx::pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| previous()) };
    }
}
