use super::entry::{MAX_REMEMBERED, MAX_REMEMBERED_LEN, digest};
use super::*;
use proptest::prelude::*;

fn kb() -> KeyBuilder {
    KeyBuilder::new("campus", "v1").unwrap()
}

#[test]
fn layout_matches_the_spec() {
    let s = Scope::org(1);
    let key = kb()
        .entry(Kind::List, "faculty", &s)
        .param("page", 1)
        .param("department", "CS")
        .build()
        .unwrap();
    assert_eq!(key, "campus:v1:list:faculty:{org_1}:department=CS:page=1");
    assert_eq!(
        kb().generation("faculty", &s).unwrap(),
        "campus:gen:faculty:{org_1}"
    );
}

#[test]
fn remembered_digests_are_the_digests() {
    let s = Scope::org(1);
    let key = |v: &str| {
        kb().entry(Kind::List, "faculty", &s)
            .param("base", v)
            .build()
            .unwrap()
    };
    let long = "h".repeat(MAX_REMEMBERED_LEN + 1) + ":";
    for v in ["http://a:1/x/", "http://a:1/y/", long.as_str()] {
        let want = format!(
            "campus:v1:list:faculty:{{org_1}}:base~{}",
            digest(&[v.as_bytes()])
        );
        // Computed, then remembered (or not, when long).
        assert_eq!(key(v), want);
        assert_eq!(key(v), want);
    }
    // More values than the memo holds: it is emptied, never wrong.
    for i in 0..MAX_REMEMBERED + 10 {
        let v = format!("v:{i}");
        assert!(key(&v).ends_with(&digest(&[v.as_bytes()])));
    }
    assert_eq!(
        key("http://a:1/x/"),
        format!(
            "campus:v1:list:faculty:{{org_1}}:base~{}",
            digest(&[b"http://a:1/x/"])
        )
    );
}

#[test]
fn defaults_and_empty_values_are_dropped() {
    let s = Scope::org(1);
    let a = kb()
        .entry(Kind::List, "faculty", &s)
        .param("page", "1")
        .param("search", "")
        .default("page", 1)
        .build()
        .unwrap();
    let b = kb()
        .entry(Kind::List, "faculty", &s)
        .default("page", 1)
        .build()
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a, "campus:v1:list:faculty:{org_1}");
}

#[test]
fn odd_values_are_hashed() {
    let s = Scope::org(1);
    let key = kb()
        .entry(Kind::List, "faculty", &s)
        .param("search", "x:{org_2}*")
        .build()
        .unwrap();
    assert!(
        key.starts_with("campus:v1:list:faculty:{org_1}:search~"),
        "{key}"
    );
    assert_eq!(key.matches('{').count(), 1);
    let long = "a".repeat(MAX_RAW_LEN + 1);
    let key = kb()
        .entry(Kind::List, "f", &s)
        .param("q", &long)
        .build()
        .unwrap();
    assert!(!key.contains(&long));
}

#[test]
fn bad_segments_are_rejected() {
    assert!(KeyBuilder::new("cam:pus", "v1").is_err());
    assert!(KeyBuilder::new("campus", "").is_err());
    assert!(Scope::new("org_{1}").is_err());
    assert!(
        kb().entry(Kind::List, "fa culty", &Scope::org(1))
            .build()
            .is_err()
    );
}

fn param() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            Just("page".to_owned()),
            Just("page_size".to_owned()),
            "[a-z_]{1,8}",
            ".{0,6}"
        ],
        prop_oneof!["[A-Za-z0-9_.-]{0,8}", ".{0,12}", "[=~:{}]{1,4}"],
    )
}

fn build(params: &[(String, String)]) -> String {
    kb().entry(Kind::List, "faculty", &Scope::org(1))
        .params(params.iter().cloned())
        .default("page", "1")
        .build()
        .unwrap()
}

/// The canonical form of a query: what the key must be a function of, and only of.
fn canonical(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = params
        .iter()
        .filter(|(n, v)| !(v.is_empty() || (n == "page" && v == "1")))
        .cloned()
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

proptest! {
    #[test]
    fn permuted_queries_share_a_key(params in proptest::collection::vec(param(), 0..6), seed in any::<u64>()) {
        // Shuffle while keeping the relative order of repeated names.
        let mut shuffled = params.clone();
        let mut rng = fastrand::Rng::with_seed(seed);
        rng.shuffle(&mut shuffled);
        let mut reordered: Vec<(String, String)> = Vec::new();
        for (n, _) in &shuffled {
            if reordered.iter().any(|(m, _)| m == n) { continue; }
            reordered.extend(params.iter().filter(|(m, _)| m == n).cloned());
        }
        prop_assert_eq!(build(&params), build(&reordered));
    }

    #[test]
    fn different_queries_never_share_a_key(a in proptest::collection::vec(param(), 0..5), b in proptest::collection::vec(param(), 0..5)) {
        if canonical(&a) != canonical(&b) {
            prop_assert_ne!(build(&a), build(&b));
        } else {
            prop_assert_eq!(build(&a), build(&b));
        }
    }

    #[test]
    fn no_key_escapes_its_prefix_and_scope(params in proptest::collection::vec(param(), 0..6)) {
        let key = build(&params);
        let head = "campus:v1:list:faculty:{org_1}";
        prop_assert!(key.starts_with(head));
        let tail = &key[head.len()..];
        prop_assert!(!tail.contains(['{', '}']), "braces in {}", tail);
        for segment in tail.split(':').skip(1) {
            prop_assert!(segment.contains('=') || segment.contains('~'), "segment {}", segment);
        }
    }
}
