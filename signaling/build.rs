//! With feature `embed-web`, `src/web/embedded.rs` compiles the files of `web/` into
//! the binary. rustc notices when an embedded file changes, not when one is added or
//! removed (e.g. `web/pkg/` appearing after `cargo xtask build-web`); watching the
//! directory here makes Cargo rebuild the crate then too. Without the feature nothing
//! is watched.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_EMBED_WEB").is_some() {
        println!("cargo::rerun-if-changed=../web");
    }
}
