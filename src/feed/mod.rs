//! The invalidation feed: what each committed transaction changed, announced on
//! `pg_cache_invalidation` (`pg_cache.notify`). `collect` gathers a transaction's changes and hands
//! them over at commit, to the database's `relay` or as the transaction's own NOTIFY; `payload`
//! is the notification's JSON. The relay depends on `payload` and `bgw` only.

mod collect;
mod payload;
pub mod relay;

pub use collect::note;
pub use payload::Change;
