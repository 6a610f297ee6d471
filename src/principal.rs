//! Who a request acts as, once a credential was verified.
//!
//! A principal is what the verified-token cache keeps per token, so it is compact and cheap to
//! clone: every text is an `Rc<str>` and every list a shared boxed slice (no capacity slack),
//! a clone only counts references, and of the claims only the values a `claim:<path>` field
//! forwards are kept, rendered when the token was verified.

use std::ops::Deref;
use std::rc::Rc;

use crate::jwt::{self, ClaimPaths, Split};

/// The kinds of credential, declared here once: the configuration's `credentials` words, the
/// `kind` field (a forwarded header, filter state), the `allowed_by.<kind>` counters and
/// `api-auth explain` all read them from `Kind::ALL` and `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jwt,
    ApiKey,
    /// An opaque bearer token, verified by its provider's introspection endpoint.
    Opaque,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Jwt, Kind::ApiKey, Kind::Opaque];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Jwt => "jwt",
            Kind::ApiKey => "api_key",
            Kind::Opaque => "opaque",
        }
    }

    pub fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == word)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of credential kinds: those a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kinds(u8);

impl Kinds {
    pub const NONE: Kinds = Kinds(0);

    /// Every kind: a route that names none.
    pub fn all() -> Kinds {
        Kind::ALL.into_iter().fold(Kinds::NONE, Kinds::with)
    }

    pub fn with(self, kind: Kind) -> Kinds {
        Kinds(self.0 | kind.bit())
    }

    pub fn contains(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every kind of `self` is in `other`.
    pub fn is_subset(self, other: Kinds) -> bool {
        self.0 & !other.0 == 0
    }

    /// The kinds of the set, in `Kind::ALL` order.
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// A shared text of a principal.
pub type Text = Rc<str>;

/// A list of names (roles, scopes, ...), shared between clones; an empty list allocates nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names(Option<Rc<[Box<str>]>>);

impl Names {
    pub fn new<S: Into<Box<str>>>(items: impl IntoIterator<Item = S>) -> Names {
        let items: Box<[Box<str>]> = items.into_iter().map(Into::into).collect();
        Names((!items.is_empty()).then(|| Rc::from(items)))
    }

    /// Whether `name` is in the list.
    pub fn has(&self, name: &str) -> bool {
        self.iter().any(|n| &**n == name)
    }

    /// The names joined with `,`; `None` when empty.
    pub fn joined(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.join(","))
    }
}

impl Deref for Names {
    type Target = [Box<str>];
    fn deref(&self) -> &[Box<str>] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl serde::Serialize for Names {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(|n| &**n))
    }
}

impl From<Vec<String>> for Names {
    fn from(v: Vec<String>) -> Names {
        Names::new(v)
    }
}

/// The forwarded claims' values of a JWT principal, by the configuration's claim slot (see
/// `Field::Claim`), each rendered as a header value when the token was verified; and whether
/// one of them is a list with an item a header cannot carry as one item (`list_item_ok`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimValues(Option<Rc<[Option<Box<str>>]>>, bool);

impl ClaimValues {
    /// The values of `paths` (the configuration's claim slots, in order) in a token's claims.
    pub fn extract(claims: &serde_json::Value, paths: &[Vec<String>]) -> ClaimValues {
        if paths.is_empty() {
            return ClaimValues(None, false);
        }
        let values: Box<[Option<Box<str>>]> = paths.iter().map(|p| render_claim(claims, p).map(String::into_boxed_str)).collect();
        let unforwardable = paths.iter().any(|p| !claim_list_ok(claims, p));
        ClaimValues(Some(Rc::from(values)), unforwardable)
    }

    /// Whether every forwarded list claim can be forwarded item for item.
    pub fn forwardable(&self) -> bool {
        !self.1
    }

    pub fn get(&self, slot: usize) -> Option<&str> {
        self.0.as_deref()?.get(slot)?.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// A claim as a header value: a string, number or bool as written, an array as its strings and
/// numbers joined with `,`; `None` for anything else or an absent claim.
pub fn render_claim(claims: &serde_json::Value, path: &[String]) -> Option<String> {
    let mut v = claims;
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
            (!parts.is_empty()).then(|| parts.join(","))
        }
        _ => None,
    }
}

/// Whether a list item reaches the upstream as the same one item once joined with `,`: no `,`
/// (it would be two items), no control character (a header cannot carry it), no leading or
/// trailing white space (readers trim each item, so ` admin` would read as `admin`).
pub fn list_item_ok(item: &str) -> bool {
    !item.contains(',') && !item.chars().any(char::is_control) && item.trim_matches([' ', '\t']) == item
}

/// Whether a claim that `render_claim` joins (an array) has only items `list_item_ok` takes.
fn claim_list_ok(claims: &serde_json::Value, path: &[String]) -> bool {
    let mut v = claims;
    for part in path {
        match v.get(part) {
            Some(next) => v = next,
            None => return true,
        }
    }
    match v {
        serde_json::Value::Array(items) => items.iter().all(|i| i.as_str().is_none_or(list_item_ok)),
        _ => true,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub kind: Kind,
    pub provider: Option<Text>,
    pub key_id: Option<Text>,
    pub subject: Option<Text>,
    pub email: Option<Text>,
    pub name: Option<Text>,
    pub organization: Option<Text>,
    /// Further organisations the token lets the principal act in (the provider's
    /// `claims.organizations`): the organisation header may name one of them.
    pub organizations: Names,
    pub workspaces: Names,
    pub roles: Names,
    pub permissions: Names,
    pub scopes: Names,
    pub full_access: bool,
    /// The active workspace, once a route checked the workspace header.
    pub workspace: Option<Text>,
    /// The values of the forwarded `claim:<path>` fields (JWT principals).
    pub claims: ClaimValues,
}

impl Principal {
    /// An estimate of the memory its texts and lists hold beyond the struct (a cached
    /// introspection answer's bound): each item with the 16 bytes of its allocation.
    pub fn approx_bytes(&self) -> usize {
        let list = |v: &Names| v.iter().map(|s| s.len() + 16).sum::<usize>() + 16;
        let text = |t: &Option<Text>| t.as_ref().map_or(0, |s| s.len() + 16);
        let claims = self.claims.0.as_ref().map_or(0, |v| v.iter().map(|c| c.as_ref().map_or(8, |s| s.len() + 24)).sum());
        [&self.provider, &self.key_id, &self.subject, &self.email, &self.name, &self.organization, &self.workspace].into_iter().map(text).sum::<usize>()
            + [&self.organizations, &self.workspaces, &self.roles, &self.permissions, &self.scopes].into_iter().map(list).sum::<usize>()
            + claims
    }

    pub fn new(kind: Kind) -> Self {
        Principal {
            kind,
            provider: None,
            key_id: None,
            subject: None,
            email: None,
            name: None,
            organization: None,
            organizations: Names::default(),
            workspaces: Names::default(),
            roles: Names::default(),
            permissions: Names::default(),
            scopes: Names::default(),
            full_access: false,
            workspace: None,
            claims: ClaimValues::default(),
        }
    }

    /// The principal a verified token's claims give: its fields at the provider's claim paths
    /// (`paths`) and, of the other claims, only the values `forwarded` names (the
    /// configuration's `claim:<path>` slots).
    pub fn from_claims(claims: &serde_json::Value, provider: Text, paths: &ClaimPaths, full_access: bool, forwarded: &[Vec<String>]) -> Self {
        let text = |found: Option<String>| found.map(Text::from);
        let mut p = Principal::new(Kind::Jwt);
        p.provider = Some(provider);
        p.subject = text(jwt::first_string(claims, &paths.subject));
        p.email = text(jwt::first_string(claims, &paths.email));
        p.name = text(jwt::first_string(claims, &paths.name));
        p.organization = text(jwt::first_string(claims, &paths.organization));
        p.organizations = jwt::first_list(claims, &paths.organizations, Split::Comma).into();
        p.workspaces = jwt::first_list(claims, &paths.workspaces, Split::None).into();
        p.roles = jwt::first_list(claims, &paths.roles, Split::None).into();
        p.permissions = jwt::first_list(claims, &paths.permissions, Split::Comma).into();
        p.scopes = jwt::first_list(claims, &paths.scopes, Split::Whitespace).into();
        p.full_access = full_access;
        p.claims = ClaimValues::extract(claims, forwarded);
        p
    }

    /// Whether each of `fields` reaches the upstream as the principal has it: no list among
    /// them holds an item that joining with `,` would split, or a header would change
    /// (`list_item_ok`). A principal that fails is refused, not forwarded with items dropped:
    /// an item may be a restriction the upstream enforces (`suspended`, `read-only`).
    pub fn forwardable<'f>(&self, mut fields: impl Iterator<Item = &'f Field>) -> bool {
        let list_ok = |names: &Names| names.iter().all(|n| list_item_ok(n));
        fields.all(|field| match field {
            Field::Workspaces => list_ok(&self.workspaces),
            Field::Roles => list_ok(&self.roles),
            Field::Permissions => list_ok(&self.permissions),
            Field::Scopes => list_ok(&self.scopes),
            Field::Claim(_) => self.claims.forwardable(),
            _ => true,
        })
    }

    /// The value of a field as a header value (lists joined with `,`); `None` when empty.
    pub fn field_value(&self, field: &Field) -> Option<String> {
        let text = |t: &Option<Text>| t.as_deref().map(str::to_string);
        match field {
            Field::Kind => Some(self.kind.as_str().to_string()),
            Field::Provider => text(&self.provider),
            Field::KeyId => text(&self.key_id),
            Field::Subject => text(&self.subject),
            Field::Email => text(&self.email),
            Field::Name => text(&self.name),
            Field::Organization => text(&self.organization),
            Field::Workspaces => self.workspaces.joined(),
            Field::Workspace => text(&self.workspace),
            Field::Roles => self.roles.joined(),
            Field::Permissions => self.permissions.joined(),
            Field::Scopes => self.scopes.joined(),
            Field::FullAccess => Some(self.full_access.to_string()),
            Field::Claim(c) => self.claims.get(c.slot).map(str::to_string),
        }
    }
}

/// A `claim:<path>` field: the dotted path, and the slot the configuration gave the path
/// among every forwarded claim (`Forward::claim_paths`), where a principal keeps its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimField {
    pub path: Vec<String>,
    pub slot: usize,
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
    /// Parsed with slot 0; the configuration numbers the slots.
    Claim(ClaimField),
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
                Field::Claim(ClaimField { path: parts, slot: 0 })
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
        p.roles = Names::new(["admin", "member"]);
        p.subject = Some("usr_1".into());
        let claims = json!({"email": "a@b.c", "o": {"id": "org_1", "n": 3}, "list": ["x", 2, {"no": 1}]});
        let paths: Vec<Vec<String>> =
            ["o.id", "o.n", "list", "o.missing"].iter().map(|p| p.split('.').map(str::to_string).collect()).collect();
        p.claims = ClaimValues::extract(&claims, &paths);
        let claim = |path: &str, slot: usize| {
            let Some(Field::Claim(c)) = Field::parse(&format!("claim:{path}")) else { panic!("a claim field") };
            Field::Claim(ClaimField { slot, ..c })
        };
        assert_eq!(p.field_value(&Field::Roles).as_deref(), Some("admin,member"));
        assert_eq!(p.field_value(&Field::Scopes), None);
        assert_eq!(p.field_value(&Field::Kind).as_deref(), Some("jwt"));
        assert_eq!(p.field_value(&claim("o.id", 0)).as_deref(), Some("org_1"));
        assert_eq!(p.field_value(&claim("o.n", 1)).as_deref(), Some("3"));
        assert_eq!(p.field_value(&claim("list", 2)).as_deref(), Some("x,2"));
        assert_eq!(p.field_value(&claim("o.missing", 3)), None);
        assert_eq!(p.field_value(&claim("beyond", 4)), None);
        assert_eq!(Field::parse("claim:"), None);
        assert_eq!(Field::parse("claim:a..b"), None);
        assert_eq!(Field::parse("subjects"), None);
    }

    #[test]
    fn a_list_item_the_separator_would_split_is_not_forwardable() {
        let roles = Field::Roles;
        let mut p = Principal::new(Kind::Jwt);
        for (items, ok) in [
            (vec!["member", "admin"], true),
            (vec!["member,admin"], false),
            (vec!["a\r\nx-admin: 1"], false),
            (vec![" admin"], false),
            (vec!["admin\t"], false),
            (vec!["read only", "é"], true),
        ] {
            p.roles = Names::new(items.clone());
            assert_eq!(p.forwardable([&roles].into_iter()), ok, "{items:?}");
            assert!(p.forwardable([&Field::Scopes].into_iter()), "only the fields forwarded count");
        }
        let paths = vec![vec!["groups".to_string()]];
        let claim = Field::Claim(ClaimField { path: paths[0].clone(), slot: 0 });
        for (claims, ok) in [
            (json!({"groups": ["a", "b"]}), true),
            (json!({"groups": ["a,b"]}), false),
            (json!({"groups": "a,b"}), true),
            (json!({"other": 1}), true),
        ] {
            p.claims = ClaimValues::extract(&claims, &paths);
            assert_eq!(p.forwardable([&claim].into_iter()), ok, "{claims}");
        }
    }

    #[test]
    fn a_clone_shares_every_text_and_list() {
        let mut p = Principal::new(Kind::Jwt);
        p.subject = Some("usr_1".into());
        p.roles = Names::new(["admin"]);
        p.claims = ClaimValues::extract(&json!({"a": "b"}), &[vec!["a".to_string()]]);
        let q = p.clone();
        assert!(Rc::ptr_eq(p.subject.as_ref().unwrap(), q.subject.as_ref().unwrap()));
        assert!(Rc::ptr_eq(p.roles.0.as_ref().unwrap(), q.roles.0.as_ref().unwrap()));
        assert!(Rc::ptr_eq(p.claims.0.as_ref().unwrap(), q.claims.0.as_ref().unwrap()));
        assert!(Names::new(Vec::<String>::new()).0.is_none(), "an empty list allocates nothing");
    }
}
