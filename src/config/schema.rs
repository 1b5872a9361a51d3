//! The shape of the configuration file, derived from the serde structs of [`super::RawConfig`]
//! so it can never drift from what the code reads: every unknown key of a file is reported at
//! once (serde alone stops at the first), problems get a `section.key (line N)` location, and a
//! test checks that `config.example.toml` documents exactly these keys.

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::{
    Problem, RawAmoCrm, RawAsterisk, RawBackfill, RawBitrix24, RawCallback, RawCalls, RawCluster,
    RawConfig, RawEmail, RawHours, RawHttpNotifier, RawLog, RawMetrics, RawNotify, RawPbx,
    RawReport, RawReportEmail, RawStorage, RawTarget, RawTelegram, RawWeb, RawWebUser, RawWebhook,
};

/// Captures the field list serde's derive passes to `deserialize_struct`, then stops.
struct Introspect<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("introspection")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for Introspect<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The field names of a `#[derive(Deserialize)]` struct.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Introspect(&mut fields));
    fields
}

/// Every table of the file (by dotted path; `asterisk` is an array of tables) and its keys.
/// A field whose path is also listed here is a sub-table.
pub fn sections() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("", fields_of::<RawConfig>()),
        ("asterisk", fields_of::<RawAsterisk>()),
        ("pbx", fields_of::<RawPbx>()),
        ("calls", fields_of::<RawCalls>()),
        ("storage", fields_of::<RawStorage>()),
        ("callback", fields_of::<RawCallback>()),
        ("callback.target", fields_of::<RawTarget>()),
        ("hours", fields_of::<RawHours>()),
        ("notify", fields_of::<RawNotify>()),
        ("notify.webhook", fields_of::<RawWebhook>()),
        ("notify.email", fields_of::<RawEmail>()),
        ("notify.bitrix24", fields_of::<RawBitrix24>()),
        ("notify.amocrm", fields_of::<RawAmoCrm>()),
        ("notify.telegram", fields_of::<RawTelegram>()),
        ("notify.http", fields_of::<RawHttpNotifier>()),
        ("metrics", fields_of::<RawMetrics>()),
        ("log", fields_of::<RawLog>()),
        ("web", fields_of::<RawWeb>()),
        ("web.users", fields_of::<RawWebUser>()),
        ("backfill", fields_of::<RawBackfill>()),
        ("report", fields_of::<RawReport>()),
        ("report.email", fields_of::<RawReportEmail>()),
        ("cluster", fields_of::<RawCluster>()),
    ]
}

/// Every key path the program reads, sub-tables included (`callback.target`,
/// `callback.target.queue`, `pbx.lost_at_contexts`, ...).
pub fn all_keys() -> Vec<String> {
    let mut out = Vec::new();
    for (section, fields) in sections() {
        for f in fields {
            out.push(join(section, f));
        }
    }
    // Read before the file is parsed (it names the directory of more [[asterisk]] files).
    out.push(super::servers_d::KEY.to_string());
    out.sort();
    out
}

fn join(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// Removes every key the program does not read from `table` and returns one problem per key,
/// located in `text` where it can be found.
pub fn unknown_keys(table: &mut toml::Table, text: &str) -> Vec<Problem> {
    let sections = sections();
    let mut out = Vec::new();
    walk(table, "", "", &sections, text, &mut out);
    out
}

fn walk(
    table: &mut toml::Table,
    schema_path: &str,
    display_path: &str,
    sections: &[(&'static str, &'static [&'static str])],
    text: &str,
    out: &mut Vec<Problem>,
) {
    let Some((_, fields)) = sections.iter().find(|(p, _)| *p == schema_path) else {
        return;
    };
    let unknown: Vec<String> = table
        .keys()
        .filter(|k| !fields.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in unknown {
        table.remove(&k);
        let key = join(display_path, &k);
        let line = find_line(text, display_path, &k);
        let hint = match fields.iter().find(|f| similar(f, &k)) {
            Some(close) => format!("did you mean {close:?}?"),
            None => format!(
                "{} keys are: {}",
                section_name(schema_path),
                fields.join(", ")
            ),
        };
        out.push(Problem {
            key: match line {
                Some(l) => format!("{key} (line {l})"),
                None => key,
            },
            message: format!("unknown key {k:?}"),
            hint: Some(hint),
        });
    }
    for (k, value) in table.iter_mut() {
        let child = join(schema_path, k);
        if !sections.iter().any(|(p, _)| *p == child) {
            continue;
        }
        let shown = join(display_path, k);
        match value {
            toml::Value::Table(t) => walk(t, &child, &shown, sections, text, out),
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(t) = item {
                        walk(t, &child, &format!("{shown}[{i}]"), sections, text, out);
                    }
                }
            }
            // A wrong type is serde's to report, with its line.
            _ => {}
        }
    }
}

fn section_name(path: &str) -> String {
    if path.is_empty() {
        "top-level".into()
    } else {
        format!("[{path}]")
    }
}

/// A one-edit typo (`min_talkk`, `retry_evry`) or a swapped `-`/`_`.
fn similar(a: &str, b: &str) -> bool {
    if a.replace('-', "_") == b.replace('-', "_") {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Two neighbours swapped (`hots`).
    if a.len() == b.len() {
        let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        if diff.len() == 2
            && diff[1] == diff[0] + 1
            && a[diff[0]] == b[diff[1]]
            && a[diff[1]] == b[diff[0]]
        {
            return true;
        }
    }
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    // Levenshtein distance <= 1 in one pass.
    let (mut i, mut j, mut edits) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            i += 1;
            j += 1;
            continue;
        }
        edits += 1;
        if edits > 1 {
            return false;
        }
        match a.len().cmp(&b.len()) {
            std::cmp::Ordering::Greater => i += 1,
            std::cmp::Ordering::Less => j += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    edits + (a.len() - i) + (b.len() - j) <= 1
}

/// One line of a TOML file, as far as locating keys needs.
enum LineKind<'a> {
    /// `[a.b]` or `[[a]]`.
    Header {
        path: &'a str,
        array: bool,
    },
    /// `key = ...` (the key as written, quotes removed).
    Key(&'a str),
    Other,
}

fn classify(line: &str) -> LineKind<'_> {
    let l = line.trim();
    if let Some(rest) = l.strip_prefix("[[") {
        if let Some(end) = rest.find("]]") {
            return LineKind::Header {
                path: rest[..end].trim(),
                array: true,
            };
        }
    } else if let Some(rest) = l.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return LineKind::Header {
                path: rest[..end].trim(),
                array: false,
            };
        }
    } else if !l.starts_with('#') {
        if let Some((k, _)) = l.split_once('=') {
            return LineKind::Key(k.trim().trim_matches(['"', '\'']));
        }
    }
    LineKind::Other
}

/// The display path (`asterisk[1]`, `callback.target`) of the table a line belongs to.
fn section_paths(text: &str) -> Vec<String> {
    let mut counts: std::collections::HashMap<&str, usize> = Default::default();
    let mut current = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let LineKind::Header { path, array } = classify(line) {
            current = if array {
                let n = counts.entry(path).or_insert(0);
                *n += 1;
                format!("{path}[{}]", *n - 1)
            } else {
                path.to_string()
            };
        }
        out.push(current.clone());
    }
    out
}

/// The line (1-based) where `key` is set in the table `section` (display path).
fn find_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let paths = section_paths(text);
    text.lines()
        .enumerate()
        .find_map(|(i, line)| match classify(line) {
            LineKind::Key(k) if k == key && paths.get(i).map(String::as_str) == Some(section) => {
                Some(i + 1)
            }
            // A sub-table header of an unknown name: `[notify.sms]`.
            LineKind::Header { path, .. } if path == join(section, key) => Some(i + 1),
            _ => None,
        })
}

/// The key path and line number of a byte offset into `text` (where toml located an error).
pub fn key_at(text: &str, offset: usize) -> (Option<String>, Option<usize>) {
    let offset = offset.min(text.len());
    let line_idx = text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    let paths = section_paths(text);
    let key = text
        .lines()
        .nth(line_idx)
        .and_then(|line| match classify(line) {
            LineKind::Key(k) => Some(join(
                paths.get(line_idx).map(String::as_str).unwrap_or(""),
                k,
            )),
            LineKind::Header { path, .. } => Some(path.to_string()),
            LineKind::Other => None,
        });
    (key, Some(line_idx + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_serde() {
        let keys = all_keys();
        for k in [
            "asterisk.secret_env",
            "callback.target.queue",
            "notify.webhook.give_up_after",
            "pbx.lost_at_contexts",
            "log.format",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn all_unknown_keys_at_once_with_lines() {
        let text = "[[asterisk]]\nusername = \"a\"\n\n[[asterisk]]\nhots = \"x\"\n[calls]\nmin_talkk = \"6s\"\n[notify.sms]\nto = 1\n";
        let mut t: toml::Table = toml::from_str(text).unwrap();
        let p = unknown_keys(&mut t, text);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "asterisk[1].hots (line 5)",
                "calls.min_talkk (line 7)",
                "notify.sms (line 8)"
            ]
        );
        assert!(p[0].hint.as_deref().unwrap() == "did you mean \"host\"?");
        assert!(!t.contains_key("notify") || !t["notify"].as_table().unwrap().contains_key("sms"));
    }

    #[test]
    fn key_at_finds_section_and_key() {
        let text = "[calls]\nmin_talk = 6\n";
        assert_eq!(
            key_at(text, text.find('6').unwrap()),
            (Some("calls.min_talk".into()), Some(2))
        );
    }

    #[test]
    fn typo_detection() {
        assert!(similar("min_talk", "min_talkk"));
        assert!(similar("retry_every", "retry_evry"));
        assert!(similar("give_up_after", "give-up-after"));
        assert!(!similar("host", "port"));
    }
}
