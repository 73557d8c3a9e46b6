//! Silences (Alertmanager 0.25's `silence` package, in memory): matchers plus a time
//! window; an alert matching every matcher of an active silence is not notified.
//!
//! Owns: the silence records, their state at a time (`pending` before `startsAt`,
//! `active`, `expired` from `endsAt`), creating/updating from the v2 `PostableSilence`
//! JSON (an update changes a silence in place only as Alertmanager's `canUpdate`
//! allows; otherwise it expires it and creates a new one), expiring, listing with
//! Alertmanager's filter and order, the v2 `GettableSilence` JSON, and the form saved
//! in the notifier's state file (see `notify`).

use crate::alertmanager::alert::{format_time_api, parse_time, Nanos, TimeError};
use crate::alertmanager::matcher::{MatchType, Matcher, MatcherError, Matchers};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One silence.
#[derive(Clone, Debug)]
pub struct Silence {
    /// UUID-like id.
    pub id: String,
    /// All must match.
    pub matchers: Matchers,
    /// Start.
    pub starts_at: Nanos,
    /// End.
    pub ends_at: Nanos,
    /// Last change.
    pub updated_at: Nanos,
    /// `createdBy`.
    pub created_by: String,
    /// `comment`.
    pub comment: String,
}

impl Silence {
    /// `pending`, `active` or `expired` at `now`.
    pub fn state(&self, now: Nanos) -> &'static str {
        if now < self.starts_at {
            "pending"
        } else if now < self.ends_at {
            "active"
        } else {
            "expired"
        }
    }

    /// The v2 `GettableSilence` JSON.
    pub fn to_json(&self, now: Nanos) -> Value {
        let matchers: Vec<Value> = self
            .matchers
            .0
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "value": m.value,
                    "isRegex": matches!(m.kind, MatchType::Regexp | MatchType::NotRegexp),
                    "isEqual": matches!(m.kind, MatchType::Equal | MatchType::Regexp),
                })
            })
            .collect();
        json!({
            "id": self.id,
            "status": {"state": self.state(now)},
            "updatedAt": format_time_api(self.updated_at),
            "comment": self.comment,
            "createdBy": self.created_by,
            "endsAt": format_time_api(self.ends_at),
            "matchers": matchers,
            "startsAt": format_time_api(self.starts_at),
        })
    }
}

/// All silences.
#[derive(Clone, Debug, Default)]
pub struct Silences {
    by_id: BTreeMap<String, Silence>,
    next: u64,
}

impl Silences {
    /// The ids of active silences matching `labels`.
    pub fn silenced_by(&self, labels: &BTreeMap<String, String>, now: Nanos) -> Vec<String> {
        self.by_id
            .values()
            .filter(|s| s.state(now) == "active" && s.matchers.matches(labels))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Every silence.
    pub fn list(&self) -> impl Iterator<Item = &Silence> {
        self.by_id.values()
    }

    /// The silences `filter` selects, in Alertmanager's order for `GET
    /// /api/v2/silences`: active ones first (soonest end first), then pending
    /// (soonest start first), then expired (latest end first).
    ///
    /// A silence is selected when every filter matcher is one of its own matchers
    /// (same name, operator and value text; Alertmanager's
    /// `CheckSilenceMatchesFilterLabels`).
    pub fn query(&self, filter: &[Matcher], now: Nanos) -> Vec<&Silence> {
        let mut out: Vec<&Silence> = self
            .by_id
            .values()
            .filter(|s| filter.iter().all(|f| s.matchers.0.contains(f)))
            .collect();
        let rank = |s: &Silence| match s.state(now) {
            "active" => 0,
            "pending" => 1,
            _ => 2,
        };
        out.sort_by(|a, b| {
            rank(a).cmp(&rank(b)).then_with(|| match a.state(now) {
                "active" => a.ends_at.cmp(&b.ends_at),
                "pending" => a.starts_at.cmp(&b.starts_at),
                _ => b.ends_at.cmp(&a.ends_at),
            })
        });
        out
    }

    /// One silence.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.by_id.get(id)
    }

    /// Creates or updates a silence from a v2 `PostableSilence`; returns its id.
    pub fn post(&mut self, v: &Value, now: Nanos) -> Result<String, SilenceError> {
        let invalid = SilenceError::Invalid;
        let o = v
            .as_object()
            .ok_or_else(|| invalid("silence is not a JSON object"))?;
        let string = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let matchers = matchers_from_json(v)?;
        if matchers.is_empty() {
            return Err(invalid("silence has no matchers"));
        }
        let matchers = Matchers::sorted(matchers);
        if matchers.matches(&BTreeMap::new()) {
            return Err(invalid(
                "at least one matcher must not match the empty string",
            ));
        }
        let time = |k: &'static str| -> Result<Nanos, SilenceError> {
            parse_time(&string(k))?.ok_or(SilenceError::TimeRequired(k))
        };
        let (written_start, ends_at) = (time("startsAt")?, time("endsAt")?);
        let starts_at = written_start.max(now);
        if ends_at < starts_at {
            return Err(invalid("end time must not be before start time"));
        }
        if ends_at < now {
            return Err(invalid("end time can't be in the past"));
        }
        let (created_by, comment) = (string("createdBy"), string("comment"));
        if created_by.is_empty() {
            return Err(invalid("creator information missing"));
        }
        if comment.is_empty() {
            return Err(invalid("comment missing"));
        }
        let id = string("id");
        if !id.is_empty() {
            let existing = self
                .by_id
                .get(&id)
                .ok_or_else(|| SilenceError::UnknownId(id.clone()))?;
            // Alertmanager's `canUpdate`: same matchers, and an active silence keeps
            // its start (as the API shows it, to the millisecond) and does not end in
            // the past, a pending one does not start in the past; an expired one is
            // never changed. Otherwise the old one is expired and a new one made.
            let in_place = existing.matchers == matchers
                && match existing.state(now) {
                    "active" => {
                        written_start.div_euclid(1_000_000)
                            == existing.starts_at.div_euclid(1_000_000)
                            && ends_at >= now
                    }
                    "pending" => written_start >= now,
                    _ => false,
                };
            if in_place {
                let starts_at = if existing.state(now) == "active" {
                    existing.starts_at
                } else {
                    written_start
                };
                self.by_id.insert(
                    id.clone(),
                    Silence {
                        id: id.clone(),
                        matchers,
                        starts_at,
                        ends_at,
                        updated_at: now,
                        created_by,
                        comment,
                    },
                );
                return Ok(id);
            }
            self.expire(&id, now)?;
        }
        self.next += 1;
        let new_id = format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            (now as u64) >> 32,
            self.next & 0xffff,
            now as u64 & 0xffff_ffff_ffff
        );
        self.by_id.insert(
            new_id.clone(),
            Silence {
                id: new_id.clone(),
                matchers,
                starts_at,
                ends_at,
                updated_at: now,
                created_by,
                comment,
            },
        );
        Ok(new_id)
    }

    /// Every silence as saved in the notifier's state file; silences that expired
    /// more than `retention` before `now` are left out.
    pub fn snapshot(&self, now: Nanos, retention: Nanos) -> Vec<Value> {
        self.by_id
            .values()
            .filter(|s| s.ends_at > now - retention)
            .map(|s| {
                let mut v = s.to_json(now);
                for (field, t) in [
                    ("startsAt", s.starts_at),
                    ("endsAt", s.ends_at),
                    ("updatedAt", s.updated_at),
                ] {
                    v[field] = json!(t);
                }
                v
            })
            .collect()
    }

    /// Restores silences saved by [`Silences::snapshot`]; entries that do not read
    /// back are returned as errors and skipped.
    pub fn restore(&mut self, saved: &[Value]) -> Vec<String> {
        let mut problems = Vec::new();
        for v in saved {
            match silence_from_snapshot(v) {
                Ok(s) => {
                    self.by_id.insert(s.id.clone(), s);
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        self.next = self.by_id.len() as u64;
        problems
    }

    /// Expires a silence now (`DELETE /api/v2/silence/{id}`); one already expired
    /// is left as it is (Alertmanager 0.25 answers 200 for it too).
    pub fn expire(&mut self, id: &str, now: Nanos) -> Result<(), SilenceError> {
        let s = self.by_id.get_mut(id).ok_or(SilenceError::NotFound)?;
        if s.state(now) == "expired" {
            return Ok(());
        }
        if s.starts_at > now {
            s.starts_at = now;
        }
        s.ends_at = now;
        s.updated_at = now;
        Ok(())
    }
}

/// Why a silence cannot be created, updated or expired (Alertmanager 0.25's messages).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SilenceError {
    /// The posted silence is not valid.
    #[error("{0}")]
    Invalid(&'static str),
    /// Its matchers are not valid.
    #[error(transparent)]
    Matchers(#[from] MatcherJsonError),
    /// `startsAt` or `endsAt` is not a time.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// `startsAt` or `endsAt` is missing (or Go's zero time).
    #[error("{0} is required")]
    TimeRequired(&'static str),
    /// An update names an id no silence has.
    #[error("silence {0} not found")]
    UnknownId(String),
    /// An expiry names an id no silence has.
    #[error("silence not found")]
    NotFound,
}

/// Why the matchers of a silence's JSON are not valid.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MatcherJsonError {
    /// A matcher lacks `name`, `value` or `isRegex` (or it is not of its type).
    #[error("matcher without {0}")]
    Missing(&'static str),
    /// A matcher is not valid (e.g. its regex does not compile).
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// Why a saved silence cannot be restored (logged; the silence is skipped).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A field is missing.
    #[error("saved silence without {0}")]
    Missing(&'static str),
    /// Its matchers are not valid.
    #[error(transparent)]
    Matchers(#[from] MatcherJsonError),
}

/// The matchers of a v2 silence JSON object.
fn matchers_from_json(v: &Value) -> Result<Vec<Matcher>, MatcherJsonError> {
    let mut matchers = Vec::new();
    for m in v
        .get("matchers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .ok_or(MatcherJsonError::Missing("name"))?;
        let value = m
            .get("value")
            .and_then(Value::as_str)
            .ok_or(MatcherJsonError::Missing("value"))?;
        let regex = m
            .get("isRegex")
            .and_then(Value::as_bool)
            .ok_or(MatcherJsonError::Missing("isRegex"))?;
        let equal = m.get("isEqual").and_then(Value::as_bool).unwrap_or(true);
        let kind = match (regex, equal) {
            (false, true) => MatchType::Equal,
            (false, false) => MatchType::NotEqual,
            (true, true) => MatchType::Regexp,
            (true, false) => MatchType::NotRegexp,
        };
        matchers.push(Matcher::new(name, kind, value)?);
    }
    Ok(matchers)
}

fn silence_from_snapshot(v: &Value) -> Result<Silence, SnapshotError> {
    let string = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let time = |k: &'static str| {
        v.get(k)
            .and_then(Value::as_i64)
            .ok_or(SnapshotError::Missing(k))
    };
    let id = string("id");
    if id.is_empty() {
        return Err(SnapshotError::Missing("id"));
    }
    Ok(Silence {
        id,
        matchers: Matchers::sorted(matchers_from_json(v)?),
        starts_at: time("startsAt")?,
        ends_at: time("endsAt")?,
        updated_at: time("updatedAt")?,
        created_by: string("createdBy"),
        comment: string("comment"),
    })
}
