//! The payload of a notification on `pg_cache_invalidation`: one JSON object naming the keys,
//! tags and prefixes changed, `{"all": true}` for a clear or for more than fits, built with
//! serde_json within NOTIFY's payload limit.

use crate::xact::Gathered;
use pgrx::pg_sys;
use serde::Serialize;
use std::collections::HashSet;

const CHANNEL: &std::ffi::CStr = c"pg_cache_invalidation";

// commands/async.h, which pgrx's bindings leave out: what NOTIFY channel, 'payload' runs. Called
// through pg_guard_ffi_boundary, as pgrx calls the functions it binds.
unsafe extern "C-unwind" {
    fn Async_Notify(channel: *const std::ffi::c_char, payload: *const std::ffi::c_char);
}

/// NOTIFY refuses payloads of 8000 bytes or more.
pub const MAX_PAYLOAD_BYTES: usize = 7999;

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
pub enum Member {
    Keys,
    Tags,
    Prefixes,
}

impl Member {
    const ALL: [Member; 3] = [Member::Keys, Member::Tags, Member::Prefixes];

    pub fn from_u8(code: u8) -> Member {
        Member::ALL.get(usize::from(code)).copied().unwrap_or(Member::Keys)
    }
}

/// The payload as serde writes it: empty members left out, and the cache's name only for a cache
/// other than `default` (whose payloads stay as they were before there were named caches).
#[derive(Serialize)]
struct Payload<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keys: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    prefixes: Vec<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    all: bool,
}

/// JSON with a space after each `:` and `,` (`{"keys": ["a", "b"]}`), as the feed has always
/// been written, so listeners that compare payloads as text see no change.
struct Spaced;

/// Writes the separator before an item that is not the first.
fn separate<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separate(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separate(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

fn to_json(payload: &Payload) -> String {
    let mut out = Vec::new();
    payload
        .serialize(&mut serde_json::Serializer::with_formatter(&mut out, Spaced))
        .expect("serializing to a Vec cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Bytes `name` takes in the payload as a JSON string, with its quotes and a comma.
fn payload_bytes(name: &str) -> usize {
    serde_json::to_string(name).map_or(usize::MAX, |quoted| quoted.len() + 1)
}

/// The changes of one (sub)transaction nesting level, or of what a relay sends, each named once.
#[derive(Default)]
pub struct Changes {
    named: Vec<(Member, String)>,
    seen: HashSet<(Member, String)>,
    /// Bytes the names take in the payload, with their quotes and separators.
    bytes: usize,
    all: bool,
}

impl Changes {
    pub fn all(&self) -> bool {
        self.all
    }

    /// The names, each with its member's code (for [`Changes::add_named`]).
    pub fn names(&self) -> impl Iterator<Item = (u8, &str)> {
        self.named.iter().map(|(member, name)| (*member as u8, name.as_str()))
    }

    pub fn add_named(&mut self, member: u8, name: String) {
        self.add(Member::from_u8(member), name);
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.named.is_empty()
    }

    pub fn add(&mut self, member: Member, name: String) {
        if self.all || self.seen.contains(&(member, name.clone())) {
            return;
        }
        self.bytes = self.bytes.saturating_add(payload_bytes(&name));
        if self.bytes > MAX_PAYLOAD_BYTES {
            self.set_all();
            return;
        }
        self.seen.insert((member, name.clone()));
        self.named.push((member, name));
    }

    pub fn note(&mut self, change: Change) {
        match change {
            Change::Key(key) => self.add(Member::Keys, key.to_owned()),
            Change::Tags(tags) => tags.iter().for_each(|tag| self.add(Member::Tags, tag.clone())),
            Change::Prefix(prefix) => self.add(Member::Prefixes, prefix.to_owned()),
            Change::All => self.set_all(),
        }
    }

    pub fn set_all(&mut self) {
        self.all = true;
        self.named = Vec::new();
        self.seen = HashSet::new();
    }

    /// The notification's payload for the cache `default`; `{"all": true}` when the names would
    /// not fit.
    pub fn payload(&self) -> String {
        self.payload_of(None)
    }

    /// The notification's payload, naming `cache` (`None` for `default`).
    pub fn payload_of(&self, cache: Option<&str>) -> String {
        let all = || {
            to_json(&Payload { cache, keys: Vec::new(), tags: Vec::new(), prefixes: Vec::new(), all: true })
        };
        if self.all {
            return all();
        }
        let of = |member: Member| -> Vec<&str> {
            self.named.iter().filter(|(m, _)| *m == member).map(|(_, name)| name.as_str()).collect()
        };
        let payload = to_json(&Payload {
            cache,
            keys: of(Member::Keys),
            tags: of(Member::Tags),
            prefixes: of(Member::Prefixes),
            all: false,
        });
        if payload.len() > MAX_PAYLOAD_BYTES {
            all()
        } else {
            payload
        }
    }
}

impl Gathered for Changes {
    fn absorb(&mut self, inner: Changes) {
        if inner.all {
            self.set_all();
        }
        for (member, name) in inner.named {
            self.add(member, name);
        }
    }
}

/// Queues `payload` on the channel, to be delivered when the current transaction commits.
pub fn notify(payload: &str) {
    let payload = std::ffi::CString::new(payload).expect("JSON has no NUL");
    let payload = payload.as_ptr();
    // SAFETY: both strings are NUL-terminated and outlive the call (NOTIFY copies the payload);
    // pg_guard_ffi_boundary turns an ERROR into a Rust panic as pgrx's own bindings do.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| Async_Notify(CHANNEL.as_ptr(), payload)) };
}

#[cfg(test)]
mod tests {
    use super::{Changes, Member, MAX_PAYLOAD_BYTES};
    use crate::xact::Gathered;

    fn name(text: &str) -> String {
        text.to_owned()
    }

    #[test]
    fn names_are_escaped_as_json_strings() {
        let mut changes = Changes::default();
        changes.add(Member::Keys, name("a\"b\\c"));
        changes.add(Member::Keys, name("line\nbreak\u{1}"));
        changes.add(Member::Keys, name("ünï"));
        assert_eq!(changes.payload(), r#"{"keys": ["a\"b\\c", "line\nbreak\u0001", "ünï"]}"#);
    }

    #[test]
    fn payload_names_each_change_once_by_member() {
        let mut changes = Changes::default();
        changes.add(Member::Prefixes, name("user:"));
        changes.add(Member::Keys, name("a"));
        changes.add(Member::Keys, name("b"));
        changes.add(Member::Keys, name("a"));
        changes.add(Member::Tags, name("t"));
        assert_eq!(changes.payload(), r#"{"keys": ["a", "b"], "tags": ["t"], "prefixes": ["user:"]}"#);
    }

    #[test]
    fn too_many_changes_become_all() {
        let mut changes = Changes::default();
        for i in 0..2000 {
            changes.add(Member::Keys, format!("key-{i}"));
        }
        assert_eq!(changes.payload(), r#"{"all": true}"#);
        let mut fits = Changes::default();
        let long = "k".repeat(MAX_PAYLOAD_BYTES - 20);
        fits.add(Member::Keys, long.clone());
        assert!(fits.payload().len() <= MAX_PAYLOAD_BYTES);
        assert!(fits.payload().contains(&long));
        // Escaping counts: 4,000 quotes take 8,000 bytes as JSON.
        let mut escaped = Changes::default();
        escaped.add(Member::Keys, "\"".repeat(4000));
        assert_eq!(escaped.payload(), r#"{"all": true}"#);
    }

    #[test]
    fn a_named_cache_is_named_first() {
        let mut changes = Changes::default();
        changes.add(Member::Keys, name("a"));
        assert_eq!(changes.payload_of(Some("sessions")), r#"{"cache": "sessions", "keys": ["a"]}"#);
        changes.set_all();
        assert_eq!(changes.payload_of(Some("sessions")), r#"{"cache": "sessions", "all": true}"#);
        let mut long = Changes::default();
        long.add(Member::Keys, "k".repeat(MAX_PAYLOAD_BYTES - 20));
        assert_eq!(long.payload_of(Some("sessions")), r#"{"cache": "sessions", "all": true}"#);
    }

    #[test]
    fn absorbing_all_makes_all() {
        let mut parent = Changes::default();
        parent.add(Member::Keys, name("a"));
        let mut child = Changes::default();
        child.set_all();
        parent.absorb(child);
        assert_eq!(parent.payload(), r#"{"all": true}"#);
    }
}
