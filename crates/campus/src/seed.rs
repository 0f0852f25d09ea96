//! Deterministic generated data (`campus seed`, and `serve --demo` on first
//! start): organizations `org1..orgN`, each with six departments, twelve
//! programs, N faculty, N students and four users (`org{i}-admin`, `-staff`,
//! `-faculty`, `-student`) sharing one password.
//!
//! The same seed gives the same rows (ids and timestamps aside). Each
//! organization is written in one transaction, so it exists completely or not
//! at all; an organization whose code already exists is skipped and listed in
//! [`SeedReport::skipped`], which makes seeding idempotent: `serve --demo`
//! re-runs it on every start, and an interrupted `campus seed` can simply be
//! run again.
//!
//! Bulk paths: PostgreSQL receives faculty and students through `COPY … FROM
//! STDIN` (1M students in well under two minutes); other backends (SQLite) get
//! multi-row `INSERT`s sized to SQLite's bound-parameter limit.

mod data;
mod orm;
mod postgres;

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use sea_orm::{
    ColumnTrait as _, DatabaseConnection, DbBackend, EntityTrait as _, QueryFilter as _,
};

use crate::entity::{Organization, organization};

/// What to generate; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedOptions {
    /// Organizations `org1..=orgs`.
    pub orgs: u32,
    /// Faculty members per organization.
    pub faculty: u32,
    /// Students per organization.
    pub students: u32,
    /// The password of every generated user.
    pub password: String,
    /// Seed of the random generator: same seed, same data.
    pub seed: u64,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Default for SeedOptions {
    fn default() -> Self {
        Self {
            orgs: 1,
            faculty: 50,
            students: 500,
            password: DEMO_PASSWORD.to_owned(),
            seed: 42,
            progress: false,
        }
    }
}

/// The password of the demo users (`serve --demo`, and `campus seed`'s default).
pub const DEMO_PASSWORD: &str = "campus-demo";

/// The data `serve --demo` seeds on first start: small enough to be instant,
/// large enough for pagination (page size 50) to show.
pub fn demo_options() -> SeedOptions {
    SeedOptions {
        orgs: 2,
        faculty: 20,
        students: 200,
        password: DEMO_PASSWORD.to_owned(),
        seed: 42,
        progress: false,
    }
}

/// Rows written by [`seed`], per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub organizations: u64,
    pub departments: u64,
    pub programs: u64,
    pub users: u64,
    pub faculty: u64,
    pub students: u64,
    /// Codes of the organizations that already existed and were left as they
    /// were.
    pub skipped: Vec<String>,
    pub elapsed: Duration,
}

impl SeedReport {
    /// Rows inserted over all tables.
    pub fn rows(&self) -> u64 {
        self.organizations
            + self.departments
            + self.programs
            + self.users
            + self.faculty
            + self.students
    }
}

impl fmt::Display for SeedReport {
    /// One line: `seeded 2 organizations (12 departments, 24 programs, 8
    /// users, 40 faculty, 400 students) in 0.4 s; skipped existing org3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seeded {} organizations ({} departments, {} programs, {} users, {} faculty, {} students) in {:.1} s",
            self.organizations,
            self.departments,
            self.programs,
            self.users,
            self.faculty,
            self.students,
            self.elapsed.as_secs_f64()
        )?;
        if !self.skipped.is_empty() {
            const SHOWN: usize = 5;
            write!(
                f,
                "; skipped existing {}",
                self.skipped[..self.skipped.len().min(SHOWN)].join(", ")
            )?;
            if self.skipped.len() > SHOWN {
                write!(f, " and {} more", self.skipped.len() - SHOWN)?;
            }
        }
        Ok(())
    }
}

/// Everything a backend writer needs to write one organization.
struct OrgPlan<'a> {
    number: u32,
    code: String,
    name: String,
    /// `created_at`, `updated_at` and `date_joined` of every row of the run.
    now: DateTime<Utc>,
    password_hash: &'a str,
    seed: u64,
    faculty: u32,
    students: u32,
}

impl OrgPlan<'_> {
    fn rows(&self) -> u64 {
        1 + data::DEPARTMENTS.len() as u64 * 3
            + 4
            + u64::from(self.faculty)
            + u64::from(self.students)
    }
}

/// Writes the organizations of `opts` that do not exist yet; see the module
/// documentation.
pub async fn seed(db: &DatabaseConnection, opts: &SeedOptions) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    let mut report = SeedReport::default();

    let existing = existing_codes(db, opts.orgs).await?;
    let mut todo = Vec::new();
    for i in 1..=opts.orgs {
        let code = org_code(i);
        if existing.contains(&code) {
            tracing::info!(organization = %code, "seed: organization exists, skipping it");
            report.skipped.push(code);
        } else {
            todo.push(i);
        }
    }
    if todo.is_empty() {
        report.elapsed = started.elapsed();
        return Ok(report);
    }

    // argon2 is deliberately slow (tens of ms in release, about a second in
    // debug builds): hash once for the whole run, off the async workers.
    let password = opts.password.clone();
    let password_hash = tokio::task::spawn_blocking(move || crate::password::hash(&password))
        .await
        .context("hashing the seed password")??;
    // Whole seconds: PostgreSQL keeps microseconds and SQLite the text sqlx
    // writes; a round value reads back identically from both.
    let now = Utc::now()
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap_or_else(|_| Utc::now());

    let plans: Vec<OrgPlan<'_>> = todo
        .iter()
        .map(|&i| OrgPlan {
            number: i,
            code: org_code(i),
            name: format!("Organization {i}"),
            now,
            password_hash: &password_hash,
            seed: opts.seed,
            faculty: opts.faculty,
            students: opts.students,
        })
        .collect();
    let progress = progress_bar(opts.progress, plans.iter().map(OrgPlan::rows).sum());

    for plan in &plans {
        progress.set_message(plan.code.clone());
        let written = match db.get_database_backend() {
            DbBackend::Postgres => {
                postgres::write_org(db.get_postgres_connection_pool(), plan, &progress).await
            }
            _ => orm::write_org(db, plan, &progress).await,
        };
        if let Err(e) = written {
            progress.abandon();
            return Err(e.context(format!("seeding organization {}", plan.code)));
        }
        report.organizations += 1;
        report.departments += data::DEPARTMENTS.len() as u64;
        report.programs += data::DEPARTMENTS.len() as u64 * 2;
        report.users += 4;
        report.faculty += u64::from(plan.faculty);
        report.students += u64::from(plan.students);
    }
    progress.finish_and_clear();
    if db.get_database_backend() == DbBackend::Postgres && !plans.is_empty() {
        // COPY leaves the planner without statistics and the visibility map
        // empty: counts would read the heap instead of the indexes alone.
        use sea_orm::ConnectionTrait;
        db.execute_unprepared(
            "VACUUM (ANALYZE) organizations, users, departments, programs, faculty, students",
        )
        .await
        .context("VACUUM ANALYZE after seeding")?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn org_code(i: u32) -> String {
    format!("org{i}")
}

/// Which of `org1..=orgs` already exist.
async fn existing_codes(db: &DatabaseConnection, orgs: u32) -> anyhow::Result<HashSet<String>> {
    let codes: Vec<String> = (1..=orgs).map(org_code).collect();
    let mut existing = HashSet::new();
    // Chunked: SQLite binds at most 32766 parameters per statement.
    for chunk in codes.chunks(1000) {
        let found = Organization::find()
            .filter(organization::Column::Code.is_in(chunk.iter().cloned()))
            .all(db)
            .await
            .context("reading existing organizations (is the database migrated?)")?;
        existing.extend(found.into_iter().map(|o| o.code));
    }
    Ok(existing)
}

fn progress_bar(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>6} [{wide_bar}] {human_pos}/{human_len} rows ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests;
