//! Held scopes and permissions, and what they grant.
//!
//! `*` grants everything; a grant ending in `:*` or `.*` grants everything that starts with what
//! precedes the `*` (`tools:*`, `tools:platform.*`). Anything else grants only itself.

/// Whether any of `held` grants `required`.
pub fn grants<S: AsRef<str>>(held: &[S], required: &str) -> bool {
    held.iter().any(|h| grant_covers(h.as_ref(), required))
}

fn grant_covers(held: &str, required: &str) -> bool {
    if held == required || held == "*" {
        return true;
    }
    match held.strip_suffix('*') {
        Some(stem) if stem.ends_with(':') || stem.ends_with('.') => {
            required.len() > stem.len() && required.starts_with(stem)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcard_table() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["*"], "tools:platform.list_roadmap_items", true),
            (&["*"], "llm", true),
            (&["tools:*"], "tools:platform.create_roadmap_item", true),
            (&["tools:*"], "tools:", false),
            (&["tools:*"], "toolsx:a", false),
            (&["tools:agents.*"], "tools:agents.run", true),
            (&["tools:agents.*"], "tools:agents", false),
            (&["tools:agents.*"], "tools:platform.list_roadmap_items", false),
            (&["tools:platform.list_roadmap_items"], "tools:platform.list_roadmap_items", true),
            (&["tools:platform.list_roadmap_items"], "tools:platform.create_roadmap_item", false),
            (&["bots:read"], "bots:write", false),
            (&["bots:read", "bots:write"], "bots:write", true),
            (&[], "bots:read", false),
            (&["llm"], "tts", false),
            // a star that is not a whole segment is literal
            (&["bot*"], "bots:read", false),
            (&["tools:agen*"], "tools:agents.run", false),
        ];
        for (h, req, want) in cases {
            assert_eq!(grants(&held(h), req), *want, "held {h:?} required {req}");
        }
    }
}
