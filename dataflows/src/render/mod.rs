//! Rendering: registered PromQL plans maintained as samples stream in.
//!
//! The service registers an expression with [`crate::Engine::register`] (a [`Plan`]
//! and a [`RuleSchedule`]) and reads `(eval_time, result)` from the returned
//! [`RuleHandle`]'s channel once the input frontier passes what the evaluation at
//! that time reads. Results equal the reference evaluator's `instant(plan, t)` over
//! the same samples.
//!
//! ```text
//! rule changes ──(control input of every worker, at a logical time)──┐
//!                                                                    │ each operator's
//! samples ──(every worker)── route.rs: keep samples some rule reads, │ own Registry
//!                            tag with the worker keeping the window ◄┤
//!         ──exchange(worker)── maintain.rs: per-worker host of its rules ◄┤
//!                                │  window.rs: one retained window per selector,
//!                                │             shared by the worker's rules
//!                                ├─ incremental.rs: per-series / per-group state of
//!                                │  rules of an incremental shape (shape.rs)
//!                                ├─ else the reference evaluator over the windows
//!                                │  at each ready evaluation time → RuleOutput channel
//!                                │  (owner in another process than the rule's home:
//!                                │  ──exchange(home)── spread.rs → RuleOutput channel)
//!                                └─ spread rules: partials per group ──exchange(owner)──
//!                                   (join sides ──exchange(match key)── joined ──)
//!                                   spread.rs: combined → RuleOutput channel ◄┘
//! seeds (storage, at registration) ──seed.rs ──exchange(window keeper)──> maintain.rs
//! ```
//!
//! Files: [`alert_state`] (an alerting rule's alert state machine, pure),
//! [`alerting`] (the alert stage stepping it beside a rule's results, for an interval
//! rule registered with an [`alerting::AlertSpec`],
//! [`crate::Engine::register_alerting_to`]: run by the owner's rule host for an owned
//! rule, by the owner's combiner for a spread one; and the mirror applying the
//! stage's steps, for the rule's home),
//! [`dictionary`] (label sets of records crossing processes, coded by period),
//! [`extent`] (what a plan reads at `t`), [`rule`] (registration, schedules,
//! rule changes, registry, routing table), [`route`] (routing operator), [`seed`]
//! (seed series sent to the workers keeping the windows), [`window`]
//! (retained windows), [`shape`] (which plans are incremental), [`incremental`] (their
//! per-series and per-group state), [`maintain`] (the evaluation operator), [`spread`]
//! (rules spread over the workers, and the combine operator).
//!
//! **Rules as data.** A registration or removal (a replacement is a removal and a
//! registration) is a [`rule::RuleChange`] that every worker receives on its control
//! stream at the logical time it was made (the registering engine's watermark;
//! broadcast from its first worker, see "Processes"). Each operator (router, rule host, combiner) keeps its
//! own [`rule::Registry`] built from the changes it received, applied in time order
//! before the samples of the same time; placement is a function of that sequence, so
//! every worker decides the same. A change is data ([`rule::RuleDef`]: id, plan,
//! schedule, evaluation, delivery, registration watermark, lookback, home process and
//! its workers; serde), and each operator builds its own [`rule::RuleSpec`] from it (the analysis is
//! deterministic; [`crate::Engine::register`] makes it first, so a refusal reaches the
//! caller and a refused rule is never sent). What cannot cross processes stays in the
//! registering engine's [`rule::LocalRules`], by rule id: the output channel, taken by
//! the one operator that delivers the rule's results (the owner's rule host; for a
//! rule owned in another process, the combiner of its home process's first worker;
//! for a spread rule the owner's combiner), which drops it when it applies the removal
//! (the channel then closes). The seed is data beside the change ([`seed`]): the
//! registering process's first worker sends each seed series to the worker keeping
//! its window, at the change's time.
//!
//! **Distribution.** A rule of the spread shape ([`spread`]: any aggregation —
//! `sum avg min max count group stddev stdvar topk bottomk limitk limit_ratio quantile
//! count_values`, with a constant parameter — by/without over a per-series plan of one
//! named selector (`rate(x[5m])`, `x * 8`, `rate(x[5m]) > 0`; no label functions
//! inside), with any operations after it whose other operands are constants, strings
//! or `time()` (`> 10`, `histogram_quantile(0.99, …)`, `count(…)`,
//! `scalar(…)`, `label_replace(…)`; nested aggregations spread the innermost), at
//! interval, `At` or range schedules, with more than one worker) runs on every worker:
//! each keeps the window of the series whose id (modulo the workers) is its own,
//! evaluates its part over them incrementally and sends it to the rule's owner, which
//! combines the parts once every worker's of that evaluation is in: one partial per
//! group (sums, counts, extremes; sum and count for `avg`; count, mean and M2 for
//! `stddev`/`stdvar`), each worker's top k per group for `topk`/`bottomk`/`limitk`, the
//! members themselves for `quantile`/`count_values` (picked and gathered members cross
//! unfinished, as a union's elements below, and the owner finishes the whole result;
//! an aggregation of partials under
//! operations that depend on the order of its groups, `topk(5, sum by (job) (…))`, is
//! owned: ties fall in the reference's order of the groups, which only the members
//! tell, and gathering them measured slower than owning the rule); the
//! operations after the aggregation run on the owner, by the reference over the
//! combined result. Per-series work is spread too: a per-series plan of
//! one named selector (`up == 0`, `rate(x[5m]) * 100 > 5`, `label_replace(x, …)`) runs
//! where each series lives and the owner takes the union of the elements, each crossing
//! unfinished as the reference holds it (a name pending removal still there, with its
//! flag), runs any operations after it (`histogram_quantile(0.9, rate(x_bucket[5m]))`)
//! and finishes the whole result, as the reference does; a
//! one-to-one arithmetic or comparison, or a set operator, of two such plans or of
//! joins of them (`rate(a[5m]) / rate(b[5m])`, `a / on (instance) b > 0.1`,
//! `x < 0.9 and y == 0`, `a / b < 0.1 and c == 0`) evaluates its per-series plans
//! where their series live, and binary matching exchanges their elements by match
//! key: each side element, unfinished as the reference holds it (a
//! name pending removal still there), goes to the worker its match group's signature
//! hashes to, which joins the group as the reference does, finishes the result and
//! sends it to the owner, at the same logical time: each joiner keeps its match
//! groups from one evaluation to the next and re-matches only those with a changed
//! side, as an owned join does (a set operator's, which no owned rule does
//! incrementally, keeps or drops each changed group's elements; a join inside a join
//! is routed by the labels all its matchings match on, and its joiner runs the
//! reference's operations over its groups at every evaluation) (with
//! [`crate::EngineConfig::spread_joins`], which promflow sets; without it such a join
//! is owned); a vector/vector
//! operation of two spread aggregations (`sum(rate(a[5m])) / sum(rate(b[5m]))`), or of
//! a spread aggregation and a per-series plan of one named selector, any matching
//! (`x / on (job) group_left sum by (job) (x)`), sends both sides' partials (a
//! per-series side's elements) to the owner, which combines each (a per-series side's
//! union in label order, the reference's order of a selector's series) and runs the
//! operation over the two (not where an aggregation on the "one" side could hold two
//! elements of a match group: the error naming them would differ; a per-series side's
//! elements cross unfinished, as a union's, and the owner finishes the whole result,
//! as the reference does); operations after a join or a pair run on the owner too
//! (`abs(rate(a[5m]) / rate(b[5m]))`; not picks or sorts, nor reads of the
//! name labels after a join, whose joiners finish their elements), except an
//! aggregation of partials right after a join of two per-series plans
//! (`sum by (job) (rate(a[5m]) / rate(b[5m]))`: each joiner makes its partials over
//! its joined elements, unfinished as the reference aggregates them, from its match
//! groups kept as above, each group's again only where a member changed, and the
//! owner combines them as an aggregation's, then runs the rest). The shapes whose
//! owner would so evaluate every element of the rule's series at every evaluation (a
//! pair with a per-series side, a join or per-series plan under other operations that
//! are not element-wise, `quantile`, `count_values`: [`spread::Spread::owner_bound`]),
//! and for now a join under an aggregation of partials too (not yet measured faster
//! than owned), are spread only with [`crate::EngineConfig::spread_owner_bound`], which
//! promflow leaves off: they measured slower than owned. Any other plan can
//! aggregate or join across series in ways without partials, so all of its input
//! meets in one place: each rule has an *owner* worker. A rule
//! reading a selector that a registered (not spread) rule already reads goes to that
//! rule's owner; otherwise it goes to the worker owning the fewest rules, among every
//! worker of every process (see "Processes"; of several, the first from the one the
//! hash of its smallest selector key picks, or of its id for a rule reading nothing;
//! every operator places it alike, from the same changes). What is shared: one window per distinct selector
//! (canonical matcher text) per worker, read by every owned rule on that worker. So
//! two rules reading the same selector share one window, unless the later one also
//! reads a selector first read by a rule on another worker and was placed with that
//! one — a rule joins one worker, and rules are not moved once placed; spread rules
//! keep their own windows (a selector read by both kinds is kept twice). Samples
//! enter on any worker, are matched against the routing table there and sent to each
//! worker that keeps a window reading them (once per owner, once for the spread
//! windows), so the exchange carries only samples some rule reads.
//!
//! **Processes.** The same dataflow runs in one process or in a timely cluster
//! ([`crate::EngineConfig::cluster`], timely's `CommunicationConfig::Cluster`: every
//! process runs the same workers; "workers" above means all of the cluster's, and a
//! worker's index is its index in the cluster). What holds there:
//! - *Who feeds rule changes.* Any process may register or remove rules. Its engine
//!   puts the change on its first worker's control input at its own watermark; the
//!   dataflow broadcasts it to every worker of every process, and releases each
//!   logical time's changes once the frontier passes it, ordered by the process that
//!   made them (each process's in the order it made them), so every operator of every
//!   worker applies the same changes in the same order at the same time. Rule ids carry
//!   the registering process in their high bits ([`rule::RULE_ID_PROCESS_SHIFT`]), so
//!   they are unique in the cluster; rule files loaded by one process are that
//!   process's rules (registering the same file in every process would run it once per
//!   process).
//! - *Where results go.* A rule's output channel stays in the registering process (its
//!   home, [`rule::RuleDef::home_process`]). An owned rule is placed on any worker of
//!   the cluster (the hash picks among all of them, so the owned rules of one process
//!   are balanced over every process; rules of different homes share windows like any
//!   two rules). When its owner is in its home process it delivers the results itself;
//!   otherwise it sends each [`RuleOutput`] (serialized, histograms detached) through
//!   the exchange to its home process's first worker at the logical time the
//!   evaluation became ready ([`spread::HostRecord`]), whose combiner passes it on to
//!   the channel in the order the owner made them. An alerting rule's alert stage
//!   ([`alerting`]) runs on its owner, wherever that is, and its step crosses with the
//!   output ([`spread::HostRecord::Alerting`], its alert labels coded like the
//!   output's); the rule's mirror, templates, writes and sends stay in its home. A spread rule's owner, which
//!   combines the partials, is a worker of its home process: its results are
//!   delivered where the channel is. Seeds ([`seed`]) reach the owner, or for a spread
//!   rule the worker keeping each series, in whatever process it is; each process
//!   seeds from its own storage (the registering one at registration, every other
//!   one when the installation reaches its first worker), at the installation's time.
//! - *Series and labels.* Series ids are label hashes ([`crate::Labels::hash`]), the
//!   same in every process, so they need no partition of the id space; each series is
//!   fed into one process (the one scraping its target). Each process has its own
//!   [`crate::SeriesCatalog`]: when a router sends a sample to a worker of another
//!   process it sends that worker the series' labels first
//!   ([`route::announce_to_peers`]), once per series, destination process and
//!   [`route::ANNOUNCE_PERIOD_MS`] of sample time; the receiving rule host puts them in
//!   its process's catalog before the samples of the same time and holds them through
//!   the next period, so the windows and whole-plan evaluations find them. The float
//!   samples' series ids cross as indices into a dictionary per (sending worker,
//!   receiving worker) and period ([`route::code_for_peers`]), whose entries travel
//!   in the packs of the time they are first used. The label sets of the rule hosts'
//!   and joiners' records ([`spread::HostRecord`]: partials, picked and gathered
//!   members, unions, join sides, joined elements, remote owners' [`RuleOutput`]s)
//!   cross the same way ([`dictionary`]): whole in the first record, by logical time,
//!   that uses one for a worker of another process in the period, as an index after
//!   (which the joiners use instead of hashing the labels), decoded by time at the
//!   receiver; records within a process are not coded.
//! - *The watermark.* Every process advances its own input; the frontier every worker
//!   sees is the minimum over all processes (timely's progress tracking), so an
//!   evaluation at `t` waits for every process's watermark to pass what it reads. An
//!   engine in a cluster sends every advance to its workers (other processes' rules
//!   may need them), never idling as one process does.
//!
//! Left: the seed is what the registering process's [`SeriesSource`] holds (the
//! service reads every process's storage for it); the latest-sample table and
//! [`crate::EngineStats`] are per process; a spread rule's combining runs on its home
//! process; placement balances the number of rules, not their cost (nothing knows a
//! rule's series when it is placed; rules reading one selector share one owner); a
//! lost process stops the others as timely does
//! (its network threads panic; the service turns that into one log line and an exit,
//! `promflow::cluster::exit_when_a_process_is_lost`).
//!
//! **Incremental vs recomputed.** Always maintained: the selector windows (appended
//! on arrival, retired as the frontier passes: memory tracks the active windows),
//! their sharing, and the schedules (on-arrival rules evaluate when a sample enters
//! or leaves what they read). For plans of an incremental shape ([`shape`]: a
//! selector or a range function of it with element-wise operations on constants —
//! `up == 0`, `x > 0.9`, `x * 100`, `label_replace(x, …)`, `rate(x[5m])`,
//! `*_over_time(x[5m])` —, `sum avg min max count group stddev stdvar quantile`
//! `by`/`without` over those, nested, with element-wise operations after, and
//! one-to-one arithmetic or comparisons of two such), each
//! evaluation recomputes only the series whose window changed (a sample arrived, one
//! left the window or passed the lookback delta — time events kept in an agenda —
//! and, at interval times, for `rate`/`increase`/`delta`/`predict_linear`, every
//! series with samples in its window, over that window only; on arrival see below),
//! then only the groups with a changed member,
//! then the element-wise operations of changed keys, and one-to-one vector/vector
//! arithmetic and comparisons (`a / b < 0.1`) only for the match groups with a changed
//! side ([`incremental`]). Other shapes (set operators, `group_left`/`group_right`,
//! `@`, subqueries, `absent`, `topk`, `sort`, `histogram_quantile`, …) evaluate the
//! whole plan over the retained windows, as do incremental rules at an evaluation
//! where two elements of a node share labels or a match group has two elements on a
//! side.
//! [`crate::EngineStats`] counts both kinds of evaluation and the recomputations.
//!
//! **Registration after data has flowed.** A rule starts from the watermark at
//! registration: its windows hold what other rules on the owner already retain for
//! the same selector plus what arrives from then on. With
//! [`crate::Engine::register_seeded`] they are seeded from a [`SeriesSource`]
//! snapshot (storage) covering what the first evaluation reads, which makes results
//! exact from the first evaluation; without a seed they are exact once the longest
//! window has filled.
//!
//! **Readiness.** An evaluation at `t` runs once the frontier passes the last
//! timestamp it can read: `t` itself, `t + 30s` for `x offset -30s`, and a fixed
//! `@ 1700000000` time (a rule reading a fixed future time waits for it). Until then
//! its inputs may be incomplete; after it, the result is final and is sent once.
//!
//! **Retention.** A window keeps, per series, every sample at or after the earliest
//! next evaluation time of its readers minus their reach, plus the samples of fixed
//! `@` windows; a plain instant selector (not under a subquery) keeps only from the
//! newest sample at or before its next read on.
//!
//! **On-arrival times.** A sample at `ts` read through a window `[t-back, t+fwd]`
//! triggers evaluations at `ts - fwd` (it enters) and `ts + back + 1` (it leaves);
//! through a fixed `@` window, at `ts`. For subqueries these are the times the outer
//! window changes, not every inner step boundary. A rule of an incremental shape is
//! evaluated at the entering times and at its agenda's next time event only (a leaving
//! sample that cannot change an element, e.g. the older samples of an instant
//! selector's series, causes no evaluation): each evaluation has something to
//! recompute, and between two of them the last result holds.
//!
//! **On-arrival semantics of `t`-dependent functions.** `rate`, `increase`, `delta`
//! and `predict_linear` (and `timestamp` of a non-selector) depend on the evaluation
//! time itself (extrapolation to the window's ends), so at exact interval semantics
//! every series with samples would change at every evaluation, i.e. at every arrival
//! of any series. On arrival, an incremental rule instead evaluates each such series
//! *at its newest sample's time*: at evaluation time `t`, a series whose newest sample
//! (not a staleness marker) in what `t` reads is at `n` has the element the reference
//! gives for that series alone at `t_s = n - fwd` (`n + offset`: the time that sample
//! entered the window, where it is the window's last sample), and has none once that
//! sample has left the window (`t > n + back`). So an arriving batch recomputes only
//! the series it brought, the groups and match groups they belong to, and the
//! element-wise operations above them; a series changes again only when its next
//! sample arrives or its newest one leaves. At an arrival `t = t_s`: the value is
//! exactly what Prometheus answers at `t` for that series, and when every series is
//! scraped at the same times the whole result (aggregations and joins included) is
//! the interval result at those times (`dataflows/tests/maintained_rules.rs`). With
//! scrapes at different times, each series is as Prometheus would see it right after
//! its own scrape, and a series that stops keeps its last value until its newest sample
//! leaves the window (Prometheus drops it one scrape earlier, once fewer than two
//! samples remain). Functions that depend only on the window's samples (`irate`,
//! `*_over_time`, `deriv`, `changes`, …) and plain selectors keep exact interval
//! semantics at `t`, recomputed when a sample enters or leaves. An evaluation that
//! falls back to the whole plan (below) is the reference at `t`.
//!
//! **Native histograms in the dataflow.** Histogram samples enter beside the floats,
//! never among them ([`crate::sample`]: a column of their own in a batch, a second
//! input stream, the same routing code instantiated for them), so a float-only
//! workload pays an empty column and an idle router, and [`crate::Point`] keeps its
//! size. The windows keep a histogram sample among its series' samples as the
//! reference evaluator carries one, a handle naming a slot of the worker's store
//! ([`window`]); selection, offsets, subqueries and retirement need nothing more. A
//! rule of an incremental shape stays incremental over histograms ([`incremental`]):
//! a series' element is recomputed as for floats, by the reference's own per-window
//! function (`rate`/`increase`/`irate`/… of histograms: schema reconciliation,
//! counter resets, start timestamps, mixed windows), a group with a histogram member
//! is re-reduced by the reference's own aggregation (`sum`/`avg`/`count`/…), an
//! element-wise operation on a histogram (`histogram_count`/`_sum`/`_avg`/`_stddev`/
//! `_stdvar`, `* 2`, …) by the evaluator, and each node keeps the
//! histograms of its elements; so `sum by (job) (rate(h[5m]))` recomputes only the
//! series due and the groups they belong to. Only a join (`a / b`) over histograms
//! declines (its state is dropped for good) and is evaluated whole-plan by the
//! reference evaluator, as is every other shape. Either way a rule gives what ad-hoc
//! evaluation gives; its outputs carry the histograms they name
//! ([`RuleOutput::histograms`]). A spread `sum` of histograms sends histogram
//! partials, combined by the reference's own aggregation ([`spread`]).
//!
//! [`Plan`]: crate::promql::plan::Plan
//! [`SeriesSource`]: crate::promql::eval::SeriesSource

pub mod alert_state;
pub mod alerting;
pub mod dictionary;
pub mod extent;
pub mod incremental;
pub mod maintain;
pub mod route;
pub mod rule;
pub mod seed;
pub mod shape;
pub mod spread;
pub mod window;

pub use rule::{Delivery, Evaluation, RenderError, RuleId, RuleOutput, RuleSchedule};

/// A registered expression: its id and the channel its evaluations arrive on, in
/// evaluation-time order.
pub struct RuleHandle {
    /// The rule's id (for [`crate::Engine::unregister`]).
    pub id: RuleId,
    /// Evaluations, sent as the frontier passes them.
    pub output: crossbeam_channel::Receiver<RuleOutput>,
}
