//! [`AgreedCancel`]: a cancellation flag that every rank sees change at the same step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use diffinv_solvers::{CostSummary, Observer, StateView, StepInfo};

use crate::collective::{any, Collective};

/// Ctrl-C, SIGTERM or a scheduler's time limit reach the ranks of a job one by one, so each
/// rank's own flag is set at a different moment; a runner that stopped on its own flag would
/// leave the other ranks waiting in the next step's gather. `AgreedCancel` is an observer that,
/// after every step, ORs the ranks' own flags (one all-gather of one value) into an *agreed*
/// flag: pass [`flag`](Self::flag) to [`Runner::with_cancel`](diffinv_solvers::Runner::with_cancel)
/// and every rank stops before the same step.
///
/// A batch interrupted inside the forward model (a worker pool watching the rank's own flag)
/// needs nothing more: [`ShardedForward`](crate::ShardedForward) returns the interruption on
/// every rank.
///
/// ```
/// use std::sync::atomic::AtomicBool;
/// use std::sync::Arc;
/// use diffinv_mpi::{AgreedCancel, ThreadGroup};
/// let comm = ThreadGroup::new(1).remove(0);
/// let own = Arc::new(AtomicBool::new(false));
/// let agreed = AgreedCancel::new(Arc::new(comm), own.clone());
/// let flag = agreed.flag(); // for Runner::with_cancel; `agreed` goes to Runner::observe
/// # let _ = flag;
/// ```
pub struct AgreedCancel {
    comm: Arc<dyn Collective>,
    own: Arc<AtomicBool>,
    agreed: Arc<AtomicBool>,
}

impl std::fmt::Debug for AgreedCancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgreedCancel")
            .field("own", &self.own.load(Ordering::SeqCst))
            .field("agreed", &self.agreed.load(Ordering::SeqCst))
            .finish()
    }
}

impl AgreedCancel {
    /// Agree on `own` (this rank's flag, set by its signal handler) over the ranks of `comm`.
    pub fn new(comm: Arc<dyn Collective>, own: Arc<AtomicBool>) -> Self {
        Self {
            comm,
            own,
            agreed: Arc::new(AtomicBool::new(false)),
        }
    }
    /// The agreed flag: set on every rank after the step at which any rank's own flag was set.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.agreed.clone()
    }
}

impl Observer for AgreedCancel {
    fn on_step(&mut self, _info: &StepInfo, _state: StateView<'_>, _cost: &CostSummary) {
        if any(self.comm.as_ref(), self.own.load(Ordering::SeqCst)) {
            self.agreed.store(true, Ordering::SeqCst);
        }
    }
}
