//! The remote read client: the `remote_read` endpoints of the config read beside local
//! storage by ad-hoc queries, as Prometheus 2.42's fanout storage reads them
//! (`storage/remote/read.go`, `storage/fanout.go`).
//!
//! Contract: [`fetch`] asks every endpoint, at once, for the selectors a query reads
//! over the times it reads them (one `ReadRequest` per endpoint, one query per
//! selector, `SAMPLES` responses), and gathers the series by selector; [`WithRemote`]
//! is then the query's [`SeriesSource`]: local storage's series with the fetched ones
//! merged in (a series both hold has the union of their samples, the local sample
//! winning at a timestamp both have). Per endpoint, as Prometheus does:
//! - without `read_recent`, only what is older than local storage's start time is
//!   asked for (nothing when the selector's range starts after it); the start time
//!   is Prometheus's: the oldest block's start, else now, plus two block durations —
//!   so until local storage has blocks every selector is asked for;
//! - with `required_matchers`, only selectors that hold each pair as an equality
//!   matcher are asked for;
//! - with `filter_external_labels` (the default), each external label the selector
//!   does not match on itself is sent as an equality matcher, and taken off the series
//!   returned.
//!
//! A failed endpoint (unreachable, timed out, an error status, a body that does not
//! decode) is a warning of the query's answer, worded as Prometheus words it, and the
//! query is answered from what the others and local storage hold. Native histograms
//! in answers are not read (floats only). Rules do not read remote endpoints (they
//! are evaluated by the dataflow from what is ingested), nor do `/api/v1/series` and
//! the label APIs yet.

use crate::config::{HttpClientConfig, RemoteReadConfig};
use crate::remote::proto::{self, ReadRequest, ReadResponse, RESPONSE_TYPE_SAMPLES};
use dataflows::histogram::FloatHistogram;
use dataflows::promql::eval::{EachSeries, Selected, SeriesSource};
use dataflows::promql::plan::Plan;
use dataflows::render::extent::{selector_key, selector_uses, Extent, QueryRange};
use dataflows::{Labels, MatchKind, Selector};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One selector of a query and the times (inclusive, ms) the query reads it over.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The matchers.
    pub selector: Selector,
    /// First timestamp read.
    pub start_ms: i64,
    /// Last timestamp read.
    pub end_ms: i64,
}

/// What a query over `[start_ms, end_ms]` (an instant query: both `t`) reads: each
/// selector of `plan` once, over the union of its reads.
pub fn selections(plan: &Plan, lookback_ms: i64, start_ms: i64, end_ms: i64) -> Vec<Selection> {
    let range = QueryRange {
        start_ms: Some(start_ms),
        end_ms: Some(end_ms),
    };
    selector_uses(plan, lookback_ms, range)
        .into_iter()
        .filter_map(|u| {
            let span = |e: Extent| match e {
                Extent::Relative { back, fwd } => {
                    (start_ms.saturating_sub(back), end_ms.saturating_add(fwd))
                }
                Extent::Absolute { lo, hi } => (lo, hi),
            };
            let spans: Vec<(i64, i64)> =
                u.relative.into_iter().chain(u.absolute).map(span).collect();
            let lo = spans.iter().map(|s| s.0).min()?;
            let hi = spans.iter().map(|s| s.1).max()?;
            Some(Selection {
                selector: u.selector,
                start_ms: lo,
                end_ms: hi,
            })
        })
        .collect()
}

/// HTTP clients built once per client settings: the `remote_read` endpoints' and the
/// one the processes of a cluster ask each other with (default settings).
#[derive(Default)]
pub struct Clients {
    built: Mutex<HashMap<String, reqwest::Client>>,
}

impl Clients {
    /// The client of `http` settings, built the first time they are asked for.
    pub fn client(&self, http: &HttpClientConfig) -> Result<reqwest::Client, String> {
        let key = serde_json::to_string(http).unwrap_or_default();
        if let Some(client) = self.built.lock().get(&key) {
            return Ok(client.clone());
        }
        let client = crate::http_client::build_client(http).map_err(|e| e.to_string())?;
        self.built.lock().insert(key, client.clone());
        Ok(client)
    }
}

/// Series with their samples (time-sorted, one per timestamp), in label order.
type SeriesSamples = BTreeMap<Arc<Labels>, Vec<(i64, f64)>>;

/// The series the endpoints answered, by selector key ([`selector_key`]).
#[derive(Default)]
pub struct Fetched {
    by_key: HashMap<String, SeriesSamples>,
}

impl Fetched {
    /// Whether no endpoint answered any series.
    pub fn is_empty(&self) -> bool {
        self.by_key.values().all(BTreeMap::is_empty)
    }
}

/// Asks every endpoint of `configs` for `selections` (see the module doc);
/// `local_start_ms` is local storage's start time (see the module doc; `None`: none,
/// everything is asked for). Returns
/// what they answered and one warning per endpoint that failed.
pub async fn fetch(
    configs: &[RemoteReadConfig],
    clients: &Clients,
    external_labels: &BTreeMap<String, String>,
    selections: &[Selection],
    local_start_ms: Option<i64>,
) -> (Fetched, Vec<String>) {
    let asks = configs.iter().map(|config| async move {
        let queries = queries(config, external_labels, selections, local_start_ms);
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let request = ReadRequest {
            queries: queries.iter().map(|(_, q, _)| q.clone()).collect(),
            accepted_response_types: vec![RESPONSE_TYPE_SAMPLES],
        };
        let response = read(clients, config, &request).await?;
        if response.results.len() != queries.len() {
            return Err(format!(
                "remote server {} answered {} results to {} queries",
                config.url,
                response.results.len(),
                queries.len()
            ));
        }
        Ok(queries
            .into_iter()
            .zip(response.results)
            .map(|((index, _, added), result)| (index, added, result))
            .collect())
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut fetched = Fetched::default();
    let mut warnings = Vec::new();
    for answer in answers {
        let results = match answer {
            Ok(results) => results,
            Err(warning) => {
                warnings.push(warning);
                continue;
            }
        };
        for (index, added, result) in results {
            let selection = &selections[index];
            let series = fetched
                .by_key
                .entry(selector_key(&selection.selector))
                .or_default();
            for ts in result.timeseries {
                let pairs: Vec<(String, String)> = ts
                    .labels
                    .into_iter()
                    .filter(|l| !added.contains(&l.name))
                    .map(|l| (l.name, l.value))
                    .collect();
                let labels = Arc::new(Labels::from_pairs(pairs));
                if !selection.selector.matches(&labels) {
                    continue;
                }
                let samples = series.entry(labels).or_default();
                samples.extend(ts.samples.into_iter().map(|s| (s.timestamp, s.value)));
                samples.sort_by_key(|s| s.0);
                samples.dedup_by_key(|s| s.0);
            }
        }
    }
    (fetched, warnings)
}

/// The queries `config` is asked: (index into `selections`, the query, the external
/// label names added as matchers).
fn queries(
    config: &RemoteReadConfig,
    external_labels: &BTreeMap<String, String>,
    selections: &[Selection],
    local_start_ms: Option<i64>,
) -> Vec<(usize, proto::Query, Vec<String>)> {
    let mut out = Vec::new();
    for (index, selection) in selections.iter().enumerate() {
        let matchers = &selection.selector.matchers;
        // Prometheus's RequiredMatchersFilter: every pair as an equality matcher.
        let required = config.required_matchers.iter().all(|(name, value)| {
            matchers
                .iter()
                .any(|m| m.name == *name && matches!(&m.kind, MatchKind::Equal(v) if v == value))
        });
        if !required {
            continue;
        }
        // Prometheus's PreferLocalStorageFilter.
        let mut end_ms = selection.end_ms;
        if !config.read_recent {
            if let Some(local_start) = local_start_ms {
                if selection.start_ms > local_start {
                    continue;
                }
                end_ms = end_ms.min(local_start);
            }
        }
        let mut sent: Vec<proto::LabelMatcher> = matchers.iter().map(to_proto).collect();
        let mut added = Vec::new();
        if config.filter_external_labels {
            for (name, value) in external_labels {
                if !matchers.iter().any(|m| m.name == *name) {
                    sent.push(proto::LabelMatcher {
                        r#type: 0,
                        name: name.clone(),
                        value: value.clone(),
                    });
                    added.push(name.clone());
                }
            }
        }
        let query = proto::Query {
            start_timestamp_ms: selection.start_ms,
            end_timestamp_ms: end_ms,
            matchers: sent,
            hints: None,
        };
        out.push((index, query, added));
    }
    out
}

/// A matcher as the protocol sends it: the regex as written (without the anchors
/// [`dataflows::LabelMatcher::new`] added).
fn to_proto(m: &dataflows::LabelMatcher) -> proto::LabelMatcher {
    let unanchored = |r: &regex::Regex| {
        let text = r.as_str();
        text.strip_prefix("^(?:")
            .and_then(|t| t.strip_suffix(")$"))
            .unwrap_or(text)
            .to_string()
    };
    let (r#type, value) = match &m.kind {
        MatchKind::Equal(v) => (0, v.clone()),
        MatchKind::NotEqual(v) => (1, v.clone()),
        MatchKind::Regex(r) => (2, unanchored(r)),
        MatchKind::NotRegex(r) => (3, unanchored(r)),
    };
    proto::LabelMatcher {
        r#type,
        name: m.name.clone(),
        value,
    }
}

/// One read request to `config`'s endpoint; errors worded as Prometheus's client
/// words them (`storage/remote/client.go`).
async fn read(
    clients: &Clients,
    config: &RemoteReadConfig,
    request: &ReadRequest,
) -> Result<ReadResponse, String> {
    let client = clients.client(&config.http)?;
    let mut builder = client
        .post(&config.url)
        .timeout(config.remote_timeout)
        .header("Content-Encoding", "snappy")
        .header("Accept-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(proto::encode(request));
    for (name, value) in &config.headers {
        builder = builder.header(name, value);
    }
    let sending = |e: &dyn std::fmt::Display| format!("error sending request: {e}");
    let builder = crate::http_client::authorize(builder, &config.http)
        .await
        .map_err(|e| sending(&e))?;
    let response = builder.send().await.map_err(|e| sending(&e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("error reading response. HTTP status code: {status}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "remote server {} returned HTTP status {status}: {}",
            config.url,
            String::from_utf8_lossy(&body).trim()
        ));
    }
    proto::decode::<ReadResponse>(&body).map_err(|e| format!("error reading response: {e}"))
}

/// A query's source: local storage with the series [`fetch`] brought merged in.
pub struct WithRemote<'a, S> {
    /// Local storage.
    pub local: &'a S,
    /// What the endpoints answered.
    pub fetched: &'a Fetched,
}

impl<S: SeriesSource> SeriesSource for WithRemote<'_, S> {
    fn select(&self, matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        let mut local = self.local.select(matchers, start_ms, end_ms);
        let Some(remote) = self.fetched.by_key.get(&selector_key(matchers)) else {
            return local;
        };
        let mut added = false;
        // Local series by label hash: one lookup per remote series.
        let by_labels: HashMap<u64, usize> = local
            .iter()
            .enumerate()
            .map(|(i, (labels, _))| (labels.hash(), i))
            .collect();
        for (labels, samples) in remote {
            let lo = samples.partition_point(|s| s.0 < start_ms);
            let hi = samples.partition_point(|s| s.0 <= end_ms);
            if lo >= hi {
                continue;
            }
            let window = &samples[lo..hi];
            let held = by_labels
                .get(&labels.hash())
                .copied()
                .filter(|&i| local[i].0 == *labels);
            match held.map(|i| &mut local[i].1) {
                Some(ours) => {
                    // The local sample wins where both have one.
                    let mut merged = Vec::with_capacity(ours.len() + window.len());
                    let (mut i, mut j) = (0, 0);
                    while i < ours.len() || j < window.len() {
                        let take_ours =
                            j == window.len() || (i < ours.len() && ours[i].0 <= window[j].0);
                        if take_ours {
                            if j < window.len() && ours[i].0 == window[j].0 {
                                j += 1;
                            }
                            merged.push(ours[i]);
                            i += 1;
                        } else {
                            merged.push(window[j]);
                            j += 1;
                        }
                    }
                    *ours = merged;
                }
                None => {
                    local.push((labels.clone(), window.to_vec()));
                    added = true;
                }
            }
        }
        if added {
            local.sort_by(|a, b| a.0.cmp(&b.0));
        }
        local
    }

    fn select_each(
        &self,
        matchers: &Selector,
        start_ms: i64,
        end_ms: i64,
        each: &mut EachSeries<'_>,
    ) {
        if self.fetched.by_key.contains_key(&selector_key(matchers)) {
            for (labels, samples) in self.select(matchers, start_ms, end_ms) {
                each(&labels, &samples);
            }
        } else {
            self.local.select_each(matchers, start_ms, end_ms, each);
        }
    }

    fn start_times(
        &self,
        matchers: &Selector,
        labels: &Labels,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(i64, i64)> {
        self.local.start_times(matchers, labels, start_ms, end_ms)
    }

    fn histogram(&self, index: u32) -> Option<Arc<FloatHistogram>> {
        self.local.histogram(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataflows::LabelMatcher;

    fn selection(matchers: &[(&str, &str, &str)], start_ms: i64, end_ms: i64) -> Selection {
        Selection {
            selector: Selector {
                matchers: matchers
                    .iter()
                    .map(|(n, op, v)| LabelMatcher::new(n, op, v).unwrap())
                    .collect(),
            },
            start_ms,
            end_ms,
        }
    }

    fn config(read_recent: bool, required: &[(&str, &str)]) -> RemoteReadConfig {
        let mut text = String::from("remote_read:\n- url: http://127.0.0.1:9/read\n");
        text.push_str(&format!("  read_recent: {read_recent}\n"));
        for (n, v) in required {
            text.push_str(&format!("  required_matchers: {{{n}: {v}}}\n"));
        }
        crate::config::Config::load_str(&text, "p.yml", std::path::Path::new("/"))
            .unwrap()
            .remote_read[0]
            .clone()
    }

    #[test]
    fn queries_follow_prometheus_filters() {
        let external: BTreeMap<String, String> = [("region".to_string(), "eu".to_string())].into();
        let s = [
            selection(&[("__name__", "=", "up"), ("job", "=~", "a|b")], 100, 200),
            selection(&[("__name__", "=", "up"), ("region", "=", "us")], 300, 400),
        ];
        // Not read_recent: only before the local start time (150): the first query
        // clipped to it, the second (starting after it) not sent.
        let q = queries(&config(false, &[]), &external, &s, Some(150));
        assert_eq!(q.len(), 1);
        assert_eq!(
            (q[0].1.start_timestamp_ms, q[0].1.end_timestamp_ms),
            (100, 150)
        );
        // The regex goes as written; the external label is added as a matcher.
        let sent: Vec<(i32, &str, &str)> = q[0]
            .1
            .matchers
            .iter()
            .map(|m| (m.r#type, m.name.as_str(), m.value.as_str()))
            .collect();
        assert_eq!(
            sent,
            [
                (0, "__name__", "up"),
                (2, "job", "a|b"),
                (0, "region", "eu")
            ]
        );
        assert_eq!(q[0].2, ["region"]);
        // read_recent: everything; a selector naming the external label keeps its own.
        let q = queries(&config(true, &[]), &external, &s, Some(150));
        assert_eq!(q.len(), 2);
        assert!(q[1].2.is_empty());
        // No local start time: everything, whatever read_recent says.
        assert_eq!(queries(&config(false, &[]), &external, &s, None).len(), 2);
        // required_matchers: only the selector with region="us".
        let q = queries(&config(true, &[("region", "us")]), &external, &s, None);
        assert_eq!(q.iter().map(|q| q.0).collect::<Vec<_>>(), [1]);
    }
}
