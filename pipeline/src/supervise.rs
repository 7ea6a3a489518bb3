//! Supervision: the first part of a run that fails (a source, the catalog, a sink, the
//! server) stops the whole run, which then exits with status 1 and that part's message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vitrine_connectors::metrics::Health;

/// Shared by every thread of a run: who failed first, and the run's stop flag.
#[derive(Clone, Debug)]
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
    health: Arc<Health>,
}

impl Supervisor {
    pub fn new(stop: Arc<AtomicBool>, health: Arc<Health>) -> Supervisor {
        Supervisor { stop, failure: Arc::default(), health }
    }

    /// A part of the run failed: `what` says which, why, and what to do. The first failure is
    /// the one reported; the run stops taking input and drains what it has.
    pub fn fail(&self, what: impl Into<String>) {
        let what = what.into();
        tracing::error!(failure = %what, "stopping the run");
        let mut failure = self.failure.lock().expect("failure");
        if failure.is_none() {
            self.health.set_failed(&what);
            *failure = Some(what);
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("failure").clone()
    }

    pub fn stop_flag(&self) -> &Arc<AtomicBool> {
        &self.stop
    }
}

/// Logs a panic as one structured line (thread, message, place) instead of a bare backtrace;
/// the run then stops with the thread's failure. RUST_BACKTRACE still prints the backtrace.
pub fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        tracing::error!(thread, panic = %message, at = place, "a thread panicked");
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_reported_and_stops_the_run() {
        let health = Arc::new(Health::default());
        let supervisor = Supervisor::new(Arc::default(), health.clone());
        assert_eq!(supervisor.failure(), None);
        supervisor.fail("source `demo` failed");
        supervisor.fail("the sink thread stopped");
        assert_eq!(supervisor.failure().as_deref(), Some("source `demo` failed"));
        assert!(supervisor.stop_flag().load(Ordering::Relaxed));
        assert_eq!(health.failure().as_deref(), Some("source `demo` failed"), "/healthz fails");
    }
}
