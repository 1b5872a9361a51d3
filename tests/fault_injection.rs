//! Fault injection (issue 9): the real `perezvon run` binary, as a child process, against a fake
//! Asterisk on 127.0.0.1:0 (`tests/fault_support`) that plays synthetic calls built from the lab
//! captures, keeps live calls across link cuts, reports them in `CoreShowChannels` and logs
//! every `Originate`. Each case breaks something and then judges by the SQLite database and the
//! fake's log; every case prints its figures (`name: N`) and asserts each is 0.
//!
//! | case | fault | figures |
//! |---|---|---|
//! | `kill_9_at_random_moments` | SIGKILL at random moments while misses arrive and callbacks run, N rounds | misses without a task, attempts over the policy, Originates to a customer whose call is up, overlapping Originates to one number, stored rows lost |
//! | `sigterm_restart_with_a_callback_and_an_inbound_call_up` | SIGTERM + restart while a callback (customer bridged to an agent) and an inbound call (a customer with an open task, talking to an agent) are up | Originates to a customer whose call is up, attempts burned while the link was down, callback not recorded as connected, inbound call not stored as inbound, stored rows lost |
//! | `link_cut_with_a_callback_and_an_inbound_call_up` | the same, the AMI TCP link cut (reconnects refused 3 s) instead of a restart | the same |
//! | `link_cut_during_a_batch_of_200_due_tasks` | 200 misses; the link is cut when the 3rd Originate arrives, reconnects refused 4 s | attempts failed as not sent, attempts burned while the link was down, misses without a task, attempts over the policy |
//! | `database_locked_longer_than_the_busy_timeout` | the test holds `BEGIN EXCLUSIVE` for 10 s (busy timeout 5 s) while misses end | verdicts lost during a store fault, misses without a task, daemon exits during the store fault |
//! | `disk_full` | the database on a 4 MiB tmpfs filled to the last byte while misses end (skipped, with a message, when `mount` fails) | the same |
//!
//! Short form (the default, CI): 4 kill rounds; the six cases take about 1.5 minutes on two cores
//! (they run in parallel; the longest, the kill case, about 45 s). Each long round adds ~6 s.
//! Long form: `PEREZVON_FAULT_ROUNDS=50 cargo test --locked --test fault_injection -- --nocapture`.
//! The random kill moments come from a seed printed at the start of the kill case;
//! `PEREZVON_FAULT_SEED=<seed>` plays the same moments again.
//!
//! `PEREZVON_FAULT_KEEP=1` keeps each case's directory (configuration, database, daemon log).
//!
//! Each miss of a case comes from a number of its own (`79<case><index>`), so "has a task" and
//! "attempts per number" need no further matching. The daemon's stderr goes to `daemon.log` in
//! the case's temporary directory; a failing case prints its last lines.

mod fault_support;

use std::path::PathBuf;
use std::time::Duration;

use fault_support::*;
use tokio_util::sync::CancellationToken;

/// Upper bound of every wait for the daemon; no assertion depends on the machine being fast.
const PATIENCE: Duration = Duration::from_secs(45);

/// `79<case:02><i:07>`: 11 digits, on the allow-list `^79\d{9}$`.
fn num(case: u32, i: u32) -> String {
    format!("79{case:02}{i:07}")
}

struct Case {
    // Dropped last (fields drop in order): the daemon and a mount go first.
    fake: Fake,
    db: PathBuf,
    config: PathBuf,
    log: PathBuf,
    settings: Settings,
    _dir: tempfile::TempDir,
}

async fn setup(script: Script, db_dir: Option<PathBuf>, f: impl FnOnce(&mut Settings)) -> Case {
    let mut dir = tempfile::tempdir().unwrap();
    if std::env::var_os("PEREZVON_FAULT_KEEP").is_some() {
        dir.disable_cleanup(true);
        println!("keeping {}", dir.path().display());
    }
    let fake = Fake::start(script).await;
    let db = db_dir
        .unwrap_or_else(|| dir.path().to_path_buf())
        .join("perezvon.db");
    let mut settings = Settings {
        port: fake.port(),
        db: db.clone(),
        delay: "1s",
        retry_every: "5s",
        max_attempts: 2,
        max_concurrent: 10,
    };
    f(&mut settings);
    let config = dir.path().join("perezvon.toml");
    std::fs::write(&config, config_text(&settings)).unwrap();
    // It holds a (fake) secret: not world-readable, or perezvon warns about it.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    Case {
        fake,
        db,
        config,
        log: dir.path().join("daemon.log"),
        settings,
        _dir: dir,
    }
}

impl Case {
    /// Starts the daemon and waits for its first CoreShowChannels (logged in, resynchronised).
    async fn daemon(&self) -> Daemon {
        let d = Daemon::start(&self.config, &self.log);
        let ok = wait_for(PATIENCE, || self.fake.resyncs() >= 1).await;
        if !ok {
            println!("{}", d.log_tail(40));
            panic!("perezvon never logged in and read the channels");
        }
        d
    }
}

async fn until(token: &CancellationToken, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, token.cancelled())
        .await
        .is_ok()
}

/// Attempts in the database whose Originate the fake never received.
fn never_received(c: &Case) -> Vec<String> {
    let got: std::collections::HashSet<String> = c
        .fake
        .originates()
        .into_iter()
        .map(|o| o.action_id)
        .collect();
    attempts(&c.db)
        .into_iter()
        .filter(|a| !got.contains(&a.callback_id))
        .map(|a| {
            format!(
                "{} ({}): {:?} {:?}",
                a.callback_id, a.number, a.outcome, a.detail
            )
        })
        .collect()
}

fn outcome_summary(c: &Case) -> String {
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for a in attempts(&c.db) {
        *by.entry(a.outcome.unwrap_or_else(|| "(in flight)".into()))
            .or_default() += 1;
    }
    format!("{by:?}")
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 at random moments
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments() {
    let rounds: u32 = std::env::var("PEREZVON_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let seed: u64 = std::env::var("PEREZVON_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("kill -9: {rounds} rounds, seed {seed} (PEREZVON_FAULT_SEED={seed} replays them)");
    let mut rng = fastrand::Rng::with_seed(seed);
    // A mix of outcomes: connected (~16 s), no answer (10 s), busy (at once).
    let script: Script = Box::new(|number, attempt| {
        let sum: u32 = number.bytes().map(|b| u32::from(b - b'0')).sum::<u32>() + attempt;
        let outcome = match sum % 3 {
            0 => Outcome::Connected,
            1 => Outcome::NoAnswer,
            _ => Outcome::Busy,
        };
        Plan {
            outcome,
            hold: false,
        }
    });
    let c = setup(script, None, |s| {
        s.delay = "1s";
        s.retry_every = "5s";
        s.max_attempts = 2;
        s.max_concurrent = 10;
    })
    .await;
    let mut d = c.daemon().await;
    let mut lost = Vec::new();
    let mut max_seen = 0;
    let mut next = 0;
    let mut emitted = Vec::new();
    for round in 0..rounds {
        // A burst of misses from numbers never used before, staggered over 1.5 s.
        let mut burst: Vec<(u64, String)> = (0..rng.u32(3..=6))
            .map(|_| {
                next += 1;
                (rng.u64(0..1500), num(1, next))
            })
            .collect();
        burst.sort();
        emitted.extend(burst.iter().map(|(_, n)| n.clone()));
        let fake = c.fake.clone();
        tokio::spawn(async move {
            let t0 = tokio::time::Instant::now();
            for (ms, n) in burst {
                tokio::time::sleep_until(t0 + Duration::from_millis(ms)).await;
                fake.miss(&n);
            }
        });
        let kill_at = rng.u64(500..9000);
        tokio::time::sleep(Duration::from_millis(kill_at)).await;
        d.kill9();
        let n = calls_count(&c.db);
        if n < max_seen {
            lost.push(format!(
                "round {round}: {n} calls stored after the kill, {max_seen} before"
            ));
        }
        max_seen = max_seen.max(n);
        let down = rng.u64(0..800);
        println!("  round {round}: killed {kill_at} ms into the round, {n} calls stored, restarted after {down} ms");
        tokio::time::sleep(Duration::from_millis(down)).await;
        d.restart();
    }
    // The last start acts on everything stored; the fake's calls end; attempts settle.
    let settled = wait_for(Duration::from_secs(75), || {
        c.fake.live_calls() == 0
            && misses_without_task(&c.db).is_empty()
            && attempts(&c.db).iter().all(|a| a.ended)
    })
    .await;
    let running = d.running();
    d.term(Duration::from_secs(20)).await;
    let n = calls_count(&c.db);
    if n < max_seen {
        lost.push(format!("at the end: {n} calls stored, {max_seen} before"));
    }
    let over = attempts_over_policy(&c.db, c.settings.max_attempts)
        .into_iter()
        .map(|(n, k)| format!("{n}: {k} attempts"))
        .collect();
    let mut f = Figures::new("kill -9 at random moments");
    f.note(format!(
        "{rounds} rounds (seed {seed}), {} misses played, {} stored as missed, {} tasks, {} Originates received, attempts by outcome {}",
        emitted.len(),
        stored_misses(&c.db, &emitted),
        tasks(&c.db).len(),
        c.fake.originates().len(),
        outcome_summary(&c),
    ))
    .note(format!(
        "settled before the final SIGTERM: {settled}; running then: {running}"
    ))
    .zero("misses without a task", misses_without_task(&c.db))
    .zero("attempts over the policy", over)
    .zero(
        "Originates to a customer whose call is up",
        c.fake.originates_while_up(),
    )
    .zero(
        "overlapping Originates to one number",
        c.fake
            .originates_during(|k| matches!(k, CallKind::Callback(_))),
    )
    .zero("stored rows lost", lost)
    .check(&d);
}

// ---------------------------------------------------------------------------------------------
// 2./3. a callback and an inbound call up across a restart / a link cut
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Restart,
    Cut,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_restart_with_a_callback_and_an_inbound_call_up() {
    calls_up_across(Fault::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_cut_with_a_callback_and_an_inbound_call_up() {
    calls_up_across(Fault::Cut).await;
}

/// Customer A missed and is called back: connected, bridged to agent 201, held up. Customer B
/// missed too, then called again and is talking to agent 201 (held up) while B's task falls
/// due. Then the fault; after it the fake lists both calls in CoreShowChannels; 10 s later
/// both end.
async fn calls_up_across(fault: Fault) {
    let case = if fault == Fault::Restart { 2 } else { 3 };
    let (a, b) = (num(case, 1), num(case, 2));
    let a_script = a.clone();
    let script: Script = Box::new(move |number, _| Plan {
        outcome: if number == a_script {
            Outcome::Connected
        } else {
            Outcome::Busy
        },
        hold: number == a_script,
    });
    // A 6 s delay: B's task falls due ~5 s into B's second call.
    let c = setup(script, None, |s| {
        s.delay = "6s";
        s.retry_every = "30s";
        s.max_attempts = 2;
        s.max_concurrent = 2;
    })
    .await;
    let mut d = c.daemon().await;
    c.fake.miss(&a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let miss_b = c.fake.miss(&b);
    assert!(until(&miss_b.done, PATIENCE).await, "B's miss never ended");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let call_b = c.fake.answered(&b, true);
    let got_callback = wait_for(PATIENCE, || {
        c.fake
            .handle_of(&a, |k| matches!(k, CallKind::Callback(_)))
            .is_some_and(|h| h.held.is_cancelled())
    })
    .await;
    if !got_callback {
        println!("{}", d.log_tail(60));
        panic!(
            "no connected callback to A within {PATIENCE:?} (Originates: {:?})",
            c.fake.originates()
        );
    }
    let cb_a = c
        .fake
        .handle_of(&a, |k| matches!(k, CallKind::Callback(_)))
        .unwrap();
    assert!(
        until(&call_b.held, PATIENCE).await,
        "B's call never got to the agent"
    );
    let calls_before = calls_count(&c.db);
    let resyncs = c.fake.resyncs();
    let mut notes = Vec::new();
    match fault {
        Fault::Restart => {
            let st = d.term(Duration::from_secs(20)).await;
            notes.push(format!("SIGTERM with both calls up: exit {st:?}"));
            tokio::time::sleep(Duration::from_secs(1)).await;
            d.restart();
        }
        Fault::Cut => {
            c.fake.cut_link(Duration::from_secs(3));
            notes.push("link cut with both calls up, reconnects refused for 3 s".into());
        }
    }
    let back = wait_for(PATIENCE, || c.fake.resyncs() > resyncs).await;
    notes.push(format!(
        "CoreShowChannels after the fault: {back} ({} channels live on the fake)",
        c.fake.live_channels()
    ));
    // Both customers are on a call: 10 s in which nothing may dial them (B's task is due), and
    // long enough (> min_talk) to prove the callback connected from what is seen after the fault.
    tokio::time::sleep(Duration::from_secs(10)).await;
    cb_a.release.cancel();
    call_b.release.cancel();
    let stored = wait_for(PATIENCE, || {
        attempts(&c.db)
            .iter()
            .filter(|x| x.number == a)
            .all(|x| x.ended)
            && call_by_linkedid(&c.db, &call_b.linkedid).is_some()
    })
    .await;
    notes.push(format!("A's attempt ended and B's call stored: {stored}"));
    // A wrong Originate right after the calls (a miss not seen as resolved) would show here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let running = d.running();
    d.term(Duration::from_secs(20)).await;
    notes.push(format!("running at the end: {running}"));

    let all = attempts(&c.db);
    let burned: Vec<String> = all
        .iter()
        .filter(|x| matches!(x.outcome.as_deref(), Some("unknown" | "no_answer")))
        .map(|x| {
            format!(
                "{} ({}): {:?} {:?}",
                x.callback_id, x.number, x.outcome, x.detail
            )
        })
        .chain(never_received(&c))
        .collect();
    let mut not_connected = Vec::new();
    let of_a: Vec<&AttemptRow> = all.iter().filter(|x| x.number == a).collect();
    if of_a.len() != 1 {
        not_connected.push(format!("A has {} attempts: {of_a:?}", of_a.len()));
    }
    for x in &of_a {
        if x.outcome.as_deref() != Some("connected") {
            not_connected.push(format!(
                "attempt {}: outcome {:?} ({:?})",
                x.callback_id, x.outcome, x.detail
            ));
        }
    }
    let all_tasks = tasks(&c.db);
    match all_tasks.iter().find(|t| t.number == a) {
        Some(t) if t.state == "done" => {}
        other => not_connected.push(format!("A's task is not done: {other:?}")),
    }
    let b_task = all_tasks.iter().find(|t| t.number == b);
    notes.push(format!("B's task: {b_task:?}"));
    let b_call = call_by_linkedid(&c.db, &call_b.linkedid);
    notes.push(format!("B's second call stored as: {b_call:?}"));
    let not_inbound: Vec<String> = match &b_call {
        Some((dir, _, _)) if dir == "inbound" => Vec::new(),
        other => vec![format!("B's call {}: {other:?}", call_b.linkedid)],
    };
    let calls_after = calls_count(&c.db);
    let lost = if calls_after < calls_before {
        vec![format!(
            "{calls_before} calls before the fault, {calls_after} after"
        )]
    } else {
        Vec::new()
    };
    let mut f = Figures::new(if fault == Fault::Restart {
        "SIGTERM restart with a callback and an inbound call up"
    } else {
        "link cut with a callback and an inbound call up"
    });
    for n in notes {
        f.note(n);
    }
    f.note(format!(
        "Originates received: {:?}",
        c.fake
            .originates()
            .iter()
            .map(|o| (o.action_id.clone(), o.number.clone()))
            .collect::<Vec<_>>()
    ))
    .zero(
        "Originates to a customer whose call is up",
        c.fake.originates_while_up(),
    )
    .zero("attempts burned while the link was down", burned)
    .zero("callback not recorded as connected", not_connected)
    .zero("inbound call not stored as inbound", not_inbound)
    .zero("stored rows lost", lost)
    .check(&d);
}

// ---------------------------------------------------------------------------------------------
// 4. the link cut during a batch of 200 due tasks
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_cut_during_a_batch_of_200_due_tasks() {
    const N: u32 = 200;
    let script: Script = Box::new(|_, _| Plan {
        outcome: Outcome::Busy,
        hold: false,
    });
    // All misses end (5-6 s) before the first task falls due (8 s): none of them is lost in
    // the cut. One attempt each: the retry is 10 minutes away.
    let c = setup(script, None, |s| {
        s.delay = "3s";
        s.retry_every = "10m";
        s.max_attempts = 2;
        s.max_concurrent = 500;
    })
    .await;
    c.fake.cut_on_originate(3, Duration::from_secs(4));
    let mut d = c.daemon().await;
    let numbers: Vec<String> = (1..=N).map(|i| num(4, i)).collect();
    let fake = c.fake.clone();
    let play = numbers.clone();
    tokio::spawn(async move {
        for (i, n) in play.iter().enumerate() {
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            fake.miss(n);
        }
    });
    let cut = wait_for(Duration::from_secs(60), || c.fake.cuts() >= 1).await;
    let resyncs = c.fake.resyncs();
    let back = wait_for(PATIENCE, || c.fake.resyncs() > resyncs).await;
    let done = wait_for(Duration::from_secs(90), || {
        let t = tasks(&c.db);
        let stored = stored_misses(&c.db, &numbers);
        stored > 0
            && t.len() >= stored
            && t.iter().all(|t| t.attempts >= 1)
            && attempts(&c.db).iter().all(|a| a.ended)
    })
    .await;
    let running = d.running();
    d.term(Duration::from_secs(20)).await;

    let all = attempts(&c.db);
    let not_sent: Vec<String> = all
        .iter()
        .filter(|a| {
            a.outcome.as_deref() == Some("failed")
                && a.detail
                    .as_deref()
                    .is_some_and(|d| d.to_ascii_lowercase().contains("not sent"))
        })
        .map(|a| format!("{} ({}): {:?}", a.callback_id, a.number, a.detail))
        .collect();
    let over = attempts_over_policy(&c.db, c.settings.max_attempts)
        .into_iter()
        .map(|(n, k)| format!("{n}: {k} attempts"))
        .collect();
    let mut f = Figures::new("link cut during a batch of 200 due tasks");
    f.note(format!(
        "cut: {cut}, reconnected: {back} ({} connections refused meanwhile), all tasks tried: {done}, running at the end: {running}",
        c.fake.refused()
    ))
    .note(format!(
        "{} of {N} misses stored, {} tasks, {} attempts {}, {} Originates received ({} not answered: read while cutting)",
        stored_misses(&c.db, &numbers),
        tasks(&c.db).len(),
        all.len(),
        outcome_summary(&c),
        c.fake.originates().len(),
        c.fake.originates().iter().filter(|o| o.unanswered).count(),
    ))
    .zero("attempts failed as not sent", not_sent)
    .zero("attempts burned while the link was down", never_received(&c))
    .zero("misses without a task", misses_without_task(&c.db))
    .zero("attempts over the policy", over)
    .check(&d);
}

// ---------------------------------------------------------------------------------------------
// 5. the store fails: a long lock, a full disk
// ---------------------------------------------------------------------------------------------

/// Plays `n` misses (staggered over 1.5 s, ending 5-6.5 s from now) from fresh numbers.
fn misses(c: &Case, case: u32, n: u32) -> Vec<String> {
    let numbers: Vec<String> = (1..=n).map(|i| num(case, i)).collect();
    let fake = c.fake.clone();
    let play = numbers.clone();
    tokio::spawn(async move {
        for n in play {
            fake.miss(&n);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    numbers
}

/// Watches the daemon for `d`; the exit status if it ended meanwhile.
async fn watch(daemon: &mut Daemon, d: Duration) -> Option<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < deadline {
        if let Some(st) = daemon.exited() {
            return Some(st);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// What the store-fault cases judge by, after the fault is gone.
async fn after_store_fault(
    c: &Case,
    mut d: Daemon,
    name: &'static str,
    numbers: &[String],
    mut exits: Vec<String>,
    mut notes: Vec<String>,
) {
    let stored = wait_for(Duration::from_secs(75), || {
        stored_misses(&c.db, numbers) == numbers.len() && misses_without_task(&c.db).is_empty()
    })
    .await;
    if let Some(st) = d.exited() {
        exits.push(format!("exited after the fault: {st}"));
    }
    notes.push(format!(
        "all verdicts stored after the fault: {stored}; the daemon said the store failed: {}",
        d.log_contains("cannot store call verdicts")
    ));
    d.term(Duration::from_secs(20)).await;
    let stored_numbers = stored_misses(&c.db, numbers);
    let lost: Vec<String> = numbers
        .iter()
        .filter(|n| stored_misses(&c.db, std::slice::from_ref(n)) == 0)
        .map(|n| format!("the miss of {n} is not stored"))
        .collect();
    let mut f = Figures::new(name);
    for n in notes {
        f.note(n);
    }
    f.note(format!(
        "{stored_numbers} of {} misses stored, {} tasks",
        numbers.len(),
        tasks(&c.db).len()
    ))
    .zero("verdicts lost during a store fault", lost)
    .zero("misses without a task", misses_without_task(&c.db))
    .zero("daemon exits during the store fault", exits)
    .check(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_locked_longer_than_the_busy_timeout() {
    let script: Script = Box::new(|_, _| Plan {
        outcome: Outcome::Busy,
        hold: false,
    });
    // No callback is due during the case: it is about storing verdicts and tasks.
    let c = setup(script, None, |s| s.delay = "10m").await;
    let mut d = c.daemon().await;
    let numbers = misses(&c, 5, 6);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The misses end 2-3.5 s into the lock; each write then waits the 5 s busy timeout and
    // fails while the lock is still held.
    let lock = rusqlite::Connection::open(&c.db).unwrap();
    lock.busy_timeout(Duration::from_secs(10)).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut exits = Vec::new();
    if let Some(st) = watch(&mut d, Duration::from_secs(10)).await {
        exits.push(format!("exited while the database was locked: {st}"));
    }
    let during = stored_misses(&c.db, &numbers);
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let notes = vec![format!(
        "BEGIN EXCLUSIVE held 10 s; misses stored meanwhile: {during} of {}",
        numbers.len()
    )];
    after_store_fault(
        &c,
        d,
        "database locked longer than the busy timeout",
        &numbers,
        exits,
        notes,
    )
    .await;
}

/// A tmpfs mounted for the case, unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros to `path` until the file system is full; the bytes written.
fn fill(path: &std::path::Path) -> u64 {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).unwrap();
    let mut total = 0u64;
    for chunk in [1 << 20, 1 << 12, 1 << 9] {
        let buf = vec![0u8; chunk];
        while let Ok(n) = f.write(&buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    let _ = f.sync_all();
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full() {
    let dir = tempfile::tempdir().unwrap();
    let fs = dir.path().join("fs");
    std::fs::create_dir(&fs).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&fs)
        .stderr(std::process::Stdio::piped())
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "disk full: skipped, cannot mount a tmpfs ({}): needs root",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            println!("disk full: skipped, cannot run mount: {e}");
            return;
        }
    }
    let _mount = Mount(fs.clone());
    let script: Script = Box::new(|_, _| Plan {
        outcome: Outcome::Busy,
        hold: false,
    });
    let c = setup(script, Some(fs.clone()), |s| s.delay = "10m").await;
    let mut d = c.daemon().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let filler = fs.join("filler");
    let filled = fill(&filler);
    let numbers = misses(&c, 6, 6);
    let mut exits = Vec::new();
    if let Some(st) = watch(&mut d, Duration::from_secs(10)).await {
        exits.push(format!("exited while the disk was full: {st}"));
    }
    let during = stored_misses(&c.db, &numbers);
    std::fs::remove_file(&filler).unwrap();
    let notes = vec![format!(
        "4 MiB tmpfs, {filled} bytes of filler, full for 10 s; misses stored meanwhile: {during} of {}",
        numbers.len()
    )];
    after_store_fault(&c, d, "disk full", &numbers, exits, notes).await;
    drop(c);
}
