//! What sessions and workers share, per database, in shared memory (only with the library
//! preloaded): the database slots the launcher schedules by (`slots`), the write accounting that
//! feeds them (`writes`), and the statistics counters kept in them (`stats`).

pub mod slots;
pub mod stats;
pub mod writes;
