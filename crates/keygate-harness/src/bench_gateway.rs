//! `keygate-harness bench gateway`: the latency keygate adds in front of a venue, and its throughput.
//!
//! This process sets up a temporary data directory through keygate-admin, starts `keygate serve`
//! (the `keygate` binary beside this one) as a second process (SQLite, durable), runs the venue simulator in this process, and drives
//! keep-alive HTTP/1.1 traffic from here at the simulator directly and through keygate, for a
//! read (GET /api/v3/account) and a new order (POST /api/v3/order). Latency is measured
//! open-loop at a fixed rate (each request timed from when it was due, so a stall is counted,
//! not hidden); throughput closed-loop with a fixed number of connections.
//!
//! The floor beside every figure: nginx (Debian's, installed by `scripts/bench-env`) as a plain
//! reverse proxy to the same simulator in the same run (1 worker, upstream keep-alive), so
//! keygate's added latency is printed next to what any proxy hop adds on this machine.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keygate_sim::{Account, Restrictions, Sim, SimConfig, VenueKind};
use rust_decimal::Decimal;

use crate::cli::BenchGatewayArgs;

const SIM_KEY: &str = "bench-key";

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One kind of request, addressed directly or through keygate.
#[derive(Clone)]
struct Target {
    url: String,
    method: reqwest::Method,
    /// Signs for the simulator (direct) or adds the bearer token (keygate).
    auth: Auth,
    body: &'static str,
}

#[derive(Clone)]
enum Auth {
    Direct { secret: Arc<String> },
    Token(Arc<String>),
}

const ORDER: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=40000";

impl Target {
    fn request(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::Token(t) => {
                let url = if self.method == reqwest::Method::GET {
                    self.url.clone()
                } else {
                    format!("{}?{}", self.url, self.body)
                };
                http.request(self.method.clone(), url)
                    .header("Authorization", format!("Bearer {t}"))
            }
            Auth::Direct { secret } => {
                let now = crate::now_ms();
                let mut payload = String::from(self.body);
                if !payload.is_empty() {
                    payload.push('&');
                }
                payload.push_str(&format!("recvWindow=5000&timestamp={now}"));
                let sig = keygate_venues::binance::signature(secret, &payload);
                http.request(
                    self.method.clone(),
                    format!("{}?{payload}&signature={sig}", self.url),
                )
                .header("X-MBX-APIKEY", SIM_KEY)
            }
        }
    }
}

async fn once(http: &reqwest::Client, t: &Target) -> Result<(), String> {
    let r = t.request(http).send().await.map_err(|e| e.to_string())?;
    let status = r.status();
    let _ = r.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

struct Latency {
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// One keep-alive connection of the open-loop load: a client of its own, used by one request at
/// a time (a request due while its lane is busy waits for it, and the wait is in its latency).
#[derive(Clone)]
struct Lane {
    http: reqwest::Client,
    busy: Arc<tokio::sync::Mutex<()>>,
}

fn lanes(n: usize) -> Result<Vec<Lane>> {
    (0..n.max(1))
        .map(|_| {
            Ok(Lane {
                http: reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .tcp_nodelay(true)
                    .build()?,
                busy: Arc::new(tokio::sync::Mutex::new(())),
            })
        })
        .collect()
}

/// `rate` requests a second for `secs`, open loop, spread over `lanes` in turn.
async fn fixed_rate(lanes: &[Lane], t: &Target, rate: u64, secs: u64) -> Latency {
    let n = rate * secs;
    let gap = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + gap * (i as u32);
        tokio::time::sleep_until(due).await;
        let lane = lanes[i as usize % lanes.len().max(1)].clone();
        let (t, errors) = (t.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let _busy = lane.busy.lock().await;
            let r = once(&lane.http, &t).await;
            if r.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::Instant::now().duration_since(due)
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(d) = task.await {
            lat.push(d);
        }
    }
    lat.sort();
    let pick = |p: f64| {
        // Display only: an index into the sorted samples.
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(i).copied().unwrap_or_default()
    };
    Latency {
        p50: pick(0.50),
        p99: pick(0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

/// As many requests as `conns` connections carry in `secs`, closed loop.
async fn throughput(http: &reqwest::Client, t: &Target, conns: usize, secs: u64) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = vec![];
    for _ in 0..conns {
        let (http, t, done, errors) = (http.clone(), t.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                match once(&http, &t).await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let secs = started.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        errors.load(Ordering::Relaxed),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// The simulated venue: one Binance account with the bench key, on a loopback port.
async fn start_sim() -> Result<(SocketAddr, Arc<String>)> {
    let mut secret_bytes = [0u8; 16];
    getrandom::fill(&mut secret_bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let secret = Arc::new(hex::encode(secret_bytes));
    let sim = Sim::new(SimConfig {
        accounts: vec![Account {
            venue: VenueKind::Binance,
            api_key: SIM_KEY.into(),
            secret: secret.to_string(),
            passphrase: None,
            balances: [("USDT".to_string(), Decimal::from(1_000_000_000))]
                .into_iter()
                .collect(),
            restrictions: Restrictions::default(),
        }],
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim_addr = listener.local_addr()?;
    tokio::spawn(keygate_sim::serve(listener, sim.clone()));
    Ok((sim_addr, secret))
}

/// The data directory, through keygate-admin: `init`, the bench venue at the simulator, its
/// credential, the client `bot` (read, trade) and a token for it valid for `ttl_secs`, which is
/// returned.
async fn data_dir(
    data: &Path,
    sim_addr: SocketAddr,
    secret: &str,
    ttl_secs: u64,
) -> Result<Arc<String>> {
    let made = keygate_admin::init::init(&keygate_admin::init::InitRequest {
        data_dir: data.to_path_buf(),
        passphrase: false,
        store_url: None,
    })
    .await?;
    let cfg_path = made.paths.config_file.clone();
    let cfg = std::fs::read_to_string(&cfg_path)?;
    std::fs::write(
        &cfg_path,
        format!(
            "{cfg}\n[venues.bench]\nkind = \"binance\"\nbase_url = \"http://{sim_addr}\"\nreconcile_every = \"off\"\n"
        )
        .replace("level = \"info\"", "level = \"warn\"")
        // The default per-client trade limit (USD 500,000 an hour) would stop the bench's
        // thousands of orders partway: the bench measures the path, not that limit.
        .replace(
            "actions = [\"trade\"]\nwindow = \"1h\"\nmax_usd = \"500000\"",
            "actions = [\"trade\"]\nwindow = \"1h\"\nmax_usd = \"1000000000000\"",
        ),
    )?;
    let config = keygate_config::Config::load_as_written(&cfg_path)?;
    let inst = keygate_config::Instance::open(config, made.paths).await?;
    let parts = vec![
        keygate_vault::SecretString::new(SIM_KEY.to_string()),
        keygate_vault::SecretString::new(secret.to_string()),
    ];
    let now = crate::now_ms();
    keygate_admin::credentials::add_credential(
        &inst,
        "bench",
        keygate_vault::CredentialKind::BinanceHmac,
        Some("bench"),
        parts,
        now,
    )
    .await?;
    let keygate_config::Instance {
        config,
        paths,
        store,
        ..
    } = inst;
    let h = keygate_config::StateHandle {
        config,
        paths,
        store,
    };
    let result = async {
        keygate_admin::clients::add_client(
            &h,
            "admin:bench",
            keygate_admin::clients::NewClient {
                name: "bot".into(),
                venues: vec!["bench".into()],
                actions: vec![keygate_core::Action::Read, keygate_core::Action::Trade],
                tags: vec![],
                instruments: vec!["BTC/USDT".into()],
            },
            now,
        )
        .await?;
        let req = keygate_admin::tokens::TokenRequest {
            client: "bot".into(),
            ttl: Some(format!("{ttl_secs}s")),
            ..Default::default()
        };
        keygate_admin::tokens::issue_token(&h, "admin:bench", &req, None, now).await
    }
    .await;
    h.store.close().await;
    match result?.secret {
        keygate_admin::tokens::IssuedSecret::Bearer(t) => Ok(Arc::new(t.to_string())),
        keygate_admin::tokens::IssuedSecret::Native { .. } => {
            bail!("a bearer token was asked for")
        }
    }
}

/// The `keygate` binary beside this one (the same build's), which the bench measures.
fn keygate_binary() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let kg = exe.with_file_name("keygate");
    if !kg.is_file() {
        bail!(
            "{} is not there: the gateway bench measures `keygate serve`; build it first (cargo build --release -p keygate)",
            kg.display()
        );
    }
    Ok(kg)
}

/// `keygate serve` on a loopback port, as a process of its own; returns it and its address.
fn spawn_serve(data: &Path) -> Result<(Serve, SocketAddr)> {
    let mut child = Command::new(keygate_binary()?)
        .arg("--data-dir")
        .arg(data)
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .env("KEYGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let serve = Serve(child);
    let kg_addr: SocketAddr = line
        .trim()
        .strip_prefix("keygate serving on http://")
        .context("keygate serve did not start")?
        .parse()?;
    Ok((serve, kg_addr))
}

/// The Debian package the floor is measured with, pinned (what `scripts/bench-env` installs).
const NGINX_PACKAGE: &str = "nginx-light=1.22.1-9+deb12u7";

/// nginx as a plain reverse proxy to the simulator, as a process of its own.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx binary, if installed.
fn nginx_binary() -> Option<std::path::PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

/// The configuration of a plain proxy: one worker, no access log, HTTP/1.1 with keep-alive to
/// the upstream, everything under `dir`.
fn nginx_conf(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream venue {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://venue;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
        }}
    }}
}}
"
    )
}

/// Starts nginx in front of the simulator, or says why not (then the bench runs without it).
async fn start_nginx(dir: &Path, upstream: SocketAddr) -> Result<Option<Nginx>> {
    let Some(bin) = nginx_binary() else {
        println!(
            "nginx is not installed, so there is no plain-proxy floor in this run: install it with `bash scripts/bench-env` (apt-get install -y {NGINX_PACKAGE})"
        );
        return Ok(None);
    };
    std::fs::create_dir_all(dir)?;
    // A free loopback port (taken back at once; nginx binds it a moment later).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir, addr, upstream))?;
    let child = Command::new(&bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let nginx = Nginx { child, addr };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let version = Command::new(&bin)
                .arg("-v")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .unwrap_or_default();
            println!("nginx as a plain proxy on {addr} ({version}, 1 worker, upstream keep-alive)");
            return Ok(Some(nginx));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!(
        "nginx did not start listening on {addr}; see {}/error.log",
        dir.display()
    )
}

/// The ends of the bench: the simulator directly, nginx in front of it (if installed), and
/// keygate in front of it.
struct Ends {
    http: reqwest::Client,
    /// The open-loop load's connections.
    lanes: Vec<Lane>,
    sim_addr: SocketAddr,
    nginx_addr: Option<SocketAddr>,
    kg_addr: SocketAddr,
    secret: Arc<String>,
    token: Arc<String>,
}

impl Ends {
    fn direct(&self, method: reqwest::Method, path: &str, body: &'static str) -> Target {
        Target {
            url: format!("http://{}{path}", self.sim_addr),
            method,
            auth: Auth::Direct {
                secret: self.secret.clone(),
            },
            body,
        }
    }
    /// The same signed request as `direct`, through nginx.
    fn nginx(&self, method: reqwest::Method, path: &str, body: &'static str) -> Option<Target> {
        let addr = self.nginx_addr?;
        Some(Target {
            url: format!("http://{addr}{path}"),
            ..self.direct(method, path, body)
        })
    }
    fn via(&self, method: reqwest::Method, path: &str, body: &'static str) -> Target {
        Target {
            url: format!("http://{}/venues/bench{path}", self.kg_addr),
            method,
            auth: Auth::Token(self.token.clone()),
            body,
        }
    }
}

/// The requests measured: a read and a new order.
type Kind = (&'static str, reqwest::Method, &'static str, &'static str);

fn kinds() -> [Kind; 2] {
    [
        (
            "read  GET /api/v3/account",
            reqwest::Method::GET,
            "/api/v3/account",
            "",
        ),
        (
            "order POST /api/v3/order",
            reqwest::Method::POST,
            "/api/v3/order",
            ORDER,
        ),
    ]
}

/// Warms up both paths (connections, caches, the decider's state).
async fn warm_up(e: &Ends, kinds: &[Kind]) -> Result<()> {
    let http = &e.http;
    for (_, m, p, b) in kinds {
        for _ in 0..200 {
            once(http, &e.direct(m.clone(), p, b))
                .await
                .map_err(anyhow::Error::msg)
                .context("the simulator refused a request")?;
            once(http, &e.via(m.clone(), p, b))
                .await
                .map_err(anyhow::Error::msg)
                .context("keygate refused a request")?;
            if let Some(t) = e.nginx(m.clone(), p, b) {
                once(http, &t)
                    .await
                    .map_err(anyhow::Error::msg)
                    .context("the simulator refused a request through nginx")?;
            }
        }
        // Each lane's connection to each end, opened before anything is timed.
        for lane in &e.lanes {
            let mut ts = vec![e.direct(m.clone(), p, b), e.via(m.clone(), p, b)];
            ts.extend(e.nginx(m.clone(), p, b));
            for t in ts {
                once(&lane.http, &t)
                    .await
                    .map_err(anyhow::Error::msg)
                    .context("a warm-up request failed")?;
            }
        }
    }
    Ok(())
}

/// One kind's figures on one path.
struct PathFigures {
    latency: Latency,
    per_second: f64,
    errors: u64,
}

async fn path_figures(
    http: &reqwest::Client,
    lanes: &[Lane],
    t: &Target,
    a: &BenchGatewayArgs,
) -> PathFigures {
    let latency = fixed_rate(lanes, t, a.rate, a.secs).await;
    let (per_second, errors) = throughput(http, t, a.connections, a.secs).await;
    PathFigures {
        errors: errors + latency.errors,
        latency,
        per_second,
    }
}

/// Latency and throughput of each kind, direct, through nginx and through keygate, as a table:
/// each proxy's added latency is its p50 (p99) minus the direct one of the same run.
async fn measure(e: &Ends, kinds: &[Kind], a: &BenchGatewayArgs) {
    let http = &e.http;
    println!(
        "\nkeep-alive HTTP/1.1 on loopback; latency at {} req/s over {} connections for {} s (open loop), throughput with {} connections for {} s (closed loop)",
        a.rate, a.connections, a.secs, a.connections, a.secs
    );
    println!(
        "{:<28} {:<8} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7}",
        "request", "path", "p50", "p99", "added p50", "added p99", "req/s", "% dir."
    );
    for (name, m, p, b) in kinds {
        let direct = path_figures(http, &e.lanes, &e.direct(m.clone(), p, b), a).await;
        let nginx = match e.nginx(m.clone(), p, b) {
            Some(t) => Some(path_figures(http, &e.lanes, &t, a).await),
            None => None,
        };
        let via = path_figures(http, &e.lanes, &e.via(m.clone(), p, b), a).await;
        let row = |path: &str, f: &PathFigures| {
            let added = |x: Duration, d: Duration| ms(x.saturating_sub(d));
            println!(
                "{:<28} {:<8} {:>10} {:>10} {:>10} {:>10} {:>9.0} {:>6.0}%",
                name,
                path,
                ms(f.latency.p50),
                ms(f.latency.p99),
                added(f.latency.p50, direct.latency.p50),
                added(f.latency.p99, direct.latency.p99),
                f.per_second,
                100.0 * f.per_second / direct.per_second.max(1.0)
            );
        };
        row("direct", &direct);
        if let Some(n) = &nginx {
            row("nginx", n);
        }
        row("keygate", &via);
        if let Some(n) = &nginx {
            let k = via.latency.p99.saturating_sub(direct.latency.p99);
            let n = n.latency.p99.saturating_sub(direct.latency.p99);
            // Below 10 µs nginx's added p99 is noise, and a ratio to it means nothing.
            if n >= Duration::from_micros(10) {
                println!(
                    "{:<28} keygate's added p99 / nginx's: {:.1}x",
                    "",
                    k.as_secs_f64() / n.as_secs_f64()
                );
            } else {
                println!(
                    "{:<28} nginx added no measurable p99 in this run (direct p99 is as high): no ratio",
                    ""
                );
            }
        }
        let errors = direct.errors + via.errors + nginx.as_ref().map_or(0, |n| n.errors);
        if errors > 0 {
            println!("  ({errors} requests failed; the figures above include them)");
        }
    }
}

/// Where keygate's time went, as its own metrics saw it (all runs together).
async fn inside_keygate(e: &Ends) {
    let (http, kg_addr) = (&e.http, e.kg_addr);
    if let Ok(r) = http.get(format!("http://{kg_addr}/metrics")).send().await
        && let Ok(text) = r.text().await
    {
        println!("\ninside keygate (all requests of all runs): step, p50, p99");
        for step in ["decide", "venue", "total"] {
            let q = |p: &str| {
                text.lines()
                    .find(|l| {
                        l.starts_with("keygate_gateway_seconds{")
                            && l.contains(&format!("step=\"{step}\""))
                            && l.contains(&format!("quantile=\"{p}\""))
                    })
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(|v| format!("{:.3} ms", v * 1000.0))
                    .unwrap_or_else(|| "?".into())
            };
            println!("  {step:<8} {:>10} {:>10}", q("0.5"), q("0.99"));
        }
    }
}

pub async fn run(a: &BenchGatewayArgs) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "note: this is a debug build; run `cargo run --release -p keygate-harness -- bench gateway` (after `cargo build --release -p keygate`) for real figures"
        );
    }
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let (sim_addr, secret) = start_sim().await?;
    println!("setting up a data directory and starting `keygate serve` (SQLite) …");
    let token = data_dir(&data, sim_addr, &secret, 3_600).await?;
    let (serve, kg_addr) = spawn_serve(&data)?;
    let nginx = start_nginx(&tmp.path().join("nginx"), sim_addr).await?;
    let ends = Ends {
        nginx_addr: nginx.as_ref().map(|n| n.addr),
        lanes: lanes(a.connections)?,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(a.connections.max(64))
            .tcp_nodelay(true)
            .build()?,
        sim_addr,
        kg_addr,
        secret,
        token,
    };
    let kinds = kinds();
    warm_up(&ends, &kinds).await?;
    measure(&ends, &kinds, a).await;
    if let Some(secs) = a.wrk_secs {
        wrk_runs(sim_addr, kg_addr, &ends.token, a.connections, secs);
    }
    inside_keygate(&ends).await;
    println!(
        "\n(the simulator and this load generator share one process; keygate serve is another; all on {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    drop(serve);
    drop(nginx);
    Ok(())
}

/// A cross-check with wrk (a separate C load generator, if installed): a public read
/// (GET /api/v3/time, which needs no signature from the load generator), direct and through
/// keygate, closed loop.
fn wrk_runs(sim: SocketAddr, kg: SocketAddr, token: &str, conns: usize, secs: u64) {
    let run = |url: &str, header: Option<String>| -> Option<(String, String, String)> {
        let mut cmd = Command::new("wrk");
        cmd.args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
        ]);
        if let Some(h) = header {
            cmd.args(["-H", &h]);
        }
        let out = cmd.arg(url).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |prefix: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(prefix))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("?")
                .to_string()
        };
        let rps = text
            .lines()
            .find(|l| l.starts_with("Requests/sec:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string();
        Some((field("50%"), field("99%"), rps))
    };
    let direct = run(&format!("http://{sim}/api/v3/time"), None);
    let via = run(
        &format!("http://{kg}/venues/bench/api/v3/time"),
        Some(format!("Authorization: Bearer {token}")),
    );
    match (direct, via) {
        (Some(d), Some(v)) => {
            println!(
                "\nwrk (another process), GET /api/v3/time, {conns} connections, {secs} s, closed loop:"
            );
            println!("  {:<8} {:>10} {:>10} {:>12}", "", "p50", "p99", "req/s");
            println!("  {:<8} {:>10} {:>10} {:>12}", "direct", d.0, d.1, d.2);
            println!("  {:<8} {:>10} {:>10} {:>12}", "via", v.0, v.1, v.2);
        }
        _ => println!("\n(wrk is not installed: apt-get install wrk for the cross-check)"),
    }
}

/// `keygate serve` in front of the simulator, set up as this bench sets it up, for the soak.
pub(crate) struct Gateway {
    serve: Serve,
    pub(crate) kg_addr: SocketAddr,
    token: Arc<String>,
    /// The data directory (and the temporary directory that holds it).
    pub(crate) _tmp: tempfile::TempDir,
}

impl Gateway {
    /// The process id of `keygate serve`.
    pub(crate) fn pid(&self) -> u32 {
        self.serve.0.id()
    }

    /// The simulator, a data directory with the bench venue and client (no limit that a long
    /// run of orders would reach), a token valid for `ttl_secs`, and `keygate serve` on a
    /// loopback port.
    pub(crate) async fn start(ttl_secs: u64) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data = tmp.path().join("data");
        let (sim_addr, secret) = start_sim().await?;
        let token = data_dir(&data, sim_addr, &secret, ttl_secs).await?;
        let cfg_path = data.join("keygate.toml");
        let cfg = std::fs::read_to_string(&cfg_path)?.replace(
            "actions = [\"trade\"]\nwindow = \"1h\"\nmax_usd = \"500000\"",
            "actions = [\"trade\"]\nwindow = \"1h\"\nmax_usd = \"1000000000000\"",
        );
        std::fs::write(&cfg_path, cfg)?;
        let (serve, kg_addr) = spawn_serve(&data)?;
        Ok(Self {
            serve,
            kg_addr,
            token,
            _tmp: tmp,
        })
    }

    /// One request through keygate: a read (GET /api/v3/account) or a new order.
    pub(crate) async fn send(&self, http: &reqwest::Client, order: bool) -> Result<(), String> {
        let (method, path, body) = if order {
            (reqwest::Method::POST, "/api/v3/order", ORDER)
        } else {
            (reqwest::Method::GET, "/api/v3/account", "")
        };
        let t = Target {
            url: format!("http://{}/venues/bench{path}", self.kg_addr),
            method,
            auth: Auth::Token(self.token.clone()),
            body,
        };
        once(http, &t).await
    }
}
