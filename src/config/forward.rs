//! `forward` and `filter_state`: what an allowed request carries upstream, and what it leaves
//! in Envoy's filter state.

use super::raw::RawForward;
use super::{header_name, ConfigError};
use crate::principal::Field;

#[derive(Debug)]
pub struct Forward {
    pub strip_credentials: bool,
    /// (lower-case header name, principal field)
    pub headers: Vec<(String, Field)>,
    /// The distinct claim paths the headers forward (`claim:<path>`), by slot: a JWT
    /// principal keeps only these claims' values (`principal::ClaimValues`).
    pub claim_paths: Vec<Vec<String>>,
    /// Method and path override headers: removed or refused (`overrides`).
    pub overrides: crate::overrides::Overrides,
}

#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn compile_forward(raw: Option<RawForward>, key_headers: &[String]) -> Result<Forward, ConfigError> {
    let Some(raw) = raw else {
        let overrides = crate::overrides::Overrides::default();
        return Ok(Forward { strip_credentials: true, headers: Vec::new(), claim_paths: Vec::new(), overrides });
    };
    let mut headers = Vec::with_capacity(raw.headers.len());
    let mut claim_paths: Vec<Vec<String>> = Vec::new();
    for (name, field) in &raw.headers {
        let path = format!("forward.headers.{name}");
        let lname = header_name(&path, name)?;
        if lname == "authorization" || key_headers.contains(&lname) || lname.starts_with(':') || lname == "host" {
            return Err(ConfigError::new(path, "cannot overwrite a credential or pseudo header"));
        }
        let mut f = Field::parse(field).ok_or_else(|| ConfigError::new(&path, format!("unknown principal field '{field}'")))?;
        if let Field::Claim(c) = &mut f {
            c.slot = match claim_paths.iter().position(|p| *p == c.path) {
                Some(slot) => slot,
                None => {
                    claim_paths.push(c.path.clone());
                    claim_paths.len() - 1
                }
            };
        }
        headers.push((lname, f));
    }
    let overrides = crate::overrides::Overrides::compile(raw.override_headers.as_ref())?;
    Ok(Forward { strip_credentials: raw.strip_credentials.unwrap_or(true), headers, claim_paths, overrides })
}

/// Filter state is written only where configured: each field is a host call and an object in
/// Envoy's filter state on every allowed request (about 1 µs each, measured with `make bench`),
/// and most deployments read none (jwt_authn's `payload_in_metadata` is opt-in for the same
/// reason).
#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn compile_filter_state(given: Option<&[String]>) -> Result<Vec<(String, Field)>, ConfigError> {
    let names = given.unwrap_or_default();
    let mut out: Vec<(String, Field)> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let path = format!("filter_state[{i}]");
        let field = Field::parse(name).ok_or_else(|| ConfigError::new(&path, format!("unknown principal field '{name}'")))?;
        if matches!(field, Field::Claim(_)) {
            return Err(ConfigError::new(path, "claims are not written to filter state; forward them as a header"));
        }
        let key = format!("api_auth.{name}");
        if out.iter().any(|(k, _)| *k == key) {
            return Err(ConfigError::new(path, "listed twice"));
        }
        out.push((key, field));
    }
    Ok(out)
}
