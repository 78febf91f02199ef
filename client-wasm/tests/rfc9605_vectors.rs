//! RFC 9605 Appendix C test vectors through our wrapper.
//!
//! `vectors/rfc9605-test-vectors.json` is `test-vectors/test-vectors.json` of
//! github.com/sframe-wg/sframe at commit 025d568a506937c901af8e7f0a663f39aeaf67ad
//! (2023-09-13), the generation Appendix C of RFC 9605 prints; it is byte-identical to the
//! copy the `sframe` 2.1.0 crate ships (sha256 b8d35efd…8ffdec1). We check the header
//! encodings and the SFrame vector of our suite, AES_128_GCM_SHA256_128 (0x0004).

use client_wasm::frame::{sframe_decrypt, sframe_encrypt};
use hkdf::Hkdf;
use serde_json::Value;
use sframe::header::SframeHeader;
use sha2::Sha256;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/rfc9605-test-vectors.json")).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn header_encodings() {
    let v = vectors();
    let headers = v["header"].as_array().unwrap();
    assert_eq!(headers.len(), 289);
    for h in headers {
        let kid = h["kid"].as_u64().unwrap();
        let ctr = h["ctr"].as_u64().unwrap();
        let encoded = hex(&h["encoded"]);
        let header = SframeHeader::new(kid, ctr);
        let mut buf = vec![0u8; header.len()];
        header.serialize(&mut buf).unwrap();
        assert_eq!(buf, encoded, "kid {kid} ctr {ctr}");
        let parsed = SframeHeader::deserialize(&encoded).unwrap();
        assert_eq!((parsed.key_id(), parsed.counter()), (kid, ctr));
    }
}

#[test]
fn sframe_aes_128_gcm_sha256_128() {
    let v = vectors();
    let tv = v["sframe"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["cipher_suite"] == 4)
        .unwrap();
    let kid = tv["kid"].as_u64().unwrap();
    let ctr = tv["ctr"].as_u64().unwrap();
    let base_key = hex(&tv["base_key"]);
    let metadata = hex(&tv["metadata"]);
    let pt = hex(&tv["pt"]);
    let ct = hex(&tv["ct"]);

    // RFC 9605 §4.4.2 key schedule, computed independently of the sframe crate: the labels
    // and the derived key and salt of the vector.
    let mut label_key = b"SFrame 1.0 Secret key ".to_vec();
    label_key.extend_from_slice(&kid.to_be_bytes());
    label_key.extend_from_slice(&4u16.to_be_bytes());
    let mut label_salt = b"SFrame 1.0 Secret salt ".to_vec();
    label_salt.extend_from_slice(&kid.to_be_bytes());
    label_salt.extend_from_slice(&4u16.to_be_bytes());
    assert_eq!(label_key, hex(&tv["sframe_key_label"]));
    assert_eq!(label_salt, hex(&tv["sframe_salt_label"]));
    let (secret, hk) = Hkdf::<Sha256>::extract(Some(&[]), &base_key);
    assert_eq!(secret.as_slice(), hex(&tv["sframe_secret"]).as_slice());
    let mut key = [0u8; 16];
    hk.expand(&label_key, &mut key).unwrap();
    let mut salt = [0u8; 12];
    hk.expand(&label_salt, &mut salt).unwrap();
    assert_eq!(key.to_vec(), hex(&tv["sframe_key"]));
    assert_eq!(salt.to_vec(), hex(&tv["sframe_salt"]));
    // nonce = salt XOR ctr (right-aligned)
    let mut nonce = salt;
    for (i, b) in ctr.to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    assert_eq!(nonce.to_vec(), hex(&tv["nonce"]));
    // aad = header ‖ metadata
    let header_len = SframeHeader::new(kid, ctr).len();
    let mut aad = ct[..header_len].to_vec();
    aad.extend_from_slice(&metadata);
    assert_eq!(aad, hex(&tv["aad"]));

    // Our wrapper: encryption gives the vector's ciphertext, decryption its plaintext.
    assert_eq!(
        sframe_encrypt(&base_key, kid, ctr, &metadata, &pt).unwrap(),
        ct
    );
    assert_eq!(sframe_decrypt(&base_key, kid, &metadata, &ct).unwrap(), pt);
    // and the metadata is authenticated
    assert!(sframe_decrypt(&base_key, kid, b"other", &ct).is_err());
}
