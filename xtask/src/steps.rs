//! The steps behind each xtask command.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::install;

/// The `wasm-bindgen-cli-support` version this xtask links. It must equal
/// the `wasm-bindgen` version in Cargo.lock: the generated JS glue and the
/// crate's wasm must come from the same release.
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";

/// Runs a command, echoing it, and fails with its exit status.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("starting `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", describe(cmd));
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cargo` as invoked us (the pinned toolchain), run from the repo root.
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

/// Builds `client-wasm` for wasm32 and writes the JS bindings to `web/pkg/`: the shipped
/// package, without the test-only API.
pub fn build_web(root: &Path, release: bool) -> Result<()> {
    build_wasm_package(root, release, None, &root.join("web").join("pkg"))
}

/// Where the Node tests' package (with feature `test-api`) is written.
pub fn test_package_dir(root: &Path) -> PathBuf {
    target_dir(root).join("wasm-test-pkg")
}

/// Builds the engine for wasm32 with `feature` (if any) and writes the JS bindings to
/// `out_dir`.
fn build_wasm_package(
    root: &Path,
    release: bool,
    feature: Option<&str>,
    out_dir: &Path,
) -> Result<()> {
    install::wasm_target()?;
    check_wasm_bindgen_version(root)?;
    let mut build = cargo(root);
    build.args([
        "build",
        "-p",
        "client-wasm",
        "--lib",
        "--target",
        install::WASM_TARGET,
    ]);
    if release {
        build.arg("--release");
    }
    if let Some(feature) = feature {
        build.args(["--features", feature]);
    }
    run(&mut build)?;

    let profile = if release { "release" } else { "debug" };
    let input = target_dir(root)
        .join(install::WASM_TARGET)
        .join(profile)
        .join("client_wasm.wasm");
    eprintln!(
        "xtask: wasm-bindgen {WASM_BINDGEN_VERSION} {} -> {}",
        input.display(),
        out_dir.display()
    );
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&input)
        .out_name("client_wasm")
        .web(true)?
        // Let a bare `await init()` find the .wasm next to the JS glue.
        .omit_default_module_path(false)
        .typescript(true)
        .generate(out_dir)
        .context("generating the wasm-bindgen JS bindings")?;
    Ok(())
}

/// Fails when Cargo.lock's `wasm-bindgen` differs from the library we link.
fn check_wasm_bindgen_version(root: &Path) -> Result<()> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    match locked_version(&lock, "wasm-bindgen") {
        Some(v) if v == WASM_BINDGEN_VERSION => Ok(()),
        Some(v) => bail!(
            "Cargo.lock has wasm-bindgen {v} but xtask links wasm-bindgen-cli-support \
             {WASM_BINDGEN_VERSION}: set xtask's pin to \"={v}\""
        ),
        None => bail!("wasm-bindgen is not in Cargo.lock"),
    }
}

/// The version of `package` recorded in a Cargo.lock text.
fn locked_version<'a>(lock: &'a str, package: &str) -> Option<&'a str> {
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name_line {
            return lines
                .next()?
                .trim()
                .strip_prefix("version = \"")?
                .strip_suffix('"');
        }
    }
    None
}

/// Where Cargo puts its builds.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Builds everything in release and runs `sealed serve` with `args`.
pub fn serve(root: &Path, args: &[String]) -> Result<()> {
    build_web(root, true)?;
    run(cargo(root).args(["build", "--release", "-p", "signaling", "--bin", "sealed"]))?;
    let bin = target_dir(root).join("release").join("sealed");
    let mut cmd = Command::new(&bin);
    cmd.arg("serve").args(args).current_dir(root);
    // Hand the terminal to the server; its exit status becomes ours.
    eprintln!("xtask: $ {}", describe(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", bin.display()))?;
    if !status.success() {
        bail!("sealed exited with {status}");
    }
    Ok(())
}

/// Which parts of the suite `cargo xtask test` runs.
#[derive(Debug, Default)]
pub struct TestOptions {
    skip_install: bool,
    only: Option<String>,
}

impl TestOptions {
    /// The parts, in the order they run.
    pub const PARTS: [&str; 4] = ["rust", "wasm", "dist", "browser"];

    /// Parses `[--skip-install] [--only rust|wasm|dist|browser]`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut opts = TestOptions::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--skip-install" => opts.skip_install = true,
                "--only" => {
                    let parts = Self::PARTS.join(", ");
                    let part = it
                        .next()
                        .with_context(|| format!("--only needs one of {parts}"))?;
                    if !Self::PARTS.contains(&part.as_str()) {
                        bail!("--only takes one of {parts}, not `{part}`");
                    }
                    opts.only = Some(part.clone());
                }
                other => bail!("unknown test option `{other}`"),
            }
        }
        Ok(opts)
    }

    fn wants(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|p| p == part)
    }
}

/// Installs what is missing, then runs every check and test in order,
/// stopping at the first failure.
pub fn test(root: &Path, opts: &TestOptions) -> Result<()> {
    let started = Instant::now();
    if !opts.skip_install {
        install::apt_packages()?;
        install::python_cryptography()?;
        install::wasm_target()?;
    }
    if opts.wants("rust") {
        run(cargo(root).args(["fmt", "--all", "--", "--check"]))?;
        run(cargo(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]))?;
        run(cargo(root).args([
            "clippy",
            "-p",
            "client-wasm",
            "--lib",
            "--target",
            install::WASM_TARGET,
            "--",
            "-D",
            "warnings",
        ]))?;
        run(cargo(root).args(["test", "--workspace", "--all-features"]))?;
        // The key schedule's known answers, recomputed by an independent implementation.
        run(Command::new("python3")
            .arg(root.join("client-wasm/tests/vectors/check_vectors.py"))
            .current_dir(root))?;
    }
    if opts.wants("wasm") {
        build_web(root, true)?;
        wasm_tests(root)?;
    }
    if opts.wants("dist") {
        dist_check(root, opts)?;
    }
    if opts.wants("browser") {
        browser_tests(root, opts)?;
    }
    eprintln!("xtask: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// The engine's wasm build under Node: the shipped package (`web/pkg`, which
/// must not export the test-only API) and a test build with it, which must
/// decrypt frames the native build made and the other way round.
fn wasm_tests(root: &Path) -> Result<()> {
    let dir = root.join("client-wasm").join("tests").join("node");
    if !dir.is_dir() {
        bail!("{} is missing", dir.display());
    }
    let test_pkg = test_package_dir(root);
    build_wasm_package(root, true, Some("test-api"), &test_pkg)?;
    run(Command::new("node")
        .arg("--test")
        .arg(&dir)
        .env("SEALED_WASM_TEST_PKG", &test_pkg)
        .current_dir(root))
}

/// `cargo xtask dist --debug` and its self-check, with two differences: `web/pkg/`
/// stays the release package the wasm stage built (and built here when that stage is
/// skipped), because the browser stage serves it next; and `dist/sealed` is left
/// alone (it may be a release build someone made), the check runs on the build
/// itself. The binary is a debug build — a release one would cost minutes — and it
/// replaces `target/debug/sealed`, which is why the browser stage rebuilds that and
/// its server gets `--web-dir` explicitly.
fn dist_check(root: &Path, opts: &TestOptions) -> Result<()> {
    if !opts.wants("wasm") {
        build_web(root, true)?;
    }
    let bin = crate::dist::build_binary(root, false)?;
    crate::dist::self_check(&bin, &root.join("web"))
}

/// A long fuzz run of every parser an attacker reaches: `iterations` inputs
/// per target. It uses the test profile on purpose: overflow checks and
/// debug assertions stay on, and the build is the one `cargo xtask test`
/// already made.
pub fn fuzz(root: &Path, iterations: u64) -> Result<()> {
    run(cargo(root)
        .args([
            "test",
            "--workspace",
            "--all-features",
            "--test",
            "fuzz",
            "--test",
            "fuzz_protocol",
            "--",
            "--nocapture",
        ])
        .env("SEALED_FUZZ_CASES", iterations.to_string()))
}

/// Real Chromium and Firefox driving the real server and page.
fn browser_tests(root: &Path, opts: &TestOptions) -> Result<()> {
    let dir = root.join("tests").join("browser");
    if !dir.join("package.json").is_file() {
        bail!("{} has no package.json", dir.display());
    }
    if !opts.skip_install {
        install::npm_packages(&dir)?;
    }
    if !root
        .join("web")
        .join("pkg")
        .join("client_wasm.js")
        .is_file()
    {
        build_web(root, true)?;
    }
    run(cargo(root).args(["build", "-p", "signaling", "--bin", "sealed"]))?;
    let bin = target_dir(root).join("debug").join("sealed");
    run(Command::new("node")
        .arg("--test")
        .current_dir(&dir)
        .env("SEALED_BIN", bin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockfile_pins_the_wasm_bindgen_we_link() {
        let root = crate::repo_root();
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
        assert_eq!(
            locked_version(&lock, "wasm-bindgen"),
            Some(WASM_BINDGEN_VERSION)
        );
    }

    #[test]
    fn locked_version_reads_the_line_after_the_name() {
        let lock = "[[package]]\nname = \"wasm-bindgen-macro\"\nversion = \"9\"\n\n\
                    [[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.1\"\n";
        assert_eq!(locked_version(lock, "wasm-bindgen"), Some("0.2.1"));
        assert_eq!(locked_version(lock, "nope"), None);
    }

    #[test]
    fn test_options_reject_unknown_parts() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(TestOptions::parse(&args(&["--only", "gpu"])).is_err());
        assert!(TestOptions::parse(&args(&["--frobnicate"])).is_err());
        assert!(TestOptions::parse(&args(&["--only"])).is_err());
        let o = TestOptions::parse(&args(&["--only", "wasm", "--skip-install"])).unwrap();
        assert!(o.wants("wasm") && !o.wants("rust") && o.skip_install);
        let o = TestOptions::parse(&args(&["--only", "dist"])).unwrap();
        assert!(o.wants("dist") && !o.wants("wasm") && !o.wants("browser") && !o.skip_install);
        let all = TestOptions::parse(&args(&[])).unwrap();
        assert!(TestOptions::PARTS.iter().all(|p| all.wants(p)));
    }
}
