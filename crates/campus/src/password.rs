//! Password hashing (argon2id, PHC strings), as Django stores them in spirit: a
//! salted slow hash, never the password.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Hashes a password into a PHC string.
pub(crate) fn hash(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h: PasswordHash| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

/// Whether `password` matches the PHC string `hash`; a malformed hash never matches.
pub(crate) fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = super::hash("campus-demo").unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(super::verify("campus-demo", &h));
        assert!(!super::verify("campus-demo2", &h));
        assert!(!super::verify("campus-demo", "not a hash"));
    }
}
