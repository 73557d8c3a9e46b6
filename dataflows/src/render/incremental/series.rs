//! Per-series nodes: an element per input series, recomputed when a sample enters
//! or leaves that series' window (see the parent module), evaluated by a
//! [`SeriesKernel`] or by the reference evaluator over that one series.

use super::*;
use crate::sample::is_stale_marker;

/// No series at all (for evaluating constants).
pub(super) struct NoSeries;

impl SeriesSource for NoSeries {
    fn select(&self, _matchers: &Selector, _start_ms: i64, _end_ms: i64) -> Selected {
        Vec::new()
    }
}

/// The value of a constant plan (a number, or arithmetic on numbers).
pub(super) fn constant_value(plan: &Plan) -> Option<f64> {
    if !constant(plan) {
        return None;
    }
    Evaluator::new(&NoSeries, 0).scalar(plan, 0).ok()
}

/// One element-wise operation with constant operands, as the reference applies it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
    /// `-x`.
    Neg,
    /// `x op s`, or `s op x` when `swap`.
    Scalar {
        op: BinOp,
        s: f64,
        swap: bool,
        return_bool: bool,
    },
    /// `abs(x)`, `sqrt(x)`, … ([`math::unary`]).
    Unary(fn(f64) -> f64),
}

impl Step {
    /// The step `plan` applies to its element-wise operand, if it is one of these.
    pub(crate) fn of(plan: &Plan) -> Option<Step> {
        match plan {
            Plan::Neg(_) => Some(Step::Neg),
            Plan::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                ..
            } if !op.is_set() => {
                let (s, swap) = match constant_value(rhs) {
                    Some(s) => (s, false),
                    None => (constant_value(lhs)?, true),
                };
                Some(Step::Scalar {
                    op: *op,
                    s,
                    swap,
                    return_bool: *return_bool,
                })
            }
            Plan::Call { func, args } if args.len() == 1 => math::unary(func).map(Step::Unary),
            _ => None,
        }
    }

    /// The step applied to `e`; `None`: a comparison filtered it out.
    pub(crate) fn apply(&self, e: Element) -> Option<Element> {
        match *self {
            Step::Neg => Some(Element::name_dropped(e.labels, -e.value)),
            Step::Scalar {
                op,
                s,
                swap,
                return_bool,
            } => scalar_element(op, e, s, swap, return_bool),
            Step::Unary(f) => Some(Element::name_dropped(e.labels, f(e.value))),
        }
    }
}

/// What a per-series plan reads from its series' window at `t`.
#[derive(Clone, Debug)]
pub(super) enum Read {
    /// An instant selector: the newest sample within the lookback delta.
    Instant { offset_ms: i64 },
    /// A range function of a range selector without modifier.
    Range {
        func: &'static str,
        offset_ms: i64,
        range_ms: i64,
        params: RangeParams,
    },
}

/// A per-series plan as the reference evaluator's per-series functions applied to the
/// retained slice of one series: a [`Read`], then element-wise [`Step`]s.
#[derive(Clone, Debug)]
pub(super) struct SeriesKernel {
    pub(super) read: Read,
    /// Innermost first.
    pub(super) steps: Vec<Step>,
}

impl SeriesKernel {
    /// The kernel of `plan`, or `None` when only the evaluator handles it.
    pub(super) fn of(plan: &Plan) -> Option<SeriesKernel> {
        let read = match plan {
            Plan::Vector(sel) if sel.at.is_none() && sel.modifier.is_none() => Read::Instant {
                offset_ms: sel.offset_ms,
            },
            Plan::Call { func, args } if per_series_range_function(func) => {
                // Where the reference takes the range argument and the scalars from.
                let (matrix, param, smoothing) = match *func {
                    "quantile_over_time" => (1, Some(0), None),
                    "predict_linear" => (0, Some(1), None),
                    "double_exponential_smoothing" => (0, None, Some((1, 2))),
                    _ => (0, None, None),
                };
                let arity = 1 + usize::from(param.is_some()) + 2 * usize::from(smoothing.is_some());
                if args.len() != arity {
                    return None;
                }
                let Plan::Matrix { sel, range_ms } = &args[matrix] else {
                    return None;
                };
                if sel.at.is_some() || sel.modifier.is_some() {
                    return None;
                }
                let mut params = RangeParams::default();
                if let Some(i) = param {
                    params.param = constant_value(&args[i])?;
                }
                if let Some((sf, tf)) = smoothing {
                    params.sf = constant_value(&args[sf])?;
                    params.tf = constant_value(&args[tf])?;
                }
                Read::Range {
                    func,
                    offset_ms: sel.offset_ms,
                    range_ms: *range_ms,
                    params,
                }
            }
            _ => {
                let (operand, _) = element_wise(plan)?;
                let mut kernel = SeriesKernel::of(operand)?;
                kernel.steps.push(Step::of(plan)?);
                return Some(kernel);
            }
        };
        Some(SeriesKernel {
            read,
            steps: Vec::new(),
        })
    }

    /// The element of the series `labels` whose retained samples are `points` (start
    /// timestamps `starts`, see [`Window::start_times`]), at `t`. `native`: an
    /// evaluator resolving the window's histograms, when it may hold any (a range
    /// function then runs as the reference's [`window_value`], histograms included).
    ///
    /// [`Window::start_times`]: crate::render::window::Window::start_times
    pub(super) fn element(
        &self,
        labels: &Arc<Labels>,
        points: &[(i64, f64)],
        starts: &[(i64, i64)],
        t: i64,
        lookback_ms: i64,
        native: Option<&Evaluator<'_>>,
    ) -> EvalResult<Option<Element>> {
        let mut element = match &self.read {
            Read::Instant { offset_ms } => latest_in_lookback(points, t - offset_ms, lookback_ms)
                .map(|(_, v)| Element::new(labels.clone(), v)),
            Read::Range {
                func,
                offset_ms,
                range_ms,
                params,
            } => {
                let end = t - offset_ms;
                let window = range_window(points, end - range_ms, end);
                if window.is_empty() {
                    return Ok(None);
                }
                let arg = RangeArg {
                    series: Vec::new(),
                    window_end: end,
                    range_ms: *range_ms,
                    modifier: None,
                };
                match native {
                    Some(ev) => {
                        window_value(ev, func, &window, starts, &arg, t, *params, labels, false)?
                    }
                    None => range_kernel(func, &window, starts, &arg, t, *params)?,
                }
                .map(|v| range_element(func, labels.clone(), v))
            }
        };
        for step in &self.steps {
            element = match element {
                Some(e) => step.apply(e),
                None => return Ok(None),
            };
        }
        Ok(element)
    }
}

/// One series' window as a source: every `select` answers with this series; its
/// histograms are the store's.
pub(super) struct OneSeries<'a> {
    pub(super) labels: &'a Arc<Labels>,
    pub(super) points: &'a [(i64, f64)],
    pub(super) starts: &'a [(i64, i64)],
    pub(super) store: &'a WindowStore,
}

impl SeriesSource for OneSeries<'_> {
    fn select(&self, _matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        let points = within(self.points, start_ms, end_ms);
        if points.is_empty() {
            return Vec::new();
        }
        vec![(self.labels.clone(), points.to_vec())]
    }

    fn start_times(
        &self,
        _matchers: &Selector,
        _labels: &Labels,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(i64, i64)> {
        let lo = self.starts.partition_point(|s| s.0 < start_ms);
        let hi = self.starts.partition_point(|s| s.0 <= end_ms).max(lo);
        self.starts[lo..hi].to_vec()
    }

    fn histogram(&self, index: u32) -> Option<Arc<FloatHistogram>> {
        self.store.histogram(index)
    }
}

/// Elements as a source for a node's [`crate::render::shape::hole`]: each is a series
/// with one sample at the evaluation time; their histograms are `histograms`' (the
/// outputs they are elements of), which [`Kept`] resolves on its own.
pub(super) struct Elements<'a> {
    pub(super) elements: Vec<&'a Element>,
    pub(super) t: i64,
    pub(super) histograms: &'a HistogramSlots,
}

/// A node's outputs' histograms as a source holding no series: an evaluator over it
/// resolves the handles of the node's elements.
pub(super) struct Kept<'a>(pub(super) &'a HistogramSlots);

impl SeriesSource for Kept<'_> {
    fn select(&self, _matchers: &Selector, _start_ms: i64, _end_ms: i64) -> Selected {
        Vec::new()
    }

    fn histogram(&self, index: u32) -> Option<Arc<FloatHistogram>> {
        self.0.get(index)
    }
}

impl SeriesSource for Elements<'_> {
    fn select(&self, _matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        if self.t < start_ms || self.t > end_ms {
            return Vec::new();
        }
        self.elements
            .iter()
            .map(|e| (e.labels.clone(), vec![(self.t, e.value)]))
            .collect()
    }

    fn histogram(&self, index: u32) -> Option<Arc<FloatHistogram>> {
        self.histograms.get(index)
    }
}

pub(super) struct PerSeriesNode {
    pub(super) plan: Plan,
    /// The plan as per-series kernels, when it has that form.
    pub(super) kernel: Option<SeriesKernel>,
    pub(super) key: String,
    pub(super) back: i64,
    pub(super) fwd: i64,
    pub(super) latest_only: bool,
    pub(super) time_dependent: bool,
    /// The earliest time each series must be recomputed at (absent: only on arrival).
    pub(super) wake: KeyMap<i64>,
    /// `wake`, by time (entries may be stale: `wake` decides).
    pub(super) agenda: BTreeMap<i64, Vec<Key>>,
    /// `wake` of series whose sample arrived, in arrival order: nearly all are due at
    /// the next evaluation, so they are put in the agenda only if they are not
    /// (scheduling each arriving sample for each rule, the ordered insert included,
    /// was about a sixth of the rules' CPU in a profile of the compare bench's
    /// interval rules; not measured on its own since).
    pub(super) arrivals: Vec<(i64, Key)>,
    /// On arrival, for a `t`-dependent plan: the newest sample's time each element was
    /// computed at. The element is a function of that sample alone (what precedes it
    /// in the series does not change), so it is kept while the newest sample is the
    /// same, as when a staleness marker follows it: recomputing it then would read
    /// back from a sample older than the window, which retirement need not hold.
    pub(super) computed_at: KeyMap<i64>,
    pub(super) out: Outputs,
}

impl PerSeriesNode {
    /// A sample of series `key` arrived: it is due at `at`.
    pub(super) fn arrived(&mut self, key: &Key, at: i64) {
        match self.wake.get_mut(key) {
            Some(wake) if at >= *wake => return,
            Some(wake) => *wake = at,
            None => {
                self.wake.insert(key.clone(), at);
            }
        }
        self.arrivals.push((at, key.clone()));
    }

    /// Moves the arrivals into the agenda.
    fn file_arrivals(&mut self) {
        for (at, key) in self.arrivals.drain(..) {
            self.agenda.entry(at).or_default().push(key);
        }
    }

    pub(super) fn schedule(&mut self, key: &Key, at: i64) {
        match self.wake.get_mut(key) {
            Some(wake) if at >= *wake => return,
            Some(wake) => *wake = at,
            None => {
                self.wake.insert(key.clone(), at);
            }
        }
        self.agenda.entry(at).or_default().push(key.clone());
    }

    pub(super) fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Key>> {
        let t = ctx.t;
        let mut due: Vec<Key> = Vec::new();
        if ctx.rebuild {
            self.agenda.clear();
            self.arrivals.clear();
            self.wake.clear();
            self.computed_at.clear();
            let mut all: BTreeSet<Key> = ctx.store.series(&self.key).map(|(k, _)| k).collect();
            all.extend(self.out.elements.keys().cloned());
            due.extend(all);
        } else {
            for (at, key) in std::mem::take(&mut self.arrivals) {
                match self.wake.get_mut(&key) {
                    _ if at > t => self.agenda.entry(at).or_default().push(key),
                    Some(wake) if *wake <= t => {
                        // Taken now: later agenda entries of the key are stale.
                        *wake = i64::MAX;
                        due.push(key);
                    }
                    _ => {}
                }
            }
            while let Some(entry) = self.agenda.first_entry() {
                if *entry.key() > t {
                    break;
                }
                for key in entry.remove() {
                    if let Some(wake) = self.wake.get_mut(&key) {
                        if *wake <= t {
                            // Rescheduled (or removed) below.
                            *wake = i64::MAX;
                            due.push(key);
                        }
                    }
                }
            }
        }
        let window = ctx.store.window(&self.key);
        let histograms = ctx.store.holds_histograms(&self.key);
        let at_newest = self.time_dependent && ctx.settings.at_newest;
        let mut changed = Vec::new();
        for key in due {
            let points = window.map_or(&[][..], |w| w.points(&key));
            let starts = window.map_or(&[][..], |w| w.start_times(&key));
            let next = self.next_change(points, t, at_newest);
            if next != i64::MAX {
                self.schedule(&key, next);
            } else {
                self.wake.remove(&key);
            }
            // On arrival, a `t`-dependent plan is evaluated at the time its newest
            // sample entered the window (that sample is then the window's last).
            let at = if at_newest {
                let newest = self.newest(points, t).map(|(ts, _)| *ts);
                if newest.is_some() && self.computed_at.get(&key) == newest.as_ref() {
                    continue;
                }
                match newest {
                    Some(n) => self.computed_at.insert(key.clone(), n),
                    None => self.computed_at.remove(&key),
                };
                newest.map(|n| n.saturating_sub(self.fwd))
            } else {
                Some(t)
            };
            ctx.recomputed += 1;
            let element = match at {
                Some(at) => self.element(&key, points, starts, at, ctx, histograms)?,
                None => None,
            };
            if self.out.set(&key, element) {
                changed.push(key);
            }
        }
        Ok(changed)
    }

    /// The element of series `key` (samples `points`, start timestamps `starts`) at `t`;
    /// `histograms`: its window may hold native histograms (a histogram element is
    /// kept in [`Self::out`]).
    fn element(
        &mut self,
        key: &Key,
        points: &[(i64, f64)],
        starts: &[(i64, i64)],
        t: i64,
        ctx: &Ctx<'_>,
        histograms: bool,
    ) -> EvalResult<Option<Element>> {
        let settings = ctx.settings;
        let source = OneSeries {
            labels: &key.labels,
            points,
            starts,
            store: ctx.store,
        };
        if !histograms {
            if let Some(kernel) = &self.kernel {
                return kernel.element(&key.labels, points, starts, t, settings.lookback_ms, None);
            }
        }
        let ev = settings.evaluator(&source, t);
        // Element-wise steps are float arithmetic: after a histogram, the evaluator.
        let element = match &self.kernel {
            Some(k) if k.steps.is_empty() => k.element(
                &key.labels,
                points,
                starts,
                t,
                settings.lookback_ms,
                Some(&ev),
            )?,
            _ => match ev.eval(&self.plan, t)? {
                Value::Vector(v) => v.into_iter().next(),
                _ => None,
            },
        };
        Ok(element.map(|e| self.out.adopt(&ev, e)))
    }

    /// The newest sample (not a staleness marker) in what an evaluation at `t` reads.
    fn newest<'p>(&self, points: &'p [(i64, f64)], t: i64) -> Option<&'p (i64, f64)> {
        within(
            points,
            t.saturating_sub(self.back),
            t.saturating_add(self.fwd),
        )
        .iter()
        .rev()
        .find(|p| !is_stale_marker(p.1))
    }

    /// Whether a key of this node is due at or before `t` (what [`Self::update`] at
    /// `t` would recompute, a rebuild aside).
    pub(super) fn due_by(&self, t: i64) -> bool {
        let waiting = |key: &Key| self.wake.get(key).is_some_and(|w| *w <= t);
        self.arrivals
            .iter()
            .any(|(at, key)| *at <= t && waiting(key))
            || self
                .agenda
                .range(..=t)
                .any(|(_, keys)| keys.iter().any(waiting))
    }

    /// The earliest time at which a key of this node is due, dropping agenda entries
    /// no key waits for any more.
    pub(super) fn next_wake(&mut self) -> Option<i64> {
        self.file_arrivals();
        loop {
            let entry = self.agenda.first_entry()?;
            let at = *entry.key();
            if entry.get().iter().any(|k| self.wake.get(k) == Some(&at)) {
                return Some(at);
            }
            entry.remove();
        }
    }

    /// The first time after `t` the element can change with no new sample. With
    /// `at_newest` (see [`Settings::at_newest`]) only the newest sample leaving counts.
    pub(super) fn next_change(&self, points: &[(i64, f64)], t: i64, at_newest: bool) -> i64 {
        let (lo, hi) = (t.saturating_sub(self.back), t.saturating_add(self.fwd));
        let end = points.partition_point(|p| p.0 <= hi);
        // A sample already held enters the window.
        let mut next = points
            .get(end)
            .map_or(i64::MAX, |p| p.0.saturating_sub(self.fwd));
        let window = &points[points.partition_point(|p| p.0 < lo).min(end)..end];
        let leaving = if at_newest {
            self.newest(points, t)
        } else if self.latest_only {
            window.last()
        } else {
            window.first()
        };
        if let Some(&(ts, _)) = leaving {
            next = next.min(ts.saturating_add(self.back).saturating_add(1));
            if self.time_dependent && !at_newest {
                next = next.min(t + 1);
            }
        }
        next.max(t + 1)
    }
}
