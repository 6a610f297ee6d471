//! Counters, the log level and denial lines. Counting costs a request no host call: the
//! worker tallies, and its tick adds the tally to Envoy's counters.

use crate::deny::Reason;
use crate::stats::{Counter, Tally};

use super::{Host, Level, Worker};

pub struct Telemetry {
    /// Envoy's ids of our counters (empty when the host refused to define them).
    ids: Vec<u32>,
    tally: Tally,
}

impl Telemetry {
    pub fn define<H: Host>(host: &H) -> Telemetry {
        let ids: Result<Vec<u32>, _> = Counter::all().map(|c| host.define_counter(&c.name())).collect();
        let ids = ids.unwrap_or_else(|e| {
            log::warn!("api-auth-filter: counters unavailable ({e:?}); requests are not counted");
            Vec::new()
        });
        Telemetry { ids, tally: Tally::default() }
    }
}

impl<H: Host> Worker<H> {
    pub(crate) fn count(&self, c: Counter) {
        self.st.borrow_mut().telemetry.tally.bump(c);
    }

    /// An allowed request, counted in all and by the kind of its credential.
    pub(crate) fn count_allowed(&self, kind: Option<crate::principal::Kind>) {
        let mut st = self.st.borrow_mut();
        st.telemetry.tally.bump(Counter::Allowed);
        st.telemetry.tally.bump(kind.map_or(Counter::AllowedPublic, Counter::AllowedBy));
    }

    /// Adds what this worker counted since the last tick to Envoy's counters.
    pub(crate) fn flush_stats(&self) {
        let (ids, counts) = {
            let mut st = self.st.borrow_mut();
            let (hits, misses) = st.verified.take_counts();
            let t = &mut st.telemetry;
            t.tally.add(Counter::TokenCacheHit, hits);
            t.tally.add(Counter::TokenCacheMiss, misses);
            (t.ids.clone(), t.tally.drain())
        };
        for (index, n) in counts {
            if let Some(id) = ids.get(index) {
                let _ = self.host.increment_counter(*id, n);
            }
        }
    }

    /// Our log lines are filtered before they cost a host call, at the level Envoy logs wasm
    /// at now: an operator who turns on `wasm:debug` (at start or through the admin
    /// `/logging`) gets the denial lines within a tick.
    pub(crate) fn follow_host_log_level(&self) {
        let level = match self.host.log_level() {
            Ok(Level::Trace) => log::LevelFilter::Trace,
            Ok(Level::Debug) => log::LevelFilter::Debug,
            Ok(Level::Info) => log::LevelFilter::Info,
            Ok(Level::Warn) => log::LevelFilter::Warn,
            Ok(Level::Error | Level::Critical) => log::LevelFilter::Error,
            Err(_) => return,
        };
        log::set_max_level(level);
    }

    /// One line per denial: reason, route and correlation id; never a credential.
    pub(crate) fn log_denial(&self, reason: Reason, route: Option<usize>, correlation: Option<&str>) {
        log::debug!(
            "api-auth-filter: denied reason={} route={} correlation_id={}",
            reason.as_str(),
            route.map_or(-1, |r| r as i64),
            correlation.unwrap_or("-")
        );
    }

    /// The tally not yet flushed, for tests.
    pub fn pending_count(&self, c: Counter) -> u64 {
        self.st.borrow().telemetry.tally.get(c)
    }
}
