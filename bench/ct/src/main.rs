//! dudect: does checking a wrong key take a time that depends on how much of the real key
//! it shares? Each benchmark times the request path's whole check — SHA-256 of the presented
//! key, then `KeySet::verify` against the configured digests — for two classes of wrong keys,
//! interleaved at random, and Welch's t-test compares the two timing distributions. |t| under
//! 4.5 is no evidence of a difference; dudect calls 10 and above a leak.
//!
//! - `latchkey_prefix_vs_none`: keys sharing all but the last character with the real key
//!   against keys sharing none of it.
//! - `latchkey_digest_prefix_vs_none`: presented digests sharing the first 31 bytes of the
//!   real key's digest against digests sharing none (the comparison alone, SHA-256 aside).
//! - `naive_prefix_vs_none`: the same classes compared with an early-exit byte loop — the
//!   control, which must show a leak, or the check could not tell.

use dudect_bencher::rand::RngExt;
use dudect_bencher::{BenchRng, Class, CtRunner, ctbench_main};
use latchkey::keys::{KeyDigest, KeyEntry, KeySet};

const KEY: &str = "lk-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";
const SAMPLES: usize = 200_000;
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A wrong key: all but its last character shared with KEY (`Left`), or none (`Right`).
fn wrong_key(class: Class, rng: &mut BenchRng) -> Vec<u8> {
    let key = KEY.as_bytes();
    match class {
        Class::Left => {
            let mut wrong = key.to_vec();
            let last = wrong.len() - 1;
            while wrong[last] == key[last] {
                wrong[last] = ALPHABET[rng.random_range(0..ALPHABET.len())];
            }
            wrong
        }
        Class::Right => key
            .iter()
            .map(|&k| {
                loop {
                    let c = ALPHABET[rng.random_range(0..ALPHABET.len())];
                    if c != k {
                        break c;
                    }
                }
            })
            .collect(),
    }
}

fn classes(rng: &mut BenchRng) -> Vec<Class> {
    (0..SAMPLES)
        .map(|_| {
            if rng.random::<bool>() {
                Class::Left
            } else {
                Class::Right
            }
        })
        .collect()
}

/// A wrong key for each sample, of its class.
fn wrong_keys(rng: &mut BenchRng) -> Vec<(Class, Vec<u8>)> {
    classes(rng)
        .into_iter()
        .map(|class| (class, wrong_key(class, rng)))
        .collect()
}

fn latchkey_prefix_vs_none(runner: &mut CtRunner, rng: &mut BenchRng) {
    let keys = KeySet::new(&[KeyEntry::Plain(KEY.into()).into()]);
    let inputs = wrong_keys(rng);
    for (class, presented) in inputs {
        runner.run_one(class, || {
            assert!(!keys.verify(&KeyDigest::of(std::hint::black_box(&presented))));
        });
    }
}

fn latchkey_digest_prefix_vs_none(runner: &mut CtRunner, rng: &mut BenchRng) {
    let keys = KeySet::new(&[KeyEntry::Plain(KEY.into()).into()]);
    let real = KeyDigest::of(KEY.as_bytes()).to_config_form();
    let real = real.strip_prefix("sha256:").unwrap().to_owned();
    let inputs: Vec<(Class, KeyDigest)> = classes(rng)
        .into_iter()
        .map(|class| {
            let mut hex: Vec<u8> = real.clone().into_bytes();
            match class {
                // Change the last byte only.
                Class::Left => {
                    let i = hex.len() - 1;
                    hex[i] = if hex[i] == b'0' { b'1' } else { b'0' };
                }
                // Change the first byte (so nothing before the difference is shared).
                Class::Right => hex[0] = if hex[0] == b'0' { b'1' } else { b'0' },
            }
            let text = format!("sha256:{}", String::from_utf8(hex).unwrap());
            let KeyEntry::Digest(digest) = latchkey::keys::parse_entry(&text).unwrap() else {
                unreachable!("a sha256: entry is a digest")
            };
            (class, digest)
        })
        .collect();
    for (class, presented) in inputs {
        runner.run_one(class, || {
            assert!(!keys.verify(std::hint::black_box(&presented)));
        });
    }
}

/// The comparison a constant-time check must not be: stops at the first difference.
fn naive_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return false;
        }
    }
    true
}

fn naive_prefix_vs_none(runner: &mut CtRunner, rng: &mut BenchRng) {
    let inputs = wrong_keys(rng);
    for (class, presented) in inputs {
        runner.run_one(class, || {
            assert!(!naive_eq(
                std::hint::black_box(&presented),
                std::hint::black_box(KEY.as_bytes())
            ));
        });
    }
}

ctbench_main!(
    latchkey_prefix_vs_none,
    latchkey_digest_prefix_vs_none,
    naive_prefix_vs_none
);
