//! Forwarding: the header changes and filter state of an allowed request.

use super::Allow;
use crate::config::Config;
use crate::credentials::{self, Headers};
use crate::principal::Principal;
use crate::text;

/// Header changes for an allowed request: forwarded identity headers are always removed first
/// (so a client cannot forge them), credentials are stripped unless configured otherwise.
/// Only headers the request has are listed for removal: each removal is a host call.
pub(super) fn forward(
    cfg: &Config,
    principal: Option<Principal>,
    route: Option<usize>,
    correlation: Option<String>,
    headers: &Headers<'_>,
    present: &dyn Fn(&str) -> bool,
) -> Allow {
    let fwd = &cfg.forward;
    let mut cookie = None;
    let mut remove: Vec<String> = fwd.headers.iter().map(|(name, _)| name.clone()).filter(|n| present(n)).collect();
    if fwd.strip_credentials {
        if present("authorization") {
            remove.push("authorization".to_string());
        }
        if let Some(k) = &cfg.api_keys {
            remove.extend(k.headers.iter().filter(|n| present(n)).cloned());
        }
    }
    if fwd.strip_credentials && !cfg.cookie_names.is_empty() {
        // A token cookie never reaches the upstream; the other cookies do.
        if let Some(rest) = credentials::without_cookies(headers, &cfg.cookie_names) {
            remove.push("cookie".to_string());
            cookie = (!rest.is_empty()).then_some(rest);
        }
    }
    // Removed from every forwarded request (with `refuse`, none gets here with one).
    for name in fwd.overrides.found(headers) {
        if !remove.iter().any(|r| r == name) {
            remove.push(name.to_string());
        }
    }
    // `x_api_key` is `X-Api-Key` to a CGI/WSGI upstream (HTTP_X_API_KEY), and Envoy passes
    // underscores by default: a twin of a credential or identity header never goes upstream.
    for (name, _) in headers.iter().filter(|(n, _)| n.contains('_')) {
        if cfg.guarded_headers.iter().any(|g| text::is_underscore_twin(name, g)) && !remove.iter().any(|r| r == name) {
            remove.push(name.to_string());
        }
    }
    let mut set = Vec::new();
    let mut state = Vec::new();
    if let Some(p) = &principal {
        for (name, field) in &fwd.headers {
            if let Some(value) = p.field_value(field).filter(|v| header_value_safe(v)) {
                set.push((name.clone(), value));
            }
        }
        for (name, field) in &cfg.filter_state {
            if let Some(value) = p.field_value(field).filter(|v| header_value_safe(v)) {
                state.push((name.clone(), value));
            }
        }
    }
    if let (Some(c), Some(id)) = (&cfg.correlation, &correlation) {
        set.push((c.header.clone(), id.clone()));
    }
    let route_cfg = route.and_then(|i| cfg.routes.get(i));
    let webhook = route_cfg.and_then(|r| r.webhook);
    let mcp = route_cfg.filter(|r| r.mcp.is_some()).map(|_| crate::mcp::HeldHeaders::of(headers));
    Allow { remove, set, cookie, state, principal: principal.map(Box::new), route, webhook, mcp, correlation }
}

/// Claims are attacker-influenced text: nothing that could split or end a header line.
fn header_value_safe(v: &str) -> bool {
    v.len() <= 8192 && v.chars().all(|c| c == '\t' || !c.is_control())
}

