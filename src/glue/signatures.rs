//! Who verifies JWT signatures in this VM: the host's `verify_signature` (Envoy, BoringSSL)
//! for the algorithms where it is faster than our own code in the VM, decided once when the
//! VM configures, by a probe; our own code otherwise. See `jwt::foreign` for what is sent,
//! and why a host error never allows.

use crate::jwt::foreign::{self, Delegation, Verdict};
use crate::jwt::{jwk, Alg, PublicKey, Signatures};

use super::host::{Host, HostError};

/// What the filter hands to the host when the host answers correctly. Chosen by measurement
/// (docs/configuration.md, "How signatures are verified"): per signature inside Envoy 1.40,
/// RS256 about 23 µs through the host against 50 µs in our own code in V8, ES256 about 59 µs
/// against 90 µs (`timing_host_against_own_code` in integration/tests/host_signatures.rs).
pub const PREFERRED: Delegation = Delegation { rsa: true, es256: true };

/// A JWT signature check through the host (where `delegation` says so) or our own code.
pub struct HostSignatures<'h, H: Host> {
    pub host: &'h H,
    pub delegation: Delegation,
}

impl<H: Host> HostSignatures<'_, H> {
    /// The check, and who settled it.
    pub fn check(&self, key: &PublicKey, alg: Alg, msg: &[u8], sig: &[u8]) -> Verdict {
        let call = |args: &[u8]| self.host.call_foreign(foreign::FUNCTION, args).ok();
        foreign::verify(&call, self.delegation, key, alg, msg, sig)
    }
}

impl<H: Host> Signatures for HostSignatures<'_, H> {
    fn verify(&self, key: &PublicKey, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        self.check(key, alg, msg, sig).accepted()
    }
}

const PROBE_MESSAGE: &[u8] = b"api-auth-filter: host verifier probe";
/// A throwaway RSA-2048 key (the private half was discarded) and its RS256 signature of
/// `PROBE_MESSAGE`.
const PROBE_RSA: &str = r#"{"kty":"RSA","e":"AQAB","n":"mzhV7cwoQlyFrwTNmrK2UxVX8JI6uqGc1t-3FQ2OWbONvXgzznnM6Lj_Hu7S3WYW7-fI62yEl5EZWdmxwrkwQjnfyUnJi2N8Jnv1baCk6yhUkDgxIwuIGqSqaBw9s6MYx16MMAIRgxjmBvOhP1CXQMa-_YatE1rD9UI6S9K0eA9hXxeUnptkNUR_0ebVw1rDZfOjc1oEuqQXc0Gij8SyM0BpRimiJvb8T2kRKEF93HbVcoRVX-pjC9hbxy0f63mTDh-qNFmdn7oGZWLlPTk136FU8hEuT-IZVbn9SIPkDOGPpTykkOMOntrrPlDRXHyFL5Xo04SCyt-xdY5W86gJBQ"}"#;
const PROBE_RSA_SIG: &str = "67cfc49111d7f1e128ec39bac2d2ae7cf3a842f3aa11ad1c0f11b6bc861ff82c136f96979a781deb50908c8333a8b8c6413dcd85fb962ddf1fcb2e4fbc62324f8c937ffe13bfd3daf3c2580a4e31a9a1be3c543cfddffe6c86d29f31cd8d4a70959ef4289a2cbdd1b7966d48c3083a594a39ddbae8c7c82175ccf20a2b151e003a7ee75a0e05923b766e693007006ae4bf50e51a3111a4cd52adfc2cb0eac82cd8bf374e19a8f68f49e0826f3db71bfca40a1b1e0d90e7b81a7056700f8979173dbde70f711f8a27fe22fc228ce917cc0371b5effcd39c7183877ce41ecf479e47d21daa37e62eb8fd0a931a32664609352c8258d65de1ac4db3af07e23343d7";
/// The same for P-256 and ES256 (r || s).
const PROBE_P256: &str = r#"{"kty":"EC","crv":"P-256","x":"TY9j52xrP4ywRQYaraf3sfWghBFE-5TIMlVZAg7TfnU","y":"6Z4ntsmPgmxR7MnoAIV4xnXokE14SiArmZxDQG-4oMk"}"#;
const PROBE_ES256_SIG: &str = "ddb3df39205d412236ad39727407a494f14ed509262af0083cac244a0dbd16f3a54652f02cb2f3f46afb8feb6ee7877776c6f39a07091bf7c75eab7f606bc953";

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

/// Whether the host verifies this known-good signature and refuses it with one bit changed,
/// each in a well-formed answer (never through the fallback).
fn host_answers_right<H: Host>(host: &H, jwk_json: &str, alg: Alg, sig_hex: &str) -> bool {
    let key = serde_json::from_slice(jwk_json.as_bytes()).ok().and_then(|v| jwk::parse_jwk(&v));
    let (Some(key), Some(good)) = (key, unhex(sig_hex)) else { return false };
    let mut bad = good.clone();
    if let Some(last) = bad.last_mut() {
        *last ^= 1;
    }
    let only = match alg {
        Alg::ES256 => Delegation { rsa: false, es256: true },
        _ => Delegation { rsa: true, es256: false },
    };
    let check = HostSignatures { host, delegation: only };
    check.check(&key.key, alg, PROBE_MESSAGE, &good) == Verdict::Host(true) && check.check(&key.key, alg, PROBE_MESSAGE, &bad) == Verdict::Host(false)
}

/// Decides, once per VM, what the host verifies: `wanted` less whatever the host cannot do
/// right. A host without the function (Envoy before 1.36 or another proxy) answers NotFound at
/// the first call, and everything stays ours.
pub fn probe<H: Host>(host: &H, wanted: Delegation) -> Delegation {
    if wanted == Delegation::NONE {
        return wanted;
    }
    if let Err(e) = host.call_foreign(foreign::FUNCTION, &[]) {
        // An empty message is no request: Envoy answers BadArgument. NotFound: no such function.
        if e == HostError::NotFound {
            log::info!("api-auth-filter: the host has no verify_signature; signatures are verified by the filter's own code");
            return Delegation::NONE;
        }
    }
    let got = Delegation {
        rsa: wanted.rsa && host_answers_right(host, PROBE_RSA, Alg::RS256, PROBE_RSA_SIG),
        es256: wanted.es256 && host_answers_right(host, PROBE_P256, Alg::ES256, PROBE_ES256_SIG),
    };
    let by = |host_side: bool| if host_side { "the host (verify_signature)" } else { "the filter's own code" };
    if (wanted.rsa && !got.rsa) || (wanted.es256 && !got.es256) {
        log::warn!("api-auth-filter: the host's verify_signature failed its probe for {}; those signatures are verified by the filter's own code", if wanted.rsa && !got.rsa { "RS256" } else { "ES256" });
    }
    log::info!("api-auth-filter: RS256/384/512 signatures are verified by {}, ES256 by {}, the others by the filter's own code", by(got.rsa), by(got.es256));
    got
}
