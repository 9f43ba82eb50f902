//! Instance leases: which running gateway owns an instance name in a store.
//!
//! Every session row names the instance that recorded it, and the restart rule
//! closes open sessions whose recorder is gone. Without leases "gone" could only be
//! guessed from the name, so a second gateway that shared a store and a name (two
//! `wsgate proxy` in one folder: `./wsgate.db` and the host name) closed the first
//! one's live sessions. Now a running gateway holds a lease on its name, renewed in
//! the background; a start that finds a lease still held is refused, and only the
//! sessions of instances whose lease expired, or that never had one (rows written
//! before leases), are closed.
//!
//! A lease is gone when it has expired on the store's clock (PostgreSQL's own clock,
//! so gateways on hosts with skewed clocks agree), or at once when its holder ran on
//! this host and its process no longer exists: a `kill -9` followed by a restart does
//! not wait for the expiry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a starting gateway asks the store for. One run per process: the process id
/// and the run id identify the same thing, which the dead-process rule relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// This run of the gateway (UUIDv7, so runs sort by start).
    pub run: Uuid,
    pub instance: String,
    /// The host name, for the dead-process rule and for the message a refused start
    /// prints.
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    /// How long the lease lasts without renewal, measured by the store's clock.
    pub ttl: Duration,
}

impl Lease {
    /// A lease for this process on `instance`.
    pub fn new(instance: impl Into<String>, ttl: Duration) -> Self {
        Self {
            run: Uuid::now_v7(),
            instance: instance.into(),
            host: host_name(),
            pid: std::process::id(),
            started_at: crate::now(),
            ttl,
        }
    }

    pub(crate) fn ttl_micros(&self) -> i64 {
        i64::try_from(self.ttl.as_micros()).unwrap_or(i64::MAX)
    }

    /// This lease as stored, expiring `ttl` after `now` (the store's clock).
    pub(crate) fn held_until(&self, now: DateTime<Utc>) -> LeaseHolder {
        LeaseHolder {
            run: self.run,
            instance: self.instance.clone(),
            host: self.host.clone(),
            pid: self.pid,
            started_at: self.started_at,
            expires_at: now + self.ttl,
        }
    }
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub run: Uuid,
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl LeaseHolder {
    /// Whether this lease protects nothing any more, as `asker` sees it at `now` (the
    /// store's clock): expired, or held by a process of the asker's host that has
    /// ended. A lease of another run with the asker's own pid is an earlier process
    /// (a container restarted after a kill gets the same pid, often 1). The asker's
    /// own lease is never gone to itself.
    pub fn is_gone(&self, now: DateTime<Utc>, asker: &Lease) -> bool {
        self.run != asker.run
            && (self.expires_at <= now
                || (self.host == asker.host && (self.pid == asker.pid || process_ended(self.pid))))
    }
}

/// What a successful claim did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimed {
    /// Sessions closed as "gateway stopped": the instance's own, left open by its
    /// last run, and those of every instance without a live lease.
    pub closed: u64,
    /// The lease this claim replaced: a run that stopped without releasing it.
    pub replaced: Option<LeaseHolder>,
}

/// Whether the process `pid` of this host has ended. Where that cannot be told (no
/// `/proc`), it has not: the lease's expiry still frees the name.
fn process_ended(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

/// This host's name (the default instance name, and the lease's host).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "wsgate".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(host: &str, pid: u32, expires_in: chrono::Duration) -> LeaseHolder {
        LeaseHolder {
            run: Uuid::now_v7(),
            instance: "i".into(),
            host: host.into(),
            pid,
            started_at: crate::now(),
            expires_at: crate::now() + expires_in,
        }
    }

    #[test]
    fn gone_when_expired_or_its_process_on_this_host_ended() {
        let me = Lease::new("i", Duration::from_secs(30));
        let now = crate::now();
        let hour = chrono::Duration::hours(1);
        let mut ended = std::process::Command::new("true").spawn().expect("spawn true");
        let dead = ended.id();
        ended.wait().expect("reap true");
        let parent = std::os::unix::process::parent_id();
        assert!(!holder(&me.host, parent, hour).is_gone(now, &me), "a live process on this host");
        assert!(holder(&me.host, dead, hour).is_gone(now, &me), "an ended process on this host");
        assert!(!holder("elsewhere", dead, hour).is_gone(now, &me), "another host's pids say nothing");
        assert!(holder("elsewhere", dead, -hour).is_gone(now, &me), "expired");
        assert!(holder(&me.host, me.pid, hour).is_gone(now, &me), "an earlier process with this pid");
        let mine = me.held_until(now - hour);
        assert!(!mine.is_gone(now, &me), "never gone to itself");
    }
}
