//! An in-memory host for tests: per-context request headers and bodies, what each request was
//! answered or let through with, shared data with compare-and-swap (shareable between mock
//! workers, like Envoy's between VMs), recorded calls whose answers a test queues, a clock the
//! test sets, counters and a log level.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use super::host::{encode_pairs, Body, Call, Host, HostError, HostResult, Level};
use crate::credentials;

/// Shared data, as every VM of one Envoy process sees it.
#[derive(Default)]
pub struct SharedData {
    values: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

/// A local response: status, headers, body.
pub type Answered = (u16, Vec<(String, String)>, Vec<u8>);
/// A call's answer: its headers and body.
type CallAnswer = (Vec<(String, Vec<u8>)>, Vec<u8>);

/// One request as the mock host holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MockRequest {
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    /// The response body as the worker left it.
    pub response_body: Vec<u8>,
    /// The local response sent, if any.
    pub answered: Option<Answered>,
    /// Its response-code details and gRPC status.
    pub details: Option<(String, Option<u32>)>,
    /// Filter state written (`set_property`), in order.
    pub filter_state: Vec<(String, Vec<u8>)>,
    /// Properties the host answers (`get_property`), by path joined with `.`.
    pub properties: Vec<(String, Vec<u8>)>,
    /// How often `resume_request` was called.
    pub resumed: u32,
    pub reset: bool,
}

/// A call the worker made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCall {
    pub token: u32,
    /// The effective context when it was made (0: the root). The SDK delivers the answer to
    /// that context, and drops it once that request has ended.
    pub context: u32,
    pub cluster: String,
    pub authority: String,
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    pub authorization: Option<Vec<u8>>,
    pub timeout: Duration,
}

#[derive(Default)]
pub struct MockHost {
    pub shared: Rc<RefCell<SharedData>>,
    pub requests: RefCell<HashMap<u32, MockRequest>>,
    pub effective: Cell<u32>,
    pub calls: RefCell<Vec<MadeCall>>,
    next_token: Cell<u32>,
    /// The answer being delivered: its headers and body.
    answer: RefCell<CallAnswer>,
    pub clock_ms: Cell<u64>,
    pub counters: RefCell<Vec<(String, u64)>>,
    pub level: Cell<Option<Level>>,
    pub tick: Cell<Option<Duration>>,
    /// Makes every dispatch fail.
    pub dispatch_fails: Cell<bool>,
    /// Makes reading request headers fail.
    pub headers_fail: Cell<bool>,
    /// Makes setting or removing request headers fail.
    pub header_writes_fail: Cell<bool>,
    /// Makes reading the request body fail.
    pub body_fails: Cell<bool>,
    /// Makes reading the properties under these paths fail (`xds.route_name`,
    /// `xds.route_metadata`: segments joined with `.`).
    pub property_reads_fail: RefCell<Vec<String>>,
    /// Makes writing filter state fail.
    pub property_writes_fail: Cell<bool>,
    /// The host's foreign functions: name and arguments to the answer. None: the host has
    /// none (every call is NotFound).
    pub foreign: RefCell<Option<ForeignFn>>,
    /// How many foreign calls were made.
    pub foreign_calls: Cell<u32>,
}

/// A foreign function of the mock host.
pub type ForeignFn = Box<dyn Fn(&str, &[u8]) -> HostResult<Vec<u8>>>;

impl MockHost {
    pub fn new(now_ms: u64) -> MockHost {
        let host = MockHost::default();
        host.clock_ms.set(now_ms);
        host.level.set(Some(Level::Info));
        host.next_token.set(1);
        host
    }

    /// Another VM of the same process: the same shared data, nothing else.
    pub fn sibling(&self) -> MockHost {
        let host = MockHost::new(self.clock_ms.get());
        MockHost { shared: self.shared.clone(), ..host }
    }

    /// A new request on context `ctx`, made the effective context.
    pub fn start(&self, ctx: u32, method: &str, path: &str, headers: &[(&str, &[u8])]) {
        let mut all = vec![(":method".to_string(), method.as_bytes().to_vec()), (":path".to_string(), path.as_bytes().to_vec())];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())));
        self.requests.borrow_mut().insert(ctx, MockRequest { headers: all, ..MockRequest::default() });
        self.effective.set(ctx);
    }

    /// Appends body bytes to a request; returns its buffered size.
    pub fn push_body(&self, ctx: u32, bytes: &[u8]) -> usize {
        let mut r = self.requests.borrow_mut();
        let req = r.entry(ctx).or_default();
        req.body.extend_from_slice(bytes);
        req.body.len()
    }

    /// The upstream's answer to a request: its headers, then body bytes appended; returns the
    /// buffered size.
    pub fn respond(&self, ctx: u32, headers: &[(&str, &[u8])], body: &[u8]) -> usize {
        let mut r = self.requests.borrow_mut();
        let req = r.entry(ctx).or_default();
        if !headers.is_empty() {
            req.response_headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect();
        }
        req.response_body.extend_from_slice(body);
        req.response_body.len()
    }

    pub fn request(&self, ctx: u32) -> MockRequest {
        self.requests.borrow().get(&ctx).cloned().unwrap_or_default()
    }

    /// The header a request now has (after the worker's changes).
    pub fn header(&self, ctx: u32, name: &str) -> Option<Vec<u8>> {
        self.request(ctx).headers.into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Queues the answer to deliver next: `on_call_response` then reads it.
    pub fn answer(&self, status: u16, body: &[u8]) -> usize {
        *self.answer.borrow_mut() = (vec![(":status".into(), status.to_string().into_bytes())], body.to_vec());
        body.len()
    }

    pub fn advance(&self, ms: u64) {
        self.clock_ms.set(self.clock_ms.get() + ms);
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters.borrow().iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
    }

    pub fn shared_value(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.borrow().values.get(key).map(|(v, _)| v.clone())
    }

    fn with_request<T>(&self, f: impl FnOnce(&mut MockRequest) -> T) -> HostResult<T> {
        self.requests.borrow_mut().get_mut(&self.effective.get()).map(f).ok_or(HostError::NotFound)
    }
}

fn set(map: &mut Vec<(String, Vec<u8>)>, name: &str, value: Option<&[u8]>) {
    map.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    if let Some(v) = value {
        map.push((name.to_string(), v.to_vec()));
    }
}

impl Host for MockHost {
    fn request_headers(&self) -> HostResult<Vec<u8>> {
        if self.headers_fail.get() {
            return Err(HostError::Status(2));
        }
        self.with_request(|r| encode_pairs(&credentials::view(&r.headers)))
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> HostResult<()> {
        if self.header_writes_fail.get() {
            return Err(HostError::Status(2));
        }
        self.with_request(|r| set(&mut r.headers, name, value))
    }

    fn set_response_header(&self, name: &str, value: Option<&[u8]>) -> HostResult<()> {
        self.with_request(|r| set(&mut r.response_headers, name, value))
    }

    fn response_header(&self, name: &str) -> HostResult<Option<Vec<u8>>> {
        self.with_request(|r| r.response_headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
    }

    fn set_body(&self, which: Body, size: usize, bytes: &[u8]) -> HostResult<()> {
        self.with_request(|r| {
            let body = match which {
                Body::Request => &mut r.body,
                Body::Response => &mut r.response_body,
                Body::CallResponse | Body::PluginConfiguration => return Err(HostError::Status(2)),
            };
            body.drain(..size.min(body.len()));
            body.splice(0..0, bytes.iter().copied());
            Ok(())
        })?
    }

    fn body(&self, which: Body, max: usize) -> HostResult<Option<Vec<u8>>> {
        let bytes = match which {
            Body::Request if self.body_fails.get() => return Err(HostError::Status(2)),
            Body::Request => self.with_request(|r| r.body.clone())?,
            Body::Response => self.with_request(|r| r.response_body.clone())?,
            Body::CallResponse => self.answer.borrow().1.clone(),
            Body::PluginConfiguration => return Ok(None),
        };
        Ok(Some(bytes[..bytes.len().min(max)].to_vec()))
    }

    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8], details: &str, grpc_status: Option<u32>) -> HostResult<()> {
        let headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        self.with_request(|r| {
            r.answered = Some((status, headers, body.to_vec()));
            r.details = Some((details.to_string(), grpc_status));
        })
    }

    fn set_property(&self, name: &str, value: &[u8]) -> HostResult<()> {
        if self.property_writes_fail.get() {
            return Err(HostError::Status(2));
        }
        self.with_request(|r| r.filter_state.push((name.to_string(), value.to_vec())))
    }

    fn get_property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        let key = path.join(".");
        if self.property_reads_fail.borrow().iter().any(|p| key.starts_with(p.as_str())) {
            return Err(HostError::Status(2));
        }
        self.with_request(|r| r.properties.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()))
    }

    fn resume_request(&self) -> HostResult<()> {
        self.with_request(|r| r.resumed += 1)
    }

    fn reset_request(&self) -> HostResult<()> {
        self.with_request(|r| r.reset = true)
    }

    fn set_effective_context(&self, context_id: u32) -> HostResult<()> {
        if context_id != 0 && !self.requests.borrow().contains_key(&context_id) {
            return Err(HostError::NotFound);
        }
        self.effective.set(context_id);
        Ok(())
    }

    fn shared_get(&self, key: &str) -> HostResult<(Option<Vec<u8>>, Option<u32>)> {
        Ok(match self.shared.borrow().values.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> HostResult<()> {
        let mut shared = self.shared.borrow_mut();
        let current = shared.values.get(key).map(|(_, c)| *c);
        if let (Some(want), Some(have)) = (cas, current) {
            if want != have {
                return Err(HostError::CasMismatch);
            }
        }
        shared.next_cas += 1;
        let next = shared.next_cas;
        shared.values.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    fn dispatch(&self, call: &Call<'_>) -> HostResult<u32> {
        if self.dispatch_fails.get() {
            return Err(HostError::Status(2));
        }
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        self.calls.borrow_mut().push(MadeCall {
            token,
            context: self.effective.get(),
            cluster: call.cluster.to_string(),
            authority: call.authority.to_string(),
            method: call.method.to_string(),
            path: call.path.to_string(),
            body: call.body.unwrap_or_default().to_vec(),
            authorization: call.authorization.map(<[u8]>::to_vec),
            timeout: call.timeout,
        });
        Ok(token)
    }

    fn call_response_header(&self, name: &str) -> HostResult<Option<Vec<u8>>> {
        Ok(self.answer.borrow().0.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
    }

    fn now_ms(&self) -> u64 {
        self.clock_ms.get()
    }

    fn set_tick_period(&self, period: Duration) -> HostResult<()> {
        self.tick.set(Some(period));
        Ok(())
    }

    fn define_counter(&self, name: &str) -> HostResult<u32> {
        let mut c = self.counters.borrow_mut();
        c.push((name.to_string(), 0));
        Ok(c.len() as u32 - 1)
    }

    fn increment_counter(&self, id: u32, by: u64) -> HostResult<()> {
        let mut c = self.counters.borrow_mut();
        let entry = c.get_mut(id as usize).ok_or(HostError::NotFound)?;
        entry.1 += by;
        Ok(())
    }

    fn log_level(&self) -> HostResult<Level> {
        self.level.get().ok_or(HostError::Status(2))
    }

    fn call_foreign(&self, name: &str, args: &[u8]) -> HostResult<Vec<u8>> {
        self.foreign_calls.set(self.foreign_calls.get() + 1);
        match &*self.foreign.borrow() {
            Some(f) => f(name, args),
            None => Err(HostError::NotFound),
        }
    }
}
