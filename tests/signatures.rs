//! Who verifies JWT signatures, against the mock host: the host's `verify_signature` when its
//! configure-time probe answers right (the mock then verifies with the rsa and p256 crates,
//! reading exactly the DER keys, DER signatures and protobuf arguments the filter sends), our
//! own code when the host has no such function or fails the probe, and our own code for the
//! one signature whenever the host errs: a host error never allows.

use std::rc::Rc;

use api_auth_filter::glue::mock::MockHost;
use api_auth_filter::glue::{Action, HostError, HostResult, Worker};
use jwt_simple::prelude::*;
use serde_json::json;

const NOW_MS: u64 = 1_790_000_000_000;
const ISS: &str = "https://idp.signatures.example";
const REFUSED: &[u8] = b"Failed to verify digest. Error code: 0";

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

struct Keys {
    rsa: RS256KeyPair,
    ec: ES256KeyPair,
}

/// One key pair of each, for every test (an RSA key takes a while, in V8 more so).
fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| Keys { rsa: RS256KeyPair::generate(2048).unwrap().with_key_id("r1"), ec: ES256KeyPair::generate().with_key_id("e1") })
}

fn config(k: &Keys) -> Vec<u8> {
    let rsa = k.rsa.public_key().to_components();
    let point = k.ec.public_key().public_key().to_bytes_uncompressed();
    let jwks = json!({ "keys": [
        { "kty": "RSA", "kid": "r1", "alg": "RS256", "n": b64(&rsa.n), "e": b64(&rsa.e) },
        { "kty": "EC", "crv": "P-256", "kid": "e1", "alg": "ES256", "x": b64(&point[1..33]), "y": b64(&point[33..65]) },
    ] });
    serde_json::to_vec(&json!({
        "providers": { "idp": { "issuer": ISS, "algorithms": ["RS256", "ES256"], "jwks": { "inline": jwks } } },
        "routes": [ { "match": { "prefix": "/api" }, "auth": {} } ]
    }))
    .unwrap()
}

fn claims(sub: &str) -> JWTClaims<NoCustomClaims> {
    let mut c = Claims::create(jwt_simple::prelude::Duration::from_hours(1)).with_issuer(ISS).with_subject(sub);
    // The mock's clock, not the machine's.
    c.issued_at = Some(jwt_simple::prelude::Duration::from_secs(NOW_MS / 1000 - 10));
    c.expires_at = Some(jwt_simple::prelude::Duration::from_secs(NOW_MS / 1000 + 3600));
    c.invalid_before = None;
    c
}

fn rs256(k: &Keys, sub: &str) -> String {
    k.rsa.sign(claims(sub)).unwrap()
}

fn es256(k: &Keys, sub: &str) -> String {
    k.ec.sign(claims(sub)).unwrap()
}

/// The token with its signature's first byte changed (still a well-formed signature).
fn forged(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    use base64::Engine;
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).unwrap();
    bytes[0] ^= 0x01;
    format!("{input}.{}", b64(&bytes))
}

fn status(w: &Worker<MockHost>, ctx: u32, token: &str) -> u16 {
    w.host.start(ctx, "GET", "/api/x", &[("authorization", format!("Bearer {token}").as_bytes())]);
    let action = w.on_request_headers(ctx, true);
    match w.host.request(ctx).answered {
        Some((s, _, _)) => s,
        None => {
            assert_eq!(action, Action::Continue, "neither answered nor let through");
            200
        }
    }
}

// --- a mock of Envoy's verify_signature -----------------------------------------------------

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0;
    for shift in (0..).step_by(7) {
        let x = b[*at];
        *at += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return v;
        }
    }
    unreachable!()
}

/// hash, key, signature, text.
type Arguments = (String, Vec<u8>, Vec<u8>, Vec<u8>);
type Foreign = Box<dyn Fn(&str, &[u8]) -> HostResult<Vec<u8>>>;

/// `VerifySignatureArguments`. Only length-delimited fields 1-4.
fn decode_arguments(b: &[u8]) -> Option<Arguments> {
    let mut fields: [Option<Vec<u8>>; 5] = Default::default();
    let mut at = 0;
    while at < b.len() {
        let tag = varint(b, &mut at);
        assert_eq!(tag & 7, 2, "every field is length-delimited");
        let len = varint(b, &mut at) as usize;
        fields[(tag >> 3) as usize] = Some(b[at..at + len].to_vec());
        at += len;
    }
    let [_, Some(h), Some(k), Some(s), Some(t)] = fields else { return None };
    Some((String::from_utf8(h).unwrap(), k, s, t))
}

/// A strict DER ECDSA-Sig-Value to r || s.
fn der_to_p1363(d: &[u8]) -> Option<[u8; 64]> {
    let int = |d: &[u8]| -> Option<(Vec<u8>, usize)> {
        if d.len() < 2 || d[0] != 0x02 || d[1] as usize + 2 > d.len() {
            return None;
        }
        let v = &d[2..2 + d[1] as usize];
        // Minimal: no 0x00 unless the next byte has its top bit set; never negative.
        if v.is_empty() || v[0] & 0x80 != 0 || (v.len() > 1 && v[0] == 0 && v[1] & 0x80 == 0) {
            return None;
        }
        Some((v.to_vec(), 2 + v.len()))
    };
    if d.len() < 2 || d[0] != 0x30 || d[1] as usize != d.len() - 2 {
        return None;
    }
    let (r, used) = int(&d[2..])?;
    let (s, used2) = int(&d[2 + used..])?;
    if 2 + used + used2 != d.len() {
        return None;
    }
    let mut out = [0u8; 64];
    for (v, at) in [(r, 32), (s, 64)] {
        let v = if v.len() == 33 { &v[1..] } else { &v[..] };
        if v.len() > 32 {
            return None;
        }
        out[at - v.len()..at].copy_from_slice(v);
    }
    Some(out)
}

/// Envoy's answers: `result: true`, or the verification failure.
fn result(ok: bool) -> Vec<u8> {
    if ok {
        vec![0x08, 0x01]
    } else {
        let mut v = vec![0x12, REFUSED.len() as u8];
        v.extend_from_slice(REFUSED);
        v
    }
}

/// What Envoy's verify_signature does with BoringSSL, done with the rsa and p256 crates.
fn real_verify(name: &str, args: &[u8]) -> HostResult<Vec<u8>> {
    use rsa::pkcs8::DecodePublicKey;
    use sha2::Digest;
    assert_eq!(name, "verify_signature");
    // Envoy: no key, BadArgument.
    let Some((hash, key, sig, text)) = decode_arguments(args) else { return Err(HostError::Status(2)) };
    const P256_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
    let prefix: Vec<u8> = (0..P256_PREFIX.len()).step_by(2).map(|i| u8::from_str_radix(&P256_PREFIX[i..i + 2], 16).unwrap()).collect();
    if key.starts_with(&prefix) {
        assert_eq!(hash, "sha256");
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key[prefix.len()..]).map_err(|_| HostError::Status(2))?;
        let ok = der_to_p1363(&sig).and_then(|rs| p256::ecdsa::Signature::from_slice(&rs).ok()).is_some_and(|s| {
            use p256::ecdsa::signature::Verifier;
            vk.verify(&text, &s).is_ok()
        });
        return Ok(result(ok));
    }
    let pk = rsa::RsaPublicKey::from_public_key_der(&key).map_err(|_| HostError::Status(2))?;
    let ok = match hash.as_str() {
        "sha256" => pk.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &sha2::Sha256::digest(&text), &sig).is_ok(),
        "sha384" => pk.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha384>(), &sha2::Sha384::digest(&text), &sig).is_ok(),
        "sha512" => pk.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha512>(), &sha2::Sha512::digest(&text), &sig).is_ok(),
        other => panic!("hash {other}"),
    };
    Ok(result(ok))
}

fn with_host(f: impl Fn(&str, &[u8]) -> HostResult<Vec<u8>> + 'static) -> MockHost {
    let host = MockHost::new(NOW_MS);
    *host.foreign.borrow_mut() = Some(Box::new(f));
    host
}

// --- tests --------------------------------------------------------------------------------

#[test]
fn a_host_that_verifies_right_gets_rs256_and_es256() {
    let k = keys();
    let w = Worker::configure(with_host(real_verify), &config(k)).unwrap();
    let probed = w.host.foreign_calls.get();
    assert!(probed >= 5, "the probe asked the host ({probed} calls)");
    for (i, t) in [rs256(k, "u1"), es256(k, "u2")].iter().enumerate() {
        let before = w.host.foreign_calls.get();
        assert_eq!(status(&w, 10 + i as u32, t), 200, "a valid token is allowed");
        assert_eq!(w.host.foreign_calls.get(), before + 1, "verified by the host, once");
        let before = w.host.foreign_calls.get();
        assert_eq!(status(&w, 20 + i as u32, &forged(t)), 401, "a forged one is refused");
        assert_eq!(w.host.foreign_calls.get(), before + 1);
    }
}

#[test]
fn the_host_decides_when_it_answers() {
    // The probe passes, then the host says every signature is valid: a forged token is then
    // allowed, which shows the host's answer is the one used (and why the probe must pass).
    let k = keys();
    let lying = Rc::new(std::cell::Cell::new(false));
    let l = lying.clone();
    let w = Worker::configure(with_host(move |n, a| if l.get() { Ok(result(true)) } else { real_verify(n, a) }), &config(k)).unwrap();
    lying.set(true);
    assert_eq!(status(&w, 1, &forged(&rs256(k, "u1"))), 200);
}

#[test]
fn without_verify_signature_our_own_code_verifies() {
    let k = keys();
    let w = Worker::configure(MockHost::new(NOW_MS), &config(k)).unwrap();
    assert_eq!(w.host.foreign_calls.get(), 1, "one probe call, answered NotFound");
    assert_eq!(status(&w, 1, &rs256(k, "u1")), 200);
    assert_eq!(status(&w, 2, &forged(&rs256(k, "u1"))), 401);
    assert_eq!(status(&w, 3, &es256(k, "u1")), 200);
    assert_eq!(status(&w, 4, &forged(&es256(k, "u1"))), 401);
    assert_eq!(w.host.foreign_calls.get(), 1, "never asked again");
}

#[test]
fn a_host_that_fails_its_probe_is_never_asked() {
    // Says valid to everything (the known-bad signature too), or answers what is no answer.
    let k = keys();
    let answers: Vec<Foreign> = vec![
        Box::new(|_: &str, _: &[u8]| Ok(result(true))),
        Box::new(|_: &str, _: &[u8]| Ok(result(false))),
        Box::new(|_: &str, _: &[u8]| Ok(vec![0x08])),
        Box::new(|_: &str, _: &[u8]| Err(HostError::Status(10))),
    ];
    for answer in answers {
        let w = Worker::configure(with_host(answer), &config(k)).unwrap();
        let probed = w.host.foreign_calls.get();
        assert_eq!(status(&w, 1, &forged(&rs256(k, "u1"))), 401);
        assert_eq!(status(&w, 2, &forged(&es256(k, "u1"))), 401);
        assert_eq!(status(&w, 3, &rs256(k, "u1")), 200);
        assert_eq!(status(&w, 4, &es256(k, "u1")), 200);
        assert_eq!(w.host.foreign_calls.get(), probed, "not asked after a failed probe");
    }
}

#[test]
fn a_host_error_after_the_probe_falls_back_to_our_code_for_that_signature() {
    let k = keys();
    // 0: right; 1: a status; 2: damaged bytes; 3: result true with an error; 4: another error.
    let mode = Rc::new(std::cell::Cell::new(0));
    let m = mode.clone();
    let w = Worker::configure(
        with_host(move |n, a| match m.get() {
            0 => real_verify(n, a),
            1 => Err(HostError::Status(10)),
            2 => Ok(vec![0x12, 0x40, 0x41]),
            3 => Ok([vec![0x08, 0x01], result(false)].concat()),
            _ => Ok(b"\x12\x16sha256 is not supported.".to_vec()),
        }),
        &config(k),
    )
    .unwrap();
    let mut ctx = 0;
    for m in 1..=4 {
        mode.set(m);
        for (sub, t) in [("a", rs256(k, &format!("u{m}"))), ("b", es256(k, &format!("v{m}")))] {
            ctx += 1;
            let before = w.host.foreign_calls.get();
            assert_eq!(status(&w, ctx, &forged(&t)), 401, "mode {m} {sub}: a host error never allows");
            assert_eq!(w.host.foreign_calls.get(), before + 1, "the host was asked");
            ctx += 1;
            assert_eq!(status(&w, ctx, &t), 200, "mode {m} {sub}: our own code still accepts a valid one");
        }
    }
}

#[test]
fn signatures_our_code_refuses_on_sight_never_reach_the_host() {
    use base64::Engine;
    let k = keys();
    let w = Worker::configure(with_host(real_verify), &config(k)).unwrap();
    let probed = w.host.foreign_calls.get();
    let dec = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.rsplit_once('.').unwrap().1).unwrap();
    let with_sig = |t: &str, sig: &[u8]| format!("{}.{}", t.rsplit_once('.').unwrap().0, b64(sig));
    let rs = rs256(k, "w1");
    let es = es256(k, "w2");
    let es_sig = dec(&es);
    // P-256's n, big-endian: an s of exactly n is out of range.
    let n: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&"ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"[2 * i..2 * i + 2], 16).unwrap()).collect();
    let cases = [
        with_sig(&rs, &dec(&rs)[1..]),
        with_sig(&rs, &[dec(&rs), vec![0]].concat()),
        with_sig(&es, &es_sig[..63]),
        with_sig(&es, &[es_sig[..32].to_vec(), n.clone()].concat()),
        with_sig(&es, &[vec![0; 32], es_sig[32..].to_vec()].concat()),
    ];
    for (i, t) in cases.iter().enumerate() {
        assert_eq!(status(&w, 100 + i as u32, t), 401, "case {i}");
    }
    assert_eq!(w.host.foreign_calls.get(), probed, "none of them was sent to the host");
}
