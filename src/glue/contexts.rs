//! The SDK's root and HTTP contexts, mapped onto `Worker<AbiHost>`: one line per callback.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as SdkAction, ContextType};

use super::abi::AbiHost;
use super::{Action, Level, Worker};

pub fn install() {
    // Our own logger: the SDK's unwraps the host's answer to every log call.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    // panic = "abort": say where before the VM dies. The message is ours, never request data.
    std::panic::set_hook(Box::new(|info| AbiHost::log(Level::Critical, &format!("api-auth-filter panicked: {info}"))));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthRoot { worker: None }) });
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = match record.level() {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        AbiHost::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

fn action(a: Action) -> SdkAction {
    match a {
        Action::Continue => SdkAction::Continue,
        Action::Pause => SdkAction::Pause,
    }
}

struct AuthRoot {
    worker: Option<Rc<Worker<AbiHost>>>,
}

impl Context for AuthRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if let Some(w) = &self.worker {
            w.on_call_response(token, body_size);
        }
    }
}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.worker = AbiHost::plugin_configuration().and_then(|bytes| Worker::configure(AbiHost, &bytes)).map(Rc::new);
        self.worker.is_some()
    }

    fn on_tick(&mut self) {
        if let Some(w) = &self.worker {
            w.on_tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Never None (the SDK panics on it): without a configuration every request fails closed.
        Some(Box::new(AuthFilter { worker: self.worker.clone(), context_id }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuthFilter {
    worker: Option<Rc<Worker<AbiHost>>>,
    context_id: u32,
}

impl AuthFilter {
    fn run(&self, f: impl FnOnce(&Worker<AbiHost>, u32) -> Action) -> SdkAction {
        match &self.worker {
            Some(w) => action(f(w, self.context_id)),
            None => action(super::stream::refuse_unconfigured(&AbiHost)),
        }
    }
}

impl Context for AuthFilter {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if let Some(w) = &self.worker {
            w.on_call_response(token, body_size);
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(w) = &self.worker {
            w.on_done(self.context_id);
        }
        true
    }
}

impl HttpContext for AuthFilter {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> SdkAction {
        self.run(|w, ctx| w.on_request_headers(ctx, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> SdkAction {
        self.run(|w, ctx| w.on_request_body(ctx, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> SdkAction {
        self.run(|w, ctx| w.on_request_trailers(ctx))
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> SdkAction {
        match &self.worker {
            Some(w) => action(w.on_response_headers(self.context_id)),
            None => SdkAction::Continue,
        }
    }
}
