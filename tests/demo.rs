//! `perezvon demo` on a machine with no Asterisk: the embedded lab plays the captures, the real
//! daemon detects the misses and calls back, and the demo prints the results.

use std::process::Command;

fn number_before(text: &str, words: &str) -> u64 {
    // "Summary: 46 inbound calls, 31 missed, 30 callbacks placed, 21 connected, 27 misses resolved in all."
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
    let reached = number_before(&stdout, "connected");
    assert!(missed >= 1, "{stdout}");
    assert!(placed >= 1, "{stdout}");
    assert!(reached >= 1, "{stdout}");
    // Every count printed agrees with every other: one definition of missed, resolved, reached.
    let inbound = number_before(&stdout, "inbound calls");
    let resolved = number_before(&stdout, "misses resolved in all");
    let header = format!("== Missed calls ({missed} of {inbound} inbound)");
    assert!(stdout.contains(&header), "{header:?} in\n{stdout}");
    let row = |label: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label) && l[label.len()..].starts_with("  "))
            .unwrap_or_else(|| panic!("{label:?} row in\n{stdout}"));
        line[label.len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("number in {line:?}"))
    };
    assert_eq!(row("Inbound calls"), inbound, "{stdout}");
    assert_eq!(row("Missed"), missed, "{stdout}");
    assert_eq!(row("  resolved"), resolved, "{stdout}");
    let callbacks = stdout
        .lines()
        .find(|l| l.starts_with("Callbacks: "))
        .expect("callbacks line");
    assert!(
        callbacks.starts_with(&format!(
            "Callbacks: {placed} attempts, {reached} connected"
        )),
        "{callbacks:?} vs the summary's {placed} placed, {reached} connected"
    );
    assert_eq!(
        row("connected"),
        reached,
        "attempt outcomes table vs the summary"
    );
    // The missed-call list has one row per miss, each number in one display form, and a miss
    // shown unresolved never belongs to a task closed as resolved.
    let section = stdout
        .split("== Missed calls")
        .nth(1)
        .and_then(|s| s.split("== Callbacks").next())
        .unwrap();
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("20")).collect();
    assert_eq!(rows.len() as u64, missed, "{section}");
    for r in &rows {
        let caller = r.split_whitespace().nth(2).unwrap();
        assert!(
            caller.starts_with('+') || caller == "(withheld)" || caller == "anonymous",
            "{caller} in {r}"
        );
        if r.contains("  -  ") && r.contains("cancelled") {
            panic!("an unresolved miss whose task says resolved: {r}");
        }
    }
    // Every callback placed was tied to a task and ended: nothing is left in progress.
    assert!(!stdout.contains("in progress"), "{stdout}");
    // Issue 14: the demo shows a requested callback and an owned one.
    let line = stdout
        .lines()
        .find(|l| l.contains("requested by the caller"))
        .expect("requested/owned line");
    let requested: u64 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(requested >= 1, "{line}");
    let owned: u64 = line
        .split("), ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("owned count in {line:?}"));
    assert!(owned >= 1, "{line}");
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
