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
            let element = match (self.input.out().get(&key), self.step) {
                (None, _) => None,
                (Some(input), Some(step)) => step.apply(input.clone()),
                (Some(input), None) => {
                    let source = Elements {
                        elements: vec![input],
                        t: ctx.t,
                    };
                    match ctx
                        .settings
                        .evaluator(&source, ctx.t)
                        .eval(&self.plan, ctx.t)?
                    {
                        Value::Vector(v) => v.into_iter().next().map(|mut e| {
                            // The hole's element had no pending removal: carry the input's.
                            e.drop_name |= input.drop_name && !self.writes_name;
                            e
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
