//! Which Asterisk servers this node acts on: writes their verdicts, dials their callbacks.
//!
//! One node alone (SQLite, or PostgreSQL without other nodes) owns every server:
//! [`Ownership::everything`]. Several nodes on one PostgreSQL share the servers through leases
//! (`daemon::leases`): the lease manager [`grant`](Ownership::grant)s a server with the lease's
//! epoch and the instant, on this node's monotonic clock, after which it must stop acting on it
//! unless renewed; [`owns`](Ownership::owns) answers `None` from that instant on, before the
//! database can give the lease away. The epoch goes with every write (fencing), so a node that
//! was paused and wakes up cannot write or dial with a lease it lost.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::sync::watch;

/// A held lease: its epoch and the monotonic instant it must be treated as lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    pub epoch: i64,
    pub valid_until: Instant,
}

/// The servers this node owns now. Cheap to clone; every clone sees the same set.
#[derive(Debug, Clone)]
pub struct Ownership {
    /// `None`: this node owns every server, always (one node, no leases).
    leases: Option<Arc<RwLock<HashMap<String, Owned>>>>,
    /// Bumped on every grant or revoke, for tasks that wait for a change.
    changed: Arc<watch::Sender<u64>>,
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership::everything()
    }
}

impl Ownership {
    /// One node, no leases: every server is owned (epoch 0), forever.
    pub fn everything() -> Ownership {
        Ownership {
            leases: None,
            changed: Arc::new(watch::channel(0).0),
        }
    }

    /// Leases decide: nothing is owned until granted.
    pub fn leased() -> Ownership {
        Ownership {
            leases: Some(Arc::new(RwLock::new(HashMap::new()))),
            changed: Arc::new(watch::channel(0).0),
        }
    }

    /// True when leases decide (several nodes).
    pub fn is_leased(&self) -> bool {
        self.leases.is_some()
    }

    /// The lease on `server` is held with `epoch` until `valid_until` (grant or renewal).
    pub fn grant(&self, server: &str, epoch: i64, valid_until: Instant) {
        let Some(l) = &self.leases else { return };
        let mut m = l.write().unwrap_or_else(|p| p.into_inner());
        let fresh = m.get(server).map(|o| o.epoch) != Some(epoch);
        m.insert(server.to_string(), Owned { epoch, valid_until });
        drop(m);
        if fresh {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// The lease on `server` is gone (released, expired, taken over).
    pub fn revoke(&self, server: &str) {
        let Some(l) = &self.leases else { return };
        let removed = l
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(server)
            .is_some();
        if removed {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// The epoch this node may act on `server` with at `now`, or `None`.
    pub fn owns(&self, server: &str, now: Instant) -> Option<i64> {
        let Some(l) = &self.leases else {
            return Some(0);
        };
        let m = l.read().unwrap_or_else(|p| p.into_inner());
        m.get(server)
            .filter(|o| now < o.valid_until)
            .map(|o| o.epoch)
    }

    /// The servers owned at `now` with their epochs (for `status` and the dialer's filter);
    /// `None` means every server.
    pub fn owned(&self, now: Instant) -> Option<HashMap<String, i64>> {
        let l = self.leases.as_ref()?;
        let m = l.read().unwrap_or_else(|p| p.into_inner());
        Some(
            m.iter()
                .filter(|(_, o)| now < o.valid_until)
                .map(|(s, o)| (s.clone(), o.epoch))
                .collect(),
        )
    }

    /// Wakes on every grant of a new epoch or revoke.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_node_owns_everything_forever() {
        let o = Ownership::everything();
        assert_eq!(o.owns("any", Instant::now()), Some(0));
        assert!(o.owned(Instant::now()).is_none());
        o.revoke("any");
        assert_eq!(o.owns("any", Instant::now()), Some(0));
    }

    #[test]
    fn a_lease_stops_at_its_monotonic_deadline_and_on_revoke() {
        let o = Ownership::leased();
        let t0 = Instant::now();
        let mut rx = o.subscribe();
        assert_eq!(o.owns("pbx1", t0), None);
        o.grant("pbx1", 7, t0 + Duration::from_secs(5));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert_eq!(o.owns("pbx1", t0 + Duration::from_secs(4)), Some(7));
        assert_eq!(o.owns("pbx1", t0 + Duration::from_secs(5)), None);
        // A renewal with the same epoch moves the deadline without waking anyone.
        o.grant("pbx1", 7, t0 + Duration::from_secs(9));
        assert!(!rx.has_changed().unwrap());
        assert_eq!(o.owns("pbx1", t0 + Duration::from_secs(6)), Some(7));
        assert_eq!(
            o.owned(t0).unwrap().get("pbx1").copied(),
            Some(7),
            "owned() lists it"
        );
        o.revoke("pbx1");
        assert!(rx.has_changed().unwrap());
        assert_eq!(o.owns("pbx1", t0), None);
    }
}
