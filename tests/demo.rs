//! `perezvon demo` on a machine with no Asterisk: the embedded lab plays the captures, the real
//! daemon detects the misses and calls back, and the demo prints the results.

use std::process::Command;

fn number_before(text: &str, words: &str) -> u64 {
    // "Summary: 49 inbound calls, 34 missed, 35 callbacks placed, 23 customers reached by callback, ..."
    let line = text
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .expect("summary line");
    let idx = line
        .find(words)
        .unwrap_or_else(|| panic!("{words:?} in {line:?}"));
    line[..idx]
        .trim_end()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("number before {words:?} in {line:?}"))
}

#[test]
fn demo_detects_misses_and_connects_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let html = dir.path().join("demo.html");
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["demo", "--db"])
        .arg(&db)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("run perezvon demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    for section in ["== Missed calls", "== Callbacks", "== Report"] {
        assert!(stdout.contains(section), "{section} missing:\n{stdout}");
    }
    let missed = number_before(&stdout, "missed");
    let placed = number_before(&stdout, "callbacks placed");
    let reached = number_before(&stdout, "customers reached by callback");
    assert!(missed >= 1, "{stdout}");
    assert!(placed >= 1, "{stdout}");
    assert!(reached >= 1, "{stdout}");
    // Every callback placed was tied to a task and ended: nothing is left in progress.
    assert!(!stdout.contains("in progress"), "{stdout}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg"), "html report has charts");

    // The database the demo left behind is a normal perezvon database.
    let listed = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["callbacks", "list", "--format", "json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let tasks = String::from_utf8_lossy(&listed.stdout);
    assert!(tasks.lines().count() >= 1);
    assert!(
        tasks.lines().any(|l| l.contains("\"state\":\"done\"")),
        "{tasks}"
    );
}
