//! `[cluster]`: this node's name and the lease TTL.

use super::*;

/// `[cluster]`: the node's name (default: the host name) and the lease TTL.
pub(super) fn validate_cluster(v: &mut V, raw: &RawCluster) -> ClusterConfig {
    let node_id = match &raw.node_id {
        Some(n) => {
            let n = n.trim().to_string();
            if n.is_empty()
                || n.len() > 64
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                v.err(
                    "cluster.node_id",
                    "must be 1-64 characters of letters, digits, '.', '-' or '_'",
                    Some("unique per node, e.g. \"node-a\""),
                );
            }
            n
        }
        None => default_node_id(),
    };
    let lease_ttl = v.duration("cluster.lease_ttl", &raw.lease_ttl, "6s");
    if !(Duration::from_secs(2)..=Duration::from_secs(120)).contains(&lease_ttl) {
        v.err(
            "cluster.lease_ttl",
            "must be between 2s and 2m",
            Some("leases are renewed every second; a dead node's servers move after this long"),
        );
    }
    ClusterConfig { node_id, lease_ttl }
}

/// The host name (the kernel's), else "perezvon".
pub(crate) fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "perezvon".to_string())
}
