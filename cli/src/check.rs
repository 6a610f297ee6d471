//! `api-auth check CONFIG`: the filter's own validation, outside Envoy.

use api_auth_filter::config::{Config, KeySource, Route, Unmatched};
use api_auth_filter::routes::PathPattern;

use crate::args::{self, Arg, Parser};
use crate::failure::Failure;
use crate::util::{self, VmEnv};

pub const HELP: &str = concat!(
    "\
Usage: api-auth check [options] CONFIG|-

Validates a filter configuration with the filter's own compiler (the code Envoy runs at load
time). On success prints one summary line and exits 0; on error prints the path of the field
at fault (e.g. `routes[3].auth.scopes[0]: ...`) and exits 1. Never prints the configuration,
its secrets or its key digests.

Then warns (still exit 0) where a route bound to Envoy's router (`match.route_name`,
`match.route_metadata`) is followed by a weaker catch-all route, or `unmatched` is `allow`: a
request the router sends to another route is judged by what follows, not by the bound route.

Options:
",
    crate::env_help!(),
    "  -h, --help                  this text
"
);

pub fn run(argv: Vec<String>) -> Result<String, Failure> {
    let mut p = Parser::new(argv);
    let mut env = VmEnv::default();
    let mut file = None;
    while let Some(a) = p.next_arg() {
        match a {
            Arg::Flag(f, _) if args::is_help(&f) => return Ok(HELP.to_string()),
            Arg::Flag(f, inline) => {
                if !env.take(&f, inline, &mut p)? {
                    return Err(args::unknown(&f));
                }
            }
            Arg::Pos(v) if file.is_none() => file = Some(v),
            Arg::Pos(v) => return Err(Failure::Usage(format!("unexpected argument '{v}'"))),
        }
    }
    let file = file.ok_or_else(|| Failure::Usage("CONFIG is required".into()))?;
    let (cfg, _) = util::load_config(&file, &env)?;
    let mut out = format!("{}: OK: {}\n", util::display_name(&file), summary(&cfg));
    for w in warnings(&cfg) {
        out.push_str(&format!("warning: {w}\n"));
    }
    Ok(out)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Counts and names only: no digest, secret or value of the document.
pub fn summary(cfg: &Config) -> String {
    let public = cfg.routes.iter().filter(|r| r.auth.is_none()).count();
    let mut parts = vec![format!("{} ({public} public)", plural(cfg.routes.len(), "route", "routes"))];
    let providers: Vec<String> = cfg
        .providers
        .iter()
        .map(|p| {
            let source = match &p.keys {
                KeySource::Inline(_) => "inline JWKS".to_string(),
                KeySource::Remote(r) if r.discovery.is_some() => format!("JWKS by discovery through cluster {}", r.cluster),
                KeySource::Remote(r) => format!("JWKS from cluster {}", r.cluster),
            };
            match &p.introspection {
                Some(i) => format!("{}: {source}, opaque tokens introspected through cluster {}", p.name, i.service.cluster),
                None => format!("{}: {source}", p.name),
            }
        })
        .collect();
    let mut prov = plural(providers.len(), "provider", "providers");
    if !providers.is_empty() {
        prov.push_str(&format!(" ({})", providers.join(", ")));
    }
    parts.push(prov);
    let keys = match &cfg.api_keys {
        None => "no API keys".to_string(),
        Some(k) => {
            let mut s = plural(k.by_digest.len(), "API key", "API keys");
            if k.lookup.is_some() {
                s.push_str(" + key service");
            }
            s
        }
    };
    parts.push(keys);
    parts.push(plural(cfg.webhooks.len(), "webhook", "webhooks"));
    parts.join(", ")
}

/// Bound routes that something weaker follows: a later route that covers every path with
/// less than the bound route asks, or `unmatched: "allow"`.
pub fn warnings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (i, bound) in cfg.routes.iter().enumerate().filter(|(_, r)| r.binding.is_some()) {
        let weaker = cfg.routes.iter().enumerate().skip(i + 1).find(|(_, r)| covers_every_path(r) && weaker_than(r, bound));
        if let Some((j, _)) = weaker {
            out.push(format!(
                "routes[{i}] is bound to the router, and routes[{j}] after it takes every path with less: a request the router sends elsewhere is judged by routes[{j}]"
            ));
        }
        if cfg.unmatched == Unmatched::Allow {
            out.push(format!("routes[{i}] is bound to the router, and unmatched is \"allow\": a request the router sends elsewhere that no other route matches goes upstream unchecked"));
        }
    }
    out
}

fn covers_every_path(r: &Route) -> bool {
    r.binding.is_none() && matches!(&r.pattern, PathPattern::Prefix(p) if p.is_empty())
}

/// Whether `r` lets through something `bound` would refuse: public, or missing one of its
/// requirements (a credential kind or provider it refuses, a permission, scope, role, the
/// organisation or workspace, the webhook).
fn weaker_than(r: &Route, bound: &Route) -> bool {
    let (Some(a), Some(b)) = (&r.auth, &bound.auth) else { return r.auth.is_none() && bound.auth.is_some() };
    let providers_wider = match (&a.providers, &b.providers) {
        (None, Some(_)) => true,
        (Some(ap), Some(bp)) => ap.iter().any(|p| !bp.contains(p)),
        _ => false,
    };
    !a.kinds.is_subset(b.kinds)
        || providers_wider
        || b.permissions.iter().any(|p| !a.permissions.contains(p))
        || b.scopes.iter().any(|s| !a.scopes.contains(s))
        || (!b.roles.is_empty() && (a.roles.is_empty() || a.roles.iter().any(|r| !b.roles.contains(r))))
        || (b.organization && !a.organization)
        || (b.workspace && !a.workspace)
        || (bound.webhook.is_some() && r.webhook != bound.webhook)
}
