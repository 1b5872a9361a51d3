//! The shipped configuration files stay valid, and `config.example.toml` documents exactly the
//! keys the code reads (checked both ways, so neither a new key nor a stale one slips through).

use std::collections::BTreeSet;

use perezvon::config::{schema, CallbackMode, Config, Target};

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(path: &str) -> Config {
    Config::from_toml(&read(path)).unwrap_or_else(|e| panic!("{path} is invalid:\n{e}"))
}

#[test]
fn example_is_valid() {
    let c = parse("config.example.toml");
    assert_eq!(c.asterisk[0].name, "pbx1");
    assert!(c.notify.webhook.is_some() && c.notify.email.is_some());
    assert_eq!(c.callback.target, Target::Queue("sales".into()));
}

#[test]
fn freepbx_preset_is_valid() {
    let c = parse("examples/config/freepbx.toml");
    assert!(c.pbx.inbound_contexts.iter().any(|x| x == "from-pstn"));
    assert!(c
        .pbx
        .agent_channels
        .iter()
        .any(|p| perezvon::glob::glob_match(p, "Local/201@from-queue/n")));
    // The trunk is a PJSIP endpoint but no person.
    assert!(!perezvon::glob::any_match(
        &c.pbx.agent_channels,
        "PJSIP/provider-0000001a"
    ));
    assert!(perezvon::glob::any_match(
        &c.pbx.agent_channels,
        "PJSIP/201-0000001b"
    ));
}

#[test]
fn lab_preset_matches_the_fixtures_lab() {
    let c = parse("examples/config/lab.toml");
    let lab = parse("fixtures/asterisk-22/lab.toml");
    assert_eq!(c.pbx.inbound_contexts, lab.pbx.inbound_contexts);
    assert_eq!(c.pbx.trunk_channels, lab.pbx.trunk_channels);
    assert_eq!(c.pbx.agent_channels, lab.pbx.agent_channels);
    assert_eq!(c.pbx.external_channels, lab.pbx.external_channels);
    assert_eq!(c.callback.marker_variable, lab.callback.marker_variable);
    assert_eq!(c.calls.min_talk, lab.calls.min_talk);
    assert_eq!(c.callback.mode, CallbackMode::CustomerFirst);
    assert!(c.callback.enabled);
}

/// Every `key = value` of the example, commented out or not, as a dotted path; section headers
/// count as keys too (`[callback.target]` documents `callback.target`).
fn documented_keys(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let l = line.trim();
        let l = l.strip_prefix('#').map(str::trim_start).unwrap_or(l);
        if let Some(h) = l.strip_prefix('[') {
            let h = h.trim_start_matches('[');
            if let Some(end) = h.find(']') {
                let name = &h[..end];
                if !name.is_empty()
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'
                    })
                {
                    section = name.to_string();
                    out.insert(section.clone());
                    continue;
                }
            }
        }
        // A documented key: `name = ...` with a plain key name and nothing else before `=`.
        if let Some((k, _)) = l.split_once(" = ") {
            if !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                out.insert(if section.is_empty() {
                    k.to_string()
                } else {
                    format!("{section}.{k}")
                });
            }
        }
    }
    // Parents of documented sub-tables (`[notify.webhook]` documents `notify`).
    for k in out.clone() {
        let mut p = k.as_str();
        while let Some((parent, _)) = p.rsplit_once('.') {
            out.insert(parent.to_string());
            p = parent;
        }
    }
    out
}

#[test]
fn example_documents_exactly_the_keys_the_code_reads() {
    let documented = documented_keys(&read("config.example.toml"));
    let known: BTreeSet<String> = schema::all_keys().into_iter().collect();
    let undocumented: Vec<_> = known.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&known).collect();
    assert!(
        undocumented.is_empty(),
        "keys the code reads but config.example.toml does not document: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "keys config.example.toml documents but the code does not read: {stale:?}"
    );
}

#[test]
fn the_checker_itself_notices_a_missing_key() {
    // Regression guard for the test above: it must fail when a key is left out.
    let text = read("config.example.toml").replace("# spread = \"15m\"", "");
    assert!(!documented_keys(&text).contains("callback.spread"));
    assert!(documented_keys(&read("config.example.toml")).contains("callback.spread"));
}

/// The text with every commented-out `key = value` line uncommented (the lines
/// [`documented_keys`] reads as keys), and every commented-out section header the file does not
/// already have (config.example.toml's banners repeat their section's header): what an admin
/// gets who uncomments them all.
fn uncommented(text: &str) -> String {
    let headers: BTreeSet<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .collect();
    let mut out = String::new();
    for line in text.lines() {
        let rest = line.trim_start().strip_prefix('#').map(str::trim_start);
        let key = rest.and_then(|l| l.split_once(" = ")).map(|(k, _)| k);
        let plain = |name: &str, extra: char| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == extra)
        };
        let header = rest
            .and_then(|l| l.strip_prefix('['))
            .and_then(|h| h.strip_suffix(']'))
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
        match (rest, key, header) {
            (Some(l), Some(k), _) if plain(k, '_') => out.push_str(l),
            (Some(l), _, Some(h)) if plain(h, '.') && !headers.contains(l.trim_end()) => {
                out.push_str(l)
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Uncommenting every commented-out key of the example at once still gives TOML: no key is
/// documented twice in one table (a duplicate is a TOML error, so an admin who uncommented both
/// copies would get a file perezvon refuses). Exclusive keys (secret, secret_file, secret_env)
/// are fine here: this is about the file's shape, `example_is_valid` about its values.
#[test]
fn example_with_every_key_uncommented_is_still_toml() {
    let text = uncommented(&read("config.example.toml"));
    assert!(
        !text.contains("\n# dial_template = "),
        "the helper did not uncomment"
    );
    if let Err(e) = toml::from_str::<toml::Table>(&text) {
        panic!("config.example.toml with every key uncommented is not TOML:\n{e}");
    }
}

#[test]
fn the_uncommenting_check_notices_a_key_documented_twice() {
    // Regression guard: config.example.toml once documented callback.agent_context three times.
    let text = read("config.example.toml").replace(
        "# server = \"pbx1\"\n",
        "# server = \"pbx1\"\n# agent_context = \"from-internal\"\n",
    );
    let err = toml::from_str::<toml::Table>(&uncommented(&text))
        .expect_err("a duplicated key must be a TOML error");
    assert!(err.to_string().contains("agent_context"), "{err}");
}

#[test]
fn packaged_config_is_valid_but_names_no_server() {
    let text = read("packaging/deb/perezvon.toml");
    // The reading commands (missed, report, callbacks) take it as it is ...
    let c = Config::from_toml(&text).unwrap_or_else(|e| panic!("packaged config:\n{e}"));
    assert!(c.asterisk.is_empty());
    // ... every key it shows is one the code reads ...
    let known: BTreeSet<String> = schema::all_keys().into_iter().collect();
    let stale: Vec<_> = documented_keys(&text).difference(&known).cloned().collect();
    assert!(
        stale.is_empty(),
        "unknown keys in the packaged config: {stale:?}"
    );
    // ... and uncommenting everything, the secret file in place, gives a valid daemon
    // configuration with callbacks still off.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("ami.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let all = uncommented(&text).replace("/etc/perezvon/ami.secret", secret.to_str().unwrap());
    let c = Config::from_toml(&all).unwrap_or_else(|e| panic!("uncommented:\n{all}\n{e}"));
    assert_eq!(c.asterisk.len(), 1);
    assert_eq!(c.asterisk[0].name, "pbx1");
    assert!(!c.callback.enabled);
}
