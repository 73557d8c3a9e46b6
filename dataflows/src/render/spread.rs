//! Spread rules: per-series work on the workers owning the series; partial aggregates
//! combined, per-series results gathered, on the rule's owner; binary matching
//! exchanges both sides by match key.
//!
//! PromQL (the spread shapes; every other rule runs on its one owner worker):
//! ```promql
//! sum by (job) (rate(http_requests_total[5m]))   # any aggregation, by/without,
//! max without (cpu) (node_load1)                 # over one named selector
//! stddev by (job) (x)                            # or a range function of it,
//! topk(3, rate(x[5m]))                           # with a constant parameter
//! count_values("v", x)
//! sum by (job) (rate(x[5m]) > 0)                 # or a per-series plan of it
//! count(up == 0)                                 #   (no label functions inside)
//! avg by (job) (rate(x[5m])) * 100 > 10          # any operation after an aggregation
//! histogram_quantile(0.99, sum by (le, job) (rate(x_bucket[5m])))  # whose other
//! sum(sum by (job) (rate(x[5m])))                # operands are constants, strings or
//! count(sum by (job) (x))                        # time(): the innermost aggregation
//! scalar(sum(x))                                 # is spread, the rest runs on the owner
//! up == 0                                        # a per-series plan of one named
//! rate(x[5m]) * 100 > 5                          # selector (label functions last)
//! label_replace(x, "a", "$1", "b", "(.*)")
//! histogram_quantile(0.9, rate(x_bucket[5m]))    # any operation after it (no label
//! sort_desc(rate(x[5m]))                         #   functions in it)
//! rate(a[5m]) / rate(b[5m])                      # one-to-one arithmetic or comparison
//! sum by (job) (rate(a[5m]) / rate(b[5m]))       #   (an aggregation of it: partials)
//! a / on (instance) b > 0.1                      # of two per-series plans, ops after
//! x < 0.9 and on (instance) y == 0               # or a set operator of them
//! a / b < 0.1 and c == 0                         # or of joins of them
//! sum(rate(a[5m])) / sum(rate(b[5m]))            # any vector/vector operation of two
//! sum by (job) (rate(e[5m])) / sum by (job) (rate(t[5m])) > 0.05   # aggregations,
//! x / on (job) group_left sum by (job) (x)       # or of an aggregation and a
//! node_load1 / count without (cpu) (node_cpu_seconds_total{mode="idle"})  # per-series
//! sum by (instance) (m) / on (instance) group_left (job) m               # plan
//! ```
//! Contract: [`spread_of`] says whether a rule is spread. A spread rule's selector
//! window is kept on every worker, each holding the series whose id (modulo the
//! workers) is that worker's (`Sample::series_id` for streamed samples,
//! [`Labels::hash`], which it is by contract, for seeds), so each series' samples and
//! range function are computed once, where the series lives. Each worker evaluates the
//! rule's [`Spread::local`] plan over its own series with the same incremental
//! machinery as an owned rule, at the same evaluation times on every worker (times
//! follow from the schedule and the logical times of the rule's changes, never from
//! when a worker happened to see the frontier), and sends one [`PartialRecord`] per
//! evaluation. The records of an evaluation at `t` travel at logical time `ready(t)`,
//! the last time it reads (a worker makes it once its frontier passes that time, and
//! holds its output there until then), so the owner ([`combine_partials`]) knows it
//! has every worker's once its own frontier passes that time, with no extra delay, and
//! combines them per group ([`Combine`]):
//!
//! - `sum count min max group` ([`Combine::Fold`]): the local plan is the aggregation;
//!   one value per group; sums and counts add (a compensated sum, so equal to the
//!   reference within float rounding), minima and maxima fold, `group` is 1.
//! - `avg` ([`Combine::Mean`]): the local plan is the members; per group
//!   `[count, sum, mean]`; the owner divides the total sum by the total count, or where
//!   that sum is not finite (it overflows: the reference then switches to a running
//!   mean) weighs the workers' means by their counts.
//! - `stddev stdvar` ([`Combine::Moments`]): per group `[count, mean, M2]` of the float
//!   members, computed as the reference's compensated Welford, combined with Chan et
//!   al.'s parallel formula (equal to the reference within float rounding; where two
//!   finite means differ by more than the largest float, NaN, as the reference's
//!   running mean gives).
//! - `topk bottomk limitk limit_ratio` ([`Combine::Pick`]): each worker picks per group
//!   from its members, unfinished (as a union's elements, below), with the reference's
//!   own aggregation, in label order (the order the reference reads a selector's
//!   series, which breaks its ties), and sends the picked elements as a union's; the
//!   owner picks again from their union in label order and finishes the whole result.
//!   An element the reference picks is picked by its worker too, so the result is the
//!   reference's, ties included (`limit_ratio` hashes the labels as the reference
//!   holds them).
//! - `quantile count_values` ([`Combine::Gather`]): every member, unfinished, as a
//!   union's elements; the owner runs the reference's aggregation over their union, in
//!   label order, and finishes the whole result.
//! - a per-series plan ([`Combine::Union`]): the local plan is the rule's plan; every
//!   element crosses as a join's side element does (below: evaluated unfinished, in
//!   no particular order, as a [`SideElement`], `(labels, value, name pending
//!   removal)`, in a [`Part::Elements`]); the owner's result is their union in label
//!   order (the order the reference reads a selector's series in), finished as the
//!   reference finishes the whole result ([`finish_vector`], at the end, after the
//!   operations after it): two elements with the same labels then (a label function
//!   made them equal, or the name drop) are the reference's duplicate-labelset error
//!   (`label_replace`/`label_join` must come last, so no filter drops one of two
//!   elements that the reference's check after the label function saw). Under
//!   operations that are not element-wise (see below; then without label functions)
//!   the union is their input, names pending as the reference holds them.
//! - a one-to-one vector/vector arithmetic or comparison, or a set operator (`and`,
//!   `or`, `unless`: many-to-many), of two per-series plans ([`Combine::Join`], when
//!   the registering engine has [`crate::EngineConfig::spread_joins`], as promflow's
//!   does): the local plans are the two sides, each evaluated in no particular order
//!   and unfinished, as the reference holds a sub-expression (a `__name__` pending
//!   removal still in the labels, with the element's flag, [`Element::drop_name`]),
//!   its labels kept from one evaluation to the next
//!   ([`crate::render::incremental::IncrementalRule::evaluate_unordered`]; the whole
//!   plan by [`Evaluator::eval`], not `instant`, where that cannot vouch); each worker
//!   sends each side element to the worker of its match group, the hash of the labels
//!   `on`/`ignoring` select (Prometheus's signature, less `__type__`/`__unit__` for a
//!   set operator as Prometheus's; [`joiner`], hashed without making them; for a join
//!   inside a join, see below), in a
//!   [`HostRecord::Sides`] ([`SideElements`]: plain `(labels, value, name pending
//!   removal)` triples) at the same logical time, and the owner a record of its own
//!   (empty, or the side's error). [`join_sides`] on each worker keeps, per rule it
//!   joins, the side elements of its match groups as of the previous evaluation
//!   ([`SpreadJoin`]: by labels, filed by match group once, result labels cached per
//!   group, dropped when the rule is removed) and, once its frontier passes that
//!   time, re-matches only the groups with an element that came, left or changed
//!   value ([`joined`]): with the owned incremental join's
//!   [`crate::promql::eval::binary::matched_element`] and
//!   [`crate::promql::eval::binary::result_labels`]; for a set operator, which keeps
//!   or drops whole match groups by whether the other side has one, by keeping the
//!   group's left elements (`and`: if it has a right one; `unless`: if not) or its
//!   left ones, else its right ones (`or`), the reference's operation group by group.
//!   Either way it matches the unfinished elements exactly as the reference does and
//!   finishes the joined elements (drops the pending names) as the reference finishes
//!   the whole result, element by element; the joined elements go to the owner at
//!   that time, in label order, and the owner's result is their union, merged and
//!   checked for duplicate label sets (the whole result's check, then the operations
//!   after the join). Records to a worker of another process cross serialized, their
//!   label sets coded by [`crate::render::dictionary`] (each whole once per sending
//!   worker, receiving worker and period, else as an index): held labels are matched
//!   by hash (the one a coded record's entry brought, else computed) and compared, and the same
//!   `Arc` only skips the compare: one process's records pass theirs, a decoded label
//!   set is the receiver's one `Arc` for that period. Where the
//!   state cannot vouch for the result (a match group with two elements on a side,
//!   two elements of a side with one label set, two groups with one result label set,
//!   a histogram or stale marker among the values) the joiner runs the reference's
//!   operation ([`crate::promql::eval::binary::vectors`]) over the side elements of
//!   its match groups instead, each side in label order (the order the reference
//!   reads a selector's series); a joiner whose
//!   operation fails (many-to-many matching) sends its side elements, and the owner
//!   runs the operation over those of every failing joiner: every failing match group
//!   is among them, in the reference's order, so the error is the reference's, word
//!   for word. Measured (README, "Part 4"): on 2 workers 0.51–0.61 of the owned
//!   join's wall time on 1, for the same CPU (arithmetic; set operators not
//!   measured). Joins inside joins (`a / b < 0.1 and c == 0`: operands of a join that
//!   are joins, with vector/scalar operations over them, or per-series plans): the
//!   local plans are the per-series leaves in the order the reference evaluates them
//!   ([`SideElements`] has a side per leaf); every leaf element goes to the joiner of
//!   the labels every matching of the tree matches on but the name labels
//!   ([`Spread::route`]: the elements of a match group of any operation agree on them,
//!   and an inner operation's result keeps its left element's), so each match group
//!   of every operation meets on one joiner; the joiner runs the reference's
//!   operations over its leaves' elements at every evaluation (no incremental state),
//!   and the rest is as above (a failing joiner's sides go to the owner, which runs
//!   the tree over those of every failing joiner: the reference evaluates the inner
//!   operations whole before the outer, so its first error is among them).
//!   Under an aggregation of partials (`sum count min max group avg stddev stdvar`, no
//!   parameter; the innermost operation after a join of two per-series plans, not one
//!   inside a join: [`Spread::fold`]) the joiners make the aggregation's partials
//!   instead, over the join's result unfinished (names pending removal, as the
//!   reference aggregates it), the partials a worker makes of a spread aggregation
//!   ([`partials`]: the aggregation itself for `sum` and friends, with its member
//!   counts where histograms are among them; the members for `avg`, gathered where a
//!   group holds a histogram, and `stddev`/`stdvar`). A one-to-one arithmetic or
//!   comparison's joiner keeps them in its [`SpreadJoin`] ([`SpreadJoin::fold`]): the
//!   joined elements of its match groups, kept as above, are filed by the
//!   aggregation's group of their result labels, and only the groups with a member
//!   that came, left or changed value are made again (with the reference's
//!   [`reduce`], or `[count, sum, mean]`, `[count, mean, M2]`, over the members'
//!   values in their match groups' label order); where the state cannot vouch (as
//!   above; two joined elements with one finished label set do not matter here),
//!   and always for a set operator, the joiner runs the reference's operation over
//!   its side elements and the aggregation over its result. It sends them to the
//!   owner in a [`JoinedPart::Partials`]; the owner combines them per group as an
//!   aggregation's (`Fold`, `Mean`, `Moments`), then runs the rest of the operations
//!   after. No duplicate label sets to check: the reference aggregates the join's
//!   result before it finishes (and checks) the whole, so two joined elements with one
//!   label set (once finished) are two members, as there; a group's members on two
//!   joiners are partials combined, as a group's on two workers. A failing joiner
//!   sends its side elements as above, and the owner's operation over those of every
//!   failing joiner gives the reference's error. Not `by` of a name label, and
//!   `without` only over a one-to-one arithmetic or comparison `on` labels that are
//!   not name labels (its results hold exactly those labels): the partials cross
//!   finished, where the reference's groups would hold `__type__`/`__unit__` pending
//!   removal. Not under operations after it that need the order of its groups or
//!   the last bits of their values, or that write `__type__`/`__unit__` (as after an
//!   aggregation, below).
//! - a vector/vector operation (arithmetic, comparison, set operators, any matching,
//!   `group_left`/`group_right` included) of two spread aggregations, or of a spread
//!   aggregation and a per-series plan of one named selector without label functions
//!   ([`Combine::Pair`], [`Spread::pair`]: each side a spread rule of its own, a
//!   per-series side a [`Combine::Union`]): the local plans are both sides' (left
//!   first); each worker sends both sides' parts (an aggregation's partials, a
//!   per-series side's elements unfinished, as a union's) in one
//!   [`HostRecord::Pair`], and the owner combines each side as above (a per-series
//!   side's union in label order, the order the reference reads a selector's series
//!   in, names pending as the reference holds them) and runs the reference's
//!   operation over the two as a joiner does ([`binary::vectors`]; so its labels,
//!   signatures, `__type__`/`__unit__` included, and errors are the reference's),
//!   then the operations after it, and finishes the whole result. Not picks (`topk`
//!   and friends: not analysed as a side, whose groups hold several elements), and
//!   not where an aggregation on the "one" side could hold two
//!   elements of a match group (`on`/`ignoring` that do not tell its groups apart:
//!   `by` labels not all within `on`, or some `ignoring`d; `without` under `on`, or
//!   not dropping every `ignoring`d label): the error would name them in the order the
//!   reference makes an aggregation's groups (first seen), which the owner does not
//!   know. A per-series "one" side may hold two (its order is the reference's). Not
//!   `group_left`/`group_right` of a name label into an aggregation's groups beside a
//!   per-series side (`sum by (job) (a) / on (job) group_left (__name__) b`: the
//!   reference may still drop the copy at the end, as a member of the group held its
//!   name pending, the group's flag, which the owner does not know; an aggregation's
//!   partials cross finished); into a per-series side's elements it spreads.
//!
//! Operations after the aggregation, join, pair or per-series plan ([`Spread::after`],
//! found by [`peel`]): any plan over the one combined result whose other operands are
//! constants, strings or `time()`: element-wise operations, nested aggregations (the
//! innermost, over the per-series plan, is the spread one), `histogram_quantile`,
//! `topk`, `sort`, `scalar`, `vector`, label functions, `timestamp`. Not over a range
//! or subquery of it, not with `@`, not `absent`/`absent_over_time` (their labels
//! come from their argument's matchers), `info` (it reads other series) or
//! `start_timestamp`. They run on the owner over the combined result, at every
//! evaluation, over the whole result: step by step as an incremental map node applies
//! them ([`Step`]: `> 0.1`, `* 100`, `abs`) where each is one and the result holds
//! floats, then finished as the reference finishes a result; else by the reference
//! evaluator over the combined elements as samples at `t` ([`over_members`]; so
//! `time()` and `timestamp(…)` are the reference's: an owned rule's incremental map
//! node cannot depend on `t`, as it recomputes only the elements whose input changed,
//! but the owner recomputes every element at every evaluation). Their errors are the
//! reference's (a duplicate label set's message names no labels). Where they depend
//! on the order of their input beyond float rounding (`topk`, `bottomk`, `limitk`:
//! ties and the first k; `sort*`: equal values), they need the reference's order of
//! the aggregation's groups, the order it first sees them in, which the owner of
//! combined partials does not know (a pick's and a gather's results, and a union's,
//! are in it already): another aggregation, a join or a pair under them is not
//! spread (gathering every member to run the reference's aggregation in label order
//! measured slower than the owned rule, see `aggregation_of`); so too where they make
//! labels of values (`count_values`), which would show a combined sum's last bits.
//! Over a union, a pick, a gather or a pair they read the combined elements unfinished,
//! as the reference does (the hole's selection keeps each element's pending removal,
//! [`SeriesSource::names_pending`]), so they may read the name labels (label
//! functions, `by (__name__)`, `sort_by_label` of them, `limit_ratio`, which hashes
//! every label). After a join, none that reads them: the reference may still hold
//! `__name__` pending removal there, where a joiner's joined elements are finished. Nested aggregations and other folds over the
//! combined groups see them in label order rather than the reference's: sums within
//! float rounding. A worker's evaluation error makes the result that error.
//!
//! Native histograms: a worker whose windows hold them evaluates its local plan as any
//! other (incrementally: [`crate::render::incremental`]), and its `sum` partial of a
//! group of histograms is a histogram, carried
//! detached in the record ([`Partials`]); the owner combines a group in which any
//! partial is a histogram with the reference's own aggregation
//! ([`native::aggregate`]) over the partials (so a mix of histogram and float partials
//! yields nothing, as a mix of series does). `count`, `min`, `max` and `group` partials
//! are floats whatever their series hold (the local evaluation counts histograms and
//! ignores them in `min`/`max`, as the reference does). A worker's group whose local
//! `sum` yields nothing though it has members (they mix histograms and floats, or
//! exponential and custom buckets) sends [`VOID`] (found with [`members_plan`]), and
//! the group yields nothing: as Prometheus, which sums all the members at once. For
//! `avg`, a worker's group with a histogram member sends its members (gathered), and
//! the owner averages a group whose parts are all gathered with the reference, and
//! drops a group with gathered and float parts (a mix); `stddev`/`stdvar` ignore
//! histograms, as the reference does; picked and gathered members carry theirs.
//!
//! Every record to a worker of another process ([`HostRecord`]: partials with their
//! group or member labels, a union's or a pair's per-series elements, side elements,
//! joined elements, a remote owner's
//! [`RuleOutput`], with its alert stage's step for an alerting rule,
//! [`HostRecord::Alerting`]: the alert labels too) crosses with its label sets coded ([`HostRecord::Coded`],
//! [`crate::render::dictionary`]): each set whole in the first record (by logical time)
//! of its period to that worker that uses it, with its hash, as an index after;
//! [`join_sides`] decodes the records from the rule hosts and [`combine_partials`]
//! those from the joiners, each time's once all its records are in. Records within a
//! process pass as they are.
//!
//! Partials go to the owner rather than by group key: the per-worker record is one
//! entry per group (or per picked or gathered member), and the owner must gather the
//! groups into one result anyway. A join's sides go by match key because the join
//! needs both sides of a match group in one place, and the owner then only unions.
//!
//! Names: the reference holds a `__name__` removal pending (and with it
//! `__type__`/`__unit__`, Prometheus 3's type-and-unit labels) on each element until
//! it finishes the whole result ([`Element::drop_name`], [`finish_vector`]). One
//! mechanism carries that across the spread path: a per-series element (a join's
//! side, a union's, a pick's or a gather's member, a pair's per-series side) is
//! evaluated unfinished
//! ([`Spread::sends_elements`]; incrementally by
//! [`crate::render::incremental::IncrementalRule::evaluate_unordered`], else
//! [`Evaluator::eval`], not `instant`) and crosses as the reference holds it, a
//! [`SideElement`] `(labels, value, name pending removal)` (one byte for the flag; as
//! a union's element it crosses in 7 bytes fewer than as a partial did, with no value
//! list), and is finished where the reference finishes: a union's, a pick's, a
//! gather's and a pair's by the owner over the whole result, after the operations
//! after it; a join's by its
//! joiners, element by element (under an aggregation of partials the joiners
//! aggregate it unfinished, as the reference does, and the partials cross finished, as
//! a worker's; so the result is finished before the operations after
//! a join, hence no reads of the name labels there, nor label functions in a join's
//! sides, nor `on`/`ignoring` of the name labels). So series of one name that differ
//! only in `__type__`/`__unit__` match as in the reference (apart for arithmetic and
//! comparisons, which match on them, together for set operators, which do not), and
//! where arithmetic with a constant dropped the names at once (`rate(x[5m]) * 2`) two
//! such series are two elements with one label set up to the operation, which gives
//! the reference's error or result. A worker's partials (`sum`, `avg`, `stddev`, …)
//! are finished: an aggregation's group holds its members' pending removal in the
//! reference, so no
//! `by` of `__type__`/`__unit__` over members holding them pending
//! (`count by (__type__) (rate(x[5m]))`: at the end two such groups are the
//! reference's duplicate error), no name label copied into an aggregation's groups
//! beside a per-series side (above), and no label function writing
//! `__type__`/`__unit__` after an aggregation or a pair (`label_replace(sum by (job)
//! (rate(x[5m])), "__type__", …)`: the reference drops it at the end, as the group
//! holds its members' pending removal).
//!
//! Spread only where the registering engine has
//! [`crate::EngineConfig::spread_owner_bound`] (the conformance suite's spread mode,
//! tests; not promflow): the shapes whose owner runs the reference's evaluation over
//! every element of the rule's series at every evaluation ([`Spread::owner_bound`]: a
//! per-series plan under operations that are not element-wise steps, `quantile` and
//! `count_values`, a pair with a per-series side, a join under operations that are not
//! element-wise steps). Their owner's work grows with the series and is not
//! incremental, so on 2 workers they measured slower than owned on 1, for more CPU
//! (the figures are at [`Spread::owner_bound`]); they are built and checked against
//! the reference like every other shape. A join under an aggregation of partials
//! ([`Spread::fold`]) is among them too, though its owner only combines its joiners'
//! partials: not yet measured faster than owned.
//!
//! Not spread (stays on one owner, see [`crate::render`]): on-arrival rules (their
//! evaluation times depend on each worker's arrivals), whole-plan rules, parameters
//! that are not constants, `by (__name__)`, selectors without a `__name__="…"` matcher
//! (two metrics' series would become equal label sets under a range function, which
//! the reference refuses and a worker could not see), label functions inside an
//! aggregation (two series they make equal are the reference's duplicate error, which
//! no worker sees), `by` `__type__`/`__unit__` of partials (`sum`, `avg`, …) over
//! members holding them pending removal, label functions writing `__type__`/`__unit__`
//! after such an aggregation or a pair, operations of two
//! operands other than two per-series plans or joins of them (one-to-one or a set
//! operator, no `group_left`/`group_right` or fills; over a join inside a join only
//! vector/scalar operations, not `abs(a / b) and c`), two aggregations, or an
//! aggregation and a per-series plan (no picks among the aggregations, no label
//! functions in the per-series plan, no `group_left (__name__)` into an
//! aggregation's groups), an aggregation on the "one" side that could hold two
//! elements of a match group (`b / on (job) group_left sum by (job, i) (a)`),
//! operations after the combine with another selector, a range or subquery over it or
//! `absent` (see above), `label_replace`/`label_join` (or other reads of the name
//! labels) after a join or under a filter (the reference may still hold
//! `__name__` there), picks and sorts after a join or a pair, aggregations of partials (`sum`,
//! `avg`, `stddev`, …) under picks, sorts or `count_values`, a per-series plan with
//! label functions under operations that are not element-wise, and every rule when the
//! engine has one worker. A rule that is spread and a rule that is not keep separate
//! windows of a selector they both read.

use crate::histogram::FloatHistogram;
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::eval::aggregate::{group_labels, reduce};
use crate::promql::eval::binary::{self, set_signature_hash, signature_hash};
use crate::promql::eval::native::{self, detach, handle, parse_handle, Detached, SOURCE};
use crate::promql::eval::{
    finish_vector, is_name_label, math, Element, EvalError, EvalResult, Evaluator, Selected,
    SeriesSource, Value,
};
use crate::promql::plan::{AggOp, Card, Grouping, Matching, Plan, VectorSel};
use crate::render::alerting::{AlertStage, AlertStep};
use crate::render::dictionary::{decode_time, CodedLabels, LabelSlots, ReceivedLabels};
use crate::render::extent::SelectorUse;
use crate::render::incremental::{PartialOf, SpreadJoin, Step};
use crate::render::maintain::Evaluated;
use crate::render::route::id_epoch;
use crate::render::rule::{
    frontier_of, hold_by_time, Evaluation, LocalRules, Registry, RuleChange, RuleId, RuleOutput,
    RuleSchedule, RuleSpec,
};
use crate::render::shape::{constant, element_wise, hole, one_to_one, per_series};
use crate::render::window::LabelsKey;
use crate::sample::is_stale_marker;
use crate::selector::{LabelMatcher, MatchKind, Selector};
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// How a spread rule's partials are made and combined (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// `sum min max count group`: each worker evaluates the aggregation; one value per
    /// group, folded.
    Fold,
    /// `avg`: per group `[count, sum, mean]` of a worker's members (a group with a
    /// histogram member: its members, gathered).
    Mean,
    /// `stddev stdvar`: per group `[count, mean, M2]` of a worker's float members,
    /// combined with Chan's parallel formula.
    Moments,
    /// `topk bottomk limitk limit_ratio`: each worker's pick per group, unfinished
    /// (as a union's elements); the owner picks again from them.
    Pick,
    /// `quantile count_values`: every member, unfinished (as a union's elements).
    Gather,
    /// A per-series plan: every element unfinished, as the reference holds it (a
    /// [`SideElement`]); the owner's result is their union, finished.
    Union,
    /// A one-to-one vector/vector arithmetic or comparison, or a set operator, of two
    /// per-series plans or joins of them: each side element, unfinished, to the worker
    /// of its match
    /// group ([`joiner`]), which joins them and sends the finished results to the
    /// owner; the owner's result is their union. Under an aggregation of partials
    /// ([`Spread::fold`]) the joiners send its partials, which the owner combines.
    Join,
    /// A vector/vector operation of two spread aggregations, or of one and a
    /// per-series plan ([`Spread::pair`]): each worker sends both sides' parts (an
    /// aggregation's partials, a per-series side's elements unfinished, as a union's)
    /// in one record; the owner combines each, runs the operation over the two results
    /// and finishes the whole result.
    Pair,
}

/// How a spread rule is evaluated.
#[derive(Clone, Debug)]
pub struct Spread {
    /// The rule's aggregation (`None` for [`Combine::Union`], [`Combine::Join`] and
    /// [`Combine::Pair`]).
    pub op: Option<AggOp>,
    /// How its partials are made and combined.
    pub combine: Combine,
    /// What each worker evaluates over its series: the aggregation itself
    /// ([`Combine::Fold`]), its operand (the members), the per-series plan
    /// ([`Combine::Union`]), the sides ([`Combine::Join`]; of a join inside a join,
    /// its per-series leaves in the order the reference evaluates them), both sides'
    /// local plans ([`Combine::Pair`]).
    pub local: Vec<Plan>,
    /// The aggregation over [`hole`]: the owner's last step over gathered members
    /// (and the workers' pick for [`Combine::Pick`]); [`hole`] for a union; for a join
    /// the operation over [`hole`] (left) and [`rhs_hole`] (right), the joiners' step
    /// (a join inside a join: its operations, each per-series leaf a hole).
    pub aggregate: Plan,
    /// Its grouping (`by ()` for a union or a join).
    pub grouping: Grouping,
    /// The operations after the aggregation, join or pair, reading it through
    /// [`hole`] (`sum by (job) (rate(x[5m])) > 10`, `topk(5, …)`; see the module
    /// doc), applied by the owner.
    pub after: Option<Plan>,
    /// For [`Combine::Pair`]: the two sides (aggregations, or an aggregation and a
    /// [`Combine::Union`] of a per-series plan), each made and combined as a spread
    /// rule of its own (their local plans in order are [`Spread::local`]).
    pub pair: Option<Box<[Spread; 2]>>,
    /// For a flat [`Combine::Join`] (two per-series sides) under an aggregation of
    /// partials (`sum by (job) (rate(a[5m]) / rate(b[5m]))`): that aggregation, as a
    /// spread aggregation's ([`Combine::Fold`], [`Combine::Mean`],
    /// [`Combine::Moments`]; no local plans), whose partials each joiner makes over its
    /// joined elements and the owner combines; [`Spread::after`] is then what follows
    /// the aggregation.
    pub fold: Option<Box<Spread>>,
}

/// The groups of one worker's evaluation of a spread rule: each group's labels and
/// one value per local plan (NaN where a local plan has no element for it), and, from
/// a worker whose windows hold native histograms, the histograms those values name
/// (detached: `(SOURCE, i)` is the `i`th; values may be [`VOID`]); or the
/// evaluation's error.
pub type Partials = Result<
    (
        Vec<(Arc<Labels>, Vec<f64>)>,
        Option<Vec<Arc<FloatHistogram>>>,
    ),
    EvalError,
>;

/// A group's partial `sum` where the worker's members of the group yield none (see the
/// module doc): a handle of no kind (`native::parse_handle` gives kind `0xfffe`).
pub const VOID: f64 = f64::from_bits(0x7ff4_fffe_0000_0000);

/// For a worker whose windows hold histograms: the plan counting the members of each
/// group of a `sum` local plan, so groups whose sum yields nothing are known (`None`
/// for other local plans, whose partials are floats).
pub fn members_plan(local: &Plan) -> Option<Plan> {
    match local {
        Plan::Aggregate {
            op: AggOp::Sum,
            expr,
            param: None,
            grouping,
        } => Some(Plan::Aggregate {
            op: AggOp::Count,
            expr: expr.clone(),
            param: None,
            grouping: grouping.clone(),
        }),
        _ => None,
    }
}

/// One worker's part of one evaluation of a spread rule (or of one side of a
/// [`Combine::Pair`]), as it crosses to the owner.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Part {
    /// An aggregation's partials (a [`Combine::Join`]'s owner record: empty, or the
    /// evaluation's error).
    Partials(Partials),
    /// A per-series plan's elements ([`Combine::Union`], a pair's per-series side) as
    /// the reference holds them, unfinished (one side of [`SideElements`]: labels,
    /// value, name pending removal), as a join's side elements cross; the owner
    /// finishes the whole result, as the reference does.
    Elements(Result<SideElements, EvalError>),
}

/// One worker's part of one evaluation: `(owner worker, rule, evaluation time,
/// part)`.
pub type PartialRecord = (u64, RuleId, i64, Part);

/// What a rule host sends to the combiners: a spread rule's part of an evaluation (to
/// the rule's owner; a join's side elements to their joiners first), or the result of
/// an owned rule evaluated in a process other than its home (to the home process's
/// worker delivering it, [`crate::render::rule::RuleSpec::delivered_by`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum HostRecord {
    /// A spread rule's partials.
    Partials(PartialRecord),
    /// A [`Combine::Pair`] rule's parts: the left side's, the right's.
    Pair(PartialRecord, Part),
    /// A [`Combine::Join`] rule's side elements for one match-group worker (the first
    /// field, [`joiner`]).
    Sides(SideRecord),
    /// A [`Combine::Join`] joiner's part of an evaluation, to the rule's owner.
    Joined(JoinedRecord),
    /// An owned rule's evaluation, to the worker delivering it.
    Output(u64, RuleOutput),
    /// An owned alerting rule's evaluation and its alert stage's step
    /// ([`RuleOutput::alerts`], which does not serialize with the output), to the
    /// worker delivering them.
    Alerting(u64, RuleOutput, Box<AlertStep>),
    /// A record to a worker of another process with its label sets coded by the
    /// dictionary of its sender and destination ([`crate::render::dictionary`]).
    Coded(Box<HostRecord>, CodedLabels),
}

impl HostRecord {
    /// The worker it goes to.
    pub fn worker(&self) -> u64 {
        match self {
            HostRecord::Partials((to, ..))
            | HostRecord::Pair((to, ..), _)
            | HostRecord::Sides((to, ..))
            | HostRecord::Joined((to, ..))
            | HostRecord::Output(to, _)
            | HostRecord::Alerting(to, ..) => *to,
            HostRecord::Coded(inner, _) => inner.worker(),
        }
    }
}

/// Every label set a record carries: the elements' and groups' of partials, the side
/// and joined elements, an output's elements, series and gone labels.
impl LabelSlots for HostRecord {
    fn each_labels(&mut self, f: &mut dyn FnMut(&mut Arc<Labels>)) {
        fn partials(p: &mut Part, f: &mut dyn FnMut(&mut Arc<Labels>)) {
            match p {
                Part::Partials(Ok((entries, _))) => {
                    entries.iter_mut().for_each(|(labels, _)| f(labels));
                }
                Part::Elements(Ok(part)) => {
                    (part.sides.iter_mut().flatten()).for_each(|(labels, ..)| f(labels));
                }
                _ => {}
            }
        }
        fn outputs(output: &mut RuleOutput, f: &mut dyn FnMut(&mut Arc<Labels>)) {
            match &mut output.value {
                Ok(Value::Vector(elements)) => {
                    elements.iter_mut().for_each(|e| f(&mut e.labels));
                }
                Ok(Value::Matrix(series)) => series.iter_mut().for_each(|s| f(&mut s.labels)),
                _ => {}
            }
            output.gone.iter_mut().flatten().for_each(&mut *f);
        }
        match self {
            HostRecord::Partials((.., p)) => partials(p, f),
            HostRecord::Pair((.., lhs), rhs) => {
                partials(lhs, f);
                partials(rhs, f);
            }
            HostRecord::Sides((.., sides))
            | HostRecord::Joined((.., JoinedPart::Failed(sides))) => {
                (sides.sides.iter_mut().flatten()).for_each(|(labels, ..)| f(labels));
            }
            HostRecord::Joined((.., JoinedPart::Joined(joined, _))) => {
                joined.iter_mut().for_each(|(labels, _)| f(labels));
            }
            HostRecord::Joined((.., JoinedPart::Partials(entries, _))) => {
                entries.iter_mut().for_each(|(labels, _)| f(labels));
            }
            HostRecord::Output(_, output) => outputs(output, f),
            HostRecord::Alerting(_, output, step) => {
                outputs(output, f);
                step.upserts.iter_mut().for_each(|a| f(&mut a.labels));
                step.removed.iter_mut().for_each(&mut *f);
                step.restored.iter_mut().for_each(|(labels, _)| f(labels));
            }
            HostRecord::Coded(inner, _) => inner.each_labels(f),
        }
    }
}

/// One worker's side elements of a [`Combine::Join`] evaluation for one joiner: the
/// elements of each side (left, right; a join inside a join's leaves) as
/// `(labels, value, name pending removal)` (unfinished, as the
/// reference holds them: [`Element::drop_name`]; in no particular order), and the
/// native histograms their values name (detached: `(SOURCE, i)` is the `i`th). Plain
/// values, no entry `Vec`s: between processes the labels cross as indices
/// ([`crate::render::dictionary`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SideElements {
    /// Per local plan, in order (left, right; the leaves of a join inside a join in
    /// the order the reference evaluates them).
    pub sides: Vec<Vec<SideElement>>,
    /// The histograms the values name.
    pub histograms: Vec<Arc<FloatHistogram>>,
    /// The labels' [`Labels::hash`]es, side by side in order, where the record came
    /// from another process (its receiver's dictionary has them) or goes to a joiner
    /// that matches by its state (its sender hashed them, [`Spread::joined_by_state`]);
    /// else empty.
    #[serde(skip)]
    pub hashes: Vec<u64>,
}

/// A side element: its labels and value as the reference holds them, and whether its
/// name is pending removal ([`Element::drop_name`]).
pub type SideElement = (Arc<Labels>, f64, bool);

/// Side elements to a joiner: `(joiner worker, rule, evaluation time, elements)`.
pub type SideRecord = (u64, RuleId, i64, SideElements);

/// A joiner's part of a [`Combine::Join`] evaluation ([`joined`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum JoinedPart {
    /// The joined elements of its match groups, in label order, and the native
    /// histograms their values name (detached).
    Joined(Vec<(Arc<Labels>, f64)>, Vec<Arc<FloatHistogram>>),
    /// The operation failed: its side elements (each side in label order), which the
    /// owner joins with those of every other failing joiner.
    Failed(SideElements),
    /// For a join under an aggregation of partials ([`Spread::fold`]): the
    /// aggregation's partials over its joined elements, as a worker's of a spread
    /// aggregation ([`Partials`]).
    Partials(
        Vec<(Arc<Labels>, Vec<f64>)>,
        Option<Vec<Arc<FloatHistogram>>>,
    ),
}

/// A joiner's part to the owner: `(owner worker, rule, evaluation time, part)`.
pub type JoinedRecord = (u64, RuleId, i64, JoinedPart);

/// The worker joining the match group of a side element labelled `labels` (as the
/// reference holds it, a name pending removal still there): the hash of its matching
/// signature (the labels `on`/`ignoring` select, as Prometheus's; for a set operator,
/// `set`, without `__type__`/`__unit__`, as Prometheus's) modulo the workers, the same
/// on every worker and in every process.
pub fn joiner(labels: &Labels, (matching, set): (&Matching, bool), peers: usize) -> u64 {
    let hash = match set {
        true => set_signature_hash(labels, matching),
        false => signature_hash(labels, matching),
    };
    hash % peers.max(1) as u64
}

/// A histogram handle of a list that now starts at `by` in a longer one; any other
/// value unchanged.
fn shifted(value: f64, by: usize) -> f64 {
    match parse_handle(value) {
        Some((SOURCE, h)) if by > 0 => handle(SOURCE, h + by as u32),
        _ => value,
    }
}

/// One worker's records of its evaluation of a spread rule at `t` (the local plans'
/// results `values`, in order; `members` as for [`partials`], per local plan): its
/// [`Part`] to the owner (a union's elements unfinished; for a [`Combine::Pair`], both
/// sides' in one [`HostRecord::Pair`]); for a [`Combine::Join`], the owner's record
/// holds nothing but the
/// evaluation's error (if any: the left side's first), so the owner has one record
/// from every worker, and each side element goes to the worker of its match group
/// ([`joiner`]) in a [`HostRecord::Sides`].
pub fn part_records(
    spread: &Spread,
    (rule, owner, t): (RuleId, u64, i64),
    mut values: Vec<Evaluated>,
    mut members: Vec<Option<EvalResult<Value>>>,
    peers: usize,
) -> Vec<HostRecord> {
    if let Some([lhs, rhs]) = spread.pair.as_deref() {
        let (rhs_values, rhs_members) = (
            values.split_off(lhs.local.len().min(values.len())),
            members.split_off(lhs.local.len().min(members.len())),
        );
        let first = |m: Vec<Option<EvalResult<Value>>>| m.into_iter().next().flatten();
        let l = part(lhs, t, values, first(members));
        let r = part(rhs, t, rhs_values, first(rhs_members));
        return vec![HostRecord::Pair((owner, rule, t, l), r)];
    }
    let Some(route) = spread.route() else {
        let members = members.into_iter().next().flatten();
        let part = part(spread, t, values, members);
        return vec![HostRecord::Partials((owner, rule, t, part))];
    };
    let sides = match vectors(values) {
        Ok(sides) => sides,
        Err(e) => {
            return vec![HostRecord::Partials((
                owner,
                rule,
                t,
                Part::Partials(Err(e)),
            ))]
        }
    };
    let to = |e: &Element| joiner(&e.labels, (&route.0, route.1), peers) as usize;
    let joiners = side_elements(sides, peers, to, spread.joined_by_state());
    let mut records = vec![HostRecord::Partials((
        owner,
        rule,
        t,
        Part::Partials(Ok((Vec::new(), None))),
    ))];
    records.extend(
        (joiners.into_iter().enumerate())
            .filter(|(_, part)| part.sides.iter().any(|s| !s.is_empty()))
            .map(|(to, part)| HostRecord::Sides((to as u64, rule, t, part))),
    );
    records
}

/// One worker's part of an evaluation of `spread` (not a pair, not a join) at `t`: a
/// per-series plan's elements as evaluated, unfinished ([`Part::Elements`]), else the
/// aggregation's [`partials`].
fn part(
    spread: &Spread,
    t: i64,
    values: Vec<Evaluated>,
    members: Option<EvalResult<Value>>,
) -> Part {
    let elements = |sides: Sides| {
        let mut all = side_elements(sides, 1, |_| 0, false);
        all.pop().unwrap_or_default()
    };
    match spread.combine {
        Combine::Union | Combine::Gather => Part::Elements(vectors(values).map(elements)),
        Combine::Pick => Part::Elements(vectors(values).and_then(|mut sides| {
            let (mut members, held) = sides.pop().unwrap_or_default();
            // The reference reads a selector's series in label order.
            members.sort_by(|a, b| a.labels.cmp(&b.labels));
            let (picked, made) = over_held(&spread.aggregate, t, members, &held);
            match picked? {
                Value::Vector(picked) => Ok(elements(vec![(picked, made)])),
                _ => Err(EvalError::Unsupported("a pick of no vector".into())),
            }
        })),
        _ => Part::Partials(partials(spread, values, members)),
    }
}

/// The local plans' results, each a vector with the histograms it names; or the first
/// error (the left side's first, as the reference evaluates it first).
type Sides = Vec<(Vec<Element>, Vec<Arc<FloatHistogram>>)>;

/// `values` as [`Sides`].
fn vectors(values: Vec<Evaluated>) -> EvalResult<Sides> {
    let mut sides = Vec::new();
    for (value, held) in values {
        match value? {
            Value::Vector(elements) => sides.push((elements, held)),
            other => {
                return Err(EvalError::Unsupported(format!("unexpected side {other:?}")));
            }
        }
    }
    Ok(sides)
}

/// The elements of `sides` as they cross, unfinished ([`SideElement`]s), to `n`
/// destinations: each element to destination `to(element)`, with the histogram its
/// value names; each side in label order, but to joiners that match by their state
/// (`by_state`, [`Spread::joined_by_state`]), which take them in any order and with
/// their labels' hashes ([`SideElements::hashes`]).
fn side_elements(
    sides: Sides,
    n: usize,
    to: impl Fn(&Element) -> usize,
    by_state: bool,
) -> Vec<SideElements> {
    let empty = SideElements {
        sides: vec![Vec::new(); sides.len()],
        ..SideElements::default()
    };
    let mut parts: Vec<SideElements> = vec![empty; n.max(1)];
    for (side, (elements, held)) in sides.into_iter().enumerate() {
        for e in elements {
            let to = &mut parts[to(&e)];
            let value = match parse_handle(e.value) {
                Some((SOURCE, i)) if (i as usize) < held.len() => {
                    to.histograms.push(held[i as usize].clone());
                    handle(SOURCE, to.histograms.len() as u32 - 1)
                }
                _ => e.value,
            };
            if by_state {
                // The labels were just read for the route: hashing them here spares
                // the joiner reading them.
                to.hashes.push(e.labels.hash());
            }
            to.sides[side].push((e.labels, value, e.drop_name));
        }
    }
    // In label order: the receiver's [`merged`] then merges sorted runs (its stable
    // sort finds them), so the sorting is done by the senders, in parallel. Sorting
    // the whole union on the owner took a union of 50,000 series from 0.58 to
    // 0.75–0.85 of the owned rule's wall time (`RULES_PART=4 RULES_BULK_RULE='rate(x[5m])
    // > 0' cargo bench --bench rules`). Not for joiners that match by their state
    // ([`Spread::joined_by_state`]), which reads them in any order and sorts (in
    // [`merged`]) only where it runs the reference.
    if by_state {
        return parts;
    }
    for part in &mut parts {
        for side in &mut part.sides {
            side.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }
    parts
}

/// The side elements of `records` in one, each side in label order (the order the
/// reference reads a selector's series), histogram handles renumbered; each record's
/// sides come sorted ([`side_elements`]; but to joiners that match by their state,
/// [`Spread::joined_by_state`]), so this merges their runs.
fn merged(records: Vec<SideElements>) -> SideElements {
    let mut all = SideElements::default();
    for record in records {
        let by = all.histograms.len();
        all.histograms.extend(record.histograms);
        if all.sides.len() < record.sides.len() {
            all.sides.resize(record.sides.len(), Vec::new());
        }
        for (to, elements) in all.sides.iter_mut().zip(record.sides) {
            to.extend(elements.into_iter().map(|(l, v, d)| (l, shifted(v, by), d)));
        }
    }
    for side in &mut all.sides {
        side.sort_by(|a, b| a.0.cmp(&b.0));
    }
    all
}

/// The elements of `side` as the reference holds them (names pending removal), without
/// stale markers (which the reference's selections drop).
fn held(side: &[SideElement]) -> Vec<Element> {
    (side.iter())
        .filter(|(_, v, _)| !is_stale_marker(*v))
        .map(|(labels, value, drop_name)| Element {
            labels: labels.clone(),
            value: *value,
            drop_name: *drop_name,
        })
        .collect()
}

/// The operations `plan` (a join's or a pair's [`Spread::aggregate`]) at `t` over
/// `sides` (each [`hole`] the next, in the order the reference evaluates them) as the
/// reference holds them, by the reference's operations ([`tree_value`]): the result
/// unfinished (names pending removal stay pending), detached; `histograms` are those
/// the sides' values name.
fn operation_over(
    plan: &Plan,
    t: i64,
    sides: Vec<Vec<Element>>,
    histograms: &[Arc<FloatHistogram>],
) -> Evaluated {
    let source = Members::new(&[], histograms, t);
    let ev = Evaluator::new(&source, t);
    match tree_value(&ev, plan, t, &mut sides.into_iter()) {
        Ok(Value::Vector(joined)) => {
            let mut value = Value::Vector(joined);
            let held = detach(&ev, &mut value);
            (Ok(value), held)
        }
        Ok(other) => (
            Err(EvalError::Unsupported(format!("not a join: {other:?}"))),
            Vec::new(),
        ),
        Err(e) => (Err(e), Vec::new()),
    }
}

/// The reference's operation ([`Spread::aggregate`]) at `t` over a join's `sides`
/// ([`operation_over`]), its result finished as the reference finishes the whole result
/// (per element, so a part's finished result is the part of the whole's; a duplicate
/// label set among them is the whole's error too), detached.
fn join_over(spread: &Spread, t: i64, sides: &SideElements) -> Evaluated {
    let vectors = sides.sides.iter().map(|side| held(side)).collect();
    match operation_over(&spread.aggregate, t, vectors, &sides.histograms) {
        (Ok(Value::Vector(joined)), held) => match finish_vector(joined) {
            Ok(joined) => (Ok(Value::Vector(joined)), held),
            Err(e) => (Err(e), Vec::new()),
        },
        other => other,
    }
}

/// A join's operations ([`Spread::aggregate`]: vector/vector operations, with
/// vector/scalar ones over joins inside it) at `t` over its leaves' elements `sides`
/// (each [`hole`] the next, in the order the reference evaluates them), as the
/// reference evaluates them (names pending removal stay pending).
fn tree_value(
    ev: &Evaluator<'_>,
    plan: &Plan,
    t: i64,
    sides: &mut dyn Iterator<Item = Vec<Element>>,
) -> EvalResult<Value> {
    match plan {
        Plan::Vector(_) => Ok(Value::Vector(sides.next().unwrap_or_default())),
        Plan::Binary {
            op,
            lhs,
            rhs,
            matching,
            return_bool,
        } if !fixed(lhs) || !fixed(rhs) => {
            let l = tree_value(ev, lhs, t, sides)?;
            let r = tree_value(ev, rhs, t, sides)?;
            let bool = *return_bool;
            Ok(match (l, r) {
                (Value::Vector(a), Value::Vector(b)) => {
                    Value::Vector(binary::vectors(ev, *op, a, b, matching.as_ref(), bool)?)
                }
                (Value::Vector(v), Value::Scalar(s)) => {
                    binary::vector_scalar(ev, *op, v, s, false, bool)
                }
                (Value::Scalar(s), Value::Vector(v)) => {
                    binary::vector_scalar(ev, *op, v, s, true, bool)
                }
                (l, r) => {
                    let e = format!("binary operation on {l:?} and {r:?}");
                    return Err(EvalError::Unsupported(e));
                }
            })
        }
        fixed => ev.eval(fixed, t),
    }
}

/// A joiner's part of a [`Combine::Join`] evaluation at `t`, from the side records it
/// received: the joined elements of its match groups, computed incrementally by its
/// state of the rule (`state`, [`SpreadJoin`]) where that can vouch for the result,
/// else by the reference's operation ([`Spread::aggregate`]) over the side elements;
/// where that fails (a many-to-many match), the side elements themselves, which the
/// owner joins with those of every other joiner that failed, so the error is the one
/// the reference meets first (every match group that fails is among them, in the
/// reference's order).
pub fn joined(
    spread: &Spread,
    state: &mut SpreadJoin,
    t: i64,
    records: Vec<SideElements>,
) -> JoinedPart {
    // The hash a record came with (from another process, or hashed by its sender)
    // spares reading and hashing the labels.
    let elements = records.iter().flat_map(|r| {
        let first: Vec<usize> = (r.sides.iter())
            .scan(0, |at, side| {
                let first = *at;
                *at += side.len();
                Some(first)
            })
            .collect();
        (r.sides.iter().enumerate()).flat_map(move |(side, elements)| {
            let first = first[side];
            elements.iter().enumerate().map(move |(i, (l, v, d))| {
                let key = match r.hashes.get(first + i) {
                    Some(&hash) => LabelsKey {
                        hash,
                        labels: l.clone(),
                    },
                    None => LabelsKey::new(l.clone()),
                };
                (side, key, *v, *d)
            })
        })
    });
    // Under an aggregation of partials: the partials from the state where it vouches
    // for them, else the reference's operation, unfinished, and the aggregation's
    // partials over its result.
    if let Some(fold) = &spread.fold {
        if state.folds() {
            if let Some(entries) = state.fold(elements) {
                return JoinedPart::Partials(entries, None);
            }
        }
        let sides = merged(records);
        return match fold_over(spread, fold, t, &sides) {
            Ok((entries, held)) => JoinedPart::Partials(entries, held),
            Err(_) => JoinedPart::Failed(sides),
        };
    }
    // A join inside a join: the reference's operations, each time.
    if spread.local.len() == 2 {
        if let Some(joined) = state.join(elements) {
            return JoinedPart::Joined(joined, Vec::new());
        }
    }
    let sides = merged(records);
    match join_over(spread, t, &sides) {
        (Ok(Value::Vector(elements)), held) => {
            let mut joined: Vec<(Arc<Labels>, f64)> =
                elements.into_iter().map(|e| (e.labels, e.value)).collect();
            joined.sort_by(|a, b| a.0.cmp(&b.0));
            JoinedPart::Joined(joined, held)
        }
        _ => JoinedPart::Failed(sides),
    }
}

/// How a joiner's state makes the partials of one group of the aggregation `fold`
/// ([`Spread::fold`]) from its members' float values, as [`partials`] does: the
/// reference's [`reduce`] for [`Combine::Fold`], `[count, sum, mean]` for
/// [`Combine::Mean`], `[count, mean, M2]` for [`Combine::Moments`].
fn partial_of(fold: &Spread) -> Option<PartialOf> {
    match (fold.combine, fold.op) {
        (Combine::Fold, Some(op)) => Some(Box::new(move |values: &[f64]| {
            vec![reduce(op, values, 0.0).unwrap_or(f64::NAN)]
        })),
        (Combine::Mean, _) => Some(Box::new(|values: &[f64]| {
            let n = values.len() as f64;
            let copied = || values.iter().copied();
            vec![n, math::sum(copied()), math::mean(copied())]
        })),
        (Combine::Moments, _) => Some(Box::new(|values: &[f64]| {
            let (mean, m2) = moments(values);
            vec![values.len() as f64, mean, m2]
        })),
        _ => None,
    }
}

/// The partials of the aggregation `fold` ([`Spread::fold`]) at `t` over the result of
/// the join's operation over `sides`, unfinished, as the reference aggregates it (names
/// pending removal stay pending; stale markers dropped, as the reference's selections
/// of the sides): made as a worker makes a spread aggregation's ([`partials`]: the
/// aggregation itself for [`Combine::Fold`], with its `sum`'s member counts where the
/// elements hold histograms; else the elements, as members). No duplicate check: the
/// reference aggregates the join's result before it finishes (and checks) the whole.
fn fold_over(spread: &Spread, fold: &Spread, t: i64, sides: &SideElements) -> Partials {
    let vectors = sides.sides.iter().map(|side| held(side)).collect();
    let (value, held) = operation_over(&spread.aggregate, t, vectors, &sides.histograms);
    let Value::Vector(elements) = value? else {
        return Err(EvalError::Unsupported("not a join".into()));
    };
    if fold.combine != Combine::Fold {
        return partials(fold, vec![(Ok(Value::Vector(elements)), held)], None);
    }
    let members = match members_plan(&fold.aggregate) {
        Some(count) if !held.is_empty() => Some(over_held(&count, t, elements.clone(), &held).0),
        _ => None,
    };
    let value = over_held(&fold.aggregate, t, elements, &held);
    partials(fold, vec![value], members)
}

/// `elements` in label order, or the reference's duplicate-labelset error if two share
/// labels (as [`crate::promql::eval::check_unique`], by neighbours once sorted). Parts each in label order
/// (a joiner's, a worker's) sort as a merge.
fn unique_sorted(mut elements: Vec<Element>) -> EvalResult<Vec<Element>> {
    elements.sort_by(|a, b| a.labels.cmp(&b.labels));
    if elements.windows(2).any(|w| w[0].labels == w[1].labels) {
        return Err(EvalError::DuplicateLabelset);
    }
    Ok(elements)
}

/// Combines the records of a [`Combine::Union`] evaluation: the union of their
/// elements, unfinished, in label order (the order the reference reads a selector's
/// series in); finishing it ([`finish_vector`]) is the reference's check that no two
/// share labels.
fn union_combined(records: Vec<Part>) -> Evaluated {
    let mut parts = Vec::new();
    for record in records {
        match record {
            Part::Elements(Ok(part)) => parts.push(part),
            Part::Elements(Err(e)) | Part::Partials(Err(e)) => return (Err(e), Vec::new()),
            Part::Partials(Ok(_)) => {
                let e = EvalError::Unsupported("a union of partials".into());
                return (Err(e), Vec::new());
            }
        }
    }
    let mut all = merged(parts);
    let elements = (all.sides.pop().unwrap_or_default().into_iter())
        .map(|(labels, value, drop_name)| Element {
            labels,
            value,
            drop_name,
        })
        .collect();
    (Ok(Value::Vector(elements)), all.histograms)
}

/// The partials of `records` (an aggregation's, a join's owner records).
fn partials_of(records: Vec<Part>) -> Vec<Partials> {
    (records.into_iter())
        .map(|record| match record {
            Part::Partials(p) => p,
            Part::Elements(Err(e)) => Err(e),
            Part::Elements(Ok(_)) => Err(EvalError::Unsupported("elements as partials".into())),
        })
        .collect()
}

/// Combines a [`Combine::Join`] evaluation: the workers' records (empty, or a side's
/// error) and the joiners' parts; the union of the joined elements, with the
/// reference's operation over the sides of the joiners that failed (its error),
/// which the reference refuses if two share labels.
fn join_combined(
    spread: &Spread,
    t: i64,
    records: Vec<Partials>,
    parts: Vec<JoinedPart>,
) -> Evaluated {
    if let Some(Err(e)) = records.into_iter().find(Result::is_err) {
        return (Err(e), Vec::new());
    }
    if let Some(fold) = &spread.fold {
        return fold_join_combined(spread, fold, t, parts);
    }
    let mut elements = Vec::new();
    let mut histograms: Vec<Arc<FloatHistogram>> = Vec::new();
    let mut failed = Vec::new();
    let mut add = |joined: Vec<(Arc<Labels>, f64)>, held: Vec<Arc<FloatHistogram>>| {
        let by = histograms.len();
        histograms.extend(held);
        elements.extend(
            (joined.into_iter()).map(|(labels, value)| Element::new(labels, shifted(value, by))),
        );
    };
    for part in parts {
        match part {
            JoinedPart::Joined(joined, held) => add(joined, held),
            JoinedPart::Failed(sides) => failed.push(sides),
            JoinedPart::Partials(..) => {
                let e = EvalError::Unsupported("partials of a join without a fold".into());
                return (Err(e), Vec::new());
            }
        }
    }
    if !failed.is_empty() {
        match join_over(spread, t, &merged(failed)) {
            (Ok(Value::Vector(joined)), held) => add(
                joined.into_iter().map(|e| (e.labels, e.value)).collect(),
                held,
            ),
            (Ok(_), _) => {}
            (Err(e), _) => return (Err(e), Vec::new()),
        }
    }
    match unique_sorted(elements) {
        Ok(elements) => (Ok(Value::Vector(elements)), histograms),
        Err(e) => (Err(e), Vec::new()),
    }
}

/// Combines the joiners' partials of a join under an aggregation ([`Spread::fold`]) as
/// a spread aggregation's are combined; the sides of the joiners that failed are
/// joined first (the reference's error, see [`join_combined`]).
fn fold_join_combined(spread: &Spread, fold: &Spread, t: i64, parts: Vec<JoinedPart>) -> Evaluated {
    let mut records = Vec::new();
    let mut failed = Vec::new();
    for part in parts {
        match part {
            JoinedPart::Partials(entries, held) => records.push(Ok((entries, held))),
            JoinedPart::Failed(sides) => failed.push(sides),
            JoinedPart::Joined(..) => {
                let e = EvalError::Unsupported("joined elements of a fold".into());
                return (Err(e), Vec::new());
            }
        }
    }
    if !failed.is_empty() {
        match fold_over(spread, fold, t, &merged(failed)) {
            Ok(part) => records.push(Ok(part)),
            Err(e) => return (Err(e), Vec::new()),
        }
    }
    match (fold.combine, fold.op) {
        (Combine::Fold, Some(op)) => fold_combined(op, records),
        _ => member_combined(fold, t, records),
    }
}

impl Spread {
    /// A joiner's state of a [`Combine::Join`] rule (`None` for any other combine).
    pub fn joiner_state(&self) -> Option<SpreadJoin> {
        match (&self.combine, &self.aggregate) {
            (
                Combine::Join,
                Plan::Binary {
                    op,
                    matching: Some(matching),
                    return_bool,
                    ..
                },
            ) => {
                let state = SpreadJoin::new(*op, matching.clone(), *return_bool);
                match (self.fold.as_deref(), self.local.len()) {
                    (Some(fold), 2) if !op.is_set() => match partial_of(fold) {
                        Some(partial) => Some(state.with_fold(fold.grouping.clone(), partial)),
                        None => Some(state),
                    },
                    _ => Some(state),
                }
            }
            _ => None,
        }
    }

    /// A join's routing ([`joiner`]): its matching and whether it is a set operator's
    /// (whose match groups leave out `__type__`/`__unit__`); for a join inside a join,
    /// the labels every one of its matchings matches on but the name labels (so the
    /// elements of a match group of any of them, and the results of the inner ones,
    /// which keep those labels, meet on one joiner), as a set operator's `on` or
    /// `ignoring`. `None` for any other combine.
    pub fn route(&self) -> Option<(Matching, bool)> {
        if self.combine != Combine::Join {
            return None;
        }
        let mut joins = Vec::new();
        matchings(&self.aggregate, &mut joins);
        match joins.as_slice() {
            [(matching, set)] => Some((matching.clone(), *set)),
            _ => Some((common_route(&joins), true)),
        }
    }

    /// Whether its joiners match by their state ([`SpreadJoin`]), which reads the side
    /// elements in any order: a join of two per-series plans, but a set operator's
    /// under an aggregation (whose joiners run the reference at every evaluation, as
    /// those of a join inside a join).
    pub fn joined_by_state(&self) -> bool {
        let set = matches!(&self.aggregate, Plan::Binary { op, .. } if op.is_set());
        self.combine == Combine::Join && self.local.len() == 2 && !(set && self.fold.is_some())
    }

    /// Whether a worker evaluates local plan `i` unfinished, as the reference holds
    /// it (names pending removal, with their flag, [`Element::drop_name`]), its
    /// elements crossing as [`SideElement`]s, for the owner (or a joiner) to finish
    /// where the reference finishes: a join's sides, a union's per-series plan, a
    /// pair's per-series side.
    pub fn sends_elements(&self, i: usize) -> bool {
        match (self.combine, self.pair.as_deref()) {
            (Combine::Join | Combine::Union | Combine::Pick | Combine::Gather, _) => true,
            (Combine::Pair, Some([l, r])) => match i.checked_sub(l.local.len()) {
                None => l.sends_elements(i),
                Some(i) => r.sends_elements(i),
            },
            _ => false,
        }
    }

    /// Whether the owner runs the reference's evaluation over every element of the
    /// rule's series at every evaluation: a per-series plan under operations that are
    /// not element-wise steps (`sort_desc(rate(x[5m]))`), a gather (`quantile`,
    /// `count_values`), a pair with a per-series side (`x / on (job) group_left sum by
    /// (job) (x)`), a join under such operations (`quantile(0.9, rate(a[5m]) /
    /// rate(b[5m]))`). The owner's work then grows with the series, not the groups,
    /// and is not incremental; spread over 2 workers such rules measured slower than
    /// owned on 1, with more CPU (50,000 series, `RULES_PART=4
    /// RULES_SPREAD_OWNER_BOUND=1 RULES_BULK_RULE=… cargo bench --bench rules`,
    /// 2026-12-07, wall / CPU per evaluation, owned vs spread): `sort_desc(rate(x[5m]))`
    /// 81 / 84 vs 99 / 125 ms, `quantile by (job) (0.9, rate(x[5m]))` 59 / 61 vs
    /// 112 / 138 ms, `x / on (job) group_left sum by (job) (x)` 93 / 97 vs 106 / 133
    /// ms, `sum by (job) (rate(x[5m]) / on (instance) rate(x[1m]))` 78 / 79 vs 87 /
    /// 136 ms. So they stay owned unless [`crate::EngineConfig::spread_owner_bound`].
    /// A join under an aggregation of partials ([`Spread::fold`]: `sum by (job)
    /// (rate(a[5m]) / rate(b[5m]))`) stays among them, though its joiners make the
    /// partials and its owner only combines groups: not yet shown faster than owned.
    /// Its joiners then ran the reference at every evaluation (168 / 287 ms spread vs
    /// 81 / 80 owned for the rule above); with their state ([`SpreadJoin::fold`]), on
    /// a shared, loaded 2-core machine, 104–124 ms of CPU spread vs 81–93 owned, the
    /// wall times too noisy to tell (2026-12-07; to measure on a quiet machine).
    pub fn owner_bound(&self) -> bool {
        let whole_after = self.after.as_ref().is_some_and(|a| steps_of(a).is_none());
        match (self.combine, self.pair.as_deref()) {
            (Combine::Gather, _) => true,
            (Combine::Join, _) if self.fold.is_some() => true,
            (Combine::Union | Combine::Join, _) => whole_after,
            (Combine::Pair, Some(sides)) => sides.iter().any(|s| s.combine == Combine::Union),
            _ => false,
        }
    }

    /// A join's matching (`None` for any other combine).
    pub fn matching(&self) -> Option<&Matching> {
        match (&self.combine, &self.aggregate) {
            (Combine::Join, Plan::Binary { matching, .. }) => matching.as_ref(),
            _ => None,
        }
    }
}

/// Whether (and how) a rule is spread over the workers; see the module doc. `joins`:
/// whether a one-to-one join of two per-series plans may be ([`Combine::Join`]);
/// `owner_bound`: whether a rule may be whose owner evaluates every element
/// ([`Spread::owner_bound`]).
pub fn spread_of(
    plan: &Plan,
    schedule: RuleSchedule,
    evaluation: Evaluation,
    uses: &[SelectorUse],
    joins: bool,
    owner_bound: bool,
) -> Option<Spread> {
    spread_shape(plan, schedule, evaluation, uses, joins)
        .filter(|spread| owner_bound || !spread.owner_bound())
}

/// The spread shape of a rule, if it has one (see [`spread_of`]).
fn spread_shape(
    plan: &Plan,
    schedule: RuleSchedule,
    evaluation: Evaluation,
    uses: &[SelectorUse],
    joins: bool,
) -> Option<Spread> {
    if evaluation != Evaluation::Incremental || schedule == RuleSchedule::OnArrival {
        return None;
    }
    if uses.is_empty() || uses.iter().any(|u| u.absolute.is_some()) {
        return None;
    }
    if let Some(spread) = union_of(plan) {
        return Some(spread);
    }
    let (inner, after) = peel(plan)?;
    match inner {
        _ if per_series(inner).is_some() => union_after(inner, after?),
        Plan::Binary { .. } => joins
            .then(|| join_of(inner, after.clone()))
            .flatten()
            .or_else(|| pair_of(inner, after)),
        _ if uses.len() == 1 => aggregation_of(inner, after),
        _ => None,
    }
}

/// A selector a spread rule may read: a `__name__="…"` matcher (two metrics' series
/// could become equal label sets once a function drops their names, which the
/// reference refuses and a worker could not see), no `@`, no `anchored`/`smoothed`.
fn spreadable(sel: &VectorSel) -> bool {
    sel.at.is_none()
        && sel.modifier.is_none()
        && sel
            .selector
            .matchers
            .iter()
            .any(|m| m.name == METRIC_NAME && matches!(m.kind, MatchKind::Equal(_)))
}

/// Whether `plan`'s element-wise operations (down to what is not one) include
/// `label_replace`/`label_join`.
fn labelling(plan: &Plan) -> bool {
    let mut p = plan;
    loop {
        match p {
            Plan::Call {
                func: "label_replace" | "label_join",
                ..
            } => return true,
            _ => match element_wise(p) {
                Some((operand, _)) => p = operand,
                None => return false,
            },
        }
    }
}

/// A per-series plan ([`Combine::Union`]) over a spreadable selector, whose label
/// functions all come last (`label_replace(rate(x[5m]) > 1, …)`, not
/// `label_replace(x, …) > 1`): two elements made equal by a label function stay equal
/// up to the result, so the reference's duplicate check is the owner's over the union.
fn union_of(plan: &Plan) -> Option<Spread> {
    let (sel, _) = per_series(plan)?;
    let mut below = plan;
    while let Plan::Call {
        func: "label_replace" | "label_join",
        args,
    } = below
    {
        below = args.first()?;
    }
    if !spreadable(sel) || labelling(below) {
        return None;
    }
    Some(Spread {
        op: None,
        combine: Combine::Union,
        local: vec![plan.clone()],
        aggregate: hole(),
        grouping: Grouping::By(Vec::new()),
        after: None,
        pair: None,
        fold: None,
    })
}

/// A per-series plan ([`Combine::Union`]) without label functions, under operations
/// that are not element-wise (`histogram_quantile(0.9, rate(x_bucket[5m]))`,
/// `sort_desc(rate(x[5m]))`, `sort_by_label(rate(x[5m]), "__name__")`). The union is
/// in label order, the order the reference reads the selector's series in, its
/// values are the reference's to the bit and its elements hold their names as the
/// reference holds them (pending removal, [`Part::Elements`]), so any operation after
/// it may run on the owner, the name labels read as the reference reads them.
fn union_after(plan: &Plan, after: Plan) -> Option<Spread> {
    let spread = union_of(plan)?;
    if labelling(plan) {
        return None;
    }
    Some(Spread {
        after: Some(after),
        ..spread
    })
}

/// A one-to-one arithmetic or comparison, or a set operator, of two per-series plans
/// over spreadable selectors, or of such joins (with vector/scalar operations after
/// them: `a / b < 0.1 and c == 0`) and per-series plans ([`Combine::Join`]), without
/// label functions in them or after, without `on`/`ignoring` of the name labels (the
/// joiners' finished results have their names dropped where the reference may still
/// hold them pending removal).
fn join_of(plan: &Plan, after: Option<Plan>) -> Option<Spread> {
    if after.as_ref().is_some_and(|a| reads_names(a) || ordered(a)) {
        return None;
    }
    let mut local = Vec::new();
    let aggregate = join_tree(plan, &mut local)?;
    if local.len() < 2 {
        return None;
    }
    // A flat join under an aggregation of partials: the joiners make its partials.
    let (fold, after) = match after {
        Some(a) if local.len() == 2 => match joiners_fold(&aggregate, &a) {
            Some((fold, rest)) => (Some(Box::new(fold)), rest),
            None => (None, Some(a)),
        },
        after => (None, after),
    };
    Some(Spread {
        op: None,
        combine: Combine::Join,
        local,
        aggregate,
        grouping: Grouping::By(Vec::new()),
        after,
        pair: None,
        fold,
    })
}

/// The innermost operation of `after` (the operations after a combine, over [`hole`])
/// and the rest over [`hole`] (`None`: `after` is it).
fn innermost(after: &Plan) -> Option<(&Plan, Option<Plan>)> {
    let i = operand_index(after)?;
    let operand = operand_at(after, i)?;
    if matches!(operand, Plan::Vector(sel) if sel.selector.matchers.is_empty()) {
        return Some((after, None));
    }
    let (inner, below) = innermost(operand)?;
    let mut rest = after.clone();
    *operand_at_mut(&mut rest, i)? = below.unwrap_or_else(hole);
    Some((inner, Some(rest)))
}

/// For a flat join (`aggregate`, the operation over two holes) under `after`: the
/// aggregation of partials its joiners make (the innermost of `after`: `sum count min
/// max group avg stddev stdvar`, no parameter) and the rest of `after`, or `None`.
/// The joiners aggregate the joined elements unfinished, as the reference holds them
/// ([`joined`]), and their partials cross finished, as a worker's of an aggregation
/// do: so not `by` of a name label (the reference's group would hold it pending
/// removal), not `without` unless the join's results hold no name label (a one-to-one
/// arithmetic or comparison `on` labels that are not name labels: its result labels
/// are those), and not under operations after it that need the groups' order or
/// values' last bits or write `__type__`/`__unit__` (as [`aggregation_of`]).
fn joiners_fold(aggregate: &Plan, after: &Plan) -> Option<(Spread, Option<Plan>)> {
    let (inner, rest) = innermost(after)?;
    let Plan::Aggregate {
        op,
        param: None,
        grouping,
        ..
    } = inner
    else {
        return None;
    };
    let combine = partials_combine(*op)?;
    if rest
        .as_ref()
        .is_some_and(|a| ordered(a) || labels_values(a) || writes_meta(a))
    {
        return None;
    }
    let fits = match grouping {
        Grouping::By(labels) => !labels.iter().any(|l| is_name_label(l)),
        Grouping::Without(_) => matches!(
            aggregate,
            Plan::Binary {
                op,
                matching: Some(Matching { on: true, labels, card: Card::OneToOne, .. }),
                ..
            } if !op.is_set() && !labels.iter().any(|l| is_name_label(l))
        ),
    };
    if !fits {
        return None;
    }
    let fold = Spread {
        op: Some(*op),
        combine,
        local: Vec::new(),
        aggregate: Plan::Aggregate {
            op: *op,
            expr: Box::new(hole()),
            param: None,
            grouping: grouping.clone(),
        },
        grouping: grouping.clone(),
        after: None,
        pair: None,
        fold: None,
    };
    Some((fold, rest))
}

/// `plan`, a join (see [`join_of`]), with each per-series leaf, pushed to `leaves` in
/// the order the reference evaluates them, replaced by [`hole`] (the second by
/// [`rhs_hole`]), and each matching made explicit.
fn join_tree(plan: &Plan, leaves: &mut Vec<Plan>) -> Option<Plan> {
    if let Some((sel, _)) = per_series(plan) {
        if !spreadable(sel) || labelling(plan) {
            return None;
        }
        leaves.push(plan.clone());
        return Some(match leaves.len() {
            2 => rhs_hole(),
            _ => hole(),
        });
    }
    let Plan::Binary {
        op,
        lhs,
        rhs,
        matching,
        return_bool,
    } = plan
    else {
        return None;
    };
    let (lhs, rhs, matching) = match (fixed(lhs), fixed(rhs)) {
        (false, false) => {
            let matching = match op.is_set() {
                true => set_matching(matching.as_ref())?,
                false => one_to_one(matching.as_ref())?,
            };
            if matching.labels.iter().any(|l| is_name_label(l)) {
                return None;
            }
            let lhs = join_tree(lhs, leaves)?;
            (lhs, join_tree(rhs, leaves)?, Some(matching))
        }
        // Over a join (a per-series plan is a leaf).
        (false, true) => (join_tree(lhs, leaves)?, (**rhs).clone(), None),
        (true, false) => ((**lhs).clone(), join_tree(rhs, leaves)?, None),
        (true, true) => return None,
    };
    Some(Plan::Binary {
        op: *op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
        matching,
        return_bool: *return_bool,
    })
}

/// The matchings of the vector/vector operations of a join's [`Spread::aggregate`],
/// each with whether it is a set operator's, into `out`.
fn matchings(plan: &Plan, out: &mut Vec<(Matching, bool)>) {
    if let Plan::Binary {
        op,
        lhs,
        rhs,
        matching,
        ..
    } = plan
    {
        if let (false, false, Some(matching)) = (fixed(lhs), fixed(rhs), matching) {
            out.push((matching.clone(), op.is_set()));
        }
        matchings(lhs, out);
        matchings(rhs, out);
    }
}

/// The labels every one of `joins`' matchings matches on, but the name labels: a set
/// operator's matching (its `ignoring` leaves the name labels out) on them.
fn common_route(joins: &[(Matching, bool)]) -> Matching {
    let ignored: Vec<&String> = (joins.iter())
        .filter(|(m, _)| !m.on)
        .flat_map(|(m, _)| &m.labels)
        .collect();
    let mut on = joins.iter().filter(|(m, _)| m.on).map(|(m, _)| &m.labels);
    let (on, mut labels) = match on.next() {
        None => (false, ignored.into_iter().cloned().collect::<Vec<String>>()),
        Some(first) => {
            let rest: Vec<&Vec<String>> = on.collect();
            let labels = (first.iter())
                .filter(|l| rest.iter().all(|r| r.contains(l)))
                .filter(|l| !ignored.contains(l) && !is_name_label(l))
                .cloned()
                .collect();
            (true, labels)
        }
    };
    labels.sort();
    labels.dedup();
    Matching {
        on,
        labels,
        card: Card::ManyToMany,
        fill_lhs: None,
        fill_rhs: None,
    }
}

/// The matching of a set operator (`and`, `or`, `unless`: many-to-many, on every label
/// but the name labels without `on`/`ignoring`), without fills (a set operator takes
/// no group modifiers).
fn set_matching(matching: Option<&Matching>) -> Option<Matching> {
    let matching = matching.cloned().unwrap_or(Matching {
        on: false,
        labels: Vec::new(),
        card: Card::ManyToMany,
        fill_lhs: None,
        fill_rhs: None,
    });
    (matching.fill_lhs.is_none() && matching.fill_rhs.is_none()).then_some(matching)
}

/// `plan`, a vector/vector operation, over [`hole`] (left) and [`rhs_hole`] (right),
/// with `matching`.
fn over_holes(plan: &Plan, with: Option<Matching>) -> Plan {
    let mut plan = plan.clone();
    if let Plan::Binary {
        lhs, rhs, matching, ..
    } = &mut plan
    {
        **lhs = hole();
        **rhs = rhs_hole();
        *matching = with;
    }
    plan
}

/// The selector that stands for a join's right-hand side in [`Spread::aggregate`]
/// ([`hole`] stands for the left).
pub fn rhs_hole() -> Plan {
    let mut plan = hole();
    if let Plan::Vector(sel) = &mut plan {
        sel.selector.matchers.push(LabelMatcher {
            name: METRIC_NAME.into(),
            kind: MatchKind::Equal("rhs".into()),
        });
    }
    plan
}

/// A vector/vector operation ([`Combine::Pair`]) of two spread aggregations, or of a
/// spread aggregation and a per-series plan of one spreadable selector without label
/// functions (a [`Combine::Union`] side, [`series_side`]), any matching. Not picks
/// (not analysed as a side: their groups hold several elements). An
/// aggregation on the "one" side must not be able to hold two elements of a match
/// group ([`unique_groups`]): the error would name them in the order the reference
/// makes an aggregation's groups (first seen), which the owner does not know; a
/// per-series "one" side may, as its union in label order is the order the reference
/// reads the selector's series in. A per-series side's elements cross unfinished
/// ([`Spread::sends_elements`]), so labels, signatures and errors are the
/// reference's, and the owner finishes the whole result. Not `group_left`/
/// `group_right` of a name label beside a per-series side into an aggregation's groups
/// (the "many" side): the reference may still drop the copy (a member of the group
/// held its name pending removal), which the owner does not know.
fn pair_of(plan: &Plan, after: Option<Plan>) -> Option<Spread> {
    let Plan::Binary {
        op,
        lhs,
        rhs,
        matching,
        ..
    } = plan
    else {
        return None;
    };
    let aggregation = |p: &Plan| aggregation_of(p, None).filter(|s| s.combine != Combine::Pick);
    let sides = match (aggregation(lhs), aggregation(rhs)) {
        (Some(l), Some(r)) => [l, r],
        (Some(l), None) => [l, series_side(rhs)?],
        (None, Some(r)) => [series_side(lhs)?, r],
        (None, None) => return None,
    };
    let one = match matching.as_ref().map(|m| &m.card) {
        Some(Card::OneToMany(_)) => &sides[0],
        _ => &sides[1],
    };
    let unique = match matching {
        _ if op.is_set() || one.combine == Combine::Union => true,
        None => true,
        Some(m) => unique_groups(one, m),
    };
    // A name label copied beside a per-series side into an aggregation's groups (the
    // "many" side): the reference may still drop it at the end (a member of the group
    // held its name pending removal, the group's flag), which the owner does not know.
    // Into a per-series side's elements it is the reference's: they hold their flags.
    let mixed = sides.iter().any(|s| s.combine == Combine::Union);
    let copied_into = match matching.as_ref().map(|m| &m.card) {
        Some(Card::ManyToOne(include)) if include.iter().any(|l| is_name_label(l)) => Some(0),
        Some(Card::OneToMany(include)) if include.iter().any(|l| is_name_label(l)) => Some(1),
        _ => None,
    };
    let copies_names = copied_into.is_some_and(|many| sides[many].combine != Combine::Union);
    if !unique
        || (mixed && copies_names)
        || after
            .as_ref()
            .is_some_and(|a| ordered(a) || labels_values(a) || writes_meta(a))
    {
        return None;
    }
    Some(Spread {
        op: None,
        combine: Combine::Pair,
        local: sides.iter().flat_map(|s| s.local.clone()).collect(),
        aggregate: over_holes(plan, matching.clone()),
        grouping: Grouping::By(Vec::new()),
        after,
        pair: Some(Box::new(sides)),
        fold: None,
    })
}

/// Whether the spread aggregation `one`, the "one" side of a vector/vector operation
/// matching by `m`, has at most one element per match group: each group's signature
/// is all its labels (`by` labels all within `on`, or none of them `ignoring`d;
/// `without` labels covering every `ignoring`d one, as a `without` group has no name
/// labels), or the signature is all of every group's labels but `__name__` (no
/// matching, `ignoring ()`). Not `count_values` under `on`/`ignoring` of labels (its
/// groups have the value label too).
fn unique_groups(one: &Spread, m: &Matching) -> bool {
    if !m.on && m.labels.is_empty() {
        return true;
    }
    match &one.grouping {
        _ if one.op == Some(AggOp::CountValues) => false,
        Grouping::By(g) => g.iter().all(|l| m.labels.contains(l) == m.on),
        Grouping::Without(dropped) => {
            !m.on && (m.labels.iter()).all(|l| dropped.contains(l) || is_name_label(l))
        }
    }
}

/// A per-series side of a [`Combine::Pair`]: a [`Combine::Union`] of a per-series plan
/// without label functions (the operation is not element-wise: as [`union_after`]).
fn series_side(plan: &Plan) -> Option<Spread> {
    union_of(plan).filter(|_| !labelling(plan))
}

/// Whether the reference's elements of per-series plan `plan` (no label functions)
/// still carry their name labels (`Some`: not once arithmetic dropped them, `x * 2`),
/// and whether they hold them pending removal (`Some(true)`: under a function or `-`
/// other than `last_over_time`/`first_over_time`, with only filters after it,
/// `rate(x[5m])`, `abs(x) > 1`; as [`crate::promql::eval::functions`] says): then an
/// aggregation's group holds its `__type__`/`__unit__` pending removal in the
/// reference, where a worker's finished groups have dropped them.
fn names_held(plan: &Plan) -> Option<bool> {
    match plan {
        Plan::Vector(_) => Some(false),
        Plan::Call {
            func: "last_over_time" | "first_over_time",
            ..
        } => Some(false),
        Plan::Call { args, .. } if args.iter().any(|a| matches!(a, Plan::Matrix { .. })) => {
            Some(true)
        }
        Plan::Binary {
            op, return_bool, ..
        } if !op.keeps_name(*return_bool) => None,
        Plan::Binary { .. } => names_held(element_wise(plan)?.0),
        _ => names_held(element_wise(plan)?.0).map(|_| true),
    }
}

/// How the partials of aggregation `op` combine, for the aggregations of mergeable
/// partials (sum, min, max, count, group; avg; stddev, stdvar); `None` for the others.
fn partials_combine(op: AggOp) -> Option<Combine> {
    match op {
        AggOp::Sum | AggOp::Min | AggOp::Max | AggOp::Count | AggOp::Group => Some(Combine::Fold),
        AggOp::Avg => Some(Combine::Mean),
        AggOp::Stddev | AggOp::Stdvar => Some(Combine::Moments),
        _ => None,
    }
}

/// An aggregation ([`Combine::Fold`] to [`Combine::Gather`]) over a per-series plan of
/// one spreadable selector, `after` the operations on it.
fn aggregation_of(aggregation: &Plan, after: Option<Plan>) -> Option<Spread> {
    let Plan::Aggregate {
        op,
        expr,
        param,
        grouping,
    } = aggregation
    else {
        return None;
    };
    let combine = partials_combine(*op).unwrap_or(match op {
        AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio => Combine::Pick,
        _ => Combine::Gather,
    });
    // Operations after partials combined per group that depend on the order of the
    // groups or on the last bits of their values (`topk(5, sum by (job) (…))`,
    // `sort(…)`, `count_values`): the owner would have to run the reference's
    // aggregation over every member in label order (the reference's order) to give the
    // groups in its order with its values to the bit, and gathering every member costs
    // more than the owned rule (`RULES_PART=4 RULES_BULK_RULE='topk(5, sum by (job)
    // (rate(x[5m])))' cargo bench --bench rules`, 2026-12-07: 147 ms wall and 224–228
    // ms CPU per evaluation on two workers gathering, 107–112 ms owned on one): such a
    // rule is owned. A pick's or a gather's elements come in the reference's order
    // already.
    let partials = matches!(combine, Combine::Fold | Combine::Mean | Combine::Moments);
    if partials
        && after
            .as_ref()
            .is_some_and(|a| ordered(a) || labels_values(a))
    {
        return None;
    }
    let param_fits = match (op, param.as_deref()) {
        (AggOp::CountValues, Some(Plan::String(_))) => true,
        (
            AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio | AggOp::Quantile,
            Some(p),
        ) => constant(p),
        (_, p) => p.is_none(),
    };
    // Partials combined per group are finished: the reference's groups hold their
    // members' pending name removal, which a label function writing `__type__`/
    // `__unit__` after them would show. (Picked and gathered members cross unfinished,
    // and their owner finishes as the reference does.)
    if !param_fits || (partials && after.as_ref().is_some_and(writes_meta)) {
        return None;
    }
    if matches!(grouping, Grouping::By(labels) if labels.iter().any(|l| l == METRIC_NAME)) {
        return None;
    }
    // Not `by` of `__type__`/`__unit__` where the members hold them pending removal
    // (`count by (__type__) (rate(x[5m]))`): the reference's groups keep them until
    // the end, then drops them (two groups that differ only in them are its duplicate
    // error); a worker's groups have dropped them already.
    let by_meta =
        matches!(grouping, Grouping::By(labels) if labels.iter().any(|l| is_name_label(l)));
    if partials && by_meta && names_held(expr) == Some(true) {
        return None;
    }
    // Over a per-series plan without label functions (two series a label function
    // makes equal are the reference's duplicate error, which no worker sees).
    let (sel, _) = per_series(expr)?;
    if !spreadable(sel) || labelling(expr) {
        return None;
    }
    let local = match combine {
        Combine::Fold => vec![aggregation.clone()],
        _ => vec![(**expr).clone()],
    };
    Some(Spread {
        op: Some(*op),
        combine,
        local,
        aggregate: Plan::Aggregate {
            op: *op,
            expr: Box::new(hole()),
            param: param.clone(),
            grouping: grouping.clone(),
        },
        grouping: grouping.clone(),
        after,
        pair: None,
        fold: None,
    })
}

/// An operand of an operation after the combine other than the one over [`hole`]: a
/// constant, a string, or `time()` (the owner evaluates the operations at the
/// evaluation time, so `time()` is the reference's there).
fn fixed(plan: &Plan) -> bool {
    constant(plan)
        || matches!(plan, Plan::String(_))
        || matches!(plan, Plan::Call { func: "time", args } if args.is_empty())
}

/// Which operand of `plan` may hold the spread part, when `plan` is an operation the
/// owner may run over the combined result by the reference: every other operand is
/// [`fixed`]; not a set operator, not `absent`/`absent_over_time` (their labels come
/// from their argument's matchers), `info` (it reads other series) or
/// `start_timestamp` (the start timestamps of a selector's samples, nothing of an
/// expression). A range argument or a subquery is no operand ([`peel`] stops there).
fn operand_index(plan: &Plan) -> Option<usize> {
    let only = |operands: &[&Plan]| {
        let mut at = None;
        for (i, p) in operands.iter().enumerate() {
            if !fixed(p) {
                if at.is_some() {
                    return None;
                }
                at = Some(i);
            }
        }
        at
    };
    match plan {
        Plan::Neg(inner) => only(&[inner]),
        Plan::Binary { op, lhs, rhs, .. } if !op.is_set() => only(&[lhs, rhs]),
        Plan::Call { func, args }
            if !matches!(
                *func,
                "absent" | "absent_over_time" | "info" | "start_timestamp"
            ) =>
        {
            only(&args.iter().collect::<Vec<_>>())
        }
        Plan::Aggregate { expr, param, .. } if param.as_deref().is_none_or(fixed) => {
            (!fixed(expr)).then_some(0)
        }
        _ => None,
    }
}

/// The operand of `plan` at [`operand_index`] `i`.
fn operand_at(plan: &Plan, i: usize) -> Option<&Plan> {
    match plan {
        Plan::Neg(inner) | Plan::Aggregate { expr: inner, .. } => Some(inner),
        Plan::Binary { lhs, rhs, .. } => Some(if i == 0 { lhs } else { rhs }),
        Plan::Call { args, .. } => args.get(i),
        _ => None,
    }
}

/// [`operand_at`], to replace it.
fn operand_at_mut(plan: &mut Plan, i: usize) -> Option<&mut Plan> {
    match plan {
        Plan::Neg(inner) | Plan::Aggregate { expr: inner, .. } => Some(inner),
        Plan::Binary { lhs, rhs, .. } => Some(if i == 0 { lhs } else { rhs }),
        Plan::Call { args, .. } => args.get_mut(i),
        _ => None,
    }
}

/// The part of `plan` that is spread (a vector/vector operation of two operands that
/// are not [`fixed`], the innermost aggregation, the one over a per-series plan, or
/// else a per-series plan) and the operations after it, over [`hole`] (`None`: `plan`
/// is it): any plan whose
/// other operands are [`fixed`] ([`operand_index`]), e.g. `histogram_quantile(0.9, …)`,
/// `topk(5, …)`, `count(…)`, `scalar(…)`, `label_replace(…)`, `time() - …`, nested.
fn peel(plan: &Plan) -> Option<(&Plan, Option<Plan>)> {
    let join = matches!(plan, Plan::Binary { lhs, rhs, .. } if !fixed(lhs) && !fixed(rhs));
    let aggregation = matches!(plan, Plan::Aggregate { expr, .. } if per_series(expr).is_some());
    if join || aggregation || per_series(plan).is_some() {
        return Some((plan, None));
    }
    let i = operand_index(plan)?;
    let (inner, below) = peel(operand_at(plan, i)?)?;
    let mut after = plan.clone();
    *operand_at_mut(&mut after, i)? = below.unwrap_or_else(hole);
    Some((inner, Some(after)))
}

/// Whether operations after the combine read the name labels of their input
/// (`label_replace`/`label_join`, `by (__name__)`, `sort_by_label(…, "__name__")`,
/// `limit_ratio`, which hashes every label):
/// where the combined elements are a pick's or a join's, the reference may still hold
/// `__name__` pending removal in them, which a worker's or joiner's finished elements
/// have dropped.
fn reads_names(after: &Plan) -> bool {
    any_node(after, &|p| match p {
        Plan::Call {
            func: "label_replace" | "label_join",
            ..
        } => true,
        Plan::Call {
            func: "sort_by_label" | "sort_by_label_desc",
            args,
        } => args
            .iter()
            .any(|a| matches!(a, Plan::String(l) if is_name_label(l))),
        // It hashes every label.
        Plan::Aggregate {
            op: AggOp::LimitRatio,
            ..
        } => true,
        Plan::Aggregate {
            grouping: Grouping::By(labels),
            ..
        } => labels.iter().any(|l| is_name_label(l)),
        _ => false,
    })
}

/// Whether operations after the combine write `__type__`/`__unit__` (a label function
/// whose target is one): on an aggregation's group the reference holds its members'
/// pending name removal (the group's flag) and drops them at the end, where the
/// owner's combined groups are finished. (Writing `__name__` cancels the removal.)
fn writes_meta(after: &Plan) -> bool {
    any_node(after, &|p| match p {
        Plan::Call {
            func: "label_replace" | "label_join",
            args,
        } => matches!(args.get(1), Some(Plan::String(l)) if l == "__type__" || l == "__unit__"),
        _ => false,
    })
}

/// Whether the result of operations after the combine depends on the order of their
/// input's elements beyond rounding: `topk`/`bottomk`/`limitk` (ties and the first k
/// fall in input order) and `sort`/`sort_by_label` (equal values keep it). The
/// reference's order of an aggregation's groups is the order it first sees them in,
/// which a fold's or a join's owner does not know.
fn ordered(after: &Plan) -> bool {
    any_node(after, &|p| {
        matches!(
            p,
            Plan::Aggregate {
                op: AggOp::Topk | AggOp::Bottomk | AggOp::Limitk,
                ..
            } | Plan::Call {
                func: "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc",
                ..
            }
        )
    })
}

/// Whether operations after the combine make labels of values (`count_values`): a
/// sum, mean or variance combined from the workers' partials equals the reference's
/// within float rounding, not always to the last bit, which such a label would show.
fn labels_values(after: &Plan) -> bool {
    any_node(after, &|p| {
        matches!(
            p,
            Plan::Aggregate {
                op: AggOp::CountValues,
                ..
            }
        )
    })
}

/// Whether `plan` or a node under it is one `is`.
fn any_node(plan: &Plan, is: &dyn Fn(&Plan) -> bool) -> bool {
    is(plan)
        || match plan {
            Plan::Neg(inner) | Plan::Aggregate { expr: inner, .. } => any_node(inner, is),
            Plan::Subquery { expr, .. } => any_node(expr, is),
            Plan::Binary { lhs, rhs, .. } => any_node(lhs, is) || any_node(rhs, is),
            Plan::Call { args, .. } => args.iter().any(|a| any_node(a, is)),
            _ => false,
        }
}

/// One worker's partials of an aggregation combined per group ([`Combine::Fold`],
/// [`Combine::Mean`], [`Combine::Moments`]) from its evaluations of the local plans
/// (in order), and, on a worker whose windows hold histograms, the members of each
/// group of a `sum` ([`members_plan`]).
pub fn partials(
    spread: &Spread,
    values: Vec<Evaluated>,
    members: Option<EvalResult<Value>>,
) -> Partials {
    if spread.combine == Combine::Fold {
        return folded(values, members);
    }
    let Some((value, held)) = values.into_iter().next() else {
        return Ok((Vec::new(), None));
    };
    let mut elements = match value? {
        Value::Vector(elements) => elements,
        other => {
            return Err(EvalError::Unsupported(format!(
                "unexpected partial result {other:?}"
            )))
        }
    };
    // The reference reads a selector's series in label order.
    elements.sort_by(|a, b| a.labels.cmp(&b.labels));
    let is_histogram =
        |v: f64| matches!(parse_handle(v), Some((SOURCE, i)) if (i as usize) < held.len());
    let member = |e: Element| (e.labels, vec![e.value]);
    let mut entries = Vec::new();
    match spread.combine {
        // Sent as elements, by side, or by aggregation ([`part`], [`part_records`]).
        Combine::Pick | Combine::Gather | Combine::Union | Combine::Join | Combine::Pair => {}
        Combine::Mean | Combine::Moments | Combine::Fold => {
            let mut groups: BTreeMap<Arc<Labels>, Vec<Element>> = BTreeMap::new();
            for e in elements {
                let group = Arc::new(group_labels(&e.labels, &spread.grouping));
                groups.entry(group).or_default().push(e);
            }
            for (group, members) in groups {
                let histograms = members.iter().any(|e| is_histogram(e.value));
                if spread.combine == Combine::Mean && histograms {
                    entries.extend(members.into_iter().map(member));
                    continue;
                }
                // `stddev`/`stdvar` ignore histograms (a group of only histograms has
                // a count of 0 and yields nothing).
                let floats: Vec<f64> = members
                    .iter()
                    .map(|e| e.value)
                    .filter(|v| !is_histogram(*v))
                    .collect();
                let n = floats.len() as f64;
                let part = if spread.combine == Combine::Mean {
                    vec![n, math::sum(floats.iter().copied()), math::mean(floats)]
                } else {
                    let (mean, m2) = moments(&floats);
                    vec![n, mean, m2]
                };
                entries.push((group, part));
            }
        }
    }
    Ok((entries, (!held.is_empty()).then_some(held)))
}

/// The mean and the sum of squared deviations from it of `values`, computed as the
/// reference's `stdvar` does (compensated Welford; `stdvar` is `M2 / n`).
fn moments(values: &[f64]) -> (f64, f64) {
    let (mut count, mut m, mut cm, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &v in values {
        count += 1.0;
        let delta = v - (m + cm);
        (m, cm) = math::kahan_inc(delta / count, m, cm);
        (aux, caux) = math::kahan_inc(delta * (v - (m + cm)), aux, caux);
    }
    (m + cm, aux + caux)
}

/// `(count, mean, M2)` of the union of parts `[count, mean, M2]` (Chan et al.'s
/// pairwise update; parts of count 0 add nothing), in a fixed order so every run
/// rounds the same.
fn chan(parts: &mut [Vec<f64>]) -> (f64, f64, f64) {
    parts.sort_by(|a, b| {
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for p in parts.iter() {
        let (nb, mb, m2b) = (p[0], p[1], p[2]);
        if nb == 0.0 {
            continue;
        }
        if n == 0.0 {
            (n, mean, m2) = (nb, mb, m2b);
            continue;
        }
        let total = n + nb;
        let delta = mb - mean;
        if delta.is_infinite() && mean.is_finite() && mb.is_finite() {
            // The difference of two finite means overflows: so does the reference's
            // running mean, and its result is NaN.
            (n, mean, m2) = (total, f64::NAN, f64::NAN);
            continue;
        }
        mean += delta * (nb / total);
        m2 += m2b + delta * delta * (n * nb / total);
        n = total;
    }
    (n, mean, m2)
}

/// The mean of the union of parts `[count, sum, mean]`: the total sum over the total
/// count, or where that sum is not finite (an overflow, or infinite values) the mean
/// of the parts' means weighted by their counts (the reference switches to a running
/// mean where its sum overflows).
fn mean_of(parts: &[Vec<f64>]) -> f64 {
    let n: f64 = parts.iter().map(|p| p[0]).sum();
    let total = math::sum(parts.iter().map(|p| p[1]));
    if total.is_finite() {
        return total / n;
    }
    math::sum(
        parts
            .iter()
            .filter(|p| p[0] > 0.0)
            .map(|p| p[2] * (p[0] / n)),
    )
}

/// Elements, at `t`, as a source for a plan reading them through [`hole`]: each a
/// series with one sample at `t`, its name pending removal where the element's is
/// (`pending`: their labels' addresses); histogram handles name `histograms`
/// ([`SOURCE`]).
struct Members<'a> {
    elements: &'a [Element],
    histograms: &'a [Arc<FloatHistogram>],
    t: i64,
    pending: std::collections::HashSet<usize>,
}

impl<'a> Members<'a> {
    fn new(elements: &'a [Element], histograms: &'a [Arc<FloatHistogram>], t: i64) -> Self {
        let pending = (elements.iter())
            .filter(|e| e.drop_name)
            .map(|e| Arc::as_ptr(&e.labels) as usize)
            .collect();
        Members {
            elements,
            histograms,
            t,
            pending,
        }
    }
}

impl SeriesSource for Members<'_> {
    fn names_pending(&self, labels: &Arc<Labels>) -> bool {
        !self.pending.is_empty() && self.pending.contains(&(Arc::as_ptr(labels) as usize))
    }

    fn select(&self, _: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        if self.t < start_ms || self.t > end_ms {
            return Vec::new();
        }
        (self.elements.iter())
            .map(|e| (e.labels.clone(), vec![(self.t, e.value)]))
            .collect()
    }

    fn histogram(&self, index: u32) -> Option<Arc<FloatHistogram>> {
        self.histograms.get(index as usize).cloned()
    }
}

/// `plan` (reading `elements` through [`hole`], their pending name removals kept) at
/// `t` by the reference evaluator, finished as the reference finishes a result,
/// detached.
fn over_members(
    plan: &Plan,
    t: i64,
    elements: Vec<Element>,
    histograms: &[Arc<FloatHistogram>],
) -> Evaluated {
    match over_held(plan, t, elements, histograms) {
        (Ok(Value::Vector(v)), held) => match finish_vector(v) {
            Ok(v) => (Ok(Value::Vector(v)), held),
            Err(e) => (Err(e), Vec::new()),
        },
        other => other,
    }
}

/// [`over_members`] unfinished, as the reference holds a sub-expression's result
/// (names pending removal stay pending).
fn over_held(
    plan: &Plan,
    t: i64,
    elements: Vec<Element>,
    histograms: &[Arc<FloatHistogram>],
) -> Evaluated {
    let source = Members::new(&elements, histograms, t);
    let ev = Evaluator::new(&source, t);
    match ev.eval(plan, t) {
        Ok(mut value) => {
            let held = detach(&ev, &mut value);
            (Ok(value), held)
        }
        Err(e) => (Err(e), Vec::new()),
    }
}

/// A [`Combine::Fold`] worker's partials: one value per group and local plan.
fn folded(values: Vec<Evaluated>, members: Option<EvalResult<Value>>) -> Partials {
    let count = values.len();
    let mut groups: BTreeMap<Arc<Labels>, Vec<f64>> = BTreeMap::new();
    let mut histograms: Vec<Arc<FloatHistogram>> = Vec::new();
    for (i, (value, mut held)) in values.into_iter().enumerate() {
        let by = histograms.len();
        histograms.append(&mut held);
        match value {
            Ok(Value::Vector(elements)) => {
                for e in elements {
                    let v = shifted(e.value, by);
                    groups
                        .entry(e.labels)
                        .or_insert_with(|| vec![f64::NAN; count])[i] = v;
                }
            }
            Ok(other) => {
                return Err(EvalError::Unsupported(format!(
                    "unexpected partial result {other:?}"
                )))
            }
            Err(e) => return Err(e),
        }
    }
    let Some(members) = members else {
        let histograms = (!histograms.is_empty()).then_some(histograms);
        return Ok((groups.into_iter().collect(), histograms));
    };
    if let Ok(Value::Vector(members)) = members {
        for e in members {
            groups.entry(e.labels).or_insert_with(|| vec![VOID; count]);
        }
    }
    Ok((groups.into_iter().collect(), Some(histograms)))
}

/// The group's value from every worker's partial values.
fn combine(op: AggOp, parts: &[Vec<f64>]) -> f64 {
    let first = || parts.iter().map(|p| p[0]);
    match op {
        AggOp::Sum => math::sum(first()),
        AggOp::Count => first().sum(),
        AggOp::Min => math::min(first()),
        AggOp::Max => math::max(first()),
        _ => 1.0,
    }
}

/// Combines every worker's part of one evaluation at `t` (and for a
/// [`Combine::Join`] every joiner's part) into the rule's result (the operations after
/// the aggregation included), finished as the reference finishes a result, with the
/// native histograms it names (detached).
fn combined(spread: &Spread, t: i64, parts: [Vec<Part>; 2], joined: Vec<JoinedPart>) -> Evaluated {
    let (value, histograms) = unfinished_combined(spread, t, parts, joined);
    let unfinished = matches!(
        spread.combine,
        Combine::Union | Combine::Pair | Combine::Pick | Combine::Gather
    );
    match (&spread.after, value) {
        (Some(after), Ok(Value::Vector(elements))) => {
            after_combined(after, t, elements, histograms)
        }
        (None, Ok(Value::Vector(elements))) if unfinished => match finish_vector(elements) {
            Ok(elements) => (Ok(Value::Vector(elements)), histograms),
            Err(e) => (Err(e), Vec::new()),
        },
        (_, value) => (value, histograms),
    }
}

/// The combined result before the operations after it: a union's and a pair's
/// unfinished (names pending removal as the reference holds them, its duplicate check
/// not yet made), the others' finished.
fn unfinished_combined(
    spread: &Spread,
    t: i64,
    [records, rhs]: [Vec<Part>; 2],
    joined: Vec<JoinedPart>,
) -> Evaluated {
    match (spread.combine, spread.op) {
        (Combine::Pair, _) => pair_combined(spread, t, [records, rhs]),
        (Combine::Union, _) => union_combined(records),
        // The reference's aggregation over the members (picked or gathered) of every
        // worker, in label order, unfinished.
        (Combine::Pick | Combine::Gather, _) => match union_combined(records) {
            (Ok(Value::Vector(members)), held) => over_held(&spread.aggregate, t, members, &held),
            other => other,
        },
        (Combine::Fold, Some(op)) => fold_combined(op, partials_of(records)),
        (Combine::Join, _) => join_combined(spread, t, partials_of(records), joined),
        _ => member_combined(spread, t, partials_of(records)),
    }
}

/// `after` (operations with constant operands over [`hole`]) at `t` over the combined
/// `elements` as the reference holds them (a union's or a pair's unfinished, names
/// pending removal): step by step as an incremental map node applies them ([`Step`],
/// which keep a pending removal pending) where each is one and the elements are floats
/// (no histogram, no stale marker, which the reference's selector of the hole would
/// drop); else by the reference evaluator, its selection of the hole keeping the
/// removals pending ([`Members`]); then finished as the reference finishes a result.
fn after_combined(
    after: &Plan,
    t: i64,
    elements: Vec<Element>,
    histograms: Vec<Arc<FloatHistogram>>,
) -> Evaluated {
    let floats = histograms.is_empty() && !elements.iter().any(|e| is_stale_marker(e.value));
    let Some(steps) = steps_of(after).filter(|_| floats) else {
        return over_members(after, t, elements, &histograms);
    };
    let applied = elements
        .into_iter()
        .filter_map(|e| steps.iter().try_fold(e, |e, step| step.apply(e)))
        .collect();
    (finish_vector(applied).map(Value::Vector), Vec::new())
}

/// The steps of `plan`, element-wise operations over [`hole`], innermost first, if
/// each is a [`Step`].
fn steps_of(plan: &Plan) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut p = plan;
    while !matches!(p, Plan::Vector(sel) if sel.selector.matchers.is_empty()) {
        steps.push(Step::of(p)?);
        p = element_wise(p)?.0;
    }
    steps.reverse();
    Some(steps)
}

/// Combines the parts of a [`Combine::Pair`] rule: each side's (an aggregation's
/// groups, a per-series side's union in label order, unfinished; the left's error
/// first, as the reference evaluates it first), then the reference's operation over
/// the two ([`operation_over`], as a join's), unfinished: the owner finishes the whole
/// result, as the reference does.
fn pair_combined(spread: &Spread, t: i64, [lhs, rhs]: [Vec<Part>; 2]) -> Evaluated {
    let Some([l, r]) = spread.pair.as_deref() else {
        return (
            Err(EvalError::Unsupported("a pair of no pair".into())),
            Vec::new(),
        );
    };
    let (left, mut histograms) = unfinished_combined(l, t, [lhs, Vec::new()], Vec::new());
    let (right, held) = unfinished_combined(r, t, [rhs, Vec::new()], Vec::new());
    let (left, right) = match (left, right) {
        (Err(e), _) | (_, Err(e)) => return (Err(e), Vec::new()),
        (Ok(Value::Vector(left)), Ok(Value::Vector(right))) => (left, right),
        other => {
            let e = EvalError::Unsupported(format!("unexpected pair {other:?}"));
            return (Err(e), Vec::new());
        }
    };
    let by = histograms.len();
    histograms.extend(held);
    // As the reference's selections of the sides, without stale markers.
    let left = (left.into_iter()).filter(|e| !is_stale_marker(e.value));
    let right = (right.into_iter())
        .filter(|e| !is_stale_marker(e.value))
        .map(|e| Element {
            value: shifted(e.value, by),
            ..e
        });
    let sides = vec![left.collect(), right.collect()];
    operation_over(&spread.aggregate, t, sides, &histograms)
}

/// Combines the partials of a rule that is not [`Combine::Fold`].
fn member_combined(spread: &Spread, t: i64, records: Vec<Partials>) -> Evaluated {
    let mut groups: BTreeMap<Arc<Labels>, Vec<Vec<f64>>> = BTreeMap::new();
    let mut members: Vec<Element> = Vec::new();
    let mut histograms: Vec<Arc<FloatHistogram>> = Vec::new();
    for record in records {
        let (entries, held) = match record {
            Ok(record) => record,
            Err(e) => return (Err(e), Vec::new()),
        };
        let by = histograms.len();
        histograms.extend(held.unwrap_or_default());
        for (labels, values) in entries {
            if values.len() == 1 {
                members.push(Element::new(labels, shifted(values[0], by)));
            } else {
                groups.entry(labels).or_default().push(values);
            }
        }
    }
    members.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut elements = Vec::new();
    // `avg`: groups of gathered members (a worker's part held a histogram) by the
    // reference; a group of floats on one worker and histograms on another yields
    // nothing, as such a mix does in the reference.
    let mut held = Vec::new();
    if !members.is_empty() {
        let gathered: std::collections::BTreeSet<Arc<Labels>> = members
            .iter()
            .map(|e| Arc::new(group_labels(&e.labels, &spread.grouping)))
            .collect();
        members.retain(|e| !groups.contains_key(&group_labels(&e.labels, &spread.grouping)));
        groups.retain(|g, _| !gathered.contains(g));
        let (value, made) = over_members(&spread.aggregate, t, members, &histograms);
        match value {
            Ok(Value::Vector(v)) => elements.extend(v),
            Ok(_) => {}
            Err(e) => return (Err(e), Vec::new()),
        }
        held = made;
    }
    for (labels, mut parts) in groups {
        let value = match spread.op {
            Some(AggOp::Avg) => mean_of(&parts),
            op => {
                let (n, _, m2) = chan(&mut parts);
                if n == 0.0 {
                    continue;
                }
                let variance = m2 / n;
                if op == Some(AggOp::Stddev) {
                    variance.sqrt()
                } else {
                    variance
                }
            }
        };
        elements.push(Element::new(labels, value));
    }
    (Ok(Value::Vector(elements)), held)
}

/// Combines the partials of a [`Combine::Fold`] rule.
fn fold_combined(op: AggOp, records: Vec<Partials>) -> Evaluated {
    let mut groups: BTreeMap<Arc<Labels>, Vec<Vec<f64>>> = BTreeMap::new();
    let mut histograms: Vec<Arc<FloatHistogram>> = Vec::new();
    let mut floats_only = true;
    for record in records {
        let (record, held) = match record {
            Ok(record) => record,
            Err(e) => return (Err(e), Vec::new()),
        };
        let by = histograms.len();
        if let Some(mut held) = held {
            floats_only = false;
            histograms.append(&mut held);
        }
        for (labels, mut values) in record {
            for v in values.iter_mut() {
                *v = shifted(*v, by);
            }
            groups.entry(labels).or_default().push(values);
        }
    }
    if floats_only {
        let elements = groups
            .into_iter()
            .map(|(labels, parts)| Element::new(labels, combine(op, &parts)))
            .collect();
        return (Ok(Value::Vector(elements)), Vec::new());
    }
    // Groups with a histogram partial: the reference's aggregation over the partials.
    let source = Detached(&histograms);
    let ev = Evaluator::new(&source, 0);
    let mut elements = Vec::new();
    for (labels, parts) in groups {
        if parts.iter().any(|p| p[0].to_bits() == VOID.to_bits()) {
            continue;
        }
        let firsts: Vec<Element> = parts
            .iter()
            .map(|p| Element::new(labels.clone(), p[0]))
            .collect();
        let mut floats: Vec<f64> = firsts.iter().map(|e| e.value).collect();
        match native::aggregate(&ev, op, &firsts, &mut floats) {
            None => elements.push(Element::new(labels, combine(op, &parts))),
            Some(Some(v)) => elements.push(Element::new(labels, v)),
            Some(None) => {}
        }
    }
    let mut value = Value::Vector(elements);
    let histograms = detach(&ev, &mut value);
    (Ok(value), histograms)
}

/// The owners' side: gathers the partial records of each spread rule's evaluations
/// (exchanged to the rule's owner) and, once the frontier passes their time, sends
/// the combined result on the rule's channel (with a spread alerting rule's alert
/// stage's step, [`RuleOutput::alerts`], its stage kept here beside the channel); and
/// on the home process's first worker,
/// passes the results of its owned rules evaluated in other processes on to their
/// channels (in the order their owner made them: one sender, in time order).
/// `control` carries the rule changes, in time order: the changes of a time are
/// applied before its records, and a rule removed at that time still delivers them
/// (an evaluation made before a removal is delivered). The joiners' parts from other
/// processes are decoded by time ([`ReceivedLabels`]). The returned stream carries
/// nothing; its frontier is how far results have been sent.
pub fn combine_partials<'scope>(
    records: Stream<'scope, u64, Vec<HostRecord>>,
    control: Stream<'scope, u64, Vec<RuleChange>>,
    worker: usize,
    peers: usize,
    local: Arc<LocalRules>,
) -> Stream<'scope, u64, Vec<()>> {
    records.binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
        control,
        Exchange::new(HostRecord::worker),
        Pipeline,
        "CombinePartials",
        move |cap, _info| {
            drop(cap);
            let mut registry = Registry::new(peers);
            // The output channels of the rules whose results this worker delivers:
            // the spread rules it owns, the owned rules of its process evaluated in
            // other processes (on the process's first worker).
            let mut outputs: BTreeMap<RuleId, Sender<RuleOutput>> = BTreeMap::new();
            // The alert stages of the spread alerting rules it delivers.
            let mut stages: BTreeMap<RuleId, AlertStage> = BTreeMap::new();
            let mut records: BTreeMap<u64, Vec<HostRecord>> = BTreeMap::new();
            let mut changes: BTreeMap<u64, Vec<RuleChange>> = BTreeMap::new();
            // The label sets of the joiners of other processes.
            let mut received = ReceivedLabels::default();
            move |(input, frontier), (ctl, ctl_frontier), _output| {
                input.for_each(hold_by_time(&mut records));
                ctl.for_each(hold_by_time(&mut changes));
                let front = frontier_of(frontier, ctl_frontier);
                let times: std::collections::BTreeSet<u64> = records
                    .keys()
                    .chain(changes.keys())
                    .copied()
                    .filter(|t| *t < front)
                    .collect();
                for time in times {
                    let changes = changes.remove(&time).unwrap_or_default();
                    let removed = apply_changes(&mut registry, changes, |spec, owner| {
                        if spec.delivered_by(owner) != worker {
                            return;
                        }
                        let delivers = match spec.spread {
                            Some(_) => owner == worker,
                            // Else the owner delivers them itself.
                            None => owner != worker,
                        };
                        if delivers {
                            if let Some(output) = local.take_output(spec.id) {
                                outputs.insert(spec.id, output);
                                // A spread alerting rule's stage, beside its result.
                                let alerting =
                                    spec.alerting.as_ref().filter(|_| spec.spread.is_some());
                                if let Some(alerting) = alerting {
                                    stages.insert(spec.id, AlertStage::new((**alerting).clone()));
                                }
                            }
                        }
                    });
                    type Parts = ([Vec<Part>; 2], Vec<JoinedPart>);
                    let mut evaluations: BTreeMap<(RuleId, i64), Parts> = BTreeMap::new();
                    // Every entry of this time's records before any is decoded.
                    let mut arrived = records.remove(&time).unwrap_or_default();
                    decode_time(&mut received, &mut arrived);
                    for record in arrived {
                        match record {
                            HostRecord::Partials((_, rule, t, parts)) => {
                                evaluations.entry((rule, t)).or_default().0[0].push(parts);
                            }
                            HostRecord::Pair((_, rule, t, lhs), rhs) => {
                                let parts = &mut evaluations.entry((rule, t)).or_default().0;
                                parts[0].push(lhs);
                                parts[1].push(rhs);
                            }
                            HostRecord::Joined((_, rule, t, part)) => {
                                evaluations.entry((rule, t)).or_default().1.push(part);
                            }
                            // Joined first, decoded by `join_sides`.
                            HostRecord::Sides(_) | HostRecord::Coded(..) => {}
                            HostRecord::Output(_, output) => {
                                if let Some(to) = outputs.get(&output.rule) {
                                    let _ = to.send(output);
                                }
                            }
                            HostRecord::Alerting(_, mut output, step) => {
                                if let Some(to) = outputs.get(&output.rule) {
                                    output.alerts = Some(step);
                                    let _ = to.send(output);
                                }
                            }
                        }
                    }
                    for ((rule, t), (parts, joined)) in evaluations {
                        let Some((spec, _)) = registry.get(rule).or(removed.get(&rule)) else {
                            continue;
                        };
                        let Some(spread) = &spec.spread else { continue };
                        let (value, histograms) = combined(spread, t, parts, joined);
                        let Some(output) = outputs.get(&rule) else {
                            continue;
                        };
                        let mut combined = RuleOutput {
                            rule,
                            eval_ms: t,
                            value,
                            gone: None,
                            histograms,
                            alerts: None,
                        };
                        let stage = spec.alerting.as_ref().and_then(|_| stages.get_mut(&rule));
                        if let Some(stage) = stage {
                            combined.alerts = Some(Box::new(stage.on_rule_output(&combined)));
                        }
                        let _ = output.send(combined);
                    }
                    // Their channels close here, after this time's results.
                    for id in removed.keys() {
                        outputs.remove(id);
                        stages.remove(id);
                    }
                }
                // No record of a time before the frontier is to come.
                received.forget_before(id_epoch(front));
            }
        },
    )
}

/// Applies one time's rule changes to `registry`, calling `installed` with each rule
/// installed and its owner; returns the rules removed (with their owners), which the
/// records of this time, made before the removal, still need.
fn apply_changes(
    registry: &mut Registry,
    changes: Vec<RuleChange>,
    mut installed: impl FnMut(&Arc<RuleSpec>, usize),
) -> BTreeMap<RuleId, (Arc<RuleSpec>, usize)> {
    let mut removed = BTreeMap::new();
    for change in changes {
        if let RuleChange::Remove(id) = change {
            if let Some(rule) = registry.get(id) {
                removed.insert(id, rule.clone());
            }
        }
        if let Some((spec, owner)) = registry.apply(&change) {
            installed(&spec, owner);
        }
    }
    removed
}

/// The match-group workers' side: receives the side elements of [`Combine::Join`]
/// rules (exchanged by [`joiner`]) and, once the frontier passes their time, sends
/// each evaluation's [`joined`] part to the rule's owner at that same time (so the
/// owner's frontier tells it every joiner's part is in); every other record passes
/// through, those from other processes once their time is complete and they are
/// decoded ([`ReceivedLabels`]: every entry of a time's records learned first, so
/// the decoded side elements carry their hashes). Each rule it joins keeps its state here ([`SpreadJoin`]: the side elements
/// and joined elements of its match groups as of the previous evaluation), dropped
/// when the rule is removed. `control` carries the rule changes, applied as
/// [`combine_partials`] does.
pub fn join_sides<'scope>(
    records: Stream<'scope, u64, Vec<HostRecord>>,
    control: Stream<'scope, u64, Vec<RuleChange>>,
    peers: usize,
) -> Stream<'scope, u64, Vec<HostRecord>> {
    records.binary_frontier::<_, CapacityContainerBuilder<Vec<HostRecord>>, _, _, _, _>(
        control,
        Exchange::new(HostRecord::worker),
        Pipeline,
        "JoinSides",
        move |cap, _info| {
            drop(cap);
            let mut registry = Registry::new(peers);
            // Side records by time, with the capability to send their joins at it, and
            // the records from other processes, decoded once their time is complete.
            type Held = (Capability<u64>, Vec<SideRecord>, Vec<HostRecord>);
            let mut sides: BTreeMap<u64, Held> = BTreeMap::new();
            let mut received = ReceivedLabels::default();
            let mut changes: BTreeMap<u64, Vec<RuleChange>> = BTreeMap::new();
            let mut states: BTreeMap<RuleId, SpreadJoin> = BTreeMap::new();
            move |(input, frontier), (ctl, ctl_frontier), output| {
                input.for_each(|cap, batch| {
                    let Some(t) = cap.least().copied() else {
                        return;
                    };
                    let mut passed = Vec::new();
                    for record in batch.drain(..) {
                        if !matches!(record, HostRecord::Sides(_) | HostRecord::Coded(..)) {
                            passed.push(record);
                            continue;
                        }
                        let held = sides
                            .entry(t)
                            .or_insert_with(|| (cap.delayed(&t, 0), Vec::new(), Vec::new()));
                        match record {
                            HostRecord::Sides(part) => held.1.push(part),
                            coded => held.2.push(coded),
                        }
                    }
                    if !passed.is_empty() {
                        output
                            .session(&cap.delayed(&t, 0))
                            .give_iterator(passed.into_iter());
                    }
                });
                ctl.for_each(hold_by_time(&mut changes));
                let front = frontier_of(frontier, ctl_frontier);
                let times: std::collections::BTreeSet<u64> = sides
                    .keys()
                    .chain(changes.keys())
                    .copied()
                    .filter(|t| *t < front)
                    .collect();
                for time in times {
                    let changes = changes.remove(&time).unwrap_or_default();
                    let removed = apply_changes(&mut registry, changes, |_, _| {});
                    if let Some((cap, mut parts, mut coded)) = sides.remove(&time) {
                        let mut session = output.session(&cap);
                        // Every entry of this time's records before any is decoded.
                        decode_time(&mut received, &mut coded);
                        for record in coded {
                            match record {
                                HostRecord::Sides(part) => parts.push(part),
                                other => session.give(other),
                            }
                        }
                        let mut evaluations: BTreeMap<(RuleId, i64), Vec<SideElements>> =
                            BTreeMap::new();
                        for (_, rule, t, part) in parts {
                            evaluations.entry((rule, t)).or_default().push(part);
                        }
                        // In time order per rule: each evaluation after the previous.
                        for ((rule, t), parts) in evaluations {
                            let Some((spec, owner)) = registry.get(rule).or(removed.get(&rule))
                            else {
                                continue;
                            };
                            let Some(spread) = &spec.spread else { continue };
                            let state = match states.entry(rule) {
                                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                                std::collections::btree_map::Entry::Vacant(v) => {
                                    let Some(state) = spread.joiner_state() else {
                                        continue;
                                    };
                                    v.insert(state)
                                }
                            };
                            let part = joined(spread, state, t, parts);
                            session.give(HostRecord::Joined((*owner as u64, rule, t, part)));
                        }
                    }
                    // Their last evaluations are joined.
                    for id in removed.keys() {
                        states.remove(id);
                    }
                }
                // No record of a time before the frontier is to come.
                received.forget_before(id_epoch(front));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::plan::parse;
    use crate::render::dictionary::code_labels;
    use crate::render::extent::{selector_uses, QueryRange};
    use crate::sample::SentIds;

    fn spread_rule(q: &str) -> Option<Spread> {
        let plan = parse(q).unwrap();
        let range = QueryRange {
            start_ms: None,
            end_ms: None,
        };
        let uses = selector_uses(&plan, 300_000, range);
        let every = RuleSchedule::Interval {
            start_ms: 0,
            every_ms: 1_000,
        };
        spread_of(&plan, every, Evaluation::Incremental, &uses, true, true)
    }

    fn spread(q: &str) -> Option<(Combine, bool)> {
        // A join's aggregation the joiners make partials of is an operation after it.
        spread_rule(q).map(|s| (s.combine, s.after.is_some() || s.fold.is_some()))
    }

    /// The rules whose owner would evaluate every element are spread only when asked
    /// (`EngineConfig::spread_owner_bound`); those whose owner combines groups, picks,
    /// or takes a union, and joins whose joiners do the work, are spread either way.
    #[test]
    fn owner_bound_rules_are_spread_only_when_asked() {
        let owner_bound = [
            "sort_desc(rate(x[5m]))",
            "histogram_quantile(0.9, rate(x_bucket[5m]))",
            "quantile by (job) (0.9, rate(x[5m]))",
            "count_values(\"v\", x)",
            "x / on (job) group_left sum by (job) (x)",
            "node_load1 / count without (cpu) (node_cpu_seconds_total)",
            "quantile(0.9, rate(a[5m]) / rate(b[5m]))",
            "sum by (job) (a / b < 0.1 and c == 0)",
            "sum without (instance) (rate(a[5m]) / rate(b[5m]))",
            // A flat join under an aggregation of partials: the joiners make them, but
            // not yet measured faster than owned.
            "sum by (job) (rate(a[5m]) / rate(b[5m]))",
            "count(a > 1 and b == 0)",
            "avg without (instance) (a / on (instance, job) b)",
            "sum(sum by (job) (a - b)) > 1",
        ];
        let spread_either_way = [
            "sum by (job) (rate(x[5m]))",
            "histogram_quantile(0.99, sum by (le, job) (rate(x[5m])))",
            "topk(3, rate(x[5m]))",
            "rate(x[5m]) > 0",
            "rate(a[5m]) / rate(b[5m]) > 0.1",
            "a > 1 and b == 0",
            "a / b < 0.1 and c == 0",
            "sum(rate(a[5m])) / sum(rate(b[5m]))",
        ];
        let every = RuleSchedule::Interval {
            start_ms: 0,
            every_ms: 1_000,
        };
        let range = QueryRange {
            start_ms: None,
            end_ms: None,
        };
        for (queries, bound) in [(&owner_bound[..], true), (&spread_either_way[..], false)] {
            for q in queries {
                let plan = parse(q).unwrap();
                let uses = selector_uses(&plan, 300_000, range);
                let of =
                    |asked| spread_of(&plan, every, Evaluation::Incremental, &uses, true, asked);
                let spread = of(true).unwrap_or_else(|| panic!("{q} has a spread shape"));
                assert_eq!(spread.owner_bound(), bound, "{q}");
                assert_eq!(of(false).is_none(), bound, "{q} without spread_owner_bound");
            }
        }
    }

    #[test]
    fn aggregations_of_one_named_series_function_are_spread() {
        use Combine::*;
        for (q, how) in [
            ("sum by (job) (rate(x[5m]))", Fold),
            ("max without (cpu) (x)", Fold),
            ("avg(irate(x[1m]))", Mean),
            ("stddev by (job) (x)", Moments),
            ("stdvar(rate(x[5m]))", Moments),
            ("topk(2, x)", Pick),
            ("bottomk by (job) (3, rate(x[5m]))", Pick),
            ("limitk(1, x)", Pick),
            ("limit_ratio(0.5, x)", Pick),
            ("quantile by (job) (0.9, x)", Gather),
            ("count_values(\"v\", x)", Gather),
        ] {
            assert_eq!(spread(q), Some((how, false)), "{q}");
        }
        for q in [
            "sum(x) > 1",
            "avg by (job) (rate(x[5m])) * 100",
            "100 - avg(x) * 100 > 90",
            "-topk(2, x)",
            // Picked members cross unfinished: the name labels read after them.
            "label_replace(topk(1, x), \"a\", \"$1\", \"__name__\", \"(.*)\")",
        ] {
            assert!(matches!(spread(q), Some((_, true))), "{q}");
        }
        for q in [
            "sum by (job) (rate({job=\"a\"}[5m]))",
            "sum by (__name__) (x)",
            "topk(scalar(y), x)",
            "sum(x @ 100)",
        ] {
            assert_eq!(spread(q), None, "{q}");
        }
    }

    /// Any operation after the combine whose other operands are constants, strings or
    /// `time()`, nested aggregations (the innermost spread), aggregations over a
    /// per-series plan; not operations that depend on the order of a combined
    /// aggregation's groups.
    #[test]
    fn operations_after_and_aggregations_of_per_series_plans_are_spread() {
        use Combine::*;
        for (q, how) in [
            (
                "histogram_quantile(0.99, sum by (le, job) (rate(x_bucket[5m])))",
                (Fold, true),
            ),
            ("histogram_quantile(0.9, sum(rate(h[5m])))", (Fold, true)),
            ("limit_ratio(0.5, sum by (job) (x))", (Fold, true)),
            ("count(sum by (job) (x))", (Fold, true)),
            ("sum(sum by (a) (x))", (Fold, true)),
            ("max by (b) (avg by (a, b) (x)) > 1", (Mean, true)),
            ("scalar(sum(x))", (Fold, true)),
            ("vector(scalar(sum(x))) * 2", (Fold, true)),
            (
                "label_replace(sum by (job) (x), \"j\", \"$1\", \"job\", \"(.*)\")",
                (Fold, true),
            ),
            ("timestamp(sum(x))", (Fold, true)),
            ("time() - max(x)", (Fold, true)),
            ("count_values(\"v\", a / b)", (Join, true)),
            ("topk(1, topk by (job) (2, x))", (Pick, true)),
            ("count(topk(2, x))", (Pick, true)),
            ("quantile(0.5, quantile by (job) (0.9, x))", (Gather, true)),
            ("sum by (job) (rate(x[5m]) > 0)", (Fold, false)),
            ("count(up == 0)", (Fold, false)),
            ("sum(x * 8)", (Fold, false)),
            ("max(abs(delta(x[5m])))", (Fold, false)),
            ("avg by (job) (clamp_min(x, 0))", (Mean, false)),
            ("stddev(-x)", (Moments, false)),
            ("topk(2, x * 8)", (Pick, false)),
            (
                "quantile(0.9, histogram_count(rate(h[5m])))",
                (Gather, false),
            ),
            ("count(timestamp(x))", (Fold, false)),
            ("sum(a * 2) / sum(b > 0)", (Pair, false)),
            ("count(a / b)", (Join, true)),
            ("a > 1 and b == 0", (Join, false)),
            ("rate(a[5m]) unless on (instance) b", (Join, false)),
            ("a or ignoring (job) b", (Join, false)),
            ("count(a and b) > 1", (Join, true)),
            // Shipped rules' set operators (queries/service.yml, queries/host.yml).
            (
                "avg_over_time(up[10m]) < 0.9 and avg_over_time(up[10m]) > 0",
                (Join, false),
            ),
            (
                "predict_linear(node_filesystem_avail_bytes{fstype!~\"tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|fuse.*\"}[6h], 24 * 3600) < 0
                  and node_filesystem_readonly == 0",
                (Join, false),
            ),
            (
                "node_filesystem_avail_bytes{fstype!~\"tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|fuse.*\"}
                  / node_filesystem_size_bytes < 0.10 and node_filesystem_readonly == 0",
                (Join, false),
            ),
            // Joins inside joins.
            ("a * on (instance) b > 1 or c", (Join, false)),
            ("a / b{job=~\"x\"} or c", (Join, false)),
            ("sum(a - (b and c))", (Join, true)),
            ("sum by (job) (rate(a[5m]) / rate(b[5m]))", (Join, true)),
            ("scalar(sum(a) / sum(b))", (Pair, true)),
            (
                "histogram_quantile(0.99, rate(x_bucket[5m]))",
                (Union, true),
            ),
            ("histogram_quantile(0.9, x_bucket)", (Union, true)),
            ("sort_desc(rate(x[5m]))", (Union, true)),
            ("topk(5, sort(x > 1))", (Union, true)),
            ("scalar(x)", (Union, true)),
            ("histogram_count(sort(h))", (Union, true)),
            // The name labels read after it: its elements cross unfinished.
            (
                "label_replace(sort(rate(x[5m])), \"a\", \"$1\", \"__name__\", \"(.*)\")",
                (Union, true),
            ),
            ("count by (__name__) (sort(x))", (Union, true)),
            ("limit_ratio(0.5, sort(rate(x[5m])))", (Union, true)),
            // Picked members cross unfinished too; `limit_ratio` hashes their labels
            // as the reference holds them.
            ("limit_ratio(0.5, x * 2)", (Pick, false)),
            ("limit_ratio(0.5, rate(x[5m]))", (Pick, false)),
            (
                "label_replace(topk(2, rate(x[5m])), \"a\", \"$1\", \"__name__\", \"(.*)\")",
                (Pick, true),
            ),
            ("count by (__name__) (topk(2, x))", (Pick, true)),
            ("sort_by_label(topk(2, rate(x[5m])), \"__name__\")", (Pick, true)),
            ("limit_ratio(0.5, topk(3, rate(x[5m])))", (Pick, true)),
        ] {
            assert_eq!(spread(q), Some(how), "{q}");
        }
        for q in [
            // The order of the groups (or their values' last bits) after an aggregation
            // of partials: gathering every member costs more than owning the rule.
            "topk(5, sum by (job) (rate(x[5m])))",
            "bottomk(1, avg by (job) (x))",
            "limitk(2, stddev by (job) (x))",
            "sort_desc(sum by (job) (x))",
            "sort_by_label(count by (job) (x), \"job\")",
            "count_values(\"v\", sum by (job) (x))",
            // Label functions inside the aggregation.
            "sum(label_replace(x, \"a\", \"\", \"a\", \".*\"))",
            "count(label_replace(x, \"a\", \"\", \"a\", \".*\") > 1)",
            // Other series, other operands, their labels from the matchers, ranges.
            "absent(sum(x))",
            "absent_over_time(sum(x)[5m:])",
            "max_over_time(sum(x)[5m:1m])",
            "sum(x) > scalar(y)",
            "topk(scalar(y), sum(x))",
            "sum(x) * on () group_left vector(1)",
            "start_timestamp(sum(x))",
            "max_over_time(sum(x)[5m:1m] @ 100)",
            "sum(max_over_time(x[5m:1m] @ 100))",
            "sum(x) and on () vector(1)",
            // Names pending removal in the reference (a join's elements).
            "label_replace(a / b, \"a\", \"\", \"a\", \".*\")",
            "count by (__name__) (a / b)",
            // The order of a join's or a pair's groups.
            "topk(1, a / b)",
            "sort(sum by (job) (a) / sum by (job) (b))",
            // Labels of a pair's values, combined within rounding.
            "count_values(\"v\", sum(a) / sum(b))",
            // A per-series plan with label functions under operations that are not
            // element-wise.
            "sort(label_replace(x, \"a\", \"\", \"a\", \".*\"))",
            "limit_ratio(0.5, a / b)",
            "sort(x{job=\"a\"} or y)",
            // An aggregation over a nested one that is not spread.
            "sum(sum by (a) (x @ 100))",
            "sum(x @ 100 * 2)",
        ] {
            assert_eq!(spread(q), None, "{q}");
        }
    }

    #[test]
    fn per_series_plans_joins_and_pairs_of_aggregations_are_spread() {
        use Combine::*;
        for (q, how) in [
            ("up == 0", (Union, false)),
            ("rate(x[5m]) * 100 > 5", (Union, false)),
            (
                "label_replace(x, \"a\", \"$1\", \"b\", \"(.*)\")",
                (Union, false),
            ),
            (
                "label_replace(rate(x[5m]) > 1, \"a\", \"\", \"b\", \".*\")",
                (Union, false),
            ),
            ("rate(a[5m]) / rate(b[5m])", (Join, false)),
            ("a / on (instance) b > 0.1", (Join, true)),
            ("a - ignoring (x) b", (Join, false)),
            ("a > b", (Join, false)),
            (
                "rate(a[5m]) >= bool on (job, instance) b * 2",
                (Join, false),
            ),
            ("sum(rate(a[5m])) / sum(rate(b[5m]))", (Pair, false)),
            (
                "sum by (job) (rate(e[5m])) / sum by (job) (rate(t[5m])) > 0.05",
                (Pair, true),
            ),
            (
                "sum by (job) (a) / on (job, x) max by (job, x) (b)",
                (Pair, false),
            ),
            (
                "sum by (job, i) (a) / on (job) group_left sum by (job) (b)",
                (Pair, false),
            ),
            ("avg(a) and count(b)", (Pair, false)),
            ("sum(x) > sum(y)", (Pair, false)),
            // An aggregation beside a per-series plan.
            ("x / on (job) group_left sum by (job) (x)", (Pair, false)),
            (
                "rate(x[5m]) / ignoring (instance) group_left sum without (instance) (rate(x[5m]))",
                (Pair, false),
            ),
            (
                "sum by(instance, type) (demo_memory_usage_bytes) ^ on(instance, type) group_left(job) demo_memory_usage_bytes",
                (Pair, false),
            ),
            (
                "sum without(job) (demo_memory_usage_bytes) / on(instance, type) demo_memory_usage_bytes",
                (Pair, false),
            ),
            (
                "sum without(job) (demo_memory_usage_bytes) / on(instance, type) group_left demo_memory_usage_bytes",
                (Pair, false),
            ),
            (
                "node_load1 / count without (cpu) (node_cpu_seconds_total{mode=\"idle\"})",
                (Pair, false),
            ),
            ("a / sum(b)", (Pair, false)),
            ("sum by (job) (a) > on (job) group_right b", (Pair, false)),
            ("b and on (job) sum by (job) (a)", (Pair, false)),
            ("rate(b[5m]) or sum(a)", (Pair, false)),
            (
                "abs(b) / on (job) group_left max by (job) (a) > 0.5",
                (Pair, true),
            ),
            (
                "sum by (job) (a) / on (job) (rate(b[5m]) * 2)",
                (Pair, false),
            ),
            // A per-series side holding names pending removal, sent with them: as the
            // "one" side too, its names matched.
            (
                "sum by (job) (a) / on (job) group_left rate(b[5m])",
                (Pair, false),
            ),
            ("sum by (job, i) (a) / on (job) abs(b)", (Pair, false)),
            (
                "rate(b[5m]) / ignoring (__type__) group_left sum without (instance) (a)",
                (Pair, false),
            ),
            // The name labels read after a side that holds names pending removal: its
            // elements cross and stay unfinished up to the end, as the reference's.
            (
                "label_replace(rate(b[5m]) > on (job) group_left sum by (job) (a), \"x\", \"$1\", \"__name__\", \"(.*)\")",
                (Pair, true),
            ),
            ("sum by (__type__, job) (a) / on (job) group_left b", (Pair, false)),
            // A name label copied into a per-series side's elements.
            (
                "b / on (job) group_left (__name__) sum by (job) (a)",
                (Pair, false),
            ),
            (
                "sum by (job) (a) < on (job) group_right (__type__) abs(b)",
                (Pair, false),
            ),
        ] {
            assert_eq!(spread(q), Some(how), "{q}");
        }
        for q in [
            // A filter after a label function: the reference's duplicate check sees
            // elements the filter then drops.
            "label_replace(x, \"a\", \"\", \"a\", \".*\") > 1",
            "rate({job=\"a\"}[5m])",
            "x @ 100",
            "a / on (__name__) b",
            "a * on (x) group_left b",
            "a and on (__type__) b",
            "a or ignoring (__unit__) b",
            // A join inside a join with a function after it or a label function in it.
            "abs(a / b) and c",
            "label_replace(a, \"x\", \"\", \"y\", \"\") / b and c",
            "a / on (x) group_left b and c",
            "a / {job=\"x\"} or c",
            "label_replace(a, \"a\", \"\", \"a\", \".*\") / b",
            "label_replace(a / b, \"a\", \"\", \"a\", \".*\")",
            "a / {job=\"x\"}",
            "topk(1, a) / sum(b)",
            // The one side may have two elements in a match group.
            "sum by (job) (a) / on (job) sum by (job, i) (b)",
            "sum(a) / on () group_left sum by (job) (b)",
            "sum by (job) (a) / ignoring (i) sum without (job) (b)",
            "b / on (job) group_left sum by (job, i) (a)",
            "b / on (job) group_left sum without (i) (a)",
            "b / ignoring (i) group_left count_values without (j) (\"v\", a)",
            // A name label copied beside a per-series side; an aggregation by a
            // metadata label its members hold pending removal.
            "sum by (__type__, job) (rate(a[5m])) / on (job) group_left b",
            "sum by (job) (a) / on (job) group_left (__name__) b",
            // A label function in the per-series side, an order after.
            "label_replace(b, \"a\", \"\", \"a\", \".*\") / on (job) group_left sum by (job) (a)",
            "topk(1, b / on (job) group_left sum by (job) (a))",
        ] {
            assert_eq!(spread(q), None, "{q}");
        }
    }

    /// A spread per-series plan, join or pair of aggregations, dealt to 1 to 4 workers
    /// in every way (each worker evaluating its local plans over its own series by the
    /// reference, side elements exchanged to their joiners), gives exactly the
    /// reference's result over every series: values, and errors (duplicate label sets,
    /// many-to-many matches) word for word.
    #[test]
    fn unions_joins_and_pairs_of_any_split_are_the_reference() {
        use crate::promql::testscript::store::MemStorage;
        let mut store = MemStorage::default();
        for (i, name) in ["a", "a", "a", "a", "b", "b", "b", "c", "c"]
            .iter()
            .enumerate()
        {
            let job = if i % 2 == 0 { "j0" } else { "j1" };
            let labels = Labels::from_strs(&[
                ("__name__", name),
                ("instance", &format!("h{}", i % 4)),
                ("job", job),
            ]);
            let points = (0..4).map(|k| (k * 15_000, (i as f64 + 1.0) * k as f64));
            store.series.insert(Arc::new(labels), points.collect());
        }
        // Two series of one name that differ only in `__type__`.
        for (i, kind) in ["counter", "gauge"].iter().enumerate() {
            let labels = Labels::from_strs(&[
                ("__name__", "t"),
                ("__type__", kind),
                ("instance", "h1"),
                ("job", "j1"),
            ]);
            let points = (0..4).map(|k| (k * 15_000, (i as f64 + 2.0) * k as f64));
            store.series.insert(Arc::new(labels), points.collect());
        }
        let queries = [
            "a",
            "rate(a[1m]) * 100 > 5",
            "label_replace(a, \"instance\", \"\", \"instance\", \".*\")",
            "label_replace(a > 5, \"x\", \"$1\", \"job\", \"j(.*)\")",
            "rate(a[1m]) / rate(b[1m])",
            "a / on (instance) b > 0.1",
            "a - ignoring (job) b",
            "a > b",
            "a > bool on (instance, job) b",
            "a / on (job) b",
            "b / on (job) a",
            "c / ignoring (instance) b",
            "a + on (instance) c",
            "a / on (job) c",
            // Set operators between per-series plans, by match group.
            "a and b",
            "a > 5 and on (instance) b",
            "a unless on (job) c",
            "rate(a[1m]) or ignoring (job) rate(b[1m])",
            "b or on (instance) a * 2",
            "c and ignoring (instance) a",
            "count(a unless on (instance) b)",
            // A flat join under an aggregation of partials: the joiners' partials
            // (a many-to-many match group: the failing joiners' sides, the error).
            "sum by (job) (rate(a[1m]) / rate(b[1m]))",
            "avg without (instance) (a / on (instance, job) b)",
            "count(a > 1 and b == 0)",
            "stddev by (job) (a - b)",
            "max(a / b) > 1",
            "stdvar(a + on (instance) b) * 2",
            "group by (instance) (a or b)",
            "sum by (job) (a / on (job) b)",
            // Joins inside joins, by the labels all their matchings match on.
            "a / b > 0.5 and c",
            "a / b > 0.5 and on (instance) c",
            "a - on (instance) b unless ignoring (job) c",
            "(a + b) * 2 or c",
            "a and b and c",
            "c or on (instance) rate(a[1m]) / rate(b[1m])",
            "a > b + on (instance) c",
            "count(a / b and c)",
            "a / on (job) b and c",
            "0.5 < a / ignoring (job) b unless on (job) c",
            "sum(rate(a[1m])) / sum(rate(b[1m]))",
            "sum by (job) (a) / sum by (job) (b) > 0.05",
            "avg by (job) (a) - on (job) max by (job) (b)",
            "sum by (job, instance) (a) / on (job) group_left sum by (job) (b)",
            "count by (instance) (a) / ignoring (job) count by (instance) (c)",
            "sum by (job) (a) and sum by (job) (c)",
            "quantile by (job) (0.5, a) + stddev by (job) (b)",
            "sum by (job, instance) (a) / on (job) sum by (job) (b)",
            // An aggregation beside a per-series plan: any matching; duplicates of a
            // match group on the per-series "one" side (named in label order),
            // many-to-one without group_left.
            "a / on (job) group_left sum by (job) (a)",
            "rate(a[1m]) / ignoring (instance) group_left sum without (instance) (rate(a[1m]))",
            "sum by (instance) (a) / on (instance) group_left (job) b",
            "sum by (job) (a) / on (job) group_left b",
            "sum without (instance) (a) / on (job) c",
            "sum without (instance) (a) * on (job) b",
            "b - count without (instance) (a)",
            "b / on (job) count by (job) (a)",
            "sum by (job) (a) == bool on (job) group_right b",
            "c * on (job) group_right sum by (job) (a)",
            "a > on (job) group_left max by (job) (b)",
            "abs(b) / on (job) group_left max by (job) (a) > 0.5",
            "sum by (job) (a) % on (job) (rate(b[1m]) * 2)",
            "b and on (job) sum by (job) (c)",
            "sum by (job) (a) or rate(c[1m])",
            "rate(b[1m]) unless on (job) max by (job) (c)",
            // A per-series side holding names pending removal: sent with them, named
            // in the error as the reference names them; `__type__` labels matched, two
            // series differing only in them, as the reference.
            "sum by (job) (a) / on (job) group_left rate(b[1m])",
            "last_over_time(b[1m]) > on (job) group_left max by (job) (a)",
            "-b < ignoring (instance) group_left min without (instance) (a)",
            "round(b) >= on (job) group_left sum by (job) (a)",
            "rate(b[1m]) / on (__name__, job) group_left sum by (job) (a)",
            "rate(t[1m]) / ignoring (instance) group_left sum without (instance) (rate(a[1m]))",
            "sum by (job) (a) - on (job) group_right abs(t)",
            "abs(t) > on (instance, job) group_left max by (instance, job) (a)",
            "abs(t) > ignoring (__type__) group_left max by (instance, job) (a)",
            // Fills of match groups present on one side only.
            "sum by (job) (a) + on (job) group_right fill(0) c",
            "c / on (instance) group_left fill_right(1) max by (instance) (b)",
            "sum by (instance) (b) - on (instance) fill(0) c",
            "rate(c[1m]) + on (instance) group_left fill(0) max by (instance) (a)",
        ];
        let t = 45_000;
        let mut errors = 0;
        // The labels dictionary of records crossing processes (one for every sender
        // and destination here: entries are found by hash).
        let (mut sent, mut received) = (SentIds::default(), ReceivedLabels::default());
        // The joins under an aggregation of partials go by the joiners' partials.
        let folds = [
            "sum by (job) (rate(a[1m]) / rate(b[1m]))",
            "avg without (instance) (a / on (instance, job) b)",
            "count(a > 1 and b == 0)",
            "stddev by (job) (a - b)",
            "max(a / b) > 1",
            "stdvar(a + on (instance) b) * 2",
            "group by (instance) (a or b)",
            "sum by (job) (a / on (job) b)",
            "count(a unless on (instance) b)",
        ];
        for q in queries {
            let rule = spread_rule(q).unwrap_or_else(|| panic!("{q} is spread"));
            assert_eq!(rule.fold.is_some(), folds.contains(&q), "{q}");
            let plan = parse(q).unwrap();
            let want = Evaluator::new(&store, t).instant(&plan, t);
            errors += usize::from(want.is_err());
            for workers in 1..=4usize {
                for shift in 0..workers {
                    let mine = |w: usize| {
                        let mut part = MemStorage::default();
                        for (i, (l, s)) in store.series.iter().enumerate() {
                            if (i + shift) % workers == w {
                                part.series.insert(l.clone(), s.clone());
                            }
                        }
                        part
                    };
                    let mut to_owner: [Vec<Part>; 2] = Default::default();
                    let mut to_joiner: BTreeMap<u64, Vec<SideElements>> = BTreeMap::new();
                    for w in 0..workers {
                        let part = mine(w);
                        let values = (0..rule.local.len())
                            .map(|i| (local(&rule, &Evaluator::new(&part, t), i, t), Vec::new()))
                            .collect();
                        let members = rule.local.iter().map(|_| None).collect();
                        let id = (RuleId(1), 0, t);
                        for record in part_records(&rule, id, values, members, workers) {
                            // Odd shifts: as if every worker were in its own process.
                            let record = match shift % 2 {
                                1 => across(record, &mut sent, &mut received),
                                _ => record,
                            };
                            match record {
                                HostRecord::Partials((_, _, _, p)) => to_owner[0].push(p),
                                HostRecord::Pair((_, _, _, l), r) => {
                                    to_owner[0].push(l);
                                    to_owner[1].push(r);
                                }
                                HostRecord::Sides((j, _, _, p)) => {
                                    to_joiner.entry(j).or_default().push(p)
                                }
                                HostRecord::Joined(..)
                                | HostRecord::Output(..)
                                | HostRecord::Alerting(..)
                                | HostRecord::Coded(..) => {
                                    unreachable!()
                                }
                            }
                        }
                    }
                    let joined: Vec<JoinedPart> = (to_joiner.into_values())
                        .map(|p| {
                            let mut state = rule.joiner_state().expect("a join");
                            let part = joined(&rule, &mut state, t, p);
                            if shift % 2 == 0 {
                                return part;
                            }
                            let record = HostRecord::Joined((0, RuleId(1), t, part));
                            match across(record, &mut sent, &mut received) {
                                HostRecord::Joined((.., part)) => part,
                                other => panic!("{other:?}"),
                            }
                        })
                        .collect();
                    let got = combined(&rule, t, to_owner, joined).0;
                    match (&got, &want) {
                        (Ok(g), Ok(w)) => {
                            assert_near(g, w, &format!("{q} on {workers} workers, shift {shift}"))
                        }
                        _ => assert_eq!(got, want, "{q} on {workers} workers, shift {shift}"),
                    }
                }
            }
        }
        // A duplicate label set, duplicates on the right (of a per-series side beside
        // an aggregation too, its names pending), on the left (one of them inside a
        // join), many-to-one without `group_left`, many-to-many of two series that
        // differ only in `__type__`.
        assert_eq!(errors, 14);
    }

    /// Joins and set operators of two per-series plans over series of one name that
    /// differ only in `__type__`/`__unit__` (Prometheus 3's type-and-unit labels),
    /// where a side drops names and where none does: the reference matches the sides
    /// with the names still pending removal (arithmetic and comparisons on
    /// `__type__`/`__unit__`, set operators without them), and so do the joiners, the
    /// side elements sent unfinished. Dealt to 1 to 4 workers in every way, as within
    /// a process and as between processes: the reference's result, errors word for
    /// word.
    #[test]
    fn joins_and_set_operators_over_type_and_unit_labels_of_any_split_are_the_reference() {
        let store = type_and_unit_store();
        let queries = [
            "a and b",
            "a or b",
            "a unless b",
            "(a{instance!=\"h2\"} + 1) and b",
            "(a{instance!=\"h2\"} + 1) or b",
            "(a{instance!=\"h2\"} + 1) unless b",
            "(a + 1) and b",
            "rate(a{instance!=\"h2\"}[1m]) or rate(b[1m])",
            "b unless on (instance) (a * 2)",
            "(b > 0) or ignoring (job) rate(a[1m])",
            "(a + 1) / b",
            "a / b",
            "rate(a[1m]) - on (instance) rate(b[1m])",
            "rate(a{instance!=\"h2\"}[1m]) - on (instance) rate(b[1m])",
            "rate(a[1m]) > bool ignoring (job) b",
            "(a * 1) < ignoring (job) (b + 100)",
            // Joins inside joins.
            "rate(a[1m]) / rate(b[1m]) or b",
            "(rate(a[1m]) > bool b) and on (instance) rate(b[1m])",
            "b unless ignoring (job) (a / a)",
            // Under an aggregation of partials (the joiners'): the reference aggregates
            // the join's result unfinished, names pending, before any duplicate check.
            "sum by (job) (rate(a[1m]) / rate(b[1m]))",
            "count(a / b)",
            "avg by (job) (a and b)",
            "stddev(rate(a[1m]) or rate(b[1m]))",
            "max by (instance) (rate(a[1m]) - on (instance) rate(b[1m]))",
        ];
        let t = 45_000;
        let mut outcomes = (0, 0);
        for q in queries {
            let rule = spread_rule(q).unwrap_or_else(|| panic!("{q} is spread"));
            assert_eq!(rule.combine, Combine::Join, "{q}");
            assert_every_split(q, &rule, &store, t, &mut outcomes);
        }
        // Results with elements, and errors (a duplicate label set once the names are
        // dropped, three many-to-one matches, one under an aggregation the joiners
        // make partials of).
        assert_eq!(outcomes, (20, 4));
    }

    /// Series `a` and `b` with and without `__type__`/`__unit__` labels, two of `a`
    /// (instance `h2`) differing only in them.
    fn type_and_unit_store() -> crate::promql::testscript::store::MemStorage {
        let mut store = crate::promql::testscript::store::MemStorage::default();
        let series: [(&str, &[(&str, &str)]); 9] = [
            ("a", &[("__type__", "counter"), ("__unit__", "request")]),
            ("a", &[("__type__", "gauge"), ("__unit__", "request")]),
            ("a", &[("__type__", "counter")]),
            ("a", &[("__type__", "gauge")]),
            ("a", &[]),
            ("b", &[("__type__", "counter"), ("__unit__", "request")]),
            ("b", &[]),
            ("b", &[("__type__", "gauge")]),
            ("b", &[("__unit__", "request")]),
        ];
        for (i, (name, meta)) in series.iter().enumerate() {
            // Series 2 and 3 differ only in their metadata labels.
            let instance = format!("h{}", [0, 1, 2, 2, 4, 0, 1, 2, 3][i]);
            let mut pairs = vec![("__name__", *name), ("instance", &instance), ("job", "j")];
            pairs.extend(meta.iter().copied());
            let labels = Labels::from_strs(&pairs);
            let points = (0..4).map(|k| (k * 15_000, (i as f64 + 1.0) * k as f64));
            store.series.insert(Arc::new(labels), points.collect());
        }
        store
    }

    /// Pairs of an aggregation and a per-series plan over series of one name that
    /// differ only in `__type__`/`__unit__`: the per-series side's elements cross as
    /// the reference holds them (names pending removal, or dropped at once by
    /// arithmetic with a constant, `rate(a[1m]) * 2`, two of them then with one label
    /// set), the owner runs the reference's operation over them and finishes the whole
    /// result: the reference's, errors word for word, over every split.
    #[test]
    fn pairs_over_type_and_unit_labels_of_any_split_are_the_reference() {
        let store = type_and_unit_store();
        let queries = [
            // Names dropped at once: two elements with one label set on the worker.
            "rate(a[1m]) * 2 / on (job) group_left sum by (job) (b)",
            "(a * 2) > on (instance) group_left max by (instance) (b)",
            "max by (instance) (b) < on (instance) group_right () (rate(a[1m]) * 2)",
            "sum by (instance) (b) / on (instance) group_left () (rate(a[1m]) * 2)",
            "sum by (instance) (b) + on (instance) group_left () (a * 2)",
            "(a{instance!=\"h2\"} * 2) / on (job) group_left sum by (job) (b)",
            "(a * 2) and on (instance) sum by (instance) (b)",
            "sum by (instance) (b) or on (instance) (rate(a[1m]) * 2)",
            // Names pending removal.
            "rate(a[1m]) / on (job) group_left sum by (job) (b)",
            "rate(a[1m]) > on (instance) group_left max by (instance) (b)",
            "abs(a) >= ignoring (__type__) group_left max by (instance, job) (b)",
            "rate(a[1m]) > on (instance) group_left max by (instance) (b) > 0.05",
            "sum by (instance) (b) / on (instance) group_left abs(a)",
            "abs(a) unless on (instance) sum by (instance) (b)",
            "rate(a{instance!=\"h2\"}[1m]) < on (instance) group_left max by (instance) (b)",
            "sum by (instance) (b) / on (instance) group_left () abs(a{instance!=\"h2\"})",
            // Names kept.
            "a / on (instance) group_left sum by (instance) (b)",
            "last_over_time(a[1m]) > on (job) group_left min by (job) (b)",
            "sum by (__type__, job) (b) / on (job) group_left a",
            // The name labels read after a side with names pending.
            "label_replace(rate(a{instance!=\"h2\"}[1m]) < on (instance) group_left max by (instance) (b), \"n\", \"$1\", \"__name__\", \"(.*)\")",
            "count by (__type__, instance) (abs(a{instance!=\"h2\"}) >= on (job) group_left min by (job) (b))",
            "count by (__type__) (abs(a) > on (instance) group_left max by (instance) (b))",
            // Name labels copied into a per-series side's elements (from an
            // aggregation, which has none: they are dropped).
            "abs(a{instance!=\"h2\"}) < on (instance) group_left (__name__, __type__) max by (instance) (b)",
            "min by (instance) (b) > on (instance) group_right (__name__) rate(a{instance!=\"h2\"}[1m])",
            "a / on (instance) group_left (__unit__) sum by (instance) (b)",
        ];
        let t = 45_000;
        let mut outcomes = (0, 0);
        for q in queries {
            let rule = spread_rule(q).unwrap_or_else(|| panic!("{q} is spread"));
            assert_eq!(rule.combine, Combine::Pair, "{q}");
            assert_every_split(q, &rule, &store, t, &mut outcomes);
        }
        // Results with elements, and errors (many-to-one matches and duplicates on
        // the "one" side of two elements with one label set, duplicate label sets once
        // the names are dropped).
        assert_eq!(outcomes, (8, 11));
    }

    /// A per-series plan under operations that read the name labels (which the
    /// reference may hold pending removal), picks and gathers (their members crossing
    /// unfinished, the name labels read after them), and aggregations by the metadata
    /// labels, of series of one name that differ only in `__type__`/`__unit__`: the
    /// reference's, over every split, errors word for word.
    #[test]
    fn unions_and_aggregations_over_type_and_unit_labels_of_any_split_are_the_reference() {
        let store = type_and_unit_store();
        let queries = [
            "label_replace(sort(rate(a{instance!=\"h2\"}[1m])), \"n\", \"$1\", \"__name__\", \"(.*)\")",
            "label_replace(sort(rate(a[1m])), \"n\", \"$1\", \"__type__\", \"(.*)\")",
            "sort_by_label(abs(a), \"__type__\", \"__unit__\")",
            "count by (__name__) (sort(rate(a[1m])))",
            "count by (__type__) (sort(abs(a)))",
            "limit_ratio(0.5, sort(rate(a[1m])))",
            "limit_ratio(-0.5, sort(rate(a[1m])))",
            "count by (__type__) (a)",
            "count by (__type__) (a * 2)",
            "sum by (__unit__, instance) (last_over_time(a[1m]))",
            "label_replace(sort(rate(a{instance!=\"h2\"}[1m])), \"__type__\", \"t\", \"\", \"\")",
            // Picked and gathered members cross unfinished.
            "topk(2, rate(a[1m]))",
            "topk(3, abs(a{instance!=\"h2\"}))",
            "bottomk by (__type__) (1, abs(a))",
            "label_replace(topk(1, rate(a[1m])), \"n\", \"$1\", \"__name__\", \"(.*)\")",
            "count by (__type__) (topk(5, abs(a)))",
            "limit_ratio(0.5, rate(a{instance!=\"h2\"}[1m]))",
            "limit_ratio(-0.5, abs(a{instance!=\"h2\"}))",
            "limitk by (__unit__) (1, rate(a[1m]))",
            "quantile by (__type__) (0.5, rate(a[1m]))",
            "quantile by (__type__, instance) (0.5, abs(a))",
            "count_values by (__type__) (\"v\", abs(a))",
            "label_replace(quantile by (job) (0.5, rate(a[1m])), \"__type__\", \"t\", \"\", \"\")",
        ];
        let t = 45_000;
        let mut outcomes = (0, 0);
        for q in queries {
            let rule = spread_rule(q).unwrap_or_else(|| panic!("{q} is spread"));
            assert_every_split(q, &rule, &store, t, &mut outcomes);
        }
        assert_eq!(outcomes, (17, 6));
        // The metadata labels of groups the reference holds pending removal (at the
        // end, two groups that differ only in them are its duplicate error; a worker
        // holding one of them finishes its group, and the owner adds up the workers'
        // groups as one).
        for q in [
            "count by (__type__) (rate(a[1m]))",
            "sum by (__unit__) (abs(a))",
        ] {
            assert!(spread_rule(q).is_none(), "{q}");
        }
        // `__type__`/`__unit__` written on an aggregation's groups, which hold their
        // members' pending removal in the reference (it drops them at the end).
        for q in [
            "label_replace(sum by (job) (rate(a[1m])), \"__type__\", \"t\", \"\", \"\")",
            "label_join(sum by (job) (rate(a[1m]) * 2), \"__unit__\", \"\", \"job\")",
            "label_replace(sum by (instance) (rate(a[1m])) / on (instance) group_left b, \"__type__\", \"t\", \"\", \"\")",
        ] {
            assert!(spread_rule(q).is_none(), "{q}");
        }
    }

    /// A join inside a join routes its leaves' elements by the labels all its
    /// matchings match on, but the name labels ([`Spread::route`]), so every match
    /// group of each meets on one joiner: over series whose labels do not follow each
    /// other, dealt to 1 to 4 workers in every way, the reference's result, errors
    /// word for word.
    #[test]
    fn joins_inside_joins_of_any_split_are_the_reference() {
        use crate::promql::testscript::store::MemStorage;
        let route = |q: &str| {
            let (m, set) = spread_rule(q).unwrap().route().unwrap();
            (m.on, m.labels, set)
        };
        let labels = |l: &[&str]| l.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        assert_eq!(route("a / b > 1 and c"), (false, labels(&[]), true));
        assert_eq!(
            route("a / ignoring (zone) b or ignoring (job) c"),
            (false, labels(&["job", "zone"]), true)
        );
        assert_eq!(
            route("a / on (instance, job) b unless ignoring (job) c"),
            (true, labels(&["instance"]), true)
        );
        assert_eq!(
            route("a / on (job, instance) b unless on (instance, zone, job) c"),
            (true, labels(&["instance", "job"]), true)
        );
        let mut store = MemStorage::default();
        for i in 0..18usize {
            let name = ["a", "b", "c"][i % 3];
            let labels = Labels::from_strs(&[
                ("__name__", name),
                ("instance", &format!("h{}", (i / 3) % 4)),
                ("job", &format!("j{}", (i * 7 / 3) % 3)),
                ("zone", &format!("z{}", i % 2)),
            ]);
            let points = (0..4).map(|k| (k * 15_000, (i as f64 + 1.0) * k as f64));
            store.series.insert(Arc::new(labels), points.collect());
        }
        let queries = [
            "a / b > 0.5 or c",
            "a / ignoring (zone) b or ignoring (job) c",
            "a + on (instance, job) b unless ignoring (job) c",
            "a + on (instance, job) b and on (instance, zone) c",
            "c and on (instance) (a - ignoring (zone) b)",
            "(a and on (job) b) or on (zone) c",
            "rate(a[1m]) / on (instance, zone) rate(b[1m]) > 0 unless on (instance) c",
            "a * on (instance, zone, job) b / on (instance, zone, job) c",
        ];
        let t = 45_000;
        let mut outcomes = (0, 0);
        for q in queries {
            let rule = spread_rule(q).unwrap_or_else(|| panic!("{q} is spread"));
            assert_eq!((rule.combine, rule.local.len()), (Combine::Join, 3), "{q}");
            assert_every_split(q, &rule, &store, t, &mut outcomes);
        }
        assert_eq!(outcomes, (5, 1));
    }

    /// A worker's local plan `i` of `rule` at `t` by the reference `ev`, as a rule
    /// host evaluates it: one whose elements cross as [`SideElement`]s unfinished (as
    /// the reference holds it).
    fn local(rule: &Spread, ev: &Evaluator<'_>, i: usize, t: i64) -> EvalResult<Value> {
        match rule.sends_elements(i) {
            true => ev.eval(&rule.local[i], t),
            false => ev.instant(&rule.local[i], t),
        }
    }

    /// `record` as a worker of another process receives it: its labels coded by `sent`
    /// (the sender's dictionary), serialized as timely does, decoded as
    /// [`join_sides`] does.
    fn across(
        mut record: HostRecord,
        sent: &mut SentIds,
        received: &mut ReceivedLabels,
    ) -> HostRecord {
        let (coded, ..) = code_labels(&mut record, 0, 1_000, sent);
        let bytes = bincode::serialize(&HostRecord::Coded(Box::new(record), coded)).unwrap();
        let mut records = vec![bincode::deserialize(&bytes).unwrap()];
        decode_time(received, &mut records);
        records.pop().unwrap()
    }

    /// `rule` (the query `q`) at `t` over `store` dealt to 1 to 4 workers in every way
    /// ([`split_run`]) gives the reference's result (the same labelled elements), or its
    /// error word for word; `outcomes` counts the reference's results with elements
    /// and its errors.
    fn assert_every_split(
        q: &str,
        rule: &Spread,
        store: &crate::promql::testscript::store::MemStorage,
        t: i64,
        outcomes: &mut (usize, usize),
    ) {
        let want = Evaluator::new(store, t).instant(&parse(q).unwrap(), t);
        match &want {
            Ok(Value::Vector(v)) if !v.is_empty() => outcomes.0 += 1,
            Err(_) => outcomes.1 += 1,
            _ => {}
        }
        for workers in 1..=4usize {
            for shift in 0..workers {
                let got = split_run(rule, store, t, workers, shift).0;
                match (&got, &want) {
                    (Ok(g), Ok(w)) => {
                        assert_near(g, w, &format!("{q} on {workers} workers, shift {shift}"))
                    }
                    _ => assert_eq!(got, want, "{q} on {workers} workers, shift {shift}"),
                }
            }
        }
    }

    /// `rule` at `t` over `store` dealt to `workers` workers (series `i` to worker
    /// `(i + shift) % workers`): each worker evaluates its local plans over its own
    /// series by the reference (histograms detached, a `sum`'s members where the store
    /// holds histograms), side elements go to their joiners, and the owner combines;
    /// on odd shifts every record crosses as between processes ([`across`]).
    fn split_run(
        rule: &Spread,
        store: &crate::promql::testscript::store::MemStorage,
        t: i64,
        workers: usize,
        shift: usize,
    ) -> Evaluated {
        use crate::promql::testscript::store::MemStorage;
        let mut to_owner: [Vec<Part>; 2] = Default::default();
        let mut to_joiner: BTreeMap<u64, Vec<SideElements>> = BTreeMap::new();
        let (mut sent, mut received) = (SentIds::default(), ReceivedLabels::default());
        for w in 0..workers {
            let mut part = MemStorage {
                histograms: store.histograms.clone(),
                ..MemStorage::default()
            };
            for (i, (l, s)) in store.series.iter().enumerate() {
                if (i + shift) % workers == w {
                    part.series.insert(l.clone(), s.clone());
                }
            }
            let ev = Evaluator::new(&part, t);
            let values = (0..rule.local.len())
                .map(|i| match local(rule, &ev, i, t) {
                    Ok(mut v) => {
                        let held = detach(&ev, &mut v);
                        (Ok(v), held)
                    }
                    Err(e) => (Err(e), Vec::new()),
                })
                .collect();
            let members = (rule.local.iter())
                .map(|l| {
                    let plan = members_plan(l).filter(|_| !store.histograms.is_empty())?;
                    Some(ev.instant(&plan, t))
                })
                .collect();
            let id = (RuleId(1), 0, t);
            for record in part_records(rule, id, values, members, workers) {
                // Odd shifts: as if every worker were in its own process.
                let record = match shift % 2 {
                    1 => across(record, &mut sent, &mut received),
                    _ => record,
                };
                match record {
                    HostRecord::Partials((_, _, _, p)) => to_owner[0].push(p),
                    HostRecord::Pair((_, _, _, l), r) => {
                        to_owner[0].push(l);
                        to_owner[1].push(r);
                    }
                    HostRecord::Sides((j, _, _, p)) => to_joiner.entry(j).or_default().push(p),
                    HostRecord::Joined(..)
                    | HostRecord::Output(..)
                    | HostRecord::Alerting(..)
                    | HostRecord::Coded(..) => {
                        unreachable!()
                    }
                }
            }
        }
        let joined: Vec<JoinedPart> = (to_joiner.into_values())
            .map(|p| {
                let mut state = rule.joiner_state().expect("a join");
                let part = joined(rule, &mut state, t, p);
                if shift.is_multiple_of(2) {
                    return part;
                }
                let record = HostRecord::Joined((0, RuleId(1), t, part));
                match across(record, &mut sent, &mut received) {
                    HostRecord::Joined((.., part)) => part,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        combined(rule, t, to_owner, joined)
    }

    /// A value's elements in order as `(labels, float, histogram)`.
    fn in_order(
        v: &Value,
        histograms: &dyn Fn(f64) -> Option<Arc<FloatHistogram>>,
    ) -> Vec<(String, f64, Option<Arc<FloatHistogram>>)> {
        match v {
            Value::Vector(v) => v
                .iter()
                .map(|e| (e.labels.to_string(), e.value, histograms(e.value)))
                .collect(),
            Value::Scalar(s) => vec![(String::new(), *s, None)],
            other => panic!("{other:?}"),
        }
    }

    /// Operations after the combine (nested aggregations, `histogram_quantile`, picks
    /// and sorts of the groups, `scalar`, label functions, `time()`) and aggregations of
    /// per-series plans, over floats with ties, a stale marker, classic and native
    /// histograms, dealt to 1 to 4 workers in every way: the reference's result, in the
    /// reference's order where the operations depend on it (picks, sorts), values within
    /// float rounding (histograms too), errors word for word.
    #[test]
    fn operations_after_and_aggregations_of_per_series_plans_of_any_split_are_the_reference() {
        use crate::promql::eval::native::handle;
        use crate::promql::testscript::store::MemStorage;
        use crate::sample::STALE_MARKER;
        let mut store = MemStorage::default();
        let series = |name: &str, i: usize, extra: &[(&str, &str)]| {
            // Jobs whose label order is not the order their first series come in.
            let job = ["z", "a", "m", "a", "z", "m"][i % 6];
            let mut pairs = vec![
                ("__name__", name.to_string()),
                ("instance", format!("h{i}")),
                ("job", job.to_string()),
            ];
            pairs.extend(extra.iter().map(|(n, v)| (*n, v.to_string())));
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
            Arc::new(Labels::from_strs(&pairs))
        };
        for i in 0..6 {
            // Values with ties across groups and series.
            let points = (0..4).map(|k| (k * 15_000, ((i % 3) * k as usize) as f64));
            let mut points: BTreeMap<i64, f64> = points.collect();
            if i == 4 {
                points.insert(45_000, STALE_MARKER);
            }
            store.series.insert(series("x", i, &[]), points);
            let y = (0..4).map(|k| (k * 15_000, (i as f64 - 2.0) * k as f64));
            store.series.insert(series("y", i, &[]), y.collect());
            for (b, le) in ["0.1", "1", "+Inf"].iter().enumerate() {
                let v = (0..4).map(|k| (k * 15_000, ((b + 1) * (i + 1)) as f64 * k as f64));
                store
                    .series
                    .insert(series("b", i, &[("le", le)]), v.collect());
            }
            let mut h = BTreeMap::new();
            for k in 0..4 {
                let buckets: Vec<f64> = (0..3).map(|b| (k * (i + 1) * (b + 1)) as f64).collect();
                store.histograms.push(Arc::new(FloatHistogram {
                    schema: 0,
                    zero_threshold: 1e-128,
                    count: buckets.iter().sum(),
                    sum: (k * (i + 1)) as f64 * 2.5,
                    positive_spans: vec![crate::histogram::Span {
                        offset: 0,
                        length: 3,
                    }],
                    positive_buckets: buckets,
                    ..FloatHistogram::default()
                }));
                let at = (store.histograms.len() - 1) as u32;
                h.insert(k as i64 * 15_000, handle(SOURCE, at));
            }
            store.series.insert(series("h", i, &[]), h);
        }
        let queries = [
            "count(sum by (job) (x))",
            "sum(sum by (job) (x))",
            "max by (job) (avg by (job, instance) (y)) > 1",
            "histogram_quantile(0.9, sum by (le) (rate(b[1m])))",
            "histogram_quantile(0.5, sum by (le, job) (b))",
            "histogram_quantile(0.9, sum(rate(h[1m])))",
            "histogram_count(sum(h * 2))",
            "sum by (job) (h * 2)",
            "count(h)",
            "avg(h * 2)",
            "scalar(sum(x))",
            "vector(scalar(count(x))) * 2",
            "label_replace(sum by (job) (x), \"job\", \"\", \"job\", \".*\")",
            "label_replace(sum by (job) (x), \"j\", \"$1\", \"job\", \"(.*)\")",
            "timestamp(sum(x))",
            "time() - max(x)",
            "count_values(\"v\", x / on (instance, job) y)",
            "histogram_quantile(0.9, rate(b[1m]))",
            "histogram_quantile(0.5, b)",
            "histogram_quantile(0.9, rate(h[1m]))",
            "histogram_count(sort(h))",
            "sort_desc(rate(x[1m]))",
            "sort(y)",
            "topk(3, sort(y))",
            "scalar(x)",
            "scalar(x == 2)",
            "sort_by_label(y, \"job\")",
            "count_values(\"v\", sort(y))",
            "limit_ratio(-0.5, y)",
            "limit_ratio(0.7, sum by (instance) (rate(x[1m])))",
            "topk(1, topk by (job) (2, x))",
            "count(topk(2, rate(x[1m])))",
            "quantile(0.5, quantile by (job) (0.9, x))",
            "sum by (job) (rate(x[1m]) > 0)",
            "count(x == 0)",
            "sum(x * 8)",
            "max(abs(delta(y[1m])))",
            "avg by (job) (clamp_min(y, 1))",
            "stddev(-y)",
            "topk(2, x * 8)",
            "bottomk by (job) (1, -x)",
            "limitk(1, x > 0)",
            "quantile(0.9, rate(x[1m]) * 2)",
            "count_values(\"v\", x * 2)",
            "sum by (job) (rate(x[1m]) / y)",
            "count(x > on (instance) y)",
            // Joins under aggregations of partials (the joiners'): histograms, a
            // stale marker.
            "sum by (job) (h * on (instance, job) x)",
            "avg(h + on (instance) h)",
            "avg by (job) (rate(h[1m]) + on (instance) rate(h[1m]))",
            "stddev(h - on (instance) h)",
            "max(x - on (instance) y)",
            "sum(h + on (instance) x)",
            "histogram_count(sum(h / on (instance) h))",
            "scalar(sum(x) / sum(y))",
            "sum(x * 2) / sum(y > 0)",
            // An aggregation beside a per-series plan: a stale marker, histograms.
            "x / on (job) group_left sum by (job) (x)",
            "rate(y[1m]) - ignoring (instance) group_left avg without (instance) (y)",
            "h * on (job) group_left count by (job) (h)",
            "sum by (job) (h) - on (job) group_right h",
            "histogram_count(h / on (job) group_left count by (job) (x))",
            "rate(h[1m]) * on (job) group_left count by (job) (x)",
            "sum by (job) (x) + on (job) group_left irate(y[1m])",
        ];
        let t = 45_000;
        let (mut errors, mut histograms) = (0, 0);
        for q in queries {
            let rule = spread_rule(q).unwrap_or_else(|| panic!("{q} is spread"));
            let plan = parse(q).unwrap();
            let ev = Evaluator::new(&store, t);
            let want = ev.instant(&plan, t);
            errors += usize::from(want.is_err());
            let ordered = rule.after.as_ref().is_some_and(ordered)
                || (rule.combine == Combine::Pick && rule.after.is_none());
            assert!(
                rule.after.is_some() || rule.combine != Combine::Union,
                "{q}"
            );
            // The joins under aggregations of partials go by the joiners' partials.
            let folds = [
                "sum by (job) (rate(x[1m]) / y)",
                "count(x > on (instance) y)",
                "sum by (job) (h * on (instance, job) x)",
                "avg(h + on (instance) h)",
                "avg by (job) (rate(h[1m]) + on (instance) rate(h[1m]))",
                "stddev(h - on (instance) h)",
                "max(x - on (instance) y)",
                "sum(h + on (instance) x)",
                "histogram_count(sum(h / on (instance) h))",
            ];
            assert_eq!(rule.fold.is_some(), folds.contains(&q), "{q}");
            for workers in 1..=4usize {
                for shift in 0..workers {
                    let how = format!("{q} on {workers} workers, shift {shift}");
                    let (got, held) = split_run(&rule, &store, t, workers, shift);
                    let (got, want) = match (got, &want) {
                        (Ok(g), Ok(w)) => (g, w),
                        (got, want) => {
                            assert_eq!(&got, want, "{how}");
                            continue;
                        }
                    };
                    let mut g = in_order(&got, &|v| match parse_handle(v) {
                        Some((SOURCE, i)) => held.get(i as usize).cloned(),
                        _ => None,
                    });
                    let mut w = in_order(want, &|v| ev.histogram(v));
                    if !ordered {
                        g.sort_by(|a, b| a.0.cmp(&b.0));
                        w.sort_by(|a, b| a.0.cmp(&b.0));
                    }
                    let near = |a: f64, b: f64| {
                        a == b || (a.is_nan() && b.is_nan()) || ((a - b) / b).abs() < 1e-9
                    };
                    let same = g.len() == w.len()
                        && g.iter().zip(&w).all(|(g, w)| {
                            g.0 == w.0
                                && match (&g.2, &w.2) {
                                    (Some(gh), Some(wh)) => gh.same(wh, true, near),
                                    (None, None) => near(g.1, w.1),
                                    _ => false,
                                }
                        });
                    assert!(same, "{how}: {g:?}, reference {w:?}");
                    histograms += g.iter().filter(|e| e.2.is_some()).count();
                }
            }
        }
        // The label function that makes every group's labels equal; two `irate(y)` of
        // a job on the "one" side, named with their pending names.
        assert_eq!(errors, 2);
        assert!(histograms > 0);
    }

    /// `got` is `want` (labelled elements), values within float rounding (a join's
    /// joiners' partials are combined as an aggregation's: sums in another order).
    fn assert_near(got: &Value, want: &Value, what: &str) {
        let (g, w) = (labelled(got), labelled(want));
        let near =
            |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan()) || ((a - b) / b).abs() < 1e-12;
        let same =
            g.len() == w.len() && (g.iter().zip(&w)).all(|(g, w)| g.0 == w.0 && near(g.1, w.1));
        assert!(same, "{what}: {g:?} != {w:?}");
    }

    fn labelled(v: &Value) -> Vec<(String, f64)> {
        let Value::Vector(v) = v else { panic!("{v:?}") };
        let mut out: Vec<(String, f64)> =
            v.iter().map(|e| (e.labels.to_string(), e.value)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The owner applies the operations after a combine step by step where each is one
    /// an incremental map node applies ([`Step`]), else by the reference.
    #[test]
    fn operations_after_run_as_steps() {
        for (q, n) in [
            ("a / on (instance) b > 0.1", 1),
            ("100 - avg(x) * 100 > 90", 3),
            ("-topk(2, x)", 1),
            ("abs(sum by (job) (a) / sum by (job) (b)) > bool 0.05", 2),
        ] {
            let after = spread_rule(q).unwrap().after.unwrap();
            assert_eq!(steps_of(&after).map(|s| s.len()), Some(n), "{q}");
        }
        for q in ["clamp_min(sum(x), 0)", "round(avg(x), 2) > 1"] {
            let after = spread_rule(q).unwrap().after.unwrap();
            assert!(steps_of(&after).is_none(), "{q}");
        }
    }

    /// A side element's joiner hashes its matching signature as the labels it makes
    /// would hash, without making them.
    #[test]
    fn joiners_hash_signatures_as_labels() {
        use crate::promql::eval::binary::signature;
        let labels = Labels::from_strs(&[
            ("__name__", "a"),
            ("__type__", "counter"),
            ("instance", "h0"),
            ("job", "j"),
            ("zone", "z1"),
        ]);
        for q in [
            "a / on (instance) b",
            "a / on (job, zone, nothing) b",
            "a - ignoring (job) b",
            "a + b",
            "a > on () b",
        ] {
            let rule = spread_rule(q).unwrap();
            let matching = rule.matching().unwrap();
            let made = Labels::from_pairs(signature(&labels, matching));
            assert_eq!(signature_hash(&labels, matching), made.hash(), "{q}");
        }
    }

    /// A spread join's joiners keep their state ([`SpreadJoin`]) from one evaluation to
    /// the next while series come, go, change values and match groups, and a
    /// many-to-many match appears and goes away (set operators: kept and dropped
    /// groups, names pending removal), their labels the same `Arc`s from one
    /// evaluation to the next or new ones (as from another process): on 1 to 3
    /// workers, dealt in every way, every evaluation gives exactly the reference's
    /// result, errors word for word; and a joiner of every match group answers as a
    /// new state would, incrementally (without the reference) exactly when the
    /// reference has no error.
    #[test]
    fn joiners_state_follows_the_series_over_evaluations() {
        use crate::promql::testscript::store::MemStorage;
        // Labels made once (the same `Arc` at every step, as within one process) or
        // at every step (as records from another process).
        let mut made: BTreeMap<[&str; 3], Arc<Labels>> = BTreeMap::new();
        let mut series = |name, instance, job, again: bool| {
            let make = || {
                Arc::new(Labels::from_strs(&[
                    ("__name__", name),
                    ("instance", instance),
                    ("job", job),
                ]))
            };
            match again {
                true => make(),
                false => made
                    .entry([name, instance, job])
                    .or_insert_with(make)
                    .clone(),
            }
        };
        // Each step: the series held, as (name, instance, job, value at `t`).
        let steps: Vec<Vec<(&str, &str, &str, f64)>> = vec![
            vec![
                ("a", "h0", "j0", 1.0),
                ("a", "h1", "j1", 2.0),
                ("a", "h2", "j0", 3.0),
                ("b", "h0", "j0", 4.0),
                ("b", "h1", "j1", 5.0),
                ("b", "h2", "j0", 6.0),
            ],
            // Unchanged.
            vec![
                ("a", "h0", "j0", 1.0),
                ("a", "h1", "j1", 2.0),
                ("a", "h2", "j0", 3.0),
                ("b", "h0", "j0", 4.0),
                ("b", "h1", "j1", 5.0),
                ("b", "h2", "j0", 6.0),
            ],
            // Values change; b{h1} goes, a{h3}, b{h3} come; b{h2} moves to job j1.
            vec![
                ("a", "h0", "j0", 7.0),
                ("a", "h1", "j1", 2.0),
                ("a", "h2", "j0", 3.0),
                ("a", "h3", "j1", 0.5),
                ("b", "h0", "j0", 4.0),
                ("b", "h2", "j1", 6.0),
                ("b", "h3", "j1", 1.0),
            ],
            // A second b of instance h0 (on (instance): duplicates on the right), and a
            // second a of instance h3 (many-to-many on the left).
            vec![
                ("a", "h0", "j0", 7.0),
                ("a", "h1", "j1", 2.0),
                ("a", "h2", "j0", 3.0),
                ("a", "h3", "j1", 0.5),
                ("a", "h3", "j2", 9.0),
                ("b", "h0", "j0", 4.0),
                ("b", "h0", "j2", 8.0),
                ("b", "h2", "j1", 6.0),
                ("b", "h3", "j1", 1.0),
            ],
            // They go again; a{h1} goes, b{h1} comes back in job j0.
            vec![
                ("a", "h0", "j0", 7.5),
                ("a", "h2", "j0", 3.0),
                ("a", "h3", "j1", 0.5),
                ("b", "h0", "j0", 4.0),
                ("b", "h1", "j0", 5.0),
                ("b", "h2", "j1", 6.5),
                ("b", "h3", "j1", 1.0),
            ],
            // Everything goes but one pair.
            vec![("a", "h2", "j0", 3.0), ("b", "h2", "j1", 6.5)],
            vec![],
            vec![("a", "h2", "j0", 3.0), ("b", "h2", "j1", 1.0)],
        ];
        let queries = [
            "a / on (instance) b",
            "a - ignoring (job) b",
            "a > on (instance) b",
            "a < bool on (instance) b",
            "a + b",
            "b / on (instance) a > 1",
            "a and on (instance) b",
            "abs(a) or ignoring (job) b",
            "b unless on (instance) abs(a)",
            "a > 2 or b",
            // Under aggregations of partials: the joiners' partials.
            "sum by (job) (a / on (instance) b)",
            "avg by (job) (a - ignoring (job) b)",
            "stddev(a > on (instance) b)",
            "count by (job) (a < bool on (instance) b)",
            "max without (instance) (b / on (instance) a)",
            "count by (job) (a and on (instance) b)",
        ];
        let t = 60_000;
        let mut errors = 0;
        for (n, q) in queries.into_iter().enumerate() {
            let rule = spread_rule(q).unwrap_or_else(|| panic!("{q} is spread"));
            let plan = parse(q).unwrap();
            // The last six under aggregations, of which a set operator's joiner runs
            // the reference.
            assert_eq!(rule.fold.is_some(), n >= 10, "{q}");
            let folds = rule.joiner_state().is_some_and(|s| s.folds());
            assert_eq!(folds, n >= 10 && n != 15, "{q}");
            for workers in 1..=3usize {
                for shift in 0..workers {
                    let mut states: BTreeMap<u64, SpreadJoin> = BTreeMap::new();
                    for (step, held) in steps.iter().enumerate() {
                        let mut store = MemStorage::default();
                        for (name, instance, job, v) in held {
                            let points = [(t - 1_000, *v)].into_iter().collect();
                            let labels = series(*name, *instance, *job, n % 2 == 1);
                            store.series.insert(labels, points);
                        }
                        let want = Evaluator::new(&store, t).instant(&plan, t);
                        if workers == 1 {
                            errors += usize::from(want.is_err());
                        }
                        let mut to_owner = Vec::new();
                        let mut to_joiner: BTreeMap<u64, Vec<SideElements>> = BTreeMap::new();
                        for w in 0..workers {
                            let mut part = MemStorage::default();
                            for (i, (l, s)) in store.series.iter().enumerate() {
                                if (i + shift) % workers == w {
                                    part.series.insert(l.clone(), s.clone());
                                }
                            }
                            let values = (0..rule.local.len())
                                .map(|i| {
                                    (local(&rule, &Evaluator::new(&part, t), i, t), Vec::new())
                                })
                                .collect();
                            let id = (RuleId(1), 0, t);
                            let members = vec![None, None];
                            for record in part_records(&rule, id, values, members, workers) {
                                match record {
                                    HostRecord::Partials((_, _, _, p)) => to_owner.push(p),
                                    HostRecord::Sides((j, _, _, p)) => {
                                        to_joiner.entry(j).or_default().push(p)
                                    }
                                    _ => unreachable!(),
                                }
                            }
                        }
                        let mut parts = Vec::new();
                        for (j, records) in to_joiner {
                            let state = states
                                .entry(j)
                                .or_insert_with(|| rule.joiner_state().expect("a join"));
                            if workers == 1 {
                                // The one joiner's state answers as a new one would,
                                // by itself exactly when the reference has no error
                                // (then `joined` meets it unchanged).
                                let all = || {
                                    records.iter().flat_map(|r| {
                                        (r.sides.iter().enumerate()).flat_map(|(side, e)| {
                                            e.iter().map(move |(l, v, d)| {
                                                (side, LabelsKey::new(l.clone()), *v, *d)
                                            })
                                        })
                                    })
                                };
                                let fresh = || rule.joiner_state().expect("a join");
                                if state.folds() {
                                    let kept = state.fold(all());
                                    assert_eq!(kept, fresh().fold(all()), "{q} at step {step}");
                                    assert_eq!(kept.is_some(), want.is_ok(), "{q} at step {step}");
                                } else {
                                    let kept = state.join(all());
                                    assert_eq!(kept, fresh().join(all()), "{q} at step {step}");
                                    if rule.after.is_none() && rule.fold.is_none() {
                                        let ok = want.is_ok();
                                        assert_eq!(kept.is_some(), ok, "{q} at step {step}");
                                    }
                                }
                            }
                            parts.push(joined(&rule, state, t, records));
                        }
                        let got = combined(&rule, t, [to_owner, Vec::new()], parts).0;
                        let how = format!("{q} at step {step} on {workers} workers, shift {shift}");
                        match (&got, &want) {
                            (Ok(g), Ok(w)) => assert_near(g, w, &how),
                            _ => assert_eq!(got, want, "{how}"),
                        }
                    }
                }
            }
        }
        // Step 3 of every arithmetic or comparison but `a + b` (its match groups are
        // whole label sets), of every aggregation of one but `count … and`; set
        // operators match many-to-many.
        assert_eq!(errors, 10);
    }

    #[test]
    fn partials_combine_per_group() {
        let l = |v: &str| Arc::new(Labels::from_strs(&[("job", v)]));
        let sum = spread_rule("sum by (job) (x)").unwrap();
        let a = Part::Partials(Ok((vec![(l("a"), vec![1.0]), (l("b"), vec![4.0])], None)));
        let b = Part::Partials(Ok((vec![(l("a"), vec![2.0])], None)));
        let got = combined(&sum, 0, [vec![a.clone(), b.clone()], vec![]], vec![])
            .0
            .unwrap();
        assert_eq!(
            labelled(&got),
            vec![("{job=\"a\"}".into(), 3.0), ("{job=\"b\"}".into(), 4.0)]
        );
        let err = Part::Partials(Err(EvalError::Execution("boom".into())));
        assert!(combined(&sum, 0, [vec![a, err, b], vec![]], vec![])
            .0
            .is_err());
    }

    /// Every way of dealing a group's members to workers gives the reference's value
    /// (within its float tolerance) for the moments and means, and exactly its
    /// elements for picks and gathers, ties included.
    #[test]
    fn partials_of_any_split_combine_to_the_reference() {
        let values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0];
        // As aggregators.test's `data{test="big"}`: two of them overflow a sum.
        let big = f64::MAX / 1.8;
        let sets: Vec<Vec<f64>> = vec![
            values.to_vec(),
            vec![big, big, big, big],
            vec![-big, -big, big, big],
            vec![1.0, f64::INFINITY, 2.0],
            vec![1.0, f64::NAN, 2.0],
            vec![7.0],
        ];
        let queries = [
            "avg by (job) (x)",
            "stddev by (job) (x)",
            "stdvar(x)",
            "topk by (job) (3, x)",
            "bottomk(2, x)",
            "bottomk(1, x)",
            "topk(1, x)",
            "limitk(2, x)",
            "quantile(0.3, x)",
            "count_values by (job) (\"v\", x)",
            "avg(x) * 2 > 1",
        ];
        for set in &sets {
            let elements: Vec<Element> = set
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let job = if i % 3 == 0 { "a" } else { "b" };
                    let labels = Labels::from_strs(&[
                        ("__name__", "x"),
                        ("job", job),
                        ("i", &format!("{i:02}")),
                    ]);
                    Element::new(Arc::new(labels), *v)
                })
                .collect();
            let series: Vec<Element> = elements.clone();
            for q in queries {
                let rule = spread_rule(q).unwrap();
                let plan = parse(q).unwrap();
                let store = Members::new(&series, &[], 0);
                let want = Evaluator::new(&store, 0).instant(&plan, 0).unwrap();
                for workers in 1..=4usize {
                    for shift in 0..workers {
                        let records: Vec<Part> = (0..workers)
                            .map(|w| {
                                let mine: Vec<Element> = elements
                                    .iter()
                                    .enumerate()
                                    .filter(|(i, _)| (i + shift) % workers == w)
                                    .map(|(_, e)| e.clone())
                                    .collect();
                                let local = over_members(&rule.local[0], 0, mine, &[]);
                                part(&rule, 0, vec![local], None)
                            })
                            .collect();
                        let got = combined(&rule, 0, [records, vec![]], vec![]).0.unwrap();
                        let (g, w) = (labelled(&got), labelled(&want));
                        assert!(
                            g.len() == w.len()
                                && g.iter().zip(&w).all(|(g, w)| g.0 == w.0
                                    && (g.1 == w.1
                                        || (g.1.is_nan() && w.1.is_nan())
                                        || ((g.1 - w.1) / w.1).abs() < 1e-9)),
                            "{q} over {set:?} on {workers} workers: {g:?}, reference {w:?}"
                        );
                    }
                }
            }
        }
    }
}
