//! The relay behind the invalidation feed. A transaction that runs NOTIFY takes a cluster-wide
//! lock held through its commit and writes to the notification queue: measured, that halved
//! `cache_set` throughput. With pg_cache preloaded, a committed transaction instead hands its
//! changes, through shared memory, to one relay worker per database, which sends what committed
//! since its last notification as one NOTIFY. Every change is announced once, after its
//! transaction committed; one notification may name the changes of several transactions.
//!
//! Until a database's relay runs (the first notifying transaction asks for one; it leaves after a
//! minute without changes), and when every relay slot is taken, transactions send their own
//! NOTIFY as before. `pg_cache.notify_relay = off` makes them always do so.

use super::payload::{notify, Changes};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::time::{Duration, Instant};

/// Databases whose relays run at once; others' transactions notify for themselves.
const RELAYS: usize = 32;
/// Bytes of names one relay holds between two notifications: what fits in one payload (NOTIFY
/// refuses 8000 bytes) with the JSON around them. Past it, the next notification says all.
const NAMES_BYTES: usize = 7900;
/// A relay that has not attached within this time is taken to have failed to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// A relay leaves after this long without changes to send.
const IDLE_LIFE: Duration = Duration::from_secs(60);
/// How often a relay looks for a session that wants its database to itself (DROP DATABASE).
const CHECK_PERIOD: Duration = Duration::from_millis(250);
/// After a notification, changes are gathered this long before the next: under a steady stream
/// of writes one notification then names many transactions' changes, so that listeners (and the
/// notification queue) see hundreds of notifications a second, not one per transaction. The
/// first change after a quiet spell goes out at once.
const GATHER: Duration = Duration::from_millis(2);

pub struct Relay {
    /// 0: free.
    database: u32,
    /// The running relay's latch; null when none runs.
    latch: usize,
    /// When a relay was asked for and has not attached yet (µs since the epoch; 0: not asked).
    starting_since: i64,
    /// Transactions past pre-commit that will hand changes to this relay.
    committing: u32,
    /// Something was changed that the names below do not hold: the next notification says all.
    all: bool,
    used: usize,
    /// Records of (member: u8, length: u16 little-endian, the name as a JSON string).
    names: [u8; NAMES_BYTES],
}

impl Relay {
    const fn free() -> Relay {
        Relay {
            database: 0,
            latch: 0,
            starting_since: 0,
            committing: 0,
            all: false,
            used: 0,
            names: [0; NAMES_BYTES],
        }
    }

    fn running(&self) -> bool {
        self.latch != 0
    }

    fn pending(&self) -> bool {
        self.all || self.used > 0 || self.committing > 0
    }

    /// Whether a relay was asked for less than [`START_TIMEOUT`] ago.
    fn asked_for(&self, now: i64) -> bool {
        self.starting_since != 0 && now - self.starting_since < START_TIMEOUT.as_micros() as i64
    }

    /// Held for a database that no relay serves, none is on its way, and no transaction is
    /// handing changes to. (Names still here are of a database whose relay could not start, or
    /// that was dropped: the slot goes to another database only when no other is free.)
    fn unserved(&self, now: i64) -> bool {
        !self.running() && self.committing == 0 && !self.asked_for(now)
    }

    fn busy(&self, now: i64) -> bool {
        self.running() || self.asked_for(now)
    }

    fn append(&mut self, changes: &Changes) {
        if changes.all() {
            self.all = true;
        }
        for (member, name) in changes.names() {
            let record = 3 + name.len();
            if self.all || self.used + record > NAMES_BYTES {
                self.all = true;
                self.used = 0;
                return;
            }
            self.names[self.used] = member;
            self.names[self.used + 1..self.used + 3].copy_from_slice(&(name.len() as u16).to_le_bytes());
            self.names[self.used + 3..self.used + record].copy_from_slice(name.as_bytes());
            self.used += record;
        }
    }

    /// What was handed over since the last call, emptied.
    fn take(&mut self) -> Option<Changes> {
        if !self.all && self.used == 0 {
            return None;
        }
        let mut changes = Changes::default();
        if self.all {
            changes.set_all();
        }
        let mut at = 0;
        while at < self.used {
            let length = u16::from_le_bytes([self.names[at + 1], self.names[at + 2]]) as usize;
            let name = String::from_utf8_lossy(&self.names[at + 3..at + 3 + length]).into_owned();
            changes.add_named(self.names[at], name);
            at += 3 + length;
        }
        self.all = false;
        self.used = 0;
        Some(changes)
    }
}

pub struct Relays([Relay; RELAYS]);

impl Default for Relays {
    fn default() -> Self {
        Relays([const { Relay::free() }; RELAYS])
    }
}

// SAFETY: Relays holds only plain data (integers and byte arrays), valid in shared memory when zeroed or
// copied, and is reached only through its LWLock.
unsafe impl PGRXSharedMemory for Relays {}

// SAFETY: the lock is named once and initialised by pg_shmem_init! while the library is preloaded.
static RELAY_TABLE: PgLwLock<Relays> = unsafe { PgLwLock::new(c"pg_cache_relays") };

/// Claims the shared memory; while the library is preloaded.
pub fn init() {
    pgrx::pg_shmem_init!(RELAY_TABLE);
}

fn now_micros() -> i64 {
    // SAFETY: reads the system clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

fn my_database() -> u32 {
    // SAFETY: reads a backend global set at connection.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// At pre-commit of a transaction with changes to announce: the relay that will send them (the
/// transaction is counted as committing there until [`hand_over`] or [`release`]); `None` when
/// none runs for this database yet (one is asked for) or none can: the transaction notifies.
pub fn reserve() -> Option<usize> {
    if !crate::shmem::slots::preloaded() || !crate::gucs::NOTIFY_RELAY.get() {
        return None;
    }
    let database = my_database();
    let mut relays = RELAY_TABLE.exclusive();
    let now = now_micros();
    let index = match relays.0.iter().position(|relay| relay.database == database) {
        Some(index) => index,
        None => {
            let empty = |relay: &Relay| relay.database == 0 || (relay.unserved(now) && !relay.pending());
            let index = (relays.0.iter().position(empty))
                .or_else(|| relays.0.iter().position(|relay| relay.unserved(now)))?;
            relays.0[index] = Relay { database, ..Relay::free() };
            index
        }
    };
    if relays.0[index].running() {
        relays.0[index].committing += 1;
        return Some(index);
    }
    if ask_for_relay(&mut relays, index, now) {
        drop(relays);
        start(database);
    }
    None
}

/// Whether to start a relay for the slot at `index` (then marked as asked for): none was asked
/// for lately, and fewer than `pg_cache.max_relays` run or start (each takes a background worker
/// slot).
fn ask_for_relay(relays: &mut Relays, index: usize, now: i64) -> bool {
    let busy = relays.0.iter().filter(|relay| relay.busy(now)).count();
    let relay = &mut relays.0[index];
    let ask = !relay.running() && !relay.asked_for(now) && busy < crate::gucs::MAX_RELAYS.get() as usize;
    if ask {
        relay.starting_since = now;
    }
    ask
}

/// At commit: the changes of a transaction [`reserve`] counted, for the relay to send.
pub fn hand_over(index: usize, changes: &Changes) {
    let mut relays = RELAY_TABLE.exclusive();
    let relay = &mut relays.0[index];
    relay.append(changes);
    relay.committing = relay.committing.saturating_sub(1);
    let latch = relay.latch;
    let database = relay.database;
    // The relay left between our pre-commit and commit: another one sends these.
    let ask = latch == 0 && ask_for_relay(&mut relays, index, now_micros());
    drop(relays);
    if latch != 0 {
        // SAFETY: `latch` is the running relay's own latch (its process's MyLatch, in shared memory), read
        // under the lock that the relay clears it under before it exits; setting a latch is safe from any
        // process.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    } else if ask {
        start(database);
    }
}

/// When a transaction [`reserve`] counted aborts instead.
pub fn release(index: usize) {
    let mut relays = RELAY_TABLE.exclusive();
    relays.0[index].committing = relays.0[index].committing.saturating_sub(1);
}

/// Asks the postmaster for a relay of `database`. Never raises an error (it may run after a
/// commit); a relay that cannot start is asked for again after [`START_TIMEOUT`].
fn start(database: u32) {
    let builder =
        BackgroundWorkerBuilder::new(&format!("pg_cache invalidation relay for database {database}"))
            .set_type("pg_cache invalidation relay")
            .set_library("pg_cache")
            .set_function("pg_cache_relay_main")
            .set_argument(Some(pg_sys::Datum::from(database)))
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None);
    let mut worker: pg_sys::BackgroundWorker = (&builder).into();
    // SAFETY: registers a worker from a fully built BackgroundWorker; PostgreSQL copies it.
    unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut worker, std::ptr::null_mut()) };
}

/// The relay's slot, taken over by this process; `None` when another relay has it.
fn attach(database: u32) -> Option<usize> {
    let mut relays = RELAY_TABLE.exclusive();
    let index = relays.0.iter().position(|relay| relay.database == database)?;
    let relay = &mut relays.0[index];
    if relay.running() {
        return None;
    }
    // SAFETY: reads the process's own latch pointer (shared memory for a background worker).
    relay.latch = unsafe { pg_sys::MyLatch } as usize;
    relay.starting_since = 0;
    Some(index)
}

/// Leaves the slot, if this process still holds it: free again unless changes are still on
/// their way (then the next transaction's hand-over asks for a new relay). False when
/// `only_if_idle` and changes are on their way.
fn detach(index: usize, only_if_idle: bool) -> bool {
    let mut relays = RELAY_TABLE.exclusive();
    let relay = &mut relays.0[index];
    // SAFETY: as above.
    if relay.latch != unsafe { pg_sys::MyLatch } as usize {
        // Not ours (any more): nothing to leave.
        return true;
    }
    if only_if_idle && relay.pending() {
        return false;
    }
    relay.latch = 0;
    if !relay.pending() {
        *relay = Relay::free();
        return true;
    }
    // Changes are left (the relay stops on an error): another relay sends them.
    let database = relay.database;
    if ask_for_relay(&mut relays, index, now_micros()) {
        drop(relays);
        start(database);
    }
    true
}

fn take(index: usize) -> Option<Changes> {
    RELAY_TABLE.exclusive().0[index].take()
}

/// Leaves the slot at once, with what it holds: transactions still committing ask for a new
/// relay when they hand over.
fn leave(index: usize) -> Option<Changes> {
    let mut relays = RELAY_TABLE.exclusive();
    let relay = &mut relays.0[index];
    // SAFETY: as above.
    if relay.latch != unsafe { pg_sys::MyLatch } as usize {
        return None;
    }
    let changes = relay.take();
    relay.latch = 0;
    if !relay.pending() {
        *relay = Relay::free();
    }
    changes
}

/// Sends `changes` as one notification, in a transaction of its own. When NOTIFY fails (its
/// queue is full while a listener lags), the next try says all: what failed is not lost.
fn send(index: usize, changes: &Changes) -> bool {
    let payload = changes.payload();
    let sent = crate::bgw::in_transaction(move || notify(&payload));
    if let Err(message) = &sent {
        pgrx::warning!("pg_cache: the invalidation relay could not notify: {message}");
        let mut relays = RELAY_TABLE.exclusive();
        // SAFETY: as above.
        if relays.0[index].latch == unsafe { pg_sys::MyLatch } as usize {
            relays.0[index].all = true;
        }
    }
    sent.is_ok()
}

/// On any exit of the relay process (an error included), its slot is left, so that the
/// database's next transaction asks for a new relay instead of waking one that is gone.
#[pg_guard]
unsafe extern "C-unwind" fn detach_at_exit(_code: i32, index: pg_sys::Datum) {
    detach(index.value(), false);
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_cache_relay_main(arg: pg_sys::Datum) {
    let database = arg.value() as u32;
    // SIGINT (pg_cancel_backend) only wakes it: with the default handler a cancel would end the
    // process from its idle wait, with changes in hand, and a relay has no statement to cancel.
    let signals = SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM | SignalWakeFlags::SIGINT;
    BackgroundWorker::attach_signal_handlers(signals);
    crate::bgw::connect(Oid::from(database));
    let name = std::ffi::CString::new(BackgroundWorker::get_name()).unwrap_or_default();
    // SAFETY: a NUL-terminated string that outlives the call; PostgreSQL copies it.
    unsafe { pg_sys::pgstat_report_appname(name.as_ptr()) };
    let Some(index) = attach(database) else {
        return;
    };
    // Its NOTIFY waits for the lock other notifying transactions hold: no timeout set for the
    // database or a role may cut it short.
    for setting in [c"lock_timeout", c"statement_timeout", c"idle_in_transaction_session_timeout"] {
        // SAFETY: sets settings with NUL-terminated names and values that outlive the call.
        unsafe {
            pg_sys::SetConfigOption(
                setting.as_ptr(),
                c"0".as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            )
        };
    }
    // SAFETY: `detach_at_exit` is a plain function; the datum is the relay's index.
    unsafe { pg_sys::before_shmem_exit(Some(detach_at_exit), pg_sys::Datum::from(index)) };
    let mut last_sent = Instant::now();
    loop {
        let mut nap = CHECK_PERIOD;
        if let Some(changes) = take(index) {
            if send(index, &changes) {
                std::thread::sleep(GATHER);
            } else {
                // Tried again a second later, saying all.
                nap = Duration::from_secs(1);
            }
            last_sent = Instant::now();
        } else if last_sent.elapsed() >= IDLE_LIFE && detach(index, true) {
            return;
        }
        if !BackgroundWorker::wait_latch(Some(nap)) || crate::bgw::database_wanted_exclusively() {
            break;
        }
    }
    // Shutting down, or DROP DATABASE waits for us: what is here goes out first.
    if let Some(changes) = leave(index) {
        send(index, &changes);
    }
}
