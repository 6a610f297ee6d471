//! Key usage reports (`api_keys.usage_report`): each worker notes the last use of each key;
//! on its tick it merges them into shared data, and the worker that wins the period's lease
//! posts the batch `{key_id: last_used_unix}`. Nothing here delays a request.
//!
//! The batch and the lease are named by the endpoint they are posted to (a short hash of its
//! cluster, authority and path): one VM may hold several configurations, and shared data is
//! the whole process's, so one configuration's uses are never posted to another's service.

use std::collections::HashMap;

use crate::apikeys::Service;
use crate::records;

use super::calls::Purpose;
use super::{Call, Host, Worker};

/// The shared-data names of a usage endpoint's batch and lease: (data, next).
pub fn usage_keys(service: &Service) -> (String, String) {
    let base = format!("api-auth/usage/{}", service.tag());
    (format!("{base}/data"), format!("{base}/next"))
}

#[derive(Default)]
pub struct Usage {
    /// Last use of each key since the last merge (Unix seconds).
    last_used: HashMap<String, u64>,
}

impl<H: Host> Worker<H> {
    pub(crate) fn record_use(&self, key_id: &str, at: u64) {
        let mut st = self.st.borrow_mut();
        if st.config.api_keys.as_ref().is_some_and(|k| k.usage_report.is_some()) {
            st.usage.last_used.insert(key_id.to_string(), at);
        }
    }

    pub(crate) fn report_usage(&self, now: u64) {
        let config = self.config();
        let Some(service) = config.api_keys.as_ref().and_then(|k| k.usage_report.as_ref()) else { return };
        let (data_key, next_key) = usage_keys(service);
        let local: Vec<(String, u64)> = self.st.borrow_mut().usage.last_used.drain().collect();
        if !local.is_empty() {
            self.merge(&data_key, &local);
        }
        let (next, cas) = self.host.shared_get(&next_key).unwrap_or((None, None));
        let next_at = records::decode_version(next.as_deref());
        if now < next_at {
            return;
        }
        let period_end = now.saturating_add(service.ttl_ms).to_be_bytes();
        if next_at == 0 {
            // The first period starts now.
            let _ = self.host.shared_set(&next_key, &period_end, cas);
            return;
        }
        if self.host.shared_set(&next_key, &period_end, cas).is_err() {
            return; // another worker sends this period's batch
        }
        let Ok((Some(batch), data_cas)) = self.host.shared_get(&data_key) else { return };
        if batch.is_empty() || batch.as_slice() == b"{}" || self.host.shared_set(&data_key, b"{}", data_cas).is_err() {
            return;
        }
        match self.host.dispatch(&Call::post_json(service, &batch)) {
            Ok(token) => self.st.borrow_mut().calls.insert(token, Purpose::Usage),
            Err(e) => log::warn!("api-auth-filter: usage report to cluster {} could not start: {e:?}", service.cluster),
        }
    }

    /// A usage batch's answer: only a failure is worth a line (the batch is not sent again;
    /// the next period's holds the later uses).
    pub(crate) fn on_usage_response(&self) {
        let status = self.host.call_response_header(":status").ok().flatten();
        if status.as_deref().is_none_or(|s| s.first() != Some(&b'2')) {
            let cluster = self.config().api_keys.as_ref().and_then(|k| k.usage_report.as_ref()).map_or(String::new(), |s| s.cluster.clone());
            log::warn!(
                "api-auth-filter: usage report to cluster {cluster} failed (status {})",
                status.as_deref().map_or("none".into(), String::from_utf8_lossy)
            );
        }
    }

    /// Merges this worker's uses into the shared batch (compare-and-swap, a few tries).
    fn merge(&self, data_key: &str, local: &[(String, u64)]) {
        for _ in 0..4 {
            let (bytes, cas) = self.host.shared_get(data_key).unwrap_or((None, None));
            let mut map: serde_json::Map<String, serde_json::Value> = bytes.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            for (id, at) in local {
                if map.get(id).and_then(serde_json::Value::as_u64).is_none_or(|old| old < *at) {
                    map.insert(id.clone(), (*at).into());
                }
            }
            let doc = serde_json::Value::Object(map).to_string();
            if self.host.shared_set(data_key, doc.as_bytes(), cas).is_ok() {
                return;
            }
        }
    }
}
