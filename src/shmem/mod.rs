//! What sessions and workers share, per database, in shared memory (only with the library
//! preloaded): the database slots the launcher schedules by (`slots`), the write accounting that
//! feeds them (`writes`), the statistics counters kept in them (`stats`), the lease table of `cache_get_or_lease`
//! (`leases`), and the sliding hits waiting to be written (`touches`).

pub mod leases;
mod probing;
pub mod slots;
pub mod stats;
pub mod touches;
pub mod writes;
