//! What the filter answers itself: a denial rendered in the route's error format, with its
//! challenge and correlation id, the gRPC way for a gRPC request. The engine, MCP judging and
//! the glue answer through it.

use crate::config::Config;
use crate::credentials::Headers;
use crate::deny::{self, ChallengeInfo, Denial, LocalResponse};

pub(crate) fn add_correlation(cfg: &Config, headers: &mut Vec<(String, String)>, cid: Option<&str>) {
    if let (Some(c), Some(id)) = (&cfg.correlation, cid) {
        headers.push((c.header.clone(), id.to_string()));
    }
}

/// The response for a denial on a route (its error format, challenge and correlation id).
pub fn deny_response(cfg: &Config, route: Option<usize>, denial: &Denial, cid: Option<&str>) -> LocalResponse {
    respond(cfg, route, denial, cid, false)
}

/// Whether a request is gRPC (its denials carry a grpc-status, not a JSON body), exactly as
/// Envoy decides it (`Grpc::Common::hasGrpcContentType`), which alone decides whether Envoy
/// sends a local reply the gRPC way: the content type is `application/grpc` or begins with
/// `application/grpc+`, compared byte for byte (case-sensitive, parameters not read). So
/// `application/grpc-web`, `application/grpcx`, `application/grpc;charset=utf-8` and
/// `Application/gRPC` are not gRPC: a gRPC answer (an HTTP 200 with its status in grpc-status)
/// to a request Envoy does not take for gRPC would reach the client as a plain HTTP 200.
/// Envoy holds repeated content-type headers as one value, the non-empty ones joined with `,`:
/// that value is judged (`application/grpc` twice is `application/grpc,application/grpc`, not
/// gRPC; `application/grpc+proto` first stays gRPC).
pub fn is_grpc(headers: &Headers<'_>) -> bool {
    let mut values = headers.iter().filter(|(n, v)| *n == "content-type" && !v.is_empty()).map(|(_, v)| *v);
    let Some(first) = values.next() else {
        return false;
    };
    match first.strip_prefix(b"application/grpc".as_slice()) {
        Some([]) => values.next().is_none(),
        Some([b'+', ..]) => true,
        _ => false,
    }
}

pub(crate) fn respond(cfg: &Config, route: Option<usize>, denial: &Denial, cid: Option<&str>, grpc: bool) -> LocalResponse {
    let format_index = route.and_then(|i| cfg.routes.get(i)).map_or(cfg.default_format, |r| r.format);
    let fallback = deny::ErrorFormat::builtin(deny::Builtin::Detail);
    let format = cfg.formats.get(format_index).unwrap_or(&fallback);
    let challenge = ChallengeInfo { resource_metadata: cfg.protected_resource.as_ref().map(|p| p.metadata_url.as_str()) };
    let mut response = deny::render_for(denial, format, challenge, grpc);
    add_correlation(cfg, &mut response.headers, cid);
    response
}
