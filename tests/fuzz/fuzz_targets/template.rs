//! Fuzzes alert templates: Go `text/template` (the `gotmpl` engine) with Prometheus's
//! functions, as rule annotations and labels are checked
//! (`promflow::rules::template::check`, `promflow check rules`) and expanded
//! (`expand`, each alert) with fixed alert data; `query` answers a fixed vector.
//! Checks only that nothing panics, aborts, or runs without bound.
#![no_main]

use dataflows::Labels;
use libfuzzer_sys::fuzz_target;
use promflow::rules::template::{self, QueryFn, TemplateData};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = template::check("__alert_Fuzz", text);
    let (data, query) = alert();
    let _ = template::expand("__alert_Fuzz", text, data, Some(query.clone()));
});

/// The alert every template is expanded for, and the `query` function's answer.
fn alert() -> &'static (TemplateData, QueryFn) {
    static ALERT: OnceLock<(TemplateData, QueryFn)> = OnceLock::new();
    ALERT.get_or_init(|| {
        let labels = BTreeMap::from([
            ("__name__".to_string(), "up".to_string()),
            ("instance".to_string(), "db-1.example.org:9100".to_string()),
            ("job".to_string(), "node".to_string()),
            ("severity".to_string(), "<critical> & \"page\"".to_string()),
        ]);
        let data = TemplateData {
            labels,
            external_labels: BTreeMap::from([("cluster".to_string(), "eu-1".to_string())]),
            external_url: "http://promflow.example.org:9090/prefix".to_string(),
            value: 1234.5678,
        };
        let query: QueryFn = Arc::new(|_expr: &str| {
            Ok(vec![
                (
                    Labels::from_pairs(vec![
                        ("__name__".into(), "up".into()),
                        ("instance".into(), "b:9100".into()),
                    ]),
                    1.0,
                ),
                (
                    Labels::from_pairs(vec![
                        ("__name__".into(), "up".into()),
                        ("instance".into(), "a:9100".into()),
                    ]),
                    f64::NAN,
                ),
            ])
        });
        (data, query)
    })
}
