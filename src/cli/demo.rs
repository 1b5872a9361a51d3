//! `perezvon demo`: runs the daemon against the embedded lab and prints what happened.

use std::path::PathBuf;
use std::time::Duration;

use crate::demo::{DemoOptions, DemoSummary};
use crate::report::Report;
use crate::store::Store;

use super::CmdResult;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the demo's database here (default: a temporary file, removed afterwards).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Also write the HTML report to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Seconds between the starts of the recorded scenarios (smaller = denser traffic).
    #[arg(long, default_value_t = 0.7)]
    pub stagger: f64,
    /// Also serve the web console on this address (e.g. 127.0.0.1:8088) with a user `demo`
    /// and a password printed at the start; the demo then runs until Ctrl-C.
    #[arg(long, value_name = "HOST:PORT")]
    pub web: Option<std::net::SocketAddr>,
}

pub fn run(args: &DemoArgs) -> CmdResult {
    if !(0.0..=30.0).contains(&args.stagger) {
        return Err("--stagger must be between 0 and 30 seconds".into());
    }
    // Only warnings: the demo's own output is the point. RUST_LOG overrides.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let web = match args.web {
        Some(listen) => {
            let mut b = [0u8; 9];
            getrandom::getrandom(&mut b).map_err(|e| format!("no random numbers: {e}"))?;
            use base64::Engine as _;
            Some((
                listen,
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
            ))
        }
        None => None,
    };
    let opts = DemoOptions {
        db: args.db.clone(),
        stagger: Duration::from_secs_f64(args.stagger),
        web,
        ..DemoOptions::default()
    };
    let summary = rt.block_on(crate::demo::run(opts))?;
    print_results(&summary, args.html.as_deref())?;
    if args.db.is_none() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", summary.database.display()));
        }
    }
    Ok(if summary.missed > 0 && summary.connected > 0 {
        0
    } else {
        1
    })
}

fn print_results(s: &DemoSummary, html: Option<&std::path::Path>) -> CmdResult {
    let store = Store::open(&s.database)?;
    let cfg = crate::config::Config::embedded_default();
    let tz = &cfg.hours.timezone;
    let (from, to) = (jiff::Timestamp::UNIX_EPOCH, jiff::Timestamp::MAX);

    println!(
        "\n== Missed calls ({} of {} inbound)\n",
        s.missed, s.inbound
    );
    let missed = store.missed_calls(from, to, false)?;
    print!("{}", crate::report::missed::table_text(&missed, tz));

    println!(
        "\n== Callbacks ({} tasks, {} calls placed)\n",
        s.tasks, s.originates
    );
    let tasks = store.list_tasks(true, 100_000)?;
    let mut rows = Vec::new();
    for t in &tasks {
        let attempts = store.attempts_of(t.task.id)?;
        let outcomes: Vec<String> = attempts
            .iter()
            .map(|a| a.outcome.map_or("in progress", |o| o.as_str()).to_string())
            .collect();
        rows.push(vec![
            t.task.id.to_string(),
            t.task.number.clone(),
            t.task.routing.kind.as_str().to_string(),
            t.task.routing.owner.clone().unwrap_or_else(|| "-".into()),
            t.task.state.as_str().to_string(),
            t.task.missed_count.to_string(),
            outcomes.join(", "),
            t.close_reason.clone().unwrap_or_default(),
        ]);
    }
    use crate::report::text::{table, Align};
    print!(
        "{}",
        table(
            &[
                ("task", Align::Right),
                ("number", Align::Left),
                ("kind", Align::Left),
                ("owner", Align::Left),
                ("state", Align::Left),
                ("misses", Align::Right),
                ("attempts", Align::Left),
                ("closed because", Align::Left),
            ],
            &rows
        )
    );

    let requested = tasks
        .iter()
        .filter(|t| t.task.routing.kind == crate::callback::request::TaskKind::Requested)
        .count();
    let owned = tasks
        .iter()
        .filter(|t| t.task.routing.owner.is_some())
        .count();
    println!(
        "\n{requested} requested by the caller (pressed 1 in the queue), {owned} owned (called \
         through the agent who last talked with the customer, or whose own number they called)."
    );

    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_hours(1);
    let report = Report::load(
        &store,
        &crate::report::Settings::from_config(&cfg),
        start,
        now,
    )?;
    println!("\n== Report\n");
    print!("{}", crate::report::text::render(&report, tz));
    if let Some(path) = html {
        std::fs::write(path, crate::report::html::render(&report, tz))?;
        println!("\nHTML report written to {}", path.display());
    }
    println!(
        "\nSummary: {} inbound calls, {} missed, {} callbacks placed, {} connected, {} misses resolved in all.",
        s.inbound, s.missed, s.originates, s.connected, s.resolved
    );
    Ok(0)
}
