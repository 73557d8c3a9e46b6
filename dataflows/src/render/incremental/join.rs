//! Join nodes: a binary operation between two vectors, re-matched only in the match
//! groups with a changed side.

use super::*;

/// Input keys filed under a group computed from their labels (an aggregation's
/// group, a join side's match group), and each key's group.
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
    /// Files input key `key` (now `input`, or gone) under its group `group_of(labels)`;
    /// marks the groups it left and joined dirty.
    pub(super) fn refile(
        &mut self,
        key: Key,
        input: Option<&Element>,
        group_of: impl Fn(&Labels) -> Labels,
        dirty: &mut KeySet,
    ) {
        if let (Some((labels, group)), Some(e)) = (self.group_of.get(&key), input) {
            if Arc::ptr_eq(labels, &e.labels) {
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
        if let Some(e) = input {
            let group = Key::new(Arc::new(group_of(&e.labels)));
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
            self.group_of.insert(key, (e.labels.clone(), group.clone()));
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

pub(super) struct JoinNode {
    pub(super) lhs: Box<Node>,
    pub(super) rhs: Box<Node>,
    pub(super) op: BinOp,
    pub(super) matching: Matching,
    pub(super) return_bool: bool,
    /// Left and right keys by match group.
    pub(super) sides: [Filing; 2],
    /// Per match group: the left labels its result labels were computed from, and
    /// those (one-to-one, they depend on the left labels only).
    pub(super) result_labels: KeyMap<(Arc<Labels>, Arc<Labels>)>,
    pub(super) out: Outputs,
}

impl JoinNode {
    pub(super) fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Key>> {
        let changed = [self.lhs.update(ctx)?, self.rhs.update(ctx)?];
        let mut dirty = KeySet::default();
        for ((mut keys, input), side) in changed
            .into_iter()
            .zip([&self.lhs, &self.rhs])
            .zip(&mut self.sides)
        {
            if ctx.rebuild {
                keys = every_key(input.out(), side.group_of.keys());
            }
            let signature = |l: &Labels| Labels::from_pairs(signature(l, &self.matching));
            for key in keys {
                let e = input.out().get(&key);
                side.refile(key, e, signature, &mut dirty);
            }
        }
        let mut changed = Vec::new();
        for sig in dirty {
            ctx.recomputed += 1;
            let pair = self.sides[0]
                .single(&sig)
                .and_then(|l| self.lhs.out().get(l))
                .zip(
                    self.sides[1]
                        .single(&sig)
                        .and_then(|r| self.rhs.out().get(r)),
                );
            let element = pair.and_then(|(l, r)| {
                let labels = match self.result_labels.get(&sig) {
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
            });
            if pair.is_none() {
                self.result_labels.remove(&sig);
            }
            if self.out.set(&sig, element) {
                changed.push(sig);
            }
        }
        Ok(changed)
    }
}
