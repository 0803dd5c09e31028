//! Prometheus metrics: one process-wide recorder, rendered at `/metrics`.
//!
//! The recorder keeps each histogram's samples until they are folded into its summary. A
//! scrape does that, and so does an upkeep thread started with the recorder: without it a
//! keygate nobody scrapes kept every sample of every request (the soak measured about 60 bytes
//! a request, 1.8 MiB a minute at 500 requests/s).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process) and returns its handle.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            start_upkeep(handle.clone());
            Some(handle)
        })
        .as_ref()
}

/// How often the histograms' pending samples are folded in when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds the histograms' pending samples into their summaries every [`UPKEEP_EVERY`], on a
/// thread of its own for the life of the process (the recorder is process-wide too).
fn start_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "cannot start the metrics upkeep thread: histogram samples will be kept until /metrics is scraped");
    }
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
