//! The dialer's AMI side (`Originator for AmiHandle`) against the lab server on 127.0.0.1:0:
//! the Originate arrives byte for byte as built, and a queue's free members are counted from
//! QueueStatus.

use std::time::Duration;

use perezvon::ami::{self, LinkEvent};
use perezvon::callback::originate::{CallbackIds, DialNumber, OriginateRequest, OriginateSettings};
use perezvon::config::{Config, Target};
use perezvon::daemon::dialer::Originator;
use perezvon::demo::lab::{self, LabOptions, LabOutcome};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originate_and_queue_status_over_ami() {
    let stop = CancellationToken::new();
    let lab = lab::start(
        LabOptions {
            traffic: Vec::new(),
            script: |_, _| LabOutcome::Busy,
        },
        stop.clone(),
    )
    .await
    .unwrap();
    let cfg = Config::from_toml(&format!(
        "[[asterisk]]\nname = \"lab\"\nport = {}\nusername = \"u\"\nsecret = \"s\"\n\
         [callback]\ncaller_id = \"74951110000\"\ndial_template = \"Local/{{national}}@customer-sim\"\n",
        lab.addr.port()
    ))
    .unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    let (handle, _task) = ami::spawn(cfg.asterisk[0].clone(), tx, stop.clone());
    // Wait for the login.
    let up = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = rx.recv().await {
            if matches!(e, LinkEvent::Up { .. }) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(up);
    assert!(Originator::is_up(&handle));

    // The lab's sales queue has three idle, unpaused members.
    assert_eq!(
        handle
            .free_agents(&Target::Queue("sales".into()))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        handle
            .free_agents(&Target::Dialplan {
                context: "callback".into(),
                exten: "201".into(),
                priority: 1
            })
            .await
            .unwrap(),
        u32::MAX
    );

    let settings = OriginateSettings::from_config(&cfg.callback, &cfg.pbx.numbers);
    let n = DialNumber::check("79261112255", &cfg.callback.allow, &cfg.callback.deny).unwrap();
    let req = OriginateRequest::build(
        &settings,
        &n,
        &Target::Queue("sales".into()),
        CallbackIds::new(5, 1, 0xfeed),
    )
    .unwrap();
    handle.originate(&req).await.unwrap();
    // The OriginateResponse of the busy capture comes back with our ActionID.
    let or = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = rx.recv().await {
            if let LinkEvent::Message { msg, .. } = e {
                if let Some(r) = perezvon::callback::originate::OriginateResponse::parse(&msg) {
                    return Some(r);
                }
            }
        }
        None
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(or.action_id, "pzv-5-1-0000feed");
    assert!(!or.success);
    assert_eq!(or.reason, Some(5));
    let log = lab.log.lock().unwrap();
    let got: Vec<(String, String)> = log.originates[0]
        .headers()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        want.iter()
            .find(|(k, _)| k == "Application")
            .map(|(_, v)| v.as_str()),
        Some("Queue")
    );
    drop(log);
    stop.cancel();
}
