//! JSON values stored as CBOR: the pure codec and its PostgreSQL side.

pub mod cbor;
pub mod jsonb;

pub use cbor::{JsonError, MAX_DEPTH};
pub use jsonb::{decode_jsonb, encode};
