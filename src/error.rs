//! Errors raised to the client: a Postgres ERROR with the SQLSTATE that fits, naming the argument.

use pgrx::{ereport, PgSqlErrorCode};

/// 22004: a required argument is NULL.
pub fn null_argument(function: &str, argument: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        format!("{function}: {argument} must not be NULL")
    );
}

/// 22023: an argument has a value the function does not accept.
pub fn invalid_argument(function: &str, message: impl Into<String>) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("{function}: {}", message.into())
    );
}

/// 54000: an argument is larger than pg_cache can store.
pub fn limit_exceeded(function: &str, message: impl Into<String>) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        format!("{function}: {}", message.into())
    );
}

/// 22008: an expiry falls outside the range of timestamptz.
pub fn datetime_overflow(function: &str, message: impl Into<String>) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
        format!("{function}: {}", message.into())
    );
}

/// 22P02: a counter's stored value is not a decimal integer.
pub fn not_a_counter(function: &str, key: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        format!("{function}: the value of key \"{key}\" is not a decimal integer"),
        "A counter holds ASCII digits with an optional leading minus sign, nothing else."
    );
}

/// 22P02: a stored value is not JSON in CBOR.
pub fn not_json(function: &str, key: &str, reason: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        format!("{function}: the value of key \"{key}\" is not JSON in CBOR: {reason}"),
        "cache_get_json reads one CBOR item that JSON can express (RFC 8949; see the README)."
    );
}

/// 22003: a number would leave its type's range.
pub fn numeric_overflow(function: &str, message: impl Into<String>) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        format!("{function}: {}", message.into())
    );
}

/// Unwraps a required argument, raising 22004 when it is NULL.
pub fn required<T>(function: &str, argument: &str, value: Option<T>) -> T {
    value.unwrap_or_else(|| null_argument(function, argument))
}

/// 0A000: a hot standby cannot read the unlogged cache table, nor write at all.
pub fn unavailable_in_recovery() -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "pg_cache: the cache is not available on a standby",
        "Entries of an UNLOGGED cache live in an unlogged table, which a server in recovery can neither read nor write; \
         use the primary, or a logged cache (cache_create(..., logged => true)) to read on standbys."
    );
}

/// 25006: a write on a standby, where even a logged cache is read-only.
pub fn read_only_on_standby(cache: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
        format!("pg_cache: cache \"{cache}\" is read-only on a standby"),
        "Write through the primary; reads of a logged cache on a standby do not slide its entries."
    );
}

/// 0A000: tags on the table of 0.1.0, which has no column for them.
pub fn tags_need_update() -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "pg_cache: the cache table has no tags column",
        "Run ALTER EXTENSION pg_cache UPDATE to bring the table to this version."
    );
}
