//! Prometheus metrics: one process-wide recorder, rendered at `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process) and returns its handle.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// `GET /metrics`.
pub async fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

/// Counts a gateway request by venue, endpoint and what became of it.
pub fn request(venue: &str, endpoint: &str, outcome: &'static str) {
    metrics::counter!("keygate_gateway_requests_total",
        "venue" => venue.to_string(), "endpoint" => endpoint.to_string(), "outcome" => outcome)
    .increment(1);
}

/// Records how long a step took, in seconds.
pub fn timing(step: &'static str, seconds: f64) {
    metrics::histogram!("keygate_gateway_seconds", "step" => step).record(seconds);
}
