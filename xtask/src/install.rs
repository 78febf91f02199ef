//! Installing what the build and the tests need on a fresh machine: the
//! wasm32 target (rustup does not add it by itself here because
//! `RUSTUP_AUTO_INSTALL=0`), Debian packages (and Python's `cryptography`)
//! and the browser tests' npm packages. Each step checks first and does nothing when the thing is there.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

use crate::steps::run;

/// The target the E2EE engine is built for in the browser.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Debian packages the tests need: `cmake` builds libopus for the `opus`
/// crate; the browsers run the end-to-end tests; `nftables` lets the
/// ICE-recovery browser test drop UDP inside its own network namespace;
/// `redis-server` is the shared state of the multi-node tests.
pub const APT_PACKAGES: &[&str] = &[
    "cmake",
    "pkg-config",
    "chromium",
    "firefox-esr",
    "nftables",
    "redis-server",
];

/// Adds the wasm32 target to the pinned toolchain when it is missing.
pub fn wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running `rustup target list --installed` (is rustup on PATH?)")?;
    let installed = String::from_utf8_lossy(&out.stdout);
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// Installs the Debian packages in [`APT_PACKAGES`] that are not installed.
pub fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {}; install them with `sudo apt-get install -y {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Python's `cryptography` package, for the independent check of the key
/// schedule's known answers: Debian's `python3-cryptography` when Python
/// cannot import it (pip is not needed on Debian 12).
pub fn python_cryptography() -> Result<()> {
    let importable = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if importable {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "python3 cannot import `cryptography`: `sudo apt-get install -y python3-cryptography`"
        );
    }
    run(Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "python3-cryptography"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// `npm ci` in `dir` when its `node_modules` is missing or older than its
/// lock file. Browsers are never downloaded: we drive Debian's.
pub fn npm_packages(dir: &Path) -> Result<()> {
    let lock = dir.join("package-lock.json");
    let modules = dir.join("node_modules");
    let fresh = match (
        modified(&lock),
        modified(&modules.join(".package-lock.json")),
    ) {
        (Some(l), Some(m)) => m >= l,
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    let sub = if lock.exists() { "ci" } else { "install" };
    run(Command::new("npm")
        .args([sub, "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .env("PUPPETEER_SKIP_DOWNLOAD", "1"))
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
