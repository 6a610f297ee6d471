//! `api-auth check CONFIG`: the filter's own validation, outside Envoy.

use api_auth_filter::config::{Config, KeySource};

use crate::args::{self, Arg, Parser};
use crate::util::{self, Failure, VmEnv};

pub const HELP: &str = concat!(
    "\
Usage: api-auth check [options] CONFIG|-

Validates a filter configuration with the filter's own compiler (the code Envoy runs at load
time). On success prints one summary line and exits 0; on error prints the path of the field
at fault (e.g. `routes[3].auth.scopes[0]: ...`) and exits 1. Never prints the configuration,
its secrets or its key digests.

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
    Ok(format!("{}: OK: {}\n", util::display_name(&file), summary(&cfg)))
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
                KeySource::Remote(r) => format!("JWKS from cluster {}", r.cluster),
            };
            format!("{}: {source}", p.name)
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
