//! Join nodes: a binary operation between two vectors, re-matched only in the match
//! groups with a changed side; and the same matching for a spread join's joiner
//! ([`SpreadJoin`], [`crate::render::spread`]), whose sides arrive whole and
//! unfinished at each evaluation, also for set operators (`and`, `or`, `unless`),
//! whose groups it keeps or drops whole; under an aggregation of partials
//! (`sum by (job) (a / on (instance) b)`), the aggregation's partials per group of the
//! joined elements, made again only for groups with a changed member.

use super::*;
use crate::promql::eval::binary::set_signature;
use crate::promql::eval::native::parse_handle;
use crate::sample::is_stale_marker;

/// Input keys filed under a group computed from their labels (an aggregation's
/// group, a join side's match group), and each key's group.
///
/// By hand, not a differential-dataflow arrangement of (group → members): a filing
/// changes only where a member comes, goes or changes labels, and is read per changed
/// member at each evaluation, the shape `dataflows/benches/arrangements.rs` measures
/// ("selector by series": a small value by series id) at 2.7–4.3× the map's cost per
/// lookup and 14–26× per member entering or leaving for the arrangement (4 runs,
/// 2026-12-07). Each rule files its own members: one rule's groups are not another's.
#[derive(Default)]
pub(super) struct Filing {
    /// The group of each input key, and the input labels it was computed from.
    pub(super) group_of: KeyMap<(Arc<Labels>, Key)>,
    /// Input keys by group, in label order (the reference's input order).
    pub(super) members: KeyMap<BTreeSet<Key>>,
    /// Groups with more than one member.
    pub(super) crowded: usize,
}

impl Filing {
    /// Files input key `key` (now labelled `input`, or gone) under its group
    /// `group_of(labels)`; marks the groups it left and joined dirty.
    pub(super) fn refile(
        &mut self,
        key: Key,
        input: Option<&Arc<Labels>>,
        group_of: impl Fn(&Labels) -> Labels,
        dirty: &mut KeySet,
    ) {
        if let (Some((labels, group)), Some(input)) = (self.group_of.get(&key), input) {
            if Arc::ptr_eq(labels, input) {
                // Same labels, same group: only its value changed.
                dirty.insert(group.clone());
                return;
            }
        }
        if let Some((_, group)) = self.group_of.remove(&key) {
            if let Some(keys) = self.members.get_mut(&group) {
                keys.remove(&key);
                if keys.len() == 1 {
                    self.crowded -= 1;
                }
                if keys.is_empty() {
                    self.members.remove(&group);
                }
            }
            dirty.insert(group);
        }
        if let Some(input) = input {
            let group = Key::new(Arc::new(group_of(input)));
            // One `Arc` per group.
            let group = match self.members.get_key_value(&group) {
                Some((g, _)) => g.clone(),
                None => group,
            };
            let keys = self.members.entry(group.clone()).or_default();
            keys.insert(key.clone());
            if keys.len() == 2 {
                self.crowded += 1;
            }
            self.group_of.insert(key, (input.clone(), group.clone()));
            dirty.insert(group);
        }
    }

    /// The members of `group`, in label order.
    pub(super) fn members(&self, group: &Key) -> impl Iterator<Item = &Key> {
        self.members.get(group).into_iter().flatten()
    }

    /// The one member of `group`, if it has exactly one.
    pub(super) fn single(&self, group: &Key) -> Option<&Key> {
        match self.members.get(group) {
            Some(keys) if keys.len() == 1 => keys.first(),
            _ => None,
        }
    }
}

/// A one-to-one vector/vector operation's sides filed by match group, and each
/// group's result labels: what a join node and a spread join's joiner share.
pub(super) struct Matcher {
    op: BinOp,
    matching: Matching,
    return_bool: bool,
    /// Left and right keys by match group.
    pub(super) sides: [Filing; 2],
    /// Per match group: the left labels its result labels were computed from, and
    /// those (one-to-one, they depend on the left labels only).
    result_labels: KeyMap<(Arc<Labels>, Arc<Labels>)>,
}

impl Matcher {
    pub(super) fn new(op: BinOp, matching: Matching, return_bool: bool) -> Matcher {
        Matcher {
            op,
            matching,
            return_bool,
            sides: Default::default(),
            result_labels: KeyMap::default(),
        }
    }

    /// Files key `key` of side `side` (0: left; now `input`, or gone) under its match
    /// group (a set operator's: without `__type__`/`__unit__`); marks the groups it
    /// left and joined dirty.
    pub(super) fn refile(
        &mut self,
        side: usize,
        key: Key,
        input: Option<&Element>,
        dirty: &mut KeySet,
    ) {
        let matching = &self.matching;
        let set = self.op.is_set();
        let signature = |l: &Labels| match set {
            true => Labels::from_pairs(set_signature(l, matching)),
            false => Labels::from_pairs(signature(l, matching)),
        };
        self.sides[side].refile(key, input.map(|e| &e.labels), signature, dirty);
    }

    /// Match group `sig`'s element, reading its left and right elements with `lhs` and
    /// `rhs`: `None` unless the group has exactly one element on each side and the
    /// operation keeps their match (a comparison without `bool` may drop it).
    pub(super) fn matched<'a>(
        &mut self,
        sig: &Key,
        lhs: impl Fn(&Key) -> Option<&'a Element>,
        rhs: impl Fn(&Key) -> Option<&'a Element>,
    ) -> Option<Element> {
        let pair = self.sides[0]
            .single(sig)
            .and_then(lhs)
            .zip(self.sides[1].single(sig).and_then(rhs));
        let Some((l, r)) = pair else {
            self.result_labels.remove(sig);
            return None;
        };
        let labels = match self.result_labels.get(sig) {
            Some((from, labels)) if Arc::ptr_eq(from, &l.labels) => labels.clone(),
            _ => {
                let labels = result_labels(
                    &l.labels,
                    &r.labels,
                    self.op,
                    &self.matching,
                    &[],
                    self.return_bool,
                );
                self.result_labels
                    .insert(sig.clone(), (l.labels.clone(), labels.clone()));
                labels
            }
        };
        matched_element(
            self.op,
            (l.value, r.value),
            labels,
            l.drop_name,
            self.return_bool,
        )
    }

    /// The result labels of match group `sig` as of its last [`Matcher::matched`]:
    /// `Some` while it has one element on each side (whether the operation keeps their
    /// match or not).
    pub(super) fn result_labels_of(&self, sig: &Key) -> Option<&Arc<Labels>> {
        self.result_labels.get(sig).map(|(_, labels)| labels)
    }

    /// Match groups with more than one element on a side, where the reference may
    /// answer with a matching error.
    pub(super) fn crowded(&self) -> usize {
        self.sides[0].crowded + self.sides[1].crowded
    }
}

pub(super) struct JoinNode {
    pub(super) lhs: Box<Node>,
    pub(super) rhs: Box<Node>,
    pub(super) matcher: Matcher,
    pub(super) out: Outputs,
}

impl JoinNode {
    pub(super) fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Key>> {
        let changed = [self.lhs.update(ctx)?, self.rhs.update(ctx)?];
        let mut dirty = KeySet::default();
        for (side, (mut keys, input)) in changed.into_iter().zip([&self.lhs, &self.rhs]).enumerate()
        {
            if ctx.rebuild {
                keys = every_key(input.out(), self.matcher.sides[side].group_of.keys());
            }
            for key in keys {
                let e = input.out().get(&key);
                self.matcher.refile(side, key, e, &mut dirty);
            }
        }
        let (lhs, rhs) = (self.lhs.out(), self.rhs.out());
        let mut changed = Vec::new();
        for sig in dirty {
            ctx.recomputed += 1;
            let element = self.matcher.matched(&sig, |k| lhs.get(k), |k| rhs.get(k));
            if self.out.set(&sig, element) {
                changed.push(sig);
            }
        }
        Ok(changed)
    }
}

/// A spread join's joiner state for one rule ([`crate::render::spread::join_sides`]):
/// the side elements of the match groups it joins as of its previous evaluation, by
/// labels (the same `Arc` skips their compare, another is compared once and replaced
/// by the held one; a record from another process brings the receiver's one `Arc` per
/// label set, sender and period with its hash, [`crate::render::dictionary`]), filed by
/// match group (`Filing`; a set operator's, without `__type__`/`__unit__`), and each
/// matched group's result labels and joined value, in label order (a set operator:
/// each group's kept elements). An evaluation receives every side element of its
/// groups again, as the reference holds it (a name pending removal still there); only
/// the groups with an element that came, left or changed value are re-matched, with
/// the join node's `Matcher` (a set operator: kept or dropped again), and the result
/// is finished as the reference finishes it, element by element.
pub struct SpreadJoin {
    matcher: Matcher,
    /// Per side, the elements held by labels, with the evaluation each was last
    /// received in.
    held: [KeyMap<(Element, u64)>; 2],
    /// Each match group with one element on each side: its result labels as the
    /// reference holds them (side elements arrive unfinished, as the reference holds
    /// them), whether the name is pending removal (the left element's; under a fold,
    /// not kept: false), those labels finished, and its joined value (`None`: a
    /// comparison dropped it).
    out: KeyMap<Joined>,
    /// The groups of `out` in their labels' order (with those labels), and whether two
    /// groups have one label set; `None`: to sort again (a group came, left, or changed
    /// labels; not when a comparison keeps or drops a group's match).
    order: Option<Order>,
    /// Evaluations so far.
    round: u64,
    /// A set operator's result: per match group, the side elements it keeps
    /// (`(side, held key)`, each side in label order).
    kept: KeyMap<Vec<(usize, Key)>>,
    /// A set operator's held elements' finished labels, per side, made once each is
    /// first kept.
    finished: [KeyMap<Arc<Labels>>; 2],
    /// A set operator's kept elements in their finished labels' order (with those
    /// labels), and whether two share them; `None`: to sort again (an element came
    /// into the result or left it).
    set_order: Option<SetOrder>,
    /// Under an aggregation of partials ([`SpreadJoin::fold`]): its groups and their
    /// partials.
    fold: Option<JoinFold>,
}

/// The partials of one group of an aggregation of a join's result, from its members'
/// values (in their match groups' label order): what a worker sends of a spread
/// aggregation ([`crate::render::spread::partials`]).
pub type PartialOf = Box<dyn Fn(&[f64]) -> Vec<f64>>;

/// An aggregation of partials over a spread join's result, kept by a joiner
/// ([`SpreadJoin::fold`]): the match groups whose joined element is kept (a comparison
/// may drop it), filed by the aggregation's group of their result labels (unfinished,
/// as the reference aggregates them), and each group's partials, made again only where
/// a member came, left or changed value.
struct JoinFold {
    grouping: Grouping,
    partial: PartialOf,
    /// Match groups by aggregation group.
    filing: Filing,
    /// Aggregation groups whose partials are to be made again.
    dirty: KeySet,
    /// Each aggregation group's partials.
    partials: KeyMap<Vec<f64>>,
    /// The groups of `partials` in label order; `None`: to sort again (a group came or
    /// left).
    order: Option<Vec<Key>>,
}

/// Kept elements `(finished labels, side, held key)` in label order, and whether two
/// share their labels.
type SetOrder = (Vec<(Arc<Labels>, usize, Key)>, bool);

/// A matched group's result labels, whether its name is pending removal, its finished
/// labels, and its joined value.
type Joined = (Arc<Labels>, bool, Arc<Labels>, Option<f64>);

/// Match groups in their elements' label order (with those labels), and whether two
/// groups have one label set.
type Order = (Vec<(Arc<Labels>, Key)>, bool);

impl SpreadJoin {
    /// The state of a joiner of `lhs op on/ignoring (…) rhs` (one-to-one, or a set
    /// operator).
    pub fn new(op: BinOp, matching: Matching, return_bool: bool) -> SpreadJoin {
        SpreadJoin {
            matcher: Matcher::new(op, matching, return_bool),
            held: Default::default(),
            out: KeyMap::default(),
            order: None,
            round: 0,
            kept: KeyMap::default(),
            finished: Default::default(),
            set_order: None,
            fold: None,
        }
    }

    /// The state of a joiner of a one-to-one join under an aggregation of partials
    /// (`sum by (job) (a / on (instance) b)`) with `grouping`, whose groups' partials
    /// `partial` makes from their members' values: see [`SpreadJoin::fold`]. (A set
    /// operator's joiner runs the reference.)
    pub fn with_fold(mut self, grouping: Grouping, partial: PartialOf) -> SpreadJoin {
        self.fold = Some(JoinFold {
            grouping,
            partial,
            filing: Filing::default(),
            dirty: KeySet::default(),
            partials: KeyMap::default(),
            order: None,
        });
        self
    }

    /// One evaluation over `elements`, `(side, labels key, value, name pending
    /// removal)` (side 0: left; the key's hash carried from the sender where the record
    /// brought it), every side element of this joiner's match groups as the reference
    /// holds it (unfinished): the joined elements, finished, in label order, exactly
    /// the reference's operation over these sides, finished; or `None` where it cannot
    /// vouch for that (a match group with two elements on a side, but for a set
    /// operator; two elements of a side with one label set, two result elements with
    /// one finished label set, a histogram or a stale marker) and the caller runs the
    /// reference. Either way the state is these sides after it.
    pub fn join(
        &mut self,
        elements: impl IntoIterator<Item = (usize, Key, f64, bool)>,
    ) -> Option<Vec<(Arc<Labels>, f64)>> {
        let (dirty, vouch) = self.receive(elements);
        if self.matcher.op.is_set() {
            return self.set_join(dirty, vouch);
        }
        self.rematch(dirty);
        let out = &self.out;
        let (order, duplicates) = self.order.get_or_insert_with(|| {
            let mut order: Vec<(Arc<Labels>, Key)> = out
                .iter()
                .map(|(sig, (_, _, finished, _))| (finished.clone(), sig.clone()))
                .collect();
            order.sort_by(|a, b| a.0.cmp(&b.0));
            let duplicates = order.windows(2).any(|w| w[0].0 == w[1].0);
            (order, duplicates)
        });
        if !vouch || *duplicates || self.matcher.crowded() > 0 {
            return None;
        }
        Some(
            (order.iter())
                .filter_map(|(labels, sig)| Some((labels.clone(), out[sig].3?)))
                .collect(),
        )
    }

    /// Whether it was made [`SpreadJoin::with_fold`].
    pub fn folds(&self) -> bool {
        self.fold.is_some()
    }

    /// [`SpreadJoin::join`] for a joiner made [`SpreadJoin::with_fold`] (a one-to-one
    /// join): the aggregation's partials over the joined elements, unfinished (names
    /// pending removal stay pending, as the reference aggregates them), one entry per
    /// group in label order; each group's made again only where a member (a match
    /// group's joined element) came, left or changed value, from its members' values
    /// in their match groups' label order. No duplicate check: the reference
    /// aggregates the join's result before it finishes (and checks) the whole. `None`
    /// where the state cannot vouch for the reference's join (a match group with two
    /// elements on a side, two elements of a side with one label set, a histogram or
    /// a stale marker); either way the state is these sides after it.
    pub fn fold(
        &mut self,
        elements: impl IntoIterator<Item = (usize, Key, f64, bool)>,
    ) -> Option<Vec<(Arc<Labels>, Vec<f64>)>> {
        let (dirty, vouch) = self.receive(elements);
        self.rematch(dirty);
        let out = &self.out;
        let fold = self.fold.as_mut()?;
        let mut values = Vec::new();
        for group in fold.dirty.drain() {
            values.clear();
            values.extend((fold.filing.members(&group)).filter_map(|sig| out.get(sig)?.3));
            if values.is_empty() {
                if fold.partials.remove(&group).is_some() {
                    fold.order = None;
                }
                continue;
            }
            if fold
                .partials
                .insert(group, (fold.partial)(&values))
                .is_none()
            {
                fold.order = None;
            }
        }
        if !vouch || self.matcher.crowded() > 0 {
            return None;
        }
        let partials = &fold.partials;
        let order = fold.order.get_or_insert_with(|| {
            let mut order: Vec<Key> = partials.keys().cloned().collect();
            order.sort();
            order
        });
        Some(
            (order.iter())
                .map(|group| (group.labels.clone(), partials[group].clone()))
                .collect(),
        )
    }

    /// Holds and files an evaluation's side elements (see [`SpreadJoin::join`]): the
    /// match groups with an element that came, left or changed value, and whether no
    /// side element keeps the state from vouching for the reference's result (two of
    /// a side with one label set, a histogram, a stale marker).
    fn receive(
        &mut self,
        elements: impl IntoIterator<Item = (usize, Key, f64, bool)>,
    ) -> (KeySet, bool) {
        self.round += 1;
        let round = self.round;
        let mut vouch = true;
        let mut dirty = KeySet::default();
        let mut received = [0usize; 2];
        for (side, key, value, drop_name) in elements {
            if value.is_nan() && (is_stale_marker(value) || parse_handle(value).is_some()) {
                vouch = false;
            }
            match self.held[side].get_mut(&key) {
                Some((_, seen)) if *seen == round => vouch = false,
                Some((e, seen)) => {
                    *seen = round;
                    received[side] += 1;
                    if e.value.to_bits() != value.to_bits() || e.drop_name != drop_name {
                        if e.drop_name != drop_name && self.finished[side].remove(&key).is_some() {
                            self.set_order = None;
                        }
                        e.value = value;
                        e.drop_name = drop_name;
                        // The held labels: their group is found without a compare.
                        let key = Key {
                            hash: key.hash,
                            labels: e.labels.clone(),
                        };
                        self.matcher.refile(side, key, Some(&*e), &mut dirty);
                    }
                }
                None => {
                    let e = Element {
                        labels: key.labels.clone(),
                        value,
                        drop_name,
                    };
                    self.matcher.refile(side, key.clone(), Some(&e), &mut dirty);
                    self.held[side].insert(key, (e, round));
                    received[side] += 1;
                }
            }
        }
        for (side, received) in received.into_iter().enumerate() {
            let held = &mut self.held[side];
            if received == held.len() {
                continue;
            }
            let gone: Vec<Key> = held
                .iter()
                .filter(|(_, (_, seen))| *seen != round)
                .map(|(key, _)| key.clone())
                .collect();
            for key in gone {
                held.remove(&key);
                self.finished[side].remove(&key);
                self.matcher.refile(side, key, None, &mut dirty);
            }
        }
        (dirty, vouch)
    }

    /// Matches the match groups in `dirty` again (a one-to-one join): their result
    /// labels and joined values in `out`, and, under a fold, the aggregation groups of
    /// those whose kept element came, left or changed.
    fn rematch(&mut self, dirty: KeySet) {
        let [lhs, rhs] = &self.held;
        for sig in dirty {
            let element = self.matcher.matched(
                &sig,
                |k| lhs.get(k).map(|(e, _)| e),
                |k| rhs.get(k).map(|(e, _)| e),
            );
            let value = element.map(|e| e.value);
            let labels = self.matcher.result_labels_of(&sig);
            if let Some(fold) = &mut self.fold {
                let grouping = &fold.grouping;
                let kept = labels.filter(|_| value.is_some());
                let group_of = |l: &Labels| group_labels(l, grouping);
                fold.filing
                    .refile(sig.clone(), kept, group_of, &mut fold.dirty);
            }
            // The left element's: whether the result's name is pending removal (not
            // under a fold, whose partials cross by group).
            let pending = self.fold.is_none()
                && (self.matcher.sides[0].single(&sig))
                    .and_then(|k| lhs.get(k))
                    .is_some_and(|(e, _)| e.drop_name);
            match labels {
                Some(labels) => {
                    if let Some((old, drop, _, v)) = self.out.get_mut(&sig) {
                        if Arc::ptr_eq(old, labels) && *drop == pending {
                            *v = value;
                            continue;
                        }
                    }
                    let finished = match pending {
                        true => drop_name(labels),
                        false => labels.clone(),
                    };
                    self.out
                        .insert(sig, (labels.clone(), pending, finished, value));
                    self.order = None;
                }
                None => {
                    if self.out.remove(&sig).is_some() {
                        self.order = None;
                    }
                }
            }
        }
    }

    /// The rest of [`SpreadJoin::join`] for a set operator, its elements held and
    /// filed, the groups in `dirty` changed: each changed group's kept elements again
    /// (`and`: the left's if the right has any; `unless`: if it has none; `or`: the
    /// left's, and the right's if the left has none; the reference's operation, group
    /// by group), then every kept element, finished, in label order, with its value as
    /// held; `None` where `vouch` is false or two share their finished labels.
    fn set_join(&mut self, dirty: KeySet, vouch: bool) -> Option<Vec<(Arc<Labels>, f64)>> {
        let [lhs, rhs] = &self.matcher.sides;
        for sig in dirty {
            let left = lhs.members(&sig).map(|k| (0, k.clone()));
            let right = rhs.members(&sig).map(|k| (1, k.clone()));
            let now: Vec<(usize, Key)> = match self.matcher.op {
                BinOp::And if rhs.members(&sig).next().is_some() => left.collect(),
                BinOp::Unless if rhs.members(&sig).next().is_none() => left.collect(),
                BinOp::Or if lhs.members(&sig).next().is_some() => left.collect(),
                BinOp::Or => right.collect(),
                _ => Vec::new(),
            };
            if self
                .kept
                .get(&sig)
                .map_or(now.is_empty(), |was| *was == now)
            {
                continue;
            }
            self.set_order = None;
            match now.is_empty() {
                true => self.kept.remove(&sig),
                false => self.kept.insert(sig, now),
            };
        }
        let (held, kept, finished) = (&self.held, &self.kept, &mut self.finished);
        let (order, duplicates) = self.set_order.get_or_insert_with(|| {
            let mut order: Vec<(Arc<Labels>, usize, Key)> = (kept.values().flatten())
                .map(|(side, key)| {
                    let labels = finished[*side].entry(key.clone()).or_insert_with(|| {
                        match held[*side].get(key) {
                            Some((e, _)) if e.drop_name => drop_name(&e.labels),
                            _ => key.labels.clone(),
                        }
                    });
                    (labels.clone(), *side, key.clone())
                })
                .collect();
            order.sort_by(|a, b| a.0.cmp(&b.0));
            let duplicates = order.windows(2).any(|w| w[0].0 == w[1].0);
            (order, duplicates)
        });
        if !vouch || *duplicates {
            return None;
        }
        Some(
            (order.iter())
                .filter_map(|(labels, side, key)| {
                    Some((labels.clone(), held[*side].get(key)?.0.value))
                })
                .collect(),
        )
    }
}
