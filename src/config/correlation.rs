//! `correlation_id`: the header that carries a request's correlation id.

use super::raw::RawCorrelationId;
use super::{header_name, ConfigError};
use crate::correlation::Correlation;

#[inline(never)] // one function for V8's compiler: see `config::compile`
pub fn correlation(raw: &RawCorrelationId) -> Result<Correlation, ConfigError> {
    let header = header_name("correlation_id.header", raw.header.as_deref().unwrap_or("x-correlation-id"))?;
    Ok(Correlation { header, generate: raw.generate.unwrap_or(true) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_headers_are_header_names() {
        let raw = |h: &str| RawCorrelationId { header: Some(h.into()), generate: None };
        assert_eq!(correlation(&raw("X-Correlation-Id")).map(|c| c.header), Ok("x-correlation-id".to_string()));
        assert_eq!(correlation(&raw("bad header")).map_err(|e| e.path), Err("correlation_id.header".to_string()));
    }
}
