//! Wycheproof conformance: the JWS/JWK vectors through decode + key selection + verification,
//! and the raw primitive vectors through the same primitive the JWT path calls.
//! Read from `../shared/testdata/wycheproof` (never copied here); skipped with a message when
//! absent.

mod common;

use api_auth_filter::jwt::{self, jwk, Alg, KeySet};
use serde_json::Value;

fn load(name: &str) -> Option<Value> {
    let Some(shared) = common::shared_dir() else {
        eprintln!("skipping Wycheproof {name}: ../shared (or $SHARED) not found; the vectors are not copied into the repository");
        return None;
    };
    let path = shared.join("testdata/wycheproof").join(name);
    if !path.is_file() {
        eprintln!("skipping Wycheproof {name}: {} not found", path.display());
        return None;
    }
    Some(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
}

#[derive(Default, Debug)]
struct Tally {
    checked: usize,
    acceptable: usize,
    skipped: Vec<String>,
    failures: Vec<String>,
}

impl Tally {
    fn judge(&mut self, what: String, result: &str, accepted: bool) {
        match result {
            "valid" if !accepted => self.failures.push(format!("{what}: valid vector rejected")),
            "invalid" if accepted => self.failures.push(format!("{what}: invalid vector accepted")),
            "acceptable" => self.acceptable += 1,
            _ => {}
        }
        if result != "acceptable" {
            self.checked += 1;
        }
    }

    fn finish(&self, file: &str, min_checked: usize) {
        eprintln!("{file}: {} checked, {} acceptable, {} skipped {:?}", self.checked, self.acceptable, self.skipped.len(), self.skipped);
        assert!(self.failures.is_empty(), "{file}: {} failures:\n{}", self.failures.len(), self.failures.join("\n"));
        assert!(self.checked >= min_checked, "{file}: only {} vectors checked", self.checked);
    }
}

/// Vectors where we knowingly differ, each with the reason; the test asserts the behaviour we
/// chose, so a change is noticed.
const DEVIATIONS: &[(&str, &str, &str)] = &[
    // A '?' inserted into a base64url part: RFC 7515 §2 requires base64url without any other
    // character; a decoder that skips junk also lets junk through. We refuse.
    ("json_web_signature_test.json", "372", "refuses a non-base64url character"),
    ("json_web_signature_test.json", "373", "refuses a non-base64url character"),
    // RFC 7520 Figure 20 with a JWK whose `alg` is PS256 and a PS384 token. RFC 7517 §4.4: a
    // JWK's alg is the algorithm the key is for; the same file marks PS256 with a PS512 key
    // (tc338) invalid, and we hold to the JWK in both.
    ("json_web_signature_test.json", "346", "a JWK's alg must equal the token's alg"),
    ("json_web_signature_test.json", "350", "a JWK's alg must equal the token's alg"),
    // RFC 7520 Figure 27: ES512 on P-521, which we do not support (no common JWT issuer uses it).
    ("json_web_signature_test.json", "347", "ES512 / P-521 is not supported"),
    ("json_web_signature_test.json", "351", "ES512 / P-521 is not supported"),
];

fn jws_file(name: &str, min_checked: usize) {
    let Some(doc) = load(name) else { return };
    let all = [
        Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512,
        Alg::ES256, Alg::ES384, Alg::EdDSA, Alg::HS256, Alg::HS384, Alg::HS512,
    ];
    let mut t = Tally::default();
    // The same token marked both valid and invalid in one group cannot be judged (the source
    // lost the padding that told them apart): reported, not judged.
    let mut contradictory = Vec::new();
    for g in doc["testGroups"].as_array().unwrap() {
        let tests = g["tests"].as_array().unwrap();
        for a in tests {
            if tests.iter().any(|b| b["jws"] == a["jws"] && b["result"] != a["result"]) {
                contradictory.push(a["tcId"].to_string());
            }
        }
    }
    for g in doc["testGroups"].as_array().unwrap() {
        let key = g.get("public").or_else(|| g.get("private")).unwrap();
        let set = match key.get("keys").and_then(Value::as_array) {
            Some(keys) => KeySet::from_values(keys),
            None => KeySet::from_values(std::slice::from_ref(key)),
        };
        for test in g["tests"].as_array().unwrap() {
            let id = format!("{} tc{}", g["comment"], test["tcId"]);
            let result = test["result"].as_str().unwrap();
            let Some(token) = test["jws"].as_str() else {
                // JSON serialization is not a bearer token: only compact JWS is accepted.
                t.skipped.push(format!("{id} (not compact)"));
                assert_ne!(result, "valid", "{id}");
                continue;
            };
            let accepted = jwt::decode(token).is_ok_and(|d| jwt::verify_signature(&d, &set, &all).is_ok());
            let tc = test["tcId"].to_string();
            if contradictory.contains(&tc) {
                t.skipped.push(format!("{id} (contradictory: same token also marked otherwise)"));
                continue;
            }
            if let Some((_, _, why)) = DEVIATIONS.iter().find(|(f, id, _)| *f == name && *id == tc) {
                assert!(!accepted, "{id}: deviation no longer holds ({why})");
                t.skipped.push(format!("{id} (deviation: {why})"));
                continue;
            }
            t.judge(id, result, accepted);
        }
    }
    t.finish(name, min_checked);
}

#[test]
fn json_web_signature_vectors() {
    jws_file("json_web_signature_test.json", 350);
}

#[test]
fn json_web_key_vectors() {
    jws_file("json_web_key_test.json", 20);
}

/// Groups with edge-case EC keys carry no JWK: build one from the uncompressed point.
fn ec_jwk(pk: &Value) -> Option<Value> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let point = hex(pk.get("uncompressed")?.as_str()?);
    let crv = match pk.get("curve")?.as_str()? {
        "secp256r1" => "P-256",
        "secp384r1" => "P-384",
        _ => return None,
    };
    let half = (point.len() - 1) / 2;
    Some(serde_json::json!({ "kty": "EC", "crv": crv, "x": b64.encode(&point[1..1 + half]), "y": b64.encode(&point[1 + half..]) }))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn primitive_file(name: &str, alg: Alg, min_checked: usize) {
    let Some(doc) = load(name) else { return };
    let mut t = Tally::default();
    for g in doc["testGroups"].as_array().unwrap() {
        let jwk_value = g.get("publicKeyJwk").or_else(|| g.get("keyJwk")).cloned().or_else(|| ec_jwk(&g["publicKey"]));
        let key = jwk_value.as_ref().and_then(jwk::parse_jwk);
        for test in g["tests"].as_array().unwrap() {
            let id = format!("tc{}", test["tcId"]);
            let result = test["result"].as_str().unwrap();
            let Some(key) = &key else {
                // A key our JWK parser refuses (e.g. off-curve, too small) can verify nothing.
                t.judge(id, result, false);
                continue;
            };
            let accepted = jwt::verify_with(&key.key, alg, &hex(test["msg"].as_str().unwrap()), &hex(test["sig"].as_str().unwrap()));
            t.judge(id, result, accepted);
        }
    }
    t.finish(name, min_checked);
}

#[test]
fn rsa_pkcs1_vectors() {
    primitive_file("rsa_signature_2048_sha256_test.json", Alg::RS256, 200);
    primitive_file("rsa_signature_2048_sha384_test.json", Alg::RS384, 200);
    primitive_file("rsa_signature_2048_sha512_test.json", Alg::RS512, 200);
    primitive_file("rsa_signature_3072_sha256_test.json", Alg::RS256, 200);
    primitive_file("rsa_signature_4096_sha256_test.json", Alg::RS256, 200);
}

#[test]
fn rsa_pss_vectors() {
    primitive_file("rsa_pss_2048_sha256_mgf1_32_test.json", Alg::PS256, 108);
}

#[test]
fn ecdsa_p1363_vectors() {
    primitive_file("ecdsa_secp256r1_sha256_p1363_test.json", Alg::ES256, 200);
    primitive_file("ecdsa_secp384r1_sha384_p1363_test.json", Alg::ES384, 200);
}

#[test]
fn ed25519_vectors() {
    primitive_file("ed25519_test.json", Alg::EdDSA, 140);
}

#[test]
fn hmac_sha256_vectors() {
    let Some(doc) = load("hmac_sha256_test.json") else { return };
    let mut t = Tally::default();
    for g in doc["testGroups"].as_array().unwrap() {
        if g["tagSize"] != 256 {
            // Truncated tags are not HS256.
            t.skipped.push(format!("tagSize {}", g["tagSize"]));
            continue;
        }
        for test in g["tests"].as_array().unwrap() {
            let accepted = jwt::hmac_verify::<hmac::Hmac<sha2::Sha256>>(
                &hex(test["key"].as_str().unwrap()),
                &hex(test["msg"].as_str().unwrap()),
                &hex(test["tag"].as_str().unwrap()),
            );
            t.judge(format!("tc{}", test["tcId"]), test["result"].as_str().unwrap(), accepted);
        }
    }
    t.finish("hmac_sha256_test.json", 50);
}
