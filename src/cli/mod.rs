//! The subcommands. Each lives in its own file; [`Cli`] is the clap definition `main.rs` parses.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod callbacks;
pub mod check_config;
pub mod demo;
pub mod dnc;
pub mod history;
pub mod missed;
pub mod passwd;
pub mod privacy;
pub mod record;
pub mod replay;
pub mod report;
pub mod run;
pub mod status;

/// A command's result: the process exit code, or an error whose chain `main` prints once.
pub type CmdResult = Result<i32, Box<dyn std::error::Error + Send + Sync>>;

/// Where perezvon looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/perezvon/perezvon.toml";

#[derive(Debug, Parser)]
#[command(name = "perezvon", version, about = "Calls back the customers your Asterisk PBX missed", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run recorded AMI captures through the tracker and print one verdict per call.
    #[command(
        after_help = "Example:\n  perezvon replay fixtures/asterisk-22/queue_abandon.ami\n  perezvon replay --format table fixtures/asterisk-22/*.ami\n  zcat old.ami.gz | perezvon replay --db verdicts.db -"
    )]
    Replay(ReplayArgs),
    /// List missed inbound calls, newest first, with who resolved them and the callback state.
    #[command(
        after_help = "Example:\n  perezvon missed --since 24h --unresolved\n  perezvon missed --db /var/lib/perezvon/perezvon.db --since 7d --format csv > missed.csv\n  perezvon missed --since 30d --format csv-excel > missed.csv"
    )]
    Missed(MissedArgs),
    /// Statistics of missed calls for managers: shares, waits, where lost, who resolved, when.
    #[command(
        after_help = "Example:\n  perezvon report --since 7d\n  perezvon report --from 2026-12-01 --to 2026-12-07 --format json\n  perezvon report --since 30d --format html --out missed-calls.html"
    )]
    Report(ReportArgs),
    /// Check a configuration file: every problem at once, exit code 78 when it is not valid.
    #[command(
        after_help = "Example:\n  perezvon check-config --config /etc/perezvon/perezvon.toml && systemctl restart perezvon\n  perezvon check-config --connect"
    )]
    CheckConfig(CheckConfigArgs),
    /// Write one Asterisk server's raw AMI stream to a file, byte for byte, until Ctrl-C/SIGTERM,
    /// and the arrival time of every read beside it (`FILE.ami.times`, read by `replay`).
    #[command(
        after_help = "Example:\n  perezvon record --config /etc/perezvon/perezvon.toml --out today.ami\n  perezvon replay today.ami"
    )]
    Record(RecordArgs),
    /// Run the daemon: follow calls on AMI, store verdicts, call missed customers back.
    #[command(
        after_help = "Example:\n  perezvon run --config /etc/perezvon/perezvon.toml\n  perezvon run --config perezvon.toml --db /tmp/perezvon.db"
    )]
    Run(run::RunArgs),
    /// Inspect and steer the callback queue: list, cancel, retry.
    #[command(
        after_help = "Example:\n  perezvon callbacks list --config /etc/perezvon/perezvon.toml --format json\n  perezvon callbacks cancel 42 --config /etc/perezvon/perezvon.toml"
    )]
    Callbacks(callbacks::CallbacksArgs),
    /// Try perezvon without Asterisk: a built-in lab PBX replays real calls to the real daemon
    ///
    /// An embedded AMI server plays the bundled Asterisk 22 recordings; the daemon notices the
    /// misses and calls the customers back; then the missed calls, the callbacks and the report.
    #[command(
        after_help = "Example:\n  perezvon demo\n  perezvon demo --db demo.db --html demo-report.html && perezvon report --db demo.db\n  perezvon demo --web 127.0.0.1:8088    # and the web console, until Ctrl-C"
    )]
    Demo(demo::DemoArgs),
    /// What the running daemon is doing: links, events, the callback queue, today's calls.
    ///
    /// Asks the daemon (GET /status on `[metrics] listen`). Exit 0 when it answered, 3 when it
    /// cannot be reached (then what the database knows is printed), 78 for a bad configuration.
    #[command(
        after_help = "Example:\n  perezvon status --config /etc/perezvon/perezvon.toml\n  perezvon status --format json | jq .servers"
    )]
    Status(status::StatusArgs),
    /// Print the argon2 hash of a web console password read from standard input, for
    /// `password_hash` of a `[[web.users]]` entry.
    #[command(
        after_help = "Example:\n  echo -n 'correct horse battery' | perezvon passwd\n  perezvon passwd < /dev/tty    # type it, then Enter and Ctrl-D"
    )]
    Passwd(passwd::PasswdArgs),
    /// The do-not-call list: numbers perezvon never calls back, whatever their task says.
    ///
    /// Any input form of the number; stored normalised with the `[pbx]` plan. Callers join it
    /// by pressing 9 ("never call me back"), agents with the do_not_call disposition; the
    /// numbers of `callback.dnc_file` apply too.
    #[command(after_help = "Example:
  perezvon dnc add --config /etc/perezvon/perezvon.toml '+7 916 123-45-67'
  perezvon dnc list --config /etc/perezvon/perezvon.toml
  perezvon dnc remove --db /var/lib/perezvon/perezvon.db 89161234567")]
    Dnc(dnc::DncArgs),
    // --- history and personal data (the backfill work) ---
    /// Import history from Asterisk's CDR (cdr_csv Master.csv) and/or queue_log, marked
    /// `imported` (less exact than AMI). Importing a file again adds nothing.
    #[command(
        after_help = "Example:\n  perezvon import --config /etc/perezvon/perezvon.toml --cdr /var/log/asterisk/cdr-csv/Master.csv --queue-log /var/log/asterisk/queue_log\n  perezvon import --db history.db --server pbx1 --timezone Europe/Moscow --cdr Master.csv"
    )]
    Import(history::ImportArgs),
    /// Decide the calls of a gap in the AMI stream from `[backfill]` cdr/queue_log, marked
    /// `backfilled`; their misses get callbacks like any others. The daemon does this by itself
    /// after every reconnect.
    #[command(
        after_help = "Example:\n  perezvon backfill --config /etc/perezvon/perezvon.toml --since 6h\n  perezvon backfill --since 2d --until 1d"
    )]
    Backfill(history::BackfillArgs),
    /// Print all data held for one customer (calls, callback tasks and attempts, notifications,
    /// CRM links) as JSON.
    #[command(
        after_help = "Example:\n  perezvon export --number '+7 916 123-45-67' > customer.json"
    )]
    Export(privacy::NumberArgs),
    /// Erase all data held for one customer and say how many rows went.
    #[command(
        after_help = "Example:\n  perezvon forget --number 89161234567 --config /etc/perezvon/perezvon.toml"
    )]
    Forget(privacy::NumberArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// Configuration file [default: /etc/perezvon/perezvon.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also log in to every `[[asterisk]]` server and check the manager.conf privileges perezvon
    /// needs (exit 78 when a server cannot be reached, refuses the login or lacks one).
    #[arg(long)]
    pub connect: bool,
}

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Configuration file with the `[[asterisk]]` server(s).
    #[arg(long)]
    pub config: PathBuf,
    /// Which `[[asterisk]]` entry to record (default: the first).
    #[arg(long)]
    pub server: Option<String>,
    /// Output file (must not exist yet, nor `FILE.times`, where the arrival times go).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct MissedArgs {
    /// Configuration file [default: /etc/perezvon/perezvon.toml]. Without one, --db is needed
    /// and the default settings apply (times in UTC).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database: a SQLite file or a postgres:// URL (default: storage.database or storage.url of the configuration).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// How far back to look, e.g. 24h, 3d, 90m.
    #[arg(long, default_value = "24h")]
    pub since: humantime::Duration,
    /// Only calls nobody has resolved yet.
    #[arg(long)]
    pub unresolved: bool,
    /// Output format: an aligned table, JSON (one object per line), CSV (RFC 4180: `,`, CRLF) or
    /// csv-excel (`;`, CRLF and a UTF-8 BOM: opens in a Russian Excel by double click). Table and
    /// CSV show control characters of a caller ID as escapes like \x1b, and CSV prefixes a cell
    /// that a spreadsheet would run as a formula (=, +, -, @) with ' (a bare number like
    /// +79161234567 only in csv-excel); a table cuts a cell at 64 characters; JSON keeps the exact
    /// value.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv", "csv-excel"])]
    pub format: String,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Configuration file [default: /etc/perezvon/perezvon.toml]. Without one, --db is needed
    /// and the default settings apply (times in UTC).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database: a SQLite file or a postgres:// URL (default: storage.database or storage.url of the configuration).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The period, ending now, e.g. 7d, 30d, 24h (when neither --from nor --to is given).
    #[arg(long, default_value = "7d")]
    pub since: humantime::Duration,
    /// First day of the period, YYYY-MM-DD in the configured time zone (from its midnight).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<String>,
    /// Last day of the period, YYYY-MM-DD, inclusive (to the next midnight). Default: today
    /// when --from is given.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: Option<String>,
    /// Output format: text tables, JSON, CSV (one figure a row), or one self-contained HTML
    /// page with charts.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv", "html"])]
    pub format: String,
    /// Language of the HTML page (`--format html`): English or Russian.
    #[arg(long, default_value = "en", value_parser = ["en", "ru"])]
    pub lang: String,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Configuration file (default: the embedded lab configuration).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database to store verdicts in, a SQLite file or a postgres:// URL (default: a temporary in-memory one).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Output format.
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "table"])]
    pub format: String,
    /// Capture files (`-`: standard input), replayed in order as one continuous stream. The
    /// arrival times `perezvon record` kept in `FILE.times` are used by themselves.
    #[arg(required = true)]
    pub captures: Vec<PathBuf>,
}

/// Runs a parsed command.
pub fn dispatch(cli: Cli) -> CmdResult {
    match cli.command {
        Command::Replay(a) => replay::run(&a),
        Command::Missed(a) => missed::run(&a),
        Command::Report(a) => report::run(&a),
        Command::CheckConfig(a) => check_config::run(&a),
        Command::Record(a) => record::run(&a),
        Command::Run(a) => run::run(&a),
        Command::Callbacks(a) => callbacks::run(&a),
        Command::Demo(a) => demo::run(&a),
        Command::Status(a) => status::run(&a),
        Command::Passwd(a) => passwd::run(&a),
        Command::Dnc(a) => dnc::run(&a),
        Command::Import(a) => history::import(&a),
        Command::Backfill(a) => history::backfill(&a),
        Command::Export(a) => privacy::export(&a),
        Command::Forget(a) => privacy::forget(&a),
    }
}
