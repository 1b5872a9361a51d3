//! Gap backfill end to end: the real `perezvon run` against the fake Asterisk of
//! `fault_support`, which also writes Asterisk's cdr_csv for every call it plays. Calls that
//! happen while the AMI link is cut, or while perezvon is stopped, are decided from the CDR
//! after the reconnect (marked `backfilled`): a miss gets its callback like any other, an
//! answered call does not, and a call seen live is never touched.

mod fault_support;

use std::path::Path;
use std::time::Duration;

use fault_support::*;

const PATIENCE: Duration = Duration::from_secs(60);

fn num(i: u32) -> String {
    format!("7941{i:07}")
}

fn source_status(path: &Path, number: &str) -> Vec<(String, String)> {
    let Some(c) = db(path) else { return Vec::new() };
    let mut st = c
        .prepare(
            "SELECT source, status FROM calls WHERE direction = 'inbound' \
             AND caller_normalized = ?1 ORDER BY started_at",
        )
        .unwrap();
    st.query_map([number], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .filter_map(Result::ok)
        .collect()
}

fn originated_to(fake: &Fake, number: &str) -> bool {
    fake.originates().iter().any(|o| o.number == number)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_a_link_gap_and_while_stopped_are_backfilled_from_the_cdr() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(Box::new(|_, _| Plan {
        outcome: Outcome::Connected,
        hold: false,
    }))
    .await;
    let cdr = dir.path().join("Master.csv");
    fake.write_cdr(&cdr);
    let db = dir.path().join("perezvon.db");
    let settings = Settings {
        port: fake.port(),
        db: db.clone(),
        delay: "1s",
        retry_every: "5s",
        max_attempts: 1,
        max_concurrent: 10,
    };
    let config = dir.path().join("perezvon.toml");
    let text = format!(
        "{}\n[backfill]\ncdr = {:?}\ntimezone = \"UTC\"\n",
        config_text(&settings).replace("[storage]\n", "[storage]\nkeep_calls = \"2d\"\n"),
        cdr.display().to_string()
    );
    // Retention runs at start: a miss of three days ago goes, today's stay.
    {
        let s = perezvon::store::Store::open(&db).unwrap();
        let old = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(72);
        s.insert_call(&perezvon::calls::record::CallRecord {
            server: "fake".into(),
            linkedid: "old.1".into(),
            direction: perezvon::calls::record::Direction::Inbound,
            caller: Some("+79419999999".into()),
            caller_normalized: Some("79419999999".into()),
            callee: None,
            callee_normalized: None,
            started_at: old,
            ended_at: old,
            answered_at: None,
            wait_secs: 0.0,
            talk_secs: 0.0,
            agent: None,
            status: perezvon::calls::record::Status::Missed,
            missed: true,
            ignored: false,
            lost_at: Some(perezvon::calls::record::LostAt::Queue),
            hangup_by: None,
            resolved_by: None,
            resolved_at: None,
            resolved_by_linkedid: None,
            callback_id: None,
            callback_outcome: None,
            unknown_reason: None,
            queue: None,
        })
        .unwrap();
    }
    std::fs::write(&config, text).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log = dir.path().join("daemon.log");
    let mut d = Daemon::start(&config, &log);
    assert!(
        wait_for(PATIENCE, || fake.resyncs() >= 1).await,
        "{}",
        d.log_tail(40)
    );

    assert!(
        wait_for(PATIENCE, || call_by_linkedid(&db, "old.1").is_none()).await,
        "retention did not prune at start:\n{}",
        d.log_tail(20)
    );
    assert!(d.log_contains("retention: pruned"));

    // A miss seen live: stored from AMI, called back once.
    let live = num(1);
    let h = fake.miss(&live);
    assert!(tokio::time::timeout(PATIENCE, h.done.cancelled())
        .await
        .is_ok());
    assert!(
        wait_for(PATIENCE, || originated_to(&fake, &live)).await,
        "{}",
        d.log_tail(40)
    );
    // Let the watermark advance past the live call.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The link is cut; a miss and an answered call happen unseen.
    fake.cut_link(Duration::from_secs(25));
    let (gap_miss, gap_answered) = (num(2), num(3));
    let a = fake.miss(&gap_miss);
    let b = fake.answered(&gap_answered, false);
    assert!(tokio::time::timeout(PATIENCE, a.done.cancelled())
        .await
        .is_ok());
    assert!(tokio::time::timeout(PATIENCE, b.done.cancelled())
        .await
        .is_ok());
    assert!(
        wait_for(PATIENCE, || fake.resyncs() >= 2).await,
        "{}",
        d.log_tail(40)
    );
    assert!(
        wait_for(PATIENCE, || originated_to(&fake, &gap_miss)).await,
        "the gap's miss was never called back:\n{}",
        d.log_tail(60)
    );
    assert_eq!(
        source_status(&db, &gap_miss),
        [("backfilled".to_string(), "missed".to_string())]
    );
    assert!(
        wait_for(PATIENCE, || source_status(&db, &gap_answered)
            == [("backfilled".to_string(), "answered".to_string())])
        .await,
        "{:?}\n{}",
        source_status(&db, &gap_answered),
        d.log_tail(60)
    );
    assert!(!originated_to(&fake, &gap_answered));
    // The live miss is as AMI saw it, once.
    assert_eq!(
        source_status(&db, &live),
        [("ami".to_string(), "missed".to_string())]
    );
    assert!(d.log_contains("backfilled the AMI gap"));

    // perezvon stops; a miss happens; it starts again and finds it.
    d.term(Duration::from_secs(20)).await;
    let stopped = num(4);
    let c = fake.miss(&stopped);
    assert!(tokio::time::timeout(PATIENCE, c.done.cancelled())
        .await
        .is_ok());
    d.restart();
    assert!(
        wait_for(PATIENCE, || originated_to(&fake, &stopped)).await,
        "the miss while stopped was never called back:\n{}",
        d.log_tail(60)
    );
    assert_eq!(
        source_status(&db, &stopped),
        [("backfilled".to_string(), "missed".to_string())]
    );
    // Nothing was stored twice, and every backfilled miss has its task.
    for n in [&live, &gap_miss, &stopped] {
        assert_eq!(source_status(&db, n).len(), 1, "{n}");
    }
    assert!(misses_without_task(&db).is_empty());
    d.term(Duration::from_secs(20)).await;
}
