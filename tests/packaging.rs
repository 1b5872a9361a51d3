//! The Debian package's files stay in step with the source tree's: the packaged unit is
//! `systemd/perezvon.service` with the binary in /usr/bin, nothing else; the files the package
//! metadata names exist.

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A unit without its opening comment (which says where the file comes from).
fn body(unit: &str) -> &str {
    let at = unit.find("\n[Unit]\n").expect("a [Unit] section");
    &unit[at..]
}

#[test]
fn packaged_unit_is_the_source_unit_with_usr_bin() {
    let source = read("systemd/perezvon.service");
    let packaged = read("packaging/deb/perezvon.service");
    let exec = "ExecStart=/usr/local/bin/perezvon run --config /etc/perezvon/perezvon.toml\n";
    assert!(
        source.contains(exec),
        "systemd/perezvon.service: {exec} changed"
    );
    assert_eq!(
        body(&packaged),
        body(&source).replace(exec, &exec.replace("/usr/local/bin/", "/usr/bin/")),
        "packaging/deb/perezvon.service differs from systemd/perezvon.service beyond ExecStart="
    );
    // The packaged unit tells the admin it is not started yet and what to do.
    assert!(packaged.contains("neither enabled nor started"));
}

#[test]
fn every_file_the_package_ships_exists() {
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().unwrap();
    assert!(!assets.is_empty());
    for a in assets {
        let src = a[0].as_str().unwrap();
        if src.starts_with("target/") {
            continue; // built by cargo deb
        }
        if let Some(dir) = src.strip_suffix("/*.toml") {
            assert!(std::fs::read_dir(dir).unwrap().count() > 0, "{src}");
            continue;
        }
        assert!(std::path::Path::new(src).is_file(), "{src} is missing");
    }
    for script in ["postinst", "prerm", "postrm"] {
        let path = format!("{}{script}", deb["maintainer-scripts"].as_str().unwrap());
        let text = read(&path);
        assert!(
            text.starts_with("#!/bin/sh\n") && text.contains("\nset -e\n"),
            "{path}"
        );
        // Only the admin enables or starts the service, once it is configured.
        let code: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        for forbidden in ["systemctl start", "systemctl enable", "systemctl restart"] {
            assert!(
                !code.iter().any(|l| l.contains(forbidden)),
                "{path}: {forbidden}"
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert!(mode & 0o111 != 0, "{path} is not executable");
        }
    }
    assert_eq!(
        deb["conf-files"].as_array().unwrap()[0].as_str(),
        Some("/etc/perezvon/perezvon.toml")
    );
}
