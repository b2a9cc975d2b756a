//! The invalidation feed: with `pg_cache.notify` on, the changes of each committed transaction
//! are announced on the channel `pg_cache_invalidation`, so in-process (L1) caches can drop their
//! copies: by the database's relay (`feed::relay`), or by the transaction's own NOTIFY.
//! Either way a rolled-back transaction (or savepoint) sends nothing, and listeners hear of a
//! change only once it is committed.
//!
//! The payload is one JSON object: `"keys"` (entries set, added, taken,
//! incremented, re-expired or removed), `"tags"` (`cache_remove_by_tag`), `"prefixes"`
//! (`cache_remove_prefix`), or `{"all": true}` for `cache_clear` and for changes too many to
//! name within NOTIFY's payload limit. Eviction and sliding hits send nothing.

use super::payload::{notify, Change, Changes};
use super::relay;
use crate::xact::{Gathered, PerLevel};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

thread_local! {
    /// Changes not yet committed, innermost nesting level last.
    static PENDING: RefCell<PerLevel<ByCache>> = const { RefCell::new(PerLevel::new()) };
    /// Between pre-commit and commit: the changes a relay will send, and its slot.
    static COMMITTING: RefCell<Option<(usize, Changes)>> = const { RefCell::new(None) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// The changes of one nesting level: of the cache `default`, and of each other cache by name.
#[derive(Default)]
struct ByCache {
    default: Changes,
    named: Vec<(String, Changes)>,
}

impl ByCache {
    fn of(&mut self, cache: &str) -> &mut Changes {
        if cache == crate::access::caches::DEFAULT {
            return &mut self.default;
        }
        let at = match self.named.iter().position(|(name, _)| name == cache) {
            Some(at) => at,
            None => {
                self.named.push((cache.to_owned(), Changes::default()));
                self.named.len() - 1
            }
        };
        &mut self.named[at].1
    }
}

impl Gathered for ByCache {
    fn absorb(&mut self, inner: ByCache) {
        self.default.absorb(inner.default);
        for (cache, changes) in inner.named {
            self.of(&cache).absorb(changes);
        }
    }
}

/// Records a change of this transaction in the running call's cache, to be announced when it
/// commits (`pg_cache.notify`).
pub fn note(change: Change) {
    if !crate::gucs::NOTIFY.get() {
        return;
    }
    register_callbacks();
    let cache = crate::access::caches::current();
    PENDING.with_borrow_mut(|pending| pending.current().of(&cache.name).note(change));
}

fn register_callbacks() {
    crate::xact::register_callbacks_once(
        &CALLBACKS_REGISTERED,
        Some(at_transaction_end),
        Some(at_subtransaction_end),
    );
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        // Before the commit: the database's relay will send the changes once the transaction
        // has committed, or the transaction's own notification is queued with it (and delivered
        // once it has committed). PREPARE refuses a transaction that notifies: it says so.
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            let ByCache { default: merged, named } = PENDING.with_borrow_mut(PerLevel::take_all);
            // Other caches' changes go in the transaction's own notifications: the relay sends
            // the cache `default`'s alone.
            for (cache, changes) in named.iter().filter(|(_, changes)| !changes.is_empty()) {
                notify(&changes.payload_of(Some(cache)));
            }
            if merged.is_empty() {
                return;
            }
            let relay = if event == XACT_EVENT_PRE_COMMIT { relay::reserve() } else { None };
            match relay {
                Some(relay) => COMMITTING.set(Some((relay, merged))),
                None => notify(&merged.payload()),
            }
        }
        // After the commit: nothing here may raise an error.
        XACT_EVENT_COMMIT => {
            if let Some((relay, changes)) = COMMITTING.take() {
                relay::hand_over(relay, &changes);
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            drop(PENDING.with_borrow_mut(PerLevel::take_all));
            if let Some((relay, _)) = COMMITTING.take() {
                relay::release(relay);
            }
        }
        _ => {}
    }
}

/// ROLLBACK TO: what the savepoint changed is undone, and not announced; RELEASE: its changes
/// become its parent's.
#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _subxact: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    PENDING.with_borrow_mut(|pending| pending.subtransaction_ended(event));
}
