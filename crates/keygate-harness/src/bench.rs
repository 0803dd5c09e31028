//! `keygate-harness bench decide`: prints the latency of pure `decide` (20 policies, 6 limits) next to
//! bare Cedar on the same policies in the same run, and durable decisions per second on SQLite
//! with group commit next to one commit per decision. Figures, not assertions: run it on a quiet
//! machine, in a release build.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cedar_policy::Authorizer;
use keygate_core::auth::ClientRecord;
use keygate_core::book::Destination;
use keygate_core::decide::StateInputs;
use keygate_core::limits::{LimitSpec, Selector};
use keygate_core::policy::{Policies, PolicyContext, PolicySource, Subject};
use keygate_core::time::{HOUR, MINUTE};
use keygate_core::{Action, Engine, Intent, Outcome, State, decide};
use keygate_store::{Decider, DeciderOptions, OpenMode, Store};
use rust_decimal::Decimal;

use crate::cli::{BenchCommand, BenchDecideArgs};

const T0: i64 = 1_700_000_000_000;
const DEST: &str = "0x00000000000000000000000000000000000000aa";
const CLIENTS: usize = 5;

pub async fn run(cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Decide(a) => decide_bench(a).await,
        BenchCommand::Gateway(a) => crate::bench_gateway::run(a).await,
        BenchCommand::Replay(a) => replay_bench(a),
        BenchCommand::Chain(a) => crate::bench_chain::run(a).await,
        BenchCommand::Soak(a) => crate::bench_soak::run(a).await,
    }
}

/// `keygate-harness bench replay`: a generated scenario of about `--events` events (the Kronos bots
/// and attack, with a much denser baseline) replayed in-process, next to a pass that only reads
/// and parses the same file (the floor any replay pays), in the same run.
fn replay_bench(a: &crate::cli::BenchReplayArgs) -> Result<()> {
    use crate::replay::{Scenario, in_process};
    let dir = tempfile::tempdir()?;
    let scenario = dir.path().join("dense.jsonl");
    let config = dir.path().join("kronos-2023.toml");
    std::fs::write(&config, crate::scenarios::KRONOS_CONFIG)?;
    std::fs::write(
        dir.path().join("kronos-2023.cedar"),
        crate::scenarios::KRONOS_POLICIES,
    )?;
    let t = Instant::now();
    let events = {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&scenario)?);
        let n = crate::scenarios::dense(&mut out, a.events)?;
        std::io::Write::flush(&mut out)?;
        n
    };
    let size = std::fs::metadata(&scenario)?.len();
    println!(
        "generated {events} events ({:.1} MB) in {:.2} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let cfg = keygate_config::Config::load_as_written(&config)?;
    for round in 1..=3 {
        let t = Instant::now();
        let mut s = Scenario::open(&scenario)?;
        let mut parsed = 0u64;
        while s.next_event()?.is_some() {
            parsed += 1;
        }
        let parse = t.elapsed();
        let t = Instant::now();
        let report = in_process(&cfg, dir.path(), &scenario, false)?;
        let full = t.elapsed();
        let rate = |d: Duration| parsed as f64 / d.as_secs_f64();
        println!(
            "round {round}: read+parse only {:>9.0} events/s | replay in-process {:>9.0} events/s ({:.2}x the parse-only rate) | attack allowed USD {}, normal denied {} held {}",
            rate(parse),
            rate(full),
            rate(full) / rate(parse),
            report.attack_allowed_usd,
            report.normal_denied,
            report.normal_held
        );
    }
    Ok(())
}

/// 20 policies: 3 per client for 5 clients, and 5 that apply to everyone.
fn policy_text() -> String {
    let mut p = String::from(
        r#"permit(principal, action in [Keygate::Action::"read", Keygate::Action::"cancel"], resource);
forbid(principal, action, resource) when { context.signals.contains("freeze") };
forbid(principal, action == Keygate::Action::"withdraw", resource) when { context.anomaly_score > 90 };
@hold forbid(principal, action in [Keygate::Action::"withdraw", Keygate::Action::"transfer"], resource)
  when { context.usd_value_cents > 50000000 } unless { context.approvals >= 2 };
forbid(principal, action, resource) when { context has source_ip && context.source_ip.isInRange(ip("192.0.2.0/24")) };
"#,
    );
    for c in 0..CLIENTS {
        p.push_str(&format!(
            r#"permit(principal == Keygate::Client::"c{c}", action == Keygate::Action::"trade", resource in Keygate::Venue::"binance")
  when {{ context.usd_value_cents < 100000000 }};
permit(principal == Keygate::Client::"c{c}", action == Keygate::Action::"withdraw", resource)
  when {{ context has destination && context.destination.label == "cold" && context.client_usd_cents_1h < 500000000 && context.hour_utc >= 0 }};
forbid(principal == Keygate::Client::"c{c}", action == Keygate::Action::"withdraw", resource)
  when {{ resource.symbol == "BTC" && context.amount_micros > 10000000 }};
"#
        ));
    }
    p
}

fn limits() -> Vec<LimitSpec> {
    let l = |name: &str, client: Selector, asset: Selector, window, usd: i64| LimitSpec {
        name: name.into(),
        client,
        venue: Selector::All,
        asset,
        actions: vec![Action::Withdraw, Action::Transfer],
        window,
        max_usd_cents: Some(usd),
        max_amount: None,
        max_count: None,
    };
    let mut count = l(
        "count-10m",
        Selector::Each,
        Selector::All,
        10 * MINUTE,
        i64::MAX,
    );
    count.max_count = Some(1_000_000_000);
    vec![
        l(
            "treasury-24h",
            Selector::All,
            Selector::All,
            24 * HOUR,
            i64::MAX / 4,
        ),
        l(
            "treasury-1h",
            Selector::All,
            Selector::All,
            HOUR,
            i64::MAX / 4,
        ),
        l(
            "client-1h",
            Selector::Each,
            Selector::All,
            HOUR,
            i64::MAX / 4,
        ),
        l(
            "client-24h",
            Selector::Each,
            Selector::All,
            24 * HOUR,
            i64::MAX / 4,
        ),
        l(
            "asset-1h",
            Selector::All,
            Selector::Each,
            HOUR,
            i64::MAX / 4,
        ),
        count,
    ]
}

pub(crate) fn engine() -> Result<Engine> {
    let e = Engine {
        trading: Default::default(),
        policies: Policies::load(&[PolicySource {
            name: "bench.cedar".into(),
            text: policy_text(),
        }])?,
        limits: limits(),
        pinned: vec![("USDT".into(), Decimal::ONE)],
        price_max_age: 5 * MINUTE,
        max_clock_skew: 5_000,
        assets: vec![],
        venue_credentials: vec![],
        detectors: keygate_core::detect::DetectorConfig::off(),
    };
    e.validate()?;
    Ok(e)
}

pub(crate) fn clients() -> Vec<ClientRecord> {
    (0..CLIENTS)
        .map(|c| ClientRecord {
            instruments: vec!["BTC/USDT".into(), "ETH/USDT".into()],
            name: format!("c{c}"),
            venues: vec!["binance".into()],
            actions: Action::ALL.to_vec(),
            tags: vec![],
            enabled: true,
        })
        .collect()
}

fn intent(c: usize) -> Intent {
    Intent {
        route: Default::default(),
        order: None,
        client: format!("c{c}"),
        venue: "binance".into(),
        action: Action::Withdraw,
        asset: Some("USDT".into()),
        amount: Some(Decimal::from(100)),
        destination: Some(DEST.into()),
        source_ip: Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5))),
        token_id: None,
    }
}

fn destination() -> Destination {
    Destination {
        route: Default::default(),
        id: 1,
        venue: "binance".into(),
        asset: "USDT".into(),
        address: DEST.into(),
        label: "cold".into(),
        added_at: T0 - 48 * HOUR,
        added_by: "a".into(),
        usable_from: T0 - 24 * HOUR,
        approved_at: Some(T0 - 30 * HOUR),
        approved_by: Some("b".into()),
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // Display only: an index into the sorted samples.
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn micros(d: Duration) -> String {
    format!("{:.2} µs", d.as_nanos() as f64 / 1000.0)
}

/// The benchmark's starting state: its clients and destination, nothing recorded yet.
fn inputs() -> StateInputs {
    StateInputs {
        trades: vec![],
        trades_complete_since: None,
        clients_since: vec![],
        clients: clients(),
        destinations: vec![destination()],
        prices: vec![],
        moves: vec![],
        clock: T0,
        freezes: vec![],
        outflows: vec![],
    }
}

/// The client histories (allowed outflows of the probe's client in the detectors' window) the
/// detectors are timed over.
const HISTORIES: [usize; 2] = [2_000, 20_000];

/// The engines and states the latency figures are taken on: plain, and with the anomaly
/// detectors on over each of [`HISTORIES`]; the probe intent and the time it is asked at.
struct Setup {
    engine: Engine,
    state: State,
    watched_engine: Engine,
    watched: Vec<(usize, State)>,
    probe: keygate_core::Intent,
    now: i64,
}

/// A state with the detectors on in which client c0 has made `n` allowed withdrawals, one a
/// second, ending a second before `now`: a steady history (its first minutes would be a burst
/// to the detectors, so each is recorded as the policies and limits alone decide it).
fn watched_state(engine: &Engine, n: usize, now: i64) -> Result<State> {
    let start = now - n as i64 * 1_000;
    let mut state = State::new(
        engine,
        StateInputs {
            clock: start,
            ..inputs()
        },
    )?;
    for i in 0..n {
        let at = start + i as i64 * 1_000;
        let v = decide(engine, &state, &intent(0), at);
        anyhow::ensure!(
            v.outcome == Outcome::Allow,
            "history withdrawal {i} is not allowed: {v:?}"
        );
        let w = keygate_core::decide::decide_watched(
            engine,
            &state,
            &intent(0),
            at,
            &Default::default(),
        );
        state.record(&v);
        let o = w
            .outgoing
            .context("a watched withdrawal has no outflow for the detectors")?;
        state.record_outflow(o, engine.detectors.window);
    }
    Ok(state)
}

fn set_up() -> Result<Setup> {
    let engine = engine()?;
    let mut state = State::new(&engine, inputs())?;
    // The same engine with the anomaly detectors on, and the same history.
    let mut watched_engine = self::engine()?;
    watched_engine.detectors = keygate_core::detect::DetectorConfig::default();
    // Some history in the windows, as a running instance would have.
    for i in 0..2_000 {
        let at = T0 + i as i64 * 1_000;
        let v = decide(&engine, &state, &intent(i % CLIENTS), at);
        state.record(&v);
    }
    let now = T0 + 2_000 * 1_000;
    let probe = intent(0);
    let v = decide(&engine, &state, &probe, now);
    anyhow::ensure!(
        v.outcome == Outcome::Allow,
        "benchmark intent is not allowed: {v:?}"
    );
    let mut watched = vec![];
    for n in HISTORIES {
        let w = watched_state(&watched_engine, n, now)?;
        let v = keygate_core::decide::decide_watched(
            &watched_engine,
            &w,
            &probe,
            now,
            &Default::default(),
        );
        anyhow::ensure!(
            v.verdict.outcome == Outcome::Allow && v.signals.is_empty(),
            "benchmark intent is not allowed without signals over {n} outflows: {:?}",
            v.verdict
        );
        watched.push((n, w));
    }

    Ok(Setup {
        engine,
        state,
        watched_engine,
        watched,
        probe,
        now,
    })
}

/// The bare Cedar request for the probe on the whole 20-policy set, with the same request and
/// entities, checked to be allowed.
fn cedar_request(s: &Setup, authorizer: &Authorizer) -> Result<cedar_policy::Request> {
    let (engine, state, probe) = (&s.engine, &s.state, &s.probe);
    let ctx = PolicyContext {
        amount_micros: 100_000_000,
        usd_value_cents: 10_000,
        asset: "USDT".into(),
        destination: Some(keygate_core::policy::DestinationRef {
            address: DEST.into(),
            label: "cold".into(),
            age_hours: 48,
        }),
        hour_utc: 12,
        source_ip: probe.source_ip,
        ..Default::default()
    };
    let subject = Subject {
        client: "c0",
        venue: "binance",
        action: Action::Withdraw,
        asset: Some("USDT"),
    };
    let request = engine
        .policies
        .request(&subject, &ctx)
        .map_err(anyhow::Error::msg)?;
    let whole = engine.policies.whole();
    anyhow::ensure!(
        authorizer
            .is_authorized(&request, whole, state.entities())
            .decision()
            == cedar_policy::Decision::Allow,
        "bare Cedar does not allow the benchmark request"
    );

    Ok(request)
}

/// Latency samples, sorted: bare Cedar, decide, decide with the detectors (one per history),
/// and decide with the verdict remembered.
struct Samples {
    cedar: Vec<Duration>,
    ours: Vec<Duration>,
    watched: Vec<(usize, Vec<Duration>)>,
    warm: Vec<Duration>,
}

fn sample(
    s: &mut Setup,
    authorizer: &Authorizer,
    request: &cedar_policy::Request,
    n: usize,
) -> Samples {
    let Setup {
        engine,
        state,
        watched_engine,
        watched: watched_states,
        probe,
        now,
    } = s;
    let (engine, watched_engine, probe, now) = (&*engine, &*watched_engine, &*probe, *now);
    let whole = engine.policies.whole();
    let mut cedar = Vec::with_capacity(n);
    let mut ours = Vec::with_capacity(n);
    let mut watched: Vec<(usize, Vec<Duration>)> = watched_states
        .iter()
        .map(|(h, _)| (*h, Vec::with_capacity(n)))
        .collect();
    let mut warm = Vec::with_capacity(n);
    // Interleave them so that machine noise hits all alike. `decide` and the watched decide
    // start with no remembered verdict each time (Cedar runs); `warm` asks again a question
    // whose verdict the state remembers (what a repeated read or order costs).
    for _ in 0..n {
        let t = Instant::now();
        let r = authorizer.is_authorized(request, whole, state.entities());
        cedar.push(t.elapsed());
        std::hint::black_box(r);
        state.forget_verdicts();
        let t = Instant::now();
        let v = decide(engine, state, probe, now);
        ours.push(t.elapsed());
        std::hint::black_box(v);
        let t = Instant::now();
        let v = decide(engine, state, probe, now);
        warm.push(t.elapsed());
        std::hint::black_box(v);
        for ((_, st), (_, out)) in watched_states.iter_mut().zip(watched.iter_mut()) {
            st.forget_verdicts();
            let t = Instant::now();
            let w = keygate_core::decide::decide_watched(
                watched_engine,
                st,
                probe,
                now,
                &Default::default(),
            );
            out.push(t.elapsed());
            std::hint::black_box(w);
        }
    }
    cedar.sort();
    ours.sort();
    for (_, w) in &mut watched {
        w.sort();
    }
    warm.sort();
    Samples {
        cedar,
        ours,
        watched,
        warm,
    }
}

/// The latency table.
fn print_latency(engine: &Engine, n: usize, s: &Samples) {
    let Samples {
        cedar,
        ours,
        watched,
        warm,
    } = s;
    let (c50, c99, d50, d99) = (
        percentile(cedar, 0.5),
        percentile(cedar, 0.99),
        percentile(ours, 0.5),
        percentile(ours, 0.99),
    );
    println!(
        "keygate bench decide: {} policies ({} judge client c0, {} of them can apply to its withdrawals), {} limits, {n} samples",
        engine.policies.len(),
        engine.policies.slice_len("c0"),
        engine.policies.slice_len_for("c0", Action::Withdraw),
        engine.limits.len()
    );
    println!();
    println!("{:<44} {:>12} {:>12}", "", "p50", "p99");
    println!(
        "{:<44} {:>12} {:>12}",
        "bare Cedar is_authorized, all 20 policies",
        micros(c50),
        micros(c99)
    );
    println!(
        "{:<44} {:>12} {:>12}",
        "keygate decide (slice + limits + checks)",
        micros(d50),
        micros(d99)
    );
    for (history, w) in watched {
        let (w50, w99) = (percentile(w, 0.5), percentile(w, 0.99));
        println!(
            "{:<44} {:>12} {:>12}",
            format!("decide with every detector ({history} outflows)"),
            micros(w50),
            micros(w99)
        );
        println!(
            "{:<44} {:>11.2}x {:>11.2}x",
            "  ratio with detectors / decide",
            w50.as_secs_f64() / d50.as_secs_f64(),
            w99.as_secs_f64() / d99.as_secs_f64()
        );
        println!(
            "{:<44} {:>11.2}x {:>11.2}x",
            "  ratio with detectors / bare Cedar",
            w50.as_secs_f64() / c50.as_secs_f64(),
            w99.as_secs_f64() / c99.as_secs_f64()
        );
    }
    println!(
        "{:<44} {:>11.2}x {:>11.2}x",
        "ratio decide / bare Cedar",
        d50.as_secs_f64() / c50.as_secs_f64(),
        d99.as_secs_f64() / c99.as_secs_f64()
    );
    let (m50, m99) = (percentile(warm, 0.5), percentile(warm, 0.99));
    println!(
        "{:<44} {:>12} {:>12}",
        "decide, verdict remembered by the state",
        micros(m50),
        micros(m99)
    );
    println!(
        "{:<44} {:>11.2}x {:>11.2}x",
        "ratio remembered / bare Cedar",
        m50.as_secs_f64() / c50.as_secs_f64(),
        m99.as_secs_f64() / c99.as_secs_f64()
    );
    println!();
}

/// Durable decisions per second on SQLite, one at a time and with group commit.
async fn durable(a: &BenchDecideArgs, engine: Engine) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let engine = Arc::new(engine);
    let one = durable_run(
        dir.path(),
        "one.db",
        engine.clone(),
        (a.durable / 50).clamp(50, 1_000),
        1,
    )
    .await?;
    let many = durable_run(
        dir.path(),
        "many.db",
        engine,
        a.durable.max(1_000),
        a.concurrency.max(1),
    )
    .await?;
    println!(
        "{:<44} {:>12}",
        "durable decisions on SQLite (synchronous=FULL)", "per second"
    );
    println!("{:<44} {:>12.0}", "one at a time (a commit each)", one);
    println!(
        "{:<44} {:>12.0}",
        format!("{} concurrent (group commit)", a.concurrency),
        many
    );
    println!(
        "{:<44} {:>11.1}x",
        "ratio group commit / one at a time",
        many / one
    );
    Ok(())
}

async fn decide_bench(a: &BenchDecideArgs) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; run `cargo run --release -p keygate-harness -- bench decide` for real figures"
        );
    }
    let mut setup = set_up()?;
    let authorizer = Authorizer::new();
    let request = cedar_request(&setup, &authorizer)?;
    let n = a.samples.max(100);
    let samples = sample(&mut setup, &authorizer, &request, n);
    print_latency(&setup.engine, n, &samples);
    for history in [2_000, 20_000] {
        crate::bench_order::run(&authorizer, history, n)?;
    }
    durable(a, setup.engine).await?;
    crate::bench_clients::run(a.durable.clamp(1_000, 20_000), a.concurrency.max(1)).await
}

/// Decisions per second through the decider with `concurrency` submitters.
async fn durable_run(
    dir: &std::path::Path,
    file: &str,
    engine: Arc<Engine>,
    total: usize,
    concurrency: usize,
) -> Result<f64> {
    let url = format!("sqlite://{}", dir.join(file).display());
    let store = Store::open(&url, OpenMode::Create).await?;
    for c in clients() {
        store.add_client(&c, "bench", T0 - 72 * HOUR).await?;
    }
    let d = store
        .add_destination(
            "binance",
            "USDT",
            DEST,
            "cold",
            HOUR,
            "alice",
            T0 - 72 * HOUR,
        )
        .await?;
    store
        .approve_destination(d.id, "bob", T0 - 72 * HOUR)
        .await?;
    let decider = Decider::start(store.clone(), engine, DeciderOptions::default());
    // Warm up: the first batch loads the state.
    decider.decide(intent(0), T0).await?;
    let per_task = total.div_ceil(concurrency);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for t in 0..concurrency {
        let d = decider.clone();
        tasks.push(tokio::spawn(async move {
            let mut allowed = 0usize;
            for i in 0..per_task {
                let dec = d
                    .decide(intent((t + i) % CLIENTS), T0 + 1 + (i as i64))
                    .await?;
                if dec.verdict.outcome == Outcome::Allow {
                    allowed += 1;
                }
            }
            Ok::<usize, keygate_store::StoreError>(allowed)
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        allowed += t.await??;
    }
    let elapsed = start.elapsed();
    let done = per_task * concurrency;
    anyhow::ensure!(
        allowed > done / 2,
        "most benchmark decisions should be allowed ({allowed} of {done})"
    );
    store.close().await;
    Ok(done as f64 / elapsed.as_secs_f64())
}
