//! `Host` over the proxy-wasm ABI (v0.2.1): the only code of the filter that calls the host.
//!
//! The imports are declared from the ABI specification, and every status becomes a
//! `HostError` (the SDK's `hostcalls` panic on a status they do not expect, and a panic kills
//! the VM). The callbacks the host calls are in `exports`.
//!
//! Memory the host returns was allocated through `exports::proxy_on_memory_allocate` (a `Vec`
//! of exactly that capacity), so it is taken back as a `Vec` of that size and capacity.

use std::ptr::null_mut;
use std::time::Duration;

use super::host::{encode_pairs, Body, Call, Host, HostError, HostResult, Level};

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

// Map types, buffer types and stream types of the ABI.
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const CALL_RESPONSE_HEADERS: u32 = 6;
const REQUEST_BODY: u32 = 0;
const RESPONSE_BODY: u32 = 1;
const CALL_RESPONSE_BODY: u32 = 4;
const PLUGIN_CONFIGURATION: u32 = 7;
const STREAM_REQUEST: u32 = 0;
const METRIC_COUNTER: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(buffer_type: u32, start: usize, max_size: usize, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_set_buffer_bytes(buffer_type: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(map_type: u32, key_data: *const u8, key_size: usize, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(map_type: u32, key_data: *const u8, key_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_shared_data(key_data: *const u8, key_size: usize, return_data: *mut *mut u8, return_size: *mut usize, return_cas: *mut u32) -> u32;
    fn proxy_set_shared_data(key_data: *const u8, key_size: usize, value_data: *const u8, value_size: usize, cas: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_get_property(path_data: *const u8, path_size: usize, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

fn status(code: u32) -> HostResult<()> {
    match code {
        OK => Ok(()),
        NOT_FOUND => Err(HostError::NotFound),
        CAS_MISMATCH => Err(HostError::CasMismatch),
        other => Err(HostError::Status(other)),
    }
}

/// Takes ownership of bytes the host allocated for us.
///
/// # Safety
/// `data` is null or was returned by the host with `size`, allocated by
/// `proxy_on_memory_allocate(size)`, and is not used again.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    Vec::from_raw_parts(data, size, size)
}

/// The host, as a zero-sized handle: every call goes to the ABI.
#[derive(Debug, Default, Clone, Copy)]
pub struct AbiHost;

impl AbiHost {
    fn buffer(which: u32, max: usize) -> HostResult<Option<Vec<u8>>> {
        let (mut data, mut size) = (null_mut(), 0usize);
        // SAFETY: out-pointers to locals; the returned bytes are taken once.
        match unsafe { proxy_get_buffer_bytes(which, 0, max, &mut data, &mut size) } {
            OK => Ok(Some(unsafe { take(data, size) })),
            NOT_FOUND => Ok(None),
            code => status(code).map(|()| None),
        }
    }

    fn map_value(map: u32, name: &str) -> HostResult<Option<Vec<u8>>> {
        let (mut data, mut size) = (null_mut(), 0usize);
        // SAFETY: as in `buffer`.
        match unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) } {
            OK => Ok(Some(unsafe { take(data, size) })),
            NOT_FOUND => Ok(None),
            code => status(code).map(|()| None),
        }
    }

    fn set_map_value(map: u32, name: &str, value: Option<&[u8]>) -> HostResult<()> {
        // SAFETY: pointers to live slices with their lengths.
        status(unsafe {
            match value {
                Some(v) => proxy_replace_header_map_value(map, name.as_ptr(), name.len(), v.as_ptr(), v.len()),
                None => proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
            }
        })
    }

    /// The plugin's configuration (`on_configure`).
    pub fn plugin_configuration() -> Option<Vec<u8>> {
        Self::buffer(PLUGIN_CONFIGURATION, usize::MAX).ok().flatten()
    }

    /// Logs without going through a `Worker` (the logger, the panic hook).
    pub fn log(level: Level, message: &str) {
        // SAFETY: a pointer to a live string with its length. A failed log has nowhere to go.
        let _ = unsafe { proxy_log(level_code(level), message.as_ptr(), message.len()) };
    }
}

fn buffer_code(which: Body) -> u32 {
    match which {
        Body::Request => REQUEST_BODY,
        Body::Response => RESPONSE_BODY,
        Body::CallResponse => CALL_RESPONSE_BODY,
        Body::PluginConfiguration => PLUGIN_CONFIGURATION,
    }
}

fn level_code(level: Level) -> u32 {
    match level {
        Level::Trace => 0,
        Level::Debug => 1,
        Level::Info => 2,
        Level::Warn => 3,
        Level::Error => 4,
        Level::Critical => 5,
    }
}

impl Host for AbiHost {
    fn request_headers(&self) -> HostResult<Vec<u8>> {
        let (mut data, mut size) = (null_mut(), 0usize);
        // SAFETY: as in `buffer`.
        status(unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) })?;
        Ok(unsafe { take(data, size) })
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> HostResult<()> {
        Self::set_map_value(REQUEST_HEADERS, name, value)
    }

    fn set_response_header(&self, name: &str, value: Option<&[u8]>) -> HostResult<()> {
        Self::set_map_value(RESPONSE_HEADERS, name, value)
    }

    fn response_header(&self, name: &str) -> HostResult<Option<Vec<u8>>> {
        Self::map_value(RESPONSE_HEADERS, name)
    }

    fn body(&self, which: Body, max: usize) -> HostResult<Option<Vec<u8>>> {
        Self::buffer(buffer_code(which), max)
    }

    fn set_body(&self, which: Body, size: usize, bytes: &[u8]) -> HostResult<()> {
        // Envoy drains `size` bytes from the start, then prepends `bytes`.
        // SAFETY: a pointer to a live slice with its length.
        status(unsafe { proxy_set_buffer_bytes(buffer_code(which), 0, size, bytes.as_ptr(), bytes.len()) })
    }

    fn send_response(&self, status_code: u16, headers: &[(&str, &str)], body: &[u8], details: &str, grpc_status: Option<u32>) -> HostResult<()> {
        let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        let map = encode_pairs(&pairs);
        // -1: not a gRPC answer. A gRPC answer is an HTTP 200 whose status is in grpc-status.
        let (code, grpc) = match grpc_status {
            Some(g) => (200, i32::try_from(g).unwrap_or(2)),
            None => (u32::from(status_code), -1),
        };
        // SAFETY: pointers to live buffers with their lengths.
        status(unsafe {
            proxy_send_local_response(code, details.as_ptr(), details.len(), body.as_ptr(), body.len(), map.as_ptr(), map.len(), grpc)
        })
    }

    fn set_property(&self, name: &str, value: &[u8]) -> HostResult<()> {
        // SAFETY: pointers to live slices with their lengths. One path segment: the name.
        status(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
    }

    fn get_property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        // The ABI's path: the segments joined by NUL.
        let joined = path.join("\0");
        let (mut data, mut size) = (null_mut(), 0usize);
        // SAFETY: as in `buffer`.
        match unsafe { proxy_get_property(joined.as_ptr(), joined.len(), &mut data, &mut size) } {
            OK => Ok(Some(unsafe { take(data, size) })),
            NOT_FOUND => Ok(None),
            code => status(code).map(|()| None),
        }
    }

    fn resume_request(&self) -> HostResult<()> {
        // SAFETY: no pointers.
        status(unsafe { proxy_continue_stream(STREAM_REQUEST) })
    }

    fn reset_request(&self) -> HostResult<()> {
        // SAFETY: no pointers.
        status(unsafe { proxy_close_stream(STREAM_REQUEST) })
    }

    fn set_effective_context(&self, context_id: u32) -> HostResult<()> {
        // SAFETY: no pointers.
        status(unsafe { proxy_set_effective_context(context_id) })
    }

    fn shared_get(&self, key: &str) -> HostResult<(Option<Vec<u8>>, Option<u32>)> {
        let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
        // SAFETY: as in `buffer`.
        match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) } {
            OK => Ok((Some(unsafe { take(data, size) }), (cas != 0).then_some(cas))),
            NOT_FOUND => Ok((None, None)),
            code => status(code).map(|()| (None, None)),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> HostResult<()> {
        // SAFETY: pointers to live slices with their lengths.
        status(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas.unwrap_or(0)) })
    }

    fn dispatch(&self, call: &Call<'_>) -> HostResult<u32> {
        let last = match call.content_type {
            Some(ct) => ("content-type", ct.as_bytes()),
            None => ("accept", b"application/json".as_slice()),
        };
        let fixed = [(":method", call.method.as_bytes()), (":path", call.path.as_bytes()), (":authority", call.authority.as_bytes()), last];
        let headers = match call.authorization {
            None => encode_pairs(&fixed),
            Some(a) => {
                let mut all = fixed.to_vec();
                all.push(("authorization", a));
                encode_pairs(&all)
            }
        };
        let trailers = encode_pairs(&[]);
        let body = call.body.unwrap_or_default();
        let timeout = u32::try_from(call.timeout.as_millis()).unwrap_or(u32::MAX);
        let mut token = 0u32;
        // SAFETY: pointers to live buffers with their lengths, an out-pointer to a local.
        status(unsafe {
            proxy_http_call(
                call.cluster.as_ptr(),
                call.cluster.len(),
                headers.as_ptr(),
                headers.len(),
                body.as_ptr(),
                body.len(),
                trailers.as_ptr(),
                trailers.len(),
                timeout,
                &mut token,
            )
        })?;
        Ok(token)
    }

    fn call_response_header(&self, name: &str) -> HostResult<Option<Vec<u8>>> {
        Self::map_value(CALL_RESPONSE_HEADERS, name)
    }

    fn now_ms(&self) -> u64 {
        let mut nanos = 0u64;
        // SAFETY: an out-pointer to a local.
        match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
            OK => nanos / 1_000_000,
            // Without a clock, every expiry has passed: tokens, keys and webhook timestamps
            // are refused, waits end (fail closed, never open).
            _ => i64::MAX as u64 / 1000,
        }
    }

    fn set_tick_period(&self, period: Duration) -> HostResult<()> {
        let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: no pointers.
        status(unsafe { proxy_set_tick_period_milliseconds(ms) })
    }

    fn define_counter(&self, name: &str) -> HostResult<u32> {
        let mut id = 0u32;
        // SAFETY: a pointer to a live string with its length, an out-pointer to a local.
        status(unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) })?;
        Ok(id)
    }

    fn increment_counter(&self, id: u32, by: u64) -> HostResult<()> {
        // SAFETY: no pointers.
        status(unsafe { proxy_increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX)) })
    }

    fn log_level(&self) -> HostResult<Level> {
        let mut code = 0u32;
        // SAFETY: an out-pointer to a local.
        status(unsafe { proxy_get_log_level(&mut code) })?;
        Ok(match code {
            0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            4 => Level::Error,
            _ => Level::Critical,
        })
    }

    fn call_foreign(&self, name: &str, args: &[u8]) -> HostResult<Vec<u8>> {
        let (mut data, mut size) = (null_mut(), 0usize);
        // SAFETY: pointers to live slices with their lengths, out-pointers to locals; the
        // returned bytes are taken once.
        status(unsafe { proxy_call_foreign_function(name.as_ptr(), name.len(), args.as_ptr(), args.len(), &mut data, &mut size) })?;
        Ok(unsafe { take(data, size) })
    }
}
