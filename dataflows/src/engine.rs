//! The engine: owns the timely worker threads and is the service's only handle on them.
//!
//! Contract: [`Engine::feed`] hands a batch of samples to the dataflow, in columns
//! with the labels of the series not announced before, which it puts in the series
//! catalog ([`crate::catalog`], [`Engine::catalog`]) first; samples older than the
//! current watermark are late and only counted (but for the zero samples of starts
//! [`Engine::feed_with_start_zeros`] takes). A batch's native histograms
//! ([`SampleBatch::histograms`]) enter on a second input stream, routed to the rule
//! windows like the floats (see [`crate::sample`] for why apart); the latest-sample
//! table keeps floats only. [`Engine::advance_watermark`]
//! moves the input frontier (never backwards). Maintained outputs are read through
//! shared tables (e.g. [`Engine::latest`]); [`Engine::stats`] reports progress.
//! [`Engine::register`] installs a PromQL plan as a maintained rule (see
//! [`crate::render`]); its evaluations arrive on the returned handle's channel. Rule
//! registrations and removals enter the dataflow as data: a [`RuleChange`] on the first
//! worker's control input at the workers' current logical time, broadcast by the
//! dataflow to every worker, so each operator learns of rules from the stream it reads,
//! in time order with the samples. With [`EngineConfig::cluster`] the same dataflow
//! runs over a timely cluster of processes (see [`crate::render`], "Processes").
//!
//! Waking: the workers park without a timeout; every command (a batch, an advance, a
//! rule change) unparks the worker it is for, and timely's channels unpark the peers
//! they push to. An engine with no rule installed and nothing fed since the workers'
//! last advance has nothing that moving the frontier could release until the
//! latest-sample table's next retirement ([`LatestTable::retirement_due`]; never, if the
//! table is empty), so [`Engine::advance_watermark`] short of that only records the
//! watermark and the workers stay asleep; [`Engine::time_needed_from`] tells a clock
//! driving the watermark from when it has to advance it, and [`Engine::on_busy`] when
//! to look again.

use crate::catalog::SeriesCatalog;
use crate::latest::{LatestRetirer, LatestTable};
use crate::promql::eval::SeriesSource;
use crate::promql::plan::Plan;
use crate::render::alerting::AlertSpec;
use crate::render::dictionary::code_for_peers as code_labels_for_peers;
use crate::render::maintain::maintain_rules;
use crate::render::route::{announce_to_peers, code_for_peers, route_to_owners};
use crate::render::rule::{
    LocalRules, RuleChange, RuleCounters, RuleDef, RuleSpec, SeedSeries, RULE_ID_PROCESS_SHIFT,
};
use crate::render::seed::{place_seeds, OwnSeeds, SeedSlot};
use crate::render::spread::{combine_partials, join_sides};
use crate::render::{
    Delivery, Evaluation, RenderError, RuleHandle, RuleId, RuleOutput, RuleSchedule,
};
use crate::sample::{HistogramPoint, Point, SampleBatch};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::{empty, Operator};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Concat, Input, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle, Stream};

/// How to start the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads in this process.
    pub workers: usize,
    /// The lookback delta in milliseconds (Prometheus default: 5 minutes).
    pub lookback_ms: i64,
    /// This process's place in a timely cluster; `None`: one process.
    pub cluster: Option<ClusterConfig>,
    /// Spread one-to-one joins of two per-series plans (`rate(a[5m]) / rate(b[5m])`:
    /// sides exchanged by match key, [`crate::render::spread`]) instead of running
    /// them on one owner (promflow sets it). Each joiner keeps its match groups from
    /// one evaluation to the next and re-matches only those with a side element that
    /// came, left or changed, with the owned incremental join's matching
    /// ([`crate::render::incremental::SpreadJoin`]); the reference's join only where
    /// that cannot vouch for the result (a match group with two elements on a side:
    /// its errors). Measured with 50k series (`RULES_PART=4 RULES_BULK_RULE='rate(x[5m])
    /// / on (instance) rate(x[1m])' cargo bench --bench rules`, release, five runs on
    /// a quiet 2-core machine, 2026-12-07): spread on 2 workers 88–105 ms of wall and
    /// 153–182 ms of CPU per evaluation, owned on 1 worker 151–188 ms of wall and
    /// 153–190 ms of CPU: 0.51–0.61 of the wall time for the same CPU (before joiners
    /// kept state, on another machine, spread took 2.4–2.9× the owned join's CPU and
    /// more wall time than it).
    pub spread_joins: bool,
    /// Whether a rule is spread even where its owner would run the reference's
    /// evaluation over every element of its series at every evaluation
    /// ([`crate::render::spread::Spread::owner_bound`]: a per-series plan under
    /// operations that are not element-wise, `quantile`/`count_values`, a pair with a
    /// per-series side, a join under operations that are not element-wise, an
    /// aggregation of partials included, whose joiners make the partials). Off in
    /// promflow: such rules measured slower than owned (README, "Part 4"); on in the
    /// conformance suite's spread mode and the tests of those shapes.
    pub spread_owner_bound: bool,
}

/// A timely cluster of processes (timely's `CommunicationConfig::Cluster`): every
/// process runs the same dataflow with the same number of workers; process `i` listens
/// on `addresses[i]` and connects to the others (the service reads them from timely's
/// hostfile: `cluster.rs`). [`Engine::start`] returns once every process is connected.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The number of processes.
    pub processes: usize,
    /// This process's index, `0..processes`.
    pub process_id: usize,
    /// Every process's `host:port`, in process order.
    pub addresses: Vec<String>,
}

/// Progress counters, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineStats {
    /// The watermark given by the service (ms).
    pub watermark_ms: i64,
    /// The frontier the dataflow has fully processed (ms): the minimum over workers.
    pub frontier_ms: i64,
    /// Samples accepted into the dataflow.
    pub samples_fed: u64,
    /// Samples refused because they were older than the watermark.
    pub samples_late: u64,
    /// Samples held in maintained rules' windows (as of each worker's last retirement).
    pub rule_samples_retained: u64,
    /// Rule evaluations answered incrementally (per series and group). A spread
    /// rule's evaluation counts once per worker and local plan (its parts).
    pub rule_evaluations_incremental: u64,
    /// Rule evaluations of the whole plan (shapes without incremental evaluation,
    /// [`Evaluation::WholePlan`] rules, and incremental rules falling back).
    pub rule_evaluations_whole_plan: u64,
    /// Elements and groups recomputed by incremental evaluations: what changed, not
    /// the size of the result.
    pub rule_recomputations: u64,
    /// Rules installed since start ([`Engine::register`] and its variants).
    pub rules_installed: u64,
    /// Owned (not spread) rules this process's workers evaluate now, whichever
    /// process registered them (in a cluster, owned rules are placed on every
    /// process's workers).
    pub rules_owned: u64,
    /// Series in the catalog (id → labels).
    pub catalog_series: u64,
    /// Samples an operator skipped because the catalog did not know their series (a
    /// producer that did not announce it): 0 unless a producer breaks the contract.
    pub samples_unknown_series: u64,
    /// Samples sent to workers of other processes with their series id as a
    /// dictionary index (in one process: none).
    pub exchange_ids_indexed: u64,
    /// Series-id dictionary entries sent to other processes (an id crossing whole).
    pub exchange_id_entries: u64,
    /// Label sets of spread rules' records and remote rule outputs sent to other
    /// processes as a dictionary index, their labels known there (in one process:
    /// none).
    pub exchange_label_refs: u64,
    /// Label sets those records carried whole (once per sending worker, receiving
    /// worker and period).
    pub exchange_labels_sent: u64,
}

enum Command {
    /// A batch, and the zero samples of starts behind the watermark that came with it
    /// ([`Engine::feed_with_start_zeros`]), which the latest-sample table does not take.
    Samples(SampleBatch, Vec<Point>),
    Advance(u64),
    /// A change, and for an installation its seed series.
    Rule(RuleChange, Vec<SeedSeries>),
    Shutdown,
}

struct Feeder {
    senders: Vec<Sender<Command>>,
    threads: Vec<Thread>,
    watermark: u64,
    /// The watermark last sent to the workers (behind `watermark` while idle).
    sent: u64,
    /// Whether a batch or a rule change was sent since `sent` was sent.
    fed_since_sent: bool,
    next_worker: usize,
}

/// Called when an idle engine gets work: a batch fed or a rule installed or removed.
pub type BusyCallback = Arc<dyn Fn() + Send + Sync>;

/// The running dataflow.
pub struct Engine {
    feeder: Mutex<Feeder>,
    latest: LatestTable,
    catalog: Arc<SeriesCatalog>,
    /// The ids of the registered rules (the workers learn of them from the changes).
    /// The installed rules' schedules, by id.
    rules: Mutex<BTreeMap<u64, RuleSchedule>>,
    next_rule_id: AtomicU64,
    workers: usize,
    /// This process's index and the number of processes (0 and 1 without a cluster).
    process_id: usize,
    processes: usize,
    lookback_ms: i64,
    spread_joins: bool,
    spread_owner_bound: bool,
    worker_frontiers: Arc<Vec<AtomicU64>>,
    rule_retained: Arc<Vec<AtomicU64>>,
    rule_counters: Arc<RuleCounters>,
    /// The registered rules' output channels and seeds, until the workers take them.
    local: Arc<LocalRules>,
    /// This process's storage, which seeds the windows of rules other processes of the
    /// cluster register ([`Engine::set_seed_source`]).
    seed_source: SeedSlot,
    samples_fed: AtomicU64,
    samples_late: AtomicU64,
    rules_installed: AtomicU64,
    on_busy: Mutex<Option<BusyCallback>>,
    guards: Mutex<Option<timely::communication::WorkerGuards<()>>>,
}

/// Why [`Engine::start`] failed.
#[derive(Debug)]
pub enum EngineError {
    /// timely refused to start the workers; its message.
    Timely(String),
    /// The worker threads did not report in within 30 s.
    WorkersDidNotStart,
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Timely(m) => f.write_str(m),
            EngineError::WorkersDidNotStart => f.write_str("timely workers did not start"),
        }
    }
}

impl std::error::Error for EngineError {}

/// The rule changes of each logical time, released once the frontier passes it, in
/// one order on every worker: by the process that made them, each process's in the
/// order it made them (a broadcast delivers each source's changes in order, but
/// interleaves sources as they come). In one process, the order they were made.
fn in_change_order<'scope>(
    changes: Stream<'scope, u64, Vec<RuleChange>>,
) -> Stream<'scope, u64, Vec<RuleChange>> {
    changes.unary_frontier::<timely::container::CapacityContainerBuilder<Vec<RuleChange>>, _, _, _>(
        Pipeline,
        "InChangeOrder",
        |cap, _info| {
            drop(cap);
            let mut held: BTreeMap<
                u64,
                (
                    timely::dataflow::operators::Capability<u64>,
                    Vec<RuleChange>,
                ),
            > = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|time, batch| {
                    let Some(&t) = time.least() else { return };
                    held.entry(t)
                        .or_insert_with(|| (time.delayed(&t, 0), Vec::new()))
                        .1
                        .append(batch);
                });
                while let Some(entry) = held.first_entry().filter(|e| !frontier.less_equal(e.key()))
                {
                    let (cap, mut batch) = entry.remove();
                    batch.sort_by_key(RuleChange::origin);
                    output.session(&cap).give_container(&mut batch);
                }
            }
        },
    )
}

/// The least time not yet fully processed by this worker's dataflow.
fn frontier(probe: &ProbeHandle<u64>) -> u64 {
    probe.with_frontier(|f| f.iter().min().copied().unwrap_or(u64::MAX))
}

impl Engine {
    /// Starts `config.workers` timely worker threads with the ingest dataflow installed.
    pub fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        let workers = config.workers.max(1);
        let (process_id, processes) = config
            .cluster
            .as_ref()
            .map_or((0, 1), |c| (c.process_id, c.processes.max(1)));
        let first_worker = process_id * workers;
        let latest = LatestTable::new(workers);
        let catalog = Arc::new(SeriesCatalog::new(workers));
        let worker_catalog = catalog.clone();
        let worker_frontiers: Arc<Vec<AtomicU64>> =
            Arc::new((0..workers).map(|_| AtomicU64::new(0)).collect());
        let rule_retained: Arc<Vec<AtomicU64>> =
            Arc::new((0..workers).map(|_| AtomicU64::new(0)).collect());
        let retained = rule_retained.clone();
        let rule_counters: Arc<RuleCounters> = Default::default();
        let counters = rule_counters.clone();
        let local: Arc<LocalRules> = Default::default();
        let worker_local = local.clone();
        let seed_source: SeedSlot = Default::default();
        let worker_seed_source = seed_source.clone();
        let (senders, receivers): (Vec<Sender<Command>>, Vec<Receiver<Command>>) =
            (0..workers).map(|_| crossbeam_channel::unbounded()).unzip();
        let (thread_tx, thread_rx) = crossbeam_channel::unbounded::<(usize, Thread)>();

        let receivers = Arc::new(receivers);
        let table = latest.clone();
        let frontiers = worker_frontiers.clone();
        let lookback_ms = config.lookback_ms;
        let communication = match config.cluster.clone() {
            Some(cluster) if cluster.processes > 1 => timely::CommunicationConfig::Cluster {
                threads: workers,
                process: cluster.process_id,
                addresses: cluster.addresses,
                report: false,
                zerocopy: false,
            },
            _ => timely::CommunicationConfig::Process(workers),
        };
        let timely_config = timely::Config {
            communication,
            worker: timely::WorkerConfig::default().idle_spin(Duration::ZERO),
        };
        let guards = timely::execute(timely_config, move |worker| {
            // `index` among all workers of the cluster (what routing and placement
            // use), `local` among this process's (its commands, shards and gauges).
            let index = worker.index();
            let peers = worker.peers();
            let local = index - first_worker;
            let commands = receivers[local].clone();
            let _ = thread_tx.send((local, std::thread::current()));
            let catalog = worker_catalog.clone();
            let mut input: InputHandleVec<u64, Point> = InputHandleVec::new();
            let mut histogram_input: InputHandleVec<u64, HistogramPoint> = InputHandleVec::new();
            let mut control: InputHandleVec<u64, RuleChange> = InputHandleVec::new();
            let mut seed_input: InputHandleVec<u64, (RuleId, SeedSeries)> = InputHandleVec::new();
            let probe = ProbeHandle::new();
            let mut retirer =
                LatestRetirer::new(table.clone(), catalog.clone(), local, lookback_ms);
            let retained = retained.clone();
            let counters = counters.clone();
            let rules = worker_local.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                // The probe passes the samples on to the routing, in one chain: no copy
                // of each batch for a second consumer. The latest-sample table is not
                // fed from here (see `Engine::send_samples`).
                let samples = scope.input_from(&mut input).probe_with(&probe);
                let histograms = scope.input_from(&mut histogram_input).probe_with(&probe);
                // Rule changes enter on the first worker of the process that made them
                // and reach every worker of every process, in one order.
                // (In one process the broadcast keeps the one source's order: no
                // need to hold the changes until their time is complete.)
                let broadcast = scope.input_from(&mut control).broadcast();
                let changes = if processes > 1 {
                    in_change_order(broadcast)
                } else {
                    broadcast
                };
                // Seeds enter beside the changes and go to the workers keeping them.
                // The first worker of each process of a cluster seeds other
                // processes' rules from this process's storage.
                let own = (processes > 1 && local == 0).then(|| OwnSeeds {
                    process: process_id,
                    source: worker_seed_source.clone(),
                });
                let seeds = place_seeds(
                    scope.input_from(&mut seed_input),
                    changes.clone(),
                    peers,
                    own,
                );
                let routed = route_to_owners(samples, changes.clone(), catalog.clone(), peers);
                let routed_histograms =
                    route_to_owners(histograms, changes.clone(), catalog.clone(), peers);
                // Labels cross to another process with the samples that need them.
                let announcements = if processes > 1 {
                    let floats = announce_to_peers::<Point>(
                        routed.clone(),
                        catalog.clone(),
                        process_id,
                        workers,
                    );
                    let histograms = announce_to_peers::<HistogramPoint>(
                        routed_histograms.clone(),
                        catalog.clone(),
                        process_id,
                        workers,
                    );
                    floats.concat(histograms)
                } else {
                    empty(scope)
                };
                // Series ids cross to another process as dictionary indices.
                let routed = if processes > 1 {
                    code_for_peers(routed, index, process_id, workers, peers, counters.clone())
                } else {
                    routed
                };
                let partials = maintain_rules(
                    routed,
                    routed_histograms,
                    announcements,
                    seeds,
                    catalog,
                    changes.clone(),
                    index,
                    peers,
                    lookback_ms,
                    retained,
                    counters.clone(),
                    rules.clone(),
                );
                // Label sets cross to another process once per period, then as indices.
                let code = |records| {
                    if processes > 1 {
                        code_labels_for_peers(
                            records,
                            index,
                            process_id,
                            workers,
                            peers,
                            counters.clone(),
                        )
                    } else {
                        records
                    }
                };
                // A join's side elements meet by match group, then go to its owner.
                let partials = join_sides(code(partials), changes.clone(), peers);
                combine_partials(code(partials), changes, index, peers, rules).probe_with(&probe);
            });
            'run: loop {
                while let Ok(command) = commands.try_recv() {
                    match command {
                        Command::Samples(mut batch, behind) => {
                            // The feeder already refused late samples. One container
                            // handed over whole, not pushed point by point.
                            if !batch.histograms.is_empty() {
                                histogram_input.send_batch(&mut batch.histograms);
                            }
                            let mut points: Vec<Point> = batch.points().chain(behind).collect();
                            input.send_batch(&mut points);
                        }
                        Command::Advance(to) => {
                            if to > *input.time() {
                                input.advance_to(to);
                                histogram_input.advance_to(to);
                                control.advance_to(to);
                                seed_input.advance_to(to);
                            }
                        }
                        Command::Rule(change, seed) => {
                            if let RuleChange::Install(def) = &change {
                                let id = def.id;
                                let mut seed = seed.into_iter().map(|s| (id, s)).collect();
                                seed_input.send_batch(&mut seed);
                            }
                            control.send(change);
                        }
                        Command::Shutdown => break 'run,
                    }
                }
                seed_input.flush();
                control.flush();
                histogram_input.flush();
                input.flush();
                // Every sample fed before the advances above is in the table already.
                retirer.advance(*input.time());
                // No timeout: every command unparks this thread after it is sent, and
                // timely unparks it for its peers' messages and progress.
                worker.step_or_park(None);
                frontiers[local].store(frontier(&probe), Ordering::Relaxed);
            }
            drop(input);
            drop(histogram_input);
            drop(control);
            drop(seed_input);
            while !probe.done() {
                worker.step_or_park(Some(Duration::from_millis(10)));
            }
        })
        .map_err(EngineError::Timely)?;

        let mut threads: Vec<Option<Thread>> = vec![None; workers];
        for _ in 0..workers {
            let (index, thread) = thread_rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| EngineError::WorkersDidNotStart)?;
            threads[index] = Some(thread);
        }
        Ok(Engine {
            feeder: Mutex::new(Feeder {
                senders,
                threads: threads.into_iter().flatten().collect(),
                watermark: 0,
                sent: 0,
                fed_since_sent: false,
                next_worker: 0,
            }),
            latest,
            catalog,
            rules: Mutex::new(BTreeMap::new()),
            next_rule_id: AtomicU64::new(0),
            workers,
            process_id,
            processes,
            lookback_ms: config.lookback_ms,
            spread_joins: config.spread_joins,
            spread_owner_bound: config.spread_owner_bound,
            worker_frontiers,
            rule_retained,
            rule_counters,
            local,
            seed_source,
            samples_fed: AtomicU64::new(0),
            samples_late: AtomicU64::new(0),
            rules_installed: AtomicU64::new(0),
            on_busy: Mutex::new(None),
            guards: Mutex::new(Some(guards)),
        })
    }

    /// Feeds a batch into the dataflow: its new series' labels go into the catalog
    /// (late samples' too), then its samples to a worker. Samples older than the
    /// watermark are late: counted, not fed. Returns how many were fed. A `Vec` of
    /// [`crate::Sample`]s announces every series it holds.
    pub fn feed(&self, samples: impl Into<SampleBatch>) -> usize {
        let fed = self.send_samples(samples.into(), false);
        if fed > 0 {
            self.busy();
        }
        fed
    }

    /// Like [`Engine::feed`], for a batch whose start timestamps mark only the zero
    /// samples of starts ([`crate::is_start_zero`]; what storage stored of a batch,
    /// see [`SampleBatch::keep_start_zero_marks`]), each right before the sample that
    /// brought its start. A zero sample older than the watermark is not late when
    /// that sample is not: it enters at the workers' current logical time, with the
    /// samples of its batch, and the windows place it by its timestamp (when the
    /// sample is late, or not there, it goes uncounted). So every
    /// evaluation from then on reads it, as an evaluation over storage does (Prometheus
    /// 3.x's rules read storage, which holds it); an evaluation already made between
    /// the start and the batch is not made again (Prometheus made it before the
    /// sample that brought the start was appended, too). The latest-sample table does
    /// not take those zero samples (the sample after each is newer), and the marks do
    /// not enter the dataflow: the samples have no start timestamps there.
    pub fn feed_with_start_zeros(&self, samples: impl Into<SampleBatch>) -> usize {
        let fed = self.send_samples(samples.into(), true);
        if fed > 0 {
            self.busy();
        }
        fed
    }

    /// Sends `samples` to a worker; with `start_zeros` as
    /// [`Engine::feed_with_start_zeros`].
    fn send_samples(&self, mut samples: SampleBatch, start_zeros: bool) -> usize {
        for (id, labels) in samples.new_series.drain(..) {
            self.catalog.announce(id, &labels);
        }
        let mut feeder = self.feeder.lock();
        let watermark = feeder.watermark as i64;
        let (behind, behind_histograms) = if start_zeros {
            samples.take_start_zeros_before(watermark)
        } else {
            Default::default()
        };
        let late = samples.retain_by_time(|t| t >= watermark);
        if late > 0 {
            self.samples_late.fetch_add(late as u64, Ordering::Relaxed);
        }
        samples.histograms.extend(behind_histograms);
        let fed = samples.len() + samples.histograms.len() + behind.len();
        if fed == 0 {
            return 0;
        }
        self.samples_fed.fetch_add(fed as u64, Ordering::Relaxed);
        feeder.fed_since_sent = true;
        // Under the feeder lock, so the table has the batch before any later advance
        // lets a worker retire by a frontier past it.
        self.latest.apply_fed(&samples, &self.catalog);
        // Any worker will do: the dataflow exchanges samples by series id.
        let worker = feeder.next_worker % feeder.senders.len();
        feeder.next_worker = feeder.next_worker.wrapping_add(1);
        let _ = feeder.senders[worker].send(Command::Samples(samples, behind));
        feeder.threads[worker].unpark();
        fed
    }

    /// Moves the input frontier to `to_ms` (ignored if not ahead of the current one).
    /// Short of [`Engine::time_needed_from`] the watermark is only recorded: the
    /// workers, with nothing to release, are not woken for it.
    pub fn advance_watermark(&self, to_ms: i64) {
        let mut feeder = self.feeder.lock();
        let to = to_ms.max(0) as u64;
        if to <= feeder.watermark {
            return;
        }
        feeder.watermark = to;
        if self
            .time_needed_locked(&feeder)
            .is_none_or(|from| from > to as i64)
        {
            return;
        }
        feeder.sent = to;
        feeder.fed_since_sent = false;
        for (sender, thread) in feeder.senders.iter().zip(&feeder.threads) {
            let _ = sender.send(Command::Advance(to));
            thread.unpark();
        }
    }

    /// Registers `plan` as a maintained rule evaluated at the times `schedule` gives,
    /// starting from the current watermark with empty windows (see
    /// [`crate::render`]). Plans the maintained mode cannot run are refused with
    /// [`RenderError::NotSupported`].
    ///
    /// ```
    /// use dataflows::{Engine, EngineConfig, Labels, Sample};
    /// use dataflows::promql::plan::parse;
    /// use dataflows::render::RuleSchedule;
    /// use std::sync::Arc;
    ///
    /// let engine = Engine::start(EngineConfig { workers: 2, lookback_ms: 300_000, cluster: None, spread_joins: false, spread_owner_bound: false }).unwrap();
    /// let rule = engine
    ///     .register(parse("sum(x)").unwrap(), RuleSchedule::At { at_ms: 1_000 })
    ///     .unwrap();
    /// let labels = Labels::from_pairs(vec![("__name__".into(), "x".into())]);
    /// engine.feed(vec![Sample {
    ///     series_id: labels.hash(),
    ///     labels: Arc::new(labels),
    ///     timestamp_ms: 500,
    ///     value: 2.0,
    ///     start_ms: 0,
    /// }]);
    /// engine.advance_watermark(1_001);
    /// let out = rule.output.recv().unwrap();
    /// assert_eq!(out.eval_ms, 1_000);
    /// assert_eq!(out.samples().unwrap()[0].1, 2.0);
    /// ```
    pub fn register(&self, plan: Plan, schedule: RuleSchedule) -> Result<RuleHandle, RenderError> {
        self.install(plan, schedule, Evaluation::Incremental, None)
    }

    /// Like [`Engine::register`], choosing how each evaluation is made (whole-plan
    /// rules are the baseline incremental ones are compared with).
    pub fn register_with(
        &self,
        plan: Plan,
        schedule: RuleSchedule,
        evaluation: Evaluation,
    ) -> Result<RuleHandle, RenderError> {
        self.install(plan, schedule, evaluation, None)
    }

    /// In a timely cluster: this process's storage, from which it seeds the windows of
    /// the rules other processes register seeded ([`crate::render::seed`]). Set it once
    /// the storage is open and before the watermark first advances (a rule registered
    /// before is seeded without this process's series). Nothing in one process.
    pub fn set_seed_source(&self, source: Arc<dyn SeriesSource + Send + Sync>) {
        *self.seed_source.lock() = Some(source);
    }

    /// Like [`Engine::register`], with the windows the first evaluation reads seeded
    /// from `history` (e.g. storage), so results are exact from the first evaluation.
    /// In a cluster `history` is this process's: each other process seeds them from
    /// its own ([`Engine::set_seed_source`]).
    pub fn register_seeded(
        &self,
        plan: Plan,
        schedule: RuleSchedule,
        history: &dyn SeriesSource,
    ) -> Result<RuleHandle, RenderError> {
        self.install(plan, schedule, Evaluation::Incremental, Some(history))
    }

    /// Like [`Engine::register_seeded`], with the evaluations sent to `output`, which
    /// several rules may share (each [`RuleOutput`] names its rule): one channel to
    /// wait on for a whole rule group. The channel closes once every rule sending to
    /// it was removed. `delivery` says whether each output is the whole result.
    pub fn register_seeded_to(
        &self,
        plan: Plan,
        schedule: RuleSchedule,
        history: &dyn SeriesSource,
        output: crossbeam_channel::Sender<RuleOutput>,
        delivery: Delivery,
    ) -> Result<RuleId, RenderError> {
        self.register_history_to(plan, schedule, history, output, delivery, None)
    }

    /// Like [`Engine::register_seeded_to`], for an alerting rule whose alert state is
    /// stepped in the dataflow ([`crate::render::alerting`]): its owner runs an alert
    /// stage from `alerting` beside each evaluation, and each output carries the
    /// stage's step ([`RuleOutput::alerts`]). The schedule must be an interval
    /// ([`RenderError::BadSchedule`] else). A spread rule's stage runs in its owner's
    /// combiner, beside the combined result.
    pub fn register_alerting_to(
        &self,
        plan: Plan,
        schedule: RuleSchedule,
        history: &dyn SeriesSource,
        output: crossbeam_channel::Sender<RuleOutput>,
        delivery: Delivery,
        alerting: AlertSpec,
    ) -> Result<RuleId, RenderError> {
        let alerting = Some(Arc::new(alerting));
        self.register_history_to(plan, schedule, history, output, delivery, alerting)
    }

    /// [`Engine::register_seeded_to`] and [`Engine::register_alerting_to`]: an
    /// incremental rule seeded from `history`, with or without an alert stage.
    fn register_history_to(
        &self,
        plan: Plan,
        schedule: RuleSchedule,
        history: &dyn SeriesSource,
        output: crossbeam_channel::Sender<RuleOutput>,
        delivery: Delivery,
        alerting: Option<Arc<AlertSpec>>,
    ) -> Result<RuleId, RenderError> {
        let id = self.install_locked(
            plan,
            schedule,
            Evaluation::Incremental,
            delivery,
            Some(history),
            output,
            alerting,
        )?;
        self.busy();
        Ok(id)
    }

    fn install(
        &self,
        plan: Plan,
        schedule: RuleSchedule,
        evaluation: Evaluation,
        history: Option<&dyn SeriesSource>,
    ) -> Result<RuleHandle, RenderError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let id = self.install_locked(
            plan,
            schedule,
            evaluation,
            Delivery::Whole,
            history,
            tx,
            None,
        )?;
        self.busy();
        Ok(RuleHandle { id, output: rx })
    }

    #[allow(clippy::too_many_arguments)]
    fn install_locked(
        &self,
        plan: Plan,
        schedule: RuleSchedule,
        evaluation: Evaluation,
        delivery: Delivery,
        history: Option<&dyn SeriesSource>,
        tx: crossbeam_channel::Sender<RuleOutput>,
        alerting: Option<Arc<AlertSpec>>,
    ) -> Result<RuleId, RenderError> {
        // Under the feeder lock: the change reaches every worker's control input before
        // any sample fed after it, at the logical time those samples will have.
        let mut feeder = self.feeder.lock();
        let counter = self.next_rule_id.fetch_add(1, Ordering::Relaxed) + 1;
        let id = RuleId(((self.process_id as u64) << RULE_ID_PROCESS_SHIFT) | counter);
        let def = RuleDef {
            id,
            plan,
            schedule,
            evaluation,
            delivery,
            registered_at_ms: feeder.watermark as i64,
            lookback_ms: self.lookback_ms,
            home_process: self.process_id,
            process_workers: self.workers,
            spread_joins: self.spread_joins,
            spread_owner_bound: self.spread_owner_bound,
            seeded: history.is_some(),
            alerting,
        };
        // The same analysis every operator makes of the change: refused here, the
        // change is never sent.
        let spec = RuleSpec::analyse(&def, self.workers * self.processes)?;
        // Sent beside the change, to the workers keeping the windows it fills.
        let seed = history.map(|h| spec.seed(h)).unwrap_or_default();
        self.local.insert(id, tx);
        self.rules.lock().insert(id.0, schedule);
        self.rules_installed.fetch_add(1, Ordering::Relaxed);
        Self::broadcast(&mut feeder, RuleChange::Install(Arc::new(def)), seed);
        Ok(id)
    }

    /// Sends a rule change to this process's first worker's control input, from which
    /// the dataflow broadcasts it to every worker (of every process). The workers apply
    /// it once the frontier passes its time: the next advance must reach them.
    fn broadcast(feeder: &mut Feeder, change: RuleChange, seed: Vec<SeedSeries>) {
        feeder.fed_since_sent = true;
        let _ = feeder.senders[0].send(Command::Rule(change, seed));
        feeder.threads[0].unpark();
    }

    /// Removes a rule; its state is dropped and its channel closes once the workers
    /// have applied the removal (at the next advance of the watermark). Whether it
    /// existed.
    pub fn unregister(&self, id: RuleId) -> bool {
        let existed = {
            let mut feeder = self.feeder.lock();
            let existed = self.rules.lock().remove(&id.0).is_some();
            if existed {
                Self::broadcast(&mut feeder, RuleChange::Remove(id), Vec::new());
            }
            existed
        };
        if existed {
            self.busy();
        }
        existed
    }

    /// From which watermark (ms) moving it releases something; `None`: nothing until
    /// [`Engine::on_busy`]'s callback runs (the engine is idle). `Some(i64::MIN)` (any
    /// watermark, so a clock keeps ticking) while a batch or a rule change (a removal
    /// waits for it) was sent since the workers' last advance, the workers have not
    /// processed the last advance (the table may still take series), or an on-arrival
    /// or range rule is installed (samples leave its windows as time passes);
    /// otherwise the earliest of the interval and one-shot rules' next evaluation
    /// (released once the frontier passes its time) and the latest-sample table's next
    /// retirement ([`LatestTable::retirement_due`]). A clock advancing the watermark
    /// may sleep until then.
    pub fn time_needed_from(&self) -> Option<i64> {
        self.time_needed_locked(&self.feeder.lock())
    }

    fn time_needed_locked(&self, feeder: &Feeder) -> Option<i64> {
        // In a cluster, other processes' rules need this process's input to advance.
        if self.processes > 1 || feeder.fed_since_sent || self.processed() < feeder.sent {
            return Some(i64::MIN);
        }
        // Times before `sent` are released; the next evaluation at `t >= sent` is once
        // the frontier is past it.
        let sent = feeder.sent.min(i64::MAX as u64) as i64;
        let mut from = i64::MAX;
        for schedule in self.rules.lock().values() {
            let next = match *schedule {
                RuleSchedule::Interval { start_ms, every_ms } => {
                    let every = every_ms.max(1);
                    let behind = (sent - start_ms).max(0);
                    start_ms + (behind + every - 1) / every * every
                }
                RuleSchedule::At { at_ms } if at_ms >= sent => at_ms,
                RuleSchedule::At { .. } => continue,
                RuleSchedule::Range { .. } | RuleSchedule::OnArrival => return Some(i64::MIN),
            };
            from = from.min(next.saturating_add(1));
        }
        let retirement = self.latest.retirement_due(self.lookback_ms);
        from = from.min(retirement.min(i64::MAX as u64) as i64);
        (from != i64::MAX).then_some(from)
    }

    /// Sets the callback run (on the feeding or registering thread, after the fact)
    /// whenever a batch is fed or a rule installed or removed: work an idle engine
    /// needs time for.
    pub fn on_busy(&self, callback: BusyCallback) {
        *self.on_busy.lock() = Some(callback);
    }

    fn busy(&self) {
        let callback = self.on_busy.lock().clone();
        if let Some(callback) = callback {
            callback();
        }
    }

    /// The lookback delta (ms) the engine was started with.
    pub fn lookback_ms(&self) -> i64 {
        self.lookback_ms
    }

    /// The series catalog (id → labels) the workers read.
    pub fn catalog(&self) -> &SeriesCatalog {
        &self.catalog
    }

    /// The maintained latest-sample table (federation output).
    pub fn latest(&self) -> &LatestTable {
        &self.latest
    }

    /// The watermark (ms): a sample older than this is late ([`Engine::feed`]).
    pub fn watermark_ms(&self) -> i64 {
        self.feeder.lock().watermark as i64
    }

    /// Progress counters.
    pub fn stats(&self) -> EngineStats {
        let (watermark, frontier) = self.watermark_and_frontier();
        EngineStats {
            watermark_ms: watermark,
            frontier_ms: frontier,
            samples_fed: self.samples_fed.load(Ordering::Relaxed),
            samples_late: self.samples_late.load(Ordering::Relaxed),
            rule_samples_retained: self
                .rule_retained
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .sum(),
            rule_evaluations_incremental: self.rule_counters.incremental.load(Ordering::Relaxed),
            rule_evaluations_whole_plan: self.rule_counters.whole_plan.load(Ordering::Relaxed),
            rule_recomputations: self.rule_counters.recomputed.load(Ordering::Relaxed),
            rules_installed: self.rules_installed.load(Ordering::Relaxed),
            rules_owned: self.rule_counters.owned.load(Ordering::Relaxed),
            catalog_series: self.catalog.len() as u64,
            samples_unknown_series: self.catalog.missing(),
            exchange_ids_indexed: self.rule_counters.ids_indexed.load(Ordering::Relaxed),
            exchange_id_entries: self.rule_counters.id_entries.load(Ordering::Relaxed),
            exchange_label_refs: self.rule_counters.label_refs.load(Ordering::Relaxed),
            exchange_labels_sent: self.rule_counters.labels_sent.load(Ordering::Relaxed),
        }
    }

    /// The time (ms) before which every sample fed has been processed and every
    /// evaluation due has been emitted: [`EngineStats::frontier_ms`] alone, for a
    /// caller asking often (a rule group on arrival, at each wake-up).
    pub fn frontier_ms(&self) -> i64 {
        self.watermark_and_frontier().1
    }

    /// The watermark and the processed frontier (ms).
    fn watermark_and_frontier(&self) -> (i64, i64) {
        let (watermark, sent, idle) = {
            let feeder = self.feeder.lock();
            let idle = self
                .time_needed_locked(&feeder)
                .is_none_or(|from| from > feeder.watermark as i64);
            (feeder.watermark, feeder.sent, idle)
        };
        let mut frontier = self.processed();
        // Nothing due through the recorded watermark and the workers through the last
        // advance sent: nothing fed since, so everything before it is processed too.
        if idle && frontier >= sent {
            frontier = watermark;
        }
        (watermark as i64, frontier.min(i64::MAX as u64) as i64)
    }

    /// The frontier every worker has processed (ms).
    fn processed(&self) -> u64 {
        self.worker_frontiers
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Stops the workers and waits for them.
    pub fn shutdown(&self) {
        {
            let feeder = self.feeder.lock();
            for (sender, thread) in feeder.senders.iter().zip(&feeder.threads) {
                let _ = sender.send(Command::Shutdown);
                thread.unpark();
            }
        }
        if let Some(guards) = self.guards.lock().take() {
            drop(guards.join());
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::sample::{Sample, STALE_MARKER};
    use std::time::Instant;

    fn sample(name: &str, instance: &str, ts: i64, value: f64) -> Sample {
        let labels = Labels::from_pairs(vec![
            ("__name__".into(), name.into()),
            ("instance".into(), instance.into()),
        ]);
        Sample {
            series_id: labels.hash(),
            labels: Arc::new(labels),
            timestamp_ms: ts,
            value,
            start_ms: 0,
        }
    }

    fn wait_for_frontier(engine: &Engine, at_least: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while engine.stats().frontier_ms < at_least {
            assert!(
                Instant::now() < deadline,
                "frontier stuck at {:?}",
                engine.stats()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn live(engine: &Engine, at: i64) -> Vec<(String, i64, f64)> {
        let mut out = Vec::new();
        engine.latest().for_each_live(
            || at,
            300_000,
            |e| out.push((e.labels.to_string(), e.timestamp_ms, e.value)),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn keeps_the_newest_sample_per_series_across_workers() {
        let engine = Engine::start(EngineConfig {
            workers: 3,
            lookback_ms: 300_000,
            cluster: None,
            spread_joins: false,
            spread_owner_bound: false,
        })
        .unwrap();
        let batch: Vec<Sample> = (0..50)
            .flat_map(|i| {
                vec![
                    sample("m", &format!("h{i}"), 1_000, i as f64),
                    sample("m", &format!("h{i}"), 2_000, i as f64 + 0.5),
                ]
            })
            .collect();
        assert_eq!(engine.feed(batch), 100);
        // An older sample arriving after a newer one does not win.
        engine.feed(vec![sample("m", "h0", 1_500, -1.0)]);
        engine.advance_watermark(3_000);
        wait_for_frontier(&engine, 3_000);
        let rows = live(&engine, 3_000);
        assert_eq!(rows.len(), 50);
        assert!(rows.iter().all(|(_, ts, _)| *ts == 2_000));
        assert_eq!(rows[0], (r#"m{instance="h0"}"#.to_string(), 2_000, 0.5));
    }

    #[test]
    fn late_samples_are_counted_not_fed() {
        let engine = Engine::start(EngineConfig {
            workers: 2,
            lookback_ms: 300_000,
            cluster: None,
            spread_joins: false,
            spread_owner_bound: false,
        })
        .unwrap();
        engine.advance_watermark(10_000);
        assert_eq!(engine.feed(vec![sample("m", "a", 9_999, 1.0)]), 0);
        assert_eq!(engine.feed(vec![sample("m", "a", 10_000, 2.0)]), 1);
        let stats = engine.stats();
        assert_eq!((stats.samples_late, stats.samples_fed), (1, 1));
    }

    #[test]
    fn stale_markers_hide_and_lookback_retires() {
        let engine = Engine::start(EngineConfig {
            workers: 2,
            lookback_ms: 300_000,
            cluster: None,
            spread_joins: false,
            spread_owner_bound: false,
        })
        .unwrap();
        engine.feed(vec![
            sample("m", "a", 1_000, 1.0),
            sample("m", "b", 1_000, 1.0),
        ]);
        engine.feed(vec![sample("m", "a", 2_000, STALE_MARKER)]);
        engine.advance_watermark(2_500);
        wait_for_frontier(&engine, 2_500);
        let rows = live(&engine, 2_500);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].0, r#"m{instance="b"}"#);
        // Past the lookback delta nothing is live and the table has been emptied.
        engine.advance_watermark(400_000);
        wait_for_frontier(&engine, 400_000);
        // Retirement happens on the next activation after the frontier moved.
        engine.advance_watermark(402_000);
        wait_for_frontier(&engine, 402_000);
        assert!(live(&engine, 402_000).is_empty());
        assert_eq!(engine.latest().len(), 0);
    }

    /// An idle engine records advances without waking its workers and reports itself
    /// caught up with them; a batch or a rule makes it busy (the callback runs) and
    /// advances reach the workers again.
    #[test]
    fn an_idle_engine_needs_no_time_until_fed_or_given_a_rule() {
        let engine = Engine::start(EngineConfig {
            workers: 2,
            lookback_ms: 300_000,
            cluster: None,
            spread_joins: false,
            spread_owner_bound: false,
        })
        .unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        engine.on_busy(Arc::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        assert_eq!(engine.time_needed_from(), None);
        engine.advance_watermark(5_000);
        let stats = engine.stats();
        assert_eq!((stats.watermark_ms, stats.frontier_ms), (5_000, 5_000));
        assert_eq!(
            engine.feeder.lock().sent,
            0,
            "an idle advance reached the workers"
        );

        engine.feed(vec![sample("m", "a", 5_000, 1.0)]);
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(engine.time_needed_from(), Some(i64::MIN));
        assert!(engine.stats().frontier_ms < 5_001);
        engine.advance_watermark(6_000);
        wait_for_frontier(&engine, 6_000);
        assert_eq!(live(&engine, 6_000).len(), 1);
        // The series is in the table until the lookback retires it, the frontier past
        // its sample's time + lookback: nothing to do until then, the workers not
        // woken for an advance short of it.
        assert_eq!(engine.time_needed_from(), Some(5_000 + 300_000 + 1));
        engine.advance_watermark(305_000);
        assert_eq!(engine.feeder.lock().sent, 6_000, "woken for nothing");
        assert_eq!(engine.stats().frontier_ms, 305_000);
        engine.advance_watermark(305_001);
        assert_eq!(engine.feeder.lock().sent, 305_001);
        wait_for_frontier(&engine, 305_001);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !engine.latest().is_empty() {
            assert!(Instant::now() < deadline, "not retired");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(engine.time_needed_from(), None);

        let idle = Engine::start(EngineConfig {
            workers: 1,
            lookback_ms: 300_000,
            cluster: None,
            spread_joins: false,
            spread_owner_bound: false,
        })
        .unwrap();
        let counter = calls.clone();
        idle.on_busy(Arc::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        let rule = idle
            .register(
                crate::promql::plan::parse("vector(1)").unwrap(),
                RuleSchedule::Interval {
                    start_ms: 0,
                    every_ms: 1_000,
                },
            )
            .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(idle.time_needed_from(), Some(i64::MIN));
        idle.advance_watermark(2_001);
        let out = rule.output.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(out.eval_ms, 0);
        // An interval rule needs time only from its next evaluation (once past it).
        wait_for_frontier(&idle, 2_001);
        assert_eq!(idle.time_needed_from(), Some(3_001));
        idle.advance_watermark(3_000);
        assert_eq!(idle.feeder.lock().sent, 2_001, "woken for nothing");
        idle.advance_watermark(3_001);
        assert_eq!(idle.feeder.lock().sent, 3_001);
        let evaluated: Vec<i64> = (0..3)
            .map(|_| {
                rule.output
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap()
                    .eval_ms
            })
            .collect();
        assert_eq!(evaluated, [1_000, 2_000, 3_000]);
    }

    /// Every one of many advances, with pauses in between that let the workers park,
    /// is seen (and the on-arrival evaluation it releases comes out) within a second,
    /// in practice within a few ms. The workers park without a timeout, so a wake-up
    /// missed on this command path would hang here until the assertion fails.
    #[test]
    fn every_advance_wakes_the_workers() {
        let engine = Engine::start(EngineConfig {
            workers: 2,
            lookback_ms: 300_000,
            cluster: None,
            spread_joins: false,
            spread_owner_bound: false,
        })
        .unwrap();
        let rule = engine
            .register(
                crate::promql::plan::parse("sum(m)").unwrap(),
                RuleSchedule::OnArrival,
            )
            .unwrap();
        let mut rng = 19u64;
        let mut worst = Duration::ZERO;
        for k in 1..=1_000i64 {
            let t = k * 1_000;
            engine.feed(vec![sample("m", &format!("h{}", k % 5), t - 1, 1.0)]);
            let at = Instant::now();
            engine.advance_watermark(t);
            while engine.stats().frontier_ms < t {
                assert!(
                    at.elapsed() < Duration::from_secs(1),
                    "advance {k}: frontier stuck at {:?}",
                    engine.stats()
                );
                std::thread::yield_now();
            }
            // The rule's evaluation at the sample's time comes out too.
            loop {
                let out = rule
                    .output
                    .recv_timeout(Duration::from_secs(1).saturating_sub(at.elapsed()))
                    .unwrap_or_else(|_| panic!("advance {k}: no evaluation at {}", t - 1));
                if out.eval_ms >= t - 1 {
                    break;
                }
            }
            worst = worst.max(at.elapsed());
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            std::thread::sleep(Duration::from_micros(rng >> 54));
        }
        eprintln!("slowest advance seen after {worst:?}");
    }
}
