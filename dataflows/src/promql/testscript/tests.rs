//! Unit tests of the script reader.

use super::*;

fn floats(points: &[Option<Point>]) -> Vec<Option<f64>> {
    points
        .iter()
        .map(|p| match p {
            Some(Point::Float(v)) => Some(*v),
            Some(Point::Histogram { .. }) => Some(f64::INFINITY),
            None => None,
        })
        .collect()
}

#[test]
fn durations() {
    assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
    assert_eq!(parse_duration_ms("20s500ms"), Ok(20_500));
    assert_eq!(parse_duration_ms("0"), Ok(0));
    // Found by the promql fuzz target: overflowed (a panic in debug builds).
    assert!(parse_duration_ms("3m777777777777w").is_err());
    assert!(parse_duration_ms("9223372036854775807ms1ms").is_err());
    assert!(parse_duration_ms("1.5m").is_err());
}

#[test]
fn numbers() {
    assert_eq!(parse_number("0x10"), Ok(16.0));
    assert_eq!(parse_number("-Inf"), Ok(f64::NEG_INFINITY));
    assert_eq!(parse_number("1e3"), Ok(1000.0));
    assert_eq!(parse_number("1m"), Ok(60.0));
    assert!(parse_number("NaN").unwrap().is_nan());
}

#[test]
fn start_timestamp_lines() {
    let script = "load 1m\n    m{a=\"1\"}@st _ -30s-1mx1 -59999ms\n    m{a=\"1\"} 1 2 3 4\n    \
                  s@st -0ms\n    s 5\n";
    let Command::Load(load) = &parse_script(script).unwrap()[0] else {
        panic!("not a load");
    };
    // The `@st` lines are no series of their own.
    assert_eq!(load.series.len(), 2);
    let offsets = |name: &str| {
        load.start_offsets
            .iter()
            .find(|(l, _)| l.metric_name() == name)
            .map(|(_, o)| o.clone())
    };
    assert_eq!(
        offsets("m"),
        Some(vec![None, Some(-30_000), Some(-90_000), Some(-59_999)])
    );
    assert_eq!(offsets("s"), Some(vec![Some(0)]));
    let mut store = store::MemStorage::default();
    store.load(load.clone());
    let starts: Vec<i64> = store.samples_in_time_order().iter().map(|s| s.3).collect();
    // m at 0 (none), s at 0 (start = its time, 0), m at 1m, 2m, 3m.
    assert_eq!(starts, vec![0, 0, 30_000, 30_000, 120_001]);
}

#[test]
fn value_notation() {
    let v = |s| floats(&parse_values(s).unwrap());
    assert_eq!(
        v("0+10x3"),
        vec![Some(0.0), Some(10.0), Some(20.0), Some(30.0)]
    );
    assert_eq!(v("1x2"), vec![Some(1.0); 3]);
    assert_eq!(v("-2+4x1"), vec![Some(-2.0), Some(2.0)]);
    assert_eq!(v("1-2x2"), vec![Some(1.0), Some(-1.0), Some(-3.0)]);
    assert_eq!(v("1 _x3 2"), vec![Some(1.0), None, None, None, Some(2.0)]);
    assert_eq!(
        v("1+1x1 9+1x1"),
        vec![Some(1.0), Some(2.0), Some(9.0), Some(10.0)]
    );
    assert_eq!(v("1e2+1e1x1"), vec![Some(100.0), Some(110.0)]);
    let stale = parse_values("stale").unwrap();
    assert!(matches!(stale[0], Some(Point::Float(f)) if crate::is_stale_marker(f)));
    assert_eq!(
        parse_values("{{schema:0 sum:1 count:1}}x2 {{sum:1}}+{{sum:2}}x1 3")
            .unwrap()
            .len(),
        6
    );
}

#[test]
fn series_lines() {
    let (l, rest) = split_series(r#"http_requests{job="api", "a.b"="x y"} 1 2"#).unwrap();
    assert_eq!(l.to_string(), r#"http_requests{a.b="x y", job="api"}"#);
    assert_eq!(rest, "1 2");
    let (l, _) = split_series(r#"{"weird.name", x="1"} 1"#).unwrap();
    assert_eq!(l.metric_name(), "weird.name");
    let (l, rest) = split_series("{} 3").unwrap();
    assert!(l.is_empty());
    assert_eq!(rest, "3");
}

#[test]
fn blocks_and_commands() {
    let script = "load 5m\n  a{x=\"1\"} 0+1x2\n# comment ends block\neval instant at 10m a\n  a{x=\"1\"} 2\n\neval range from 0 to 10m step 5m a\n  expect ordered\n  a{x=\"1\"} 0 1 2\n\neval_fail instant at 0 foo(\n\nclear\neval instant at 1m 1+1\n  2\n";
    let cmds = parse_script(script).unwrap();
    assert_eq!(cmds.len(), 6);
    let Command::Load(load) = &cmds[0] else {
        panic!("not a load")
    };
    assert_eq!(load.interval_ms, 300_000);
    let Command::Eval(e) = &cmds[2] else {
        panic!("not an eval")
    };
    assert!(e.ordered);
    assert_eq!(
        e.time,
        EvalTime::Range {
            start_ms: 0,
            end_ms: 600_000,
            step_ms: 300_000
        }
    );
    let Command::Eval(e) = &cmds[3] else {
        panic!("not an eval")
    };
    assert_eq!(e.fail, Some(FailMatch::Any));
    let Command::Eval(e) = &cmds[5] else {
        panic!("not an eval")
    };
    assert!(matches!(e.expected, Expected::Scalar(v) if v == 2.0));
}

#[test]
fn expect_directives() {
    let script = "eval instant at 1m foo\n  expect fail msg: something bad\n\neval instant at 0 x[1m]\n  expect range vector from 0 to 1m step 30s\n  x 1 2 3\n\neval instant at 0 \"a\"\n  expect string \"a\"\n";
    let cmds = parse_script(script).unwrap();
    let Command::Eval(e) = &cmds[0] else {
        panic!("not an eval")
    };
    assert_eq!(e.fail, Some(FailMatch::Message("something bad".into())));
    let Command::Eval(e) = &cmds[1] else {
        panic!("not an eval")
    };
    assert_eq!(e.range_vector, Some((0, 60_000, 30_000)));
    let Command::Eval(e) = &cmds[2] else {
        panic!("not an eval")
    };
    assert_eq!(e.string.as_deref(), Some("a"));
}

#[test]
fn every_shipped_script_reads() {
    let Some(dir) = crate::shared_data::locate("promql-tests", "every shipped script reads") else {
        return;
    };
    let entries = std::fs::read_dir(&dir).expect("read the scripts' directory");
    let mut evals = 0;
    let mut files = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "test") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let cmds = parse_script(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        evals += cmds
            .iter()
            .filter(|c| matches!(c, Command::Eval(_)))
            .count();
        files += 1;
    }
    assert_eq!(files, 21);
    // FORMAT.md §10 inventory.
    assert_eq!(evals, 2214);
}
