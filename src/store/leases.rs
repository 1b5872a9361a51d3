//! Server leases: which node owns which Asterisk server when several nodes share one
//! PostgreSQL. Owner: the cluster work (`daemon::leases` runs the renewal loop).
//!
//! One row per server in `server_leases`: its owner, an epoch that grows by one on every change
//! of owner, and when it expires on the *database's* clock (`clock_timestamp()`), so the nodes'
//! own clocks never have to agree. Every statement here is a compare-and-set on one row: a
//! node renews only a lease it holds unexpired, takes over only an expired one, and a takeover
//! bumps the epoch. Writes for a server carry the epoch they act on ([`check_lease`], inside
//! the write's own transaction), so a node that lost a lease cannot write with it.
//!
//! `cluster_nodes` holds each node's heartbeat (database time): the live nodes are those heard
//! from within one lease TTL, and the servers are spread over them ([`assign`]).

use std::collections::HashMap;

use super::db::{params, Db, DbResult, Engine};

/// Version 10: the cluster's nodes and the server leases.
pub const SCHEMA_CLUSTER: &str = "
CREATE TABLE cluster_nodes (
    node_id TEXT PRIMARY KEY,
    heartbeat_at REAL NOT NULL,
    started_at REAL NOT NULL
);
CREATE TABLE server_leases (
    server TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    granted_at REAL NOT NULL
);
";

/// The database's clock now, in Unix seconds (not the transaction's start: the real time).
pub fn clock(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
        Engine::Sqlite => "((julianday('now') - 2440587.5) * 86400.0)",
    }
}

/// One lease row.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub server: String,
    pub owner: String,
    pub epoch: i64,
    /// Database time, Unix seconds.
    pub expires_at: f64,
}

/// Records `node`'s heartbeat; returns the database's time of it.
pub fn heartbeat(db: &Db, node: &str) -> DbResult<f64> {
    let c = clock(db.engine());
    db.query_row(
        &format!(
            "INSERT INTO cluster_nodes (node_id, heartbeat_at, started_at) VALUES (?1, {c}, {c}) \
             ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at \
             RETURNING heartbeat_at"
        ),
        params![node],
        |r| r.get(0),
    )
}

/// The nodes heard from since `since` (database time), sorted.
pub fn live_nodes(db: &Db, since: f64) -> DbResult<Vec<String>> {
    db.query_map(
        "SELECT node_id FROM cluster_nodes WHERE heartbeat_at > ?1 ORDER BY node_id",
        params![since],
        |r| r.get(0),
    )
}

/// Every lease row, by server.
pub fn leases(db: &Db) -> DbResult<HashMap<String, Lease>> {
    let rows = db.query_map(
        "SELECT server, owner, epoch, expires_at FROM server_leases",
        params![],
        |r| {
            Ok(Lease {
                server: r.get(0)?,
                owner: r.get(1)?,
                epoch: r.get(2)?,
                expires_at: r.get(3)?,
            })
        },
    )?;
    Ok(rows.into_iter().map(|l| (l.server.clone(), l)).collect())
}

/// Extends every unexpired lease `node` holds by `ttl_secs` from now; the (server, epoch) of
/// each.
pub fn renew_all(db: &Db, node: &str, ttl_secs: f64) -> DbResult<Vec<(String, i64)>> {
    let c = clock(db.engine());
    db.query_map(
        &format!(
            "UPDATE server_leases SET expires_at = {c} + ?2 \
             WHERE owner = ?1 AND expires_at > {c} RETURNING server, epoch"
        ),
        params![node, ttl_secs],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Takes `server`'s lease for `node` if it has none or it expired at least `stale_secs` ago
/// (0: expired at all); the new epoch when taken.
pub fn take(
    db: &Db,
    server: &str,
    node: &str,
    ttl_secs: f64,
    stale_secs: f64,
) -> DbResult<Option<i64>> {
    let c = clock(db.engine());
    db.query_opt(
        &format!(
            "INSERT INTO server_leases (server, owner, epoch, expires_at, granted_at) \
             VALUES (?1, ?2, 1, {c} + ?3, {c}) \
             ON CONFLICT (server) DO UPDATE SET owner = excluded.owner, \
             epoch = server_leases.epoch + 1, expires_at = excluded.expires_at, \
             granted_at = excluded.granted_at \
             WHERE server_leases.expires_at <= {c} - ?4 RETURNING epoch"
        ),
        params![server, node, ttl_secs, stale_secs],
        |r| r.get(0),
    )
}

/// Gives `server`'s lease up at once (held by `node` with `epoch`): another node may take it
/// at its next renewal. The caller stopped acting on it before.
pub fn release(db: &Db, server: &str, node: &str, epoch: i64) -> DbResult<bool> {
    let c = clock(db.engine());
    Ok(db.execute(
        &format!(
            "UPDATE server_leases SET expires_at = {c} \
             WHERE server = ?1 AND owner = ?2 AND epoch = ?3 AND expires_at > {c}"
        ),
        params![server, node, epoch],
    )? == 1)
}

/// Inside a write transaction: whether `node` holds `server`'s lease with `epoch`, unexpired.
/// On PostgreSQL the row is locked FOR SHARE, so a takeover waits for the write (or the write,
/// serializable, fails and is retried after it and then finds the lease gone).
pub fn check_lease(db: &Db, server: &str, node: &str, epoch: i64) -> DbResult<bool> {
    let c = clock(db.engine());
    let lock = match db.engine() {
        Engine::Postgres => " FOR SHARE",
        Engine::Sqlite => "",
    };
    Ok(db
        .query_opt(
            &format!(
                "SELECT epoch FROM server_leases WHERE server = ?1 AND owner = ?2 \
                 AND epoch = ?3 AND expires_at > {c}{lock}"
            ),
            params![server, node, epoch],
            |r| r.get::<i64>(0),
        )?
        .is_some())
}

/// The owner of every server whose lease is unexpired (for `perezvon status`).
pub fn owners(db: &Db) -> DbResult<HashMap<String, (String, i64)>> {
    let c = clock(db.engine());
    let rows: Vec<(String, String, i64)> = db.query_map(
        &format!("SELECT server, owner, epoch FROM server_leases WHERE expires_at > {c}"),
        params![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(rows.into_iter().map(|(s, o, e)| (s, (o, e))).collect())
}

/// Spreads `servers` over the `live` nodes: rendezvous (highest random weight) hashing, so a
/// node joining or leaving moves only its share, capped at `ceil(servers / nodes)` per node
/// so no node carries much more than its share. Every node computes the same answer from the
/// same lists.
pub fn assign(servers: &[String], live: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if live.is_empty() {
        return out;
    }
    let cap = servers.len().div_ceil(live.len()).max(1);
    let mut load: HashMap<&str, usize> = HashMap::new();
    let mut sorted: Vec<&String> = servers.iter().collect();
    sorted.sort();
    sorted.dedup();
    for s in sorted {
        let mut ranked: Vec<&String> = live.iter().collect();
        ranked.sort_by_key(|n| std::cmp::Reverse((weight(s, n), n.as_str())));
        if let Some(n) = ranked
            .into_iter()
            .find(|n| load.get(n.as_str()).copied().unwrap_or(0) < cap)
        {
            *load.entry(n.as_str()).or_default() += 1;
            out.insert(s.clone(), n.clone());
        }
    }
    out
}

/// A stable 64-bit weight of (server, node): FNV-1a, then a SplitMix64 finaliser.
fn weight(server: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in server.bytes().chain([0xff]).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{p}{i}")).collect()
    }

    #[test]
    fn assignment_is_balanced_stable_and_moves_only_a_leavers_share() {
        let servers = names("pbx", 200);
        let nodes = names("node-", 3);
        let a = assign(&servers, &nodes);
        assert_eq!(a.len(), 200);
        let mut per: HashMap<&String, usize> = HashMap::new();
        for n in a.values() {
            *per.entry(n).or_default() += 1;
        }
        assert!(per.values().all(|&k| k <= 67), "{per:?}");
        // The same inputs in another order: the same answer (every node agrees).
        let mut rev = servers.clone();
        rev.reverse();
        assert_eq!(assign(&rev, &nodes), a);
        // node-2 leaves: what node-0 and node-1 had mostly stays where it was.
        let b = assign(&servers, &nodes[..2]);
        let kept = a
            .iter()
            .filter(|(s, n)| n.as_str() != "node-2" && b[*s] == **n)
            .count();
        let had = a.values().filter(|n| n.as_str() != "node-2").count();
        assert!(kept * 10 >= had * 7, "kept {kept} of {had}");
        assert!(assign(&servers, &[]).is_empty());
    }

    #[test]
    fn leases_are_compare_and_set_with_growing_epochs() {
        crate::test_support::pg::each_engine(|t| {
            let s = t.open();
            let db = s.db();
            let now = heartbeat(db, "a").unwrap();
            heartbeat(db, "b").unwrap();
            assert_eq!(live_nodes(db, now - 5.0).unwrap(), vec!["a", "b"]);
            assert_eq!(take(db, "pbx1", "a", 5.0, 0.0).unwrap(), Some(1));
            // Held: nobody else takes it, the holder renews it.
            assert_eq!(take(db, "pbx1", "b", 5.0, 0.0).unwrap(), None);
            assert_eq!(renew_all(db, "a", 5.0).unwrap(), vec![("pbx1".into(), 1)]);
            assert!(renew_all(db, "b", 5.0).unwrap().is_empty());
            assert!(check_lease(db, "pbx1", "a", 1).unwrap());
            assert!(!check_lease(db, "pbx1", "b", 1).unwrap());
            assert_eq!(owners(db).unwrap()["pbx1"], ("a".to_string(), 1));
            // Released: the next taker bumps the epoch; the old epoch is fenced out.
            assert!(release(db, "pbx1", "a", 1).unwrap());
            assert!(!check_lease(db, "pbx1", "a", 1).unwrap());
            assert!(renew_all(db, "a", 5.0).unwrap().is_empty());
            assert_eq!(take(db, "pbx1", "b", 5.0, 0.0).unwrap(), Some(2));
            assert!(!release(db, "pbx1", "a", 1).unwrap());
            // A lease that expired only just is not stale yet for a node it was not meant for.
            assert!(release(db, "pbx1", "b", 2).unwrap());
            assert_eq!(take(db, "pbx1", "a", 5.0, 60.0).unwrap(), None);
            assert_eq!(take(db, "pbx1", "a", 5.0, 0.0).unwrap(), Some(3));
            assert!(owners(db).unwrap().contains_key("pbx1"));
        });
    }
}
