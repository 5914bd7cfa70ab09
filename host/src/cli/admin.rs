//! `dms migrate`, `dms tenant …`, `dms user …`: operator commands that work on the database
//! directly, with or without a running server.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::app::open_store;
use crate::auth::password::{self, Passwords};
use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::domain::user::{Role, check_username};
use crate::store::NewUser;

#[derive(Debug, Subcommand)]
pub(super) enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Its unique name.
        name: String,
    },
    /// List the tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        /// The tenant's name.
        #[arg(long)]
        tenant: String,
        /// The login name, unique on the server.
        #[arg(long)]
        username: String,
        /// admin or member.
        #[arg(long, default_value = "member")]
        role: Role,
        /// Read the password from standard input (required, so it never appears in the
        /// process list or shell history).
        #[arg(long)]
        password_stdin: bool,
        /// A display name.
        #[arg(long)]
        display_name: Option<String>,
    },
}

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Role::Admin, Role::Member]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

pub(super) async fn migrate(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let store = open_store(&config).await?;
    println!("Migrations applied ({}).", store.backend());
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn tenant(
    config: Option<&Path>,
    command: TenantCommand,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let store = open_store(&config).await?;
    match command {
        TenantCommand::Create { name } => {
            if name.trim().is_empty() || name.chars().count() > 64 {
                bail!("a tenant name has 1 to 64 characters");
            }
            let tenant = store.create_tenant(&name, Clock::System.now_ms()).await?;
            println!("Created tenant {} ({}).", tenant.name, tenant.id);
        }
        TenantCommand::List => {
            for tenant in store.list_tenants().await? {
                println!(
                    "{}\t{}\t{}",
                    tenant.id,
                    tenant.name,
                    rfc3339(tenant.created_at_ms)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn user(config: Option<&Path>, command: UserCommand) -> anyhow::Result<ExitCode> {
    let UserCommand::Create {
        tenant,
        username,
        role,
        password_stdin,
        display_name,
    } = command;
    if !password_stdin {
        bail!(
            "pass --password-stdin and pipe the password in, e.g. `printf '%s' \"$PASSWORD\" | dms user create … --password-stdin`"
        );
    }
    check_username(&username).map_err(anyhow::Error::msg)?;
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    password::check_new(password).map_err(anyhow::Error::msg)?;

    let config = Config::load(config)?;
    let store = open_store(&config).await?;
    let Some(tenant) = store.tenant_by_name(&tenant).await? else {
        bail!("there is no tenant named {tenant:?}; create it with `dms tenant create {tenant}`");
    };
    let hash = Passwords::new(1).await?.hash(password).await?;
    let user = store
        .create_user(
            &tenant.id,
            NewUser {
                username,
                display_name,
                role,
                password_hash: hash,
            },
            Clock::System.now_ms(),
        )
        .await?;
    println!(
        "Created {} {} in tenant {} ({}).",
        user.role.as_str(),
        user.username,
        tenant.name,
        user.id
    );
    Ok(ExitCode::SUCCESS)
}
