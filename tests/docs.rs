//! docs/configuration.md stays the reference of the parser that ships.
//!
//! The field list is not written here: it is read from the parser. Every object of the
//! configuration refuses unknown fields, and the refusal lists the fields it accepts
//! (``unknown field `x`, expected one of `a`, `b` ``). The walk below puts an unknown field at
//! the top level, reads the accepted names, then tries each name as an object, a list of
//! objects and a map of objects, and so on down: every object the parser can reach is found,
//! a new field or a new object included, without this file changing. Each object must have a
//! section in the reference whose heading names its position in backticks (`routes[].match`,
//! `providers.<name>.jwks.remote`; the top level is "Top level"), with one table row per field
//! (`` | `field` | ``); fields whose value is one of a fixed set of words list each word in
//! their row. The reason table must give every reason's status and default message, and every
//! counter must be named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use api_auth_filter::config::Config;
use api_auth_filter::deny::Reason;
use api_auth_filter::stats::Counter;
use serde_json::{json, Value};

const PROBE: &str = "zz_docs_probe";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Field(String),
    /// An entry of a map keyed by names the user chooses.
    Entry,
    /// An element of a list.
    Index,
}

type Pos = Vec<Step>;

/// The position as the parser's error paths spell it (`routes[0].auth`).
fn error_path(pos: &[Step]) -> String {
    spell(pos, "x", "[0]")
}

/// The position as the reference's headings spell it (`routes[].auth`, `webhooks.<name>`),
/// with any `<...>` placeholder read as `<>`.
fn heading_path(pos: &[Step]) -> String {
    spell(pos, "<>", "[]")
}

/// A position with fields joined by `.`, a map entry written `entry`, a list element `index`.
fn spell(pos: &[Step], entry: &str, index: &str) -> String {
    let mut out = String::new();
    for step in pos {
        let (dot, text) = match step {
            Step::Field(name) => (true, name.as_str()),
            Step::Entry => (true, entry),
            Step::Index => (false, index),
        };
        if dot && !out.is_empty() {
            out.push('.');
        }
        out.push_str(text);
    }
    out
}

/// A document that holds `inner` at `pos` and nothing else.
fn document(pos: &[Step], inner: Value) -> Value {
    pos.iter().rev().fold(inner, |v, step| match step {
        Step::Field(name) => json!({ name.as_str(): v }),
        Step::Entry => json!({ "x": v }),
        Step::Index => json!([v]),
    })
}

fn parse_error(doc: &Value) -> Option<(String, String)> {
    let bytes = serde_json::to_vec(doc).unwrap();
    Config::from_json_with_env(&bytes, &|_| Some("docs-test-secret".into())).err().map(|e| (e.path, e.message))
}

/// The backticked names after ", expected " in a serde message.
fn expected_names(message: &str) -> Vec<String> {
    let Some(i) = message.rfind(", expected ") else { return Vec::new() };
    message[i..].split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The fields of the object at `pos`, when there is one there.
fn fields_at(pos: &[Step]) -> Option<Vec<String>> {
    let (path, message) = parse_error(&document(pos, json!({ PROBE: 0 })))?;
    let want_path = if pos.is_empty() { PROBE.to_string() } else { format!("{}.{PROBE}", error_path(pos)) };
    if path != want_path || !message.starts_with(&format!("unknown field `{PROBE}`")) {
        return None;
    }
    if message.contains("there are no fields") {
        return Some(Vec::new());
    }
    let names = expected_names(&message);
    assert!(!names.is_empty(), "{want_path}: the refusal names no accepted field: {message}");
    Some(names)
}

/// The words a field at `pos` accepts, when it takes one of a fixed set (a serde enum).
fn variants_at(pos: &[Step]) -> Option<Vec<String>> {
    let (path, message) = parse_error(&document(pos, json!(PROBE)))?;
    (path == error_path(pos) && message.starts_with("unknown variant")).then(|| expected_names(&message))
}

#[derive(Default, Debug)]
struct Schema {
    /// Every object position, with its fields.
    objects: BTreeMap<Pos, Vec<String>>,
    /// (object position, field) to the words the field accepts.
    words: BTreeMap<(Pos, String), Vec<String>>,
}

fn walk() -> Schema {
    let mut schema = Schema::default();
    let mut todo: Vec<Pos> = vec![Vec::new()];
    while let Some(pos) = todo.pop() {
        if schema.objects.contains_key(&pos) {
            continue;
        }
        let fields = fields_at(&pos).unwrap_or_else(|| panic!("no object at `{}`", heading_path(&pos)));
        for f in &fields {
            let mut at = pos.clone();
            at.push(Step::Field(f.clone()));
            let candidates = [at.clone(), [at.clone(), vec![Step::Index]].concat(), [at.clone(), vec![Step::Entry]].concat()];
            if let Some(inner) = candidates.iter().find(|c| fields_at(c).is_some()) {
                todo.push(inner.clone());
            }
            for c in [at.clone(), [at.clone(), vec![Step::Index]].concat()] {
                if let Some(words) = variants_at(&c) {
                    schema.words.insert((pos.clone(), f.clone()), words);
                }
            }
        }
        schema.objects.insert(pos, fields);
    }
    schema
}

fn reference() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of each section of the reference, by the positions its heading names.
fn sections(doc: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    for line in doc.lines() {
        if line.starts_with('#') {
            current = line.split('`').skip(1).step_by(2).map(normalise_placeholders).collect();
            let title = line.trim_start_matches('#').trim().to_ascii_lowercase();
            if title.contains("top level") {
                current.push(String::new());
            }
            current.push(format!("title:{title}"));
            for c in &current {
                out.entry(c.clone()).or_default();
            }
            continue;
        }
        for c in &current {
            let s = out.entry(c.clone()).or_default();
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

/// `<name>`, `<reason>`, ... as `<>`.
fn normalise_placeholders(s: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in s.chars() {
        match c {
            '<' => {
                inside = true;
                out.push('<');
            }
            '>' if inside => {
                inside = false;
                out.push('>');
            }
            _ if inside => {}
            _ => out.push(c),
        }
    }
    out
}

/// The table row documenting `name`: a line starting `| `name` |`.
fn row<'a>(section: &'a str, name: &str) -> Option<&'a str> {
    let head = format!("`{name}`");
    section.lines().find(|l| l.strip_prefix('|').and_then(|r| r.split('|').next()).is_some_and(|cell| cell.trim() == head))
}

/// The first cell of each table row that is one backticked name.
fn row_names(section: &str) -> Vec<String> {
    section
        .lines()
        .filter_map(|l| l.strip_prefix('|').and_then(|r| r.split('|').next()).map(str::trim))
        .filter_map(|cell| cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')))
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_walk_reaches_every_object_of_the_parser() {
    let schema = walk();
    let found: BTreeSet<String> = schema.objects.keys().map(|p| heading_path(p)).collect();
    // A floor, so that a change in serde's wording cannot make the walk find nothing and pass.
    for must in [
        "",
        "providers.<>",
        "providers.<>.jwks",
        "providers.<>.jwks.remote",
        "providers.<>.jwks.inline",
        "providers.<>.jwks.discovery",
        "providers.<>.claims",
        "api_keys",
        "api_keys.keys[]",
        "api_keys.lookup",
        "api_keys.usage_report",
        "webhooks.<>",
        "webhooks.<>.secrets[]",
        "webhooks.<>.timestamp",
        "routes[]",
        "routes[].match",
        "routes[].auth",
        "error_formats.<>",
        "error_formats.<>.reasons.<>",
        "protected_resource",
        "forward",
        "correlation_id",
    ] {
        assert!(found.contains(must), "the walk did not reach `{must}`; it found {found:?}");
    }
    let words = |pos: &str, field: &str| {
        schema.words.iter().find(|((p, f), _)| heading_path(p) == pos && f == field).map(|(_, w)| w.clone())
    };
    assert_eq!(words("", "unmatched"), Some(vec!["deny".to_string(), "allow".to_string()]));
    assert_eq!(words("api_keys.keys[]", "status"), Some(vec!["active".to_string(), "revoked".to_string(), "expired".to_string()]));
    // Every object type of the parser is reached: at least as many positions as structs that
    // refuse unknown fields (each `config_object!` does).
    let raw = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/config/raw.rs");
    let raw = std::fs::read_to_string(&raw).unwrap_or_else(|e| panic!("{}: {e}", raw.display()));
    let structs = raw.lines().filter(|l| l.trim_start().starts_with("config_object! {")).count();
    assert!(structs >= 21, "src/config/raw.rs: {structs} structs refuse unknown fields");
    assert!(found.len() >= structs, "{} object positions reached for {structs} structs that refuse unknown fields: {found:?}", found.len());
}

#[test]
fn every_field_the_parser_accepts_is_documented() {
    let schema = walk();
    let doc = reference();
    let sections = sections(&doc);
    let mut missing = Vec::new();
    for (pos, fields) in &schema.objects {
        let heading = heading_path(pos);
        let shown = if heading.is_empty() { "the top level".to_string() } else { format!("`{}`", heading.replace("<>", "<name>")) };
        let Some(section) = sections.get(&heading) else {
            missing.push(format!("{shown}: no section (a heading naming {shown}) with a table of its fields {fields:?}"));
            continue;
        };
        for f in fields {
            let Some(line) = row(section, f) else {
                missing.push(format!("{shown}: field `{f}` has no row `| `{f}` | ...` in its section"));
                continue;
            };
            if let Some(words) = schema.words.get(&(pos.clone(), f.clone())) {
                for w in words {
                    if !line.contains(&format!("`{w}`")) && !line.contains(&format!("\"{w}\"")) {
                        missing.push(format!("{shown}: the row of `{f}` does not name its value `{w}`"));
                    }
                }
            }
        }
        for name in row_names(section) {
            if !fields.contains(&name) {
                missing.push(format!("{shown}: the reference documents `{name}`, which the parser does not accept there"));
            }
        }
    }
    assert!(missing.is_empty(), "docs/configuration.md is behind the parser:\n  {}", missing.join("\n  "));
}

#[test]
fn every_reason_is_in_the_reason_table_with_its_status_and_message() {
    let doc = reference();
    let mut missing = Vec::new();
    for r in Reason::ALL {
        let code = r.as_str();
        match row(&doc, code) {
            None => missing.push(format!("`{code}`: no row in the reason table")),
            Some(line) => {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                if !cells.contains(&r.status().to_string().as_str()) {
                    missing.push(format!("`{code}`: the row does not give its status {}", r.status()));
                }
                if !line.contains(r.default_message()) {
                    missing.push(format!("`{code}`: the row does not give its default message {:?}", r.default_message()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "docs/configuration.md reason table:\n  {}", missing.join("\n  "));
}

#[test]
fn every_counter_is_named() {
    let doc = reference();
    let mut missing = Vec::new();
    for c in Counter::all() {
        let name = c.name();
        let shown = match c {
            Counter::Denied(_) => "api_auth.denied.<reason>".to_string(),
            _ => name.clone(),
        };
        if !doc.contains(&format!("`{shown}`")) {
            missing.push(shown);
        }
    }
    missing.dedup();
    assert!(missing.is_empty(), "docs/configuration.md names no counter {missing:?}");
}

#[test]
fn every_principal_field_in_the_reference_exists() {
    let doc = reference();
    let sections = sections(&doc);
    let section = sections
        .iter()
        .find(|(k, _)| k.starts_with("title:") && k.contains("principal fields"))
        .map(|(_, s)| s)
        .expect("a section titled \"Principal fields\"");
    let names = row_names(section);
    assert!(names.len() >= 13, "the principal field table: {names:?}");
    for name in names {
        assert!(api_auth_filter::principal::Field::parse(&name).is_some(), "the reference lists principal field `{name}`, which the filter does not know");
    }
}

#[test]
fn the_repository_documents_point_into_the_repository() {
    for file in ["README.md", "SECURITY.md", "docs/configuration.md"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for gone in ["shared/design", "CONFIG.md"] {
            assert!(!text.contains(gone), "{file} refers to {gone}, which is not part of the repository");
        }
    }
}

/// fuzz/ reads the reference independently of the code it checks: it must cite the reference
/// that ships (docs/configuration.md), not a document the repository no longer has.
#[test]
fn fuzz_cites_the_reference_that_ships() {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target" && n != "corpus" && n != "artifacts") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs" || e == "py" || e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz"), &mut files);
    assert!(files.iter().any(|f| f.ends_with("src/lib.rs")), "fuzz/src/lib.rs not found among {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for gone in ["CONFIG.md", "shared/design"] {
            assert!(!text.contains(gone), "{} cites {gone}: cite docs/configuration.md", file.display());
        }
    }
}
