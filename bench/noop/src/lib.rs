//! A proxy-wasm HTTP filter that does nothing: what `make bench` compares the real filter to.
//!
//! With the plugin configuration `host-calls` it makes, and does nothing but, the host calls
//! the real filter makes on an allowed request: read the request headers and the clock, and
//! when the request carries an `Authorization` header, remove it and set two identity headers
//! (`strip_credentials` and the two `forward.headers` of the benchmark's configuration). The
//! difference to the empty filter is what the proxy-wasm ABI charges for that work in Envoy;
//! the rest of the real filter's cost is its own code.
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { host_calls: false }) });
}}

struct Root {
    host_calls: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten().unwrap_or_default();
        self.host_calls = config == b"host-calls";
        true
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop { host_calls: self.host_calls }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    host_calls: bool,
}

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.host_calls {
            let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
            let _ = hostcalls::get_current_time();
            if headers.iter().any(|(name, _)| name == "authorization") {
                let request = MapType::HttpRequestHeaders;
                let _ = hostcalls::set_map_value_bytes(request, "authorization", None);
                let _ = hostcalls::set_map_value_bytes(request, "x-user-id", Some(b"user_0"));
                let _ = hostcalls::set_map_value_bytes(request, "x-org-id", Some(b"org_1"));
            }
        }
        Action::Continue
    }
}
