//! Label sets crossing processes in the rule hosts' records, each once per sending
//! worker, receiving worker and period (issue 14: "the exchange carries series ids and
//! values; a label set crosses to a peer once").
//!
//! The records of spread rules and of owned rules evaluated away from their home
//! ([`HostRecord`]: a join's side elements, a joiner's joined elements, partials,
//! picks, gathers, unions, group labels, whole [`crate::render::RuleOutput`]s) carry a
//! label set per element. To a worker of this process they pass as values (timely
//! hands them over unserialized: the `Arc`s pass through, nothing here runs). To a
//! worker of another process they cross serialized, and the same label sets would
//! cross at every evaluation; so [`code_for_peers`] codes them first, with one
//! dictionary per (this worker, destination worker) and [`ANNOUNCE_PERIOD_MS`] period
//! ([`id_epoch`]): the series-id dictionary's own [`SentIds`], by [`Labels::hash`],
//! its indices coded as the series ids' are (LEB128 of the difference from the
//! previous slot's index + 1: about a byte where a record lists the sets in the order
//! they first came). A coded record ([`HostRecord::Coded`], [`CodedLabels`]) carries
//! per label slot ([`LabelSlots`], visited in one order on both ends) its index, and
//! keeps the label set itself, with its hash, only where it brings its entry: in the
//! first record, by logical time, to use it for that destination in the period. Every
//! other slot crosses as the empty set, so a side element whose set the receiver
//! knows crosses in 18 bytes (its value, its 1-byte name-pending flag, the empty
//! set's 8-byte length, a 1-byte index) where with five labels it took 179 (the test
//! `a_known_label_set_crosses_as_its_index`).
//! The empty set (`sum(x)`'s group) and sets beyond a full dictionary
//! ([`crate::sample::MAX_DICTIONARY_ENTRIES`]) cross whole, with their hash. A rule
//! host makes the records of one activation in no time order (every evaluation its
//! frontier made ready, rule by rule), so the sender keeps a dictionary per epoch from
//! its input frontier's on, not only the latest. The sender hashes each set it codes
//! (its dictionary is by hash): the work the receiver no longer does.
//!
//! The receiving operator ([`ReceivedLabels`]: `join_sides` for the rule hosts'
//! records, `combine_partials` for the joiners') relies on logical time only, not on
//! the order messages arrive in: it learns every entry of a time's records before it
//! decodes any of them, times in order (an entry comes in a record of a time not after
//! any record using it), and drops a period's tables once its frontier has passed the
//! period. A decoded label set is the receiver's one `Arc` per sender, index and
//! period, so a joiner holding it from the previous evaluation matches it by pointer,
//! and the hash that came with its entry spares the joiner hashing the set again.

use crate::labels::Labels;
use crate::render::route::id_epoch;
#[cfg(doc)]
use crate::render::route::ANNOUNCE_PERIOD_MS;
use crate::render::rule::{RuleCounters, RuleId};
#[cfg(doc)]
use crate::render::spread::SideElements;
use crate::render::spread::{HostRecord, Part};
use crate::sample::{get_varint, put_varint, unzigzag, zigzag, ReceivedTables, SentIds};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream;

/// A record's label sets, visited in one order (the same after the record crossed:
/// serialization keeps its structure).
pub trait LabelSlots {
    /// Calls `f` on every label set of the record, in order.
    fn each_labels(&mut self, f: &mut dyn FnMut(&mut Arc<Labels>));
}

/// The empty label set, and its hash: what a slot whose entry the receiver has crosses
/// as.
static EMPTY: LazyLock<(Arc<Labels>, u64)> = LazyLock::new(|| {
    let empty = Labels::default();
    let hash = empty.hash();
    (Arc::new(empty), hash)
});

/// How a record's label sets are coded ([`code_labels`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CodedLabels {
    /// The sending worker (its index in the cluster).
    from: u32,
    /// The dictionary's epoch ([`id_epoch`] of the record's time).
    epoch: u64,
    /// Per slot, in [`LabelSlots`] order, LEB128: 0 for a slot crossing whole, else
    /// 1 + zigzag(index − (the previous indexed slot's index + 1)), the first from −1.
    /// An indexed slot that keeps its labels brings its entry; one crossing as the
    /// empty set refers to it.
    codes: Vec<u8>,
    /// The [`Labels::hash`] of every slot that keeps its labels (crossing whole or
    /// bringing its entry), in slot order.
    hashes: Vec<u64>,
}

/// Codes the label sets of `record`, of logical time `time`, sent by worker `from`
/// to a worker of another process, by `sent`, `from`'s dictionary for that worker
/// (moved on to the record's epoch if that is later; one of a later epoch leaves the
/// record's sets whole): a slot whose set the dictionary had brought at a time not
/// after `time` crosses as the empty set and its index, the others keep their labels.
/// Returns the coding, the slots that crossed as references and the label sets that
/// crossed whole (the empty set not counted).
pub fn code_labels(
    record: &mut impl LabelSlots,
    from: u32,
    time: u64,
    sent: &mut SentIds,
) -> (CodedLabels, usize, usize) {
    let epoch = id_epoch(time);
    sent.advance_to(epoch);
    let coding = sent.epoch() == Some(epoch);
    let (empty, empty_hash) = &*EMPTY;
    let mut coded = CodedLabels {
        from,
        epoch,
        ..CodedLabels::default()
    };
    let (mut refs, mut whole, mut last) = (0, 0, -1i64);
    record.each_labels(&mut |labels| {
        if labels.is_empty() {
            coded.codes.push(0);
            coded.hashes.push(*empty_hash);
            return;
        }
        let hash = labels.hash();
        let Some((index, bring)) = coding.then(|| sent.code(hash, time)).flatten() else {
            coded.codes.push(0);
            coded.hashes.push(hash);
            whole += 1;
            return;
        };
        let index = i64::from(index);
        put_varint(&mut coded.codes, 1 + u128::from(zigzag(index - (last + 1))));
        last = index;
        if bring {
            coded.hashes.push(hash);
            whole += 1;
        } else {
            *labels = empty.clone();
            refs += 1;
        }
    });
    (coded, refs, whole)
}

/// One slot of a coded record as the receiver reads it.
enum Slot {
    /// It kept its labels, without an entry (hash).
    Whole(u64),
    /// It brings the entry of an index (index, hash).
    Brings(usize, u64),
    /// It refers to the entry of an index.
    Refers(usize),
}

/// Reads the slots of `record` coded as `coded`, in order, with `each`.
fn read_slots(
    record: &mut impl LabelSlots,
    coded: &CodedLabels,
    mut each: impl FnMut(Slot, &mut Arc<Labels>),
) {
    let (mut at, mut index, mut hashes) = (0, -1i64, coded.hashes.iter());
    let mut hash = || *hashes.next().expect("a hash per slot that kept its labels");
    record.each_labels(&mut |labels| {
        let slot = match get_varint(&coded.codes, &mut at) {
            0 => Slot::Whole(hash()),
            code => {
                index += 1 + unzigzag((code - 1) as u64);
                match labels.is_empty() {
                    true => Slot::Refers(index as usize),
                    false => Slot::Brings(index as usize, hash()),
                }
            }
        };
        each(slot, labels);
    });
}

/// The label sets the workers of other processes have sent this one in coded records
/// ([`code_labels`] at their end), by epoch and sender: fed every coded record of a
/// time ([`ReceivedLabels::learn`]) before any of them is decoded
/// ([`ReceivedLabels::decode`]), times in order.
#[derive(Default)]
pub struct ReceivedLabels {
    /// Per index, the hash and the labels (`None`: an index no record has brought).
    tables: ReceivedTables<Option<Entry>>,
}

/// A dictionary entry: a label set's hash and the set.
type Entry = (u64, Arc<Labels>);

impl ReceivedLabels {
    /// Takes the entries `record`, coded as `coded`, brings.
    pub fn learn(&mut self, record: &mut impl LabelSlots, coded: &CodedLabels) {
        let mut brought = Vec::new();
        read_slots(record, coded, |slot, labels| {
            if let Slot::Brings(i, hash) = slot {
                brought.push((i, Some((hash, labels.clone()))));
            }
        });
        self.tables.learn(coded.epoch, coded.from, brought);
    }

    /// Gives `record` its label sets back (a set that brought its entry becomes the
    /// receiver's `Arc` of it, the same every time in the period); returns each slot's
    /// hash. Panics on an index no record has brought (the sender's contract broken).
    pub fn decode(&self, record: &mut impl LabelSlots, coded: &CodedLabels) -> Vec<u64> {
        let table = self.tables.table(coded.epoch, coded.from);
        let entry = |i: usize| {
            table.and_then(|t| t.get(i)?.as_ref()).unwrap_or_else(|| {
                panic!(
                    "label set index {i} of worker {} epoch {} never brought",
                    coded.from, coded.epoch
                )
            })
        };
        let mut hashes = Vec::new();
        read_slots(record, coded, |slot, labels| match slot {
            Slot::Whole(hash) => hashes.push(hash),
            Slot::Brings(i, _) | Slot::Refers(i) => {
                let (hash, known) = entry(i);
                *labels = known.clone();
                hashes.push(*hash);
            }
        });
        hashes
    }

    /// Drops the tables of epochs before `epoch`.
    pub fn forget_before(&mut self, epoch: u64) {
        self.tables.forget_before(epoch);
    }

    /// The number of entries held (indices up to the largest brought), over every
    /// table.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// Decodes one time's records in place, having taken the entries of every coded one
/// of them first: each as it was sent, side elements with their labels' hashes
/// ([`SideElements::hashes`], for the joiner). Records that crossed uncoded (all of
/// them in one process) stay as they are: two passes over them, no allocation.
pub fn decode_time(received: &mut ReceivedLabels, records: &mut [HostRecord]) {
    for record in records.iter_mut() {
        if let HostRecord::Coded(inner, coded) = record {
            received.learn(&mut **inner, coded);
        }
    }
    for record in records.iter_mut() {
        let HostRecord::Coded(inner, coded) = record else {
            continue;
        };
        let hashes = received.decode(&mut **inner, coded);
        if let HostRecord::Sides((.., part)) = &mut **inner {
            part.hashes = hashes;
        }
        let nothing =
            HostRecord::Partials((0, RuleId(0), 0, Part::Partials(Ok((Vec::new(), None)))));
        *record = std::mem::replace(&mut **inner, nothing);
    }
}

/// In a timely cluster: codes the label sets of the records going to workers of other
/// processes ([`code_labels`]: one dictionary per destination worker and epoch,
/// [`id_epoch`] of the record's time), wrapping each in a [`HostRecord::Coded`];
/// records to workers of this process pass as they are. The records of one
/// activation may come in any time order (a rule host makes every evaluation its
/// frontier made ready, rule by rule), so the dictionaries of every epoch from its
/// input frontier's on are kept, and those of the epochs it has passed dropped.
/// `worker` is this worker's index in the cluster, `process` its process,
/// `process_workers` the workers per process, `peers` all workers. Counts references
/// and label sets sent whole in `counters`.
pub fn code_for_peers<'scope>(
    records: Stream<'scope, u64, Vec<HostRecord>>,
    worker: usize,
    process: usize,
    process_workers: usize,
    peers: usize,
    counters: Arc<RuleCounters>,
) -> Stream<'scope, u64, Vec<HostRecord>> {
    let per = process_workers.max(1) as u64;
    records.unary_frontier::<CapacityContainerBuilder<Vec<HostRecord>>, _, _, _>(
        Pipeline,
        "CodeRecordLabels",
        move |_cap, _info| {
            // By epoch, per destination worker.
            let mut sent: BTreeMap<u64, Vec<SentIds>> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|time, batch| {
                    let Some(&t) = time.least() else { return };
                    let (mut refs, mut whole) = (0, 0);
                    let mut records: Vec<HostRecord> = batch
                        .drain(..)
                        .map(|mut record| {
                            let to = record.worker();
                            if to / per == process as u64 || matches!(record, HostRecord::Coded(..))
                            {
                                return record;
                            }
                            let dictionaries = sent.entry(id_epoch(t)).or_insert_with(|| {
                                (0..peers).map(|_| SentIds::default()).collect()
                            });
                            let dictionary = &mut dictionaries[to as usize];
                            let (coded, r, w) =
                                code_labels(&mut record, worker as u32, t, dictionary);
                            (refs, whole) = (refs + r as u64, whole + w as u64);
                            HostRecord::Coded(Box::new(record), coded)
                        })
                        .collect();
                    counters.label_refs.fetch_add(refs, Ordering::Relaxed);
                    counters.labels_sent.fetch_add(whole, Ordering::Relaxed);
                    output.session(&time).give_container(&mut records);
                });
                // No record of an epoch before the frontier's is to come.
                let front = frontier.frontier().first().copied().unwrap_or(u64::MAX);
                while let Some(entry) = sent.first_entry().filter(|e| *e.key() < id_epoch(front)) {
                    entry.remove();
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::eval::{Element, Value};
    use crate::render::spread::{JoinedPart, SideElements};
    use crate::render::RuleOutput;
    use timely::dataflow::operators::capture::Event;
    use timely::dataflow::operators::{Capture, Concat, Input};

    fn labels(instance: u64) -> Arc<Labels> {
        Arc::new(Labels::from_strs(&[
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", "0"),
            ("instance", &format!("host-{instance}.example.com:9100")),
            ("job", "node"),
            ("mode", "user"),
        ]))
    }

    /// Side elements of `instances` for joiner `to`.
    fn sides(to: u64, t: i64, instances: std::ops::Range<u64>) -> HostRecord {
        let mut part = SideElements {
            sides: vec![Vec::new(), Vec::new()],
            ..SideElements::default()
        };
        for i in instances {
            part.sides[(i % 2) as usize].push((labels(i), i as f64, false));
        }
        HostRecord::Sides((to, RuleId(1), t, part))
    }

    /// A record of every kind that carries labels, `{}` among them.
    fn every_kind(to: u64, t: i64) -> Vec<HostRecord> {
        let entries =
            |r: std::ops::Range<u64>| Ok((r.map(|i| (labels(i), vec![i as f64])).collect(), None));
        let empty = Ok((vec![(Arc::new(Labels::default()), vec![1.0])], None));
        let elements = |r: std::ops::Range<u64>| SideElements {
            sides: vec![r.map(|i| (labels(i), i as f64, i % 2 == 0)).collect()],
            ..SideElements::default()
        };
        let output = RuleOutput {
            rule: RuleId(2),
            eval_ms: t,
            value: Ok(Value::Vector(
                (0..3).map(|i| Element::new(labels(i), 1.0)).collect(),
            )),
            gone: Some(vec![labels(7)]),
            histograms: Vec::new(),
            alerts: None,
        };
        let HostRecord::Sides((.., failed)) = sides(to, t, 3..5) else {
            unreachable!()
        };
        vec![
            HostRecord::Partials((to, RuleId(1), t, Part::Partials(entries(0..4)))),
            HostRecord::Pair(
                (to, RuleId(1), t, Part::Partials(empty)),
                Part::Elements(Ok(elements(2..5))),
            ),
            sides(to, t, 0..6),
            HostRecord::Joined((
                to,
                RuleId(1),
                t,
                JoinedPart::Joined(vec![(labels(1), 2.0)], Vec::new()),
            )),
            HostRecord::Joined((to, RuleId(1), t, JoinedPart::Failed(failed))),
            HostRecord::Output(to, output),
        ]
    }

    /// What crosses: timely's serialization there and back.
    fn crossed(record: &HostRecord) -> HostRecord {
        bincode::deserialize(&bincode::serialize(record).unwrap()).unwrap()
    }

    /// `record` coded by worker `from`'s dictionary `sent`.
    fn coded_by(
        mut record: HostRecord,
        from: u32,
        t: u64,
        sent: &mut SentIds,
    ) -> (HostRecord, usize, usize) {
        let (coded, refs, whole) = code_labels(&mut record, from, t, sent);
        (HostRecord::Coded(Box::new(record), coded), refs, whole)
    }

    fn coded(record: HostRecord, t: u64, sent: &mut SentIds) -> (HostRecord, usize, usize) {
        coded_by(record, 0, t, sent)
    }

    /// A record as text, without the hashes a decoded one's side elements keep.
    fn text(record: &HostRecord) -> String {
        let mut record = record.clone();
        if let HostRecord::Sides((.., part)) = &mut record {
            part.hashes.clear();
        }
        format!("{record:?}")
    }

    /// Records of one time as the receiver gets them back.
    fn decoded(received: &mut ReceivedLabels, mut records: Vec<HostRecord>) -> Vec<HostRecord> {
        decode_time(received, &mut records);
        records
    }

    /// A label set crosses with the first record (by time) to use it, as an index
    /// after;
    /// decoded, every kind of record is what was sent, in far fewer bytes.
    #[test]
    fn first_use_carries_labels_later_uses_an_index() {
        let mut sent = SentIds::default();
        let mut received = ReceivedLabels::default();
        for t in [1_000u64, 16_000, 31_000] {
            let mut brought = 0;
            for record in every_kind(3, t as i64) {
                let before = bincode::serialized_size(&record).unwrap();
                let (c, refs, whole) = coded(record.clone(), t, &mut sent);
                brought += whole;
                if t > 1_000 {
                    assert_eq!(whole, 0, "{}", text(&record));
                    assert!(refs > 0);
                    let after = bincode::serialized_size(&c).unwrap();
                    assert!(after * 2 < before, "{after} of {before}: {}", text(&record));
                }
                let back = decoded(&mut received, vec![crossed(&c)]).pop().unwrap();
                assert_eq!(text(&back), text(&record));
                if let HostRecord::Sides((.., part)) = back {
                    let mut want = Vec::new();
                    record.clone().each_labels(&mut |l| want.push(l.hash()));
                    assert_eq!(part.hashes, want);
                }
            }
            // The 7 label sets (not `{}`) once, each in the first record using it.
            assert_eq!(brought, if t == 1_000 { 7 } else { 0 });
        }
        // One `Arc` per label set and period on the receiving end.
        let mut first = |t| {
            let (c, ..) = coded(sides(3, t, 0..2), t as u64, &mut sent);
            match decoded(&mut received, vec![crossed(&c)]).pop().unwrap() {
                HostRecord::Sides((.., s)) => s.sides[0][0].0.clone(),
                _ => unreachable!(),
            }
        };
        assert!(Arc::ptr_eq(&first(46_000), &first(61_000)));
    }

    /// A side element whose label set the receiver has crosses in 18 bytes (its value,
    /// its name-pending flag, the empty set's length, its index: a byte in the order
    /// the sets came), where with its five labels it took 179.
    #[test]
    fn a_known_label_set_crosses_as_its_index() {
        type Record = fn(u64, i64, std::ops::Range<u64>) -> HostRecord;
        let size = |r: &HostRecord| bincode::serialized_size(r).unwrap();
        let per_element = |record: Record, n: u64| {
            let mut sent = SentIds::default();
            coded(record(3, 1_000, 0..200), 1_000, &mut sent);
            let (whole, plain) = (
                size(&record(3, 2_000, 0..2 * n)),
                size(&record(3, 2_000, 0..n)),
            );
            let (a, ..) = coded(record(3, 2_000, 0..2 * n), 2_000, &mut sent);
            let (b, ..) = coded(record(3, 2_000, 0..n), 2_000, &mut sent);
            ((whole - plain) / n, (size(&a) - size(&b)) / n)
        };
        assert_eq!(per_element(sides, 100), (179, 18));
        // A union's (a pair's per-series side's) elements cross as side elements do;
        // as partials (a value list each) they took 7 bytes more.
        let union: Record = |to, t, instances| {
            let elements = SideElements {
                sides: vec![instances.map(|i| (labels(i), i as f64, true)).collect()],
                ..SideElements::default()
            };
            HostRecord::Partials((to, RuleId(1), t, Part::Elements(Ok(elements))))
        };
        assert_eq!(per_element(union, 100), (179, 18));
        let listed: Record = |to, t, instances| {
            let entries = instances.map(|i| (labels(i), vec![i as f64])).collect();
            HostRecord::Partials((to, RuleId(1), t, Part::Partials(Ok((entries, None)))))
        };
        assert_eq!(per_element(listed, 100), (186, 25));
    }

    /// A record referring to an entry no record of its time or before brought is the
    /// sender's contract broken: decoding it panics rather than guess.
    #[test]
    #[should_panic(expected = "never brought")]
    fn an_entry_never_brought_is_refused() {
        let mut sent = SentIds::default();
        // Brings instances 0 to 3; never received.
        coded(sides(3, 1_000, 0..4), 1_000, &mut sent);
        let (second, ..) = coded(sides(3, 16_000, 2..6), 16_000, &mut sent);
        let mut received = ReceivedLabels::default();
        // Only the later record, which refers to 2 and 3.
        decoded(&mut received, vec![crossed(&second)]);
    }

    /// A new period brings every label set again (and the receiver drops the periods
    /// its frontier has passed); a record of a time before an entry's first brings it
    /// again.
    #[test]
    fn a_new_period_and_an_earlier_time_bring_labels_again() {
        let mut sent = SentIds::default();
        assert_eq!(coded(sides(3, 1_000, 0..10), 1_000, &mut sent).2, 10);
        assert_eq!(coded(sides(3, 16_000, 0..10), 16_000, &mut sent).1, 10);
        // Instances 10 and 11 first at 31000; at 20000 they come whole again.
        let (_, refs, whole) = coded(sides(3, 31_000, 5..12), 31_000, &mut sent);
        assert_eq!((refs, whole), (5, 2));
        let (_, refs, whole) = coded(sides(3, 20_000, 9..12), 20_000, &mut sent);
        assert_eq!((refs, whole), (1, 2));
        let (late, refs, whole) = coded(sides(3, 700_000, 0..10), 700_000, &mut sent);
        assert_eq!((refs, whole), (0, 10));
        // A record of the period the dictionary has left: every label set whole.
        let (early, refs, whole) = coded(sides(3, 50_000, 0..10), 50_000, &mut sent);
        assert_eq!((refs, whole), (0, 10));
        let mut received = ReceivedLabels::default();
        for record in [&early, &late] {
            let back = decoded(&mut received, vec![crossed(record)]).pop().unwrap();
            let want = [&sides(3, 50_000, 0..10), &sides(3, 700_000, 0..10)];
            assert!(want.iter().any(|w| text(w) == text(&back)));
        }
        // The late record's sets crossed whole, without entries.
        assert_eq!(received.len(), 10);
        received.forget_before(id_epoch(700_000));
        assert_eq!(received.len(), 10);
        received.forget_before(id_epoch(700_000) + 1);
        assert!(received.is_empty());
    }

    /// Records of one time may use each other's entries whatever order they cross in;
    /// the records of several senders arrive in any order and are decoded by time.
    #[test]
    fn a_time_decodes_with_entries_from_any_of_its_records_and_senders() {
        // Two senders to one receiver: times 1000 and 16000, two records a time each.
        let mut senders = [SentIds::default(), SentIds::default()];
        let mut by_time: BTreeMap<u64, Vec<(HostRecord, HostRecord)>> = BTreeMap::new();
        for t in [1_000u64, 16_000] {
            for (s, sent) in senders.iter_mut().enumerate() {
                let s = s as u64;
                // The second record of a time uses what the first brings.
                for range in [s * 4..s * 4 + 6, s * 4 + 2..s * 4 + 8] {
                    let record = sides(3, t as i64, range);
                    let (c, ..) = coded_by(record.clone(), s as u32, t, sent);
                    by_time.entry(t).or_default().push((crossed(&c), record));
                }
            }
        }
        let HostRecord::Coded(inner, _) = &by_time[&1_000][1].0 else {
            unreachable!()
        };
        let mut carried = 0;
        inner
            .clone()
            .each_labels(&mut |l| carried += usize::from(!l.is_empty()));
        assert_eq!(carried, 2, "brings only what the first did not");
        let mut received = ReceivedLabels::default();
        // Each time's records in reverse of the order they were made; every entry of
        // a time is learned before any record of it is decoded.
        for (_, mut records) in by_time {
            records.reverse();
            let (arrived, want): (Vec<_>, Vec<_>) = records.into_iter().unzip();
            let back: Vec<String> = decoded(&mut received, arrived).iter().map(text).collect();
            assert_eq!(back, want.iter().map(text).collect::<Vec<_>>());
        }
    }

    /// The operator: records to this process pass uncoded; to another, coded by a
    /// dictionary per destination and epoch, kept while the frontier is in its epoch
    /// (a record of an earlier period after one of a later still finds its entries).
    #[test]
    fn records_to_other_processes_leave_coded_by_destination_and_epoch() {
        let counters: Arc<RuleCounters> = Default::default();
        let seen = counters.clone();
        let events = timely::execute_directly(move |worker| {
            let (mut early, mut late, captured) = worker.dataflow::<u64, _, _>(|scope| {
                let (early, a) = scope.new_input::<Vec<HostRecord>>();
                let (late, b) = scope.new_input::<Vec<HostRecord>>();
                // Process 0 of two, two workers each.
                let coded = code_for_peers(a.concat(b), 0, 0, 2, 4, seen.clone());
                (early, late, coded.capture())
            });
            early.advance_to(1_000);
            for to in 0..4 {
                early.send(sides(to, 1_000, 0..8));
            }
            early.advance_to(480_000);
            late.advance_to(700_000);
            for _ in 0..10 {
                worker.step();
            }
            late.send(sides(2, 700_000, 0..8));
            for _ in 0..10 {
                worker.step();
            }
            early.send(sides(2, 480_000, 0..8));
            drop((early, late));
            while worker.step() {}
            captured
        });
        let mut got: Vec<(u64, u64, bool)> = Vec::new();
        for event in events.try_iter() {
            if let Event::Messages(stamp, batch) = event {
                let t = *stamp.least().unwrap();
                for record in batch {
                    got.push((t, record.worker(), matches!(record, HostRecord::Coded(..))));
                }
            }
        }
        got.sort();
        assert_eq!(
            got,
            vec![
                (1_000, 0, false),
                (1_000, 1, false),
                (1_000, 2, true),
                (1_000, 3, true),
                (480_000, 2, true),
                (700_000, 2, true)
            ]
        );
        // 8 whole to each of workers 2 and 3 at 1000, 8 whole at 700000 (a new
        // period), 8 as hashes at 480000 (the first period's dictionary still held).
        assert_eq!(counters.labels_sent.load(Ordering::Relaxed), 24);
        assert_eq!(counters.label_refs.load(Ordering::Relaxed), 8);
    }
}
