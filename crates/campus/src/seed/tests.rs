//! Migrations and seeding against real databases: a temporary SQLite file, and
//! a throwaway PostgreSQL database created on `TEST_DATABASE_URL`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use anyhow::{Context as _, ensure};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, EntityTrait as _, ModelTrait as _,
    PaginatorTrait as _, QueryFilter as _, QueryOrder as _,
};

use super::{SeedOptions, seed};
use crate::db::{connect, is_foreign_key_violation, is_unique_violation, migrate};
use crate::entity::prelude::*;

fn small() -> SeedOptions {
    SeedOptions {
        orgs: 2,
        faculty: 10,
        students: 50,
        ..super::demo_options()
    }
}

/// A SQLite file in the temporary directory, removed (with its WAL files)
/// when dropped.
struct TempSqlite {
    path: std::path::PathBuf,
}

impl TempSqlite {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "campus-test-{}-{}-{}.db",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u64(..)
        );
        Self {
            path: std::env::temp_dir().join(name),
        }
    }

    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.path.display())
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn fresh_sqlite(file: &TempSqlite) -> DatabaseConnection {
    let db = connect(&file.url()).await.unwrap();
    migrate(&db).await.unwrap();
    db
}

/// The checks both backends must pass, on a migrated, empty database.
async fn seeded_database_checks(db: &DatabaseConnection) -> anyhow::Result<()> {
    let report = seed(db, &small()).await?;
    ensure!(report.skipped.is_empty(), "{report}");
    ensure!(
        (
            report.organizations,
            report.departments,
            report.programs,
            report.users,
            report.faculty,
            report.students
        ) == (2, 12, 24, 8, 20, 100),
        "{report}"
    );
    ensure!(Organization::find().count(db).await? == 2);
    ensure!(Department::find().count(db).await? == 12);
    ensure!(Program::find().count(db).await? == 24);
    ensure!(User::find().count(db).await? == 8);
    ensure!(Faculty::find().count(db).await? == 20);
    ensure!(Student::find().count(db).await? == 100);

    let org1 = Organization::find()
        .filter(organization::Column::Code.eq("org1"))
        .one(db)
        .await?
        .context("org1 missing")?;
    ensure!(org1.name == "Organization 1");
    for (username, role) in [
        ("org1-admin", "admin"),
        ("org1-staff", "staff"),
        ("org1-faculty", "faculty"),
        ("org2-student", "student"),
    ] {
        let user = User::find()
            .filter(user::Column::Username.eq(username))
            .one(db)
            .await?
            .with_context(|| format!("{username} missing"))?;
        ensure!(user.role == role, "{username} has role {}", user.role);
        ensure!(user.email == format!("{username}@campus.example"));
        ensure!(user.is_active);
        ensure!(
            crate::password::verify("campus-demo", &user.password_hash),
            "{username}'s hash does not verify"
        );
    }

    // Every student's program belongs to the student's department.
    for s in Student::find().all(db).await? {
        let program = s.find_related(Program).one(db).await?.context("program")?;
        ensure!(
            program.department_id == s.department_id,
            "{s:?} / {program:?}"
        );
    }

    // Seeding again skips what exists and writes nothing.
    let again = seed(db, &small()).await?;
    ensure!(
        again.skipped == ["org1", "org2"] && again.rows() == 0,
        "{again}"
    );
    ensure!(Student::find().count(db).await? == 100);

    // ON DELETE RESTRICT: a department with faculty stays.
    let cs = Department::find()
        .filter(department::Column::OrganizationId.eq(org1.id))
        .filter(department::Column::Code.eq("CS"))
        .one(db)
        .await?
        .context("CS missing")?;
    ensure!(
        Faculty::find()
            .filter(faculty::Column::DepartmentId.eq(cs.id))
            .count(db)
            .await?
            > 0,
        "no CS faculty to test the restriction with"
    );
    let err = cs
        .clone()
        .delete(db)
        .await
        .expect_err("deleting a referenced department");
    ensure!(
        is_foreign_key_violation(&err),
        "not a foreign key violation: {err:?}"
    );

    // Unique (organization_id, code).
    let duplicate = department::ActiveModel {
        organization_id: Set(org1.id),
        code: Set("CS".to_owned()),
        name: Set("Another CS".to_owned()),
        ..Default::default()
    };
    let err = duplicate
        .insert(db)
        .await
        .expect_err("inserting a duplicate code");
    ensure!(is_unique_violation(&err), "not a unique violation: {err:?}");

    // The same code in another organization is fine.
    let org2 = Organization::find()
        .filter(organization::Column::Code.eq("org2"))
        .one(db)
        .await?
        .context("org2 missing")?;
    let other = department::ActiveModel {
        organization_id: Set(org2.id),
        code: Set("XX".to_owned()),
        name: Set("Extra".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await?;

    // The foreign keys include the organization: a faculty member of org1
    // cannot be placed in a department of org2.
    let mut member: faculty::ActiveModel = Faculty::find()
        .filter(faculty::Column::OrganizationId.eq(org1.id))
        .one(db)
        .await?
        .context("org1 faculty")?
        .into();
    member.department_id = Set(other.id);
    let err = member
        .update(db)
        .await
        .expect_err("pointing into another tenant");
    ensure!(
        is_foreign_key_violation(&err),
        "not a foreign key violation: {err:?}"
    );

    // A department nothing references can go.
    other.delete(db).await?;
    Ok(())
}

/// (roll number, names, email, semester, batch, active, department code,
/// program code) of every student, in roll-number order.
async fn student_fingerprint(db: &DatabaseConnection) -> Vec<String> {
    let departments: std::collections::HashMap<i64, String> = Department::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.code))
        .collect();
    let programs: std::collections::HashMap<i64, String> = Program::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.id, p.code))
        .collect();
    Student::find()
        .order_by_asc(student::Column::OrganizationId)
        .order_by_asc(student::Column::RollNumber)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            format!(
                "{} {} {} {} {} {} {} {} {}",
                s.roll_number,
                s.first_name,
                s.last_name,
                s.email,
                s.semester,
                s.batch,
                s.is_active,
                departments[&s.department_id],
                programs[&s.program_id]
            )
        })
        .collect()
}

#[tokio::test]
async fn sqlite_migrates_and_seeds_with_constraints_enforced() {
    let file = TempSqlite::new();
    let db = fresh_sqlite(&file).await;
    seeded_database_checks(&db).await.unwrap();
}

#[tokio::test]
async fn the_same_seed_gives_the_same_students() {
    let (a, b) = (TempSqlite::new(), TempSqlite::new());
    let (db_a, db_b) = (fresh_sqlite(&a).await, fresh_sqlite(&b).await);
    seed(&db_a, &small()).await.unwrap();
    seed(&db_b, &small()).await.unwrap();
    let (fa, fb) = (
        student_fingerprint(&db_a).await,
        student_fingerprint(&db_b).await,
    );
    assert_eq!(fa.len(), 100);
    assert_eq!(fa, fb);

    let c = TempSqlite::new();
    let db_c = fresh_sqlite(&c).await;
    seed(&db_c, &SeedOptions { seed: 7, ..small() })
        .await
        .unwrap();
    assert_ne!(fa, student_fingerprint(&db_c).await);
}

#[tokio::test]
async fn migrations_roll_back_completely() {
    use sea_orm_migration::MigratorTrait as _;
    let file = TempSqlite::new();
    let db = fresh_sqlite(&file).await;
    crate::migration::Migrator::down(&db, None).await.unwrap();
    let tables: Vec<String> = sea_orm::ConnectionTrait::query_all_raw(
        &db,
        sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index') \
             AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations'",
        ),
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "name").unwrap())
    .collect();
    assert!(tables.is_empty(), "left behind: {tables:?}");
    assert_eq!(migrate(&db).await.unwrap(), all_migrations());
}

/// A database created for one test on the server of `TEST_DATABASE_URL`,
/// dropped when this guard drops, even if the test panics.
struct TempPostgres {
    admin_url: String,
    name: String,
    url: String,
}

impl TempPostgres {
    async fn create() -> Self {
        let admin_url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "TEST_DATABASE_URL is not set: run scripts/test.sh, which starts a throwaway \
                 PostgreSQL and sets it (or set it to a server where this test may create \
                 and drop databases)"
            )
        });
        let name = format!("campus_test_{:016x}", fastrand::u64(..));
        let admin = connect(&admin_url).await.unwrap();
        sea_orm::ConnectionTrait::execute_unprepared(&admin, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await, and the test's runtime may be unwinding: drop the
        // database from a runtime of our own on another thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let admin = connect(&admin_url).await?;
                sea_orm::ConnectionTrait::execute_unprepared(
                    &admin,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await?;
                admin.close().await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "warning: could not drop test database {}: {dropped:?}",
                self.name
            );
        }
    }
}

/// `url` pointing at database `name` on the same server.
fn with_database(url: &str, name: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[after_scheme..]
        .find(['/', '?'])
        .map_or(url.len(), |i| after_scheme + i);
    let query = url[path_start..]
        .find('?')
        .map_or("", |i| &url[path_start + i..]);
    format!("{}/{name}{query}", &url[..path_start])
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://u:p@h:5/postgres?sslmode=disable", "x"),
        "postgres://u:p@h:5/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

#[tokio::test]
async fn postgres_migrates_and_seeds_with_constraints_enforced() {
    let temp = TempPostgres::create().await;
    let db = connect(&temp.url).await.unwrap();
    assert_eq!(migrate(&db).await.unwrap(), all_migrations());
    assert_eq!(migrate(&db).await.unwrap(), 0);
    seeded_database_checks(&db).await.unwrap();

    // Bulk path: org1 and org2 exist and are skipped; org3 gets 50k students.
    let started = Instant::now();
    let report = seed(
        &db,
        &SeedOptions {
            orgs: 3,
            faculty: 500,
            students: 50_000,
            ..small()
        },
    )
    .await
    .unwrap();
    eprintln!("postgres: {report} (measured {:.2?})", started.elapsed());
    assert_eq!(report.skipped, ["org1", "org2"]);
    assert_eq!(report.students, 50_000);
    assert_eq!(Student::find().count(&db).await.unwrap(), 50_100);
    db.close().await.unwrap();
}

/// The SPEC's large size: 10 organizations × 100k students. Run by hand:
/// `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test
/// --release -p campus -- --ignored --nocapture seeds_a_million`.
#[tokio::test]
#[ignore = "slow: a million students; run by hand to measure"]
async fn seeds_a_million_students_on_postgres() {
    let temp = TempPostgres::create().await;
    let db = connect(&temp.url).await.unwrap();
    migrate(&db).await.unwrap();
    let report = seed(
        &db,
        &SeedOptions {
            orgs: 10,
            faculty: 500,
            students: 100_000,
            progress: true,
            ..small()
        },
    )
    .await
    .unwrap();
    eprintln!("postgres: {report}");
    assert_eq!(Student::find().count(&db).await.unwrap(), 1_000_000);
    db.close().await.unwrap();
}

fn all_migrations() -> usize {
    use sea_orm_migration::MigratorTrait;
    crate::migration::Migrator::migrations().len()
}
