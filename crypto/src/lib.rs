//! The arithmetic under the signatures, apart from what JWS means: big-number RSA and P-256
//! tuned for wasm, P-384 and Ed25519 on one generic Montgomery arithmetic, and the DER the
//! host's verifier reads. Nothing here knows a token or a JWK. No elliptic-curve or big-integer
//! crate is linked into the module (issue 23): the crates stay as the tests' references.

pub mod der;
pub mod ed25519;
mod monty;
pub mod p256_fast;
pub mod p384;
pub mod rsa_fast;

/// The digests RSASSA-PKCS1-v1_5 signs with here (RS256/384/512).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The name Envoy's `verify_signature` takes.
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        }
    }
}
