//! Wall-display dashboards: YAML files in `--web.dashboards-dir`, served to the web UI's
//! `/dashboard/<name>` page.
//!
//! - `GET /api/v1/dashboards`: every `*.yml` / `*.yaml` file of the directory, sorted by
//!   name: `[{name, title, panels}]` where `name` is the file name without its
//!   extension; a file that does not validate is listed with its `error` instead.
//! - `GET /api/v1/dashboards/{name}`: that dashboard, validated (below), as JSON;
//!   404 `not_found` when there is no such file (or no directory was given), 400
//!   `bad_data` with the problem when it does not validate.
//!
//! The directory is read on each request, so an edited file shows at the page's next
//! load with no reload of promflow. A dashboard is `title` (default: the name),
//! `refresh` (how often panels re-query, a duration, default 30s), `columns` (default
//! 3) and `panels`, each with `title`, `expr`, `type` (`stat`: the value of an instant
//! query, colored by `thresholds`, a list of `{value, color}` where the last threshold
//! at or below the value gives the color; `graph`: a range query over `range`, default
//! 1h), optional `unit` and `decimals`, and `width` in columns (default 1). Unknown
//! fields and unparsable durations or expressions are problems. The page also shows
//! the firing alerts (`/api/v1/alerts`, live from `ALERTS`) at the top.

use crate::api::response::{api_error, api_success, ErrorType};
use crate::service::Service;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// One dashboard file.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// Shown at the top (default: the file's name).
    #[serde(default)]
    pub title: String,
    /// How often panels re-query.
    #[serde(default = "default_refresh")]
    pub refresh: String,
    /// Grid columns.
    #[serde(default = "default_columns")]
    pub columns: u32,
    /// The panels, in reading order.
    #[serde(default)]
    pub panels: Vec<Panel>,
}

/// One panel of a dashboard.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// Heading.
    pub title: String,
    /// The PromQL expression.
    pub expr: String,
    /// `stat` or `graph`.
    #[serde(rename = "type", default = "default_type")]
    pub kind: String,
    /// Shown after a stat's value.
    #[serde(default)]
    pub unit: String,
    /// A stat's decimals (default: as the value needs, up to 3).
    #[serde(default)]
    pub decimals: Option<u32>,
    /// A stat's colors by value, ascending.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// A graph's range.
    #[serde(default = "default_range")]
    pub range: String,
    /// Columns the panel spans.
    #[serde(default = "default_width")]
    pub width: u32,
}

/// From `value` up, a stat is shown in `color`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Lower bound.
    pub value: f64,
    /// A CSS color.
    pub color: String,
}

fn default_refresh() -> String {
    "30s".into()
}
fn default_columns() -> u32 {
    3
}
fn default_type() -> String {
    "stat".into()
}
fn default_range() -> String {
    "1h".into()
}
fn default_width() -> u32 {
    1
}

/// Why a dashboard file was refused (shown in the listing and as the 400 of
/// `GET /api/v1/dashboards/{name}`).
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not YAML, or a field unknown or of the wrong type.
    #[error("{0}")]
    Yaml(serde_yaml_ng::Error),
    #[error("refresh {refresh:?}: {source}")]
    Refresh {
        refresh: String,
        source: crate::config::DurationError,
    },
    #[error("columns must be at least 1")]
    NoColumns,
    #[error("{panel}: type {kind:?} is neither stat nor graph")]
    PanelType { panel: PanelAt, kind: String },
    #[error("{panel}: expr: {source}")]
    PanelExpr {
        panel: PanelAt,
        source: dataflows::promql::plan::PlanError,
    },
    #[error("{panel}: range: {source}")]
    PanelRange {
        panel: PanelAt,
        source: crate::config::DurationError,
    },
    #[error("{panel}: width must be at least 1")]
    PanelWidth { panel: PanelAt },
}

/// Which panel an error is about: `panel 2 ("Load")`.
#[derive(Debug)]
pub struct PanelAt {
    /// 1-based.
    pub number: usize,
    pub title: String,
}

impl std::fmt::Display for PanelAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "panel {} ({:?})", self.number, self.title)
    }
}

/// Parses and checks a dashboard file's text; `name` is its default title.
pub fn parse_dashboard(name: &str, text: &str) -> Result<Dashboard, DashboardError> {
    let mut d: Dashboard = serde_yaml_ng::from_str(text).map_err(DashboardError::Yaml)?;
    if d.title.is_empty() {
        d.title = name.to_string();
    }
    crate::config::parse_duration(&d.refresh).map_err(|source| DashboardError::Refresh {
        refresh: d.refresh.clone(),
        source,
    })?;
    if d.columns == 0 {
        return Err(DashboardError::NoColumns);
    }
    for (i, p) in d.panels.iter().enumerate() {
        let panel = || PanelAt {
            number: i + 1,
            title: p.title.clone(),
        };
        if p.kind != "stat" && p.kind != "graph" {
            return Err(DashboardError::PanelType {
                panel: panel(),
                kind: p.kind.clone(),
            });
        }
        dataflows::promql::plan::parse(&p.expr).map_err(|source| DashboardError::PanelExpr {
            panel: panel(),
            source,
        })?;
        crate::config::parse_duration(&p.range).map_err(|source| DashboardError::PanelRange {
            panel: panel(),
            source,
        })?;
        if p.width == 0 {
            return Err(DashboardError::PanelWidth { panel: panel() });
        }
    }
    Ok(d)
}

/// The directory's dashboard files: (name, path), sorted by name.
fn files(service: &Service) -> Vec<(String, PathBuf)> {
    let Some(dir) = &service.options.dashboards_dir else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let ext = path.extension()?.to_str()?;
            if ext != "yml" && ext != "yaml" {
                return None;
            }
            Some((path.file_stem()?.to_str()?.to_string(), path))
        })
        .collect();
    out.sort();
    out
}

fn load(name: &str, path: &std::path::Path) -> Result<Dashboard, DashboardError> {
    let text = std::fs::read_to_string(path).map_err(|source| DashboardError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_dashboard(name, &text)
}

/// `GET /api/v1/dashboards`.
pub async fn list(State(service): State<Arc<Service>>) -> Response {
    let list: Vec<_> = files(&service)
        .into_iter()
        .map(|(name, path)| match load(&name, &path) {
            Ok(d) => json!({"name": name, "title": d.title, "panels": d.panels.len()}),
            Err(e) => json!({"name": name, "error": e.to_string()}),
        })
        .collect();
    api_success(json!(list))
}

/// `GET /api/v1/dashboards/{name}`.
pub async fn get(State(service): State<Arc<Service>>, Path(name): Path<String>) -> Response {
    let Some((_, path)) = files(&service).into_iter().find(|(n, _)| *n == name) else {
        return api_error(ErrorType::NotFound, &format!("no dashboard {name:?}"));
    };
    match load(&name, &path) {
        Ok(d) => api_success(json!(d)),
        Err(e) => api_error(ErrorType::BadData, &format!("dashboard {name:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems() {
        let d = parse_dashboard("wall", "panels:\n  - title: Up\n    expr: sum(up)\n").unwrap();
        assert_eq!(
            (d.title.as_str(), d.refresh.as_str(), d.columns),
            ("wall", "30s", 3)
        );
        let p = &d.panels[0];
        assert_eq!(
            (p.kind.as_str(), p.range.as_str(), p.width),
            ("stat", "1h", 1)
        );
        for (text, problem) in [
            (
                "panels:\n  - {title: x, expr: 'sum('}\n",
                "panel 1 (\"x\"): expr",
            ),
            (
                "panels:\n  - {title: x, expr: up, type: pie}\n",
                "neither stat nor graph",
            ),
            ("refresh: soon\n", "refresh"),
            ("colums: 2\n", "unknown field `colums`"),
            ("panels:\n  - {title: x, expr: up, range: long}\n", "range"),
        ] {
            let e = parse_dashboard("d", text).unwrap_err().to_string();
            assert!(e.contains(problem), "{text}: {e}");
        }
    }
}
