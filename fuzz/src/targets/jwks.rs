//! jwt::KeySet::from_json on arbitrary bytes, and on JWKS documents built from the bytes.
//!
//! Input: the raw bytes are parsed as a JWKS document; the same bytes also drive a builder that
//! assembles a JWKS from a vocabulary of members (kty, crv, alg, use, key_ops, kid) and of key
//! material (valid RSA moduli, P-256 points, an Ed25519 key, HMAC secrets, and bytes of the
//! input), so that most entries get past JSON and base64 into key parsing.
//!
//! Properties:
//! - from_json succeeds exactly when the input is JSON with a "keys" array;
//! - every entry is either kept or counted as skipped; at most 64 keys are kept;
//! - the kept keys are, in order, the entries parse_jwk accepts (less HMAC secrets when any
//!   public key is present: a set never mixes them);
//! - each key's type matches its entry's kty/crv, and its algorithm (if any) fits its type;
//! - ambiguous_kids are exactly the kids named by more than one entry;
//! - Debug never shows an HMAC secret; verify_with on every key never panics and never accepts
//!   an algorithm the key does not fit.
use api_auth_filter::jwt::{self, jwk, Alg, KeySet, PublicKey};
use crate::{b64, keys};
use serde_json::{json, Map, Value};

const ALL: [Alg; 12] = [
    Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512,
    Alg::ES256, Alg::ES384, Alg::EdDSA, Alg::HS256, Alg::HS384, Alg::HS512,
];

fn kind(k: &PublicKey) -> &'static str {
    match k {
        PublicKey::Rsa(_) => "RSA",
        PublicKey::P256(_) => "P-256",
        PublicKey::P384(_) => "P-384",
        PublicKey::Ed25519(_) => "Ed25519",
        PublicKey::Oct(_) => "oct",
    }
}

fn check(bytes: &[u8], msg: &[u8]) {
    let parsed = KeySet::from_json(bytes);
    let doc: Option<Value> = serde_json::from_slice(bytes).ok();
    let entries: Option<&Vec<Value>> = doc.as_ref().and_then(|d| d.get("keys")).and_then(Value::as_array);
    let set = match (parsed, entries) {
        (Ok(set), Some(_)) => set,
        (Err(e), None) => {
            assert!(!e.is_empty());
            return;
        }
        (Ok(_), None) => panic!("a document without a keys array parsed"),
        (Err(e), Some(_)) => panic!("a document with a keys array was refused: {e}"),
    };
    let entries = entries.unwrap();
    assert_eq!(set.len() + set.skipped, entries.len(), "every entry kept or skipped");
    assert!(set.len() <= 64);

    // The kept keys are parse_jwk's answers, in order.
    let accepted: Vec<(usize, jwk::Jwk)> = entries.iter().enumerate().filter_map(|(i, e)| jwk::parse_jwk(e).map(|k| (i, k))).collect();
    let mut expected: Vec<&(usize, jwk::Jwk)> = accepted.iter().take(64).collect();
    if expected.iter().any(|(_, k)| !matches!(k.key, PublicKey::Oct(_))) {
        expected.retain(|(_, k)| !matches!(k.key, PublicKey::Oct(_)));
    }
    assert_eq!(set.len(), expected.len());
    let has_public = set.keys.iter().any(|k| !matches!(k.key, PublicKey::Oct(_)));
    for (got, (i, want)) in set.keys.iter().zip(expected) {
        assert_eq!((got.kid.as_deref(), got.alg, kind(&got.key)), (want.kid.as_deref(), want.alg, kind(&want.key)));
        assert!(!(has_public && matches!(got.key, PublicKey::Oct(_))), "a mixed set kept an HMAC secret");
        let e = &entries[*i];
        let (kty, crv) = (e["kty"].as_str(), e["crv"].as_str());
        let ok = match &got.key {
            PublicKey::Rsa(r) => {
                let bits = r.modulus.bits();
                kty == Some("RSA") && (2048..=8192).contains(&bits)
            }
            PublicKey::P256(_) => kty == Some("EC") && crv == Some("P-256"),
            PublicKey::P384(_) => kty == Some("EC") && crv == Some("P-384"),
            PublicKey::Ed25519(_) => kty == Some("OKP") && crv == Some("Ed25519"),
            PublicKey::Oct(_) => kty == Some("oct"),
        };
        assert!(ok, "key type {} from entry {e}", kind(&got.key));
        if let Some(a) = got.alg {
            assert!(got.key.fits(a), "alg {a:?} on a {} key", kind(&got.key));
            assert_eq!(e["alg"].as_str().and_then(Alg::parse), Some(a));
        }
        if let Some(u) = e.get("use") {
            assert_eq!(u.as_str(), Some("sig"));
        }
        if matches!(got.key, PublicKey::Oct(_)) {
            assert_eq!(format!("{:?}", got.key), "Oct(<redacted>)");
        }
        // Every algorithm the key fits, and one it may not.
        let other = ALL[msg.len() % ALL.len()];
        for alg in ALL.into_iter().filter(|a| got.key.fits(*a) || *a == other) {
            let v = jwt::verify_with(&got.key, alg, msg, msg);
            assert!(!v || got.key.fits(alg), "verify_with accepted {alg:?} on a {} key", kind(&got.key));
        }
    }

    let mut kids: Vec<&str> = entries.iter().filter_map(|e| e.get("kid").and_then(Value::as_str)).collect();
    kids.sort_unstable();
    let mut dup: Vec<&str> = kids.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
    dup.dedup();
    let mut amb: Vec<&str> = set.ambiguous_kids.iter().map(String::as_str).collect();
    amb.sort_unstable();
    assert_eq!(amb, dup, "ambiguous kids");
}

/// A JWKS assembled from the input: each entry takes members from a vocabulary.
fn build(data: &[u8]) -> Vec<u8> {
    let fixtures = keys();
    let good: Vec<&Value> = fixtures["jwks"]["keys"].as_array().unwrap().iter().collect();
    let mut it = data.iter().copied();
    let mut next = move || it.next();
    let mut entries = Vec::new();
    while let Some(op) = next() {
        if entries.len() >= 12 {
            break;
        }
        let mut e: Map<String, Value> = match op % 4 {
            0 => good[(op as usize / 4) % good.len()].as_object().unwrap().clone(),
            _ => Map::new(),
        };
        let count = next().unwrap_or(0) % 8;
        for _ in 0..count {
            let (Some(field), Some(choice)) = (next(), next()) else { break };
            let pick = |list: &[&str]| Value::from(list[choice as usize % list.len()]);
            let material = || -> Value {
                let source = good[choice as usize % good.len()];
                let member = ["n", "e", "x", "y", "k"][(choice as usize / 8) % 5];
                match source.get(member) {
                    Some(v) if choice % 3 != 0 => v.clone(),
                    // Bytes of a given length: short, curve-sized, RSA-sized, oversized.
                    _ => Value::from(b64(vec![choice; [0, 1, 32, 48, 64, 128, 256, 257, 1100][choice as usize % 9]])),
                }
            };
            let (name, value) = match field % 13 {
                0 => ("kty", pick(&["RSA", "EC", "OKP", "oct", "rsa", "", "EC "])),
                1 => ("crv", pick(&["P-256", "P-384", "P-521", "Ed25519", "X25519", "secp256k1"])),
                2 => ("alg", pick(&["RS256", "PS512", "ES256", "ES384", "EdDSA", "HS256", "none", "ES512", "A256GCM"])),
                3 => ("use", pick(&["sig", "enc", "SIG"])),
                4 => ("key_ops", json!([Value::from(["verify", "sign", "encrypt", "wrapKey"][choice as usize % 4])])),
                5 => ("kid", pick(&["a", "b", "kid-ec-sign", "ed-rfc8037", "", "kid-aes-sign"])),
                6 => ("n", material()),
                7 => ("e", pick(&["AQAB", "AQ", "Aw", "", "AAEAAQ", "_____w"])),
                8 => ("x", material()),
                9 => ("y", material()),
                10 => ("k", material()),
                11 => ("kid", Value::from(choice)),
                _ => (["use", "alg", "key_ops", "kty", "kid"][choice as usize % 5], json!([choice])),
            };
            e.insert(name.to_string(), value);
        }
        entries.push(Value::Object(e));
    }
    json!({ "keys": entries }).to_string().into_bytes()
}

/// One input of the target (the fuzz target and the replay test call it).
pub fn run(data: &[u8]) {
    check(data, data);
    check(&build(data), data);
}
