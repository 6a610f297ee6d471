//! The proxy-wasm glue: root and HTTP contexts. Requests become plain data for
//! `engine::decide`; its answer becomes header changes or a local response.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config::Config;
use crate::engine::{self, Decision, Env, Request};

pub fn install() {
    proxy_wasm::set_log_level(LogLevel::Info);
    // A panic aborts the VM (panic = "abort"); say where before it does. The message is ours,
    // never request data.
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("api-auth-filter panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthRoot { config: None }) });
}

struct AuthRoot {
    config: Option<Rc<Config>>,
}

impl Context for AuthRoot {}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(cfg) => {
                log::info!("api-auth-filter: configuration loaded ({} routes)", cfg.routes.len());
                self.config = Some(Rc::new(cfg));
                true
            }
            Err(e) => {
                // The error names the field; it never quotes the document.
                log::error!("api-auth-filter: configuration refused: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(AuthFilter { config }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuthFilter {
    config: Rc<Config>,
}

impl Context for AuthFilter {}

impl HttpContext for AuthFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Bytes, never the String getters: one non-UTF-8 byte would kill the VM.
        let mut headers = self.get_http_request_headers_bytes();
        for (name, _) in headers.iter_mut() {
            name.make_ascii_lowercase();
        }
        let pseudo = |n: &str| headers.iter().find(|(k, _)| k == n).and_then(|(_, v)| std::str::from_utf8(v).ok());
        let method = pseudo(":method").unwrap_or("");
        let path = pseudo(":path").unwrap_or("");
        let now = self
            .get_current_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let decision = engine::decide(&self.config, &Request { method, path, headers: &headers }, &Env { now });
        match decision {
            Decision::Allow(allow) => {
                for name in &allow.remove {
                    self.set_http_request_header(name, None);
                }
                for (name, value) in &allow.set {
                    self.set_http_request_header(name, Some(value));
                }
                Action::Continue
            }
            Decision::Deny(deny) => {
                log::debug!(
                    "api-auth-filter: denied {} route={}",
                    deny.denial.reason.as_str(),
                    deny.route.map_or(-1, |r| r as i64)
                );
                let headers: Vec<(&str, &str)> =
                    deny.response.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                self.send_http_response(u32::from(deny.response.status), headers, Some(&deny.response.body));
                // Pause: with Continue the request could still reach the upstream.
                Action::Pause
            }
        }
    }
}
