//! The embedded lab server answers like the recorded Asterisk: login, actions, and an Originate
//! replayed from the matching callback capture with this Originate's identities.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use perezvon::ami::{AmiCodec, Kind, Message};
use perezvon::demo::lab::{self, LabOptions, LabOutcome};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

async fn login(addr: std::net::SocketAddr) -> Framed<TcpStream, AmiCodec> {
    let sock = TcpStream::connect(addr).await.unwrap();
    let mut f = Framed::new(sock, AmiCodec::new());
    let banner = f.next().await.unwrap().unwrap();
    assert_eq!(banner.kind(), Kind::Banner);
    f.send(Bytes::from_static(
        b"Action: Login\r\nActionID: l1\r\nUsername: u\r\nSecret: s\r\n\r\n",
    ))
    .await
    .unwrap();
    let r = f.next().await.unwrap().unwrap();
    assert!(r.is(b"Response", b"Success"), "{r:?}");
    f
}

async fn originate_and_collect(outcome: fn(&str, u32) -> LabOutcome) -> Vec<Message> {
    let stop = CancellationToken::new();
    let lab = lab::start(
        LabOptions {
            traffic: Vec::new(),
            script: outcome,
        },
        stop.clone(),
    )
    .await
    .unwrap();
    let mut f = login(lab.addr).await;
    f.send(Bytes::from_static(
        b"Action: Originate\r\nActionID: o-1\r\nChannel: Local/89161230000@customer-sim\r\nContext: callback\r\nExten: 201\r\nPriority: 1\r\nAsync: true\r\nVariable: PEREZVON_CALLBACK_ID=t-42\r\nChannelId: t-42-a\r\nOtherChannelId: t-42-b\r\n\r\n",
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut hangups = 0;
    while hangups < 2 {
        let m = tokio::time::timeout_at(deadline, f.next())
            .await
            .expect("lab went silent")
            .unwrap()
            .unwrap();
        if m.is(b"Event", b"Hangup")
            && m.get(b"Channel")
                .is_some_and(|c| c.starts_with(b"Local/89161230000@customer-sim"))
        {
            hangups += 1;
        }
        got.push(m);
    }
    stop.cancel();
    assert_eq!(lab.log.lock().unwrap().originates.len(), 1);
    got
}

#[tokio::test]
async fn connected_callback_carries_this_originates_identities() {
    let got = originate_and_collect(|_, _| LabOutcome::Connected).await;
    let or = got
        .iter()
        .find(|m| m.is(b"Event", b"OriginateResponse"))
        .expect("OriginateResponse");
    assert_eq!(or.get(b"ActionID"), Some(&b"o-1"[..]));
    assert_eq!(or.get(b"Response"), Some(&b"Success"[..]));
    assert_eq!(or.get(b"Reason"), Some(&b"4"[..]));
    assert_eq!(or.get(b"Uniqueid"), Some(&b"t-42-a"[..]));
    let marker = got
        .iter()
        .find(|m| m.is(b"Variable", b"PEREZVON_CALLBACK_ID"))
        .expect("marker VarSet");
    assert_eq!(marker.get(b"Value"), Some(&b"t-42"[..]));
    // The agent leg is bridged with the customer under the callback's Linkedid.
    assert!(got
        .iter()
        .any(|m| m.is(b"Event", b"BridgeEnter") && m.is(b"Linkedid", b"t-42-a")));
    // Nothing of the recording's own identities leaks through.
    for m in &got {
        for (_, v) in m.headers() {
            assert!(memchr::memmem::find(v, b"89261112233").is_none(), "{m:?}");
            assert!(memchr::memmem::find(v, b"CB-callback").is_none(), "{m:?}");
        }
    }
}

#[tokio::test]
async fn busy_callback_fails_with_reason_5() {
    let got = originate_and_collect(|_, _| LabOutcome::Busy).await;
    let or = got
        .iter()
        .find(|m| m.is(b"Event", b"OriginateResponse"))
        .expect("OriginateResponse");
    assert_eq!(or.get(b"Response"), Some(&b"Failure"[..]));
    assert_eq!(or.get(b"Reason"), Some(&b"5"[..]));
    assert_eq!(
        or.get(b"Channel"),
        Some(&b"Local/89161230000@customer-sim"[..])
    );
}

#[tokio::test]
async fn unknown_action_is_an_error_and_ping_pongs() {
    let stop = CancellationToken::new();
    let lab = lab::start(
        LabOptions {
            traffic: Vec::new(),
            script: LabOutcome::scripted,
        },
        stop.clone(),
    )
    .await
    .unwrap();
    let mut f = login(lab.addr).await;
    f.send(Bytes::from_static(
        b"Action: Ping\r\nActionID: p\r\n\r\nAction: Frobnicate\r\nActionID: q\r\n\r\n",
    ))
    .await
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = f.next().await.unwrap().unwrap();
        if m.kind() == Kind::Response {
            seen.push(m);
        }
    }
    assert!(seen[0].is(b"Ping", b"Pong"));
    assert!(seen[1].is(b"Response", b"Error"));
    stop.cancel();
}
