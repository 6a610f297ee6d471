//! One vocabulary of denials and one mapping from (reason, format) to the wire.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Declares the reasons once: each row gives the variant, its stable code, its status and its
/// default message, and the enum, `ALL`, `as_str`, `status` and `default_message` follow.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $status:literal, $message:expr;)*) => {
        /// Every way a request can be refused. The code (`as_str`) is stable: it appears in logs,
        /// stats, error bodies and configuration (`error_formats.*.reasons`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Reason {
            pub const ALL: [Reason; [$(stringify!($variant)),*].len()] = [$(Reason::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $code,)*
                }
            }

            pub fn status(self) -> u16 {
                match self {
                    $(Reason::$variant => $status,)*
                }
            }

            pub fn default_message(self) -> &'static str {
                match self {
                    $(Reason::$variant => $message,)*
                }
            }
        }
    };
}

const CREDENTIALS: &str = "Could not validate credentials";

reasons! {
    CredentialsMissing = "credentials_missing", 401, CREDENTIALS;
    CredentialsMalformed = "credentials_malformed", 401, CREDENTIALS;
    CredentialNotAccepted = "credential_not_accepted", 401, CREDENTIALS;
    TokenExpired = "token_expired", 401, CREDENTIALS;
    TokenNotYetValid = "token_not_yet_valid", 401, CREDENTIALS;
    TokenInvalid = "token_invalid", 401, CREDENTIALS;
    IssuerUnknown = "issuer_unknown", 401, CREDENTIALS;
    AudienceMismatch = "audience_mismatch", 401, CREDENTIALS;
    PartyNotAuthorized = "party_not_authorized", 401, CREDENTIALS;
    SessionPending = "session_pending", 401, CREDENTIALS;
    KeyUnknown = "key_unknown", 401, CREDENTIALS;
    KeyRevoked = "key_revoked", 401, CREDENTIALS;
    KeyExpired = "key_expired", 401, CREDENTIALS;
    PermissionDenied = "permission_denied", 403, "Permission denied: {permission}";
    InsufficientScope = "insufficient_scope", 403, "Insufficient scope: {scope}";
    RoleRequired = "role_required", 403, "Insufficient role";
    OrganizationRequired = "organization_required", 403, "Organization required";
    OrganizationForbidden = "organization_forbidden", 403, "Forbidden";
    WorkspaceForbidden = "workspace_forbidden", 403, "Forbidden";
    WorkspaceRequired = "workspace_required", 400, "Workspace required";
    SignatureInvalid = "signature_invalid", 401, "Invalid signature";
    BodyTooLarge = "body_too_large", 413, "Payload too large";
    RouteNotFound = "route_not_found", 404, "Not found";
    KeysUnavailable = "keys_unavailable", 503, "Service unavailable";
    /// The `:path` still holds what Envoy's path normalisation removes: the filter would not
    /// judge the path the router routes.
    PathNotNormalized = "path_not_normalized", 400, "Bad request";
    /// A method with a lower-case letter: methods are case-sensitive, and `get` is not `GET`.
    MethodInvalid = "method_invalid", 400, "Bad request";
    /// A token from a cookie on an unsafe method without an allowed `Origin`: a browser sends
    /// cookies without its user's intent (cross-site request forgery).
    OriginForbidden = "origin_forbidden", 403, "Forbidden";
    /// An MCP route's body is not one strict JSON text (JSON-RPC -32700).
    McpParseError = "mcp_parse_error", 400, "Parse error";
    /// An MCP route's body is JSON but not one JSON-RPC 2.0 message the filter judges (-32600).
    McpInvalidRequest = "mcp_invalid_request", 400, "Invalid Request";
    /// `Mcp-Method` or `Mcp-Name` disagrees with the body.
    McpHeaderMismatch = "mcp_header_mismatch", 400, "Mcp-Method or Mcp-Name does not match the body";
    /// A method or path override header, with `forward.override_headers.action: "refuse"`.
    OverrideHeaderRefused = "override_header_refused", 400, "Bad request";
    /// A forwarded list field holds an item the header cannot carry as one item
    /// (`principal::list_item_ok`).
    IdentityUnforwardable = "identity_unforwardable", 401, CREDENTIALS;
    /// Envoy would not give what the decision needs (headers, a body) or take what it made (a
    /// header, filter state): never guessed, so refused.
    HostError = "host_error", 503, "Service unavailable";
    /// A request reached a filter whose configuration did not load: no format to render in,
    /// so the default one.
    Unconfigured = "unconfigured", 503, "Service unavailable";
}

impl Reason {
    pub fn parse(code: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == code)
    }

    /// A 401 caused by a credential that was presented (as opposed to none at all) tells the
    /// client its token is bad (RFC 6750 §3.1).
    fn is_invalid_token(self) -> bool {
        self.status() == 401 && !matches!(self, Reason::CredentialsMissing | Reason::SignatureInvalid)
    }
}

/// A denial: the reason and what fills the placeholders of its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    /// The scope or permission that was missing, for `{scope}` / `{permission}`.
    pub detail: Option<String>,
}

impl Denial {
    pub fn new(reason: Reason) -> Self {
        Denial { reason, detail: None }
    }

    pub fn with_detail(reason: Reason, detail: impl Into<String>) -> Self {
        Denial { reason, detail: Some(detail.into()) }
    }
}

impl From<Reason> for Denial {
    fn from(reason: Reason) -> Self {
        Denial::new(reason)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Detail,
    Error,
    OpenAi,
    Anthropic,
}

impl Builtin {
    pub fn parse(name: &str) -> Option<Builtin> {
        match name {
            "detail" => Some(Builtin::Detail),
            "error" => Some(Builtin::Error),
            "openai" => Some(Builtin::OpenAi),
            "anthropic" => Some(Builtin::Anthropic),
            _ => None,
        }
    }

    /// The body, with fields in the order the documented APIs send them (serde_json's `Value`
    /// would sort them).
    fn body(self, reason: Reason, status: u16, message: &str) -> String {
        let msg = json_string(message);
        let code = reason.as_str();
        match self {
            Builtin::Detail => format!("{{\"detail\":{msg}}}"),
            Builtin::Error => {
                let code = match status {
                    401 => "unauthorized",
                    403 => "forbidden",
                    _ => code,
                };
                format!("{{\"error\":\"{code}\"}}")
            }
            Builtin::OpenAi => format!("{{\"error\":{{\"message\":{msg},\"type\":\"{code}\",\"code\":\"{code}\"}}}}"),
            Builtin::Anthropic => {
                // Anthropic's documented error types, by status.
                let kind = match status {
                    400 => "invalid_request_error",
                    401 => "authentication_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    413 => "request_too_large",
                    429 => "rate_limit_error",
                    _ => "api_error",
                };
                format!("{{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":{msg}}}}}")
            }
        }
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Per-reason overrides of a format.
#[derive(Debug, Clone, Default)]
pub struct Override {
    pub status: Option<u16>,
    pub message: Option<String>,
    pub body: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct ErrorFormat {
    pub base: Builtin,
    pub overrides: HashMap<Reason, Override>,
}

impl ErrorFormat {
    pub fn builtin(base: Builtin) -> Self {
        ErrorFormat { base, overrides: HashMap::new() }
    }
}

/// A response the filter sends itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Envoy's response-code details (`%RESPONSE_CODE_DETAILS%`): `api_auth.<reason>`.
    pub details: String,
    /// For a gRPC request: the grpc-status; the body is then the plain message, which Envoy
    /// sends as grpc-message in a trailers-only response.
    pub grpc_status: Option<u32>,
}

/// The gRPC status of a denial, from its HTTP status (as gRPC's HTTP mapping reads them).
pub fn grpc_status(http: u16) -> u32 {
    match http {
        400 => 3,  // INVALID_ARGUMENT
        401 => 16, // UNAUTHENTICATED
        403 => 7,  // PERMISSION_DENIED
        404 => 12, // UNIMPLEMENTED: no such method
        413 | 429 => 8, // RESOURCE_EXHAUSTED
        503 => 14, // UNAVAILABLE
        _ => 2,    // UNKNOWN
    }
}

/// What a challenge needs to know beyond the denial itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChallengeInfo<'a> {
    pub resource_metadata: Option<&'a str>,
}

/// Renders a denial in a format: status, `content-type`, `WWW-Authenticate` on every 401 and on
/// insufficient scope, and the JSON body.
pub fn render(denial: &Denial, format: &ErrorFormat, challenge: ChallengeInfo<'_>) -> LocalResponse {
    render_for(denial, format, challenge, false)
}

/// `render`, or for a gRPC request (`grpc`) the same denial as a grpc-status with its plain
/// message: a gRPC client reads no JSON body.
pub fn render_for(denial: &Denial, format: &ErrorFormat, challenge: ChallengeInfo<'_>, grpc: bool) -> LocalResponse {
    let reason = denial.reason;
    let over = format.overrides.get(&reason);
    let status = over.and_then(|o| o.status).unwrap_or_else(|| reason.status());
    let template = over.and_then(|o| o.message.as_deref()).unwrap_or_else(|| reason.default_message());
    let message = fill(template, denial);
    let body = match over.and_then(|o| o.body.as_ref()) {
        Some(custom) => fill_value(custom, denial, &message).to_string(),
        None => format.base.body(reason, status, &message),
    };

    let details = format!("api_auth.{}", reason.as_str());
    let challenge = challenge_header(denial, status, challenge).map(|v| ("www-authenticate".to_string(), v));
    if grpc {
        let headers = challenge.into_iter().collect();
        return LocalResponse { status, headers, body: message.into_bytes(), details, grpc_status: Some(grpc_status(status)) };
    }
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    headers.extend(challenge);
    LocalResponse { status, headers, body: body.into_bytes(), details, grpc_status: None }
}

fn challenge_header(denial: &Denial, status: u16, challenge: ChallengeInfo<'_>) -> Option<String> {
    let mut params: Vec<String> = Vec::new();
    if status == 401 {
        if denial.reason.is_invalid_token() {
            params.push("error=\"invalid_token\"".into());
        }
    } else if denial.reason == Reason::InsufficientScope {
        params.push("error=\"insufficient_scope\"".into());
        if let Some(scope) = &denial.detail {
            params.push(format!("scope=\"{}\"", quoted_string_safe(scope)));
        }
    } else {
        return None;
    }
    if let Some(url) = challenge.resource_metadata {
        params.push(format!("resource_metadata=\"{}\"", quoted_string_safe(url)));
    }
    Some(if params.is_empty() { "Bearer".into() } else { format!("Bearer {}", params.join(", ")) })
}

/// Keeps a value inside an HTTP quoted-string: no quotes, backslashes or control characters.
fn quoted_string_safe(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

/// The message of a denial in a format: the format's override for the reason, or its default.
pub fn message(denial: &Denial, format: &ErrorFormat) -> String {
    let template = format.overrides.get(&denial.reason).and_then(|o| o.message.as_deref()).unwrap_or_else(|| denial.reason.default_message());
    fill(template, denial)
}

fn fill(template: &str, denial: &Denial) -> String {
    let detail = denial.detail.as_deref().unwrap_or("");
    template
        .replace("{reason}", denial.reason.as_str())
        .replace("{scope}", detail)
        .replace("{permission}", detail)
}

fn fill_value(value: &Value, denial: &Denial, message: &str) -> Value {
    match value {
        Value::String(s) => Value::String(fill(&s.replace("{message}", message), denial)),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_value(v, denial, message)).collect()),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k.clone(), fill_value(v, denial, message));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(resp: &LocalResponse) -> Value {
        serde_json::from_slice(&resp.body).unwrap()
    }

    fn header<'a>(resp: &'a LocalResponse, name: &str) -> Option<&'a str> {
        resp.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_reason_round_trips_its_code() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::parse("nope"), None);
    }

    #[test]
    fn builtin_bodies_match_the_documented_contracts() {
        let detail = ErrorFormat::builtin(Builtin::Detail);
        let error = ErrorFormat::builtin(Builtin::Error);
        let openai = ErrorFormat::builtin(Builtin::OpenAi);
        let anthropic = ErrorFormat::builtin(Builtin::Anthropic);
        let none = ChallengeInfo::default();
        let cases: Vec<(Denial, &ErrorFormat, u16, Value)> = vec![
            (Reason::TokenExpired.into(), &detail, 401, json!({"detail":"Could not validate credentials"})),
            (Reason::OrganizationRequired.into(), &detail, 403, json!({"detail":"Organization required"})),
            (
                Denial::with_detail(Reason::InsufficientScope, "tools:platform.create_roadmap_item"),
                &detail,
                403,
                json!({"detail":"Insufficient scope: tools:platform.create_roadmap_item"}),
            ),
            (Reason::KeyUnknown.into(), &error, 401, json!({"error":"unauthorized"})),
            (Reason::RoleRequired.into(), &error, 403, json!({"error":"forbidden"})),
            (Reason::WorkspaceRequired.into(), &error, 400, json!({"error":"workspace_required"})),
            (
                Denial::with_detail(Reason::PermissionDenied, "tts"),
                &openai,
                403,
                json!({"error":{"message":"Permission denied: tts","type":"permission_denied","code":"permission_denied"}}),
            ),
            (
                Reason::CredentialsMissing.into(),
                &anthropic,
                401,
                json!({"type":"error","error":{"type":"authentication_error","message":"Could not validate credentials"}}),
            ),
            (
                Denial::with_detail(Reason::PermissionDenied, "llm"),
                &anthropic,
                403,
                json!({"type":"error","error":{"type":"permission_error","message":"Permission denied: llm"}}),
            ),
            (Reason::KeysUnavailable.into(), &detail, 503, json!({"detail":"Service unavailable"})),
            (Reason::BodyTooLarge.into(), &detail, 413, json!({"detail":"Payload too large"})),
            (Reason::RouteNotFound.into(), &detail, 404, json!({"detail":"Not found"})),
        ];
        for (denial, format, status, want) in cases {
            let resp = render(&denial, format, none);
            assert_eq!(resp.status, status, "{denial:?}");
            assert_eq!(body(&resp), want, "{denial:?}");
            assert_eq!(header(&resp, "content-type"), Some("application/json"));
        }
    }

    #[test]
    fn bodies_keep_the_documented_field_order() {
        let none = ChallengeInfo::default();
        let openai = render(&Denial::with_detail(Reason::PermissionDenied, "tts"), &ErrorFormat::builtin(Builtin::OpenAi), none);
        assert_eq!(
            String::from_utf8(openai.body).unwrap(),
            r#"{"error":{"message":"Permission denied: tts","type":"permission_denied","code":"permission_denied"}}"#
        );
        let anthropic = render(&Reason::KeyUnknown.into(), &ErrorFormat::builtin(Builtin::Anthropic), none);
        assert_eq!(
            String::from_utf8(anthropic.body).unwrap(),
            r#"{"type":"error","error":{"type":"authentication_error","message":"Could not validate credentials"}}"#
        );
        let detail = render(&Reason::OrganizationRequired.into(), &ErrorFormat::builtin(Builtin::Detail), none);
        assert_eq!(String::from_utf8(detail.body).unwrap(), r#"{"detail":"Organization required"}"#);
    }

    #[test]
    fn challenges() {
        let f = ErrorFormat::builtin(Builtin::Detail);
        let meta = ChallengeInfo { resource_metadata: Some("https://api.example/.well-known/oauth-protected-resource") };
        let missing = render(&Reason::CredentialsMissing.into(), &f, ChallengeInfo::default());
        assert_eq!(header(&missing, "www-authenticate"), Some("Bearer"));
        let bad = render(&Reason::TokenInvalid.into(), &f, meta);
        assert_eq!(
            header(&bad, "www-authenticate"),
            Some("Bearer error=\"invalid_token\", resource_metadata=\"https://api.example/.well-known/oauth-protected-resource\"")
        );
        let scope = render(&Denial::with_detail(Reason::InsufficientScope, "bots:write"), &f, ChallengeInfo::default());
        assert_eq!(header(&scope, "www-authenticate"), Some("Bearer error=\"insufficient_scope\", scope=\"bots:write\""));
        let role = render(&Reason::RoleRequired.into(), &f, meta);
        assert_eq!(header(&role, "www-authenticate"), None);
    }

    #[test]
    fn overrides_replace_status_message_and_body() {
        let mut f = ErrorFormat::builtin(Builtin::Detail);
        f.overrides.insert(Reason::RoleRequired, Override { message: Some("Admin role required".into()), ..Default::default() });
        f.overrides.insert(
            Reason::InsufficientScope,
            Override { status: Some(401), body: Some(json!({"err": "{reason}", "msg": "{message}", "n": 1})), ..Default::default() },
        );
        let role = render(&Reason::RoleRequired.into(), &f, ChallengeInfo::default());
        assert_eq!(body(&role), json!({"detail":"Admin role required"}));
        let scope = render(&Denial::with_detail(Reason::InsufficientScope, "a:b"), &f, ChallengeInfo::default());
        assert_eq!(scope.status, 401);
        assert_eq!(body(&scope), json!({"err":"insufficient_scope","msg":"Insufficient scope: a:b","n":1}));
    }

    #[test]
    fn hostile_detail_cannot_break_json_or_headers() {
        let f = ErrorFormat::builtin(Builtin::Detail);
        let d = Denial::with_detail(Reason::InsufficientScope, "a\"}\r\nx: y");
        let resp = render(&d, &f, ChallengeInfo::default());
        assert_eq!(body(&resp)["detail"], "Insufficient scope: a\"}\r\nx: y");
        let h = header(&resp, "www-authenticate").unwrap();
        assert!(!h.contains('\r') && !h.contains('\n') && h.ends_with("scope=\"a}x: y\""), "{h}");
    }
}
