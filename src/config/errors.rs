//! `errors` and `error_formats`: the built-in formats and the custom ones made from them.

use std::collections::HashMap;

use super::raw::RawErrorFormat;
use super::shape::Named;
use super::ConfigError;
use crate::deny::{Builtin, ErrorFormat, Override, Reason};

/// Built-ins first (so index 0 is `detail`), then custom formats.
#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn compile_formats(
    custom: &Named<RawErrorFormat>,
) -> Result<(Vec<ErrorFormat>, HashMap<String, usize>), ConfigError> {
    let mut formats = Vec::new();
    let mut index = HashMap::new();
    for (name, b) in [("detail", Builtin::Detail), ("error", Builtin::Error), ("openai", Builtin::OpenAi), ("anthropic", Builtin::Anthropic)] {
        index.insert(name.to_string(), formats.len());
        formats.push(ErrorFormat::builtin(b));
    }
    for (name, f) in custom {
        let path = format!("error_formats.{name}");
        if index.contains_key(name) {
            return Err(ConfigError::new(path, "a built-in format of that name exists"));
        }
        let base_name = f.base.as_deref().unwrap_or("detail");
        let base = Builtin::parse(base_name).ok_or_else(|| {
            ConfigError::new(format!("{path}.base"), format!("unknown built-in format '{base_name}' (detail, error, openai, anthropic)"))
        })?;
        let mut overrides = HashMap::new();
        for (code, o) in &f.reasons {
            let rpath = format!("{path}.reasons.{code}");
            let reason = Reason::parse(code).ok_or_else(|| ConfigError::new(&rpath, "unknown reason"))?;
            if let Some(s) = o.status {
                if !(400..=599).contains(&s) {
                    return Err(ConfigError::new(format!("{rpath}.status"), "must be a 4xx or 5xx status"));
                }
            }
            overrides.insert(reason, Override { status: o.status, message: o.message.clone(), body: o.body.clone() });
        }
        index.insert(name.clone(), formats.len());
        formats.push(ErrorFormat { base, overrides });
    }
    Ok((formats, index))
}
