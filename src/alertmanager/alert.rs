//! The alert as the built-in notifier keeps it, like Alertmanager 0.25's `types.Alert`.
//!
//! Owns: the alert record (labels, annotations, `startsAt`, `endsAt`, `generatorURL`,
//! `updatedAt`, and whether `endsAt` is only the `resolve_timeout` guess), its
//! fingerprint (the FNV-1a hash of the sorted label pairs that Alertmanager prints as
//! 16 hex digits), the merge of a re-sent alert into the stored one
//! (`types.Alert.Merge`), reading the v2 `PostableAlert` JSON with Alertmanager's
//! defaults and checks, and Go's RFC 3339 time text.
//!
//! Times are nanoseconds since the Unix epoch; Go's zero time (`0001-01-01T00:00:00Z`)
//! is [`ZERO_TIME`] on the wire and `None` here.

use serde_json::Value;
use std::collections::BTreeMap;

/// Nanoseconds since the Unix epoch.
pub type Nanos = i64;

/// Go's zero `time.Time` as Alertmanager prints it.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Identifying labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it started.
    pub starts_at: Nanos,
    /// When it ends (resolved once this is not after now).
    pub ends_at: Nanos,
    /// Link to the rule that generated it.
    pub generator_url: String,
    /// When the notifier last received it.
    pub updated_at: Nanos,
    /// `endsAt` was not sent: it is `now + resolve_timeout`, renewed by each re-send.
    pub timeout: bool,
}

impl Alert {
    /// The fingerprint of the labels.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    /// Whether it is resolved at `now` (`endsAt` not after now).
    pub fn resolved_at(&self, now: Nanos) -> bool {
        self.ends_at <= now
    }

    /// `firing` or `resolved` at `now`.
    pub fn status(&self, now: Nanos) -> &'static str {
        if self.resolved_at(now) {
            "resolved"
        } else {
            "firing"
        }
    }

    /// Alertmanager's `Merge`: `newer` is the alert received later with the same
    /// labels; the earliest start wins, and an explicit `endsAt` beats a timeout guess.
    pub fn merge(&self, newer: &Alert, now: Nanos) -> Alert {
        if newer.updated_at < self.updated_at {
            return newer.merge(self, now);
        }
        let mut merged = newer.clone();
        if self.starts_at < newer.starts_at {
            merged.starts_at = self.starts_at;
        }
        if newer.resolved_at(now) {
            if self.resolved_at(now) && self.ends_at > newer.ends_at {
                merged.ends_at = self.ends_at;
            }
        } else if self.ends_at > newer.ends_at && !self.timeout {
            merged.ends_at = self.ends_at;
        }
        merged
    }

    /// Whether the two intervals overlap, so `newer` updates this alert instead of
    /// starting a new one (Alertmanager's store only merges overlapping alerts).
    pub fn overlaps(&self, newer: &Alert) -> bool {
        newer.ends_at >= self.starts_at && self.ends_at >= newer.starts_at
    }
}

/// Alertmanager's `LabelSet.Fingerprint`: FNV-1a 64 over `name 0xff value 0xff` for
/// each label in name order.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    hash
}

/// A fingerprint as Alertmanager prints it.
pub fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

/// Go's `time.RFC3339Nano` in UTC: fractional seconds without trailing zeros.
pub fn format_time(t: Nanos) -> String {
    go_time(Some(t), "%Y-%m-%dT%H:%M:%S", "Z")
}

/// The API v2's `strfmt.DateTime`: always three fractional digits
/// (`2024-01-01T00:20:00.000Z`).
pub fn format_time_api(t: Nanos) -> String {
    crate::notifier::rfc3339_ms(t.div_euclid(1_000_000))
}

/// Go's `time.Time.String()` in UTC (`2024-01-01 00:20:00 +0000 UTC`), what a
/// template prints for `.StartsAt`; `None` is Go's zero time.
pub fn format_time_go_string(t: Option<Nanos>) -> String {
    go_time(t, "%Y-%m-%d %H:%M:%S", " +0000 UTC")
}

/// `date` (a chrono format), then `.fraction` without trailing zeros if any, then
/// `zone`; `None` or a time chrono cannot hold is Go's zero time.
fn go_time(t: Option<Nanos>, date: &str, zone: &str) -> String {
    let parts = t.and_then(|t| {
        let nanos = t.rem_euclid(1_000_000_000) as u32;
        chrono::DateTime::from_timestamp(t.div_euclid(1_000_000_000), nanos).map(|dt| (dt, nanos))
    });
    let Some((dt, nanos)) = parts else {
        let zero = chrono::NaiveDate::from_ymd_opt(1, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.format(date).to_string())
            .unwrap_or_default();
        return format!("{zero}{zone}");
    };
    let mut out = dt.format(date).to_string();
    if nanos > 0 {
        out.push('.');
        out.push_str(format!("{nanos:09}").trim_end_matches('0'));
    }
    out.push_str(zone);
    out
}

/// Parses RFC 3339; Go's zero time (and anything before 1678, outside `Nanos`) is `None`.
pub fn parse_time(text: &str) -> Result<Option<Nanos>, TimeError> {
    let t = chrono::DateTime::parse_from_rfc3339(text).map_err(|reason| TimeError {
        text: text.to_string(),
        reason,
    })?;
    Ok(t.timestamp_nanos_opt()
        .filter(|_| t.timestamp() > -62_135_596_800))
}

/// A time that is not RFC 3339.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid time {text:?}: {reason}")]
pub struct TimeError {
    /// The text.
    pub text: String,
    /// Why.
    pub reason: chrono::ParseError,
}

/// Why a posted alert is refused (`POST /api/v2/alerts` answers 400 with it).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PostableError {
    /// The alert is not a JSON object.
    #[error("alert is not a JSON object")]
    NotObject,
    /// `labels` or `annotations` is not an object.
    #[error("{0} is not an object")]
    NotAnObject(&'static str),
    /// A value of `labels` or `annotations` is not a string.
    #[error("{field}.{name} is not a string")]
    ValueNotString {
        /// `labels` or `annotations`.
        field: &'static str,
        /// The name.
        name: String,
    },
    /// A name of `labels` or `annotations` is not a valid label name.
    #[error("invalid name {name:?} in {field}")]
    InvalidName {
        /// `labels` or `annotations`.
        field: &'static str,
        /// The name.
        name: String,
    },
    /// No label with a value.
    #[error("at least one label pair required")]
    NoLabels,
    /// `startsAt`, `endsAt` or `generatorURL` is not a string.
    #[error("{0} is not a string")]
    NotAString(&'static str),
    /// `startsAt` or `endsAt` is not a time.
    #[error("{field}: {source}")]
    Time {
        /// `startsAt` or `endsAt`.
        field: &'static str,
        /// Why.
        source: TimeError,
    },
    /// `endsAt` is before `startsAt`.
    #[error("start time must be before end time")]
    EndBeforeStart,
}

/// Now, in nanoseconds.
pub fn now_nanos() -> Nanos {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// Alertmanager's `model.LabelName.IsValid`.
fn valid_label_name(name: &str) -> bool {
    crate::config::is_valid_label_name(name)
}

/// Reads one v2 `PostableAlert` received at `now`, with Alertmanager's defaults: no
/// `startsAt` → now (or `endsAt` if only that is set); no `endsAt` → now +
/// `resolve_timeout`, marked as a timeout. Errors name what is wrong.
pub fn from_postable(
    v: &Value,
    now: Nanos,
    resolve_timeout: Nanos,
) -> Result<Alert, PostableError> {
    let object = v.as_object().ok_or(PostableError::NotObject)?;
    let string_map = |field: &'static str| -> Result<BTreeMap<String, String>, PostableError> {
        let mut map = BTreeMap::new();
        match object.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) => {
                for (k, v) in o {
                    let v = v.as_str().ok_or_else(|| PostableError::ValueNotString {
                        field,
                        name: k.clone(),
                    })?;
                    if !valid_label_name(k) {
                        return Err(PostableError::InvalidName {
                            field,
                            name: k.clone(),
                        });
                    }
                    map.insert(k.clone(), v.to_string());
                }
            }
            Some(_) => return Err(PostableError::NotAnObject(field)),
        }
        Ok(map)
    };
    let labels: BTreeMap<String, String> = string_map("labels")?
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if labels.is_empty() {
        return Err(PostableError::NoLabels);
    }
    let annotations = string_map("annotations")?;
    let time = |field: &'static str| -> Result<Option<Nanos>, PostableError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => {
                parse_time(s).map_err(|source| PostableError::Time { field, source })
            }
            Some(_) => Err(PostableError::NotAString(field)),
        }
    };
    let (starts, ends) = (time("startsAt")?, time("endsAt")?);
    if let (Some(s), Some(e)) = (starts, ends) {
        if e < s {
            return Err(PostableError::EndBeforeStart);
        }
    }
    let generator_url = match object.get("generatorURL") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(PostableError::NotAString("generatorURL")),
    };
    Ok(Alert {
        labels,
        annotations,
        starts_at: starts.or(ends).unwrap_or(now),
        ends_at: ends.unwrap_or(now + resolve_timeout),
        generator_url,
        updated_at: now,
        timeout: ends.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fingerprint_matches_alertmanager() {
        // From the oracle sample alertmanager-0.25_webhook_payloads.jsonl.
        let labels = BTreeMap::from([
            ("alertname".to_string(), "HighCPU".to_string()),
            ("instance".to_string(), "b".to_string()),
            ("severity".to_string(), "page".to_string()),
        ]);
        assert_eq!(fingerprint_hex(fingerprint(&labels)), "c5f32be7e65761bb");
    }

    #[test]
    fn times_print_like_go() {
        assert_eq!(
            format_time(1_704_068_400_000_000_000),
            "2024-01-01T00:20:00Z"
        );
        assert_eq!(
            format_time(1_704_068_400_711_794_000),
            "2024-01-01T00:20:00.711794Z"
        );
        assert_eq!(parse_time(ZERO_TIME).unwrap(), None);
        assert_eq!(
            parse_time("2024-01-01T00:20:00.5+01:00").unwrap(),
            Some(1_704_064_800_500_000_000)
        );
    }

    #[test]
    fn postable_defaults_and_checks() {
        let now = 1_000_000_000_000;
        let a =
            from_postable(&json!({"labels": {"alertname": "A"}}), now, 300_000_000_000).unwrap();
        assert_eq!(
            (a.starts_at, a.ends_at, a.timeout),
            (now, now + 300_000_000_000, true)
        );
        assert!(from_postable(&json!({"labels": {}}), now, 1).is_err());
        assert!(from_postable(&json!({"labels": {"a-b": "x"}}), now, 1).is_err());
        assert!(from_postable(
            &json!({"labels": {"a": "x"}, "startsAt": "2024-01-02T00:00:00Z", "endsAt": "2024-01-01T00:00:00Z"}),
            now,
            1
        )
        .is_err());
    }

    #[test]
    fn merge_keeps_earliest_start_and_explicit_end() {
        let base = Alert {
            labels: BTreeMap::from([("a".into(), "1".into())]),
            annotations: BTreeMap::new(),
            starts_at: 100,
            ends_at: 1_000,
            generator_url: String::new(),
            updated_at: 10,
            timeout: false,
        };
        let newer = Alert {
            starts_at: 200,
            ends_at: 500,
            updated_at: 20,
            timeout: true,
            ..base.clone()
        };
        let m = base.merge(&newer, 50);
        assert_eq!((m.starts_at, m.ends_at, m.updated_at), (100, 1_000, 20));
    }
}
