//! The `sluice` command: `serve`, `migrate`, `tenant create`, `key create|list|revoke`,
//! `links import|export`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::config::Config;
use sluice::keys::KeyKind;
use sluice::link::{self, catalog};
use sluice::server::Server;
use sluice::store::{
    clickhouse,
    redis::{Redis, Revocation},
};
use tracing::info;

/// mimalloc: small allocations on the redirect path and frees on the encoder thread are
/// cheaper than glibc's (one serving core: 73–82k → 82–91k req/s; loadtest/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Tracking-link redirector and attribution appliance"
)]
struct Cli {
    /// TOML config file; every setting can also be set with SLUICE_* environment variables.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations and serve redirects and the API.
    Serve,
    /// Apply pending ClickHouse migrations and exit.
    Migrate {
        /// Print every statement of the schema in the configured mode (one server, or the
        /// cluster form with SLUICE_CLICKHOUSE_CLUSTER), one per line as JSON strings, and
        /// apply nothing.
        #[arg(long)]
        print: bool,
    },
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage a tenant's API keys (for an operator; tenants use /v1/keys).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Import or export a tenant's links as CSV.
    Links {
        #[command(subcommand)]
        command: LinksCommand,
    },
}

#[derive(Subcommand)]
enum LinksCommand {
    /// Create links from a CSV file (a header row of link field names, one link a row),
    /// validated like the API; prints a JSON summary and one JSON line per refused row.
    Import {
        file: PathBuf,
        #[arg(long)]
        tenant: String,
    },
    /// Write the tenant's live links as CSV to stdout, newest first.
    Export {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key; prints it once as one line of JSON. Not bound by the tenant's key limit.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "secret", value_parser = ["secret", "publishable"])]
        kind: String,
    },
    /// List the tenant's keys, one JSON line each (ids and prefixes, never the keys).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by id; the tenant's last active secret key cannot be revoked.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints its id and keys as one line of JSON (keys are shown only once).
    Create {
        #[arg(long)]
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A panic is a bug: logged as one line with where it happened. While serving, the
    // request that hit it is answered 500 and the server goes on (`http::route`).
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("unnamed"), %info, "panic");
    }));
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    // This runtime runs the background work (inserter, fingerprint writer, deliveries,
    // refreshes); requests are served on their own threads (`server::Server`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(sluice::scheduling::lower_priority)
        .build()?;
    runtime.block_on(run(cli.command, config))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let server = Server::start(config).await?;
            wait_for_signal().await;
            info!("signal received; shutting down");
            let report = server.shutdown().await;
            if report.lost_rows > 0 {
                anyhow::bail!(
                    "{} clicks could not be written before the shutdown deadline",
                    report.lost_rows
                );
            }
            Ok(())
        }
        Command::Migrate { print: true } => {
            let schema = clickhouse::schema(&config.clickhouse);
            let all = std::iter::once(&schema.database)
                .chain(&schema.ledger)
                .chain(schema.migrations.iter().flat_map(|(_, s)| s));
            let mut out = std::io::stdout().lock();
            for statement in all {
                writeln!(out, "{}", serde_json::to_string(statement)?)?;
            }
            Ok(())
        }
        Command::Migrate { print: false } => {
            let applied = clickhouse::migrate(&config.clickhouse).await?;
            println!("{{\"applied\": {applied}}}");
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Create { name },
        } => {
            let redis = Redis::connect(&config.redis.url, &config.redis.prefix).await?;
            let tenant = redis.create_tenant(&name).await?;
            println!("{}", serde_json::to_string(&tenant)?);
            Ok(())
        }
        Command::Key { command } => {
            let redis = Redis::connect(&config.redis.url, &config.redis.prefix).await?;
            key_command(&redis, command).await
        }
        Command::Links { command } => {
            let redis = Redis::connect(&config.redis.url, &config.redis.prefix).await?;
            links_command(&redis, &config, command).await
        }
    }
}

async fn links_command(
    redis: &Redis,
    config: &Config,
    command: LinksCommand,
) -> anyhow::Result<()> {
    let tenant = match &command {
        LinksCommand::Import { tenant, .. } | LinksCommand::Export { tenant } => tenant.clone(),
    };
    anyhow::ensure!(redis.tenant_exists(&tenant).await?, "no tenant {tenant:?}");
    match command {
        LinksCommand::Import { file, .. } => {
            let input = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let rows = link::csv::read(std::io::BufReader::new(input))?;
            let ctx = catalog::Context {
                redis,
                table: None,
                limit: config.limits.links,
                feed_length: config.link_feed_length,
            };
            let (mut created, mut failed) = (0, 0);
            let mut rows = rows.into_iter();
            let mut first = 0;
            loop {
                let chunk: Vec<_> = rows.by_ref().take(catalog::BULK_MAX).collect();
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len();
                let bulk = catalog::create_many(&ctx, &tenant, chunk).await?;
                created += bulk.created.len();
                failed += bulk.failed.len();
                for e in bulk.failed {
                    // The file's line: the header is line 1.
                    let line = first + e.index + 2;
                    println!(
                        "{}",
                        serde_json::json!({"line": line, "field": e.field, "message": e.message})
                    );
                }
                first += n;
            }
            println!(
                "{}",
                serde_json::json!({"created": created, "failed": failed})
            );
        }
        LinksCommand::Export { .. } => {
            let mut out = link::csv::writer(std::io::stdout().lock())?;
            let mut cursor = None;
            loop {
                let (links, next) =
                    catalog::list(redis, &tenant, cursor.as_deref(), catalog::PAGE_MAX).await?;
                for l in &links {
                    link::csv::write(&mut out, l)?;
                }
                match next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            out.flush()?;
        }
    }
    Ok(())
}

async fn key_command(redis: &Redis, command: KeyCommand) -> anyhow::Result<()> {
    let known = |tenant: &str| {
        let tenant = tenant.to_string();
        async move {
            anyhow::ensure!(redis.tenant_exists(&tenant).await?, "no tenant {tenant:?}");
            Ok(())
        }
    };
    match command {
        KeyCommand::Create { tenant, kind } => {
            known(&tenant).await?;
            let kind = KeyKind::parse(&kind).context("kind is secret or publishable")?;
            let (entry, key) = redis
                .create_key(&tenant, kind, usize::MAX)
                .await?
                .context("key not created")?;
            println!("{}", entry.created(&key));
        }
        KeyCommand::List { tenant } => {
            known(&tenant).await?;
            for (key, used) in redis.keys_of(&tenant).await? {
                println!("{}", key.listing(used.as_deref()));
            }
        }
        KeyCommand::Revoke { tenant, id } => match redis.revoke_key(&tenant, &id).await? {
            Revocation::Revoked => println!("{}", serde_json::json!({ "revoked": id })),
            Revocation::Missing => anyhow::bail!("tenant {tenant:?} has no key {id:?}"),
            Revocation::LastSecret => {
                anyhow::bail!("{id} is the tenant's last active secret key: create another first")
            }
        },
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
