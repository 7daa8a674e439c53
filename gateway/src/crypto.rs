//! Secrets handling: OTP codes from a CSPRNG, code MACs compared in constant time, SMS
//! texts sealed at rest, API keys stored as hashes. All from ring.

use anyhow::{anyhow, Context};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, digest, hkdf, hmac};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Keys derived from the configured server key; each use has its own key (HKDF).
pub struct ServerKeys {
    mac: hmac::Key,
    lookup: hmac::Key,
    seal: aead::LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKeys(..)")
    }
}

struct KeyLen(usize);

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(prk: &hkdf::Prk, label: &[u8], len: usize) -> anyhow::Result<Vec<u8>> {
    let info = [label];
    let okm = prk
        .expand(&info, KeyLen(len))
        .map_err(|_| anyhow!("HKDF expand failed"))?;
    let mut out = vec![0u8; len];
    okm.fill(&mut out)
        .map_err(|_| anyhow!("HKDF fill failed"))?;
    Ok(out)
}

impl ServerKeys {
    pub fn from_secret(secret: &SecretString) -> anyhow::Result<ServerKeys> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"otp-gateway/v1");
        let prk = salt.extract(secret.expose_secret().as_bytes());
        let mac = hmac::Key::new(hmac::HMAC_SHA256, &derive(&prk, b"otp-code-mac", 32)?);
        let lookup = hmac::Key::new(hmac::HMAC_SHA256, &derive(&prk, b"lookup-key", 32)?);
        let seal_bytes = derive(&prk, b"sms-body-seal", 32)?;
        let seal = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, &seal_bytes)
                .map_err(|_| anyhow!("bad AES key"))?,
        );
        Ok(ServerKeys {
            mac,
            lookup,
            seal,
            rng: SystemRandom::new(),
        })
    }

    fn mac_input(id: Uuid, version: i32, purpose: &str, msisdn: &str, code: &str) -> Vec<u8> {
        let mut input = Vec::with_capacity(80);
        input.extend_from_slice(id.as_bytes());
        input.extend_from_slice(&version.to_be_bytes());
        for part in [purpose, msisdn, code] {
            input.extend_from_slice(&(part.len() as u32).to_be_bytes());
            input.extend_from_slice(part.as_bytes());
        }
        input
    }

    /// HMAC-SHA256 of the code bound to the challenge, its version, purpose and phone.
    pub fn code_mac(
        &self,
        id: Uuid,
        version: i32,
        purpose: &str,
        msisdn: &str,
        code: &str,
    ) -> Vec<u8> {
        hmac::sign(
            &self.mac,
            &Self::mac_input(id, version, purpose, msisdn, code),
        )
        .as_ref()
        .to_vec()
    }

    /// Constant-time comparison of a candidate code against a stored MAC.
    pub fn verify_code(
        &self,
        stored_mac: &[u8],
        id: Uuid,
        version: i32,
        purpose: &str,
        msisdn: &str,
        candidate: &str,
    ) -> bool {
        hmac::verify(
            &self.mac,
            &Self::mac_input(id, version, purpose, msisdn, candidate),
            stored_mac,
        )
        .is_ok()
    }

    /// A keyed hash of an identifier (a phone number) for finding rows without storing
    /// the identifier in clear.
    pub fn lookup_key(&self, value: &str) -> Vec<u8> {
        hmac::sign(&self.lookup, value.as_bytes()).as_ref().to_vec()
    }

    /// A code of `len` decimal digits, uniformly distributed.
    pub fn random_code(&self, len: usize) -> anyhow::Result<String> {
        let mut code = String::with_capacity(len);
        let mut buf = [0u8; 16];
        while code.len() < len {
            self.rng
                .fill(&mut buf)
                .map_err(|_| anyhow!("system RNG failed"))?;
            // 250 is the largest multiple of 10 ≤ 256: rejecting above it keeps digits uniform.
            for b in buf {
                if b < 250 && code.len() < len {
                    code.push(char::from(b'0' + b % 10));
                }
            }
        }
        Ok(code)
    }

    /// AES-256-GCM with a random nonce; `aad` binds the ciphertext to its row.
    pub fn seal(&self, plaintext: &str, aad: &str) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow!("system RNG failed"))?;
        let mut in_out = plaintext.as_bytes().to_vec();
        self.seal
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &str) -> anyhow::Result<String> {
        if sealed.len() < aead::NONCE_LEN {
            return Err(anyhow!("sealed text too short"));
        }
        let (nonce, rest) = sealed.split_at(aead::NONCE_LEN);
        let nonce =
            aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow!("bad nonce"))?;
        let mut in_out = rest.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, aead::Aad::from(aad.as_bytes()), &mut in_out)
            .map_err(|_| anyhow!("sealed text does not open under this server key"))?;
        String::from_utf8(plain.to_vec()).context("sealed text is not UTF-8")
    }

    pub fn random_bytes(&self, n: usize) -> anyhow::Result<Vec<u8>> {
        let mut out = vec![0u8; n];
        self.rng
            .fill(&mut out)
            .map_err(|_| anyhow!("system RNG failed"))?;
        Ok(out)
    }
}

/// A new API key: shown once, stored only as its SHA-256.
pub struct NewApiKey {
    pub key: String,
    pub hash: Vec<u8>,
    pub prefix: String,
}

pub fn new_api_key() -> anyhow::Result<NewApiKey> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow!("system RNG failed"))?;
    let key = format!(
        "gk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    Ok(NewApiKey {
        hash: hash_api_key(&key),
        prefix: key[..10].to_owned(),
        key,
    })
}

/// API keys carry 256 bits of entropy, so a plain SHA-256 is enough to store them.
pub fn hash_api_key(key: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, key.as_bytes())
        .as_ref()
        .to_vec()
}

pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

/// A fresh server key for the demo and tests.
pub fn generate_server_key() -> anyhow::Result<SecretString> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow!("system RNG failed"))?;
    Ok(SecretString::from(
        base64::engine::general_purpose::STANDARD.encode(bytes),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ServerKeys {
        ServerKeys::from_secret(&SecretString::from("0123456789abcdef0123456789abcdef")).unwrap()
    }

    #[test]
    fn codes_have_the_length_and_only_digits() {
        let k = keys();
        for len in 4..=10 {
            let c = k.random_code(len).unwrap();
            assert_eq!(c.len(), len);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn codes_are_roughly_uniform() {
        let k = keys();
        let mut counts = [0u32; 10];
        for _ in 0..2000 {
            for b in k.random_code(10).unwrap().bytes() {
                counts[(b - b'0') as usize] += 1;
            }
        }
        // 20 000 digits: each should be near 2 000.
        assert!(
            counts.iter().all(|&c| (1700..2300).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn mac_binds_every_field() {
        let k = keys();
        let id = Uuid::new_v4();
        let mac = k.code_mac(id, 1, "login", "84828123088", "123456");
        assert!(k.verify_code(&mac, id, 1, "login", "84828123088", "123456"));
        assert!(!k.verify_code(&mac, id, 2, "login", "84828123088", "123456"));
        assert!(!k.verify_code(&mac, id, 1, "register", "84828123088", "123456"));
        assert!(!k.verify_code(&mac, id, 1, "login", "84828123089", "123456"));
        assert!(!k.verify_code(&mac, Uuid::new_v4(), 1, "login", "84828123088", "123456"));
        assert!(!k.verify_code(&mac, id, 1, "login", "84828123088", "123457"));
    }

    #[test]
    fn seal_round_trips_and_binds_aad() {
        let k = keys();
        let sealed = k.seal("Mã OTP: 123456", "84828123088").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"123456"));
        assert_eq!(k.open(&sealed, "84828123088").unwrap(), "Mã OTP: 123456");
        assert!(k.open(&sealed, "84828123089").is_err());
        let other =
            ServerKeys::from_secret(&SecretString::from("another-key-another-key-another-k"))
                .unwrap();
        assert!(other.open(&sealed, "84828123088").is_err());
    }

    #[test]
    fn api_keys_hash_stably() {
        let k = new_api_key().unwrap();
        assert!(k.key.starts_with("gk_"));
        assert_eq!(hash_api_key(&k.key), k.hash);
        assert_ne!(hash_api_key(&new_api_key().unwrap().key), k.hash);
    }
}
