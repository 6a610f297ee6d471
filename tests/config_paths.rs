//! The path a configuration error names, found after the fact by src/config/path.rs, against
//! `serde_path_to_error` (which tracked every deserializer before, issue 23): the same path and
//! the same serde message for every document here, the examples with thousands of edits
//! (values of every kind put in every place, keys added, removed and doubled, the text cut and
//! bytes replaced), compact and pretty-printed.

use api_auth_filter::config::{decode, raw::RawConfig};
use serde_json::{json, Value};

fn tracked(doc: &[u8]) -> Option<(String, String)> {
    let de = &mut serde_json::Deserializer::from_slice(doc);
    match serde_path_to_error::deserialize::<_, RawConfig>(de) {
        Ok(_) => None,
        Err(e) => {
            let path = e.path().to_string();
            Some((if path == "." { String::new() } else { path }, e.inner().to_string()))
        }
    }
}

fn found(doc: &[u8]) -> Option<(String, String)> {
    decode(doc).err().map(|(path, e)| (path, e.to_string()))
}

/// The document near the error's line and column (the whole of a short one).
fn around(doc: &[u8], err: Option<&(String, String)>) -> String {
    let text = String::from_utf8_lossy(doc);
    let Some((_, msg)) = err else { return text.chars().take(300).collect() };
    let nums: Vec<usize> = msg.rsplit(" at line ").next().unwrap_or("").split(" column ").filter_map(|n| n.trim().parse().ok()).collect();
    let [line, col] = nums[..] else { return text.chars().take(300).collect() };
    let l = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let (a, b) = (col.saturating_sub(80), (col + 40).min(l.len()));
    format!("line {line}: {}<<HERE>>{}", l.get(a..col.min(l.len())).unwrap_or("?"), l.get(col.min(l.len())..b).unwrap_or("?"))
}

struct Check {
    docs: usize,
    errors: usize,
    mismatches: Vec<String>,
}

impl Check {
    fn doc(&mut self, doc: &[u8]) {
        self.docs += 1;
        let (want, got) = (tracked(doc), found(doc));
        if want.is_some() {
            self.errors += 1;
        }
        if want != got && self.mismatches.len() < 40 {
            self.mismatches.push(format!("{}\n  want {want:?}\n  got  {got:?}", around(doc, want.as_ref().or(got.as_ref()))));
        }
    }

    fn value(&mut self, v: &Value) {
        self.doc(serde_json::to_string(v).unwrap().as_bytes());
        self.doc(serde_json::to_string_pretty(v).unwrap().as_bytes());
    }
}

fn examples() -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            out.push(serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap());
        }
    }
    out.sort_by_key(|v| v.to_string());
    out
}

/// Every node's pointer (RFC 6901) in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| pointers(c, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
}

#[test]
fn paths_are_serde_path_to_errors() {
    let mut check = Check { docs: 0, errors: 0, mismatches: Vec::new() };
    let replacements = [
        json!(1),
        json!(-1),
        json!(1.5),
        json!(70000),
        json!(99999999999999999999u128 as f64),
        json!("s"),
        json!("none"),
        json!("allow"),
        json!(true),
        json!(null),
        json!([]),
        json!({}),
        json!([1]),
        json!(["a", 2]),
        json!([[1]]),
        json!([{}]),
        json!({ "zz": 1 }),
        json!({ "deny": null }),
    ];
    for ex in examples() {
        check.value(&ex);
        let mut ptrs = Vec::new();
        pointers(&ex, String::new(), &mut ptrs);
        for p in &ptrs {
            for r in &replacements {
                let mut doc = ex.clone();
                *doc.pointer_mut(p).unwrap() = r.clone();
                check.value(&doc);
            }
            let node = ex.pointer(p).unwrap().clone();
            if let Value::Object(m) = &node {
                let mut doc = ex.clone();
                doc.pointer_mut(p).unwrap().as_object_mut().unwrap().insert("zz_unknown".into(), json!(1));
                check.value(&doc);
                for k in m.keys() {
                    let mut doc = ex.clone();
                    doc.pointer_mut(p).unwrap().as_object_mut().unwrap().remove(k);
                    check.value(&doc);
                }
                // A key written twice: the text of the object with its first entry again at the end.
                if let Some((k, v)) = m.iter().next() {
                    let mut doc = ex.clone();
                    let marker = "\"zz_duplicate_marker\":0";
                    doc.pointer_mut(p).unwrap().as_object_mut().unwrap().insert("zz_duplicate_marker".into(), json!(0));
                    let text = serde_json::to_string(&doc).unwrap();
                    let dup = format!("{}:{}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap());
                    check.doc(text.replacen(marker, &dup, 1).as_bytes());
                }
            }
            if let Value::Array(a) = &node {
                if let Some(first) = a.first() {
                    let mut doc = ex.clone();
                    doc.pointer_mut(p).unwrap().as_array_mut().unwrap().push(first.clone());
                    check.value(&doc);
                }
            }
        }
        // The text cut and bytes replaced or removed, compact and pretty-printed.
        for text in [serde_json::to_string(&ex).unwrap(), serde_json::to_string_pretty(&ex).unwrap()] {
            let b = text.as_bytes();
            let step = (b.len() / 1500).max(1);
            for i in (0..b.len()).step_by(step) {
                check.doc(&b[..i]);
                let mut cut = b.to_vec();
                cut.remove(i);
                check.doc(&cut);
                for &c in b"}],:\"1x{[ \\-n0" {
                    let mut d = b.to_vec();
                    d[i] = c;
                    check.doc(&d);
                }
            }
        }
    }
    for doc in [
        &b""[..],
        b" ",
        b"\"just a string\"",
        b"{} trailing",
        b"{\"routes\":[{\"match\":{\"path\":\"/\"},\"auth\":[ [1]]}]}",
        b"{\"routes\":[{\"match\":{\"path\":\"/\"},\"auth\":[ {}]}]}",
        b"{\"routes\":[{\"match\":{\"path\":\"/\"},\"auth\":[]}]}",
        b"{\"routes\":[{\"match\":{\"path\":\"/\"},\"auth\":{\"scopes\":[ {}]}}]}",
        b"{\"routes\":[{\"match\":{\"path\":\"/\"},\"auth\":{\"scopes\":[ [1]]}}]}",
        b"{\"unmatched\":{\"deny\":null}}",
        b"{\"unmatched\":{\"deny\":null,\"allow\":null}}",
        b"{\"unmatched\":{\"maybe\":null}}",
        b"{\"unmatched\":{\"deny\":1}}",
        b"{\"error_formats\":{\"m\":[\"json\",{},1]}}",
        b"{\"error_formats\":{\"m\":[\"json\",{}],\"n\":[]}}",
        b"{\"error_formats\":{\"m\":[]}}",
        b"{\"error_formats\":{\"m\":[\"json\",{},]}}",
        b"{\"token_cache\":{\"max_entries\":01}}",
        b"{\"token_cache\":{\"max_entries\":1e999}}",
        b"{\"token_cache\":{\"max_entries\":\"\\x\"}}",
        b"{\"tok\\u0065n_cache\":{\"max_entries\":1}}",
        b"{\"tok\\u0065n_cachf\":{\"max_entries\":1}}",
        b"{\"workspace_header\":\"a\x01\"}",
        b"{\"workspace_header\":\"a\xff\"}",
        b"{\"routes\":[1,]}",
        b"{\"routes\":[{},]}",
        b"{\"routes\":{}}",
        b"{\"providers\":[]}",
        b"{\"providers\":{\"p\":{\"issuer\":\"i\",\"algorithms\":[],\"jwks\":{\"inline\":{\"keys\":[{\"a\":[1,{\"b\":tru}]}]}}}}}",
    ] {
        check.doc(doc);
    }
    // The fuzz target's committed inputs that are documents as they stand (fuzz/src/targets/config.rs).
    for dir in ["fuzz/corpus/config", "fuzz/regressions/config"] {
        let Ok(entries) = std::fs::read_dir(format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"))) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let Ok(bytes) = std::fs::read(&path) else { continue };
            if bytes.first().is_some_and(|b| b"{[\" \t\n\r".contains(b)) {
                check.doc(&bytes);
            }
        }
    }
    let Check { docs, errors, mismatches } = check;
    assert!(errors > docs / 2, "{errors} errors in {docs} documents: the edits must break most");
    assert!(mismatches.is_empty(), "{} of {docs} documents ({errors} errors) differ; first:\n{}", mismatches.len(), mismatches.join("\n"));
    println!("{docs} documents, {errors} errors, every path the same");
}
