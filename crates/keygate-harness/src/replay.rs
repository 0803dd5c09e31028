//! `keygate-harness replay`: a scenario (docs/scenarios.md) through the decision code, in-process on
//! the events' clock ([`keygate_core::replay::Runner`]) or through a live gateway
//! ([`crate::replay_gateway`], which uses this module's scenario reading and set-up; this one
//! never calls it); then the summary, the JSON report and the SVG chart.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use keygate_core::Engine;
use keygate_core::auth::ClientRecord;
use keygate_core::book::Destination;
use keygate_core::decide::{State, StateInputs};
use keygate_core::intent::normalize_address;
use keygate_core::replay::{
    Event, Header, Ledger, Report, Runner, Tally, in_order, parse_event, parse_header,
};

use keygate_config::{Config, ScenarioDestination};

/// A scenario file, read one line at a time.
pub struct Scenario {
    pub header: Header,
    lines: std::io::Lines<BufReader<std::fs::File>>,
    line: usize,
    last: i64,
    /// Bytes of the file, and bytes read so far (for the progress bar).
    pub size: u64,
    pub read: u64,
}

impl Scenario {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read the scenario {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut lines = BufReader::with_capacity(1 << 20, file).lines();
        let first = lines
            .next()
            .transpose()
            .with_context(|| format!("cannot read the scenario {}", path.display()))?
            .with_context(|| format!("the scenario {} is empty", path.display()))?;
        let header = parse_header(&first).with_context(|| format!("in {}", path.display()))?;
        Ok(Self {
            last: header.start,
            header,
            lines,
            line: 1,
            size,
            read: first.len() as u64 + 1,
        })
    }

    /// The next event, or `None` at the end.
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        loop {
            let Some(text) = self.lines.next().transpose()? else {
                return Ok(None);
            };
            self.line += 1;
            self.read += text.len() as u64 + 1;
            if text.trim().is_empty() {
                continue;
            }
            let e = parse_event(&self.header, &text, self.line)?;
            self.last = in_order(self.line, self.last, e.t())?;
            return Ok(Some(e));
        }
    }
}

/// The engine a replay decides with: the config's, with the scenario's prices pinned (they
/// replace the config's own for the same asset).
pub fn engine(config: &Config, base: &Path, header: &Header) -> Result<Engine> {
    let mut engine = keygate_config::engine::build(config, base)?;
    for (asset, usd) in &header.prices {
        engine.pinned.retain(|(a, _)| a != asset);
        engine.pinned.push((asset.clone(), *usd));
    }
    Ok(engine)
}

/// Refuses a header whose containment does not fit the config's venue: an exchange venue (one
/// of `[venues]` of kind binance or okx) is contained by `sweep`, any other (an EVM wallet) by
/// `rescue`. Both modes check it.
pub fn check_containment(config: &Config, header: &Header) -> Result<()> {
    use keygate_core::replay::How;
    for (venue, c) in &header.containment {
        let exchange = config
            .venues
            .get(venue)
            .and_then(|v| v.kind.exchange())
            .is_some();
        match (exchange, c.how) {
            (true, How::Sweep) | (false, How::Rescue) => {}
            (true, How::Rescue) => bail!(
                "the scenario's containment of {venue} is \"rescue\", but [venues.{venue}] is an exchange: write \"how\": \"sweep\" (lock the key, sweep to the master)"
            ),
            (false, How::Sweep) => bail!(
                "the scenario's containment of {venue} is \"sweep\", but {venue} is not an exchange venue of the config: write \"how\": \"rescue\" for an EVM wallet, or declare [venues.{venue}] with kind binance or okx"
            ),
        }
    }
    Ok(())
}

/// An address-book entry of the config, as the store would hold it once approved.
pub fn destination(i: usize, d: &ScenarioDestination, cooldown: i64) -> Result<Destination> {
    let added = chrono::DateTime::parse_from_rfc3339(&d.added)
        .with_context(|| {
            format!(
                "[[scenario.destinations]] {}: added {:?} is not an RFC 3339 time",
                d.label, d.added
            )
        })?
        .timestamp_millis();
    Ok(Destination {
        route: Default::default(),
        id: i as i64 + 1,
        venue: d.venue.clone(),
        asset: d.asset.clone(),
        address: normalize_address(&d.address),
        label: d.label.clone(),
        added_at: added,
        added_by: "scenario".into(),
        usable_from: added.saturating_add(cooldown),
        approved_at: Some(added),
        approved_by: Some("scenario".into()),
    })
}

/// The starting state: the config's clients and address book, nothing decided yet.
pub fn state(config: &Config, engine: &Engine, header: &Header) -> Result<State> {
    let cooldown =
        keygate_config::engine::duration("address_book.cooldown", &config.address_book.cooldown)?;
    let destinations = config
        .scenario
        .destinations
        .iter()
        .enumerate()
        .map(|(i, d)| destination(i, d, cooldown))
        .collect::<Result<Vec<_>>>()?;
    for c in &config.scenario.clients {
        // Checked here too, so an in-process replay refuses what the gateway replay would.
        client_cidrs(c)?;
    }
    let clients = config
        .scenario
        .clients
        .iter()
        .map(|c| ClientRecord {
            instruments: c.instruments.clone(),
            name: c.name.clone(),
            venues: c.venues.clone(),
            actions: c.actions.clone(),
            tags: vec![],
            enabled: true,
        })
        .collect();
    State::new(
        engine,
        StateInputs {
            trades: vec![],
            // keygate decides everything from the scenario's start, and every client exists
            // from then: a client quiet for a whole window after it is dormant, as in the
            // gateway replay (whose store begins just before the start).
            trades_complete_since: Some(header.start),
            clients_since: config
                .scenario
                .clients
                .iter()
                .map(|c| (c.name.clone(), header.start))
                .collect(),
            clients,
            destinations,
            prices: vec![],
            moves: vec![],
            clock: header.start,
            freezes: vec![],
            outflows: vec![],
        },
    )
    .context("cannot build the replay's starting state from [scenario] in the config")
}

/// Where a replay client's token may be used from: at least one network, each valid.
pub fn client_cidrs(c: &keygate_config::ScenarioClient) -> Result<Vec<ipnet::IpNet>> {
    if c.cidrs.is_empty() {
        bail!(
            "[[scenario.clients]] {}: cidrs is empty; name the networks its token may be used from (an empty list never means any)",
            c.name
        );
    }
    c.cidrs
        .iter()
        .map(|n| {
            n.parse().with_context(|| {
                format!(
                    "[[scenario.clients]] {}: {n:?} is not a network such as 10.0.0.5/32",
                    c.name
                )
            })
        })
        .collect()
}

/// A progress bar on a terminal (nothing otherwise), measured in bytes of the scenario.
pub fn progress(size: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(size),
        indicatif::ProgressDrawTarget::stderr_with_hz(5),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} replaying [{bar:40}] {percent}% {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Each declared client by name, with where its token may be used from.
pub type ClientNets<'a> = HashMap<&'a str, (&'a keygate_config::ScenarioClient, Vec<ipnet::IpNet>)>;

/// Each declared client, with where its token may be used from.
pub fn client_nets(config: &Config) -> Result<ClientNets<'_>> {
    config
        .scenario
        .clients
        .iter()
        .map(|c| Ok((c.name.as_str(), (c, client_cidrs(c)?))))
        .collect()
}

/// Refuses a request the gateway replay could not send: of a client the config does not
/// declare (it has no token), from outside the networks its token is bound to, or outside its
/// token's venues and actions (the gateway refuses those before any decision). Both modes
/// check it, so both give the same report.
pub fn check_client(
    clients: &ClientNets<'_>,
    r: &keygate_core::replay::RequestEvent,
    done: u64,
) -> Result<()> {
    let Some((client, nets)) = clients.get(r.client.as_str()) else {
        bail!(
            "event {}: client {} is not declared in [[scenario.clients]] of the config",
            done + 1,
            r.client
        );
    };
    if !nets.iter().any(|n| n.contains(&r.source_ip)) {
        bail!(
            "event {}: {} is outside the networks client {}'s token is bound to ([[scenario.clients]] cidrs); a token used from elsewhere is refused before any decision, which a replay does not model",
            done + 1,
            r.source_ip,
            r.client
        );
    }
    if !client.venues.contains(&r.venue) || !client.actions.contains(&r.action) {
        bail!(
            "event {}: client {} may not {} on {} ([[scenario.clients]]); its token would be refused before any decision, which a replay does not model",
            done + 1,
            r.client,
            r.action,
            r.venue
        );
    }
    Ok(())
}

/// Runs a scenario in-process. Returns the report and the number of events.
pub fn in_process(config: &Config, base: &Path, path: &Path, show: bool) -> Result<Report> {
    let mut scenario = Scenario::open(path)?;
    check_containment(config, &scenario.header)?;
    let engine = engine(config, base, &scenario.header)?;
    let state = state(config, &engine, &scenario.header)?;
    let mut runner = Runner::new(&engine, state, keygate_config::engine::contain(config)?)
        .with_ledger(Ledger::new(&scenario.header));
    let clients = client_nets(config)?;
    let mut tally = Tally::new(&scenario.header, "in-process", &engine.pinned);
    let bar = show.then(|| progress(scenario.size));
    let mut n = 0u64;
    while let Some(event) = scenario.next_event()? {
        for e in runner.due(event.t()) {
            tally.effect(&e);
        }
        match &event {
            Event::Request(r) => {
                check_client(&clients, r, n)?;
                let seen = runner.request(r);
                tally.request(r, &seen);
            }
            Event::Outflow(o) => {
                let judged = runner.outflow(o);
                tally.outflow(o, &judged);
            }
        }
        n += 1;
        if let Some(b) = &bar
            && n.is_multiple_of(4096)
        {
            b.set_position(scenario.read);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(tally.report())
}

/// The directory relative paths of a config file are resolved against.
pub fn config_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Prints the summary and writes the report and the chart where asked.
pub fn finish(report: &Report, json: Option<&Path>, chart: Option<&Path>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(summary(report).as_bytes())?;
    // Both are made before either is written, so a failure leaves neither half-done.
    let json_text = json.map(|_| report_json(report)).transpose()?;
    let chart_text = chart.map(|_| chart_svg(report)).transpose()?;
    if let (Some(p), Some(text)) = (json, json_text) {
        write_whole(p, text.as_bytes())?;
        writeln!(out, "report: {}", p.display())?;
    }
    if let (Some(p), Some(text)) = (chart, chart_text) {
        write_whole(p, text.as_bytes())?;
        writeln!(out, "chart:  {}", p.display())?;
    }
    Ok(())
}

/// Checks before a replay that an output file can be written where asked.
pub fn writable(path: &Path) -> Result<()> {
    let dir = config_dir(path);
    if !dir.is_dir() {
        bail!(
            "cannot write {}: the directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("cannot write {}: it is a directory", path.display());
    }
    Ok(())
}

/// Writes a file whole: to a temporary file beside it, then renamed over it.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = keygate_config::instance::with_suffix(path, ".tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The report as JSON: the same scenario and config always give the same bytes.
pub fn report_json(report: &Report) -> Result<String> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}

/// The summary printed after a replay.
pub fn summary(r: &Report) -> String {
    let first = |f: &Option<keygate_core::replay::First>| match f {
        None => "never".to_string(),
        Some(f) => format!(
            "{} (event {}, attack event {}{})",
            f.t,
            f.event,
            f.attack_events,
            f.after_attack_start
                .as_deref()
                .map(|d| format!(", {d} after the attack began"))
                .unwrap_or_default()
        ),
    };
    let mut s = String::new();
    s.push_str(&format!(
        "scenario {} ({}): {} events, {} normal and {} attack\n",
        r.scenario, r.mode, r.events, r.normal.events, r.attack.events
    ));
    s.push_str(&format!(
        "  attack value attempted        USD {}\n",
        r.attack_attempted_usd
    ));
    s.push_str(&format!(
        "  attack value allowed          USD {}",
        r.attack_allowed_usd
    ));
    if r.attack_outflow_usd != "0.00" {
        s.push_str(&format!(
            " (of which USD {} left around keygate)",
            r.attack_outflow_usd
        ));
    }
    s.push('\n');
    if r.attack_trades > 0 {
        s.push_str(&format!(
            "  attack trades                 {} of {} allowed ({}), notional USD {} of USD {}\n",
            r.attack_trades_allowed,
            r.attack_trades,
            percent(r.attack_trades_allowed, r.attack_trades),
            r.attack_trade_notional_allowed_usd,
            r.attack_trade_notional_usd
        ));
    }
    s.push_str(&format!(
        "  attack events                 {} allowed, {} held, {} denied ({} by a freeze or freezing)\n",
        r.attack.allowed, r.attack.held, r.attack.denied, r.attack.frozen
    ));
    s.push_str(&format!(
        "  normal events                 {} allowed, {} held, {} denied, {} frozen (false positives: {})\n",
        r.normal.allowed,
        r.normal.held,
        r.normal.denied,
        r.normal.frozen,
        r.normal_denied + r.normal_held + r.normal_frozen
    ));
    s.push_str(&format!(
        "  first deny                    {}\n",
        first(&r.first_deny)
    ));
    s.push_str(&format!(
        "  first hold                    {}\n",
        first(&r.first_hold)
    ));
    s.push_str(&format!(
        "  first freeze                  {}\n",
        first(&r.first_freeze)
    ));
    for f in &r.freezes {
        s.push_str(&format!(
            "  freeze                        {} at {} (event {}, set by {})\n",
            f.scope, f.t, f.event, f.by
        ));
    }
    if r.outflows_matched + r.outflows_unapproved > 0 {
        s.push_str(&format!(
            "  outflows seen by the watcher  {} matched, {} unapproved\n",
            r.outflows_matched, r.outflows_unapproved
        ));
    }
    if let Some(v) = &r.value {
        s.push_str(&value_summary(v));
    }
    if r.detector_hits.is_empty() {
        s.push_str("  detector hits                 none\n");
    }
    for (d, h) in &r.detector_hits {
        s.push_str(&format!(
            "  detector {:<20} {} on attack events, {} on normal events\n",
            d, h.attack, h.normal
        ));
    }
    s
}

/// The value lines of a scenario with opening balances: per venue, and in total.
fn value_summary(v: &keygate_core::replay::ValueReport) -> String {
    let mut s = String::from(
        "  value at the venues (USD)     opening, lost, saved (swept), rescued, refused for lack of funds, refused after containment\n",
    );
    let line = |name: &str, x: &keygate_core::replay::VenueValue| {
        let contained = match (&x.how, &x.contained_at) {
            (Some(h), Some(at)) => format!(
                " (contained: {} at {at}, {} ms after the freeze)",
                h.as_str(),
                x.latency_ms.unwrap_or_default()
            ),
            (Some(h), None) => format!(" (containment {}: not triggered)", h.as_str()),
            (None, _) => String::new(),
        };
        format!(
            "    {name:<27} {}, lost {}, saved {}, rescued {}, refused {} + {}{contained}\n",
            x.opening_usd,
            x.lost_usd,
            x.saved_usd,
            x.rescued_usd,
            x.blocked_for_funds_usd,
            x.blocked_by_containment_usd
        )
    };
    for (name, x) in &v.venues {
        s.push_str(&line(name, x));
    }
    s.push_str(&line("total", &v.total));
    if v.outflows_blocked > 0 {
        s.push_str(&format!(
            "  outflows refused by the venue {}\n",
            v.outflows_blocked
        ));
    }
    s
}

/// `part` of `whole` as a percentage with two places ("1.25%"), in integers.
fn percent(part: u64, whole: u64) -> String {
    let bp = u128::from(part) * 10_000 / u128::from(whole.max(1));
    format!("{}.{:02}%", bp / 100, bp % 100)
}

/// Whole dollars of a cents figure, for the chart's axis.
fn dollars(cents: i64) -> i64 {
    cents / 100
}

fn axis_usd(v: &i64) -> String {
    let v = *v;
    if v.abs() >= 1_000_000 {
        format!("${}.{}M", v / 1_000_000, (v % 1_000_000) / 100_000)
    } else if v.abs() >= 1_000 {
        format!("${}k", v / 1_000)
    } else {
        format!("${v}")
    }
}

/// What the chart plots: a caption, and the attempted and allowed figures with their totals.
struct Plotted {
    what: &'static str,
    attempted: fn(&keygate_core::replay::Point) -> i64,
    allowed: fn(&keygate_core::replay::Point) -> i64,
    attempted_usd: String,
    allowed_usd: String,
}

/// The attack value moved out; or, for an attack of trades only, the attack trades' notional.
fn plotted(r: &Report) -> Plotted {
    if r.attack_attempted_usd == "0.00" && r.attack_trades > 0 {
        Plotted {
            what: "attack trade notional",
            attempted: |p| p.trade_attempted_cents,
            allowed: |p| p.trade_allowed_cents,
            attempted_usd: r.attack_trade_notional_usd.clone(),
            allowed_usd: r.attack_trade_notional_allowed_usd.clone(),
        }
    } else {
        Plotted {
            what: "attack value",
            attempted: |p| p.attempted_cents,
            allowed: |p| p.allowed_cents,
            attempted_usd: r.attack_attempted_usd.clone(),
            allowed_usd: r.attack_allowed_usd.clone(),
        }
    }
}

/// The chart: cumulative attack value (or, for an attack of trades only, trade notional)
/// attempted against allowed over time (minutes since the first attack event), with each
/// freeze marked. SVG, drawn with plotters.
pub fn chart_svg(r: &Report) -> Result<String> {
    use plotters::prelude::*;
    let plot = plotted(r);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
        let start = r.timeline.first().map(|p| p.t).unwrap_or(0);
        let minute = |t: i64| (t - start).div_euclid(60_000);
        let end = r.timeline.last().map(|p| minute(p.t)).unwrap_or(0).max(10);
        let top = r
            .timeline
            .last()
            .map(|p| dollars((plot.attempted)(p)))
            .unwrap_or(0)
            .max(1_000);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: {} attempted vs allowed by keygate",
                    r.scenario, plot.what
                ),
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(-2i64..end + end / 20 + 1, 0i64..top + top / 10)
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
        chart
            .configure_mesh()
            .x_desc("minutes since the first attack event")
            .y_desc("cumulative USD")
            .y_label_formatter(&axis_usd)
            .draw()
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
        let series = |f: fn(&keygate_core::replay::Point) -> i64| {
            let mut pts = vec![];
            let mut last = 0;
            for p in &r.timeline {
                let x = minute(p.t);
                pts.push((x, last));
                last = dollars(f(p));
                pts.push((x, last));
            }
            pts.push((end, last));
            pts
        };
        chart
            .draw_series(LineSeries::new(series(plot.attempted), RED.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?
            .label(format!("attempted: USD {}", plot.attempted_usd))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(series(plot.allowed), BLUE.stroke_width(3)))
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?
            .label(format!("allowed: USD {}", plot.allowed_usd))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(3)));
        for f in r.freezes.iter().filter(|f| f.at >= start) {
            let x = minute(f.at);
            chart
                .draw_series(LineSeries::new(
                    vec![(x, 0), (x, top)],
                    BLACK.stroke_width(1),
                ))
                .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("freeze {}", f.scope),
                    (x + 1, top * 6 / 10),
                    ("sans-serif", 14).into_font(),
                )))
                .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    }
    Ok(svg)
}
