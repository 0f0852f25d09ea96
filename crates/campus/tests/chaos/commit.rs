//! A committed write is invalidated whatever becomes of its request (SPEC
//! §5.4): its client gone during a slow `COMMIT`, or its process killed right
//! after the `COMMIT`. Two `campus serve` processes share PostgreSQL and Redis;
//! both cache the row before the write, and both must show it after.

use std::time::{Duration, Instant};

use reqwest::Client;
use sea_orm::sqlx;
use serde_json::{Value, json};

use crate::Rig;
use crate::load::login;

/// Org 1's first faculty row, its detail cached (a `HIT`) on every instance.
async fn cached_row(rig: &Rig, client: &Client, token: &str) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "SELECT f.id FROM faculty f JOIN organizations o ON o.id = f.organization_id \
         WHERE o.code = 'org1' ORDER BY f.id LIMIT 1",
    )
    .fetch_one(&rig.db)
    .await
    .unwrap();
    for base in rig.bases() {
        let url = format!("{base}/api/faculty/{id}/");
        let _ = client.get(&url).bearer_auth(token).send().await.unwrap();
        let r = client.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.headers()["x-cache"], "HIT", "{url} warmed");
    }
    id
}

/// Until PostgreSQL holds `name` in faculty `id` (the write committed).
async fn committed(rig: &Rig, id: i64, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now: String = sqlx::query_scalar("SELECT first_name FROM faculty WHERE id = $1")
            .bind(id)
            .fetch_one(&rig.db)
            .await
            .unwrap();
        if now == name {
            return;
        }
        assert!(Instant::now() < deadline, "the write never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long after the commit instance `base` showed `name` (the test fails
/// if it does not within 10 s: without the fix, the old row stays cached for
/// the detail TTL, an hour).
async fn until_shown(client: &Client, base: &str, token: &str, id: i64, name: &str) -> Duration {
    let t = Instant::now();
    loop {
        let v: Value = client
            .get(format!("{base}/api/faculty/{id}/"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["first_name"] == name {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{base} still serves the row from before the committed write: {v}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn recovered_from_outbox(rig: &Rig) -> Vec<String> {
    rig.campus
        .iter()
        .filter(|c| {
            std::fs::read_to_string(&c.log)
                .unwrap_or_default()
                .contains("invalidated committed writes whose own invalidation did not finish")
        })
        .map(|c| c.name.clone())
        .collect()
}

/// A client that gives up while PostgreSQL commits (a proxy's read timeout):
/// the handler is dropped mid-`COMMIT`, the write commits anyway, and its own
/// task invalidates it on both instances (not the outbox's sweep, which would
/// take a second longer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_gone_during_a_slow_commit_still_invalidates_on_both_instances() {
    let rig = Rig::start("slow-commit", &[&[], &[]]).await;
    // Every COMMIT that updated a faculty row sleeps for a second.
    sqlx::raw_sql(
        "CREATE FUNCTION chaos_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER chaos_slow_commit AFTER UPDATE ON faculty \
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION chaos_slow_commit();",
    )
    .execute(&rig.db)
    .await
    .unwrap();
    let client = Client::new();
    let bases = rig.bases();
    let token = login(&client, &bases[0], "org1-admin").await;
    let id = cached_row(&rig, &client, &token).await;

    let gone = client
        .patch(format!("{}/api/faculty/{id}/", bases[0]))
        .bearer_auth(&token)
        .json(&json!({"first_name": "Committed"}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(
        gone.as_ref().is_err_and(|e| e.is_timeout()),
        "the client gave up before the answer: {gone:?}"
    );
    committed(&rig, id, "Committed").await;
    for base in &bases {
        let took = until_shown(&client, base, &token, id, "Committed").await;
        println!("{base}: the committed write shown {took:?} after PostgreSQL had it");
    }
    assert_eq!(
        recovered_from_outbox(&rig),
        Vec::<String>::new(),
        "the writer's own task invalidated it, not a sweep"
    );
}

/// An instance that dies right after its `COMMIT` (a test-only failpoint:
/// `CAMPUS_TEST_FAILPOINT=abort-after-commit` exits there): the other instance
/// finds the write in the outbox and invalidates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_right_after_commit_is_invalidated_by_the_other() {
    let rig = Rig::start(
        "killed-after-commit",
        &[&[("CAMPUS_TEST_FAILPOINT", "abort-after-commit")], &[]],
    )
    .await;
    let client = Client::new();
    let bases = rig.bases();
    let token = login(&client, &bases[0], "org1-admin").await;
    let id = cached_row(&rig, &client, &token).await;

    let died = client
        .patch(format!("{}/api/faculty/{id}/", bases[0]))
        .bearer_auth(&token)
        .json(&json!({"first_name": "Orphaned"}))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(died.is_err(), "the writer answered: {died:?}");
    committed(&rig, id, "Orphaned").await;
    let took = until_shown(&client, &bases[1], &token, id, "Orphaned").await;
    println!("the other instance showed the orphaned write {took:?} after PostgreSQL had it");
    assert_eq!(recovered_from_outbox(&rig), vec!["campus1".to_owned()]);
}
