//! A fake Asterisk that blasts events as fast as the client reads them, for
//! `examples/ami_throughput.rs` (and any other AMI client you want to compare).
//!
//! It accepts connections one after another; each one gets the banner, an answer to
//! `Challenge` (MD5) or a plain `Login` (any credentials), then the whole stream built from
//! the fixtures (`--mb`, unique ids), then the connection is closed.
//!
//! ```text
//! cargo run --release --example ami_blaster -- --port 5039 --mb 256 &
//! cargo run --release --example ami_throughput -- --port 5039 --username u --secret s
//! ```

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "support/stream.rs"]
mod stream;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// 0 picks a free port (printed on stderr).
    #[arg(long, default_value_t = 5039)]
    port: u16,
    /// Size of the event stream per connection, in MiB.
    #[arg(long, default_value_t = 256)]
    mb: usize,
    /// Serve this many connections, then exit (0 = forever).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    #[arg(long, default_value = "fixtures/asterisk-22")]
    fixtures: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (bytes, events) = stream::build(&args.fixtures, args.mb * 1024 * 1024);
    let l = TcpListener::bind((args.host.as_str(), args.port)).await?;
    eprintln!(
        "blaster: listening on {}, {events} events, {} bytes per connection",
        l.local_addr()?,
        bytes.len()
    );
    let mut served = 0;
    while args.connections == 0 || served < args.connections {
        let (sock, peer) = l.accept().await?;
        served += 1;
        match serve(sock, &bytes).await {
            Ok(secs) => eprintln!(
                "blaster: {peer}: sent {events} events in {secs:.3} s ({:.0} events/s)",
                events as f64 / secs
            ),
            Err(e) => eprintln!("blaster: {peer}: {e}"),
        }
    }
    Ok(())
}

/// Reads one action (up to the empty line).
async fn action(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    loop {
        if let Some(i) = memchr::memmem::find(buf, b"\r\n\r\n") {
            return Ok(buf.drain(..i + 4).collect());
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn action_id(a: &[u8]) -> String {
    String::from_utf8_lossy(a)
        .lines()
        .find_map(|l| l.strip_prefix("ActionID: ").map(str::to_string))
        .unwrap_or_default()
}

async fn serve(mut sock: TcpStream, stream: &[u8]) -> std::io::Result<f64> {
    sock.set_nodelay(true)?;
    // The stream starts with its banner.
    sock.write_all(stream::BANNER).await?;
    let mut buf = Vec::new();
    loop {
        let a = action(&mut sock, &mut buf).await?;
        let id = action_id(&a);
        if a.starts_with(b"Action: Challenge") {
            let r = format!("Response: Success\r\nActionID: {id}\r\nChallenge: 1234\r\n\r\n");
            sock.write_all(r.as_bytes()).await?;
        } else if a.starts_with(b"Action: Login") {
            let r = format!(
                "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
            );
            sock.write_all(r.as_bytes()).await?;
            break;
        }
    }
    let t = Instant::now();
    sock.write_all(&stream[stream::BANNER.len()..]).await?;
    sock.shutdown().await?;
    Ok(t.elapsed().as_secs_f64())
}
