//! The client and supervisor against a fake Asterisk on 127.0.0.1: exact login bytes, routing of
//! responses / events / lists, timeouts, keepalive, reconnects and a wrong password.

mod ami_fake;

use std::time::Duration;

use ami_fake::*;
use perezvon::ami::{self, Action, AmiError, AmiHandle, LinkEvent};
use perezvon::config::{AsteriskConfig, AuthType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A client logged in (MD5) to a fake Asterisk on 127.0.0.1, its LinkUp already taken from the
/// stream.
struct Session {
    handle: AmiHandle,
    task: tokio::task::JoinHandle<()>,
    rx: mpsc::Receiver<LinkEvent>,
    peer: Peer,
    stop: CancellationToken,
}

/// Starts a client with the test configuration, changed by `tune`, and answers its login.
async fn logged_in(tune: impl FnOnce(&mut AsteriskConfig)) -> Session {
    let (l, port) = listener().await;
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut cfg = config(port, AuthType::Md5);
    tune(&mut cfg);
    let (handle, task) = ami::spawn(cfg, tx, stop.clone());
    let mut peer = accept(&l).await;
    peer.login_md5("s3cret", b"").await;
    assert_eq!(label(&next(&mut rx).await), "Up");
    Session {
        handle,
        task,
        rx,
        peer,
        stop,
    }
}

#[tokio::test]
async fn md5_login_exact_bytes_and_stream_bytes_in_the_same_read() {
    let (l, port) = listener().await;
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let (handle, task) = ami::spawn(config(port, AuthType::Md5), tx, stop.clone());
    let mut peer = accept(&l).await;
    peer.login_md5("s3cret", FULLY_BOOTED).await;
    assert!(matches!(next(&mut rx).await, LinkEvent::Up { ref server, .. } if &**server == "fake"));
    match next(&mut rx).await {
        LinkEvent::Message { msg, .. } => assert_eq!(msg.event(), Some(&b"FullyBooted"[..])),
        other => panic!("{other:?}"),
    }
    assert!(handle.is_up());
    assert_eq!(handle.server(), "fake");
    stop.cancel();
    assert_eq!(label(&next(&mut rx).await), "Down");
    // A polite Logoff on the way out.
    let bye = peer.read_action().await;
    assert!(bye.starts_with(b"Action: Logoff\r\n"), "{bye:?}");
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    assert!(!handle.is_up());
}

#[tokio::test]
async fn plain_login_exact_bytes() {
    let (l, port) = listener().await;
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut cfg = config(port, AuthType::Plain);
    cfg.events = "call,agent".into();
    let (_handle, _task) = ami::spawn(cfg, tx, stop.clone());
    let mut peer = accept(&l).await;
    // The banner split across two writes, as TCP may deliver it.
    peer.write(b"Asterisk Call Man").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    peer.write(b"ager/11.0.0\r\n").await;
    assert_eq!(
        String::from_utf8_lossy(&peer.read_action().await),
        "Action: Login\r\nActionID: perezvon-login\r\nUsername: perezvon\r\nSecret: s3cret\r\nEvents: call,agent\r\n\r\n"
    );
    peer.write(b"Response: Success\r\nActionID: perezvon-login\r\nMessage: Authentication accepted\r\n\r\n")
        .await;
    assert_eq!(label(&next(&mut rx).await), "Up");
    stop.cancel();
}

#[tokio::test]
async fn response_goes_to_caller_and_events_with_its_actionid_to_the_stream() {
    let Session {
        handle,
        task: _task,
        mut rx,
        mut peer,
        stop,
    } = logged_in(|_| {}).await;

    let h = handle.clone();
    let call = tokio::spawn(async move {
        h.send(
            Action::new("Originate")
                .header("Channel", "Local/200@customer-sim")
                .header("Async", "true"),
        )
        .await
    });
    let raw = peer.read_action().await;
    let id = action_id(&raw);
    assert!(id.starts_with("pz"), "{id}");
    // OriginateResponse (an *event* with our ActionID) before the action's Response.
    peer.write(
        format!(
            "Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {id}\r\nResponse: Failure\r\nReason: 1\r\n\r\n\
             Response: Success\r\nActionID: {id}\r\nMessage: Originate successfully queued\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let resp = call.await.unwrap().unwrap();
    assert_eq!(
        resp.get_str("Message").unwrap(),
        "Originate successfully queued"
    );
    match next(&mut rx).await {
        LinkEvent::Message { msg, .. } => {
            assert_eq!(msg.event(), Some(&b"OriginateResponse"[..]));
            assert_eq!(msg.action_id(), Some(id.as_bytes()));
        }
        other => panic!("{other:?}"),
    }

    // Response: Error becomes Rejected with Asterisk's message.
    let h = handle.clone();
    let call = tokio::spawn(async move { h.send(Action::new("Setvar").action_id("mine-1")).await });
    let raw = peer.read_action().await;
    assert_eq!(action_id(&raw), "mine-1");
    peer.write(b"Response: Error\r\nActionID: mine-1\r\nMessage: No variable specified\r\n\r\n")
        .await;
    match call.await.unwrap() {
        Err(AmiError::Rejected { action, message }) => {
            assert_eq!(action, "Setvar");
            assert_eq!(message, "No variable specified");
        }
        other => panic!("{other:?}"),
    }

    // An action that cannot be encoded never reaches the wire.
    let bad = handle
        .send(Action::new("Originate").header("Channel", "x\r\nApplication: System"))
        .await;
    assert!(matches!(bad, Err(AmiError::Invalid(_))), "{bad:?}");
    stop.cancel();
}

#[tokio::test]
async fn unanswered_action_times_out_and_the_link_stays_usable() {
    let Session {
        handle,
        task: _task,
        mut rx,
        mut peer,
        stop,
    } = logged_in(|c| c.action_timeout = Duration::from_millis(300)).await;
    let r = handle.send(Action::new("Status")).await;
    assert!(
        matches!(r, Err(AmiError::Timeout { ref action, .. }) if action == "Status"),
        "{r:?}"
    );
    let first = peer.read_action().await;
    // The late Response of the timed-out action is not lost: it goes to the stream.
    peer.write(
        format!(
            "Response: Success\r\nActionID: {}\r\n\r\n",
            action_id(&first)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(label(&next(&mut rx).await), "Success");
    let h = handle.clone();
    let call = tokio::spawn(async move { h.send(Action::new("Ping")).await });
    let raw = peer.read_action().await;
    peer.write(
        format!(
            "Response: Success\r\nActionID: {}\r\nPing: Pong\r\n\r\n",
            action_id(&raw)
        )
        .as_bytes(),
    )
    .await;
    assert!(call.await.unwrap().is_ok());
    stop.cancel();
}

#[tokio::test]
async fn event_list_items_go_to_the_caller_other_events_to_the_stream() {
    let Session {
        handle,
        task: _task,
        mut rx,
        mut peer,
        stop,
    } = logged_in(|_| {}).await;
    let h = handle.clone();
    let call = tokio::spawn(async move { h.send_list(Action::new("CoreShowChannels")).await });
    let id = action_id(&peer.read_action().await);
    let item = |n: u32| {
        format!("Event: CoreShowChannel\r\nActionID: {id}\r\nChannel: Local/{n}@x-0001;1\r\nLinkedid: 17.{n}\r\n\r\n")
    };
    let script = format!(
        "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n{}\
         Event: Newchannel\r\nChannel: Local/9@x;1\r\n\r\n\
         Event: CoreShowChannel\r\nActionID: someone-else\r\nChannel: SIP/1\r\n\r\n{}\
         Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 2\r\n\r\n",
        item(1),
        item(2)
    );
    // Byte by byte: list collection must not depend on how reads split.
    for b in script.as_bytes() {
        peer.write(&[*b]).await;
    }
    let (resp, items) = call.await.unwrap().unwrap();
    assert!(resp.is(b"EventList", b"start"));
    let chans: Vec<_> = items
        .iter()
        .map(|m| m.get_str("Channel").unwrap().into_owned())
        .collect();
    assert_eq!(chans, vec!["Local/1@x-0001;1", "Local/2@x-0001;1"]);
    assert_eq!(label(&next(&mut rx).await), "Newchannel");
    match next(&mut rx).await {
        LinkEvent::Message { msg, .. } => assert_eq!(msg.action_id(), Some(&b"someone-else"[..])),
        other => panic!("{other:?}"),
    }
    // An old-style list: no EventList header on the last event, only its name.
    let h = handle.clone();
    let call = tokio::spawn(async move { h.send_list(Action::new("Status")).await });
    let id = action_id(&peer.read_action().await);
    peer.write(
        format!(
            "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channel status will follow\r\n\r\n\
             Event: Status\r\nActionID: {id}\r\nChannel: SIP/1-0001\r\n\r\n\
             Event: StatusComplete\r\nActionID: {id}\r\nItems: 1\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let (_, items) = call.await.unwrap().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].event(), Some(&b"Status"[..]));
    // An empty list answered with Response: Error is Rejected.
    let h = handle.clone();
    let call = tokio::spawn(async move { h.send_list(Action::new("QueueStatus")).await });
    let id = action_id(&peer.read_action().await);
    peer.write(
        format!("Response: Error\r\nActionID: {id}\r\nMessage: Permission denied\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(matches!(
        call.await.unwrap(),
        Err(AmiError::Rejected { .. })
    ));
    stop.cancel();
}

#[tokio::test]
async fn drop_mid_message_reconnects_with_down_then_up() {
    let (l, port) = listener().await;
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let (handle, _task) = ami::spawn(config(port, AuthType::Md5), tx, stop.clone());
    let mut peer = accept(&l).await;
    peer.login_md5("s3cret", FULLY_BOOTED).await;
    peer.write(b"Event: Newchannel\r\nChannel: Local/1@x;1\r\n\r\nEvent: Hangup\r\nChannel: Local/1@x;1\r\nCau")
        .await;
    drop(peer);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next(&mut rx).await);
    }
    let labels: Vec<_> = seen.iter().map(label).collect();
    // The half Hangup is never delivered as if it were whole.
    assert_eq!(labels, ["Up", "FullyBooted", "Newchannel", "Down"]);
    match &seen[3] {
        LinkEvent::Down { reason, .. } => {
            assert!(reason.contains("middle of a message"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let r = handle.send(Action::new("Ping")).await;
    assert!(matches!(r, Err(AmiError::NotConnected)), "{r:?}");
    // The server comes back: the same handle works again.
    let mut peer = accept(&l).await;
    peer.login_md5("s3cret", FULLY_BOOTED).await;
    assert_eq!(label(&next(&mut rx).await), "Up");
    assert_eq!(label(&next(&mut rx).await), "FullyBooted");
    let h = handle.clone();
    let call = tokio::spawn(async move { h.send(Action::new("Ping")).await });
    let id = action_id(&peer.read_action().await);
    peer.write(format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\n\r\n").as_bytes())
        .await;
    assert!(call.await.unwrap().is_ok());
    assert!(handle.last_error().is_none());
    stop.cancel();
    assert_eq!(label(&next(&mut rx).await), "Down");
}

#[tokio::test]
async fn wrong_password_is_a_clear_error_and_retried_slowly() {
    let (l, port) = listener().await;
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut cfg = config(port, AuthType::Md5);
    cfg.reconnect_max = Duration::from_secs(30);
    let (handle, _task) = ami::spawn(cfg, tx, stop.clone());
    let mut peer = accept(&l).await;
    peer.write(BANNER).await;
    let _challenge = peer.read_action().await;
    peer.write(
        format!(
            "Response: Success\r\nActionID: perezvon-challenge\r\nChallenge: {CHALLENGE}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let _login = peer.read_action().await;
    peer.write(
        b"Response: Error\r\nActionID: perezvon-login\r\nMessage: Authentication failed\r\n\r\n",
    )
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let err = loop {
        if let Some(e) = handle.last_error() {
            break e;
        }
        assert!(tokio::time::Instant::now() < deadline, "no error reported");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(err.contains("Authentication failed"), "{err}");
    assert!(err.contains("perezvon"), "names the user: {err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!handle.is_up());
    assert!(matches!(
        handle.send(Action::new("Ping")).await,
        Err(AmiError::NotConnected)
    ));
    // No Up was ever sent, and no quick retry: the slow retry waits at least half the cap.
    let quick = tokio::time::timeout(Duration::from_secs(2), l.accept()).await;
    assert!(quick.is_err(), "retried a wrong password within 2 s");
    assert!(rx.try_recv().is_err());
    stop.cancel();
}

#[tokio::test]
async fn unanswered_ping_is_a_dead_link_within_two_intervals() {
    let Session {
        handle: _handle,
        task: _task,
        mut rx,
        mut peer,
        stop,
    } = logged_in(|c| c.ping_interval = Duration::from_millis(400)).await;
    // Pings answered for a while keep the link up...
    let started = tokio::time::Instant::now();
    let mut answered = 0;
    while answered < 3 {
        let a = peer.read_action().await;
        assert!(a.starts_with(b"Action: Ping\r\nActionID: "), "{a:?}");
        let id = action_id(&a);
        peer.write(format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\n\r\n").as_bytes())
            .await;
        answered += 1;
    }
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert!(
        rx.try_recv().is_err(),
        "link must stay up while Pings are answered"
    );
    // ...then one is left unanswered (the socket stays open: only the reply is missing).
    let _ping = peer.read_action().await;
    match next(&mut rx).await {
        LinkEvent::Down { reason, .. } => assert!(reason.contains("Ping"), "{reason}"),
        other => panic!("{other:?}"),
    }
    stop.cancel();
}

#[tokio::test]
async fn slow_consumer_gets_everything_in_order() {
    let (l, port) = listener().await;
    // A tiny channel: the client must wait, not drop.
    let (tx, mut rx) = mpsc::channel(2);
    let stop = CancellationToken::new();
    let (_handle, _task) = ami::spawn(config(port, AuthType::Md5), tx, stop.clone());
    let mut peer = accept(&l).await;
    let mut burst = Vec::new();
    for i in 0..2000 {
        burst.extend_from_slice(format!("Event: Test\r\nN: {i}\r\n\r\n").as_bytes());
    }
    peer.login_md5("s3cret", &burst).await;
    assert_eq!(label(&next(&mut rx).await), "Up");
    for i in 0..2000 {
        if i % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match next(&mut rx).await {
            LinkEvent::Message { msg, .. } => assert_eq!(msg.get_str("N").unwrap(), i.to_string()),
            other => panic!("{other:?}"),
        }
    }
    stop.cancel();
}

#[tokio::test]
async fn two_servers_two_supervisors_one_consumer() {
    let (l1, p1) = listener().await;
    let (l2, p2) = listener().await;
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut c2 = config(p2, AuthType::Md5);
    c2.name = "second".into();
    let (h1, _t1) = ami::spawn(config(p1, AuthType::Md5), tx.clone(), stop.clone());
    let (h2, _t2) = ami::spawn(c2, tx, stop.clone());
    let mut a = accept(&l1).await;
    a.login_md5("s3cret", FULLY_BOOTED).await;
    let mut b = accept(&l2).await;
    b.login_md5("s3cret", FULLY_BOOTED).await;
    let mut servers = Vec::new();
    for _ in 0..4 {
        let ev = next(&mut rx).await;
        servers.push(format!("{}:{}", ev.server(), label(&ev)));
    }
    servers.sort();
    assert_eq!(
        servers,
        [
            "fake:FullyBooted",
            "fake:Up",
            "second:FullyBooted",
            "second:Up"
        ]
    );
    assert_eq!((h1.server(), h2.server()), ("fake", "second"));
    stop.cancel();
}

#[tokio::test]
async fn nothing_listening_is_reported_and_retried_with_backoff() {
    let (l, port) = listener().await;
    drop(l);
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let (handle, task) = ami::spawn(config(port, AuthType::Md5), tx, stop.clone());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let err = loop {
        if let Some(e) = handle.last_error() {
            break e;
        }
        assert!(tokio::time::Instant::now() < deadline, "no error reported");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(matches!(
        handle.send(Action::new("Ping")).await,
        Err(AmiError::NotConnected)
    ));
    // The server appears on that port: the supervisor gets in by itself.
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut peer = accept(&l).await;
    peer.login_md5("s3cret", b"").await;
    assert_eq!(label(&next(&mut rx).await), "Up");
    assert!(handle.last_error().is_none());
    stop.cancel();
    assert_eq!(label(&next(&mut rx).await), "Down");
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn skipped_input_is_counted_on_the_handle_and_the_stream_goes_on() {
    let Session {
        handle,
        task,
        mut rx,
        mut peer,
        stop,
    } = logged_in(|c| c.max_message = 256).await;
    assert_eq!(handle.decode_problems(), 0);
    let big = format!("Event: Big\r\nData: {}\r\n\r\n", "x".repeat(400));
    peer.write(b"Event: A\r\nno colon here\r\n\r\n").await;
    peer.write(big.as_bytes()).await;
    peer.write(b"Event: After\r\n\r\n").await;
    let mut names = Vec::new();
    while names.len() < 2 {
        if let LinkEvent::Message { msg, .. } = next(&mut rx).await {
            names.push(msg.get_str("Event").unwrap_or_default().into_owned());
        }
    }
    assert_eq!(names, ["A", "After"]);
    // One malformed line and one oversized message: both counted, neither fatal.
    assert_eq!(handle.decode_problems(), 2);
    stop.cancel();
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
}
