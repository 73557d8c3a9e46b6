//! Group nodes: an aggregation re-reduced only for the groups a member of which
//! changed.

use super::*;

pub(super) struct GroupNode {
    pub(super) input: Box<Node>,
    pub(super) op: AggOp,
    /// The constant parameter (φ of `quantile`), if it has one.
    pub(super) param: Option<f64>,
    pub(super) grouping: Grouping,
    /// Input keys by group.
    pub(super) filing: Filing,
    pub(super) out: Outputs,
}

impl GroupNode {
    pub(super) fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Key>> {
        let mut keys = self.input.update(ctx)?;
        if ctx.rebuild {
            keys = every_key(self.input.out(), self.filing.group_of.keys());
        }
        let mut dirty = KeySet::default();
        let grouping = &self.grouping;
        for key in keys {
            let input = self.input.out().get(&key);
            self.filing.refile(
                key,
                input.map(|e| &e.labels),
                |l| group_labels(l, grouping),
                &mut dirty,
            );
        }
        let mut changed = Vec::new();
        let mut values = Vec::new();
        let inputs = self.input.out();
        // Resolves the members' histograms, and keeps the groups' until adopted.
        let kept = Kept(&inputs.histograms);
        let native = (!inputs.histograms.is_empty()).then(|| ctx.settings.evaluator(&kept, ctx.t));
        for group in dirty {
            ctx.recomputed += 1;
            values.clear();
            let mut drop_name = false;
            let mut histograms = false;
            for e in self.filing.members(&group).filter_map(|k| inputs.get(k)) {
                values.push(e.value);
                drop_name |= e.drop_name;
                histograms |= native.is_some() && inputs.histogram(e.value).is_some();
            }
            let param = self.param.unwrap_or(0.0);
            let element = match &native {
                _ if values.is_empty() => None,
                Some(ev) if histograms => {
                    // The reference's own aggregation of a group holding histograms.
                    let members: Vec<Element> = self
                        .filing
                        .members(&group)
                        .filter_map(|k| inputs.get(k).cloned())
                        .collect();
                    group_value(ev, self.op, &members, param).map(|value| {
                        let e = Element {
                            labels: group.labels.clone(),
                            value,
                            drop_name,
                        };
                        self.out.adopt(ev, e)
                    })
                }
                _ => {
                    let value = reduce(self.op, &values, param).ok_or_else(|| {
                        EvalError::Unsupported(format!(
                            "{:?} is not one element per group",
                            self.op
                        ))
                    })?;
                    Some(Element {
                        labels: group.labels.clone(),
                        value,
                        drop_name,
                    })
                }
            };
            if self.out.set(&group, element) {
                changed.push(group);
            }
        }
        Ok(changed)
    }
}
