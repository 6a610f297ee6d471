//! A demo issuer: RSA keys, a JWKS document and tokens with any claims.

use serde_json::Value;

pub struct Issuer {
    keys: Vec<(String, jwt_simple::algorithms::RS256KeyPair)>,
}

impl Issuer {
    /// An issuer with one 2048-bit RSA key per kid.
    pub fn new(kids: &[&str]) -> Issuer {
        use jwt_simple::algorithms::RS256KeyPair;
        let keys = kids
            .iter()
            .map(|kid| (kid.to_string(), RS256KeyPair::generate(2048).expect("RSA key").with_key_id(kid)))
            .collect();
        Issuer { keys }
    }

    /// The JWKS of the given kids (all when empty).
    pub fn jwks(&self, kids: &[&str]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let keys: Vec<Value> = self
            .keys
            .iter()
            .filter(|(kid, _)| kids.is_empty() || kids.contains(&kid.as_str()))
            .map(|(kid, kp)| {
                let c = kp.public_key().to_components();
                serde_json::json!({ "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64.encode(&c.n), "e": b64.encode(&c.e) })
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    /// A compact JWS of exactly these header and payload bytes (any JSON, or none), with an
    /// RS256 signature by `kid` over them: hostile tokens with a valid signature.
    pub fn sign_raw(&self, kid: &str, header: &[u8], payload: &[u8]) -> String {
        use base64::Engine;
        let kp = &self.keys.iter().find(|(k, _)| k == kid).expect("kid").1;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing_input = format!("{}.{}", b64.encode(header), b64.encode(payload));
        let sig = rsa_sign(kp, signing_input.as_bytes());
        format!("{signing_input}.{}", b64.encode(sig))
    }

    /// The PEM of `kid`'s public key (what an algorithm-confusion attacker uses as HMAC secret).
    pub fn public_pem(&self, kid: &str) -> String {
        self.keys.iter().find(|(k, _)| k == kid).expect("kid").1.public_key().to_pem().expect("PEM")
    }

    /// An RS256 token with exactly these claims, signed by `kid`.
    pub fn token(&self, kid: &str, claims: &Value) -> String {
        use base64::Engine;
        let kp = &self.keys.iter().find(|(k, _)| k == kid).expect("kid").1;
        // jwt-simple signs its own claim struct; to control every claim byte, sign a token it
        // made for an empty payload and splice ours in with a fresh signature over it.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": kid }).to_string());
        let payload = b64.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let sig = rsa_sign(kp, signing_input.as_bytes());
        format!("{signing_input}.{}", b64.encode(sig))
    }
}

/// RSASSA-PKCS1-v1_5 with SHA-256, through the key's DER form and the `rsa` crate that
/// jwt-simple's pure-Rust build uses.
fn rsa_sign(kp: &jwt_simple::algorithms::RS256KeyPair, msg: &[u8]) -> Vec<u8> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let der = kp.to_der().expect("DER");
    let key = rsa::RsaPrivateKey::from_pkcs1_der(&der).or_else(|_| rsa::RsaPrivateKey::from_pkcs8_der(&der)).expect("RSA key");
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
    signer.sign(msg).to_vec()
}
