//! Every command's help, its errors and its exit codes.

use crate::helpers::{Env, stderr, stdout};

#[test]
fn help_names_every_command_and_its_flags() {
    let env = Env::new("help", &[]);
    let out = env.campus(&["--help"]).output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    for command in [
        "serve",
        "migrate",
        "seed",
        "createuser",
        "warm-cache",
        "cache-stats",
    ] {
        assert!(text.contains(command), "{command} missing from:\n{text}");
    }
    for (command, flags) in [
        (
            "warm-cache",
            &["--model", "--org", "--pages", "--concurrency", "--host"][..],
        ),
        ("cache-stats", &["--clear", "--json", "--min-hit-rate"][..]),
        (
            "createuser",
            &["--org", "--username", "--role", "--password"][..],
        ),
        ("seed", &["--orgs", "--faculty", "--students", "--seed"][..]),
    ] {
        let out = env.campus(&[command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{command} --help");
        let text = stdout(&out);
        for flag in flags {
            assert!(
                text.contains(flag),
                "{command} --help lacks {flag}:\n{text}"
            );
        }
    }
}

/// A CLI error is one line on stderr, naming what to fix, and exit status 1.
fn one_line_error(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_owned()
}

#[test]
fn warm_cache_names_the_valid_models_and_organizations() {
    let env = Env::new("warm-errors", &[]);
    let line = one_line_error(
        &env.campus(&["warm-cache", "--model", "Courses"])
            .output()
            .unwrap(),
    );
    assert!(
        line.contains(r#"unknown model "Courses""#)
            && line.contains("valid: departments, programs, faculty, students, users, dashboard"),
        "{line}"
    );
    // `--model Faculty` (SPEC §3's spelling) is accepted; with no server
    // running in embedded mode the command says so.
    let line = one_line_error(
        &env.campus(&["warm-cache", "--model", "Faculty"])
            .output()
            .unwrap(),
    );
    assert!(line.contains("no running campus server found"), "{line}");
    let line = one_line_error(&env.campus(&["cache-stats"]).output().unwrap());
    assert!(line.contains("no running campus server found"), "{line}");
}

#[test]
fn createuser_checks_organization_username_and_role() {
    let env = Env::new("createuser", &[]);
    env.campus(&["seed", "--orgs", "1", "--faculty", "1", "--students", "1"])
        .assert()
        .success();
    let line = one_line_error(
        &env.campus(&[
            "createuser",
            "--org",
            "nope",
            "--username",
            "x",
            "--role",
            "staff",
            "--password",
            "long-enough-1",
        ])
        .output()
        .unwrap(),
    );
    assert!(line.contains("--org") && line.contains("nope"), "{line}");
    let line = one_line_error(
        &env.campus(&[
            "createuser",
            "--org",
            "org1",
            "--username",
            "org1-admin",
            "--role",
            "staff",
            "--password",
            "long-enough-1",
        ])
        .output()
        .unwrap(),
    );
    assert!(line.contains("already exists"), "{line}");
    // clap's own usage error: status 2 and the valid roles.
    let out = env
        .campus(&[
            "createuser",
            "--org",
            "org1",
            "--username",
            "x",
            "--role",
            "root",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("admin, staff, faculty, student"),
        "{}",
        stderr(&out)
    );
    // Piped in (no terminal), the password is the first line of stdin.
    let out = env
        .campus(&[
            "createuser",
            "--org",
            "org1",
            "--username",
            "ops",
            "--role",
            "staff",
        ])
        .write_stdin("piped-password-1\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("created user ops"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("piped-password-1"));
}

#[test]
fn migrate_seed_and_serve_fail_in_one_line_naming_the_setting() {
    let env = Env::new("migrate", &[]);
    let out = env.campus(&["migrate"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Nothing left to apply the second time.
    assert!(env.campus(&["migrate"]).output().unwrap().status.success());

    let unreachable = Env::new(
        "unreachable",
        &[(
            "DATABASE_URL",
            "postgres://campus:secret@127.0.0.1:1/campus",
        )],
    );
    let line = one_line_error(&unreachable.campus(&["migrate"]).output().unwrap());
    assert!(line.contains("DATABASE_URL"), "{line}");
    assert!(!line.contains("secret"), "the password leaked: {line}");

    // clap's usage errors: status 2.
    let out = env.campus(&["seed", "--orgs", "many"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = env
        .campus(&["warm-cache", "--pages", "-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // 31 bytes: one short of HS256's 256 bits.
    let short = Env::new(
        "short-secret",
        &[("JWT_SECRET", "0123456789abcdef0123456789abcde")],
    );
    let line = one_line_error(&short.campus(&["serve"]).output().unwrap());
    assert!(
        line.contains("JWT_SECRET: must be at least 32 bytes"),
        "{line}"
    );
    let bad_redis = Env::new("bad-redis", &[("REDIS_URL", "redis://127.0.0.1:1/")]);
    // An unreachable Redis is an unhealthy cache: the report's ✗ line, exit 1.
    let out = bad_redis.campus(&["cache-stats"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("✗ Cache is unhealthy: Redis unreachable at redis://127.0.0.1:1/"),
        "{}",
        stdout(&out)
    );
}
