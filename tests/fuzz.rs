//! Each fuzz target in `fuzz/` (cargo-fuzz, libFuzzer) runs for a bounded time in the suite:
//! first over its seed corpus and kept regression cases (`fuzz/corpus/<target>`), then on
//! inputs libFuzzer derives from them. A crash, a failed check or a leak fails the test and
//! leaves the input in `fuzz/artifacts/<target>/`. Longer runs: see fuzz/README.md.

use std::path::Path;
use std::process::Command;

const TARGETS: [&str; 5] = [
    "credentials",
    "access_log",
    "host_origin",
    "json_rpc",
    "stdio_reader",
];

/// Each target's share of the suite's time; `LATCHKEY_FUZZ_SECONDS` sets another.
const SECONDS: u64 = 20;

fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO"));
    command
        .arg("fuzz")
        .current_dir(fuzz_dir.parent().unwrap())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    command
}

#[test]
fn every_fuzz_target_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fuzz_dir = root.join("fuzz");
    let installed = Command::new(env!("CARGO"))
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "cargo-fuzz is missing: .ci/run installs it (cargo install cargo-fuzz --locked)"
    );
    let seconds: u64 = std::env::var("LATCHKEY_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SECONDS);
    // `--sanitizer none`: the stable toolchain has no sanitizers; libFuzzer's coverage, the
    // targets' own checks and Rust's are what find bugs here. `--dev`: a debug build (with
    // overflow checks), which builds in a fraction of an optimised one's time.
    let build = cargo_fuzz(&fuzz_dir)
        .args(["build", "--sanitizer", "none", "--dev"])
        .status()
        .unwrap();
    assert!(build.success(), "the fuzz targets do not build");
    let mut report = Vec::new();
    for target in TARGETS {
        // New inputs go to a scratch directory; the seeds in the repository are only read.
        let scratch = tempfile::tempdir().unwrap();
        let seeds = fuzz_dir.join("corpus").join(target);
        assert!(seeds.is_dir(), "no seed corpus for {target}");
        let output = cargo_fuzz(&fuzz_dir)
            .args(["run", "--sanitizer", "none", "--dev", target])
            .arg(scratch.path())
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048")
            .arg("-timeout=10")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "fuzz target {target} failed:\n{}",
            tail(&log, 60)
        );
        // libFuzzer's last words: "Done 123456 runs in 20 second(s)".
        let runs: u64 = log
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Done ")?.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no run count from {target}:\n{}", tail(&log, 20)));
        assert!(runs > 0, "{target} ran nothing");
        report.push(format!("{target}: {runs} runs in {seconds} s"));
    }
    eprintln!("fuzz: {}", report.join("; "));
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The crates beside latchkey (`fuzz/`, `bench/ct/`) have lockfiles of their own, which must
/// change with latchkey's dependencies: `bench/constant_time` builds with `--locked`, and a
/// fuzz build would otherwise rewrite `fuzz/Cargo.lock` unseen.
#[test]
fn the_fuzz_and_constant_time_crates_lockfiles_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for manifest in ["fuzz/Cargo.toml", "bench/ct/Cargo.toml"] {
        let out = Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--locked",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(root.join(manifest))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{manifest}'s lockfile is stale (run `cargo metadata --manifest-path {manifest}` \
             and commit the lockfile):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
