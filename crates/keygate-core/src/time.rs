//! Time as keygate's core sees it: Unix milliseconds passed in by the caller, and durations
//! written the way operators write them (`90s`, `15m`, `24h`, `7d`).

/// Milliseconds since the Unix epoch, UTC. The core never reads a clock: callers pass `now`.
pub type Millis = i64;

pub const SECOND: Millis = 1_000;
pub const MINUTE: Millis = 60 * SECOND;
pub const HOUR: Millis = 60 * MINUTE;
pub const DAY: Millis = 24 * HOUR;

/// Parses a duration such as `500ms`, `90s`, `15m`, `24h` or `7d` into milliseconds.
/// Several parts may be joined (`1h30m`). Zero and negative durations are refused.
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    let s = text.trim();
    let bad = || {
        format!(
            "duration {text:?} is not valid; write a number and a unit, such as 90s, 15m, 24h or 7d"
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: Millis = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: Millis = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => SECOND,
            "m" => MINUTE,
            "h" => HOUR,
            "d" => DAY,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
    }
    if total <= 0 {
        return Err(format!("duration {text:?} must be longer than zero"));
    }
    Ok(total)
}

/// Writes a duration the way [`parse_duration`] reads it, in its largest exact unit.
pub fn format_duration(ms: Millis) -> String {
    for (unit, size) in [("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", SECOND)] {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The hour of the day (0–23, UTC) at `t`.
pub fn hour_utc(t: Millis) -> i64 {
    t.div_euclid(HOUR).rem_euclid(24)
}

/// A time as RFC 3339 UTC to the second (`2023-11-18T16:47:00Z`), for messages.
pub fn format_millis(t: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{t} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_durations() {
        assert_eq!(parse_duration("15m"), Ok(15 * MINUTE));
        assert_eq!(parse_duration("1h30m"), Ok(90 * MINUTE));
        assert_eq!(parse_duration(" 7d "), Ok(7 * DAY));
        assert_eq!(parse_duration("250ms"), Ok(250));
        for bad in [
            "",
            "15",
            "m",
            "15 m",
            "-5m",
            "0s",
            "1y",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(24 * HOUR), "1d");
        assert_eq!(format_duration(90 * MINUTE), "90m");
        assert_eq!(format_duration(1500), "1500ms");
        assert_eq!(hour_utc(0), 0);
        assert_eq!(hour_utc(HOUR * 25 + 5), 1);
    }
}
