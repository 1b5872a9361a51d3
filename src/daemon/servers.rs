//! The `[[asterisk]]` servers one node follows: one supervisor and one bounded channel each, and
//! the fair fan-in the ingest loop reads.
//!
//! Why one channel per server: with one shared channel, a server that floods (a storm of
//! events, a replaying PBX) fills it and every other server's supervisor waits behind it.
//! With one each, back-pressure stays with the server that causes it: its own socket reads
//! wait (Asterisk buffers, then TCP does), and [`Servers::recv`] serves the channels in turn,
//! at most [`BURST`] events of one before the next is looked at. A silent server costs nothing
//! (its keepalive notices a dead link); a hostile one (garbage, giant lines, endless header
//! blocks) is bounded by the codec's size cap and only fills its own channel.
//!
//! A server's channel and [`AmiHandle`] outlive its supervisor: [`Servers::apply`] (SIGHUP)
//! restarts a changed server on the same channel, so its stream stays in order (`Down`, then
//! the new `Up`) and handles held elsewhere (the dialer's) stay valid.

use std::collections::{BTreeMap, HashMap};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ami::{self, AmiHandle, LinkEvent};
use crate::config::AsteriskConfig;

/// Events one server may have queued for the ingest loop.
pub const PER_SERVER_QUEUE: usize = 1024;
/// Events taken from one server in a row before the next server's turn.
pub const BURST: usize = 64;

/// One server's supervisor and channel.
struct Server {
    /// `None`: removed from the configuration (the channel drains, then closes).
    cfg: Option<AsteriskConfig>,
    handle: AmiHandle,
    tx: mpsc::Sender<LinkEvent>,
    token: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// What [`Servers::apply`] did, by server name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
}

/// The running servers and their channels.
pub struct Servers {
    servers: BTreeMap<String, Server>,
    /// The receivers, in the order the fan-in visits them.
    rx: Vec<(Arc<str>, mpsc::Receiver<LinkEvent>)>,
    cursor: usize,
    burst: usize,
    /// Parent of every supervisor's token (shutdown).
    links: CancellationToken,
    queue: usize,
}

impl Servers {
    /// Starts one supervisor per server, each under a child of `links`.
    pub fn start(cfgs: &[AsteriskConfig], links: CancellationToken) -> Servers {
        Servers::with_queue(cfgs, links, PER_SERVER_QUEUE)
    }

    /// [`Servers::start`] with another per-server queue length (tests).
    pub fn with_queue(cfgs: &[AsteriskConfig], links: CancellationToken, queue: usize) -> Servers {
        let mut s = Servers {
            servers: BTreeMap::new(),
            rx: Vec::new(),
            cursor: 0,
            burst: 0,
            links,
            queue: queue.max(1),
        };
        s.apply(cfgs);
        s
    }

    /// The handle of `server` (also while it reconnects or after a restart).
    pub fn handle(&self, server: &str) -> Option<&AmiHandle> {
        self.servers
            .get(server)
            .filter(|s| s.cfg.is_some())
            .map(|s| &s.handle)
    }

    /// Handles of the configured servers, by name.
    pub fn handles(&self) -> impl Iterator<Item = &AmiHandle> {
        self.servers
            .values()
            .filter(|s| s.cfg.is_some())
            .map(|s| &s.handle)
    }

    /// Names of the configured servers.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.servers
            .iter()
            .filter(|(_, s)| s.cfg.is_some())
            .map(|(n, _)| n.as_str())
    }

    /// Makes the running set `cfgs`, by name: new servers start, removed ones stop, changed
    /// ones restart (on their channel, once the old supervisor has ended); the others are not
    /// touched, nor are their calls.
    pub fn apply(&mut self, cfgs: &[AsteriskConfig]) -> Applied {
        let mut out = Applied::default();
        let wanted: HashMap<&str, &AsteriskConfig> =
            cfgs.iter().map(|c| (c.name.as_str(), c)).collect();
        for (name, s) in self.servers.iter_mut() {
            if s.cfg.is_some() && !wanted.contains_key(name.as_str()) {
                s.cfg = None;
                s.token.cancel();
                out.stopped.push(name.clone());
            }
        }
        for c in cfgs {
            match self.servers.get_mut(&c.name) {
                Some(s) if s.cfg.as_ref() == Some(c) => {}
                Some(s) => {
                    s.token.cancel();
                    s.token = self.links.child_token();
                    let previous = s.task.take();
                    let task = match previous {
                        Some(p) => ami::respawn_after(
                            p,
                            c.clone(),
                            s.handle.clone(),
                            s.tx.clone(),
                            s.token.clone(),
                        ),
                        None => ami::respawn_after(
                            tokio::spawn(async {}),
                            c.clone(),
                            s.handle.clone(),
                            s.tx.clone(),
                            s.token.clone(),
                        ),
                    };
                    s.task = Some(task);
                    if s.cfg.is_some() {
                        out.restarted.push(c.name.clone());
                    } else {
                        out.started.push(c.name.clone());
                    }
                    s.cfg = Some(c.clone());
                }
                None => {
                    let (tx, rx) = mpsc::channel(self.queue);
                    let token = self.links.child_token();
                    let (handle, task) = ami::spawn(c.clone(), tx.clone(), token.clone());
                    self.rx.push((Arc::from(c.name.as_str()), rx));
                    self.servers.insert(
                        c.name.clone(),
                        Server {
                            cfg: Some(c.clone()),
                            handle,
                            tx,
                            token,
                            task: Some(task),
                        },
                    );
                    out.started.push(c.name.clone());
                }
            }
        }
        out
    }

    /// The next event of any server, fairly: at most [`BURST`] of one server in a row.
    /// Pending while no server has one (also with no server at all).
    pub async fn recv(&mut self) -> LinkEvent {
        poll_fn(|cx| {
            let n = self.rx.len();
            let mut i = 0;
            while i < n {
                let at = (self.cursor + i) % n;
                match self.rx[at].1.poll_recv(cx) {
                    Poll::Ready(Some(ev)) => {
                        if i == 0 {
                            self.burst += 1;
                        } else {
                            self.cursor = at;
                            self.burst = 1;
                        }
                        if self.burst >= BURST {
                            self.cursor = (at + 1) % n;
                            self.burst = 0;
                        }
                        return Poll::Ready(ev);
                    }
                    // Never closes while the server's entry holds its sender.
                    Poll::Ready(None) | Poll::Pending => i += 1,
                }
            }
            self.burst = 0;
            Poll::Pending
        })
        .await
    }

    /// An event already queued, without waiting (shutdown's drain).
    pub fn try_recv(&mut self) -> Option<LinkEvent> {
        self.rx.iter_mut().find_map(|(_, rx)| rx.try_recv().ok())
    }

    /// Tells every supervisor to stop (their last events stay queued for [`Servers::try_recv`]).
    pub fn cancel(&self) {
        self.links.cancel();
    }

    /// Stops every supervisor and waits up to `grace` for each.
    pub async fn stop(&mut self, grace: std::time::Duration) {
        self.links.cancel();
        for s in self.servers.values_mut() {
            if let Some(t) = s.task.take() {
                let _ = tokio::time::timeout(grace, t).await;
            }
        }
    }

    /// Events queued per server (also of servers removed but still draining).
    pub fn queue_lengths(&self) -> Vec<(Arc<str>, usize)> {
        self.rx
            .iter()
            .map(|(n, rx)| (n.clone(), rx.len()))
            .collect()
    }
}
