//! End-to-end AMI throughput through perezvon's own client: TCP, codec, login, supervisor and
//! the bounded event channel, exactly as the daemon uses them.
//!
//! Connects to `--host/--port` with `--username/--secret`, reads one header (`Event`) of every
//! event until the server closes the connection, then prints a last line
//! `events=N secs=S events_per_s=R` (time from login to close). Run it against a real Asterisk
//! or against `examples/ami_blaster.rs`, and run other AMI clients against the same server to
//! compare.
//!
//! `--raw` measures the framing limit over the socket instead: a plain blocking reader logs in
//! (plaintext), then only reads the socket and counts message ends (`\r\n\r\n`, memmem) until
//! the server closes: what "merely reading the socket and finding message ends" costs, with no
//! decoding, no message and no channel. Same last line.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use clap::Parser;
use perezvon::ami::{self, LinkEvent};
use perezvon::config::{AuthType, Config, Secret};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 5038)]
    port: u16,
    #[arg(long)]
    username: String,
    #[arg(long)]
    secret: String,
    /// md5 or plain.
    #[arg(long, default_value = "md5")]
    auth: String,
    /// Capacity of the bounded event channel.
    #[arg(long, default_value_t = 4096)]
    channel: usize,
    /// Tokio worker threads; 0 = one thread for the connection task and the consumer (no
    /// cross-thread wake-ups per message).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Read the socket and count message ends only (no decoding): the framing limit.
    #[arg(long)]
    raw: bool,
}

/// Reads until `buf` holds a complete message (`\r\n\r\n`); returns its bytes.
fn read_message(sock: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    loop {
        if let Some(i) = memchr::memmem::find(buf, b"\r\n\r\n") {
            return Ok(buf.drain(..i + 4).collect());
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `--raw`: log in with plain text, then read and count message ends until the server closes.
fn raw(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut sock = std::net::TcpStream::connect((args.host.as_str(), args.port))?;
    sock.set_nodelay(true)?;
    let mut pending = Vec::new();
    // The banner is one line, not a message: read up to its line end.
    while memchr::memchr(b'\n', &pending).is_none() {
        let mut chunk = [0u8; 256];
        let n = sock.read(&mut chunk)?;
        if n == 0 {
            return Err("closed before the banner".into());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
    let nl = memchr::memchr(b'\n', &pending).unwrap_or(0);
    pending.drain(..=nl);
    write!(
        sock,
        "Action: Login\r\nActionID: 1\r\nUsername: {}\r\nSecret: {}\r\n\r\n",
        args.username, args.secret
    )?;
    let reply = read_message(&mut sock, &mut pending)?;
    if !reply.starts_with(b"Response: Success") {
        return Err(format!("login refused: {}", String::from_utf8_lossy(&reply)).into());
    }
    let start = Instant::now();
    let finder = memchr::memmem::Finder::new(b"\r\n\r\n");
    let mut buf = vec![0u8; 256 * 1024];
    // Bytes already read after the login reply, then the socket; the last 3 bytes of each read
    // are kept in front of the next, so an end split across two reads is still found.
    let mut keep = pending.len().min(buf.len());
    buf[..keep].copy_from_slice(&pending[..keep]);
    let mut events = 0u64;
    loop {
        let n = sock.read(&mut buf[keep..])?;
        let filled = keep + n;
        events += finder.find_iter(&buf[..filled]).count() as u64;
        if n == 0 {
            break;
        }
        keep = filled.min(3);
        buf.copy_within(filled - keep..filled, 0);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "mode=raw events={events} secs={secs:.3} events_per_s={:.0}",
        events as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.raw {
        return raw(&args);
    }
    let mut cfg = Config::embedded_default().asterisk.remove(0);
    cfg.name = "bench".into();
    cfg.host = args.host.clone();
    cfg.port = args.port;
    cfg.username = args.username.clone();
    cfg.secret = Secret::new(args.secret.clone());
    cfg.auth = match args.auth.as_str() {
        "plain" => AuthType::Plain,
        _ => AuthType::Md5,
    };
    // A blasting server answers no Ping while it writes: do not let keepalive end the run.
    cfg.ping_interval = Duration::from_secs(3600);
    let rt = match args.threads {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    rt.block_on(async move {
        let (tx, mut rx) = mpsc::channel(args.channel);
        let stop = CancellationToken::new();
        let (_handle, task) = ami::spawn(cfg, tx, stop.clone());
        let mut events = 0u64;
        let mut header_bytes = 0u64;
        let mut start = None;
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = &mut deadline, if start.is_none() => {
                    return Err("no login within 10 s".into());
                }
            };
            match ev {
                Some(LinkEvent::Up { .. }) => start = Some(Instant::now()),
                Some(LinkEvent::Message { msg, .. }) => {
                    if let Some(e) = msg.event() {
                        events += 1;
                        header_bytes += e.len() as u64;
                    }
                }
                Some(LinkEvent::Down { reason, .. }) => {
                    eprintln!("link closed: {reason}; event header bytes read: {header_bytes}");
                    break;
                }
                None => break,
            }
        }
        let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        stop.cancel();
        let _ = task.await;
        println!(
            "events={events} secs={secs:.3} events_per_s={:.0}",
            events as f64 / secs.max(1e-9)
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
