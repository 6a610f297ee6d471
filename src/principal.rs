//! Who a request acts as, once a credential was verified.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jwt,
    ApiKey,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Jwt => "jwt",
            Kind::ApiKey => "api_key",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub kind: Kind,
    pub provider: Option<String>,
    pub key_id: Option<String>,
    pub subject: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub organization: Option<String>,
    /// Further organisations the token lets the principal act in (the provider's
    /// `claims.organizations`): the organisation header may name one of them.
    pub organizations: Vec<String>,
    pub workspaces: Vec<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub scopes: Vec<String>,
    pub full_access: bool,
    /// The active workspace, once a route checked the workspace header.
    pub workspace: Option<String>,
    /// The verified JWT claims, for `claim:<path>` forwarding.
    pub claims: Option<std::rc::Rc<serde_json::Value>>,
}

impl Principal {
    pub fn new(kind: Kind) -> Self {
        Principal {
            kind,
            provider: None,
            key_id: None,
            subject: None,
            email: None,
            name: None,
            organization: None,
            organizations: Vec::new(),
            workspaces: Vec::new(),
            roles: Vec::new(),
            permissions: Vec::new(),
            scopes: Vec::new(),
            full_access: false,
            workspace: None,
            claims: None,
        }
    }

    /// The value of a field as a header value (lists joined with `,`); `None` when empty.
    pub fn field_value(&self, field: &Field) -> Option<String> {
        let joined = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
        match field {
            Field::Kind => Some(self.kind.as_str().to_string()),
            Field::Provider => self.provider.clone(),
            Field::KeyId => self.key_id.clone(),
            Field::Subject => self.subject.clone(),
            Field::Email => self.email.clone(),
            Field::Name => self.name.clone(),
            Field::Organization => self.organization.clone(),
            Field::Workspaces => joined(&self.workspaces),
            Field::Workspace => self.workspace.clone(),
            Field::Roles => joined(&self.roles),
            Field::Permissions => joined(&self.permissions),
            Field::Scopes => joined(&self.scopes),
            Field::FullAccess => Some(self.full_access.to_string()),
            Field::Claim(path) => {
                let mut v: &serde_json::Value = self.claims.as_deref()?;
                for part in path {
                    v = v.get(part)?;
                }
                match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    serde_json::Value::Bool(b) => Some(b.to_string()),
                    serde_json::Value::Array(items) => {
                        let parts: Vec<String> = items
                            .iter()
                            .filter_map(|i| match i {
                                serde_json::Value::String(s) => Some(s.clone()),
                                serde_json::Value::Number(n) => Some(n.to_string()),
                                _ => None,
                            })
                            .collect();
                        joined(&parts)
                    }
                    _ => None,
                }
            }
        }
    }
}

/// A principal field named in `forward.headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Kind,
    Provider,
    KeyId,
    Subject,
    Email,
    Name,
    Organization,
    Workspaces,
    Workspace,
    Roles,
    Permissions,
    Scopes,
    FullAccess,
    Claim(Vec<String>),
}

impl Field {
    pub fn parse(s: &str) -> Option<Field> {
        Some(match s {
            "kind" => Field::Kind,
            "provider" => Field::Provider,
            "key_id" => Field::KeyId,
            "subject" => Field::Subject,
            "email" => Field::Email,
            "name" => Field::Name,
            "organization" => Field::Organization,
            "workspaces" => Field::Workspaces,
            "workspace" => Field::Workspace,
            "roles" => Field::Roles,
            "permissions" => Field::Permissions,
            "scopes" => Field::Scopes,
            "full_access" => Field::FullAccess,
            _ => {
                let path = s.strip_prefix("claim:")?;
                let parts: Vec<String> = path.split('.').map(str::to_string).collect();
                if parts.iter().any(String::is_empty) {
                    return None;
                }
                Field::Claim(parts)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_render_as_header_values() {
        let mut p = Principal::new(Kind::Jwt);
        p.roles = vec!["admin".into(), "member".into()];
        p.subject = Some("usr_1".into());
        p.claims = Some(std::rc::Rc::new(json!({"email": "a@b.c", "o": {"id": "org_1", "n": 3}, "list": ["x", 2, {"no": 1}]})));
        assert_eq!(p.field_value(&Field::Roles).as_deref(), Some("admin,member"));
        assert_eq!(p.field_value(&Field::Scopes), None);
        assert_eq!(p.field_value(&Field::Kind).as_deref(), Some("jwt"));
        assert_eq!(p.field_value(&Field::parse("claim:o.id").unwrap()).as_deref(), Some("org_1"));
        assert_eq!(p.field_value(&Field::parse("claim:o.n").unwrap()).as_deref(), Some("3"));
        assert_eq!(p.field_value(&Field::parse("claim:list").unwrap()).as_deref(), Some("x,2"));
        assert_eq!(p.field_value(&Field::parse("claim:o.missing").unwrap()), None);
        assert_eq!(Field::parse("claim:"), None);
        assert_eq!(Field::parse("claim:a..b"), None);
        assert_eq!(Field::parse("subjects"), None);
    }
}
