//! `perezvon replay` streams its input: the verdicts are exactly those of the whole-file
//! pipeline (read back from the store at the end, resolutions included, in the order the calls
//! ended), for several files and for standard input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use perezvon::ami::codec::decode_all;
use perezvon::calls::record::Timestamp;
use perezvon::config::Config;
use perezvon::daemon::ingest::{event_time, Pipeline};
use perezvon::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_perezvon");
const LAB: &str = "fixtures/asterisk-22/lab.toml";

fn fixtures() -> Vec<PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir("fixtures/asterisk-22")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ami"))
        .collect();
    paths.sort();
    paths
}

/// What replay printed before it streamed: every file read and decoded whole, every verdict
/// read back from the store once the input ended.
fn reference(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let cfg = Config::load(Path::new(LAB)).unwrap();
    let mut p = Pipeline::new(&cfg, Store::open_in_memory().unwrap()).report_duplicates(true);
    let mut now = Timestamp::UNIX_EPOCH;
    let mut order = Vec::new();
    for f in files {
        let (msgs, _) = decode_all(&std::fs::read(f).unwrap());
        for m in &msgs {
            let t = event_time(m, now);
            if t > now {
                now = t;
            }
            order.extend(p.feed("lab", m, now).unwrap());
        }
    }
    order.extend(p.finish(now).unwrap());
    order
        .iter()
        .map(|r| {
            let stored = p.store().get_call(&r.server, &r.linkedid).unwrap().unwrap();
            serde_json::to_value(stored).unwrap()
        })
        .collect()
}

fn replay(args: &[&str], stdin: Option<&[u8]>) -> (Vec<serde_json::Value>, String) {
    let mut child = Command::new(BIN)
        .arg("replay")
        .args(["--config", LAB])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        let mut w = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&bytes);
        });
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, stderr)
}

#[test]
fn several_files_stream_to_the_whole_file_verdicts() {
    let files = fixtures();
    let expect = reference(&files);
    assert!(expect.len() > 50, "{}", expect.len());
    assert!(expect.iter().any(|v| !v["resolved_by"].is_null()));
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let (got, stderr) = replay(&args, None);
    assert_eq!(got.len(), expect.len());
    for (g, e) in got.iter().zip(&expect) {
        assert_eq!(g, e);
    }
    assert!(!stderr.contains("no Timestamp"), "{stderr}");
}

#[test]
fn standard_input_is_a_capture_too() {
    let files = fixtures();
    let (a, b) = (&files[0], &files[files.len() - 1]);
    let mut both = std::fs::read(a).unwrap();
    both.extend(std::fs::read(b).unwrap());
    let (from_files, _) = replay(&[a.to_str().unwrap(), b.to_str().unwrap()], None);
    let (from_stdin, _) = replay(&["-"], Some(&both));
    assert_eq!(from_stdin, from_files);
    assert_eq!(from_files, reference(&[a.clone(), b.clone()]));

    // Between files, and only once.
    let (mixed, _) = replay(
        &[a.to_str().unwrap(), "-"],
        Some(&std::fs::read(b).unwrap()),
    );
    assert_eq!(mixed, from_files);
    let out = Command::new(BIN)
        .args(["replay", "-", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard input"));
}

#[test]
fn an_older_capture_after_a_newer_one_still_gets_its_resolutions() {
    // The same calls 30 days earlier: far past resolve_within (7 d) behind the first file.
    let month = 30 * 86_400;
    let text = std::fs::read("fixtures/asterisk-22/resolved_by_agent_outbound.ami").unwrap();
    let mut older = Vec::new();
    for line in text.split_inclusive(|&b| b == b'\n') {
        match line.strip_prefix(b"Timestamp: ") {
            Some(v) => {
                let v = std::str::from_utf8(v).unwrap().trim_end();
                let (s, us) = v.split_once('.').unwrap();
                let s: i64 = s.parse().unwrap();
                older.extend(format!("Timestamp: {}.{us}\r\n", s - month).bytes());
            }
            None => older.extend_from_slice(line),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("older.ami");
    std::fs::write(&p, &older).unwrap();
    let newer = PathBuf::from("fixtures/asterisk-22/answered_by_agent.ami");
    let files = [newer, p];
    let expect = reference(&files);
    assert!(expect.iter().any(|v| !v["resolved_by"].is_null()));
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let (got, _) = replay(&args, None);
    assert_eq!(got, expect);
}

#[test]
fn a_final_verdict_is_printed_before_the_input_ends() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args(["replay", "--config", LAB, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // An answered call: final as soon as it ends. The pipe stays open.
    stdin
        .write_all(&std::fs::read("fixtures/asterisk-22/answered_by_agent.ami").unwrap())
        .unwrap();
    stdin.flush().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let _ = tx.send(l.unwrap());
        }
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("no verdict while the input is still open");
    assert!(line.contains("\"status\":\"answered\""), "{line}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert!(rx.recv().is_err(), "one call, one line");
}
