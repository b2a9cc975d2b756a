//! The invalidation feed: with `pg_cache.notify` on, the changes of each committed transaction
//! are announced on the channel `pg_cache_invalidation`, so in-process (L1) caches can drop their
//! copies: by the database's relay (`invalidation_relay`), or by the transaction's own NOTIFY.
//! Either way a rolled-back transaction (or savepoint) sends nothing, and listeners hear of a
//! change only once it is committed.
//!
//! The payload is one JSON object: `"keys"` (entries set, added, taken,
//! incremented, re-expired or removed), `"tags"` (`cache_remove_by_tag`), `"prefixes"`
//! (`cache_remove_prefix`), or `{"all": true}` for `cache_clear` and for changes too many to
//! name within NOTIFY's payload limit. Eviction and sliding hits send nothing.

use crate::invalidation_relay;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;

const CHANNEL: &std::ffi::CStr = c"pg_cache_invalidation";

// commands/async.h, which pgrx's bindings leave out: what NOTIFY channel, 'payload' runs. Called
// through pg_guard_ffi_boundary, as pgrx calls the functions it binds.
unsafe extern "C-unwind" {
    fn Async_Notify(channel: *const std::ffi::c_char, payload: *const std::ffi::c_char);
}

/// NOTIFY refuses payloads of 8000 bytes or more.
const MAX_PAYLOAD_BYTES: usize = 7999;

/// What changed.
pub enum Change<'a> {
    Key(&'a str),
    Tags(&'a [String]),
    Prefix(&'a str),
    All,
}

/// The members of the payload, in the order it lists them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
enum Member {
    Keys,
    Tags,
    Prefixes,
}

impl Member {
    const ALL: [Member; 3] = [Member::Keys, Member::Tags, Member::Prefixes];

    fn from_u8(code: u8) -> Member {
        Member::ALL.get(usize::from(code)).copied().unwrap_or(Member::Keys)
    }

    fn name(self) -> &'static str {
        match self {
            Member::Keys => "keys",
            Member::Tags => "tags",
            Member::Prefixes => "prefixes",
        }
    }
}

/// The changes of one (sub)transaction nesting level, or of what a relay sends, each named once,
/// as JSON strings.
pub struct Changes {
    level: i32,
    named: Vec<(Member, String)>,
    seen: HashSet<(Member, String)>,
    /// Bytes the names take in the payload, with their quotes and commas.
    bytes: usize,
    all: bool,
}

impl Changes {
    pub fn new(level: i32) -> Changes {
        Changes { level, named: Vec::new(), seen: HashSet::new(), bytes: 0, all: false }
    }

    pub fn all(&self) -> bool {
        self.all
    }

    /// The names, each with its member's code (for [`Changes::add_named`]).
    pub fn names(&self) -> impl Iterator<Item = (u8, &str)> {
        self.named.iter().map(|(member, name)| (*member as u8, name.as_str()))
    }

    pub fn add_named(&mut self, member: u8, escaped: String) {
        self.add(Member::from_u8(member), escaped);
    }

    fn is_empty(&self) -> bool {
        !self.all && self.named.is_empty()
    }

    fn add(&mut self, member: Member, escaped: String) {
        if self.all || self.seen.contains(&(member, escaped.clone())) {
            return;
        }
        self.bytes += escaped.len() + 1;
        if self.bytes > MAX_PAYLOAD_BYTES {
            self.set_all();
            return;
        }
        self.seen.insert((member, escaped.clone()));
        self.named.push((member, escaped));
    }

    pub fn set_all(&mut self) {
        self.all = true;
        self.named = Vec::new();
        self.seen = HashSet::new();
    }

    fn absorb(&mut self, other: Changes) {
        if other.all {
            self.set_all();
        }
        for (member, escaped) in other.named {
            self.add(member, escaped);
        }
    }

    /// The notification's payload; `{"all": true}` when the names would not fit.
    pub fn payload(&self) -> String {
        let all = r#"{"all": true}"#.to_owned();
        if self.all {
            return all;
        }
        let members: Vec<String> = Member::ALL
            .iter()
            .filter_map(|member| {
                let names: Vec<&str> =
                    self.named.iter().filter(|(m, _)| m == member).map(|(_, name)| name.as_str()).collect();
                (!names.is_empty()).then(|| format!(r#""{}": [{}]"#, member.name(), names.join(", ")))
            })
            .collect();
        let payload = format!("{{{}}}", members.join(", "));
        if payload.len() > MAX_PAYLOAD_BYTES {
            all
        } else {
            payload
        }
    }
}

thread_local! {
    /// Changes not yet committed, innermost nesting level last.
    static PENDING: RefCell<Vec<Changes>> = const { RefCell::new(Vec::new()) };
    /// Between pre-commit and commit: the changes a relay will send, and its slot.
    static COMMITTING: RefCell<Option<(usize, Changes)>> = const { RefCell::new(None) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Records a change of this transaction, to be announced when it commits (`pg_cache.notify`).
pub fn note(change: Change) {
    if !crate::gucs::NOTIFY.get() {
        return;
    }
    register_callbacks();
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    PENDING.with_borrow_mut(|pending| {
        if pending.last().is_none_or(|changes| changes.level != level) {
            pending.push(Changes::new(level));
        }
        let changes = pending.last_mut().expect("pushed just above");
        match change {
            Change::Key(key) => changes.add(Member::Keys, json_string(key)),
            Change::Tags(tags) => tags.iter().for_each(|tag| changes.add(Member::Tags, json_string(tag))),
            Change::Prefix(prefix) => changes.add(Member::Prefixes, json_string(prefix)),
            Change::All => changes.set_all(),
        }
    });
}

fn register_callbacks() {
    if !CALLBACKS_REGISTERED.get() {
        unsafe {
            pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(at_subtransaction_end), std::ptr::null_mut());
        }
        CALLBACKS_REGISTERED.set(true);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        // Before the commit: the database's relay will send the changes once the transaction
        // has committed, or the transaction's own notification is queued with it (and delivered
        // once it has committed). PREPARE refuses a transaction that notifies: it says so.
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            let mut merged = Changes::new(1);
            PENDING.take().into_iter().for_each(|changes| merged.absorb(changes));
            if merged.is_empty() {
                return;
            }
            let relay = if event == XACT_EVENT_PRE_COMMIT { invalidation_relay::reserve() } else { None };
            match relay {
                Some(relay) => COMMITTING.set(Some((relay, merged))),
                None => notify(&merged.payload()),
            }
        }
        // After the commit: nothing here may raise an error.
        XACT_EVENT_COMMIT => {
            if let Some((relay, changes)) = COMMITTING.take() {
                invalidation_relay::hand_over(relay, &changes);
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            drop(PENDING.take());
            if let Some((relay, _)) = COMMITTING.take() {
                invalidation_relay::release(relay);
            }
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _subxact: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    let level = pg_sys::GetCurrentTransactionNestLevel();
    PENDING.with_borrow_mut(|pending| match event {
        // ROLLBACK TO: what the savepoint changed is undone, and not announced.
        SUBXACT_EVENT_ABORT_SUB => pending.retain(|changes| changes.level < level),
        // RELEASE: its changes become its parent's.
        SUBXACT_EVENT_COMMIT_SUB => {
            let Some(position) = pending.iter().position(|changes| changes.level >= level) else {
                return;
            };
            let released: Vec<Changes> = pending.drain(position..).collect();
            if pending.last().is_none_or(|changes| changes.level != level - 1) {
                pending.push(Changes::new(level - 1));
            }
            let parent = pending.last_mut().expect("pushed just above");
            released.into_iter().for_each(|changes| parent.absorb(changes));
        }
        _ => {}
    });
}

/// Queues `payload` on the channel, to be delivered when the current transaction commits.
pub fn notify(payload: &str) {
    let payload = std::ffi::CString::new(payload).expect("JSON has no NUL");
    let payload = payload.as_ptr();
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| Async_Notify(CHANNEL.as_ptr(), payload)) };
}

/// `text` as a JSON string, quotes included.
fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            control if control < ' ' => quoted.push_str(&format!("\\u{:04x}", u32::from(control))),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::{json_string, Changes, Member, MAX_PAYLOAD_BYTES};

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(json_string("plain"), r#""plain""#);
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json_string("line\nbreak\u{1}"), r#""line\nbreak\u0001""#);
        assert_eq!(json_string("ünï"), "\"ünï\"");
    }

    #[test]
    fn payload_names_each_change_once_by_member() {
        let mut changes = Changes::new(1);
        changes.add(Member::Prefixes, json_string("user:"));
        changes.add(Member::Keys, json_string("a"));
        changes.add(Member::Keys, json_string("b"));
        changes.add(Member::Keys, json_string("a"));
        changes.add(Member::Tags, json_string("t"));
        assert_eq!(changes.payload(), r#"{"keys": ["a", "b"], "tags": ["t"], "prefixes": ["user:"]}"#);
    }

    #[test]
    fn too_many_changes_become_all() {
        let mut changes = Changes::new(1);
        for i in 0..2000 {
            changes.add(Member::Keys, json_string(&format!("key-{i}")));
        }
        assert_eq!(changes.payload(), r#"{"all": true}"#);
        let mut fits = Changes::new(1);
        let long = "k".repeat(MAX_PAYLOAD_BYTES - 20);
        fits.add(Member::Keys, json_string(&long));
        assert!(fits.payload().len() <= MAX_PAYLOAD_BYTES);
        assert!(fits.payload().contains(&long));
    }

    #[test]
    fn absorbing_all_makes_all() {
        let mut parent = Changes::new(1);
        parent.add(Member::Keys, json_string("a"));
        let mut child = Changes::new(2);
        child.set_all();
        parent.absorb(child);
        assert_eq!(parent.payload(), r#"{"all": true}"#);
    }
}
