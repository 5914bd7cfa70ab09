//! `dms migrate`, `dms tenant …`, `dms user …`: operator commands that work on the database
//! directly, with or without a running server.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::auth::password::Passwords;
use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::domain::user::Role;
use crate::state::open_store;
use crate::use_cases::accounts::{self, Accounts, NewAccount};

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

/// The account use cases over the configured database, as an operator runs them (no live
/// connections to close).
async fn accounts(config: Option<&Path>) -> anyhow::Result<Accounts> {
    let config = Config::load(config)?;
    let store = open_store(&config).await?;
    let passwords = Arc::new(Passwords::new(1).await?);
    Ok(Accounts::new(store, passwords, Clock::System, None))
}

/// An account error in the CLI's words: a field is named by its option (`--username`).
fn refused(error: accounts::Error) -> anyhow::Error {
    match error {
        // The tenant's name is the command's argument, not an option.
        accounts::Error::Invalid { field, reason } if field == "/name" => anyhow::anyhow!(reason),
        accounts::Error::Invalid { field, reason } => {
            let option = field.trim_start_matches('/').replace('_', "-");
            anyhow::anyhow!("--{option}: {reason}")
        }
        other => other.into(),
    }
}

pub(super) async fn tenant(
    config: Option<&Path>,
    command: TenantCommand,
) -> anyhow::Result<ExitCode> {
    let accounts = accounts(config).await?;
    match command {
        TenantCommand::Create { name } => {
            let tenant = accounts.create_tenant(&name).await.map_err(refused)?;
            println!("Created tenant {} ({}).", tenant.name, tenant.id);
        }
        TenantCommand::List => {
            for tenant in accounts.tenants().await? {
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
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();

    let accounts = accounts(config).await?;
    let Some(tenant) = accounts.tenant_named(&tenant).await? else {
        bail!("there is no tenant named {tenant:?}; create it with `dms tenant create {tenant}`");
    };
    let user = accounts
        .create_user(
            &tenant.id,
            NewAccount {
                username,
                password,
                display_name,
                role,
            },
        )
        .await
        .map_err(refused)?;
    println!(
        "Created {} {} in tenant {} ({}).",
        user.role.as_str(),
        user.username,
        tenant.name,
        user.id
    );
    Ok(ExitCode::SUCCESS)
}
