//! `keygate containment status`: every containment at a venue with its steps, from the store:
//! what the venue confirmed, what is pending or being tried again (and why), what was refused.

use anyhow::Result;
use keygate_config::StateHandle;
use keygate_store::containment::{ContainmentRow, StepRow, StepState};

use crate::cli::ContainmentStatusArgs;
use crate::commands::time_text;

pub async fn status(h: &StateHandle, a: &ContainmentStatusArgs) -> Result<()> {
    let rows = h.store.containments(a.all).await?;
    if rows.is_empty() {
        println!(
            "{}",
            if a.all {
                "no containment has run"
            } else {
                "no containment is under way (--all shows finished ones)"
            }
        );
        return Ok(());
    }
    for c in &rows {
        print_containment(c);
    }
    Ok(())
}

fn print_containment(c: &ContainmentRow) {
    let finished = c.steps.iter().filter(|s| s.state.is_final()).count();
    let state = match c.done_ms {
        Some(t) => format!("done {}", time_text(t)),
        None => format!("PENDING: {finished} of {} steps final", c.steps.len()),
    };
    println!(
        "containment {} of venue {} (freeze:{}), started {}: {state}",
        c.id,
        c.venue,
        c.freeze_id,
        time_text(c.started_ms)
    );
    for s in &c.steps {
        println!("  {}", step_line(s));
    }
}

/// One step: its number, state, action and what it acted on, attempts, and the last error of a
/// step not done.
fn step_line(s: &StepRow) -> String {
    let what = match s.action.as_str() {
        "sweep" => format!(
            "sweep {} {} ({}){}",
            s.params["amount"].as_str().unwrap_or("?"),
            s.params["asset"].as_str().unwrap_or("?"),
            s.params["wallet"].as_str().unwrap_or("?"),
            s.client_id
                .as_deref()
                .map(|c| format!(" client id {c}"))
                .unwrap_or_default()
        ),
        "lock-key" => match s.params["lock"]["how"].as_str() {
            Some("ip-restrict") => format!(
                "lock-key: restrict to {}",
                s.params["lock"]["addresses"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            ),
            Some(how) => format!("lock-key: {how}"),
            None => "lock-key".to_string(),
        },
        "sweep-round" => format!("sweep round {}", s.params["round"]),
        other => other.to_string(),
    };
    let mark = match s.state {
        StepState::Confirmed => "done     ",
        StepState::Refused => "REFUSED  ",
        StepState::Planned => "planned  ",
        _ => "PENDING  ",
    };
    let mut line = format!(
        "{:>3}. {mark}{what}  [{}, {} attempt(s)",
        s.seq,
        s.state.as_str(),
        s.attempts
    );
    if let Some(r) = &s.venue_ref {
        line.push_str(&format!(", venue id {r}"));
    }
    line.push(']');
    if let Some(e) = s
        .last_error
        .as_deref()
        .filter(|_| s.state != StepState::Confirmed)
    {
        line.push_str(&format!("\n       last: {e}"));
        if !s.state.is_final() {
            line.push_str(&format!(" (next try after {})", time_text(s.next_ms)));
        }
    }
    line
}
