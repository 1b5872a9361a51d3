//! `SIGHUP` (systemd `ExecReload`) re-reads the configuration and its `servers_dir`: a server
//! whose file appears is connected to, one whose file goes away is let go, and the others keep
//! their link (their calls in progress are not touched). A file that does not validate changes
//! nothing.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn server_file(dir: &Path, name: &str, port: u16) {
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!(
            "[[asterisk]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"perezvon\"\nsecret = \"lab\"\nreconnect_max = \"1s\"\n"
        ),
    )
    .unwrap();
}

fn accept(l: &TcpListener, what: &str) -> TcpStream {
    l.set_nonblocking(true).unwrap();
    let end = Instant::now() + WAIT;
    loop {
        match l.accept() {
            Ok((s, _)) => return s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < end, "{what}: perezvon did not connect");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// The daemon closed `s` (it waits for the banner, so it never writes first).
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0)) || matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn hup(child: &Child) {
    let ok = Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn sighup_adds_and_removes_servers_of_servers_d() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("servers.d");
    std::fs::create_dir(&d).unwrap();
    let (a, b) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    server_file(&d, "a", a.local_addr().unwrap().port());
    let cfg = dir.path().join("perezvon.toml");
    std::fs::write(
        &cfg,
        "servers_dir = \"servers.d\"\n\n[pbx]\ncountry_code = \"7\"\ninbound_contexts = [\"from-trunk\"]\n\n[storage]\ndatabase = \"perezvon.db\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["run", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sa = accept(&a, "server a at start");

    // A file that does not validate: refused, a keeps its link.
    std::fs::write(
        d.join("bad.toml"),
        "[[asterisk]]\nname = \"bad\"\nport = \"x\"\n",
    )
    .unwrap();
    hup(&child);
    std::thread::sleep(Duration::from_secs(1));
    std::fs::remove_file(d.join("bad.toml")).unwrap();

    // b appears.
    server_file(&d, "b", b.local_addr().unwrap().port());
    hup(&child);
    let _sb = accept(&b, "server b after SIGHUP");

    // a goes away: its link is closed; b's stays.
    std::fs::remove_file(d.join("a.toml")).unwrap();
    hup(&child);
    assert!(closed(&mut sa), "server a's link was not closed");

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let end = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "perezvon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("reload refused"), "{log}");
    assert!(log.contains("reloaded the server list"), "{log}");
    // Reconnecting to a is never tried again after it was removed.
    a.set_nonblocking(true).unwrap();
    assert!(a.accept().is_err(), "a was connected to again");
}
