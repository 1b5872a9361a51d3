//! `[pbx]`: the number plan and how the dialplan is read.

use super::*;

/// `[pbx]`: the number plan, the inbound contexts, which channels are trunks, agents or
/// external, and the contexts a call counts as lost at.
pub(super) fn pbx(v: &mut V, p: &RawPbx) -> PbxConfig {
    let digits = |v: &mut V, key: &str, s: &Option<String>, d: &str| -> String {
        let s = s.clone().unwrap_or_else(|| d.to_string());
        if !s.chars().all(|c| c.is_ascii_digit()) {
            v.err(key, format!("{s:?} must be digits only"), None);
        }
        s
    };
    let country_code = digits(v, "pbx.country_code", &p.country_code, "7");
    if country_code.is_empty() {
        v.err(
            "pbx.country_code",
            "must not be empty",
            Some("e.g. \"7\" for Russia, \"49\" for Germany"),
        );
    }
    let numbers = NumberPlan {
        country_code,
        national_prefix: digits(v, "pbx.national_prefix", &p.national_prefix, "8"),
        national_length: match p.national_length.unwrap_or(10) {
            n @ 0..=15 => n as usize,
            n => {
                v.err(
                    "pbx.national_length",
                    format!("{n} is not a plausible length"),
                    Some("0..15; 0 = unknown"),
                );
                10
            }
        },
        international_prefix: digits(
            v,
            "pbx.international_prefix",
            &p.international_prefix,
            "810",
        ),
    };
    let mut lost_at_contexts = BTreeMap::new();
    for (ctx, cat) in p.lost_at_contexts.clone().unwrap_or_default() {
        if LOST_AT.contains(&cat.as_str()) {
            lost_at_contexts.insert(ctx, cat);
        } else {
            v.err(
                format!("pbx.lost_at_contexts.{ctx}"),
                format!("unknown category {cat:?}"),
                Some("one of ivr, voicemail, invalid_number, queue, group, external, user"),
            );
        }
    }
    PbxConfig {
        numbers,
        inbound_contexts: v.globs(
            "pbx.inbound_contexts",
            &p.inbound_contexts,
            &["from-trunk", "from-pstn", "from-external"],
        ),
        trunk_channels: v.globs("pbx.trunk_channels", &p.trunk_channels, &[]),
        agent_channels: v.globs(
            "pbx.agent_channels",
            &p.agent_channels,
            &["PJSIP/*", "SIP/*", "IAX2/*", "Local/*@from-queue*"],
        ),
        external_channels: v.globs("pbx.external_channels", &p.external_channels, &[]),
        lost_at_contexts,
    }
}
