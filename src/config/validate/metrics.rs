//! `[metrics]`: the Prometheus endpoint.

use super::*;

/// `[metrics]`: whether the endpoint is served, and where.
pub(super) fn metrics(v: &mut V, m: &RawMetrics) -> MetricsConfig {
    let listen_s = m.listen.clone().unwrap_or_else(|| "127.0.0.1:9271".into());
    let listen = match listen_s.parse() {
        Ok(a) => a,
        Err(_) => {
            v.err(
                "metrics.listen",
                format!("{listen_s:?} is not host:port"),
                Some("e.g. \"127.0.0.1:9271\""),
            );
            std::net::SocketAddr::from(([127, 0, 0, 1], 9271))
        }
    };
    MetricsConfig {
        enabled: m.enabled.unwrap_or(false),
        listen,
    }
}
