//! A `tools/list` answer on an MCP route, on its way back: held whole, then filtered to the
//! tools the principal's scopes grant (`mcp::ToolFilter`); one the filter cannot read is
//! replaced by a JSON-RPC error, never passed unfiltered.

use crate::mcp::{filter_tool_list, Framing, ToolFilter, MAX_TOOL_LIST_BYTES};

use super::stream::{Action, Stream};
use super::{Body, Host, Worker};

impl<H: Host> Worker<H> {
    /// The answer's framing, from its headers: its length goes (the body will change), and an
    /// answer of another type will be replaced by a JSON-RPC error.
    pub(crate) fn frame_tool_list(&self, ctx: u32) {
        let framing = Framing::of(self.host.response_header("content-type").ok().flatten().as_deref());
        let _ = self.host.set_response_header("content-length", None);
        if framing == Framing::Other {
            // Whatever comes is replaced by a JSON-RPC error: say so.
            let _ = self.host.set_response_header("content-type", Some(b"application/json"));
        }
        if let Some(Stream::FilteringTools(f)) = self.st.borrow_mut().streams.get_mut(&ctx) {
            f.framing = Some(framing);
        }
    }

    /// `on_http_response_body`: a `tools/list` answer is held whole, then filtered; every other
    /// answer passes.
    pub fn on_response_body(&self, ctx: u32, size: usize, end_of_stream: bool) -> Action {
        let filter = {
            let st = self.st.borrow();
            if st.streams.is_empty() {
                return Action::Continue;
            }
            match st.streams.get(&ctx) {
                Some(Stream::FilteringTools(f)) => f.clone(),
                _ => return Action::Continue,
            }
        };
        if filter.replaced {
            // Over the bound: what follows the error is dropped.
            let _ = self.host.set_body(Body::Response, size, b"");
            return Action::Continue;
        }
        if size > MAX_TOOL_LIST_BYTES {
            log::warn!("api-auth-filter: a tools/list answer over {} bytes was replaced", MAX_TOOL_LIST_BYTES);
            if self.host.set_body(Body::Response, size, &filter.unreadable()).is_err() {
                let _ = self.host.reset_request();
            }
            if let Some(Stream::FilteringTools(f)) = self.st.borrow_mut().streams.get_mut(&ctx) {
                f.replaced = true;
            }
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.finish_tool_list(ctx, &filter, size)
    }

    /// `on_http_response_trailers`: trailers end a held answer.
    pub fn on_response_trailers(&self, ctx: u32) -> Action {
        let filter = match self.st.borrow().streams.get(&ctx) {
            Some(Stream::FilteringTools(f)) if !f.replaced => f.clone(),
            _ => return Action::Continue,
        };
        let size = self.host.body(Body::Response, MAX_TOOL_LIST_BYTES + 1).ok().flatten().map_or(0, |b| b.len());
        self.finish_tool_list(ctx, &filter, size)
    }

    /// Filters the whole held `tools/list` answer; one the filter cannot read (or get) is
    /// replaced by a JSON-RPC error, never passed unfiltered.
    fn finish_tool_list(&self, ctx: u32, filter: &ToolFilter, size: usize) -> Action {
        self.st.borrow_mut().streams.remove(&ctx);
        let config = self.config();
        let framing = filter.framing.unwrap_or(Framing::Other);
        let body = self.host.body(Body::Response, size).ok().flatten().unwrap_or_default();
        let out = if body.len() == size { filter_tool_list(&body, framing, &|name| filter.grants(&config, name)) } else { None };
        let out = out.unwrap_or_else(|| filter.unreadable());
        if self.host.set_body(Body::Response, size, &out).is_err() {
            let _ = self.host.reset_request();
        }
        Action::Continue
    }
}
