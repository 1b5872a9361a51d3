//! perezvon's binary: parse arguments, run the command, print the error chain once, exit.

use clap::Parser;

fn main() {
    let cli = perezvon::cli::Cli::parse();
    let code = match perezvon::cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let mut msg = format!("perezvon: {e}");
            let mut src = e.source();
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            1
        }
    };
    std::process::exit(code);
}
