//! Secrets (JWT secrets, token ids, the admin token, the dummy password) from
//! the operating system's generator.
//!
//! `fastrand` is fast and fine for data and jitter, but its stream is
//! predictable: a few of its outputs (the `X-Request-Id` prefix every response
//! carries came from it) give away the rest, secrets included. Every secret is
//! made here, so one test can check that none comes from anywhere else.

/// `bytes` random bytes from the OS generator, as lowercase hex (`2 * bytes`
/// characters).
///
/// # Panics
/// If the OS generator fails: a platform that cannot produce secrets must not
/// fall back to a weak one.
pub(crate) fn secret_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random generator");
    let mut out = String::with_capacity(2 * bytes);
    for b in buf {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::secret_hex;

    #[test]
    fn secrets_have_their_length_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let s = secret_hex(16);
            assert_eq!(s.len(), 32);
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(seen.insert(s), "a 128-bit secret repeated");
        }
        assert_eq!(secret_hex(32).len(), 64);
        assert_eq!(secret_hex(0), "");
    }

    /// The files that make secrets take them from [`secret_hex`] only; `fastrand`
    /// stays for seeded data, jitter and request ids.
    #[test]
    fn no_secret_comes_from_fastrand() {
        for (file, source) in [
            ("api/auth.rs", include_str!("api/auth.rs")),
            ("auth/token.rs", include_str!("auth/token.rs")),
            ("ops/admin.rs", include_str!("ops/admin.rs")),
            ("cli/serve.rs", include_str!("cli/serve.rs")),
            ("cli/warm_cache.rs", include_str!("cli/warm_cache.rs")),
        ] {
            assert!(
                !source.contains("fastrand"),
                "{file} uses fastrand: make its secrets with secret::secret_hex"
            );
            assert!(
                source.contains("secret_hex"),
                "{file} makes no secret here any more?"
            );
        }
    }
}
