//! Everything the glue asks of the host, as one trait. `abi::AbiHost` implements it over the
//! proxy-wasm ABI (the only code that calls the host); `mock::MockHost` implements it in
//! memory, so that waiting, resuming, fetching and looking up are tested natively.
//!
//! Calls that concern a request act on the *effective* context, as in the ABI: the context
//! whose callback runs, or the one named by `set_effective_context`.

use std::time::Duration;

/// A host call that did not do what was asked. The glue treats every error alike (fail
/// closed, or keep what it has); the status is kept for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// The key or the item does not exist (shared data, a header map, a context).
    NotFound,
    /// A compare-and-swap lost: someone wrote the value since it was read.
    CasMismatch,
    /// Any other status, with its ABI code.
    Status(u32),
}

pub type HostResult<T> = Result<T, HostError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// Which buffer a body read is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Request,
    /// The response body buffered so far (an MCP `tools/list` answer being filtered).
    Response,
    CallResponse,
    PluginConfiguration,
}

/// One outgoing call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'a> {
    pub cluster: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub authority: &'a str,
    pub content_type: Option<&'a str>,
    /// An `Authorization` header (introspection's client credentials): never logged.
    pub authorization: Option<&'a [u8]>,
    pub body: Option<&'a [u8]>,
    pub timeout: Duration,
}

impl<'a> Call<'a> {
    /// A JSON POST to a configured service (key lookups, usage reports).
    pub fn post_json(service: &'a crate::apikeys::Service, body: &'a [u8]) -> Call<'a> {
        Call {
            cluster: &service.cluster,
            method: "POST",
            path: &service.path,
            authority: &service.authority,
            content_type: Some("application/json"),
            authorization: None,
            body: Some(body),
            timeout: Duration::from_millis(service.timeout_ms),
        }
    }
}

pub trait Host {
    /// Every request header of the effective context, in the ABI's encoding (`decode_pairs`
    /// reads it in place).
    fn request_headers(&self) -> HostResult<Vec<u8>>;
    /// Sets (`Some`) or removes (`None`) a request header of the effective context.
    fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> HostResult<()>;
    fn set_response_header(&self, name: &str, value: Option<&[u8]>) -> HostResult<()>;
    /// A response header of the effective context.
    fn response_header(&self, name: &str) -> HostResult<Option<Vec<u8>>>;
    /// Replaces the first `size` bytes of a buffered body (all of it: `size` is what the body
    /// callback reported) with `bytes`.
    fn set_body(&self, which: Body, size: usize, bytes: &[u8]) -> HostResult<()>;
    /// Up to `max` bytes of a buffer, from its start. `Ok(None)`: there is no such buffer.
    fn body(&self, which: Body, max: usize) -> HostResult<Option<Vec<u8>>>;
    /// Answers the effective context's request locally. `details` become Envoy's
    /// response-code details; with `grpc_status`, the answer is a gRPC one (`body` is then
    /// the grpc-message).
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8], details: &str, grpc_status: Option<u32>) -> HostResult<()>;
    /// Writes filter state `wasm.<name>` of the effective context's stream (RBAC, CEL and
    /// access logs read it).
    fn set_property(&self, name: &str, value: &[u8]) -> HostResult<()>;
    /// A property of the effective context's stream, by path (`["xds", "route_name"]`).
    fn get_property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>>;
    /// Lets a paused request of the effective context go on.
    fn resume_request(&self) -> HostResult<()>;
    fn reset_request(&self) -> HostResult<()>;
    fn set_effective_context(&self, context_id: u32) -> HostResult<()>;

    /// A shared-data value and its CAS token; `(None, None)` when the key is absent.
    fn shared_get(&self, key: &str) -> HostResult<(Option<Vec<u8>>, Option<u32>)>;
    /// Writes a value; with `cas`, only if nobody wrote it since that token was read.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> HostResult<()>;

    /// Starts a call; its answer arrives as `on_call_response(token, ...)`.
    fn dispatch(&self, call: &Call<'_>) -> HostResult<u32>;
    /// A header of the answer being delivered (in `on_call_response`).
    fn call_response_header(&self, name: &str) -> HostResult<Option<Vec<u8>>>;

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    fn set_tick_period(&self, period: Duration) -> HostResult<()>;

    fn define_counter(&self, name: &str) -> HostResult<u32>;
    fn increment_counter(&self, id: u32, by: u64) -> HostResult<()>;

    /// The level the host logs this plugin at now.
    fn log_level(&self) -> HostResult<Level>;

    /// Calls one of the host's foreign functions (`proxy_call_foreign_function`) with its
    /// serialized arguments; its answer's bytes. `NotFound`: the host has no such function.
    fn call_foreign(&self, name: &str, args: &[u8]) -> HostResult<Vec<u8>>;
}

/// The ABI's encoding of a header map: the pair count, each pair's name and value lengths
/// (u32 little-endian), then each name and value followed by a NUL. Read in place: the pairs
/// borrow `bytes` (one buffer for the whole map, no allocation per header), names lower-cased
/// first (Envoy's are already). `None` when the bytes do not hold such a map. A name that is
/// not UTF-8 reads as U+FFFD, which matches no name the filter looks for (Envoy's codecs refuse
/// such names before any filter runs; the SDK would panic on one).
pub fn decode_pairs(bytes: &mut [u8]) -> Option<Vec<(&str, &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |b: &[u8], at: usize| -> Option<usize> { Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?) as usize) };
    let count = u32_at(bytes, 0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > bytes.len() {
        return None;
    }
    // (name start, name end, value end) of each pair, names lower-cased on the way.
    let mut spans = Vec::with_capacity(count);
    for i in 0..count {
        let (name_len, value_len) = (u32_at(bytes, 4 + i * 8)?, u32_at(bytes, 8 + i * 8)?);
        let name_end = data.checked_add(name_len)?;
        bytes.get_mut(data..name_end)?.make_ascii_lowercase();
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_len)?;
        bytes.get(value_start..value_end)?;
        spans.push((data, name_end, value_end));
        data = value_end.checked_add(1)?;
    }
    let bytes: &[u8] = bytes;
    let pairs = spans
        .into_iter()
        .map(|(start, name_end, value_end)| {
            let name = std::str::from_utf8(&bytes[start..name_end]).unwrap_or("\u{fffd}");
            (name, &bytes[name_end + 1..value_end])
        })
        .collect();
    Some(pairs)
}

/// The inverse of `decode_pairs`.
pub fn encode_pairs(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(n, v)| 10 + n.len() + v.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (n, v) in pairs {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_round_trip_and_damage_is_refused() {
        let pairs: &[(&str, &[u8])] = &[(":path", b"/a"), ("x-key", b"\xff\x00v"), ("empty", b"")];
        let mut bytes = encode_pairs(pairs);
        let back = decode_pairs(&mut bytes.clone()).map(|p| p.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect::<Vec<_>>()).unwrap();
        assert_eq!(back.len(), 3);
        for ((n, v), (bn, bv)) in pairs.iter().zip(&back) {
            assert_eq!((*n, *v), (bn.as_str(), bv.as_slice()));
        }
        assert_eq!(decode_pairs(&mut []), Some(vec![]));
        for cut in 1..bytes.len() - 1 {
            assert!(decode_pairs(&mut bytes[..cut]).is_none(), "cut at {cut}");
        }
        assert!(decode_pairs(&mut [0xff, 0xff, 0xff, 0xff]).is_none(), "a count beyond the bytes");
        let mut odd = encode_pairs(&[("n", b"v")]);
        let mut bad_name = odd.clone();
        bad_name[12] = 0xff;
        assert_eq!(decode_pairs(&mut bad_name).unwrap()[0], ("\u{fffd}", b"v".as_slice()));
        // Names are read lower-case, values as they are.
        let mut mixed = encode_pairs(&[("X-Api-Key", b"Cm_AB")]);
        assert_eq!(decode_pairs(&mut mixed).unwrap(), vec![("x-api-key", b"Cm_AB".as_slice())]);
        assert_eq!(decode_pairs(&mut odd).unwrap(), vec![("n", b"v".as_slice())]);
    }
}
