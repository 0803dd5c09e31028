//! Alert sinks: every alert goes to the log and to each configured webhook, in order, once.
//!
//! Alerts are read from the audit log itself (a decision with detector signals, a freeze set or
//! lifted, an unapproved outflow, a chain watcher's alarm, containment at a venue), so they are persisted before they
//! exist as alerts: a sink's cursor (the last entry delivered to it) is kept in the store and
//! moves only after the sink answered 2xx. A sink that is down is retried with exponential backoff, and gets every alert,
//! once each, in order, when it comes back. A JSON webhook is signed: `X-Keygate-Signature` is
//! `sha256=` and the hex HMAC-SHA256, under the sink's secret, of the `X-Keygate-Timestamp`
//! value, a `.`, and the body, so a receiver can check it and reject replays. A Slack-compatible
//! sink gets `{"text": …}`. Alerts carry entry ids, decision ids and reasons, never secrets.
//! Instances sharing a store deliver through one of them at a time: each sink has a lease in the
//! store, and only its holder sends. An instance killed between a 2xx answer and writing its
//! cursor leaves that alert to the next holder: delivery is at least once, deduplicated by id.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use keygate_core::detect::Response;
use keygate_store::Store;
use keygate_store::audit::{
    AuditEntry, AuditRow, ContainmentEvent, DecisionEntry, FreezeEvent, ReconcileEvent,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// What a sink expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// keygate's JSON alert, HMAC-signed.
    Json,
    /// `{"text": "…"}`, for Slack-compatible incoming webhooks.
    Slack,
}

/// One webhook.
pub struct Sink {
    pub name: String,
    pub url: String,
    pub format: Format,
    /// The HMAC secret of a JSON sink.
    pub secret: Option<Zeroizing<String>>,
    pub max_backoff: Duration,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// An alert built from an audit entry, if the entry is one.
pub fn alert_of(row: &AuditRow) -> Option<Value> {
    let (kind, severity, summary) = match row.entry().ok()? {
        AuditEntry::Decision(d) => detector_alert(&d)?,
        AuditEntry::Freeze(FreezeEvent::Set {
            freeze_id,
            scope,
            reason,
        }) => (
            "freeze",
            "critical",
            format!("{scope} frozen (freeze {freeze_id}): {reason}"),
        ),
        AuditEntry::Freeze(FreezeEvent::Lifted {
            freeze_id, scope, ..
        }) => (
            "unfreeze",
            "info",
            format!("freeze {freeze_id} ({scope}) lifted by a quorum"),
        ),
        // A watcher that lost track of a chain (Store::record_alarm).
        AuditEntry::Alarm(a) => ("alarm", "critical", format!("{}: {}", a.event, a.reason)),
        AuditEntry::Reconcile(ReconcileEvent::Unapproved { reason, .. }) => {
            ("unapproved_outflow", "critical", reason)
        }
        AuditEntry::Reconcile(ReconcileEvent::OrderUnapproved { reason, .. }) => {
            ("unapproved_order", "critical", reason)
        }
        AuditEntry::Containment(c) => containment_alert(&c)?,
        _ => return None,
    };
    Some(json!({
        "id": row.seq,
        "kind": kind,
        "severity": severity,
        "at": keygate_core::time::format_millis(row.at_ms),
        "at_ms": row.at_ms,
        "actor": row.actor,
        "summary": summary,
        "decision_id": (row.kind == "decision").then_some(row.seq),
        "data": row.data(),
    }))
}

/// The alerts of containment at a venue: its start and end, the first failed attempt at a step
/// and a step refused for good (not every retry or sweep).
fn containment_alert(c: &ContainmentEvent<'_>) -> Option<(&'static str, &'static str, String)> {
    Some(match c {
        ContainmentEvent::Started {
            containment_id,
            venue,
            freeze_id,
            steps,
        } => (
            "containment",
            "critical",
            format!(
                "containing {venue} at the venue for freeze {freeze_id} (containment {containment_id}, {} steps planned)",
                steps.len()
            ),
        ),
        ContainmentEvent::Done {
            containment_id,
            venue,
        } => (
            "containment",
            "info",
            format!("containment {containment_id} of {venue} is done"),
        ),
        ContainmentEvent::Step(s) if s.state == "refused" => (
            "containment",
            "high",
            format!(
                "containment {} of {}: step {} ({}) refused: {}",
                s.containment_id, s.venue, s.seq, s.action, s.detail
            ),
        ),
        ContainmentEvent::Step(s)
            if s.attempt == 1 && s.outcome != "confirmed" && s.outcome != "pending" =>
        {
            (
                "containment",
                "high",
                format!(
                    "containment {} of {}: step {} ({}) not done, retrying: {}",
                    s.containment_id, s.venue, s.seq, s.action, s.detail
                ),
            )
        }
        ContainmentEvent::Step(_) => return None,
    })
}

/// The alert of a decision with detector signals: its kind, severity and summary.
fn detector_alert(d: &DecisionEntry<'_>) -> Option<(&'static str, &'static str, String)> {
    // Every freeze response ranks the same, the last of them named.
    let strongest = d
        .detections
        .iter()
        .map(|s| s.response)
        .max_by_key(|r| match r {
            Response::Alert => 0,
            Response::Hold => 1,
            Response::Deny => 2,
            _ => 3,
        })?;
    let severity = match strongest {
        Response::Alert | Response::Hold => "warning",
        Response::Deny => "high",
        _ => "critical",
    };
    let reasons: Vec<&str> = d.detections.iter().map(|s| s.reason.as_str()).collect();
    Some((
        "detector",
        severity,
        format!(
            "{} {} by {}: {} ({})",
            d.intent.action,
            d.outcome.as_str(),
            d.intent.client,
            reasons.join("; "),
            strongest.as_str()
        ),
    ))
}

/// The signature header's value for a body sent at `timestamp` (Unix milliseconds).
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn cursor_key(sink: &str) -> String {
    format!("alerts.{sink}.delivered_seq")
}

/// The body a sink of `format` gets for `alert`.
pub fn body(format: Format, alert: &Value) -> Vec<u8> {
    let v = match format {
        Format::Json => alert.clone(),
        Format::Slack => json!({
            "text": format!(
                "[keygate {}] {} (audit entry {})",
                alert["severity"].as_str().unwrap_or("?"),
                alert["summary"].as_str().unwrap_or("?"),
                alert["id"]
            )
        }),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Sends one alert to one sink; Ok on a 2xx answer.
async fn deliver(http: &reqwest::Client, sink: &Sink, alert: &Value) -> Result<Delivery, String> {
    let body = body(sink.format, alert);
    let mut req = http
        .post(&sink.url)
        .timeout(Duration::from_secs(10))
        .header("Content-Type", "application/json")
        .header("X-Keygate-Alert-Id", alert["id"].to_string());
    if let (Format::Json, Some(secret)) = (sink.format, &sink.secret) {
        let ts = crate::now_ms().to_string();
        req = req
            .header("X-Keygate-Signature", signature(secret, &ts, &body))
            .header("X-Keygate-Timestamp", ts);
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| crate::send_error(&e).to_string())?;
    let status = resp.status();
    if status.is_success() {
        Ok(Delivery::Done)
    } else if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
        // The sink refuses this alert for good (a bad payload, a revoked hook): retrying would
        // block every alert behind it.
        Ok(Delivery::Refused(format!("HTTP {status}")))
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// What became of one delivery that did not fail in a way worth retrying.
enum Delivery {
    Done,
    /// The sink answered 4xx (other than 408 and 429): it will not take this alert.
    Refused(String),
}

async fn save(store: &Store, key: &str, cursor: i64, sink: &str) {
    if let Err(e) = store.set_meta(key, &cursor.to_string()).await {
        tracing::error!(sink, error = %e, "alerts cannot save their cursor");
    }
}

/// How long a sink's delivery lease lasts; it is renewed at half that.
const LEASE: Duration = Duration::from_secs(10);

/// Holds the sink's lease: only the instance holding it delivers, so instances sharing a store
/// deliver each alert once between them.
struct Lease {
    name: String,
    owner: String,
    renew_at: Option<std::time::Instant>,
}

impl Lease {
    /// Whether this instance holds the lease (taking or renewing it when due).
    async fn held(&mut self, store: &Store) -> bool {
        if self.renew_at.is_some_and(|t| std::time::Instant::now() < t) {
            return true;
        }
        match store
            .lease(&self.name, &self.owner, LEASE.as_millis() as i64)
            .await
        {
            Ok(true) => {
                self.renew_at = Some(std::time::Instant::now() + LEASE / 2);
                true
            }
            Ok(false) => {
                self.renew_at = None;
                false
            }
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "alerts cannot take their lease");
                self.renew_at = None;
                false
            }
        }
    }
}

/// Follows the audit log for one sink forever (while this instance holds its lease).
async fn run(store: Store, http: reqwest::Client, sink: Sink) {
    let key = cursor_key(&sink.name);
    let mut id = [0u8; 8];
    let _ = getrandom::fill(&mut id);
    let mut lease = Lease {
        name: format!("alerts.{}", sink.name),
        owner: hex::encode(id),
        renew_at: None,
    };
    let mut leading = false;
    // A sink seen for the first time starts at the current end of the log.
    let mut cursor: i64 = loop {
        match store.get_meta(&key).await {
            Ok(Some(v)) => break v.parse().unwrap_or(0),
            Ok(None) => match store.audit_head().await {
                Ok(h) => {
                    let _ = store.set_meta(&key, &h.seq.to_string()).await;
                    break h.seq;
                }
                Err(e) => {
                    tracing::error!(sink = %sink.name, error = %e, "alerts cannot read the audit log")
                }
            },
            Err(e) => {
                tracing::error!(sink = %sink.name, error = %e, "alerts cannot read their cursor")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    loop {
        if !lease.held(&store).await {
            leading = false;
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if !leading {
            // Taking over: another instance may have delivered since this one last did.
            if let Ok(Some(v)) = store.get_meta(&key).await
                && let Ok(c) = v.parse()
            {
                cursor = c;
            }
            leading = true;
        }
        let rows = match store.audit_after(cursor, 100).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(sink = %sink.name, error = %e, "alerts cannot read the audit log");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if rows.is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        'page: for row in rows {
            let is_alert = if let Some(alert) = alert_of(&row) {
                let mut backoff = Duration::from_millis(200);
                let mut attempts = 0u32;
                loop {
                    // Only while this instance holds the sink (renewed as it goes): an alert is
                    // never sent by two instances, and the cursor never passes an unsent one.
                    if !lease.held(&store).await {
                        break 'page;
                    }
                    attempts += 1;
                    match deliver(&http, &sink, &alert).await {
                        Ok(Delivery::Done) => {
                            metrics::counter!("keygate_alerts_delivered_total", "sink" => sink.name.clone())
                                .increment(1);
                            break;
                        }
                        Ok(Delivery::Refused(why)) => {
                            metrics::counter!("keygate_alerts_refused_total", "sink" => sink.name.clone())
                                .increment(1);
                            tracing::error!(sink = %sink.name, alert = row.seq, %why,
                                "the sink refused an alert for good; it is skipped (it stays in the audit log)");
                            break;
                        }
                        Err(e) => {
                            metrics::counter!("keygate_alert_failures_total", "sink" => sink.name.clone())
                                .increment(1);
                            tracing::warn!(sink = %sink.name, alert = row.seq, attempts, error = %e,
                                "an alert could not be delivered; retrying (it stays queued until delivered)");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(sink.max_backoff);
                        }
                    }
                }
                true
            } else {
                false
            };
            cursor = row.seq;
            if is_alert {
                save(&store, &key, cursor, &sink.name).await;
            }
        }
        save(&store, &key, cursor, &sink.name).await;
    }
}

/// The log sink: every alert as a log line (warning, or error when critical), following the
/// log from its current end.
async fn log_sink(store: Store) {
    let mut cursor = loop {
        match store.audit_head().await {
            Ok(h) => break h.seq,
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    loop {
        match store.audit_after(cursor, 100).await {
            Ok(rows) if !rows.is_empty() => {
                for row in rows {
                    if let Some(a) = alert_of(&row) {
                        let summary = a["summary"].as_str().unwrap_or("?");
                        if a["severity"] == "critical" {
                            tracing::error!(alert = row.seq, kind = %a["kind"], "ALERT {summary}");
                        } else {
                            tracing::warn!(alert = row.seq, kind = %a["kind"], "alert {summary}");
                        }
                    }
                    cursor = row.seq;
                }
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Starts the log sink and one delivery task per webhook.
pub fn spawn(
    store: Store,
    http: reqwest::Client,
    sinks: Vec<Sink>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut out = vec![tokio::spawn(log_sink(store.clone()))];
    for s in sinks {
        out.push(tokio::spawn(run(store.clone(), http.clone(), s)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_alerts_its_start_end_first_failure_and_refusals_only() {
        use keygate_store::audit::StepAttempt;
        use std::borrow::Cow;
        let step = |attempt: i64, outcome: &'static str, state: &'static str| {
            ContainmentEvent::Step(StepAttempt {
                containment_id: 1,
                venue: Cow::Borrowed("bn"),
                seq: 2,
                action: Cow::Borrowed("lock-key"),
                attempt,
                outcome: Cow::Borrowed(outcome),
                state: Cow::Borrowed(state),
                detail: Cow::Borrowed("-2015 no"),
                venue_ref: None,
                planned: vec![],
            })
        };
        let started = ContainmentEvent::Started {
            containment_id: 1,
            venue: Cow::Borrowed("bn"),
            freeze_id: 3,
            steps: vec![],
        };
        let (_, severity, text) = containment_alert(&started).unwrap();
        assert_eq!(severity, "critical");
        assert!(text.contains("freeze 3"), "{text}");
        assert!(
            containment_alert(&step(1, "refused", "retry"))
                .unwrap()
                .2
                .contains("retrying")
        );
        assert!(
            containment_alert(&step(2, "refused", "retry")).is_none(),
            "not every retry"
        );
        assert!(containment_alert(&step(1, "confirmed", "confirmed")).is_none());
        assert_eq!(
            containment_alert(&step(3, "refused", "refused")).unwrap().1,
            "high"
        );
    }

    #[test]
    fn a_slack_sink_gets_one_line_of_text() {
        let alert = json!({"id": 7, "severity": "critical", "summary": "all frozen (freeze 1): x"});
        let v: Value = serde_json::from_slice(&body(Format::Slack, &alert)).unwrap();
        assert_eq!(
            v,
            json!({"text": "[keygate critical] all frozen (freeze 1): x (audit entry 7)"})
        );
        let j: Value = serde_json::from_slice(&body(Format::Json, &alert)).unwrap();
        assert_eq!(j, alert);
    }

    #[test]
    fn a_watcher_alarm_is_a_critical_alert() {
        let data = json!({"event": "chain.watcher_stalled", "severity": "critical",
            "reason": "the chain watcher of eth has failed for 31 s", "details": {}});
        let row = AuditRow {
            seq: 9,
            at_ms: 1_700_000_000_000,
            kind: "alarm".into(),
            actor: "watcher:eth".into(),
            entry: json!({"seq": 9, "data": data}).to_string(),
            prev_hash: String::new(),
            hash: String::new(),
            debit: None,
        };
        let alert = alert_of(&row).expect("an alert");
        assert_eq!(alert["kind"], "alarm");
        assert_eq!(alert["severity"], "critical");
        assert_eq!(
            alert["summary"],
            "chain.watcher_stalled: the chain watcher of eth has failed for 31 s"
        );
    }

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let a = signature("s", "1700000000000", b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature("s", "1700000000001", b"{}"));
        assert_ne!(a, signature("s", "1700000000000", b"{ }"));
        assert_ne!(a, signature("t", "1700000000000", b"{}"));
    }
}
