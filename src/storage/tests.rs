//! Storage as a whole: appends survive restarts, blocks are cut, compacted and
//! retired, queries span blocks and head, deletions, snapshots and size retention.

use super::*;

use dataflows::{Sample, Selector};
use head::tests::sample;

fn all(storage: &Storage) -> Vec<(String, Vec<(i64, u64)>)> {
    let mut out: Vec<_> = storage
        .select(&Selector { matchers: vec![] }, i64::MIN, i64::MAX)
        .into_iter()
        .map(|(l, s)| {
            (
                l.to_string(),
                s.into_iter().map(|(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_reopened_storage_holds_what_was_appended() {
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        wal_fsync: WalFsync::Batch,
        ..StorageOptions::new(dir.path().to_path_buf())
    };
    let before = {
        let s = Storage::open(&options).unwrap();
        s.append(&[sample("a", 10, 1.0), sample("b", 10, 2.0)])
            .unwrap();
        s.append(&[
            sample("a", 20, dataflows::STALE_MARKER),
            sample("a", 15, 9.0),
        ])
        .unwrap();
        all(&s)
    };
    let s = Storage::open(&options).unwrap();
    assert_eq!(all(&s), before);
    // New series after a restart keep distinct refs from replayed ones.
    s.append(&[sample("c", 30, 3.0), sample("a", 30, 4.0)])
        .unwrap();
    let before = all(&s);
    drop(s);
    let s = Storage::open(&options).unwrap();
    assert_eq!(all(&s), before);
    assert_eq!(s.sample_count(), 5);
}

/// Exemplars kept by the exemplar storage are logged and replayed into a new ring
/// (once; with the store off, dropped), in the order kept: a ring of 2 over 3 logged
/// gets the newest 2. Refused ones (duplicates, older, of a series the head does not
/// hold) are neither logged nor handed on; out-of-order ones are counted.
#[test]
fn exemplars_are_logged_and_replayed_into_the_ring() {
    use exemplars::{Exemplar, ExemplarStore};
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        wal_fsync: WalFsync::Batch,
        ..StorageOptions::new(dir.path().to_path_buf())
    };
    let ex = |trace: &str, ts: i64| Exemplar {
        labels: dataflows::Labels::from_strs(&[("trace_id", trace)]),
        value: 0.5,
        timestamp_ms: ts,
        has_timestamp: true,
    };
    let (a, b) = (sample("a", 10, 1.0), sample("b", 10, 1.0));
    let unknown = sample("nowhere", 10, 1.0).series_id;
    {
        let s = Storage::open(&options).unwrap();
        s.append(&[a.clone(), b.clone()]).unwrap();
        let store = ExemplarStore::new(10);
        let mut handed = Vec::new();
        let out_of_order = s.append_exemplars(
            &store,
            vec![
                (a.series_id, ex("1", 8)),
                (a.series_id, ex("1", 8)),
                (b.series_id, ex("2", 9)),
                (a.series_id, ex("0", 5)),
                (unknown, ex("x", 9)),
                (a.series_id, ex("3", 10)),
            ],
            |kept| handed.extend(kept.iter().map(|k| (k.1.to_string(), k.2.timestamp_ms))),
        );
        assert_eq!(out_of_order, 1);
        assert_eq!(
            handed,
            [
                ("m{job=\"a\"}", 8),
                ("m{job=\"b\"}", 9),
                ("m{job=\"a\"}", 10)
            ]
            .map(|(l, t)| (l.to_string(), t))
        );
    }
    let s = Storage::open(&options).unwrap();
    let store = ExemplarStore::new(2);
    s.restore_exemplars(&store);
    let got: Vec<(String, Vec<(i64, bool)>)> = store
        .select(i64::MIN, i64::MAX, &[Selector::default()])
        .into_iter()
        .map(|(l, e)| {
            let e = e
                .iter()
                .map(|e| (e.timestamp_ms, e.has_timestamp))
                .collect();
            (l.to_string(), e)
        })
        .collect();
    assert_eq!(
        got,
        [
            ("m{job=\"a\"}".to_string(), vec![(10, false)]),
            ("m{job=\"b\"}".to_string(), vec![(9, false)])
        ]
    );
    // Once only.
    let again = ExemplarStore::new(2);
    s.restore_exemplars(&again);
    assert!(again
        .select(i64::MIN, i64::MAX, &[Selector::default()])
        .is_empty());
}

#[test]
fn truncation_retires_segments_and_keeps_live_series_replayable() {
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        wal_fsync: WalFsync::Every(std::time::Duration::from_millis(10)),
        ..StorageOptions::new(dir.path().to_path_buf())
    };
    {
        let s = Storage::open(&options).unwrap();
        s.append(&[sample("old", 10, 1.0), sample("kept", 10, 1.0)])
            .unwrap();
    }
    {
        // Restart: segment 2 begins; series "kept" was defined in segment 1.
        let s = Storage::open(&options).unwrap();
        s.append(&[sample("kept", 5000, 2.0)]).unwrap();
        s.truncate_before(1000);
        assert!(s
            .render_metrics()
            .contains("promflow_wal_truncations_total 1\n"));
    }
    let s = Storage::open(&options).unwrap();
    assert_eq!(
        all(&s),
        vec![(
            "m{job=\"kept\"}".to_string(),
            vec![(5000, 2.0f64.to_bits())]
        )]
    );
}

/// Three days of samples with explicit timestamps, a minute apart, in time order:
/// blocks are cut every 2h of data and compacted into 6h ones, queries span blocks
/// and head, a restart reopens the blocks, and retention (60h, counted from the
/// newest sample) deletes old ones.
#[test]
fn three_day_backfill_cuts_compacts_and_applies_retention() {
    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        retention: Duration::from_secs(60 * 3600),
        ..StorageOptions::new(dir.path().to_path_buf())
    };
    let t0 = 1_700_000_000_000 / (6 * HOUR) * (6 * HOUR);
    let end = t0 + 72 * HOUR;
    let jobs = ["a", "b", "c"];
    let value = |t: i64, j: usize| ((t - t0) / MINUTE) as f64 * 0.5 + j as f64;
    {
        let s = Storage::open(&options).unwrap();
        let mut t = t0;
        while t < end {
            let batch: Vec<Sample> = jobs
                .iter()
                .enumerate()
                .map(|(j, job)| sample(job, t, value(t, j)))
                .collect();
            assert_eq!(s.append(&batch).unwrap().appended, 3);
            if (t - t0) % HOUR == 0 {
                s.housekeeping(t);
            }
            t += MINUTE;
        }
        s.housekeeping(end);
        let blocks = s.blocks();
        // Retention keeps blocks ending within 60h of the newest sample.
        assert!(
            blocks.iter().all(|b| b.max_t > end - MINUTE - 60 * HOUR),
            "{blocks:?}"
        );
        // Aligned, disjoint, in order; 2h blocks compacted into 6h ones.
        for pair in blocks.windows(2) {
            assert_eq!(pair[0].max_t, pair[1].min_t, "{blocks:?}");
        }
        for b in &blocks {
            let span = b.max_t - b.min_t;
            assert!(span == 2 * HOUR || span == 6 * HOUR, "{b:?}");
            assert_eq!(b.min_t % span, 0);
            assert_eq!(b.samples as i64, 3 * span / MINUTE);
        }
        let six = blocks
            .iter()
            .filter(|b| b.max_t - b.min_t == 6 * HOUR)
            .count();
        assert!(six >= 8, "{blocks:?}");
        assert!(s
            .render_metrics()
            .contains("promflow_tsdb_block_compactions_total"));
        // The head holds what is not in a block, at most 3.5h.
        let (head_min, _) = s.head().time_range().unwrap();
        assert_eq!(head_min, blocks.last().unwrap().max_t);
        assert!(end - head_min <= 7 * HOUR / 2);
        // Old samples are refused.
        let out = s.append(&[sample("a", head_min - MINUTE, 1.0)]).unwrap();
        assert_eq!(out.out_of_bounds, 1);
    }
    let s = Storage::open(&options).unwrap();
    let first = s.blocks()[0].min_t;
    let sel = Selector {
        matchers: vec![dataflows::LabelMatcher::new("job", "=", "b").unwrap()],
    };
    // A range spanning blocks and the head: every minute, once, with its value.
    let got = s.select(&sel, first, end);
    assert_eq!(got.len(), 1);
    let want: Vec<(i64, f64)> = (0..)
        .map(|i| first + i * MINUTE)
        .take_while(|&t| t < end)
        .map(|t| (t, value(t, 1)))
        .collect();
    assert_eq!(got[0].1, want);
    assert_eq!(s.series_in_range(&[], first, first + HOUR).len(), 3);
    assert_eq!(s.time_range(), Some((first, end - MINUTE)));
    assert!(
        s.select(&sel, t0, first - 1).is_empty(),
        "deleted blocks are gone"
    );
}

/// A writer appends late samples (inside the range being cut) while blocks are
/// cut: every sample storage acknowledged is found afterwards, in a block or in
/// the head. Before the bound was checked under the head's lock, a sample could
/// pass the check, land in the head after the cut read it, and be trimmed.
#[test]
fn a_late_sample_racing_a_block_cut_is_refused_or_kept() {
    const HOUR: i64 = 3_600_000;
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Storage::open(&StorageOptions::new(dir.path().to_path_buf())).unwrap());
        // The head spans 0..3.5h: housekeeping cuts [0, 2h).
        let mut t = 0;
        while t <= 7 * HOUR / 2 {
            s.append(&[sample("steady", t, 1.0)]).unwrap();
            t += 60_000;
        }
        let cutting = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let started = Arc::new(std::sync::Barrier::new(3));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (s, cutting, started) = (s.clone(), cutting.clone(), started.clone());
                std::thread::spawn(move || {
                    let mut acknowledged = Vec::new();
                    started.wait();
                    let mut i = 0;
                    while cutting.load(Ordering::Relaxed) && i < 100_000 {
                        // Each late sample is its own series: only the bound refuses it.
                        let job = format!("late-{w}-{i}");
                        let out = s.append(&[sample(&job, HOUR + i, 1.0)]).unwrap();
                        if out.appended == 1 {
                            acknowledged.push(job);
                        }
                        i += 1;
                    }
                    acknowledged
                })
            })
            .collect();
        started.wait();
        s.housekeeping(7 * HOUR / 2);
        cutting.store(false, Ordering::Relaxed);
        let acknowledged: Vec<String> = writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        assert_eq!(s.blocks().len(), 1);
        let stored: std::collections::HashSet<String> = s
            .series_in_range(&[], 0, 2 * HOUR)
            .iter()
            .map(|l| l.get("job").unwrap_or_default().to_string())
            .collect();
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|j| !stored.contains(*j))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged then lost: {lost:?}"
        );
    }
}

/// Hours of samples, a minute apart, for jobs a, b, c, with housekeeping every hour.
fn backfill(s: &Storage, from: i64, to: i64) {
    const MINUTE: i64 = 60_000;
    let mut t = from;
    while t < to {
        let batch: Vec<Sample> = ["a", "b", "c"]
            .iter()
            .map(|job| sample(job, t, (t / MINUTE) as f64))
            .collect();
        s.append(&batch).unwrap();
        if t % (3_600_000) == 0 {
            s.housekeeping(t);
        }
        t += MINUTE;
    }
}

fn job(name: &str) -> Selector {
    Selector {
        matchers: vec![dataflows::LabelMatcher::new("job", "=", name).unwrap()],
    }
}

/// delete_series over blocks and head: queries skip the deleted samples at once,
/// after a restart, and after clean_tombstones rewrote the blocks; a series deleted
/// whole is no longer listed.
#[test]
fn deleted_series_stay_deleted_through_restart_and_cleaning() {
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        wal_fsync: WalFsync::Batch,
        ..StorageOptions::new(dir.path().to_path_buf())
    };
    let (from, to) = (100 * HOUR, 108 * HOUR);
    // job b loses [101.5h, 107h] (blocks and head), job c everything.
    let (del_from, del_to) = (101 * HOUR + HOUR / 2, 107 * HOUR);
    let expected = |job: &str| -> Vec<i64> {
        (from / 60_000..to / 60_000)
            .map(|m| m * 60_000)
            .filter(|&t| match job {
                "b" => t < del_from || t > del_to,
                "c" => false,
                _ => true,
            })
            .collect()
    };
    let check = |s: &Storage, when: &str| {
        for name in ["a", "b", "c"] {
            let got: Vec<i64> = s
                .select(&job(name), i64::MIN, i64::MAX)
                .into_iter()
                .flat_map(|(_, samples)| samples.into_iter().map(|(t, _)| t))
                .collect();
            assert_eq!(got, expected(name), "job {name} {when}");
        }
        let listed = s.series_in_range(&[], from, to);
        assert_eq!(listed.len(), 2, "{when}: {listed:?}");
    };
    {
        let s = Storage::open(&options).unwrap();
        backfill(&s, from, to);
        assert!(s.blocks().len() >= 2, "{:?}", s.blocks());
        s.delete_series(&[job("b")], del_from, del_to).unwrap();
        s.delete_series(&[job("c")], i64::MIN, i64::MAX).unwrap();
        check(&s, "after delete");
    }
    let s = Storage::open(&options).unwrap();
    check(&s, "after restart");
    let before: u64 = s.blocks().iter().map(|b| b.samples).sum();
    assert!(s.clean_tombstones().unwrap() >= 2);
    let after: u64 = s.blocks().iter().map(|b| b.samples).sum();
    assert!(after < before, "{after} < {before}");
    check(&s, "after clean_tombstones");
    assert_eq!(s.clean_tombstones().unwrap(), 0, "nothing left to clean");
    drop(s);
    check(
        &Storage::open(&options).unwrap(),
        "after cleaning and restart",
    );
}

/// A snapshot opens as a data directory holding the same samples (blocks and head);
/// with skip_head only the blocks'.
#[test]
fn a_snapshot_opens_as_a_data_directory() {
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(&StorageOptions::new(dir.path().join("data"))).unwrap();
    backfill(&s, 10 * HOUR, 15 * HOUR);
    let (newest_block_end, head_samples) = (s.blocks().last().unwrap().max_t, s.sample_count());
    assert!(head_samples > 0);
    s.snapshot(&dir.path().join("full"), false).unwrap();
    s.snapshot(&dir.path().join("blocks-only"), true).unwrap();
    let full = Storage::open(&StorageOptions::new(dir.path().join("full"))).unwrap();
    assert_eq!(all(&full), all(&s));
    let blocks_only = Storage::open(&StorageOptions::new(dir.path().join("blocks-only"))).unwrap();
    let wanted: Vec<_> = all(&s)
        .into_iter()
        .map(|(l, samples)| {
            (
                l,
                samples
                    .into_iter()
                    .filter(|(t, _)| *t < newest_block_end)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(all(&blocks_only), wanted);
    // The original keeps working after its blocks were hard-linked.
    s.append(&[sample("a", 15 * HOUR, 1.0)]).unwrap();
    assert_eq!(s.sample_count(), head_samples + 1);
}

/// retention.size: after every housekeeping the WAL and blocks fit the limit, the
/// oldest blocks went first, and no more than needed (one more block would not fit).
#[test]
fn size_retention_deletes_the_oldest_blocks_beyond_the_limit() {
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let limit = 150_000;
    let s = Storage::open(&StorageOptions {
        retention_size: limit,
        ..StorageOptions::new(dir.path().to_path_buf())
    })
    .unwrap();
    let mut t = 0;
    let mut deleted_by_size = false;
    while t < 72 * HOUR {
        backfill(&s, t, t + HOUR);
        t += HOUR;
        s.housekeeping(t);
        let (blocks, wal) = s.disk_bytes();
        // (The WAL alone may exceed it: then every block goes, as in Prometheus.)
        assert!(
            blocks + wal <= limit || blocks == 0,
            "{blocks} + {wal} > {limit} at {t}"
        );
        let metas = s.blocks();
        if let Some(first) = metas.first() {
            if first.min_t > 0 {
                deleted_by_size = true;
                let biggest = s
                    .persisted
                    .as_ref()
                    .unwrap()
                    .blocks
                    .read()
                    .iter()
                    .map(|b| b.disk_bytes())
                    .max()
                    .unwrap();
                assert!(
                    blocks + wal + biggest > limit,
                    "more deleted than needed at {t}"
                );
            }
            // What is left is the newest data, without gaps.
            for pair in metas.windows(2) {
                assert_eq!(pair[0].max_t, pair[1].min_t);
            }
        }
    }
    assert!(deleted_by_size);
    assert!(s
        .render_metrics()
        .lines()
        .any(|l| l.starts_with("promflow_tsdb_size_retentions_total ") && !l.ends_with(" 0")));
}

/// A native histogram sample of `h{job=…}` whose counts grow with `n`.
fn histogram_sample(job: &str, ts: i64, n: f64) -> HistogramSample {
    use dataflows::histogram::{FloatHistogram, Span};
    let labels = dataflows::Labels::from_pairs(vec![
        ("__name__".into(), "h".into()),
        ("job".into(), job.into()),
    ]);
    HistogramSample {
        series_id: labels.hash(),
        labels: Arc::new(labels),
        timestamp_ms: ts,
        histogram: FloatHistogram {
            schema: 1,
            zero_threshold: 0.001,
            zero_count: n,
            count: 3.0 * n,
            sum: 1.5 * n,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![n, n],
            ..FloatHistogram::default()
        },
        start_ms: 0,
    }
}

#[test]
fn histograms_are_stored_selected_and_replayed_beside_floats() {
    use dataflows::histogram::CounterResetHint;
    use dataflows::promql::eval::SeriesSource;
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        wal_fsync: WalFsync::Batch,
        ..StorageOptions::new(dir.path().to_path_buf())
    };
    let every = Selector { matchers: vec![] };
    let read = |s: &Storage| {
        let source = HistogramSource::new(s);
        source
            .select(&every, 0, 1_000)
            .into_iter()
            .map(|(labels, samples)| {
                let samples: Vec<(i64, Option<dataflows::histogram::FloatHistogram>)> = samples
                    .into_iter()
                    .map(|(t, v)| {
                        let h = dataflows::promql::eval::native::parse_handle(v)
                            .and_then(|(_, i)| source.histogram(i))
                            .map(|h| (*h).clone());
                        (t, h)
                    })
                    .collect();
                (labels.to_string(), samples)
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = {
        let s = Storage::open(&options).unwrap();
        s.append(&[sample("a", 10, 1.0)]).unwrap();
        let outcome = s
            .append_histograms(vec![
                histogram_sample("a", 10, 1.0),
                histogram_sample("b", 10, 5.0),
            ])
            .unwrap();
        assert_eq!(outcome.appended, 2);
        assert_eq!(outcome.new_series, 2);
        let outcome = s
            .append_histograms(vec![
                histogram_sample("a", 20, 2.0),
                // Another histogram at the same time (a duplicate), the same one
                // again (dropped silently), then a reset.
                histogram_sample("a", 20, 3.0),
                histogram_sample("a", 20, 2.0),
                histogram_sample("b", 30, 1.0),
            ])
            .unwrap();
        let counts = (outcome.appended, outcome.out_of_order, outcome.duplicate);
        assert_eq!(counts, (2, 0, 1));
        let outcome = s
            .append_histograms(vec![
                histogram_sample("b", 30, 1.0),
                histogram_sample("b", 20, 1.0),
            ])
            .unwrap();
        let counts = (outcome.appended, outcome.out_of_order, outcome.duplicate);
        assert_eq!(counts, (0, 1, 0));
        // A stale marker as a float sample of a histogram series.
        s.append(&[Sample {
            series_id: histogram_sample("a", 0, 0.0).series_id,
            labels: histogram_sample("a", 0, 0.0).labels,
            timestamp_ms: 40,
            value: dataflows::STALE_MARKER,
            start_ms: 0,
        }])
        .unwrap();
        // The float-only view is unchanged by histograms.
        assert_eq!(all(&s).len(), 2);
        read(&s)
    };
    let a = &before[r#"h{job="a"}"#];
    assert_eq!(a.len(), 3);
    assert_eq!(
        a[0].1.as_ref().unwrap().counter_reset_hint,
        CounterResetHint::Unknown
    );
    assert_eq!(
        a[1].1.as_ref().unwrap().counter_reset_hint,
        CounterResetHint::NotReset
    );
    assert_eq!(a[1].1.as_ref().unwrap().count, 6.0);
    assert!(a[2].1.is_none(), "the stale marker is a float");
    let b = &before[r#"h{job="b"}"#];
    assert_eq!(
        b[1].1.as_ref().unwrap().counter_reset_hint,
        CounterResetHint::Reset
    );
    assert_eq!(before.len(), 3);
    let s = Storage::open(&options).unwrap();
    assert_eq!(read(&s), before);
    assert_eq!(s.sample_count(), 1 + 4 + 1);
    // Deleting a range of a histogram series (tombstones replayed after a restart).
    let doomed = Selector {
        matchers: vec![dataflows::LabelMatcher::new("job", "=", "b").unwrap()],
    };
    s.delete_series(&[doomed], 25, 35).unwrap();
    drop(s);
    let s = Storage::open(&options).unwrap();
    assert_eq!(read(&s)[r#"h{job="b"}"#].len(), 1);
    // Histogram-only series survive truncation while they have samples after it;
    // those before it are dropped.
    s.append_histograms(vec![histogram_sample("b", 50, 2.0)])
        .unwrap();
    s.head().truncate_before(15);
    let after = read(&s);
    assert_eq!(after[r#"h{job="b"}"#].len(), 1);
}

/// Native histograms leave the head for blocks with the floats: eight hours of a
/// minute apart (a histogram-only series and one whose counts reset every 200
/// minutes, beside float series), with housekeeping every hour, are read back
/// identical (the counter-reset hints included) over a range spanning blocks and
/// head, after compaction, after a restart, through a deletion, its cleaning and
/// retention.
#[test]
fn histograms_are_cut_into_blocks_and_read_back_identical() {
    use dataflows::histogram::{CounterResetHint, FloatHistogram};
    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions::new(dir.path().to_path_buf());
    let (from, to) = (96 * HOUR, 104 * HOUR);
    let minutes = (to - from) / MINUTE;
    let n = |job: &str, i: i64| match job {
        "a" => (i + 1) as f64,
        _ => (i % 200 + 1) as f64,
    };
    // What was appended, with the hints the head gives them.
    let expected = |job: &str| -> Vec<(i64, FloatHistogram)> {
        (0..minutes)
            .map(|i| {
                let mut h = histogram_sample(job, 0, n(job, i)).histogram;
                h.counter_reset_hint = if i == 0 {
                    CounterResetHint::Unknown
                } else if n(job, i) < n(job, i - 1) {
                    CounterResetHint::Reset
                } else {
                    CounterResetHint::NotReset
                };
                (from + i * MINUTE, h)
            })
            .collect()
    };
    let read = |s: &Storage, job: &str, start: i64, end: i64| -> Vec<(i64, FloatHistogram)> {
        let sel = Selector {
            matchers: vec![
                dataflows::LabelMatcher::new("__name__", "=", "h").unwrap(),
                dataflows::LabelMatcher::new("job", "=", job).unwrap(),
            ],
        };
        let mut got = s.select_histograms(&sel, start, end);
        assert!(got.len() <= 1);
        got.pop().map(|(_, samples)| samples).unwrap_or_default()
    };
    let check = |s: &Storage, when: &str| {
        for job in ["a", "b"] {
            assert_eq!(
                read(s, job, i64::MIN, i64::MAX),
                expected(job),
                "h{{job={job}}} {when}"
            );
        }
        // The floats beside are untouched.
        let floats = s.select(&job("a"), i64::MIN, i64::MAX);
        assert_eq!(floats[0].1.len() as i64, minutes, "{when}");
    };
    {
        let s = Storage::open(&options).unwrap();
        for i in 0..minutes {
            let t = from + i * MINUTE;
            s.append(&[sample("a", t, i as f64), sample("b", t, 1.0)])
                .unwrap();
            let outcome = s
                .append_histograms(vec![
                    histogram_sample("a", t, n("a", i)),
                    histogram_sample("b", t, n("b", i)),
                ])
                .unwrap();
            assert_eq!(outcome.appended, 2);
            if t % HOUR == 0 {
                s.housekeeping(t);
            }
        }
        s.housekeeping(to);
        let blocks = s.blocks();
        // 96h-102h compacted into one 6h block, then 102h-104h.
        assert_eq!(
            blocks
                .iter()
                .map(|b| (b.min_t, b.max_t))
                .collect::<Vec<_>>(),
            vec![(96 * HOUR, 102 * HOUR)]
        );
        assert_eq!(blocks[0].histogram_samples, 2 * 360);
        assert_eq!(blocks[0].samples, 4 * 360);
        let head_min = s.head().time_range().unwrap().0;
        assert!(head_min >= 102 * HOUR - 2 * HOUR, "{head_min}");
        check(&s, "across blocks and head");
        // A range inside the block, and one across its end into the head.
        assert_eq!(
            read(&s, "b", 97 * HOUR, 97 * HOUR + 10 * MINUTE),
            expected("b")[60..=70].to_vec()
        );
        assert_eq!(
            read(&s, "b", 101 * HOUR, 103 * HOUR),
            expected("b")[300..=420].to_vec()
        );
        // A histogram-only series is listed for a part of a block.
        let listed = s.series_in_range(&[], 97 * HOUR, 97 * HOUR + MINUTE);
        assert_eq!(listed.len(), 4, "{listed:?}");
        // A snapshot (the head written as one more block) holds them too.
        let snapshot = dir.path().join("snapshot");
        s.snapshot(&snapshot, false).unwrap();
        check(
            &Storage::open(&StorageOptions::new(snapshot)).unwrap(),
            "in a snapshot",
        );
    }
    let s = Storage::open(&options).unwrap();
    check(&s, "after a restart");
    // Cut the rest into blocks: everything comes from blocks then (and with a
    // sample at 108h, 96h-102h and 102h-104h are compacted into 90h-108h).
    s.append(&[sample("c", to + 4 * HOUR, 1.0)]).unwrap();
    s.housekeeping(to + 4 * HOUR);
    assert_eq!(
        s.blocks()
            .iter()
            .map(|b| (b.min_t, b.max_t, b.histogram_samples))
            .collect::<Vec<_>>(),
        vec![(90 * HOUR, 108 * HOUR, 2 * minutes as u64)]
    );
    assert!(s
        .head()
        .select_histograms(&job("b"), 0, i64::MAX)
        .is_empty());
    check(&s, "from blocks only");

    // Deleting a range of the histogram series.
    let (del_from, del_to) = (100 * HOUR, 103 * HOUR);
    let b_sel = Selector {
        matchers: vec![
            dataflows::LabelMatcher::new("__name__", "=", "h").unwrap(),
            dataflows::LabelMatcher::new("job", "=", "b").unwrap(),
        ],
    };
    s.delete_series(std::slice::from_ref(&b_sel), del_from, del_to)
        .unwrap();
    let kept: Vec<(i64, FloatHistogram)> = expected("b")
        .into_iter()
        .filter(|(t, _)| *t < del_from || *t > del_to)
        .collect();
    assert_eq!(read(&s, "b", i64::MIN, i64::MAX), kept, "after delete");
    assert_eq!(s.clean_tombstones().unwrap(), 1);
    assert_eq!(read(&s, "b", i64::MIN, i64::MAX), kept, "after cleaning");
    assert_eq!(read(&s, "a", i64::MIN, i64::MAX), expected("a"));
    assert_eq!(
        s.blocks()[0].histogram_samples,
        2 * minutes as u64 - 181,
        "cleaning rewrote the block without them"
    );
    drop(s);

    // Retention (by time, from the newest sample) takes histograms with their block.
    let s = Storage::open(&StorageOptions {
        retention: Duration::from_secs(5 * 3600),
        ..options.clone()
    })
    .unwrap();
    assert_eq!(read(&s, "b", i64::MIN, i64::MAX), kept, "after restart");
    s.append_histograms(vec![histogram_sample("a", 115 * HOUR, 1.0)])
        .unwrap();
    s.housekeeping(115 * HOUR);
    assert!(s.blocks().is_empty(), "{:?}", s.blocks());
    assert!(read(&s, "b", i64::MIN, i64::MAX).is_empty());
    let a: Vec<i64> = read(&s, "a", i64::MIN, i64::MAX)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(a, vec![115 * HOUR]);
}
