//! `REDIS_MODE` / `REDIS_SENTINEL_MASTER` / `REDIS_URL` combinations that cannot
//! work: one line naming the variable to fix, exit 1, never a panic, never a
//! password.

use crate::helpers::*;

#[test]
fn bad_redis_mode_combinations_fail_in_one_line_without_the_password() {
    let secret_url = "redis://:hunter2secret@127.0.0.1:1/";
    let list = format!("{secret_url},redis://:hunter2secret@127.0.0.1:2/");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("REDIS_URL", &list)], "REDIS_URL"),
        (
            vec![("REDIS_MODE", "sentinel"), ("REDIS_URL", &list)],
            "REDIS_SENTINEL_MASTER",
        ),
        (
            vec![
                ("REDIS_SENTINEL_MASTER", "mymaster"),
                ("REDIS_URL", secret_url),
            ],
            "REDIS_SENTINEL_MASTER",
        ),
        (vec![("REDIS_MODE", "cluster")], "REDIS_URL"),
        (
            vec![
                ("REDIS_MODE", "cluster"),
                ("REDIS_URL", "redis://:hunter2secret@h:1/,,"),
            ],
            "REDIS_URL",
        ),
        (
            vec![
                ("REDIS_MODE", "cluster"),
                ("REDIS_URL", "redis://:hunter2secret@h:1/,nope://x"),
            ],
            "REDIS_URL",
        ),
    ];
    for (vars, names) in cases {
        let env = Env::new("redis-mode", &vars);
        for cmd in [&["cache-stats"][..], &["serve"][..]] {
            let out = env.campus(cmd).output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(1),
                "{vars:?} {cmd:?}: {}",
                stderr(&out)
            );
            let err = stderr(&out);
            assert!(!err.contains("panicked"), "{vars:?}: {err}");
            assert!(!err.contains("hunter2secret"), "the password leaked: {err}");
            let line = err
                .lines()
                .find(|l| l.starts_with("error: "))
                .unwrap_or_else(|| panic!("{vars:?}: no error line in {err}"));
            assert!(line.contains(names), "{vars:?}: {line}");
        }
    }
    // An unknown mode is a usage error (clap, status 2).
    let env = Env::new("redis-mode", &[("REDIS_MODE", "ring")]);
    assert_eq!(
        env.campus(&["cache-stats"]).output().unwrap().status.code(),
        Some(2)
    );
}
