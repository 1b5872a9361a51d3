//! `[log]`: the level and format of the service's own log.

use super::*;

/// `[log]`: `level` and `format` (text or JSON).
pub(super) fn log(v: &mut V, l: &RawLog) -> LogConfig {
    let level = l.level.clone().unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        v.err(
            "log.level",
            format!("unknown level {level:?}"),
            Some("error, warn, info, debug or trace"),
        );
    }
    let json = match l.format.as_deref().unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => {
            v.err(
                "log.format",
                format!("unknown format {other:?}"),
                Some("text or json"),
            );
            false
        }
    };
    LogConfig { level, json }
}
