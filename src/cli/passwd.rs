//! `perezvon passwd`: the argon2id hash of a console password, for `[[web.users]]
//! password_hash`. The password comes from standard input (`echo -n PASSWORD | perezvon passwd`)
//! so it never appears in the process list; one trailing newline is dropped, so a password
//! typed on a terminal and ended with Enter hashes the same as `echo -n`.

use std::io::{Read as _, Write as _};

use clap::Args;

use super::CmdResult;

/// Below this many characters the hash is still printed, with a warning: the console may face
/// a network.
pub const MIN_PASSWORD: usize = 8;
/// More than a password: a file piped in by mistake.
const MAX_PASSWORD: usize = 1024;

#[derive(Debug, Args)]
pub struct PasswdArgs {}

pub fn run(_: &PasswdArgs) -> CmdResult {
    let mut raw = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_PASSWORD as u64 + 2)
        .read_to_end(&mut raw)?;
    match password_from_input(&raw) {
        Ok(pw) => {
            if pw.chars().count() < MIN_PASSWORD {
                eprintln!(
                    "perezvon: warning: the password is shorter than {MIN_PASSWORD} characters and easy to guess"
                );
            }
            let hash = crate::console::auth::hash_password(pw)?;
            writeln!(std::io::stdout().lock(), "{hash}")?;
            Ok(0)
        }
        Err(msg) => {
            eprintln!("perezvon: {msg}");
            Ok(2)
        }
    }
}

/// The password in what was read: one trailing `\n` (or `\r\n`) dropped, then checked.
pub fn password_from_input(raw: &[u8]) -> Result<&str, String> {
    let raw = raw
        .strip_suffix(b"\n")
        .map(|r| r.strip_suffix(b"\r").unwrap_or(r))
        .unwrap_or(raw);
    if raw.len() > MAX_PASSWORD {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD} bytes (was a file piped in?)"
        ));
    }
    let pw = std::str::from_utf8(raw).map_err(|_| "the password is not UTF-8 text".to_string())?;
    if pw.chars().any(|c| c.is_control()) {
        return Err(
            "the password holds a control character or several lines (pipe it with echo -n)".into(),
        );
    }
    if pw.is_empty() {
        return Err(
            "no password on standard input (pipe it in: echo -n PASSWORD | perezvon passwd)".into(),
        );
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_one_line_of_text() {
        assert_eq!(password_from_input(b"correct horse"), Ok("correct horse"));
        assert_eq!(password_from_input(b"correct horse\n"), Ok("correct horse"));
        assert_eq!(
            password_from_input(b"correct horse\r\n"),
            Ok("correct horse")
        );
        assert_eq!(
            password_from_input("пароль-длинный".as_bytes()),
            Ok("пароль-длинный")
        );
        assert_eq!(password_from_input(b"short"), Ok("short"));
        assert!(password_from_input(b"\n").is_err());
        assert!(password_from_input(b"").is_err());
        assert!(password_from_input(b"two\nlines here").is_err());
        assert!(password_from_input(b"\xff\xfe not utf8").is_err());
        assert!(password_from_input(&[b'a'; 2000]).is_err());
    }
}
