//! Expiry rules, those of .NET's `DistributedCacheEntryOptions` done right: an absolute expiry
//! (`ttl` from now, or `expires_at`), a sliding window, or both, in which case the sliding
//! expiry never passes the absolute one, at set time and on every hit.

use crate::error;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::{self, TimestampTz};
use pgrx::{PgSqlErrorCode, PgTryBuilder};

/// The last microsecond timestamptz can hold (PostgreSQL's END_TIMESTAMP, exclusive).
const TIMESTAMPTZ_END: TimestampTz = 9_223_371_331_200_000_000;

/// The latest finite timestamptz.
pub const LAST_FINITE: TimestampTz = TIMESTAMPTZ_END - 1;

/// The expiry of an entry that never expires: timestamptz `'infinity'` (DT_NOEND). Every
/// comparison with a finite time holds it live; only the size cap or a removal ends it.
pub const NEVER: TimestampTz = i64::MAX;

/// An infinite interval (PostgreSQL 17's INTERVAL_NOEND: every field at its maximum), which
/// `ttl => 'infinity'` gives on 17 and later and `cache_ttl` returns for an entry that never
/// expires. Before 17 the same bits print as the largest interval.
pub fn infinite_interval() -> Interval {
    Interval::new(i32::MAX, i32::MAX, i64::MAX).expect("all fields positive")
}

fn is_infinite(interval: Interval) -> bool {
    interval.months() == i32::MAX && interval.days() == i32::MAX && interval.micros() == i64::MAX
}

fn is_minus_infinite(interval: Interval) -> bool {
    interval.months() == i32::MIN && interval.days() == i32::MIN && interval.micros() == i64::MIN
}

/// How an entry expires. Times are microseconds since 2000-01-01 UTC, as in `TimestampTz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Expires at a fixed time; hits do not move it.
    Absolute(TimestampTz),
    /// Expires `window` microseconds after the last hit, but never after `cap`.
    Sliding { window: i64, cap: Option<TimestampTz> },
}

/// What an entry written with none of ttl, sliding and expires_at gets: its cache's defaults
/// when it has any, else a sliding window of `pg_cache.default_sliding_expiration`.
#[derive(Clone, Copy, Default)]
pub struct Defaults {
    pub sliding: Option<Interval>,
    pub ttl: Option<Interval>,
}

impl Policy {
    /// Builds the policy from `cache_set`'s arguments, checked against the server clock `now`.
    pub fn from_arguments(
        function: &str,
        now: TimestampTz,
        ttl: Option<Interval>,
        sliding: Option<Interval>,
        expires_at: Option<TimestampWithTimeZone>,
        defaults: Defaults,
    ) -> Policy {
        let none_given = ttl.is_none() && sliding.is_none() && expires_at.is_none();
        if none_given && (defaults.sliding.is_some() || defaults.ttl.is_some()) {
            return Policy::from_arguments(
                function,
                now,
                defaults.ttl,
                defaults.sliding,
                None,
                Defaults::default(),
            );
        }
        let absolute = match (ttl, expires_at) {
            (Some(_), Some(_)) => error::invalid_argument(
                function,
                "ttl and expires_at are mutually exclusive; give one of them",
            ),
            (Some(ttl), None) => Some(absolute_from_ttl(function, now, ttl)),
            (None, Some(at)) => Some(absolute_from_timestamp(function, now, at)),
            (None, None) => None,
        };
        let window = sliding.map(|window| sliding_micros(function, now, window));
        // A sliding window under an infinite cap has no cap.
        let absolute = absolute.filter(|at| window.is_none() || *at != NEVER);
        match (window, absolute) {
            (Some(window), cap) => Policy::Sliding { window, cap },
            (None, Some(at)) => Policy::Absolute(at),
            (None, None) => Policy::Sliding { window: crate::gucs::default_sliding_micros(), cap: None },
        }
    }

    /// Rebuilds the policy from the stored `sliding` and `absolute_expires_at` columns.
    pub fn from_columns(sliding: Option<Interval>, absolute: Option<TimestampTz>) -> Policy {
        match (sliding, absolute) {
            (Some(window), cap) => {
                Policy::Sliding { window: i64::try_from(window.as_micros()).unwrap_or(i64::MAX), cap }
            }
            (None, Some(at)) => Policy::Absolute(at),
            // The table never holds such a row (cache_set always stores one of the two); treat it
            // as already expired rather than immortal.
            (None, None) => Policy::Absolute(TimestampTz::MIN),
        }
    }

    /// The stored `sliding` column: a plain microsecond interval.
    pub fn sliding_column(&self) -> Option<Interval> {
        match self {
            Policy::Sliding { window, .. } => Some(Interval::from_micros(*window)),
            Policy::Absolute(_) => None,
        }
    }

    /// The stored `absolute_expires_at` column.
    pub fn absolute_column(&self) -> Option<TimestampTz> {
        match self {
            Policy::Sliding { cap, .. } => *cap,
            Policy::Absolute(at) => Some(*at),
        }
    }

    /// When an entry set or hit at `now` expires.
    pub fn expires_at(&self, now: TimestampTz) -> TimestampTz {
        match *self {
            Policy::Absolute(at) => at,
            Policy::Sliding { window, cap } => {
                let slid = now.saturating_add(window).min(TIMESTAMPTZ_END - 1);
                cap.map_or(slid, |cap| slid.min(cap))
            }
        }
    }

    /// The new expiry after a hit at `now` on an entry that expires at `current`, or `None` when
    /// the row need not be rewritten: absolute entries, and moves no larger than the refresh
    /// granularity (at most a tenth of the window, so a hit always leaves 90% of it).
    pub fn slide(&self, now: TimestampTz, current: TimestampTz, granularity: i64) -> Option<TimestampTz> {
        let Policy::Sliding { window, .. } = *self else {
            return None;
        };
        let threshold = granularity.min(window / 10);
        let next = self.expires_at(now);
        (next.saturating_sub(current) > threshold).then_some(next)
    }
}

fn absolute_from_ttl(function: &str, now: TimestampTz, ttl: Interval) -> TimestampTz {
    if is_infinite(ttl) {
        return NEVER;
    }
    if is_minus_infinite(ttl) {
        error::invalid_argument(function, "ttl must be positive, got -infinity");
    }
    let out_of_range = || {
        error::datetime_overflow(function, format!("ttl {ttl} puts the expiry out of the timestamptz range"))
    };
    let start = TimestampWithTimeZone::try_from(now).expect("the server clock is a valid timestamptz");
    // Calendar arithmetic, as `now() + ttl` in SQL: '1 month' is one calendar month.
    let at: TimestampTz = PgTryBuilder::new(|| start + ttl)
        .catch_when(PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW, |_| out_of_range())
        .execute()
        .into();
    if at <= now {
        error::invalid_argument(function, format!("ttl must be positive, got {ttl}"));
    }
    if at >= TIMESTAMPTZ_END {
        out_of_range();
    }
    at
}

fn absolute_from_timestamp(function: &str, now: TimestampTz, at: TimestampWithTimeZone) -> TimestampTz {
    let at_micros: TimestampTz = at.into();
    if at_micros == NEVER {
        return NEVER;
    }
    if at_micros <= now {
        error::invalid_argument(function, format!("expires_at must be in the future, got {at}"));
    }
    at_micros
}

/// A sliding window is a duration: months count as 30 days and days as 24 hours, as in
/// `EXTRACT(epoch FROM interval)`.
fn sliding_micros(function: &str, now: TimestampTz, window: Interval) -> i64 {
    if is_infinite(window) {
        error::invalid_argument(
            function,
            "sliding must be finite; for an entry that never expires give expires_at => 'infinity'",
        );
    }
    let micros = window.as_micros();
    if micros <= 0 {
        error::invalid_argument(function, format!("sliding must be positive, got {window}"));
    }
    if i128::from(now) + micros >= i128::from(TIMESTAMPTZ_END) {
        error::datetime_overflow(
            function,
            format!("sliding {window} puts the expiry out of the timestamptz range"),
        );
    }
    micros as i64
}

/// The server's clock (`clock_timestamp()`), so a long transaction never sees an entry that has
/// expired since it began.
pub fn now() -> TimestampTz {
    // SAFETY: reads the system clock; no state of the backend is touched.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// The expiry arithmetic, which needs no server.
#[cfg(test)]
mod arithmetic {
    use super::{infinite_interval, Policy, NEVER};
    use pgrx::datum::Interval;

    const SECOND: i64 = 1_000_000;
    const MINUTE: i64 = 60 * SECOND;

    #[test]
    fn sliding_is_capped_by_absolute_at_set_time() {
        let policy = Policy::Sliding { window: 5 * MINUTE, cap: Some(2 * MINUTE) };
        assert_eq!(policy.expires_at(0), 2 * MINUTE);
    }

    /// Set at 10:00 with ttl 30 min and sliding 5 min, hit at 10:01: expiry 10:06, not 10:30.
    #[test]
    fn hit_moves_expiry_to_now_plus_window_not_to_the_cap() {
        let policy = Policy::Sliding { window: 5 * MINUTE, cap: Some(30 * MINUTE) };
        let set_expiry = policy.expires_at(0);
        assert_eq!(set_expiry, 5 * MINUTE);
        assert_eq!(policy.slide(MINUTE, set_expiry, SECOND), Some(6 * MINUTE));
    }

    #[test]
    fn hit_never_moves_expiry_past_the_cap() {
        let policy = Policy::Sliding { window: 5 * MINUTE, cap: Some(30 * MINUTE) };
        assert_eq!(policy.slide(27 * MINUTE, 29 * MINUTE, 0), Some(30 * MINUTE));
        assert_eq!(policy.slide(29 * MINUTE, 30 * MINUTE, 0), None);
    }

    #[test]
    fn never_expiring_entries_never_slide() {
        let policy = Policy::Absolute(NEVER);
        assert_eq!(policy.expires_at(5 * MINUTE), NEVER);
        assert_eq!(policy.slide(5 * MINUTE, NEVER, 0), None);
        assert_eq!(policy.absolute_column(), Some(NEVER));
    }

    #[test]
    fn the_infinite_interval_is_postgresql_17s() {
        let infinite = infinite_interval();
        assert!(super::is_infinite(infinite));
        assert!(!super::is_infinite(Interval::new(0, 0, i64::MAX).unwrap()));
        assert!(super::is_minus_infinite(Interval::new(i32::MIN, i32::MIN, i64::MIN).unwrap()));
    }

    #[test]
    fn small_moves_are_not_written_back() {
        let policy = Policy::Sliding { window: 5 * MINUTE, cap: None };
        let current = policy.expires_at(0);
        assert_eq!(policy.slide(SECOND / 2, current, SECOND), None);
        assert_eq!(policy.slide(2 * SECOND, current, SECOND), Some(current + 2 * SECOND));
        assert_eq!(policy.slide(1, current, 0), Some(current + 1));
    }

    #[test]
    fn granularity_never_exceeds_a_tenth_of_the_window() {
        let policy = Policy::Sliding { window: SECOND, cap: None };
        let current = policy.expires_at(0);
        assert_eq!(policy.slide(SECOND / 5, current, 10 * SECOND), Some(current + SECOND / 5));
    }

    #[test]
    fn absolute_entries_never_slide() {
        assert_eq!(Policy::Absolute(MINUTE).slide(SECOND, MINUTE, 0), None);
    }
}

/// What needs PostgreSQL's interval and timestamp types, and its settings.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    const SECOND: i64 = 1_000_000;
    const MINUTE: i64 = 60 * SECOND;

    #[pg_test]
    fn columns_round_trip() {
        for policy in [
            Policy::Absolute(MINUTE),
            Policy::Sliding { window: 5 * MINUTE, cap: None },
            Policy::Sliding { window: 5 * MINUTE, cap: Some(30 * MINUTE) },
        ] {
            assert_eq!(Policy::from_columns(policy.sliding_column(), policy.absolute_column()), policy);
        }
    }

    #[pg_test]
    fn no_arguments_give_the_default_sliding_window() {
        Spi::run("SET pg_cache.default_sliding_expiration = '7min'").unwrap();
        assert_eq!(
            Policy::from_arguments("cache_set", 0, None, None, None, Defaults::default()),
            Policy::Sliding { window: 7 * MINUTE, cap: None }
        );
    }

    #[pg_test]
    fn months_in_a_sliding_window_count_as_30_days() {
        let policy = Policy::from_arguments(
            "cache_set",
            0,
            None,
            Some(Interval::from_months(1)),
            None,
            Defaults::default(),
        );
        assert_eq!(policy, Policy::Sliding { window: 30 * 24 * 60 * MINUTE, cap: None });
    }

    #[pg_test]
    #[should_panic(expected = "ttl and expires_at are mutually exclusive")]
    fn ttl_and_expires_at_together_are_rejected() {
        let at = TimestampWithTimeZone::try_from(MINUTE).unwrap();
        Policy::from_arguments(
            "cache_set",
            0,
            Some(Interval::from_minutes(1)),
            None,
            Some(at),
            Defaults::default(),
        );
    }
}
