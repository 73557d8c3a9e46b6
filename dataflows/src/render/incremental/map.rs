//! Map nodes: an element-wise operation applied again only to the keys whose input
//! changed.

use super::*;

pub(super) struct MapNode {
    pub(super) input: Box<Node>,
    pub(super) plan: Plan,
    /// The operation as a [`Step`], when it is one.
    pub(super) step: Option<Step>,
    pub(super) writes_name: bool,
    pub(super) out: Outputs,
}

impl MapNode {
    pub(super) fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Key>> {
        let mut keys = self.input.update(ctx)?;
        if ctx.rebuild {
            keys = every_key(self.input.out(), self.out.elements.keys());
        }
        let mut changed = Vec::new();
        for key in keys {
            ctx.recomputed += 1;
            let inputs = self.input.out();
            // A step is float arithmetic: a histogram goes through the evaluator.
            let step = self.step.filter(|_| {
                inputs.histograms.is_empty()
                    || inputs
                        .get(&key)
                        .is_none_or(|e| inputs.histogram(e.value).is_none())
            });
            let element = match (inputs.get(&key), step) {
                (None, _) => None,
                (Some(input), Some(step)) => step.apply(input.clone()),
                (Some(input), None) => {
                    let source = Elements {
                        elements: vec![input],
                        t: ctx.t,
                        histograms: &inputs.histograms,
                    };
                    let ev = ctx.settings.evaluator(&source, ctx.t);
                    match ev.eval(&self.plan, ctx.t)? {
                        Value::Vector(v) => v.into_iter().next().map(|mut e| {
                            // The hole's element had no pending removal: carry the input's.
                            e.drop_name |= input.drop_name && !self.writes_name;
                            self.out.adopt(&ev, e)
                        }),
                        _ => None,
                    }
                }
            };
            if self.out.set(&key, element) {
                changed.push(key);
            }
        }
        Ok(changed)
    }
}
