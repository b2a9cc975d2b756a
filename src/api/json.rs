//! jsonb values, stored as CBOR (see `json`): readable as bytes by any client with a CBOR
//! library, and CBOR written by clients readable as jsonb.

use super::checked_key;
use crate::codec::{self as json, JsonError};
use crate::error;
use crate::shmem::stats;
use crate::store::{self, Lookup};
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::{Array, Datum, Interval, TimestampWithTimeZone};
use pgrx::nullable::Nullable;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;

/// A jsonb datum as PostgreSQL holds it: pgrx's `JsonB` goes through serde_json's doubles and
/// would lose digits (`1e400`, `1.000`).
pub struct Jsonb(pg_sys::Datum);

impl FromDatum for Jsonb {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        (!is_null).then_some(Jsonb(datum))
    }
}

impl IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// SAFETY: a jsonb argument is read as the datum it is, through `FromDatum` (JSONBOID checked by pgrx's SQL
// definition).
unsafe impl<'fcx> ArgAbi<'fcx> for Jsonb {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        // SAFETY: pgrx calls this with this function's own argument, whose type the SQL definition says is
        // jsonb.
        unsafe {
            let index = arg.index();
            arg.unbox_arg_using_from_datum().unwrap_or_else(|| panic!("argument {index} must not be null"))
        }
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: as above: this function's own jsonb argument.
        unsafe { arg.unbox_arg_using_from_datum().into() }
    }
}

// SAFETY: the datum returned is a jsonb built in the function's memory context.
unsafe impl BoxRet for Jsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        // SAFETY: `self` holds a jsonb datum built in the function's memory context, returned as the
        // function's result.
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

// SAFETY: the SQL type named is jsonb, which the datum is.
unsafe impl SqlTranslatable for Jsonb {
    const TYPE_IDENT: &'static str = concat!(module_path!(), "::Jsonb");
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

/// As `cache_set`, storing the CBOR encoding of `value`.
#[pg_extern(name = "cache_set_json", volatile, parallel_unsafe)]
pub(super) fn cache_set_json_in_cache(
    key: Option<&str>,
    value: Option<Jsonb>,
    ttl: default!(Option<Interval>, "NULL"),
    sliding: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Array<&str>>, "NULL"),
    cache: default!(Option<&str>, "'default'"),
) {
    crate::access::caches::with_named("cache_set_json", cache, || {
        const FUNCTION: &str = "cache_set_json";
        let key = checked_key(FUNCTION, "key", key);
        let value = error::required(FUNCTION, "value", value);
        // SAFETY: `value` is this function's jsonb argument.
        let encoded = match unsafe { json::encode(value.0) } {
            Ok(encoded) => encoded,
            Err(JsonError::TooDeep) => error::limit_exceeded(
                FUNCTION,
                format!("value is nested more than {} levels deep", json::MAX_DEPTH),
            ),
            Err(JsonError::Invalid(reason)) => error::invalid_argument(FUNCTION, format!("value: {reason}")),
        };
        super::entries::set(FUNCTION, Some(key), Some(&encoded), ttl, sliding, expires_at, tags);
    })
}

/// As `cache_get` (a hit slides), the stored CBOR decoded to jsonb.
#[pg_extern(name = "cache_get_json", volatile, parallel_unsafe)]
pub(super) fn cache_get_json_in_cache(
    key: Option<&str>,
    cache: default!(Option<&str>, "'default'"),
) -> Option<Jsonb> {
    crate::access::caches::with_named("cache_get_json", cache, || {
        const FUNCTION: &str = "cache_get_json";
        let key = checked_key(FUNCTION, "key", key);
        let hit = store::hit(key, Lookup::Get);
        stats::count_lookup(hit.is_some());
        hit.and_then(|hit| hit.value).map(|value| to_jsonb(FUNCTION, key, &value))
    })
}

/// As `cache_get_many`, each value decoded to jsonb.
#[pg_extern(name = "cache_get_many_json", volatile, parallel_unsafe)]
pub(super) fn cache_get_many_json_in_cache(
    keys: Option<Array<&str>>,
    cache: default!(Option<&str>, "'default'"),
) -> TableIterator<'static, (name!(key, String), name!(value, Jsonb))> {
    crate::access::caches::with_named("cache_get_many_json", cache, || {
        TableIterator::new(super::batch::get_many("cache_get_many_json", keys, |key, value| {
            to_jsonb("cache_get_many_json", key, &value)
        }))
    })
}

/// The jsonb of a stored CBOR value; a value that is not one is an error naming the key.
fn to_jsonb(function: &str, key: &str, value: &[u8]) -> Jsonb {
    // SAFETY: in the function's memory context, where the jsonb is returned from.
    match unsafe { json::decode_jsonb(value) } {
        Ok(datum) => Jsonb(datum),
        Err(JsonError::TooDeep) => error::limit_exceeded(
            function,
            format!("the value of key \"{key}\" is nested more than {} levels deep", json::MAX_DEPTH),
        ),
        Err(JsonError::Invalid(reason)) => error::not_json(function, key, &reason),
    }
}
