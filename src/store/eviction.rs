//! What the eviction worker runs (and `cache_evict_expired`): batches of expired entries
//! deleted, the live bytes measured, and the size cap's cutoff from a sample of the table.

use super::statements::{ensure_writable, timestamptz, with_statements};
use crate::access;
use crate::expiry::now;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::{ItemPointerData, TimestampTz};
use pgrx::prelude::*;

/// Deletes up to `max_rows` entries expired by now, skipping rows other sessions hold locked.
pub fn evict_expired(max_rows: i64) -> i64 {
    evict_until(now(), max_rows, ItemPointerData::default()).rows
}

/// What one batch of [`evict_until`] deleted.
pub struct Evicted {
    pub rows: i64,
    /// The key + value bytes of the live rows deleted (expired ones kept for
    /// `pg_cache.stale_retention` were not counted as live).
    pub bytes: i64,
    /// The last ctid deleted (`after` when none).
    pub last: ItemPointerData,
}

/// Deletes up to `max_rows` entries that expire by `cutoff` and are stored after `after` (a
/// ctid; the default one is before every row), skipping rows other sessions hold locked.
pub fn evict_until(cutoff: TimestampTz, max_rows: i64, after: ItemPointerData) -> Evicted {
    ensure_writable();
    with_statements(|client, statements| {
        let args = [timestamptz(cutoff).into(), max_rows.into(), after.into()];
        let rows = client.update(&statements.evict, None, &args).expect("evict");
        let mut evicted = Evicted { rows: rows.len() as i64, bytes: 0, last: after };
        let mut last = None;
        let now = now();
        for row in rows {
            let expires_at: Option<TimestampTz> =
                row.get::<TimestampWithTimeZone>(3).ok().flatten().map(Into::into);
            if expires_at.is_some_and(|at| at > now) {
                evicted.bytes += row.get::<i64>(2).ok().flatten().unwrap_or(0);
            }
            if let Some(ctid) = row.get::<ItemPointerData>(1).ok().flatten() {
                let at = pgrx::itemptr::item_pointer_get_both(ctid);
                if last.is_none_or(|(seen, _)| at > seen) {
                    last = Some((at, ctid));
                }
            }
        }
        if let Some((_, ctid)) = last {
            evicted.last = ctid;
        }
        evicted
    })
}

/// When the next entry expires (None: no entry left; in the past for one that expired since the
/// sweep deleted), and the key + value bytes of the live entries.
pub fn measure() -> (Option<TimestampTz>, i64) {
    with_statements(|client, statements| {
        let rows = client.update(&statements.measure, None, &[timestamptz(now()).into()]).expect("measure");
        let row = rows.first();
        let next = row.get::<TimestampWithTimeZone>(1).expect("next expiry").map(Into::into);
        (next, row.get::<i64>(2).expect("live bytes").unwrap_or(0))
    })
}

/// Rows the size cap's sample of the table aims at: enough to place the cutoff within a few
/// percent of the bytes to free.
const SIZE_SAMPLE_ROWS: f64 = 3000.0;

/// The expiry up to which removing the live entries frees about `to_free` of the `live` bytes:
/// the entries that expire soonest, as a sample of the table's pages shows them. Approximate,
/// like Redis's volatile-ttl; it needs no index on the expiry, so sliding updates stay HOT.
pub fn size_cutoff(to_free: i64, live: i64) -> TimestampTz {
    let now = now();
    let table = access::table();
    let rows = Spi::get_one_with_args::<f32>(
        "SELECT reltuples FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
        &[table.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(1.0)
    .max(1.0);
    let percent = (SIZE_SAMPLE_ROWS / f64::from(rows) * 100.0).clamp(0.5, 100.0) as f32;
    with_statements(|client, statements| {
        let sample: Vec<(TimestampTz, i64)> = client
            .update(&statements.sample, None, &[timestamptz(now).into(), percent.into()])
            .expect("sample")
            .filter_map(|row| {
                let at = row.get::<TimestampWithTimeZone>(1).ok().flatten()?;
                Some((at.into(), row.get::<i64>(2).ok().flatten().unwrap_or(0)))
            })
            .collect();
        let sampled: i64 = sample.iter().map(|(_, bytes)| bytes).sum();
        if sampled == 0 {
            return now;
        }
        // Each sampled byte stands for live / sampled bytes of the table.
        let mut freed = 0.0;
        for (at, bytes) in &sample {
            freed += *bytes as f64 * live as f64 / sampled as f64;
            if freed >= to_free as f64 {
                return *at;
            }
        }
        sample.last().map_or(now, |(at, _)| *at)
    })
}
