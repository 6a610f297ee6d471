//! Authorisation: what the route requires of an authenticated principal (permissions,
//! scopes, roles), and the organisation and workspace it may act in.

use crate::config::{AuthRequirements, Config};
use crate::credentials::Headers;
use crate::deny::{Denial, Reason};
use crate::grants;
use crate::principal::Principal;

/// Every requirement of the route, in the documented order; the organisation and workspace
/// headers settle the principal's context.
pub(super) fn authorize(
    cfg: &Config,
    auth: &AuthRequirements,
    captures: &[&str],
    headers: &Headers<'_>,
    p: &mut Principal,
) -> Result<(), Denial> {
    if !p.full_access {
        for req in &auth.permissions {
            let needed = req.resolve(captures).map_err(|t| Denial::with_detail(Reason::PermissionDenied, t))?;
            if !grants::grants(&p.permissions, &needed) {
                return Err(Denial::with_detail(Reason::PermissionDenied, needed));
            }
        }
        for req in &auth.scopes {
            let needed = req.resolve(captures).map_err(|t| Denial::with_detail(Reason::InsufficientScope, t))?;
            if !grants::grants(&p.scopes, &needed) {
                return Err(Denial::with_detail(Reason::InsufficientScope, needed));
            }
        }
    }
    if !auth.roles.is_empty() && !auth.roles.iter().any(|r| p.roles.has(r)) {
        return Err(Reason::RoleRequired.into());
    }
    if let Some(org) = header_text(headers, &cfg.organization_header, Reason::OrganizationForbidden)? {
        // The override may only name an organisation the principal can act in: its own, or
        // one its token lists. `full_access` lifts permission and scope checks, never the
        // tenant boundary.
        if p.organization.as_deref() != Some(org) {
            if !p.organizations.has(org) {
                return Err(Reason::OrganizationForbidden.into());
            }
            p.organization = Some(org.into());
        }
    }
    if auth.organization && p.organization.as_deref().is_none_or(str::is_empty) {
        return Err(Reason::OrganizationRequired.into());
    }
    if auth.workspace {
        let ws = header_text(headers, &cfg.workspace_header, Reason::WorkspaceForbidden)?
            .ok_or(Denial::new(Reason::WorkspaceRequired))?;
        if !p.workspaces.has(ws) {
            return Err(Reason::WorkspaceForbidden.into());
        }
        p.workspace = Some(ws.into());
    }
    Ok(())
}

/// The single value of a context header, if sent. Several values, or bytes that are not
/// visible ASCII, name no organisation or workspace the principal may use: `invalid`.
fn header_text<'h>(headers: &'h Headers<'h>, name: &str, invalid: Reason) -> Result<Option<&'h str>, Denial> {
    let Some(value) = crate::text::single_value(headers, name).map_err(|()| Denial::new(invalid))? else { return Ok(None) };
    if !value.iter().all(u8::is_ascii_graphic) {
        return Err(invalid.into());
    }
    let text = std::str::from_utf8(value).map_err(|_| Denial::new(invalid))?;
    Ok((!text.is_empty()).then_some(text))
}

