//! Helpers for tests against a real anvil node (feature `testing`): find the binary, start it
//! on a free loopback port, deploy the 6-decimals test token. A missing anvil fails the test
//! with the command that installs it: the chain tests never skip silently. [`fake_node`] stands
//! in for a node that misbehaves (a lagging backend, an oversized answer, a lost answer), alone
//! or as a proxy in front of anvil.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support (feature `testing`, never in a release build): a failure is a failed test"
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use serde_json::{Value, json};

use crate::rpc::Rpc;

/// Anvil's first default account: a public, well-known test key (never a real one).
pub const KEY0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Anvil's second default account.
pub const KEY1: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// The test token's creation bytecode (crates/keygate-chain/tests/contracts/TestUSD.bin).
pub const TOKEN_BIN: &str = include_str!("../tests/contracts/TestUSD.bin");

/// The anvil binary: `KEYGATE_TEST_ANVIL`, or where scripts/anvil-env installs it.
pub fn anvil_path() -> PathBuf {
    if let Ok(p) = std::env::var("KEYGATE_TEST_ANVIL") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tools/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// A running anvil, killed on drop.
pub struct Anvil {
    child: Option<Child>,
    bin: PathBuf,
    pub port: u16,
    pub url: String,
    args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Anvil {
    /// Starts anvil on a free loopback port with `extra` arguments (such as `--no-mining`).
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_at(anvil_path(), extra).await
    }

    /// Starts the anvil binary at `bin`.
    pub async fn start_at(bin: PathBuf, extra: &[&str]) -> Self {
        let port = free_port();
        let mut a = Anvil {
            child: None,
            bin,
            port,
            url: format!("http://127.0.0.1:{port}"),
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        a.restart().await;
        a
    }

    /// Starts (again) on the same port.
    pub async fn restart(&mut self) {
        let bin = self.bin.clone();
        assert!(
            bin.exists(),
            "anvil is not installed at {}: run scripts/anvil-env (it installs @foundry-rs/anvil-linux-amd64 from npm into target/tools), or set KEYGATE_TEST_ANVIL to an anvil binary",
            bin.display()
        );
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
        let rpc = self.rpc();
        let start = Instant::now();
        while rpc.chain_id().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "anvil did not answer on {} within 20 s",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the node with SIGTERM (so one started with `--state FILE` writes its chain there
    /// and a restart continues it), killing it if it has not exited within 5 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn rpc(&self) -> Rpc {
        Rpc::new(&self.url, Duration::from_secs(5)).expect("an RPC client")
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Calls a method and returns its raw result, panicking on an error (tests only).
pub async fn call(rpc: &Rpc, method: &'static str, params: Value) -> Value {
    rpc.call::<Value>(method, params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// Deploys the test token from `from` (an unlocked anvil account) with `supply` units; its
/// address. Mines a block if the node does not mine by itself.
pub async fn deploy_token(rpc: &Rpc, from: Address, supply: U256) -> Address {
    let data = format!(
        "0x{}{}",
        TOKEN_BIN.trim(),
        hex::encode(supply.to_be_bytes::<32>())
    );
    let hash = call(
        rpc,
        "eth_sendTransaction",
        json!([{"from": from, "data": data, "gas": "0x200000"}]),
    )
    .await;
    let start = Instant::now();
    loop {
        let r = call(rpc, "eth_getTransactionReceipt", json!([hash])).await;
        if let Some(a) = r.get("contractAddress").and_then(Value::as_str) {
            return a.parse().expect("a contract address");
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the token was not deployed"
        );
        let _ = rpc.call::<Value>("evm_mine", json!([])).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a [`fake_node`] answers to one JSON-RPC request.
pub enum Answer {
    /// Pass the request on to the upstream node (as a proxy).
    Forward,
    /// `{"jsonrpc": "2.0", "id": <the request's>, "result": <this>}`.
    Result(Value),
    /// `{"jsonrpc": "2.0", "id": <the request's>, "error": {"code", "message"}}`.
    Error(i64, String),
    /// These bytes as the whole HTTP answer; the connection is closed after them.
    Raw(Vec<u8>),
    /// Send these requests to the upstream node first, one after the other, then pass the
    /// request on.
    After(Vec<Value>),
    /// Pass the request on, then answer this instead of the node's answer (a lost answer).
    ForwardThen(Box<Answer>),
    /// Pass the request on, and answer the node's answer changed by this (a node that lies).
    ForwardChanged(fn(&mut Value)),
}

/// An answer function for [`fake_node`] that answers the first `eth_sendRawTransaction` with
/// `then()` and passes every other request on.
pub fn first_send(
    then: impl Fn() -> Answer + Send + Sync + 'static,
) -> impl Fn(&str, &Value) -> Answer + Send + Sync + 'static {
    let done = std::sync::atomic::AtomicBool::new(false);
    move |method: &str, _: &Value| {
        if method == "eth_sendRawTransaction"
            && !done.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            then()
        } else {
            Answer::Forward
        }
    }
}

/// A JSON-RPC node on a free loopback port that answers each request with
/// `answer(method, params)`, passing it on to `upstream` on [`Answer::Forward`]. Its URL. It
/// runs until the test's runtime ends.
pub async fn fake_node<F>(upstream: Option<String>, answer: F) -> String
where
    F: Fn(&str, &Value) -> Answer + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let answer = std::sync::Arc::new(answer);
    let upstream = Upstream {
        http: reqwest::Client::new(),
        url: upstream,
    };
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(sock, upstream.clone(), answer.clone()));
        }
    });
    url
}

/// The node a [`fake_node`] passes requests on to, if any.
#[derive(Clone)]
struct Upstream {
    http: reqwest::Client,
    url: Option<String>,
}

impl Upstream {
    /// The upstream node's whole answer to `body`; None without one, or when it fails.
    async fn forward(&self, body: Vec<u8>) -> Option<Vec<u8>> {
        let up = self.url.as_ref()?;
        let resp = self
            .http
            .post(up)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .ok()?;
        resp.bytes().await.ok().map(|b| b.to_vec())
    }
}

/// Answers the requests of one connection, one after the other, until it closes (or an answer
/// closes it).
async fn serve<F>(mut sock: tokio::net::TcpStream, upstream: Upstream, answer: std::sync::Arc<F>)
where
    F: Fn(&str, &Value) -> Answer + Send + Sync + 'static,
{
    use tokio::io::AsyncWriteExt;
    while let Some(body) = read_request(&mut sock).await {
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let method = request["method"].as_str().unwrap_or("").to_string();
        let reply = match answer(&method, &request["params"]) {
            Answer::Raw(bytes) => {
                let _ = sock.write_all(&bytes).await;
                return;
            }
            a => match reply(a, &request["id"], body, &upstream).await {
                Some(reply) => reply,
                None => return,
            },
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        if sock.write_all(head.as_bytes()).await.is_err() || sock.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// One HTTP request's body (headers, then content-length bytes); None once the connection
/// closes or fails.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Some(buf[end + 4..end + 4 + len].to_vec());
        }
    }
}

/// The JSON-RPC answer (with the request's `id`) an [`Answer::Result`] or [`Answer::Error`]
/// stands for; None for the others.
fn envelope(a: &Answer, id: &Value) -> Option<Vec<u8>> {
    match a {
        Answer::Result(v) => Some(
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "result": v}))
                .unwrap_or_default(),
        ),
        Answer::Error(code, message) => Some(
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": code, "message": message}}))
            .unwrap_or_default(),
        ),
        _ => None,
    }
}

/// The body answering a request (`body`, with `id`) as `a` says, asking `upstream` when it
/// says so; None to close the connection instead (the upstream failed, or there is none).
async fn reply(a: Answer, id: &Value, body: Vec<u8>, upstream: &Upstream) -> Option<Vec<u8>> {
    match a {
        // Written as they are, with no HTTP head, by [`serve`].
        Answer::Raw(_) => None,
        a @ (Answer::Result(_) | Answer::Error(..)) => Some(envelope(&a, id).unwrap_or_default()),
        Answer::Forward => upstream.forward(body).await,
        Answer::After(first) => {
            for f in first {
                upstream
                    .forward(serde_json::to_vec(&f).unwrap_or_default())
                    .await?;
            }
            upstream.forward(body).await
        }
        Answer::ForwardThen(then) => {
            upstream.forward(body).await?;
            envelope(&then, id)
        }
        Answer::ForwardChanged(change) => {
            let b = upstream.forward(body).await?;
            let mut v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            change(&mut v);
            Some(serde_json::to_vec(&v).unwrap_or_default())
        }
    }
}
