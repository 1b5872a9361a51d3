//! `servers_dir = "servers.d"`: `[[asterisk]]` servers in a directory of small files.
//!
//! A farm of hundreds of servers is easier to manage as one file per server (or per customer),
//! written by provisioning, than as one long list. The top-level key `servers_dir` names a
//! directory (relative to the configuration file); every `*.toml` in it (sorted by name, other
//! files ignored) holds one or more `[[asterisk]]` tables with the keys of the main file's, and
//! nothing else.
//!
//! How: each file is validated on its own first (so a problem names its file and its line),
//! names must be unique across the main file and every file, and then the files' text is
//! appended to the main text, whose `servers_dir` line is blanked, so the one validation of the
//! whole still reports the main file's own problems at their line. `SIGHUP` loads it all again
//! (`daemon::reload`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError, Problem};

/// The top-level key.
pub const KEY: &str = "servers_dir";

/// A `servers_dir` expanded: the text to validate and the files it came from.
#[derive(Debug)]
pub(super) struct Expanded {
    /// The main text with the `servers_dir` line blanked and every file appended.
    pub text: String,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

/// Expands `servers_dir` of `main_text` (`None`: the key is absent). `base` is the main file's
/// directory. Every problem of every file is reported at once.
pub(super) fn expand(
    main_text: &str,
    main_name: &str,
    base: Option<&Path>,
) -> Result<Option<Expanded>, ConfigError> {
    let fail = |source_name: String, problems| ConfigError {
        source_name,
        problems,
    };
    // A main file that is not TOML is reported by the normal validation.
    let Ok(table) = toml::from_str::<toml::Table>(main_text) else {
        return Ok(None);
    };
    let Some(value) = table.get(KEY) else {
        return Ok(None);
    };
    let Some(dir) = value.as_str() else {
        return Err(fail(
            main_name.to_string(),
            vec![problem(KEY, "must be a string (a directory)", None)],
        ));
    };
    let dir = match base {
        Some(b) => b.join(dir),
        None => PathBuf::from(dir),
    };
    let dir_name = dir.display().to_string();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect(),
        Err(e) => {
            return Err(fail(
                main_name.to_string(),
                vec![problem(
                    KEY,
                    &format!("cannot read the directory {dir_name}: {e}"),
                    Some("create it, or remove servers_dir"),
                )],
            ))
        }
    };
    files.sort();

    let mut problems = Vec::new();
    // Names of the main file first, so a file that repeats one names both places.
    let mut seen: HashMap<String, String> = HashMap::new();
    for n in names(&table) {
        seen.insert(n, main_name.to_string());
    }
    let mut text = blank_key_line(main_text);
    for path in &files {
        let file = path.display().to_string();
        let body = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(problem(&file, &format!("cannot read: {e}"), None));
                continue;
            }
        };
        let before = problems.len();
        check_file(&body, &file, base, &mut problems);
        if let Ok(t) = toml::from_str::<toml::Table>(&body) {
            for n in names(&t) {
                if let Some(other) = seen.get(&n) {
                    problems.push(problem(
                        &format!("{file}: asterisk.name"),
                        &format!("duplicate server name {n:?} (also in {other})"),
                        Some("every server needs its own name across the config and servers_dir"),
                    ));
                } else {
                    seen.insert(n, file.clone());
                }
            }
        }
        if problems.len() == before {
            text.push_str(&format!("\n# --- {file}\n{body}\n"));
        }
    }
    if !problems.is_empty() {
        return Err(fail(format!("{main_name} ({KEY} {dir_name})"), problems));
    }
    Ok(Some(Expanded { text, files }))
}

/// One file: only `[[asterisk]]` tables, each with a `name`, valid on its own.
fn check_file(body: &str, file: &str, base: Option<&Path>, problems: &mut Vec<Problem>) {
    let table = match toml::from_str::<toml::Table>(body) {
        Ok(t) => t,
        Err(e) => {
            let msg = e.message().to_string();
            let at = e
                .span()
                .map(|s| {
                    format!(
                        " (line {})",
                        body[..s.start.min(body.len())].lines().count().max(1)
                    )
                })
                .unwrap_or_default();
            problems.push(problem(file, &format!("not TOML: {msg}{at}"), None));
            return;
        }
    };
    for key in table.keys().filter(|k| k.as_str() != "asterisk") {
        problems.push(problem(
            &format!("{file}: {key}"),
            "not allowed in a servers_dir file",
            Some("a servers_dir file holds [[asterisk]] tables only; other sections go into the main config"),
        ));
    }
    match table.get("asterisk") {
        None => problems.push(problem(
            file,
            "holds no [[asterisk]] server",
            Some("add one, or remove the file"),
        )),
        Some(toml::Value::Array(a)) => {
            for (i, t) in a.iter().enumerate() {
                if t.get("name").is_none() {
                    problems.push(problem(
                        &format!("{file}: asterisk[{i}].name"),
                        "missing",
                        Some("a server in servers_dir needs a name (unique across all files)"),
                    ));
                }
            }
        }
        Some(_) => problems.push(problem(
            &format!("{file}: asterisk"),
            "must be [[asterisk]] tables (double brackets)",
            None,
        )),
    }
    if problems.iter().any(|p| p.key.starts_with(file)) {
        return;
    }
    // The servers alone, with every other section at its default.
    if let Err(e) = Config::from_toml_in(body, file, base.map(Path::to_path_buf)) {
        for p in e.problems {
            problems.push(Problem {
                key: format!("{file}: {}", p.key),
                ..p
            });
        }
    }
}

/// The `name`s of a table's `[[asterisk]]` entries.
fn names(t: &toml::Table) -> Vec<String> {
    t.get("asterisk")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.get("name")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The main text with its top-level `servers_dir = ...` line turned into a comment (same line
/// count, so the main file's problems keep their line numbers).
fn blank_key_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut top = true;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            top = false;
        }
        let is_key = top
            && t.strip_prefix(KEY)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_key {
            out.push_str("# ");
        }
        out.push_str(line);
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn problem(key: &str, message: &str, hint: Option<&str>) -> Problem {
    Problem {
        key: key.to_string(),
        message: message.to_string(),
        hint: hint.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "servers_dir = \"servers.d\"\n\n[[asterisk]]\nname = \"main\"\nusername = \"u\"\nsecret = \"s\"\n";

    fn server(name: &str, port: u16) -> String {
        format!("[[asterisk]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"u\"\nsecret = \"s\"\n")
    }

    fn setup(files: &[(&str, String)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("perezvon.toml"), MAIN).unwrap();
        std::fs::create_dir(dir.path().join("servers.d")).unwrap();
        for (n, body) in files {
            std::fs::write(dir.path().join("servers.d").join(n), body).unwrap();
        }
        dir
    }

    #[test]
    fn servers_of_every_file_join_the_main_list_in_file_order() {
        let dir = setup(&[
            ("b.toml", server("pbx-b", 5039) + &server("pbx-c", 5040)),
            ("a.toml", server("pbx-a", 5038)),
            ("notes.txt", "ignored".into()),
        ]);
        let cfg = Config::load_for_daemon(&dir.path().join("perezvon.toml")).unwrap();
        let names: Vec<&str> = cfg.asterisk.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["main", "pbx-a", "pbx-b", "pbx-c"]);
        assert_eq!(cfg.asterisk[2].port, 5039);
    }

    #[test]
    fn only_the_directory_may_hold_the_servers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), "servers_dir = \"d\"\n[calls]\n").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/x.toml"), server("x", 5038)).unwrap();
        let cfg = Config::load_for_daemon(&dir.path().join("p.toml")).unwrap();
        assert_eq!(cfg.asterisk.len(), 1);
        assert_eq!(cfg.asterisk[0].name, "x");
    }

    #[test]
    fn every_problem_names_its_file() {
        let dir = setup(&[
            ("dup.toml", server("main", 5038)),
            (
                "bad.toml",
                server("bad", 5038).replace("port = 5038", "port = 70000"),
            ),
            ("other.toml", format!("[calls]\n{}", server("o", 5038))),
            (
                "noname.toml",
                "[[asterisk]]\nusername = \"u\"\nsecret = \"s\"\n".into(),
            ),
            ("broken.toml", "[[asterisk\n".into()),
        ]);
        let e = Config::load_for_daemon(&dir.path().join("perezvon.toml")).unwrap_err();
        let text = e.to_string();
        for needle in [
            "dup.toml: asterisk.name: duplicate server name \"main\"",
            "bad.toml: asterisk[0].port",
            "other.toml: calls: not allowed",
            "noname.toml: asterisk[0].name: missing",
            "broken.toml: not TOML",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
    }

    #[test]
    fn a_missing_directory_is_a_problem_of_the_main_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), MAIN).unwrap();
        let e = Config::load_for_daemon(&dir.path().join("p.toml")).unwrap_err();
        assert_eq!(e.problems[0].key, KEY);
        assert!(e.problems[0].message.contains("cannot read the directory"));
    }

    #[test]
    fn the_main_files_own_problems_keep_their_line() {
        let dir = setup(&[("a.toml", server("a", 5038))]);
        std::fs::write(
            dir.path().join("perezvon.toml"),
            format!("{MAIN}\n[calls]\nresolve_within = \"soon\"\n"),
        )
        .unwrap();
        let e = Config::load_for_daemon(&dir.path().join("perezvon.toml")).unwrap_err();
        assert!(
            e.problems.iter().any(|p| p.key == "calls.resolve_within"),
            "{e}"
        );
    }

    #[test]
    fn blanking_touches_only_the_top_level_key() {
        let t = "servers_dir = \"d\"\n[x]\nservers_dir = 1\n";
        assert_eq!(
            blank_key_line(t),
            "# servers_dir = \"d\"\n[x]\nservers_dir = 1\n"
        );
    }
}
