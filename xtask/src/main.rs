//! Development tasks: `cargo xtask fuzz [TARGET] [SECONDS]`, `cargo xtask bench [NAME] [ARGS]`,
//! `cargo xtask static-serve DIR [ADDR]` (the reference server of `bench/lfs`).

mod static_serve;

use std::process::Command;

use anyhow::{bail, Context};

const FUZZ_TARGETS: &[&str] = &[
    "pktline",
    "push_commands",
    "fetch_request",
    "objects",
    "delta",
    "pack_end",
    "pack_scan",
    "pack_ingest",
    "bridge_chunk",
    "table_schema",
];

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_path_buf();
    match args.first().map(String::as_str) {
        Some("fuzz") => {
            let seconds = args.get(2).cloned().unwrap_or_else(|| "60".into());
            let targets: Vec<&str> = match args.get(1).map(String::as_str) {
                None | Some("all") => FUZZ_TARGETS.to_vec(),
                Some(t) => vec![t],
            };
            if Command::new("cargo").args(["fuzz", "--version"]).output().map(|o| !o.status.success()).unwrap_or(true) {
                run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
            }
            for target in targets {
                // New inputs go to fuzz/corpus/<target> (not committed);
                // fuzz/seeds/<target> holds the committed ones, replayed first.
                let corpus = root.join("fuzz").join("corpus").join(target);
                std::fs::create_dir_all(&corpus)?;
                let seeds = root.join("fuzz").join("seeds").join(target);
                let mut dirs = vec![corpus.display().to_string()];
                if seeds.is_dir() {
                    dirs.push(seeds.display().to_string());
                }
                run(Command::new("cargo")
                    .args(["fuzz", "run", "-O", target])
                    .args(&dirs)
                    .args(["--", &format!("-max_total_time={seconds}"), "-rss_limit_mb=2048"])
                    .current_dir(root.join("fuzz"))
                    // cargo-fuzz needs nightly flags; the stable toolchain allows them this way.
                    .env("RUSTC_BOOTSTRAP", "1"))?;
            }
            Ok(())
        }
        Some("bench") => {
            let name = args.get(1).map(String::as_str).unwrap_or("smart-http");
            let script = root.join("bench").join(name).join("run.sh");
            if !script.exists() {
                bail!("no benchmark {name}: try smart-http, push-memory, monorepo, bridge, big-history or lfs");
            }
            run(Command::new("bash").arg(script).args(&args[2.min(args.len())..]).current_dir(&root))
        }
        Some("static-serve") => {
            let dir = args.get(1).context("usage: cargo xtask static-serve DIR [ADDR]")?;
            static_serve::run(dir.into(), args.get(2).map(String::as_str).unwrap_or("127.0.0.1:0"))
        }
        _ => bail!("usage: cargo xtask fuzz [TARGET|all] [SECONDS] | cargo xtask bench [smart-http|push-memory|monorepo|bridge|big-history|lfs] [ARGS] | cargo xtask static-serve DIR [ADDR]"),

    }
}
