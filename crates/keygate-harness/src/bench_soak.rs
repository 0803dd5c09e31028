//! `keygate-harness bench soak`: a long run of mixed load (reads and orders, each decided,
//! audited, signed and forwarded) at a steady rate through `keygate serve` in front of the venue
//! simulator, open loop. Each window (a minute by default) prints its p50 and p99 and the serve
//! process's resident memory and open file descriptors; at the end the first and last windows
//! are compared, and the program fails when memory grew, a descriptor leaked or p99 drifted
//! (the thresholds are printed with the figures).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::bench_gateway::Gateway;
use crate::cli::BenchSoakArgs;

/// What one window saw: each request's latency (from when it was due) and the failures.
#[derive(Default)]
struct Window {
    micros: Vec<u64>,
    errors: u64,
}

/// A window's figures, with the serve process's state at its end.
struct Row {
    requests: usize,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    rss_kib: u64,
    anon_kib: u64,
    fds: usize,
}

/// A field of a process's /proc status in KiB (`VmRSS`: resident memory; `RssAnon`: the part
/// that is heap and stacks, not mapped files such as SQLite's shared WAL index).
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

/// Open file descriptors of a process, from /proc.
fn fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// The `p`-quantile of sorted samples, in milliseconds (display only).
fn quantile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default() as f64 / 1000.0
}

fn row(w: &mut Window, (rss_kib, anon_kib): (u64, u64), fds: usize) -> Row {
    w.micros.sort_unstable();
    Row {
        requests: w.micros.len(),
        errors: w.errors,
        p50_ms: quantile_ms(&w.micros, 0.50),
        p99_ms: quantile_ms(&w.micros, 0.99),
        rss_kib,
        anon_kib,
        fds,
    }
}

/// The median of some windows' p99.
fn median_p99(rows: &[Row]) -> f64 {
    let mut v: Vec<f64> = rows.iter().map(|r| r.p99_ms).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// What the run must show, judged on its rows (the first window is warm-up and not judged):
/// memory at the end within 25% + 16 MiB of the second window's, descriptors within 8, and the
/// median p99 of the last three windows within 3x that of the first three (after warm-up).
fn verdict(rows: &[Row]) -> Vec<String> {
    let mut broken = vec![];
    let judged = rows.get(1..).unwrap_or_default();
    let (Some(first), Some(last)) = (judged.first(), judged.last()) else {
        return vec!["the run was too short to judge: give --secs at least 2 windows".into()];
    };
    if last.rss_kib > first.rss_kib + first.rss_kib / 4 + 16 * 1024 {
        broken.push(format!(
            "memory grew from {} to {} MiB",
            first.rss_kib / 1024,
            last.rss_kib / 1024
        ));
    }
    if last.fds > first.fds + 8 {
        broken.push(format!(
            "open file descriptors grew from {} to {}",
            first.fds, last.fds
        ));
    }
    let n = judged.len().min(3);
    let (early, late) = (
        median_p99(&judged[..n]),
        median_p99(&judged[judged.len() - n..]),
    );
    if late > 3.0 * early.max(0.1) {
        broken.push(format!("p99 drifted from {early:.2} ms to {late:.2} ms"));
    }
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        broken.push(format!("{errors} requests failed"));
    }
    broken
}

pub async fn run(a: &BenchSoakArgs) -> Result<()> {
    if a.rate == 0 || a.every == 0 || a.orders == 0 {
        bail!("--rate, --every and --orders must be at least 1");
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "note: this is a debug build; run `cargo run --release -p keygate-harness -- bench soak` (after `cargo build --release -p keygate`) for real figures"
        );
    }
    println!("setting up a data directory and starting `keygate serve` (SQLite) …");
    // The token outlives the run (with an hour's margin for setup and the last window's
    // stragglers): a soak measures keygate, not its own token expiring.
    let gw = Arc::new(Gateway::start(a.secs.saturating_add(3_600)).await?);
    let pid = gw.pid();
    // A fixed set of keep-alive connections, one request at a time on each, so the number of
    // sockets is the same in every window and a growing count is a leak, not load.
    let lanes = (0..a.connections.max(1))
        .map(|_| {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()?;
            Ok((http, Arc::new(tokio::sync::Mutex::new(()))))
        })
        .collect::<Result<Vec<_>>>()?;
    let windows = a.secs.div_ceil(a.every).max(1);
    let per_window = a.rate * a.every;
    let gap_ns = 1_000_000_000 / a.rate;
    println!(
        "{} s at {} requests/s over {} keep-alive connections (one order in {}, the rest reads of the account), windows of {} s; serve is pid {pid}",
        windows * a.every,
        a.rate,
        a.connections,
        a.orders,
        a.every
    );
    println!(
        "{:>6} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>5}",
        "window", "requests", "errors", "p50 ms", "p99 ms", "RSS MiB", "anon MiB", "fds"
    );
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut rows = vec![];
    let mut n: u64 = 0;
    for w in 0..windows {
        let window = Arc::new(Mutex::new(Window::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..per_window {
            let due = start + Duration::from_nanos(gap_ns.saturating_mul(n));
            let order = n.is_multiple_of(a.orders);
            n += 1;
            tokio::time::sleep_until(due).await;
            let (http, busy) = lanes[(n as usize) % lanes.len()].clone();
            let (gw, window) = (gw.clone(), window.clone());
            tasks.spawn(async move {
                let _lane = busy.lock().await;
                let r = gw.send(&http, order).await;
                let took = tokio::time::Instant::now().duration_since(due);
                if let Ok(mut w) = window.lock() {
                    w.micros.push(took.as_micros() as u64);
                    if r.is_err() {
                        w.errors += 1;
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let rss = (status_kib(pid, "VmRSS")?, status_kib(pid, "RssAnon")?);
        let fd = fds(pid)?;
        let mut seen = window
            .lock()
            .map_err(|_| anyhow::anyhow!("a load task panicked"))?;
        let r = row(&mut seen, rss, fd);
        println!(
            "{:>6} {:>9} {:>7} {:>9.3} {:>9.3} {:>9.1} {:>9.1} {:>5}",
            w + 1,
            r.requests,
            r.errors,
            r.p50_ms,
            r.p99_ms,
            r.rss_kib as f64 / 1024.0,
            r.anon_kib as f64 / 1024.0,
            r.fds
        );
        rows.push(r);
    }
    let judged = rows.get(1..).unwrap_or_default();
    if let (Some(f), Some(l)) = (judged.first(), judged.last()) {
        println!(
            "\nstart (window 2) -> end: RSS {:.1} -> {:.1} MiB ({:.2}x), fds {} -> {}, p99 {:.3} -> {:.3} ms ({:.2}x)",
            f.rss_kib as f64 / 1024.0,
            l.rss_kib as f64 / 1024.0,
            l.rss_kib as f64 / f.rss_kib.max(1) as f64,
            f.fds,
            l.fds,
            f.p99_ms,
            l.p99_ms,
            l.p99_ms / f.p99_ms.max(0.001)
        );
    }
    let broken = verdict(&rows);
    if broken.is_empty() {
        println!(
            "soak passed: memory flat (within 25% + 16 MiB), no descriptor leaked (within 8), p99 did not drift (last three windows within 3x the first three), no request failed"
        );
        Ok(())
    } else {
        bail!("soak failed: {}", broken.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(rss_mib: u64, fds: usize, p99_ms: f64) -> Row {
        Row {
            requests: 1,
            errors: 0,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            rss_kib: rss_mib * 1024,
            anon_kib: rss_mib * 1024,
            fds,
        }
    }

    #[test]
    fn a_flat_run_passes_and_each_kind_of_leak_or_drift_fails() {
        let flat: Vec<Row> = (0..8).map(|_| r(60, 40, 1.0)).collect();
        assert!(verdict(&flat).is_empty());
        // Warm-up (the first window) is not judged.
        let mut warm = vec![r(10, 10, 50.0)];
        warm.extend((0..8).map(|_| r(60, 40, 1.0)));
        assert!(verdict(&warm).is_empty());

        let mut grew: Vec<Row> = (0..8).map(|_| r(60, 40, 1.0)).collect();
        grew.push(r(200, 40, 1.0));
        assert!(verdict(&grew)[0].contains("memory grew from 60 to 200 MiB"));

        let mut leaked: Vec<Row> = (0..8).map(|_| r(60, 40, 1.0)).collect();
        leaked.push(r(60, 100, 1.0));
        assert!(verdict(&leaked)[0].contains("descriptors grew from 40 to 100"));

        let mut drift: Vec<Row> = (0..8).map(|_| r(60, 40, 1.0)).collect();
        drift.extend((0..3).map(|_| r(60, 40, 5.0)));
        assert!(verdict(&drift)[0].contains("p99 drifted"));

        let mut failed: Vec<Row> = (0..3).map(|_| r(60, 40, 1.0)).collect();
        failed[2].errors = 3;
        assert!(verdict(&failed)[0].contains("3 requests failed"));

        assert!(verdict(&[r(60, 40, 1.0)])[0].contains("too short"));
    }

    #[test]
    fn quantiles_of_sorted_samples() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile_ms(&v, 0.5), 51.0);
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert_eq!(quantile_ms(&[], 0.99), 0.0);
    }
}
