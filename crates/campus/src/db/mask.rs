//! A URL's password hidden, for logs and error messages: what [`mask_url`]
//! shows of a URL, and what [`scrub`] removes from a driver's message.

/// `url` with its password replaced by `***`, for logs and error messages:
/// `postgres://app:secret@db/campus?password=x` becomes
/// `postgres://app:***@db/campus?password=***`.
pub fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return mask_query_password(url);
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    match password_span(rest) {
        Some((start, end)) => format!(
            "{scheme}{}***{}",
            &rest[..start],
            mask_query_password(&rest[end..])
        ),
        None => format!("{scheme}{}", mask_query_password(rest)),
    }
}

/// Where the password sits in `rest` (what follows `scheme://`): from after the
/// first `:` of the user information to its last `@`. A password may hold `/`,
/// `?` or `#` unescaped (drivers accept it), so the user information is not cut
/// at the first of them: it runs to the last `@` of the URL, and a query that
/// happens to hold an `@` is masked too, which hides nothing that matters.
fn password_span(rest: &str) -> Option<(usize, usize)> {
    let at = rest.rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some((colon + 1, at))
}

/// Removes the password of `url` from `text`, should a driver message quote it.
pub(super) fn scrub(text: &str, url: &str) -> String {
    match password_of(url) {
        Some(password) if password.len() >= 3 => text.replace(password, "***"),
        _ => text.to_owned(),
    }
}

fn password_of(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let (start, end) = password_span(rest)?;
    Some(&rest[start..end])
}

fn mask_query_password(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_owned();
    };
    let (path, query) = tail.split_at(q + 1);
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}{}", masked.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_url_hides_passwords_only() {
        assert_eq!(
            mask_url("postgres://app:s3cr@t@db.example:5432/campus"),
            "postgres://app:***@db.example:5432/campus"
        );
        assert_eq!(
            mask_url("postgres://app@db/campus?sslmode=require&password=x"),
            "postgres://app@db/campus?sslmode=require&password=***"
        );
        assert_eq!(mask_url("postgres://db/campus"), "postgres://db/campus");
        assert_eq!(
            mask_url("sqlite://campus.db?mode=rwc"),
            "sqlite://campus.db?mode=rwc"
        );
        assert_eq!(mask_url("sqlite::memory:"), "sqlite::memory:");
        // Unescaped `/`, `?` and `#` in a password (drivers take them).
        for password in ["pa/ss", "pa?ss", "pa#ss", "a/b?c#d@e"] {
            let url = format!("postgres://app:{password}@db:5432/campus?sslmode=require");
            let shown = mask_url(&url);
            assert_eq!(shown, "postgres://app:***@db:5432/campus?sslmode=require");
            assert_eq!(password_of(&url), Some(password));
        }
        assert_eq!(
            mask_url("redis://:pa/ss@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
    }
}
