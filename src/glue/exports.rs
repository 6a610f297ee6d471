//! The filter's side of the proxy-wasm ABI (v0.2.1): the functions the host calls, mapped onto
//! `Worker<AbiHost>`, one line per callback.
//!
//! The filter exports these itself instead of linking the SDK's dispatcher, for two reasons:
//! - the host calls only what a module exports, and the SDK exports every callback of the ABI.
//!   Envoy then enters the VM for each of them on every request (`on_response_body`, `on_log`,
//!   `on_done`...) although this filter has nothing to do there. Exported here is what the
//!   filter uses: a request costs four calls into the VM (create, request headers, response
//!   headers, delete) and one per response body chunk (where MCP `tools/list` answers are
//!   filtered; others return at once) instead of seven or more;
//! - the SDK's dispatcher panics on what it does not expect (an unknown context or call token,
//!   a root context that declines a stream), and a panic kills the VM with every request on it.
//!
//! A VM may hold several root contexts (one per plugin configuration sharing it, and an old one
//! and a new one while a configuration is replaced): each HTTP context belongs to the root it
//! was created under, and is judged with that root's configuration.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use super::abi::AbiHost;
use super::{Action, Level, Worker};

type Shared = Rc<Worker<AbiHost>>;

/// Context ids are small sequential integers from the host: no need for SipHash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Default)]
struct Vm {
    /// Root contexts, with their worker once `on_configure` accepted the configuration.
    roots: Vec<(u32, Option<Shared>)>,
    /// The root context of every live HTTP context.
    streams: HashMap<u32, u32, BuildHasherDefault<IdHasher>>,
}

impl Vm {
    fn root(&self, id: u32) -> Option<&Option<Shared>> {
        self.roots.iter().find(|(r, _)| *r == id).map(|(_, w)| w)
    }

    /// The worker of a context, root or HTTP. The outer `None`: the context is unknown.
    fn worker(&self, context: u32) -> Option<Option<Shared>> {
        let root = self.streams.get(&context).copied().unwrap_or(context);
        self.root(root).cloned()
    }
}

thread_local! {
    static VM: RefCell<Vm> = RefCell::new(Vm::default());
}

/// The worker of a context, taken out of the VM's table so that no borrow is held while it
/// runs (a host call may enter the VM again).
fn worker_of(context: u32) -> Option<Option<Shared>> {
    VM.with(|vm| vm.borrow().worker(context))
}

fn code(action: Action) -> u32 {
    match action {
        Action::Continue => 0,
        Action::Pause => 1,
    }
}

/// Runs a stream callback on its worker; a stream without a configured worker is refused.
fn on_stream(context: u32, f: impl FnOnce(&Worker<AbiHost>) -> Action) -> u32 {
    match worker_of(context) {
        Some(Some(w)) => code(f(&w)),
        _ => code(super::stream::refuse_unconfigured(&AbiHost)),
    }
}

/// Installs the logger and the panic hook; called once by `_initialize`.
pub fn install() {
    // Our own logger: nothing of it can fail in a way that stops the VM.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    // panic = "abort": say where before the VM dies. The message is ours, never request data.
    std::panic::set_hook(Box::new(|info| AbiHost::log(Level::Critical, &format!("api-auth-filter panicked: {info}"))));
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

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// The WASI reactor's start: static constructors, then the filter's logger and panic hook.
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: called once, by the host, before any other export (the reactor convention).
    unsafe {
        __wasm_call_ctors();
    }
    install();
}

/// Tells the host which ABI this module speaks.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Memory the host fills for us (headers, bodies, properties): a `Vec<u8>` of exactly `size`
/// bytes, which `abi::take` turns back into one.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut bytes = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(size));
    bytes.as_mut_ptr()
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context: u32, parent: u32) {
    VM.with(|vm| {
        let mut vm = vm.borrow_mut();
        if parent == 0 {
            vm.roots.push((context, None));
        } else {
            vm.streams.insert(context, parent);
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root: u32, _vm_configuration_size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root: u32, _plugin_configuration_size: usize) -> u32 {
    let worker = AbiHost::plugin_configuration().and_then(|bytes| Worker::configure(AbiHost, &bytes)).map(Rc::new);
    let accepted = worker.is_some();
    VM.with(|vm| {
        let mut vm = vm.borrow_mut();
        match vm.roots.iter_mut().find(|(r, _)| *r == root) {
            Some(entry) => entry.1 = worker,
            None => vm.roots.push((root, worker)),
        }
    });
    u32::from(accepted)
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root: u32) {
    if let Some(Some(w)) = worker_of(root) {
        w.on_tick();
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context: u32, _headers: usize, end_of_stream: u32) -> u32 {
    on_stream(context, |w| w.on_request_headers(context, end_of_stream != 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context: u32, body_size: usize, end_of_stream: u32) -> u32 {
    on_stream(context, |w| w.on_request_body(context, body_size, end_of_stream != 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context: u32, _trailers: usize) -> u32 {
    on_stream(context, |w| w.on_request_trailers(context))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context: u32, _headers: usize, _end_of_stream: u32) -> u32 {
    match worker_of(context) {
        Some(Some(w)) => code(w.on_response_headers(context)),
        _ => code(Action::Continue),
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(context: u32, body_size: usize, end_of_stream: u32) -> u32 {
    match worker_of(context) {
        Some(Some(w)) => code(w.on_response_body(context, body_size, end_of_stream != 0)),
        _ => code(Action::Continue),
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(context: u32, _trailers: usize) -> u32 {
    match worker_of(context) {
        Some(Some(w)) => code(w.on_response_trailers(context)),
        _ => code(Action::Continue),
    }
}

/// The last callback of a context. For a stream it is where the worker forgets the request
/// (`on_done` and `on_log` are not exported: the host then goes straight on).
#[no_mangle]
pub extern "C" fn proxy_on_delete(context: u32) {
    let root = VM.with(|vm| vm.borrow_mut().streams.remove(&context));
    match root {
        Some(root) => {
            if let Some(Some(w)) = worker_of(root) {
                w.on_done(context);
            }
        }
        None => VM.with(|vm| vm.borrow_mut().roots.retain(|(r, _)| *r != context)),
    }
}

/// The answer to a call dispatched from `context` (the root's, or a stream's).
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(context: u32, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
    if let Some(Some(w)) = worker_of(context) {
        w.on_call_response(token, body_size);
    }
}
