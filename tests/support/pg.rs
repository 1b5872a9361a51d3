//! A throw-away PostgreSQL for the tests: Debian's `initdb` into a temporary directory (as the
//! unprivileged `nobody` when the tests run as root), a server on a unix socket only, `fsync=on`,
//! one server per test process and one fresh database per test.
//!
//! Nothing assumes a running server. Without PostgreSQL installed [`fresh_url`] returns `None`
//! and says once, on stderr, that the PostgreSQL tests were skipped; `.ci/run` installs it
//! (under `CI=true` a missing PostgreSQL is a failure, not a skip).
//! `PEREZVON_PG_BIN` names the directory of `initdb`/`postgres` (default: the newest
//! `/usr/lib/postgresql/*/bin`, else `PATH`); `PEREZVON_TEST_PG_URL` uses an existing server
//! instead (its user must be allowed to create databases).
//!
//! The server dies with the test process: it is started through `setpriv --pdeathsig KILL` from
//! a thread that lives as long as the process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The running throw-away server.
pub struct TestPg {
    /// The directory holding the socket (`host=` of the URL).
    pub socket_dir: PathBuf,
    pub port: u16,
    /// `psql`, for creating the per-test databases.
    psql: PathBuf,
    /// An external server instead (`PEREZVON_TEST_PG_URL`).
    external: Option<String>,
}

static SERVER: OnceLock<Option<TestPg>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The test server, started at the first call; `None` when PostgreSQL is not installed.
pub fn server() -> Option<&'static TestPg> {
    SERVER
        .get_or_init(|| match start() {
            Ok(pg) => Some(pg),
            Err(why) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL tests cannot run ({why}), but CI needs them");
                }
                eprintln!("PostgreSQL tests skipped: {why}");
                None
            }
        })
        .as_ref()
}

/// The URL of a new, empty database on the test server (one per test: tests run in parallel).
pub fn fresh_url() -> Option<String> {
    let pg = server()?;
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    pg.create_database(&name);
    Some(pg.url(&name))
}

impl TestPg {
    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        if let Some(base) = &self.external {
            let (head, query) = match base.split_once('?') {
                Some((h, q)) => (h, format!("?{q}")),
                None => (base.as_str(), String::new()),
            };
            let root = match head.rfind('/') {
                Some(i) if i > head.find("://").map_or(0, |j| j + 2) => &head[..i],
                _ => head,
            };
            return format!("{root}/{db}{query}");
        }
        format!(
            "postgres://perezvon@/{db}?host={}&port={}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// Runs one SQL statement as the superuser on the `postgres` database.
    pub fn psql(&self, sql: &str) -> String {
        let mut cmd = Command::new(&self.psql);
        match &self.external {
            Some(_) => cmd.arg(self.url("postgres")),
            None => cmd
                .arg("-h")
                .arg(&self.socket_dir)
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-U")
                .arg("perezvon")
                .arg("-d")
                .arg("postgres"),
        };
        let out = cmd
            .arg("-X")
            .arg("-q")
            .arg("-t")
            .arg("-A")
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg("-c")
            .arg(sql)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn create_database(&self, name: &str) {
        self.psql(&format!("CREATE DATABASE {name}"));
    }
}

/// The directory of `initdb`, `postgres` and `psql`.
pub fn pg_bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PEREZVON_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("postgres").exists() && d.join("initdb").exists())
}

fn start() -> Result<TestPg, String> {
    if let Ok(url) = std::env::var("PEREZVON_TEST_PG_URL") {
        let psql = pg_bin_dir()
            .map(|d| d.join("psql"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("psql"));
        return Ok(TestPg {
            socket_dir: PathBuf::new(),
            port: 0,
            psql,
            external: Some(url),
        });
    }
    let bin = pg_bin_dir().ok_or("no initdb/postgres (apt install postgresql)")?;
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or("no setpriv (util-linux)")?;
    remove_stale_dirs();
    let root = std::env::temp_dir().join(format!("perezvon-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    let sock = root.join("sock");
    std::fs::create_dir_all(&sock).map_err(|e| format!("create {}: {e}", sock.display()))?;
    let as_root = is_root();
    if as_root {
        // initdb refuses to run as root: the cluster belongs to `nobody`.
        for d in [&root, &sock] {
            std::os::unix::fs::chown(d, Some(65534), Some(65534))
                .map_err(|e| format!("chown {}: {e}", d.display()))?;
        }
    }
    let user_args = |cmd: &mut Command| {
        if as_root {
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        }
    };
    let mut initdb = Command::new(&setpriv);
    user_args(&mut initdb);
    let out = initdb
        .arg("--")
        .arg(bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "perezvon",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .output()
        .map_err(|e| format!("run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port: u16 = 5432;
    let (tx, rx) = std::sync::mpsc::channel();
    let (setpriv2, bin2, data2, sock2) = (setpriv.clone(), bin.clone(), data.clone(), sock.clone());
    // The keeper thread: the server's parent for PR_SET_PDEATHSIG, alive until the process ends.
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || {
            let mut cmd = Command::new(&setpriv2);
            if as_root {
                cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
            }
            let child = cmd
                .args(["--pdeathsig", "KILL", "--"])
                .arg(bin2.join("postgres"))
                .arg("-D")
                .arg(&data2)
                .arg("-k")
                .arg(&sock2)
                .args(["-p", &port.to_string()])
                .args(["-c", "listen_addresses="])
                .args(["-c", "fsync=on"])
                .args(["-c", "max_connections=300"])
                .args(["-c", "shared_buffers=32MB"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let _ = tx.send(child.map(|_| ()).map_err(|e| e.to_string()));
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("start postgres: {e}"))?;
    let pg = TestPg {
        socket_dir: sock.clone(),
        port,
        psql: bin.join("psql"),
        external: None,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let socket = sock.join(format!(".s.PGSQL.{port}"));
    loop {
        if socket.exists() {
            let ok = Command::new(bin.join("pg_isready"))
                .arg("-h")
                .arg(&sock)
                .args(["-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(pg);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("postgres did not start in {}", data.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_root() -> bool {
    // The owner of /proc/self is this process's user.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Directories of earlier test processes that are gone (killed before they could tidy up).
fn remove_stale_dirs() {
    let tmp = std::env::temp_dir();
    for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("perezvon-pg-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A test database on one engine: a SQLite file in a temporary directory, or a fresh database
/// on the throw-away PostgreSQL. [`TestDb::open`] opens one more connection to it.
pub struct TestDb {
    pub location: perezvon::store::Location,
    /// `"sqlite"` or `"postgres"`, for assertion messages.
    pub engine: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        TestDb {
            location: perezvon::store::Location::Sqlite(dir.path().join("perezvon.db")),
            engine: "sqlite",
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` when PostgreSQL is not installed.
    pub fn postgres() -> Option<TestDb> {
        Some(TestDb {
            location: perezvon::store::Location::Postgres(fresh_url()?),
            engine: "postgres",
            _dir: None,
        })
    }

    /// A new connection (the schema is migrated at the first).
    pub fn open(&self) -> perezvon::store::Store {
        perezvon::store::Store::open_location(&self.location).unwrap_or_else(|e| {
            panic!(
                "{}: open: {}",
                self.engine,
                perezvon::store::error_chain(&e)
            )
        })
    }

    /// What `--db` takes for this database (a path or a URL).
    pub fn arg(&self) -> String {
        match &self.location {
            perezvon::store::Location::Sqlite(p) => p.display().to_string(),
            perezvon::store::Location::Postgres(u) => u.clone(),
        }
    }
}

/// Both engines: SQLite, and PostgreSQL when installed.
pub fn test_dbs() -> Vec<TestDb> {
    let mut v = vec![TestDb::sqlite()];
    v.extend(TestDb::postgres());
    v
}

/// Runs `f` once per engine (SQLite, then PostgreSQL when installed); a failure's output names
/// the engine it failed on.
pub fn each_engine(f: impl Fn(&TestDb)) {
    for db in test_dbs() {
        eprintln!("--- engine: {}", db.engine);
        f(&db);
    }
}
