//! The `tessera` command: the git server, its users, tokens, rules and
//! schema, and the data bridge. Configuration comes from flags, then
//! `TESSERA_*` environment variables, then `tessera.toml`, then defaults
//! (`config`).

mod admin;
mod blink;
mod config;
mod data;
mod memory;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tessera_server::Config;
use tessera_store::Dialect;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "git monorepo server on SQL storage, and a data bridge between SQL databases and git"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve git over smart HTTP, and SSH with --ssh-listen (creates and
    /// migrates the data dir on first start).
    Serve(ServerArgs),
    /// Add, list and disable users; set their passwords and SSH keys.
    User {
        #[command(subcommand)]
        action: admin::UserAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Create, list and revoke a user's access tokens.
    Token {
        #[command(subcommand)]
        action: admin::TokenAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Groups of users, for access rules.
    Group {
        #[command(subcommand)]
        action: admin::GroupAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Who may read, write or maintain which paths.
    Access {
        #[command(subcommand)]
        action: admin::AccessAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The audit log of writes, newest first.
    Audit {
        /// Entries at or below this path.
        #[arg(long)]
        path: Option<String>,
        /// Entries by this user (or `local:<os user>` for commands run here).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The effective configuration and the keys it is read from.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Merge requests on a running server.
    Mr {
        #[command(subcommand)]
        action: MrAction,
        /// The server to talk to.
        #[arg(long, env = "TESSERA_SERVER", default_value = "http://127.0.0.1:8000", global = true)]
        server: String,
        /// Token for merging and closing.
        #[arg(long, env = "TESSERA_TOKEN", global = true)]
        token: Option<String>,
    },
    /// Import directories.
    Import {
        #[command(subcommand)]
        action: ImportAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The data bridge: SQL tables to git and back.
    Data {
        #[command(subcommand)]
        command: data::Command,
    },
    /// Check that every stored object reads back within the limits pushes
    /// are held to; `--repair` stores again, whole, objects an earlier
    /// version accepted with delta chains too deep to read.
    Fsck {
        /// One repository path (`/import/x`, `/`); default: every repository.
        path: Option<String>,
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Where pack files and LFS objects are kept.
    Storage {
        #[command(subcommand)]
        action: admin::StorageAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lite views' client side: `tessera blink install` in a clone of
    /// `http://HOST/-/blink/<path>` checks out the content of its b-link files.
    Blink {
        #[command(subcommand)]
        command: blink::Command,
    },
    /// Database administration.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the configuration in effect, one `key = value` per line.
    Show,
    /// Print each `tessera.toml` key with its environment variable.
    Keys,
}

#[derive(Subcommand)]
enum MrAction {
    /// List merge requests.
    List {
        /// open, merged, closed, conflict or all
        #[arg(long, default_value = "open")]
        status: String,
    },
    /// Show one: commits, files changed, diffstat.
    Show {
        id: i64,
        /// The server's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Merge it into the monorepo (once it has the approvals its path requires).
    Merge { id: i64 },
    /// Comment on it, or on a line of one of its files.
    Comment {
        id: i64,
        text: String,
        /// A file, relative to the merge request's directory.
        #[arg(long)]
        file: Option<String>,
        #[arg(long, requires = "file")]
        line: Option<i64>,
    },
    /// Approve its current head (maintainers of its path, not its author).
    Approve { id: i64 },
    /// How many maintainer approvals merges at or below PATH need (maintain on PATH).
    RequireApprovals { path: String, count: i64 },
    /// Close it without merging.
    Close { id: i64 },
    /// Reopen a closed one.
    Reopen { id: i64 },
}

#[derive(Subcommand)]
enum ImportAction {
    /// Make an import directory a monorepo directory (irreversible): its
    /// history stays, and later pushes open merge requests. A directory has
    /// one branch, main: converting an import with other branches or tags,
    /// or whose default branch has another name, is refused (listing them)
    /// unless --drop-refs.
    Convert {
        path: String,
        #[arg(long)]
        drop_refs: bool,
    },
}

#[derive(Subcommand)]
enum DbAction {
    /// Print the schema's SQL for a dialect, for DBAs who create it by hand.
    Schema {
        #[arg(long, default_value = "sqlite")]
        dialect: String,
    },
}

#[derive(Args, Clone, Default)]
struct ServerArgs {
    /// Where the SQLite database and pack files live [default: ./tessera-data]
    #[arg(long, env = "TESSERA_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000]
    #[arg(long, env = "TESSERA_LISTEN", global = true)]
    listen: Option<String>,
    /// Also serve git over SSH on this address, e.g. 127.0.0.1:2222 [default: no SSH]
    #[arg(long, env = "TESSERA_SSH_LISTEN", global = true)]
    ssh_listen: Option<String>,
    /// Database URL: sqlite://…, postgres://… or mysql://… [default: sqlite in the data dir]
    #[arg(long, env = "TESSERA_DATABASE", global = true)]
    database: Option<String>,
    /// Configuration file [default: ./tessera.toml if present]
    #[arg(long, env = "TESSERA_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Let an administration command create the data directory and
    /// database when they do not exist yet (it refuses otherwise).
    #[arg(long, global = true)]
    init: bool,
}

/// The store an administration command works on: the server's, which must
/// exist unless `--init` asks to create it.
async fn admin_store(args: &ServerArgs) -> anyhow::Result<(Config, tessera_store::Store)> {
    let config = config::load(args)?;
    if !args.init && !tessera_store::Store::exists(&config.database).await? {
        anyhow::bail!(
            "no tessera database at {} (data dir {}): run this where the server's data is, or pass --data-dir, \
             --database or --config; add --init to create a new one",
            config.database,
            config.data_dir.display()
        );
    }
    let store = tessera_server::open_store(&config).await?;
    Ok((config, store))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let config = config::load(&args)?;
            let server = tessera_server::Server::bind(config.clone()).await?;
            println!("tessera listening on http://{}  (data: {})", server.local_addr(), config.data_dir.display());
            if let Some(addr) = server.ssh_addr() {
                println!(
                    "tessera serving git over SSH on ssh://git@{addr}/  (host key: {})",
                    config.data_dir.join(tessera_server::ssh::HOST_KEY_FILE).display()
                );
            }
            if server.has_no_users().await? {
                eprintln!(
                    "no users yet: create one with `tessera user add NAME --admin`, then a token to push with \
                     `tessera token create --user NAME` (on the same data directory)"
                );
            }
            server.run().await?;
        }
        Command::User { action, server } => admin::user(&admin_store(&server).await?.1, action).await?,
        Command::Token { action, server } => admin::token(&admin_store(&server).await?.1, action).await?,
        Command::Group { action, server } => admin::group(&admin_store(&server).await?.1, action).await?,
        Command::Access { action, server } => {
            let (config, store) = admin_store(&server).await?;
            admin::access(&store, action, !config.require_token_for_reads).await?
        }
        Command::Storage { action, server } => {
            let (config, store) = admin_store(&server).await?;
            admin::storage(&config, &store, action).await?
        }
        Command::Audit { path, user, limit, server } => {
            admin::audit(&admin_store(&server).await?.1, path, user, limit).await?
        }
        Command::Config { action: ConfigAction::Show, server } => print!("{}", config::show(&config::load(&server)?)),
        Command::Config { action: ConfigAction::Keys, .. } => {
            for key in config::keys() {
                println!("{key}\t{}", config::env_name(key));
            }
        }
        Command::Data { .. } | Command::Blink { .. } => unreachable!("handled before the runtime starts"),
        Command::Mr { action, server, token } => {
            return tokio::task::spawn_blocking(move || mr(action, &server, token.as_deref())).await?;
        }
        Command::Import { action: ImportAction::Convert { path, drop_refs }, server } => {
            let (_, store) = admin_store(&server).await?;
            let snapshots = tessera_repo::Snapshots::default();
            let converted = tessera_repo::monorepo::Monorepo::new(&store, &snapshots).convert(&path, drop_refs).await;
            let (detail, outcome) = match &converted {
                Ok(head) => (format!("head {head}"), "ok"),
                Err(e) => (e.to_string(), "refused"),
            };
            store.audit(&admin::operator(), "import.convert", Some(&path), &detail, outcome).await?;
            let head = converted?;
            println!("converted {path}: its history continues from {head}; pushes to it now open merge requests");
        }
        Command::Fsck { path, repair, server } => {
            let (config, store) = admin_store(&server).await?;
            let snapshots = tessera_repo::Snapshots::default();
            let repos = match &path {
                Some(p) => {
                    let normalized = format!("/{}", p.trim_matches('/').trim_end_matches(".git"));
                    let normalized =
                        if normalized == "/" { normalized } else { normalized.trim_end_matches('/').to_string() };
                    vec![store
                        .repo_by_path(&normalized)
                        .await?
                        .with_context(|| format!("no repository {normalized}"))?]
                }
                None => store.list_repos().await?,
            };
            let limits = tessera_pack::index::Limits { max_object_size: config.max_object_bytes, ..Default::default() };
            let mut left = 0;
            for repo in &repos {
                let outcome = tessera_repo::fsck::check(&store, &snapshots, repo, limits, repair).await?;
                for finding in &outcome.findings {
                    println!("{}\t{}\t{}", repo.path, finding.id, finding.problem);
                }
                let repaired = if outcome.repaired > 0 {
                    format!(", {} stored again whole", outcome.repaired)
                } else {
                    String::new()
                };
                eprintln!("{}: {} objects, {} findings{repaired}", repo.path, outcome.objects, outcome.findings.len());
                left += outcome.findings.len();
            }
            if left > 0 {
                if !repair {
                    eprintln!("run `tessera fsck --repair` to store objects with too deep chains again");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Db { action: DbAction::Schema { dialect } } => {
            let dialect = Dialect::parse(&dialect)
                .with_context(|| format!("unknown dialect {dialect:?}: use sqlite, postgres or mysql"))?;
            print!("{}", tessera_store::schema::script(dialect));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tessera mr ...`: a client of the server's REST API.
fn mr(action: MrAction, server: &str, token: Option<&str>) -> anyhow::Result<ExitCode> {
    let base = server.trim_end_matches('/');
    let auth = token.map(|t| format!("Basic {}", base64_basic(t)));
    // One request: a JSON body when given; the answer as JSON (or its text).
    let send =
        |method: &str, path: &str, body: Option<serde_json::Value>| -> anyhow::Result<(u16, serde_json::Value)> {
            let mut req = ureq::request(method, &format!("{base}{path}"));
            if let Some(a) = &auth {
                req = req.set("Authorization", a);
            }
            let sent = match body {
                Some(body) => req.send_json(body),
                None => req.call(),
            };
            let response = match sent {
                Ok(r) => r,
                Err(ureq::Error::Status(_, r)) => r,
                Err(e) => anyhow::bail!("cannot reach {base}: {e}"),
            };
            let status = response.status();
            let text = response.into_string().context("reading the server's answer")?;
            let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.trim().to_string()));
            Ok((status, value))
        };
    let call = |method: &str, path: &str| send(method, path, None);
    let (status, value) = match &action {
        MrAction::Comment { id, text, file, line } => send(
            "POST",
            &format!("/api/v1/mr/{id}/comments"),
            Some(serde_json::json!({ "body": text, "file": file, "line": line })),
        )?,
        MrAction::Approve { id } => call("POST", &format!("/api/v1/mr/{id}/approve"))?,
        MrAction::RequireApprovals { path, count } => send(
            "POST",
            &format!("/api/v1/settings?path={}", path.replace('%', "%25").replace('&', "%26")),
            Some(serde_json::json!({ "required_approvals": count })),
        )?,
        MrAction::List { status } => call("GET", &format!("/api/v1/mr?status={status}"))?,
        MrAction::Show { id, .. } => call("GET", &format!("/api/v1/mr/{id}"))?,
        MrAction::Merge { id } => call("POST", &format!("/api/v1/mr/{id}/merge"))?,
        MrAction::Close { id } => call("POST", &format!("/api/v1/mr/{id}/close"))?,
        MrAction::Reopen { id } => call("POST", &format!("/api/v1/mr/{id}/reopen"))?,
    };
    if status == 401 && token.is_none() {
        eprintln!(
            "error: {base} needs a token for this: pass --token TOKEN or set TESSERA_TOKEN \
             (create one with `tessera token create --user NAME`)"
        );
        return Ok(ExitCode::FAILURE);
    }
    if !(200..300).contains(&status) {
        match (&action, &value) {
            (MrAction::Merge { id }, serde_json::Value::Object(mr))
                if status == 409 && mr.contains_key("conflicts") =>
            {
                eprintln!("merge request !{id} has conflicts:");
                for path in mr.get("conflicts").and_then(|c| c.as_array()).into_iter().flatten() {
                    eprintln!("  {}", path.as_str().unwrap_or_default());
                }
            }
            (_, serde_json::Value::String(message)) => eprintln!("error: {message}"),
            (_, serde_json::Value::Object(o)) if o.get("error").is_some_and(|e| e.is_string()) => {
                eprintln!("error: {}", o["error"].as_str().unwrap_or_default())
            }
            (_, other) => eprintln!("error: {other}"),
        }
        return Ok(ExitCode::FAILURE);
    }
    match action {
        MrAction::List { .. } => {
            for mr in value["merge_requests"].as_array().into_iter().flatten() {
                println!(
                    "!{}\t{}\t{}\t{}",
                    mr["id"],
                    mr["status"].as_str().unwrap_or(""),
                    mr["path"].as_str().unwrap_or(""),
                    mr["title"].as_str().unwrap_or("")
                );
            }
        }
        MrAction::Show { json: true, .. } => println!("{}", serde_json::to_string_pretty(&value)?),
        MrAction::Show { json: false, .. } => print!("{}", mr_summary(&value)),
        MrAction::Comment { id, .. } => println!("commented on !{id} (comment {})", value["id"]),
        MrAction::Approve { id } => println!(
            "approved !{id} at {} ({} of {} required)",
            value["approved_head"].as_str().unwrap_or(""),
            value["current"].as_array().map_or(0, Vec::len),
            value["required"]
        ),
        MrAction::RequireApprovals { path, count } => {
            println!("merges at or below {path} now need {count} approval(s)")
        }
        _ => println!("!{} is {}", value["id"], value["status"].as_str().unwrap_or("")),
    }
    Ok(ExitCode::SUCCESS)
}

/// A merge request as a person reads it: title, state, commits, files.
fn mr_summary(mr: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let short = |v: &serde_json::Value| v.as_str().map(|s| s.chars().take(12).collect::<String>()).unwrap_or_default();
    let mut out = format!("!{} {}\n", mr["id"], text(&mr["title"]));
    out.push_str(&format!(
        "{} · {} ← {} · by {}\n",
        text(&mr["status"]),
        text(&mr["path"]),
        text(&mr["branch"]),
        text(&mr["author"])
    ));
    let base = mr["base"].as_str().map(|b| b.chars().take(12).collect::<String>()).unwrap_or_else(|| "(new)".into());
    out.push_str(&format!("base {base}, head {}\n", short(&mr["head"])));
    if let Some(conflicts) = mr["conflicts"].as_array().filter(|c| !c.is_empty()) {
        out.push_str("conflicts:\n");
        for c in conflicts {
            out.push_str(&format!("  {}\n", text(c)));
        }
    }
    let commits = mr["commits"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("\n{} commit(s):\n", commits.len()));
    for c in &commits {
        // `Name <email> time zone`: the person is enough here.
        let author = text(&c["author"]);
        let who = author.split_once('>').map_or(author.as_str(), |(who, _)| who).trim_end_matches(['<', ' ']);
        let who = match author.split_once('<') {
            Some((name, _)) if !name.trim().is_empty() => name.trim(),
            _ => who,
        };
        out.push_str(&format!("  {} {} ({who})\n", short(&c["id"]), text(&c["title"])));
    }
    let approvals = &mr["approvals"];
    if approvals.is_object() {
        let current: Vec<&str> =
            approvals["current"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
        out.push_str(&format!(
            "\napprovals: {} of {} required{}\n",
            current.len(),
            approvals["required"],
            if current.is_empty() { String::new() } else { format!(" ({})", current.join(", ")) }
        ));
    }
    let comments = mr["comments"].as_array().cloned().unwrap_or_default();
    if !comments.is_empty() {
        out.push_str(&format!("\n{} comment(s):\n", comments.len()));
        for c in &comments {
            let at = match (c["file"].as_str(), c["line"].as_i64()) {
                (Some(f), Some(l)) => format!(" on {f}:{l}"),
                (Some(f), None) => format!(" on {f}"),
                _ => String::new(),
            };
            out.push_str(&format!("  {}{at}: {}\n", text(&c["author"]), text(&c["body"]).replace('\n', "\n    ")));
        }
    }
    let files = mr["files"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "\n{} file(s) changed, +{} -{}:\n",
        files.len(),
        mr["diffstat"]["added"],
        mr["diffstat"]["removed"]
    ));
    for f in &files {
        let note = f["summary"].as_str().map(|s| format!(" ({s})")).unwrap_or_default();
        out.push_str(&format!(
            "  {:<9} {} +{} -{}{note}\n",
            text(&f["status"]),
            text(&f["path"]),
            f["added"],
            f["removed"]
        ));
    }
    out
}

fn base64_basic(token: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("tessera:{token}"))
}

fn main() -> ExitCode {
    memory::tune_allocator();
    tessera_repo::memory::set_release(memory::release_free_memory);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Data { command } => return data::run(command),
        Command::Blink { command } => return blink::run(command),
        command => Cli { command },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
