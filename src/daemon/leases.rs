//! The lease manager: several nodes on one PostgreSQL share the Asterisk servers.
//!
//! Its own connection (`application_name = "perezvon <node> leases"`), on its own thread, twice
//! a second ([`RENEW_EVERY`]):
//! 1. heartbeat; the live nodes are those heard from within one lease TTL;
//! 2. spread the servers over the live nodes that have warmed up ([`WARM_UP`]; all live ones
//!    while none has) ([`crate::store::leases::assign`]);
//! 3. give up at once the leases now meant for another node: this node stops acting on them
//!    first ([`Ownership::revoke`]), then releases them in the database;
//! 4. renew the leases it holds, take the expired ones meant for it (and any expired for a
//!    whole TTL, whoever it was meant for, so a server no live node wants is not orphaned);
//! 5. grant what it holds to [`Ownership`], valid until *its own monotonic clock* reaches the
//!    instant the renewal started plus the TTL minus [`SAFETY_MARGIN`]. The database's expiry
//!    is at least the renewal's start plus the TTL, so the node stops acting before the lease
//!    can be given away, whatever happened meanwhile (a pause, a lost connection).
//!
//! Every write for a server is fenced ([`LeaseFence`]): inside the write's transaction the
//! lease row must still name this node with the epoch it acts on, so a node that was paused
//! and wakes up cannot write or dial with a lease it lost.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ownership::Ownership;
use crate::store::db::Db;
use crate::store::{leases as sql, FenceCheck, Result as StoreResult, StoreError};

/// How often leases are renewed (and expired ones looked for): twice a second, so a takeover
/// comes at most half a second after the lease expired.
pub const RENEW_EVERY: Duration = Duration::from_millis(500);
/// A node that just started tracks calls this long before servers are handed back to it: a
/// call already up when it started ends with a verdict it could only half see, while the node
/// that owned the server saw it whole. Leases nobody renews are taken at once all the same.
pub const WARM_UP: Duration = Duration::from_secs(60);
/// A node treats its leases as lost this long before the database would: clock rates differ a
/// little, and a renewal's answer takes time to act on.
pub const SAFETY_MARGIN: Duration = Duration::from_millis(500);

/// The servers this node follows (changed by a reload).
pub type ServerList = Arc<Mutex<Vec<String>>>;

/// The running lease manager; dropping it does not stop it: call [`Leases::stop`].
pub struct Leases {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub servers: ServerList,
}

impl Leases {
    /// Starts renewing for `node` on `url`; grants go to `ownership`.
    pub fn start(
        url: &str,
        node: &str,
        ttl: Duration,
        servers: Vec<String>,
        ownership: Ownership,
    ) -> Leases {
        let stop = Arc::new(AtomicBool::new(false));
        let servers: ServerList = Arc::new(Mutex::new(servers));
        let mut m = Manager {
            url: url.to_string(),
            node: node.to_string(),
            ttl,
            servers: servers.clone(),
            ownership,
            db: None,
            held: HashMap::new(),
            last_error: None,
            heartbeats: 0,
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("perezvon-leases".into())
            .spawn(move || m.run(&flag))
            .ok();
        Leases {
            stop,
            thread,
            servers,
        }
    }

    /// Stops renewing and gives every lease up (a clean shutdown hands the servers over at
    /// once instead of after a TTL).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Manager {
    url: String,
    node: String,
    ttl: Duration,
    servers: ServerList,
    ownership: Ownership,
    db: Option<Db>,
    /// The leases held after the last renewal: server -> epoch.
    held: HashMap<String, i64>,
    last_error: Option<String>,
    /// Heartbeats recorded by this process (the first restarts the node's warm-up).
    heartbeats: u64,
}

impl Manager {
    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            match self.renew(started) {
                Ok(()) => {
                    if self.last_error.take().is_some() {
                        tracing::warn!(node = %self.node, "leases: the database answers again");
                    }
                }
                Err(e) => {
                    let e = crate::store::error_chain(&e);
                    if self.last_error.as_deref() != Some(e.as_str()) {
                        tracing::error!(node = %self.node, error = %e, "leases: cannot renew; the servers' leases lapse by themselves (this node stops acting on them in time)");
                    }
                    self.last_error = Some(e);
                    self.db = None;
                }
            }
            // Leases not renewed in time are lost by the clock; revoke them for the watchers.
            let now = Instant::now();
            let lapsed: Vec<String> = self
                .held
                .keys()
                .filter(|s| self.ownership.owns(s, now).is_none())
                .cloned()
                .collect();
            for s in lapsed {
                self.held.remove(&s);
                self.ownership.revoke(&s);
                tracing::warn!(node = %self.node, server = %s, "lease lapsed");
            }
            let next = started + RENEW_EVERY;
            while !stop.load(Ordering::SeqCst) && Instant::now() < next {
                std::thread::sleep(Duration::from_millis(50).min(next - Instant::now()));
            }
        }
        self.release_all();
    }

    fn db(&mut self) -> StoreResult<&Db> {
        if self.db.is_none() {
            let db = Db::postgres(&self.url, &format!("perezvon {} leases", self.node))
                .map_err(StoreError::sql("connect for the leases"))?;
            self.db = Some(db);
        }
        Ok(self.db.as_ref().expect("just set"))
    }

    fn renew(&mut self, started: Instant) -> StoreResult<()> {
        let node = self.node.clone();
        let ttl = self.ttl.as_secs_f64();
        let servers = self
            .servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let first = self.heartbeats == 0;
        let db = self.db()?;
        let now = sql::heartbeat(db, &node, first).map_err(StoreError::sql("heartbeat"))?;
        let live = sql::live_nodes(db, now - ttl).map_err(StoreError::sql("read live nodes"))?;
        self.heartbeats += 1;
        let meant = sql::assign(&servers, &eligible(&live, now, WARM_UP, self.ttl));
        let followed: HashSet<&String> = servers.iter().collect();
        // Give up what is meant for another node (or no longer followed): stop acting first.
        let mut handed = Vec::new();
        for (s, &epoch) in &self.held {
            if meant.get(s) != Some(&node) || !followed.contains(s) {
                self.ownership.revoke(s);
                handed.push((s.clone(), epoch));
            }
        }
        let db = self.db.as_ref().expect("connected above");
        for (s, epoch) in &handed {
            sql::release(db, s, &node, *epoch).map_err(StoreError::sql("release a lease"))?;
        }
        let mut held: HashMap<String, i64> = sql::renew_all(db, &node, ttl)
            .map_err(StoreError::sql("renew leases"))?
            .into_iter()
            .filter(|(s, _)| followed.contains(s))
            .collect();
        // One read of the table; a take is tried only where it can succeed.
        let rows = sql::leases(db).map_err(StoreError::sql("read leases"))?;
        for s in &servers {
            if held.contains_key(s) {
                continue;
            }
            // Meant for this node: take it as soon as it expired. Otherwise only once it has
            // been expired for a whole TTL (its node does not follow it, or is about to die).
            let stale = if meant.get(s) == Some(&node) {
                0.0
            } else {
                ttl
            };
            if rows.get(s).is_some_and(|l| l.expires_at > now - stale) {
                continue;
            }
            if let Some(epoch) =
                sql::take(db, s, &node, ttl, stale).map_err(StoreError::sql("take a lease"))?
            {
                tracing::info!(node = %node, server = %s, epoch, "lease taken");
                held.insert(s.clone(), epoch);
            }
        }
        let valid_until = started + self.ttl.saturating_sub(SAFETY_MARGIN);
        for (s, &epoch) in &held {
            self.ownership.grant(s, epoch, valid_until);
        }
        for s in self.held.keys() {
            if !held.contains_key(s) {
                self.ownership.revoke(s);
            }
        }
        self.held = held;
        Ok(())
    }

    fn release_all(&mut self) {
        let held: Vec<(String, i64)> = self.held.drain().collect();
        for (s, _) in &held {
            self.ownership.revoke(s);
        }
        let node = self.node.clone();
        if let Ok(db) = self.db() {
            for (s, epoch) in held {
                let _ = sql::release(db, &s, &node, epoch);
            }
        }
    }
}

/// The live nodes servers are spread over: those up for `warm_up`; while none is (the cluster
/// itself just started), those that started within two TTLs of the earliest, so nodes started
/// together share at once and one restarted later still warms up.
fn eligible(live: &[(String, f64)], now: f64, warm_up: Duration, ttl: Duration) -> Vec<String> {
    let warm: Vec<String> = live
        .iter()
        .filter(|(_, started)| *started <= now - warm_up.as_secs_f64())
        .map(|(n, _)| n.clone())
        .collect();
    if !warm.is_empty() {
        return warm;
    }
    let first = live.iter().map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
    live.iter()
        .filter(|(_, started)| *started <= first + 2.0 * ttl.as_secs_f64())
        .map(|(n, _)| n.clone())
        .collect()
}

/// Fences a store's writes by this node's leases: the write's transaction must find the lease
/// row naming this node with the epoch [`Ownership`] grants now.
pub struct LeaseFence {
    pub ownership: Ownership,
    pub node: String,
}

impl FenceCheck for LeaseFence {
    fn check(&self, tx: &Db, server: &str) -> StoreResult<()> {
        let Some(epoch) = self.ownership.owns(server, Instant::now()) else {
            return Err(StoreError::Fenced {
                server: server.to_string(),
                epoch: 0,
            });
        };
        if sql::check_lease(tx, server, &self.node, epoch)
            .map_err(StoreError::sql("check the server's lease"))?
        {
            Ok(())
        } else {
            Err(StoreError::Fenced {
                server: server.to_string(),
                epoch,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + limit;
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_restarted_node_warms_up_before_it_gets_servers_back() {
        let ttl = Duration::from_secs(3);
        let warm = Duration::from_secs(60);
        let n = |v: &[(&str, f64)]| -> Vec<(String, f64)> {
            v.iter().map(|(a, b)| (a.to_string(), *b)).collect()
        };
        // The cluster just started: nodes up within two TTLs of the first share at once.
        assert_eq!(
            eligible(
                &n(&[("a", 100.0), ("b", 101.0), ("c", 104.0)]),
                110.0,
                warm,
                ttl
            ),
            vec!["a", "b", "c"]
        );
        // c restarted 4 s after a and b, before anyone warmed up: it waits.
        assert_eq!(
            eligible(
                &n(&[("a", 100.0), ("b", 100.5), ("c", 110.0)]),
                112.0,
                warm,
                ttl
            ),
            vec!["a", "b"]
        );
        // Later: only the nodes up for the warm-up.
        assert_eq!(
            eligible(
                &n(&[("a", 100.0), ("b", 150.0), ("c", 170.0)]),
                200.0,
                warm,
                ttl
            ),
            vec!["a"]
        );
        assert_eq!(
            eligible(&n(&[("a", 100.0), ("c", 170.0)]), 231.0, warm, ttl),
            vec!["a", "c"]
        );
        assert!(eligible(&[], 10.0, warm, ttl).is_empty());
    }

    fn owned(o: &Ownership) -> Vec<String> {
        let mut v: Vec<String> = o
            .owned(Instant::now())
            .unwrap_or_default()
            .into_keys()
            .collect();
        v.sort();
        v
    }

    /// Two nodes split six servers, never both owning one; when one stops, the other takes
    /// everything within a TTL and a second; a write with the lost epoch is fenced off.
    #[test]
    fn two_nodes_split_the_servers_and_take_over_a_stopped_one() {
        let Some(url) = crate::test_support::pg::fresh_url() else {
            return;
        };
        // The schema first (the daemon's stores migrate it before the leases start).
        let store =
            crate::store::Store::open_location(&crate::store::Location::Postgres(url.clone()))
                .unwrap();
        let servers: Vec<String> = (0..6).map(|i| format!("pbx{i}")).collect();
        let ttl = Duration::from_secs(2);
        let (oa, ob) = (Ownership::leased(), Ownership::leased());
        let a = Leases::start(&url, "node-a", ttl, servers.clone(), oa.clone());
        let b = Leases::start(&url, "node-b", ttl, servers.clone(), ob.clone());
        wait_for(
            "both nodes to hold three servers",
            Duration::from_secs(10),
            || owned(&oa).len() == 3 && owned(&ob).len() == 3,
        );
        let (sa, sb) = (owned(&oa), owned(&ob));
        assert!(sa.iter().all(|s| !sb.contains(s)), "{sa:?} / {sb:?}");
        // A write for a server of node-a, fenced by its lease: allowed.
        let fence = LeaseFence {
            ownership: oa.clone(),
            node: "node-a".into(),
        };
        let db = store.db();
        db.transaction(|tx| fence.check(tx, &sa[0])).unwrap();
        assert!(matches!(
            db.transaction(|tx| fence.check(tx, &sb[0])),
            Err(StoreError::Fenced { .. })
        ));
        let epoch = oa.owns(&sa[0], Instant::now()).unwrap();
        let stopped = Instant::now();
        b.stop();
        wait_for(
            "node-a to own all six",
            ttl + Duration::from_secs(3),
            || owned(&oa).len() == 6,
        );
        assert!(stopped.elapsed() <= ttl + Duration::from_secs(2));
        // node-b's old lease is gone: a fence holding its epoch fails in the database too.
        let stale = Ownership::leased();
        stale.grant(
            &sb[0],
            ob.owns(&sb[0], Instant::now()).unwrap_or(1),
            Instant::now() + ttl,
        );
        let fence_b = LeaseFence {
            ownership: stale,
            node: "node-b".into(),
        };
        assert!(matches!(
            db.transaction(|tx| fence_b.check(tx, &sb[0])),
            Err(StoreError::Fenced { .. })
        ));
        assert_eq!(oa.owns(&sa[0], Instant::now()), Some(epoch), "kept its own");
        a.stop();
        assert!(owned(&oa).is_empty(), "released on stop");
    }
}
