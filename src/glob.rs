//! Shell-style glob matching (`*` any run, `?` one byte) for channel-name patterns in the config.
//!
//! Channel names are ASCII in practice; matching works on bytes so nothing can fail on odd input.

/// True when `text` matches `pattern` as a whole. Iterative with single backtracking point, so a
/// pattern like `*a*a*a*b` cannot blow up on a long name.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// True when any of `patterns` matches.
pub fn any_match(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, text))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn table() {
        for (p, t, want) in [
            (
                "Local/*@from-trunk-*;2",
                "Local/74951110001@from-trunk-00000002;2",
                true,
            ),
            (
                "Local/*@from-trunk-*;2",
                "Local/74951110001@from-trunk-00000002;1",
                false,
            ),
            (
                "Local/2??@agent-sim-*",
                "Local/201@agent-sim-00000003;1",
                true,
            ),
            (
                "Local/2??@agent-sim-*",
                "Local/2011@agent-sim-00000003;1",
                false,
            ),
            ("PJSIP/*", "PJSIP/201-0000001a", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            (
                "*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} ~ {t}");
        }
    }
}
