//! PostgreSQL's side: the database restarted under load, and writes made with
//! plain SQL outside the API, which must show on every instance within SPEC
//! §5.5's second, even when the listeners were cut off meanwhile.

use std::time::{Duration, Instant};

use reqwest::Method;
use sea_orm::sqlx;

use super::{OUTSIDE, WINDOWS, begin, finish};
use crate::Rig;
use crate::history::SQL;
use crate::load::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted() {
    let rig = Rig::start("pgrestart", &[&[], &[]]).await;
    let run = begin(&rig).await;
    let t0 = Instant::now();
    rig.pg.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.pg.start_again();
    let t1 = Instant::now();
    // Recovery without restarting Campus: a write succeeds on every instance.
    let mut recovered = None;
    while recovered.is_none() && t1.elapsed() < Duration::from_secs(20) {
        let mut ok = true;
        for i in 0..2 {
            let org = &run.world.orgs[0];
            let (_, _, status, _, _) = run
                .world
                .send(i, Method::GET, "/api/auth/me/", &org.token, None)
                .await;
            let (_, _, s2, _, _) = run
                .world
                .send(
                    i,
                    Method::GET,
                    &format!("/api/students/?search=zz{}", fastrand::u32(..)),
                    &org.token,
                    None,
                )
                .await;
            ok &= status == 200 && s2 == 200;
        }
        if ok {
            recovered = Some(t1.elapsed());
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let out = finish(&rig, run, (t0, t1), WINDOWS).await;
    out.assert_correct();
    assert_eq!(
        out.all.s5xx, out.all.s503,
        "only 503s while the database is down"
    );
    assert_eq!(out.all.transport, 0);
    let recovered = recovered.expect("Campus did not recover after PostgreSQL came back");
    out.row(
        "postgres_restarted",
        "`pg_ctl stop -m fast`, started again after 2 s",
        format!(
            "{} answered from the cache during; uncached requests 503 with Retry-After; recovered {:.2} s after the restart",
            out.during.hits(),
            recovered.as_secs_f64()
        ),
    );
}

/// Renames the first department of an organization with plain SQL (the API's
/// writers leave it alone) and records it as a write of [`SQL`].
async fn sql_rename(db: &sqlx::PgPool, world: &World, oi: usize, version: u64) -> Instant {
    let (id, name, _) = &world.orgs[oi].depts[0];
    let start = Instant::now();
    sqlx::query("UPDATE departments SET name = $1 WHERE id = $2")
        .bind(crate::history::with_version(name, version))
        .bind(id)
        .execute(db)
        .await
        .unwrap();
    let ack = Instant::now();
    world.history.write(crate::history::Write {
        key: crate::history::Key::DeptName(*id),
        version,
        instance: SQL,
        start,
        ack: Some(ack),
    });
    ack
}

/// Until both instances show department `id` named at `version` (or absent when
/// `version` is `None`); how long that took.
async fn until_visible(world: &World, oi: usize, id: i64, version: Option<u64>) -> Duration {
    let t = Instant::now();
    let token = world.orgs[oi].token.clone();
    loop {
        let mut all = true;
        for i in 0..world.bases.len() {
            let path = format!("/api/departments/{id}/");
            let (_, _, status, _, v) = world
                .send_opt(i, Method::GET, &path, &token, None, true)
                .await;
            all &= match version {
                Some(n) => {
                    status == 200 && v["name"].as_str().map(crate::history::version_of) == Some(n)
                }
                None => status == 404,
            };
        }
        if all {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "department {id} never showed {version:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_from_outside_the_api() {
    let rig = Rig::start("outside", &[&[], &[]]).await;
    let run = begin(&rig).await;
    let world = run.world.clone();
    let t0 = Instant::now();
    let mut version = [0u64; 3];
    let mut delays = Vec::new();
    // Single-row updates through plain SQL, each timed until both instances show it.
    for round in 0..6 {
        let oi = round % 3;
        version[oi] += 1;
        sql_rename(&rig.db, &world, oi, version[oi]).await;
        let id = world.orgs[oi].depts[0].0;
        delays.push(until_visible(&world, oi, id, Some(version[oi])).await);
    }
    // One bulk statement over all three organizations (what an `update_many` or
    // a migration does).
    let start = Instant::now();
    let ids: Vec<i64> = world.orgs.iter().map(|o| o.depts[0].0).collect();
    for v in &mut version {
        *v += 1;
    }
    sqlx::query(
        "UPDATE departments SET name = regexp_replace(name, ' ~v[0-9]+$', '') || ' ~v' || $1 \
         WHERE id = ANY($2)",
    )
    .bind(version[0] as i64)
    .bind(&ids)
    .execute(&rig.db)
    .await
    .unwrap();
    let ack = Instant::now();
    assert!(version.iter().all(|v| *v == version[0]));
    for id in &ids {
        world.history.write(crate::history::Write {
            key: crate::history::Key::DeptName(*id),
            version: version[0],
            instance: SQL,
            start,
            ack: Some(ack),
        });
    }
    for (oi, id) in ids.iter().enumerate() {
        delays.push(until_visible(&world, oi, *id, Some(version[0])).await);
    }
    // A row inserted and deleted with SQL.
    let org0: i64 = sqlx::query_scalar("SELECT organization_id FROM departments WHERE id = $1")
        .bind(ids[0])
        .fetch_one(&rig.db)
        .await
        .unwrap();
    let new_id: i64 = sqlx::query_scalar(
        "INSERT INTO departments (organization_id, code, name) \
         VALUES ($1, 'SQLX', 'Inserted by SQL') RETURNING id",
    )
    .bind(org0)
    .fetch_one(&rig.db)
    .await
    .unwrap();
    delays.push(until_visible(&world, 0, new_id, Some(0)).await);
    sqlx::query("DELETE FROM departments WHERE id = $1")
        .bind(new_id)
        .execute(&rig.db)
        .await
        .unwrap();
    delays.push(until_visible(&world, 0, new_id, None).await);
    // Notifications missed while the listeners are cut off: the rename lands
    // between the cut and their reconnection, and the sweep on reconnection
    // covers it.
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'",
    )
    .fetch_all(&rig.db)
    .await
    .unwrap();
    version[1] += 1;
    sql_rename(&rig.db, &world, 1, version[1]).await;
    let missed = until_visible(&world, 1, ids[1], Some(version[1])).await;
    let t1 = Instant::now();
    let out = finish(&rig, run, (t0, t1), WINDOWS).await;
    out.assert_correct();
    assert_eq!(out.all.s5xx + out.all.transport, 0);
    assert_eq!(cut.len(), 2, "expected one listener per instance: {cut:?}");
    delays.sort();
    let max = *delays.last().unwrap();
    println!(
        "outside writes visible on both instances after {delays:?}; missed while cut off: {missed:?}"
    );
    assert!(
        max < OUTSIDE,
        "an outside write took {max:?} to show (SPEC §5.5: within 1 s)"
    );
    assert!(missed < Duration::from_secs(10));
    out.row(
        "writes_from_outside_the_api",
        "plain SQL UPDATE (6 single rows, 1 bulk over 3 orgs), INSERT, DELETE; listeners terminated",
        format!(
            "visible on both instances after p50 {:.1} ms, max {:.1} ms; a write made while the listeners were cut off: visible after {:.2} s (reconnect + sweep)",
            delays[delays.len() / 2].as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            missed.as_secs_f64()
        ),
    );
}
