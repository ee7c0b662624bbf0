//! Stamps the `convoy` binary with what `convoy --version` prints beyond the crate version:
//! the git commit it was built from and the build profile. A build outside a git checkout
//! (a source tarball, a vendored copy) says `unknown` rather than failing.
//!
//! The variables are not named `CONVOY_*`: cargo also sets them when it runs tests, and
//! the configuration loader reads `CONVOY_*` variables as keys.

use std::process::Command;

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=VERSION_GIT_COMMIT={commit}");
    // Cargo's PROFILE is "debug" or "release" (custom profiles map onto one of the two).
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=VERSION_BUILD_PROFILE={profile}");

    println!("cargo:rerun-if-changed=build.rs");
    // Rebuild the stamp when HEAD moves: HEAD itself (a checkout) and the branch it names
    // (a commit). Worktrees keep HEAD outside the checkout, so ask git where it is.
    for path in ["HEAD", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// The trimmed output of a successful git command, or `None` (no git, not a checkout).
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
