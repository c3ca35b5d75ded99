//! Admission: a request holds one of the pipeline's `max_in_flight` permits until its work is
//! done, and the in-flight gauge follows.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Pipeline;
use crate::metrics as m;

/// Admission for one request: hold it until its work is done.
pub struct Admitted {
    permit: Option<OwnedSemaphorePermit>,
    admission: Arc<Semaphore>,
    max_in_flight: usize,
}

impl Admitted {
    pub(super) fn new(permit: OwnedSemaphorePermit, pipeline: &Pipeline) -> Admitted {
        let admitted = Admitted { permit: Some(permit), admission: Arc::clone(&pipeline.admission), max_in_flight: pipeline.config.max_in_flight };
        metrics::gauge!(m::IN_FLIGHT).set(pipeline.in_flight() as f64);
        admitted
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        drop(self.permit.take());
        metrics::gauge!(m::IN_FLIGHT).set((self.max_in_flight - self.admission.available_permits()) as f64);
    }
}
