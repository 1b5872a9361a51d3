//! The core stays pure (the structural rule of `lib.rs`'s map): `src/calls/` (the tracker) and
//! `src/callback/` (the planner and its rules) use no store, no runtime, no sockets or files,
//! and never read the clock: time is an argument everywhere, so their tests need no waiting
//! and replay gives the same verdicts at any speed. The I/O shells live in `src/daemon/`.

use std::path::Path;

/// What the core must not name (as code, not in comments).
const FORBIDDEN: &[&str] = &[
    "crate::store",
    "crate::daemon",
    "crate::web",
    "crate::console",
    "crate::notify",
    "tokio",
    "rusqlite",
    "tokio_postgres",
    "std::net",
    "std::fs",
    "Timestamp::now",
    "Instant::now",
    "SystemTime::now",
    "thread::sleep",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn calls_and_callback_are_pure() {
    let mut files = Vec::new();
    rust_files(Path::new("src/calls"), &mut files);
    rust_files(Path::new("src/callback"), &mut files);
    assert!(files.len() > 5, "the core's files are where lib.rs says");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let mut in_tests = false;
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            // Unit tests may use what they like (a runtime for `tokio::time::pause`, files).
            if line.trim_start().starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            if in_tests {
                continue;
            }
            for bad in FORBIDDEN {
                if code.contains(bad) {
                    found.push(format!("{}:{}: {bad}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the pure core reaches out:\n{}",
        found.join("\n")
    );
}
