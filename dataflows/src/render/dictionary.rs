//! Label sets crossing processes in the rule hosts' records, each once per sending
//! worker, receiving worker and period (issue 14: "the exchange carries series ids and
//! values; a label set crosses to a peer once").
//!
//! The records of spread rules and of owned rules evaluated away from their home
//! ([`HostRecord`]: a join's side elements, a joiner's joined elements, partials,
//! picks, gathers, unions, group labels, whole [`crate::render::RuleOutput`]s) carry a
//! label set per element. To a worker of this process they pass as values (timely
//! hands them over unserialized: the `Arc`s pass through, nothing here runs). To a
//! worker of another process they cross serialized, and the same label sets cross at
//! every evaluation; so [`code_for_peers`] codes them first, with one dictionary per
//! (this worker, destination worker) and [`ANNOUNCE_PERIOD_MS`] period
//! ([`id_epoch`]): the series-id dictionary's own [`SentIds`], by [`Labels::hash`].
//! A coded record ([`HostRecord::Coded`], [`CodedLabels`]) carries per label slot
//! ([`LabelSlots`], visited in one order on both ends) the hash, and keeps the label
//! set itself only where it brings its entry: the first record, by logical time, to
//! use it for that destination in the period (or a record of a period the dictionary
//! has left, or beyond a full dictionary); every other slot crosses as the empty set.
//! An empty label set (`sum(x)`'s group) stays as it is.
//!
//! The receiving operator ([`ReceivedLabels`]: `join_sides` for the rule hosts'
//! records, `combine_partials` for the joiners') relies on logical time only, not on
//! the order messages arrive in: it learns every entry of a time's records before it
//! decodes any of them, times in order (an entry comes in a record of a time not after
//! any record using it), and drops a period's table once its frontier has passed the
//! period. A decoded label set is the receiver's one `Arc` per hash and period, so a
//! joiner holding it from the previous evaluation matches it by pointer, and the hash
//! the record carries spares it hashing the set again.

use crate::labels::Labels;
use crate::render::route::id_epoch;
#[cfg(doc)]
use crate::render::route::ANNOUNCE_PERIOD_MS;
use crate::render::rule::RuleCounters;
use crate::render::spread::HostRecord;
use crate::render::window::KeyMap;
use crate::sample::SentIds;
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

/// The empty label set: what a slot whose entry the receiver has crosses as.
static EMPTY: LazyLock<(Arc<Labels>, u64)> = LazyLock::new(|| {
    let empty = Labels::default();
    let hash = empty.hash();
    (Arc::new(empty), hash)
});

/// How a record's label sets are coded ([`code_labels`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CodedLabels {
    /// The dictionary's epoch ([`id_epoch`] of the record's time, or the earlier
    /// epoch of a late record, whose slots all bring their labels).
    pub epoch: u64,
    /// Per slot, in [`LabelSlots`] order: its labels' [`Labels::hash`].
    pub hashes: Vec<u64>,
}

/// Codes the label sets of `record`, of logical time `time`, for a worker of another
/// process, by `sent`, this worker's dictionary for that worker (moved on to the
/// record's epoch if that is later): a slot whose label set the dictionary had
/// brought at a time not after `time` crosses as the empty set, every other keeps its
/// labels (its entry). Returns the coding, the slots that crossed as references and
/// those that carried their labels.
pub fn code_labels(
    record: &mut impl LabelSlots,
    time: u64,
    sent: &mut SentIds,
) -> (CodedLabels, usize, usize) {
    let epoch = id_epoch(time);
    sent.advance_to(epoch);
    let coding = sent.epoch() == Some(epoch);
    let (empty, empty_hash) = &*EMPTY;
    let mut hashes = Vec::new();
    let (mut refs, mut whole) = (0, 0);
    record.each_labels(&mut |labels| {
        if labels.is_empty() {
            hashes.push(*empty_hash);
            return;
        }
        let hash = labels.hash();
        hashes.push(hash);
        match coding.then(|| sent.code(hash, time)).flatten() {
            Some((_, false)) => {
                *labels = empty.clone();
                refs += 1;
            }
            _ => whole += 1,
        }
    });
    (CodedLabels { epoch, hashes }, refs, whole)
}

/// The label sets the workers of other processes have sent this one in coded records
/// ([`code_labels`] at their end), by epoch and hash: fed every coded record of a time
/// ([`ReceivedLabels::learn`]) before any of them is decoded
/// ([`ReceivedLabels::decode`]), times in order.
#[derive(Default)]
pub struct ReceivedLabels {
    tables: BTreeMap<u64, KeyMap<u64, Arc<Labels>>>,
}

impl ReceivedLabels {
    /// Takes the entries (the label sets it carries) of `record`, coded as `coded`.
    pub fn learn(&mut self, record: &mut impl LabelSlots, coded: &CodedLabels) {
        let table = self.tables.entry(coded.epoch).or_default();
        let mut hashes = coded.hashes.iter();
        record.each_labels(&mut |labels| {
            let hash = *hashes.next().expect("a hash per label slot");
            if !labels.is_empty() {
                table.entry(hash).or_insert_with(|| labels.clone());
            }
        });
    }

    /// Gives `record` its label sets back: each slot the receiver's `Arc` of its hash
    /// (the same one every time in a period). Panics on a hash no record has brought
    /// (the sender's contract broken).
    pub fn decode(&self, record: &mut impl LabelSlots, coded: &CodedLabels) {
        let table = self.tables.get(&coded.epoch);
        let empty_hash = EMPTY.1;
        let mut hashes = coded.hashes.iter();
        record.each_labels(&mut |labels| {
            let hash = *hashes.next().expect("a hash per label slot");
            if hash == empty_hash {
                return;
            }
            match table.and_then(|t| t.get(&hash)) {
                Some(known) => *labels = known.clone(),
                None if !labels.is_empty() => {}
                None => panic!("label set {hash:#x} of epoch {} never brought", coded.epoch),
            }
        });
    }

    /// Drops the tables of epochs before `epoch`.
    pub fn forget_before(&mut self, epoch: u64) {
        while let Some(entry) = self.tables.first_entry().filter(|e| *e.key() < epoch) {
            entry.remove();
        }
    }

    /// The number of label sets held, over every epoch.
    pub fn len(&self) -> usize {
        self.tables.values().map(|t| t.len()).sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(|t| t.is_empty())
    }
}

/// Takes the entries of one time's records (every coded one of them) and decodes
/// them: the records as they were sent, each with its labels' hashes (`None` for a
/// record that crossed uncoded).
pub fn decode_time(
    received: &mut ReceivedLabels,
    mut records: Vec<HostRecord>,
) -> Vec<(HostRecord, Option<Vec<u64>>)> {
    for record in &mut records {
        if let HostRecord::Coded(inner, coded) = record {
            received.learn(&mut **inner, coded);
        }
    }
    records
        .into_iter()
        .map(|record| match record {
            HostRecord::Coded(mut inner, coded) => {
                received.decode(&mut *inner, &coded);
                (*inner, Some(coded.hashes))
            }
            other => (other, None),
        })
        .collect()
}

/// In a timely cluster: codes the label sets of the records going to workers of other
/// processes ([`code_labels`]: one dictionary per destination worker and epoch,
/// [`id_epoch`] of the record's time), wrapping each in a [`HostRecord::Coded`];
/// records to workers of this process pass as they are. The records of one
/// activation may come in any time order (a rule host makes every evaluation its
/// frontier made ready, rule by rule), so the dictionaries of every epoch from its
/// input frontier's on are kept, and those of the epochs it has passed dropped.
/// `process` is this worker's process, `process_workers` the workers per process,
/// `peers` all workers. Counts references and label sets sent whole in `counters`.
pub fn code_for_peers<'scope>(
    records: Stream<'scope, u64, Vec<HostRecord>>,
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
                            let (coded, r, w) =
                                code_labels(&mut record, t, &mut dictionaries[to as usize]);
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
