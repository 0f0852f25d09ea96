//! `campus createuser --org CODE --username U --role R [--password P]`.

use std::io::{BufRead, IsTerminal};

use chrono::Utc;
use clap::Args;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use crate::auth::Role;
use crate::config::Config;
use crate::entity::{organization, user};

#[derive(Debug, Clone, Args)]
pub struct CreateUserArgs {
    /// Organization code (e.g. org1).
    #[arg(long)]
    pub org: String,
    #[arg(long)]
    pub username: String,
    /// admin, staff, faculty or student.
    #[arg(long, value_parser = ["admin", "staff", "faculty", "student"])]
    pub role: String,
    /// The password; prompted for when absent.
    #[arg(long)]
    pub password: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
}

pub async fn run(args: CreateUserArgs, config: Config) -> anyhow::Result<()> {
    let db = crate::db::connect(&config.database_url).await?;
    crate::db::migrate(&db).await?;
    let org = organization::Entity::find()
        .filter(organization::Column::Code.eq(args.org.as_str()))
        .one(&db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("--org: no organization with code {:?}", args.org))?;
    if user::Entity::find()
        .filter(user::Column::Username.eq(args.username.as_str()))
        .one(&db)
        .await?
        .is_some()
    {
        anyhow::bail!("--username: {:?} already exists", args.username);
    }
    let password = match args.password {
        Some(p) => p,
        // On a terminal the password is typed without echo; piped in (scripts),
        // it is the first line of standard input.
        None if std::io::stdin().is_terminal() => rpassword::prompt_password("Password: ")?,
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if password.chars().count() < 8 {
        anyhow::bail!("password: at least 8 characters");
    }
    let role = Role::parse(&args.role).expect("clap checked the role");
    let email = args
        .email
        .unwrap_or_else(|| format!("{}@campus.example", args.username));
    let created = user::ActiveModel {
        organization_id: Set(org.id),
        username: Set(args.username.clone()),
        email: Set(email),
        first_name: Set(String::new()),
        last_name: Set(String::new()),
        role: Set(role.as_str().to_owned()),
        password_hash: Set(crate::password::hash(&password)?),
        is_active: Set(true),
        date_joined: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    println!(
        "created user {} (id {}) in {} as {}",
        created.username,
        created.id,
        org.code,
        role.as_str()
    );
    Ok(())
}
