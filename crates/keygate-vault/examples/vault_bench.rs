//! Benchmark of the vault's operations, printed as time per operation and as a ratio against a
//! baseline measured in the same run: one raw AES-256-GCM encryption of 64 bytes.
//!
//!     cargo run --release -p keygate-vault --example vault_bench
//!
//! Ratios are what to compare between machines and commits; absolute times move with the load.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark program over inputs it makes itself: a failure is a failed run"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use keygate_vault::{
    Binding, CredentialKind, CredentialSecret, KdfParams, MasterKey, SecretString, open, rewrap,
    seal,
};

/// Runs `f` repeatedly for about `budget` and returns the median of 7 batches, per call.
fn measure(budget: Duration, mut f: impl FnMut()) -> Duration {
    // Calibrate the batch size.
    let mut n = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        if t.elapsed() > budget / 20 || n > 1 << 24 {
            break;
        }
        n *= 2;
    }
    let mut samples: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed() / n
        })
        .collect();
    samples.sort();
    samples[3]
}

fn main() {
    let budget = Duration::from_millis(700);
    let mk = MasterKey::generate().expect("random source");
    let new_mk = MasterKey::generate().expect("random source");
    let binding = Binding {
        id: "cr_benchmark01",
        venue: "binance-main",
        kind: "binance-hmac",
        version: 1,
    };
    let secret = CredentialSecret::new(
        CredentialKind::BinanceHmac,
        vec![
            SecretString::new("x".repeat(64)),
            SecretString::new("y".repeat(64)),
        ],
    )
    .expect("valid secret");
    let plain = secret.encode();
    let sealed = seal(&mk, &binding, &plain).expect("seal");

    let cipher = Aes256Gcm::new_from_slice(&[7u8; 32]).expect("key");
    let msg = [0u8; 64];
    let baseline = measure(budget, || {
        black_box(
            cipher
                .encrypt(&Nonce::from([1u8; 12]), black_box(&msg[..]))
                .expect("encrypt"),
        );
    });

    let mut rows: Vec<(&str, Duration)> = vec![
        (
            "seal (new data key, 2 AES-GCM)",
            measure(budget, || {
                black_box(seal(&mk, &binding, &plain).expect("seal"));
            }),
        ),
        (
            "open (unwrap + decrypt)",
            measure(budget, || {
                black_box(open(&mk, &binding, &sealed).expect("open"));
            }),
        ),
        (
            "open + decode parts",
            measure(budget, || {
                let p = open(&mk, &binding, &sealed).expect("open");
                black_box(
                    CredentialSecret::decode(CredentialKind::BinanceHmac, &p).expect("decode"),
                );
            }),
        ),
        (
            "rewrap (rekey, per version)",
            measure(budget, || {
                black_box(rewrap(&mk, &new_mk, &binding, &sealed.wrapped_key).expect("rewrap"));
            }),
        ),
        (
            "master key id",
            measure(budget, || {
                black_box(mk.id());
            }),
        ),
    ];
    let params = KdfParams::generate().expect("params");
    let pass = SecretString::new("correct horse battery staple".into());
    let t = Instant::now();
    let runs = 3;
    for _ in 0..runs {
        black_box(MasterKey::derive(&pass, &params).expect("derive"));
    }
    rows.push(("Argon2id derive (64 MiB, t=3)", t.elapsed() / runs));

    println!("baseline: AES-256-GCM encrypt 64 B = {baseline:?}");
    println!("{:<34} {:>14} {:>12}", "operation", "time/op", "x baseline");
    for (name, d) in rows {
        println!(
            "{name:<34} {:>14} {:>12.1}",
            format!("{d:?}"),
            d.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}
