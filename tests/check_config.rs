//! `perezvon check-config` run as the admin runs it: the built binary on a file.

use std::path::Path;
use std::process::{Command, Output};

const EXIT_CONFIG: i32 = 78;

/// A minimal valid file; tests append or replace lines to break one thing.
const VALID: &str = r#"
[[asterisk]]
name = "pbx1"
username = "perezvon"
secret = "s3cret"

[hours]
timezone = "Europe/Moscow"
"#;

fn check(text: &str) -> (Output, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perezvon.toml");
    std::fs::write(&path, text).unwrap();
    set_mode(&path, 0o600);
    run(&path)
}

fn run(path: &Path) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["check-config", "--config"])
        .arg(path)
        .env_remove("PEREZVON_TEST_SECRET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_problem(text: &str, expected_line_start: &str) {
    let (out, _, stderr) = check(text);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "stderr: {stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with(expected_line_start)),
        "no line starting with {expected_line_start:?} in:\n{stderr}"
    );
}

#[test]
fn valid_file_exits_0_with_a_summary() {
    let (out, stdout, stderr) = check(VALID);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains(": OK"), "{stdout}");
    assert!(
        stdout.contains("server pbx1: perezvon@127.0.0.1:5038"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hours (Europe/Moscow): Mon 09:00-18:00"),
        "{stdout}"
    );
    assert!(stdout.contains("callbacks: off"), "{stdout}");
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn unknown_key_names_section_key_line_and_typo() {
    assert_problem(
        &VALID.replace("name = \"pbx1\"", "name = \"pbx1\"\nhots = \"10.0.0.1\""),
        "asterisk[0].hots (line 4): unknown key \"hots\" (did you mean \"host\"?)",
    );
}

#[test]
fn bad_duration() {
    assert_problem(
        &format!("{VALID}\n[calls]\nmin_talk = \"six seconds\"\n"),
        "calls.min_talk: invalid duration \"six seconds\"",
    );
}

#[test]
fn duration_written_as_a_number_names_key_and_line() {
    assert_problem(
        &format!("{VALID}\n[calls]\nmin_talk = 6\n"),
        "calls.min_talk (line 11): invalid type: integer `6`, expected a string",
    );
}

#[test]
fn bad_regex() {
    assert_problem(
        &format!("{VALID}\n[callback]\nallow = [\"^7(9\"]\n"),
        "callback.allow[0]: invalid regex \"^7(9\"",
    );
}

#[test]
fn bad_timezone() {
    assert_problem(
        &VALID.replace("Europe/Moscow", "Europe/Mockba"),
        "hours.timezone: unknown time zone \"Europe/Mockba\" (an IANA name",
    );
}

#[test]
fn overlapping_hours() {
    assert_problem(
        &format!("{VALID}monday = [\"09:00-13:00\", \"12:30-18:00\"]\n"),
        "hours.monday: ranges overlap",
    );
}

#[test]
fn missing_secret() {
    assert_problem(
        &VALID.replace("secret = \"s3cret\"", ""),
        "asterisk[0].secret: missing (set one of secret, secret_file or secret_env)",
    );
}

#[test]
fn secret_from_an_unset_environment_variable() {
    assert_problem(
        &VALID.replace(
            "secret = \"s3cret\"",
            "secret_env = \"PEREZVON_TEST_SECRET\"",
        ),
        "asterisk[0].secret_env: environment variable \"PEREZVON_TEST_SECRET\" is not set",
    );
}

#[test]
fn a_single_value_where_a_list_belongs() {
    assert_problem(
        &format!("{VALID}\n[pbx]\nagent_channels = \"PJSIP/*\"\n"),
        "pbx.agent_channels (line 11): invalid type: string \"PJSIP/*\", expected a sequence (a list in brackets",
    );
    assert_problem(
        "[asterisk]\nusername = \"u\"\nsecret = \"s\"\n",
        "asterisk (line 1): invalid type: map, expected a sequence (servers are [[asterisk]] sections",
    );
}

#[test]
fn toml_syntax_error_has_a_line() {
    assert_problem(
        &format!("{VALID}\n[calls\n"),
        "line 10, column 7: invalid table header",
    );
}

#[test]
fn several_problems_are_reported_at_once() {
    let text = VALID.replace("Europe/Moscow", "Mars/Base").replace(
        "name = \"pbx1\"",
        "name = \"pbx1\"\nport = 99999\npasword = \"x\"",
    )
        + "monday = [\"18:00-09:00\"]\n[calls]\nmin_wait = \"soon\"\n[log]\nlevel = \"loud\"\n";
    let (out, _, stderr) = check(&text);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    assert!(stderr.contains(": 6 problems"), "{stderr}");
    for key in [
        "asterisk[0].pasword (line 5): ",
        "asterisk[0].port: ",
        "hours.timezone: ",
        "hours.monday[0]: ",
        "calls.min_wait: ",
        "log.level: ",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(key)),
            "{key} missing:\n{stderr}"
        );
    }
}

#[test]
fn missing_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(&dir.path().join("absent.toml"));
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    assert!(stderr.contains("(file): cannot read"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn world_readable_secret_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perezvon.toml");
    std::fs::write(&path, VALID).unwrap();
    set_mode(&path, 0o644);
    let (out, stdout, stderr) = run(&path);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains(": OK"));
    assert!(
        stderr.contains("warning: (file): ") && stderr.contains("world-readable"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn secret_file_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ami.secret"), "s3cret\n").unwrap();
    set_mode(&dir.path().join("ami.secret"), 0o640);
    let path = dir.path().join("perezvon.toml");
    std::fs::write(
        &path,
        VALID.replace("secret = \"s3cret\"", "secret_file = \"ami.secret\""),
    )
    .unwrap();
    set_mode(&path, 0o644);
    let (out, _, stderr) = run(&path);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The file itself holds no secret: no warning about it.
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn a_file_without_a_server_is_a_config_error() {
    for text in [
        "",
        "# nothing yet\n",
        "asterisk = []\n",
        "[hours]\ntimezone = \"Europe/Moscow\"\n",
    ] {
        let (out, stdout, stderr) = check(text);
        assert_eq!(
            out.status.code(),
            Some(EXIT_CONFIG),
            "{text:?}: {stdout}{stderr}"
        );
        assert!(
            stderr.lines().any(|l| l
                == "asterisk: no server, perezvon would watch nothing (add an [[asterisk]] section with host, username and secret; see config.example.toml)"),
            "{text:?}: {stderr}"
        );
        assert!(!stdout.contains("OK"), "{stdout}");
    }
}

#[test]
fn a_missing_server_is_reported_with_the_other_problems() {
    let (out, _, stderr) = check("[calls]\nmin_talk = \"soon\"\n[log]\nlevel = \"loud\"\n");
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    assert!(stderr.contains(": 3 problems"), "{stderr}");
    for key in ["asterisk: ", "calls.min_talk: ", "log.level: "] {
        assert!(
            stderr.lines().any(|l| l.starts_with(key)),
            "{key}:\n{stderr}"
        );
    }
    // With an unknown key and a type error, too (they stop validation early).
    let (out, _, stderr) = check("[calls]\nmin_talkk = 1\nmin_wait = 3\n");
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    for key in [
        "calls.min_talkk (line 2): ",
        "asterisk: ",
        "calls.min_wait: ",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(key)),
            "{key}:\n{stderr}"
        );
    }
}

/// Every way toml or serde could quote a secret's value back: none of them does.
#[test]
fn a_secret_value_is_never_echoed() {
    let digits = "84512397123";
    for (case, text) in [
        ("unquoted number", VALID.replace("\"s3cret\"", digits)),
        ("float", VALID.replace("\"s3cret\"", &format!("{digits}.5"))),
        ("list", VALID.replace("\"s3cret\"", &format!("[{digits}]"))),
        ("table", VALID.replace("\"s3cret\"", &format!("{{ a = \"{digits}\" }}"))),
        ("bare word", VALID.replace("\"s3cret\"", &format!("{digits}abc"))),
        ("unterminated", VALID.replace("\"s3cret\"", &format!("\"{digits}"))),
        (
            "next to an unknown key",
            VALID.replace("\"s3cret\"", &format!("{digits}\nhots = \"x\"")),
        ),
        (
            "webhook",
            format!("{VALID}\n[notify.webhook]\nurl = \"http://127.0.0.1/\"\nsecret = {digits}\n"),
        ),
        (
            "inline webhook",
            format!("{VALID}\n[notify]\nwebhook = {{ url = \"http://127.0.0.1/\", secret = {digits} }}\n"),
        ),
        (
            "inline webhook and unknown key",
            format!("{VALID}\n[notify]\nwebhook = {{ url = \"http://127.0.0.1/\", secret = {digits}, x = 1 }}\n"),
        ),
    ] {
        let (out, stdout, stderr) = check(&text);
        assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{case}: {stderr}");
        assert!(
            !stdout.contains("8451239") && !stderr.contains("8451239"),
            "{case}: the secret is echoed:\n{stdout}{stderr}"
        );
        assert!(stderr.contains("secret") || stderr.contains("webhook"), "{case}: {stderr}");
    }
    // The problem still names the key and says what to do.
    assert_problem(
        &VALID.replace("\"s3cret\"", digits),
        "asterisk[0].secret (line 5): invalid type: integer `***`, expected a string (a secret is a quoted string, even when it is all digits)",
    );
}

#[test]
fn other_values_are_still_quoted_in_type_errors() {
    assert_problem(
        &VALID.replace("\"pbx1\"", "12345678"),
        "asterisk[0].name (line 3): invalid type: integer `12345678`, expected a string",
    );
}

/// The toll-fraud guard must guard (issue contract: 78 for an allow-list admitting every number
/// with callbacks on, 0 for Russian numbers only).
#[test]
fn an_allow_list_that_admits_every_number_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = |allow: &str| {
        let p = dir.path().join("perezvon.toml");
        std::fs::write(
            &p,
            format!(
                "[[asterisk]]\nname = \"pbx\"\nhost = \"127.0.0.1\"\nusername = \"u\"\nsecret_env = \"PZV_TEST_SECRET\"\n\n[callback]\nenabled = true\ncaller_id = \"74951110000\"\ndial_template = \"PJSIP/{{number}}@provider\"\ntarget = {{ queue = \"sales\" }}\nallow = {allow}\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_perezvon"))
            .args(["check-config", "--config"])
            .arg(&p)
            .env("PZV_TEST_SECRET", "s3cret")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for open in [r#"[".*"]"#, r#"["\\d+"]"#, r#"["^7\\d{10}$", ".+"]"#] {
        let (code, err) = run(open);
        assert_eq!(code, Some(78), "{open}: {err}");
        assert!(err.contains("admits every number"), "{open}: {err}");
    }
    let (code, err) = run("[]");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("callback.allow: empty"), "{err}");
    let (code, err) = run(r#"["^7\\d{10}$"]"#);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("premium-rate"),
        "a costly prefix is warned about: {err}"
    );
    let (code, err) = run(r#"["^79\\d{9}$"]"#);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("callback.allow"), "{err}");
}

/// `callback.allow_kinds`/`allow_countries` close what a broad regex leaves open, and
/// check-config probes with both, as the dialer checks.
#[test]
fn kinds_and_countries_narrow_a_broad_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let run = |callback: &str| {
        let p = dir.path().join("perezvon.toml");
        std::fs::write(
            &p,
            format!(
                "[[asterisk]]\nname = \"pbx\"\nhost = \"127.0.0.1\"\nusername = \"u\"\nsecret_env = \"PZV_TEST_SECRET\"\n\n[callback]\nenabled = true\ncaller_id = \"74951110000\"\ndial_template = \"PJSIP/{{number}}@provider\"\ntarget = {{ queue = \"sales\" }}\n{callback}\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_perezvon"))
            .args(["check-config", "--config"])
            .arg(&p)
            .env("PZV_TEST_SECRET", "s3cret")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Every number by regex, but only Russian and Kazakh mobiles and fixed lines: no probe
    // passes, not even the premium-rate 8-809 one.
    let (code, err) = run(
        "allow = [\"^\\\\d+$\"]\nallow_kinds = [\"mobile\", \"fixed_line\"]\nallow_countries = [\"RU\", \"KZ\"]",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("callback.allow"), "{err}");
    // Kinds alone still admit mobiles abroad: warned, with what the metadata says.
    let (code, err) = run("allow = [\"^\\\\d+$\"]\nallow_kinds = [\"mobile\"]");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("admits 37491234567 (Armenia, mobile of AM)"),
        "{err}"
    );
    assert!(!err.contains("premium-rate"), "{err}");
    // Countries alone close the door to satellites and junk, not to premium rate at home.
    let (code, err) = run("allow = [\".*\"]\nallow_countries = [\"RU\", \"GB\", \"US\"]");
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("admits every number"), "{err}");
    assert!(err.contains("8-809, premium_rate of RU"), "{err}");
    for (bad, key) in [
        (
            "allow_kinds = [\"mobiles\"]",
            "callback.allow_kinds[0]: unknown kind \"mobiles\"",
        ),
        ("allow_kinds = []", "callback.allow_kinds: empty"),
        (
            "allow_countries = [\"RU\", \"ru\", \"XX\"]",
            "callback.allow_countries[1]",
        ),
        (
            "allow_countries = [\"XX\"]",
            "callback.allow_countries[0]: \"XX\" is not a country code",
        ),
        ("allow_countries = []", "callback.allow_countries: empty"),
    ] {
        let (code, err) = run(&format!("allow = [\"^7\\\\d{{10}}$\"]\n{bad}"));
        assert_eq!(code, Some(78), "{bad}: {err}");
        assert!(err.contains(key), "{bad}: {err}");
    }
    let (code, err) =
        run("allow = [\"^7\\\\d{10}$\"]\nallow_kinds = [\"mobile\", \"premium_rate\"]");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("admits premium_rate numbers"), "{err}");
}

#[test]
fn notifiers_are_listed_by_host_and_their_secrets_never_shown() {
    let text = format!(
        "{VALID}\n[notify.bitrix24]\nwebhook_url = \"https://portal.bitrix24.ru/rest/1/t0psecrettoken/\"\n\
         [notify.telegram]\nbot_token = \"123456:AAE-t0psecret\"\nchat_id = -100200\nevents = [\"missed\"]\n\
         [[notify.http]]\nname = \"sms\"\nmethod = \"GET\"\nurl = \"https://sms.ru/sms/send?api_id=t0psecretkey&msg={{text}}\"\n"
    );
    let (out, stdout, stderr) = check(&text);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stdout.contains("bitrix24: portal.bitrix24.ru (missed,resolved,callback)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("telegram: chat -100200 via api.telegram.org (missed)"),
        "{stdout}"
    );
    assert!(stdout.contains("http sms: GET sms.ru"), "{stdout}");
    assert!(
        !format!("{stdout}{stderr}").contains("t0psecret"),
        "{stdout}{stderr}"
    );
}

#[test]
fn plain_http_to_another_host_is_refused_with_the_reason() {
    assert_problem(
        &format!("{VALID}\n[notify.webhook]\nurl = \"http://crm.example.com/hook\"\n"),
        "notify.webhook.url: \"http://crm.example.com/hook\": plain http:// is allowed only to a loopback host",
    );
    // A token-bearing URL is not quoted, even when wrong.
    let (_, _, stderr) = check(&format!(
        "{VALID}\n[notify.bitrix24]\nwebhook_url = \"http://portal.bitrix24.ru/rest/1/t0psecrettoken/\"\n"
    ));
    assert!(
        stderr.contains("notify.bitrix24.webhook_url: the URL: plain http://"),
        "{stderr}"
    );
    assert!(!stderr.contains("t0psecret"), "{stderr}");
}

#[test]
fn the_callback_guards_are_summarised_and_a_bad_one_is_named() {
    let text = "[[asterisk]]\nname = \"pbx1\"\nusername = \"perezvon\"\nsecret = \"s3cret\"\n\
                [callback]\nenabled = true\ncaller_id = \"74951110000\"\nmax_per_number_24h = 3\n\
                customer_hours = \"09:00-21:00\"\nexpire_after = \"3d\"\nqueue_reserve = 1\n";
    let (out, stdout, stderr) = check(text);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stdout.contains(
            "callback guards: at most 3 per number in 24 h, customer's clock 09:00-21:00, \
             expire after 3days, 1 agent(s) per queue kept for inbound"
        ),
        "{stdout}"
    );
    let (out, _, stderr) = check(&text.replace("\"09:00-21:00\"", "\"21:00-09:00\""));
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr.contains("callback.customer_hours: invalid range \"21:00-09:00\""),
        "{stderr}"
    );
}
