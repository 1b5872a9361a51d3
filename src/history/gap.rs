//! The daemon's side of the gap backfill: remembers until when each server's AMI stream was
//! seen (`ami_watermarks`, so a restart knows where the gap began), and after a reconnect reads
//! the CDR/queue_log rows of the gap in a blocking side task. The ingest loop stores what it
//! returns (it is the one writer of `calls`) and hands the verdicts to the dialer.
//!
//! The gap of a session is from the watermark (the link went down, or perezvon stopped, a few
//! seconds after its last save) to the LinkUp, at most `backfill.max_gap` long. It is read
//! once the reconnect's CoreShowChannels is applied, so a call that ended unseen has its live
//! `unknown` verdict already, which history then decides.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;

use super::{Files, Loaded, ReadError};
use crate::config::Config;
use crate::store::Store;

/// While a link is up, its watermark advances to now this often.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// A gap read from the files.
#[derive(Debug)]
pub struct GapRead {
    pub server: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub result: Result<Loaded, ReadError>,
}

/// Watermarks and pending gaps.
pub struct Gaps {
    cfg: Arc<Config>,
    up: HashMap<String, bool>,
    pending: HashMap<String, (Timestamp, Timestamp)>,
    last_save: Option<tokio::time::Instant>,
    tx: mpsc::Sender<GapRead>,
}

impl Gaps {
    pub fn new(cfg: Arc<Config>) -> (Gaps, mpsc::Receiver<GapRead>) {
        let (tx, rx) = mpsc::channel(4);
        (
            Gaps {
                cfg,
                up: HashMap::new(),
                pending: HashMap::new(),
                last_save: None,
                tx,
            },
            rx,
        )
    }

    fn save(store: &Store, server: &str, at: Timestamp) {
        if let Err(e) = store.save_watermark(server, at) {
            tracing::warn!(server, error = %crate::store::error_chain(&e), "cannot save the time of the last AMI event");
        }
    }

    /// The link to `server` came up at `at`: the gap since the watermark waits for the
    /// reconnect's snapshot ([`Gaps::synced`]).
    pub fn link_up(&mut self, store: &Store, server: &str, at: Timestamp) {
        self.up.insert(server.to_string(), true);
        if self.cfg.backfill.files_for(server).is_none() {
            return;
        }
        match store.watermark(server) {
            Ok(Some(from)) if from < at => {
                let max = jiff::SignedDuration::try_from(self.cfg.backfill.max_gap)
                    .unwrap_or(jiff::SignedDuration::MAX);
                let earliest = at.checked_sub(max).unwrap_or(from);
                if from < earliest {
                    tracing::warn!(server, gap_from = %from, backfill_from = %earliest, "gap longer than backfill.max_gap: only its end is backfilled");
                }
                // A session that dropped before its snapshot left its gap unread: keep its start.
                let from = match self.pending.get(server) {
                    Some((f, _)) => (*f).min(from),
                    None => from,
                };
                self.pending
                    .insert(server.to_string(), (from.max(earliest), at));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(server, error = %crate::store::error_chain(&e), "cannot read the time of the last AMI event: no backfill");
            }
        }
    }

    /// The link to `server` went down at `at`.
    pub fn link_down(&mut self, store: &Store, server: &str, at: Timestamp) {
        self.up.insert(server.to_string(), false);
        Self::save(store, server, at);
    }

    /// Advances the watermark of every server whose link is up (called from the tick).
    pub fn tick(&mut self, store: &Store, now: Timestamp) {
        let due = self.last_save.is_none_or(|t| t.elapsed() >= SAVE_EVERY);
        if !due {
            return;
        }
        self.last_save = Some(tokio::time::Instant::now());
        self.save_up(store, now);
    }

    /// Saves now (shutdown): the next start's gap begins here.
    pub fn save_up(&self, store: &Store, now: Timestamp) {
        for (server, up) in &self.up {
            if *up {
                Self::save(store, server, now);
            }
        }
    }

    /// The reconnect's live channels are applied: read the gap, if there is one.
    pub fn synced(&mut self, server: &str) {
        let Some((from, to)) = self.pending.remove(server) else {
            return;
        };
        let cfg = self.cfg.clone();
        let tx = self.tx.clone();
        let server = server.to_string();
        tracing::info!(server = %server, from = %from, to = %to, "backfilling the AMI gap from the CDR/queue_log");
        tokio::spawn(async move {
            let s = server.clone();
            let read = tokio::task::spawn_blocking(move || {
                let (cdr, queue_log) = cfg.backfill.files_for(&s).unwrap_or((None, None));
                let files = Files {
                    cdr,
                    queue_log,
                    timezone: &cfg.backfill.timezone,
                };
                super::load(&s, &cfg, &files, Some((from, to)))
            })
            .await;
            let result = match read {
                Ok(r) => r,
                Err(join) => Err(ReadError {
                    path: "backfill".into(),
                    source: std::io::Error::other(join.to_string()),
                }),
            };
            let _ = tx
                .send(GapRead {
                    server,
                    from,
                    to,
                    result,
                })
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_gap: &str) -> Arc<Config> {
        Arc::new(
            Config::from_toml_in(
                &format!(
                    "[[asterisk]]\nname = \"pbx1\"\nusername = \"u\"\nsecret = \"a-long-random-secret-0123456789\"\n\
                     [[asterisk]]\nname = \"pbx2\"\nusername = \"u\"\nsecret = \"a-long-random-secret-0123456789\"\n\
                     [backfill]\ncdr = \"/nonexistent/Master.csv\"\nmax_gap = \"{max_gap}\"\n"
                ),
                "test",
                None,
            )
            .unwrap(),
        )
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[tokio::test]
    async fn a_gap_runs_from_the_watermark_and_survives_a_session_without_snapshot() {
        let store = Store::open_in_memory().unwrap();
        let (mut g, _rx) = Gaps::new(cfg("7d"));
        // No watermark yet (a new database): nothing to backfill.
        g.link_up(&store, "pbx1", t(0));
        assert!(g.pending.is_empty());
        g.tick(&store, t(10));
        assert_eq!(store.watermark("pbx1").unwrap(), Some(t(10)));
        g.link_down(&store, "pbx1", t(20));
        g.link_up(&store, "pbx1", t(100));
        assert_eq!(g.pending["pbx1"], (t(20), t(100)));
        // That session drops before its snapshot; the next one keeps the gap's start.
        g.link_down(&store, "pbx1", t(101));
        g.link_up(&store, "pbx1", t(200));
        assert_eq!(g.pending["pbx1"], (t(20), t(200)));
        // pbx2 has no files of its own and is not backfill.server: its watermark is kept, no gap.
        store.save_watermark("pbx2", t(0)).unwrap();
        g.link_up(&store, "pbx2", t(300));
        assert!(!g.pending.contains_key("pbx2"));
        // The read reports a missing file without panicking.
        let (mut g2, mut rx) = Gaps::new(cfg("7d"));
        g2.link_up(&store, "pbx1", t(400));
        g2.synced("pbx1");
        let read = rx.recv().await.unwrap();
        assert!(read.result.is_err());
        assert_eq!((read.from, read.to), (t(101), t(400)));
    }

    #[test]
    fn a_gap_longer_than_max_gap_is_cut_to_its_end() {
        let store = Store::open_in_memory().unwrap();
        let (mut g, _rx) = Gaps::new(cfg("1h"));
        store.save_watermark("pbx1", t(0)).unwrap();
        g.link_up(&store, "pbx1", t(86_400));
        assert_eq!(g.pending["pbx1"], (t(86_400 - 3600), t(86_400)));
    }
}
