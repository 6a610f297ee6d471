//! The scope an MCP call needs: a template with one variable, filled with a tool or prompt
//! name or a resource URI. Compiled with the configuration, so it needs nothing of it.

/// A scope template with one variable (`tools:{name}`, `resources:{uri}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeTemplate {
    pub text: String,
    before: String,
    after: String,
    /// `{uri}`: any visible ASCII; `{name}`: MCP's tool-name characters.
    uri: bool,
}

/// The longest name or URI a scope is built from.
pub const MAX_NAME_BYTES: usize = 2048;

impl ScopeTemplate {
    /// `variable` is `name` or `uri`.
    pub fn parse(text: &str, variable: &str) -> Result<ScopeTemplate, String> {
        let marker = format!("{{{variable}}}");
        let (before, after) = text.split_once(&marker).ok_or_else(|| format!("must contain {marker}"))?;
        if before.contains(['{', '}', '*']) || after.contains(['{', '}', '*']) || before.is_empty() {
            return Err(format!("must be a scope with text before {marker}, one {marker}, and no other '{{', '}}' or '*'"));
        }
        Ok(ScopeTemplate { text: text.to_string(), before: before.to_string(), after: after.to_string(), uri: variable == "uri" })
    }

    /// The scope for one name. `Err(template)`: the name can never be granted (characters
    /// outside the set, or too long); the template's text names it in the denial.
    pub fn scope(&self, name: &str) -> Result<String, &str> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME_BYTES
            && if self.uri { name.bytes().all(|b| b.is_ascii_graphic() && b != b'*') } else { name.bytes().all(is_tool_name_byte) };
        if !ok {
            return Err(&self.text);
        }
        Ok(format!("{}{}{}", self.before, name, self.after))
    }
}

/// MCP's tool-name characters (2025-11-25: `A-Z a-z 0-9 _ - .`).
pub fn is_tool_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}
