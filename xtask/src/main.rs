//! `cargo xtask …`: every routine command of the project in one place.
//!
//! - `cargo xtask build-web` builds the E2EE engine for wasm32 and generates
//!   its JS bindings into `web/pkg/` with the `wasm-bindgen-cli-support`
//!   library pinned to the exact `wasm-bindgen` version in Cargo.lock, so no
//!   separately installed CLI can drift from the crate.
//! - `cargo xtask serve [ARGS…]` builds everything (release) and starts the
//!   `sealed` server on its embedded defaults; ARGS go to `sealed serve`.
//! - `cargo xtask dist [--debug]` builds one self-contained `dist/sealed` with
//!   the web client compiled in (release unless `--debug`), then starts a copy
//!   of it alone in an empty directory and checks that it serves the page.
//! - `cargo xtask fuzz [--iterations N]` runs the fuzz harnesses of the
//!   engine's and the signaling parsers in release, N inputs per target.
//! - `cargo xtask test` installs what the tests need when it is missing
//!   (apt packages, the wasm32 target, npm packages), then runs the format
//!   check, clippy, every Rust test, the wasm tests, the `dist` check (a debug
//!   build) and the browser tests.

mod dist;
mod install;
mod steps;

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  build-web [--debug]     build client-wasm for wasm32 and generate web/pkg/
  serve [ARGS...]         build everything (release) and run `sealed serve ARGS...`
  dist [--debug]          build dist/sealed, one binary with the web client inside
                          (release unless --debug), and check it serves the page alone
  test [--skip-install] [--only rust|wasm|dist|browser]
                          install what tests need, then fmt, clippy, all tests
  fuzz [--iterations N]   fuzz every parser a peer reaches, N inputs each (default 1000000)
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        std::process::exit(2);
    };
    let root = repo_root();
    match command.as_str() {
        "build-web" => {
            let release = !rest.iter().any(|a| a == "--debug");
            steps::build_web(&root, release)
        }
        "serve" => steps::serve(&root, rest),
        "dist" => dist::dist(&root, dist::parse_release(rest)?).map(drop),
        "test" => steps::test(&root, &steps::TestOptions::parse(rest)?),
        "fuzz" => steps::fuzz(&root, fuzz_iterations(rest)?),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

/// `--iterations N` (default one million).
fn fuzz_iterations(args: &[String]) -> Result<u64> {
    match args {
        [] => Ok(1_000_000),
        [flag, n] if flag == "--iterations" => n
            .parse()
            .map_err(|_| anyhow::anyhow!("--iterations takes a number, not `{n}`")),
        _ => bail!("usage: cargo xtask fuzz [--iterations N]"),
    }
}

/// The workspace root: xtask lives in `<root>/xtask`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
