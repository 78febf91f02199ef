//! Known answers for Sealed's own key schedule: `vectors/key-schedule.json`.
//!
//! The file is produced by this code and checked by it; an independent implementation of
//! `docs/PROTOCOL.md` must reproduce every output from the inputs given. Regenerate it with
//! `SEALED_REGENERATE_VECTORS=1 cargo test -p client-wasm --test key_schedule_vectors`.
//! Every integer in it stays below 2^53, so JSON parsers that read numbers as doubles
//! (JavaScript) read them exactly.

use client_wasm::chat::{ChatPayload, chat_key, open_chat, seal_chat};
use client_wasm::frame::{sframe_decrypt, sframe_encrypt};
use client_wasm::identity::Identity;
use client_wasm::key_schedule::{
    base_key, key_message_aad, kid, open, pairwise_key, roster_hash, seal,
};
use client_wasm::message::KeyMessage;
use client_wasm::safety::safety_number;
use client_wasm::secret::{EpochSecret, MeetingSecret, PairwiseKey};
use client_wasm::{DeterministicRandom, RandomSource};
use serde_json::{Value, json};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/key-schedule.json"
);

fn rand<const N: usize>(rng: &mut DeterministicRandom) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill(&mut b);
    b
}

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    unhex(v).try_into().expect("length")
}

fn identity(rng: &mut DeterministicRandom) -> (Identity, [u8; 32]) {
    loop {
        let s = rand::<32>(rng);
        if let Ok(id) = Identity::from_secret_bytes(&s) {
            return (id, s);
        }
    }
}

fn shared_x(private: &[u8; 32], public: &[u8]) -> [u8; 32] {
    // ECDH through p256 directly, independent of the engine's Identity.
    let sk = p256::SecretKey::from_slice(private).unwrap();
    let pk = p256::PublicKey::from_sec1_bytes(public).unwrap();
    let shared = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
    (*shared.raw_secret_bytes()).into()
}

fn generate() -> Value {
    let mut rng = DeterministicRandom::new(b"sealed key-schedule vectors v1");
    let rooms = ["room-1", "Team_Sync-42", "a"];

    let mut pairwise = Vec::new();
    for room in rooms {
        let m = rand::<32>(&mut rng);
        let (a, a_secret) = identity(&mut rng);
        let (b, _) = identity(&mut rng);
        let x = shared_x(&a_secret, &b.public_key());
        let key = pairwise_key(
            &MeetingSecret::from_bytes(m),
            room,
            &x,
            &a.public_key(),
            &b.public_key(),
        );
        pairwise.push(json!({
            "meeting_secret": h(&m), "room": room, "private_a": h(&a_secret),
            "public_a": h(&a.public_key()), "public_b": h(&b.public_key()), "key": h(key.as_bytes()),
        }));
    }

    let mut frame = Vec::new();
    let cases: [(u64, u64, u64, usize, usize); 4] = [
        (1, 0, 0, 1, 20),
        (300, 255, 7, 10, 100),
        ((1 << 32) + 5, 256, 65_536, 3, 50),
        ((1 << 44) + 7, 70_000, (1 << 40) + 3, 0, 1),
    ];
    for (sender_id, epoch, ctr, meta_len, pt_len) in cases {
        let e = EpochSecret::from_bytes(rand::<32>(&mut rng));
        let base = base_key(&e, sender_id);
        let k = kid(sender_id, epoch).unwrap();
        let mut metadata = vec![0u8; meta_len];
        rng.fill(&mut metadata);
        let mut plaintext = vec![0u8; pt_len];
        rng.fill(&mut plaintext);
        let sframe = sframe_encrypt(base.as_bytes(), k, ctr, &metadata, &plaintext).unwrap();
        frame.push(json!({
            "epoch_secret": h(e.as_bytes()), "sender_id": sender_id, "epoch": epoch,
            "base_key": h(base.as_bytes()), "kid": k, "ctr": ctr, "metadata": h(&metadata),
            "plaintext": h(&plaintext), "sframe": h(&sframe),
        }));
    }

    let mut wrap = Vec::new();
    let wrap_cases: [(&str, u64, u64, &[u64]); 3] = [
        ("room-1", 0, 1, &[1, 2]),
        ("Team_Sync-42", 300, 3, &[3, 4, 9]),
        (
            "a",
            1 << 33,
            (1 << 32) + 1,
            &[(1 << 32) + 1, (1 << 32) + 2, (1 << 40), 1 << 50],
        ),
    ];
    for (room, epoch, leader, ids) in wrap_cases {
        let members: Vec<(u64, [u8; 65])> = ids
            .iter()
            .map(|&id| (id, identity(&mut rng).0.public_key()))
            .collect();
        let hash = roster_hash(members.iter().map(|(id, pk)| (*id, pk)));
        let to = ids[1];
        let key = PairwiseKey::from_bytes(rand::<32>(&mut rng));
        let nonce = rand::<12>(&mut rng);
        let e = rand::<32>(&mut rng);
        let msg = KeyMessage::EpochKey {
            epoch,
            roster: ids.to_vec(),
            roster_hash: hash,
        };
        let wire = msg.seal(&key, &nonce, room, leader, to, &e);
        let parsed = KeyMessage::parse(&wire).unwrap();
        let aad = key_message_aad(room, leader, to, parsed.clear);
        let ciphertext = seal(&key, &nonce, &aad, &e);
        wrap.push(json!({
            "key": h(key.as_bytes()), "nonce": h(&nonce), "aad": h(&aad), "epoch_secret": h(&e),
            "ciphertext": h(&ciphertext),
            "room": room, "epoch": epoch, "leader_id": leader, "recipient_id": to,
            "roster": members.iter().map(|(id, pk)| json!({"id": id, "public_key": h(pk)})).collect::<Vec<_>>(),
            "roster_hash": h(&hash), "message": h(&wire),
        }));
    }

    let mut safety = Vec::new();
    for ids in [
        &[1u64, 2][..],
        &[3, 17, 4_000_000_000, (1 << 32) + 9],
        &[(1 << 52) + 1],
    ] {
        let members: Vec<(u64, [u8; 65])> = ids
            .iter()
            .map(|&id| (id, identity(&mut rng).0.public_key()))
            .collect();
        let code = safety_number(members.iter().map(|(id, pk)| (*id, pk)));
        safety.push(json!({
            "members": members.iter().map(|(id, pk)| json!({"id": id, "public_key": h(pk)})).collect::<Vec<_>>(),
            "code": code,
        }));
    }

    let mut chat = Vec::new();
    let chat_cases: [(&str, u64, u64, u64, &str); 3] = [
        ("room-1", 0, 1, 0, "hello"),
        ("Team_Sync-42", 300, 7, 41, "Grüße, 会議 — ok?"),
        ("a", (1 << 40) + 3, (1 << 52) + 9, (1 << 50) + 1, ""),
    ];
    for (room, epoch, sender_id, seq, text) in chat_cases {
        let e = EpochSecret::from_bytes(rand::<32>(&mut rng));
        let key = chat_key(&e, sender_id, epoch);
        let ciphertext = seal_chat(&key, room, sender_id, epoch, seq, text.as_bytes()).unwrap();
        let payload = ChatPayload {
            epoch,
            seq,
            sealed: &ciphertext,
        }
        .to_bytes();
        chat.push(json!({
            "epoch_secret": h(e.as_bytes()), "epoch": epoch, "sender_id": sender_id, "room": room,
            "seq": seq, "plaintext": h(text.as_bytes()), "key": h(key.as_bytes()),
            "ciphertext": h(&ciphertext), "payload": h(&payload),
        }));
    }

    json!({
        "description": "Sealed v2 key schedule known answers; see docs/PROTOCOL.md. Hex is lowercase; integers are JSON numbers.",
        "pairwise": pairwise, "frame": frame, "wrap": wrap, "safety_number": safety, "chat": chat,
    })
}

/// Recomputes every output from its inputs.
fn check(v: &Value) {
    for c in v["pairwise"].as_array().unwrap() {
        let private_a = arr::<32>(&c["private_a"]);
        let public_b = unhex(&c["public_b"]);
        let a = Identity::from_secret_bytes(&private_a).unwrap();
        assert_eq!(h(&a.public_key()), c["public_a"].as_str().unwrap());
        let x = shared_x(&private_a, &public_b);
        let key = pairwise_key(
            &MeetingSecret::from_bytes(arr(&c["meeting_secret"])),
            c["room"].as_str().unwrap(),
            &x,
            &a.public_key(),
            &public_b.clone().try_into().unwrap(),
        );
        assert_eq!(h(key.as_bytes()), c["key"].as_str().unwrap());
    }
    let mut big_sender = false;
    let mut big_epoch = false;
    for c in v["frame"].as_array().unwrap() {
        let e = EpochSecret::from_bytes(arr(&c["epoch_secret"]));
        let sender = c["sender_id"].as_u64().unwrap();
        let epoch = c["epoch"].as_u64().unwrap();
        big_sender |= sender > 1 << 32;
        big_epoch |= epoch > 255;
        let base = base_key(&e, sender);
        assert_eq!(h(base.as_bytes()), c["base_key"].as_str().unwrap());
        let k = kid(sender, epoch).unwrap();
        assert_eq!(k, c["kid"].as_u64().unwrap());
        let metadata = unhex(&c["metadata"]);
        let plaintext = unhex(&c["plaintext"]);
        let sframe = sframe_encrypt(
            base.as_bytes(),
            k,
            c["ctr"].as_u64().unwrap(),
            &metadata,
            &plaintext,
        )
        .unwrap();
        assert_eq!(h(&sframe), c["sframe"].as_str().unwrap());
        assert_eq!(
            sframe_decrypt(base.as_bytes(), k, &metadata, &sframe).unwrap(),
            plaintext
        );
    }
    assert!(big_sender && big_epoch);
    for c in v["wrap"].as_array().unwrap() {
        let key = PairwiseKey::from_bytes(arr(&c["key"]));
        let nonce = arr::<12>(&c["nonce"]);
        let aad = unhex(&c["aad"]);
        let e = unhex(&c["epoch_secret"]);
        let ct = seal(&key, &nonce, &aad, &e);
        assert_eq!(h(&ct), c["ciphertext"].as_str().unwrap());
        assert_eq!(
            open(&key, &nonce, &aad, &ct).unwrap().as_slice(),
            e.as_slice()
        );
        // the documented message layout and associated data
        let members: Vec<(u64, [u8; 65])> = c["roster"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_u64().unwrap(), arr::<65>(&m["public_key"])))
            .collect();
        let hash = roster_hash(members.iter().map(|(id, pk)| (*id, pk)));
        assert_eq!(h(&hash), c["roster_hash"].as_str().unwrap());
        let room = c["room"].as_str().unwrap();
        let (from, to) = (
            c["leader_id"].as_u64().unwrap(),
            c["recipient_id"].as_u64().unwrap(),
        );
        let msg = KeyMessage::EpochKey {
            epoch: c["epoch"].as_u64().unwrap(),
            roster: members.iter().map(|(id, _)| *id).collect(),
            roster_hash: hash,
        };
        let wire = msg.seal(&key, &nonce, room, from, to, &e);
        assert_eq!(h(&wire), c["message"].as_str().unwrap());
        let parsed = KeyMessage::parse(&wire).unwrap();
        assert_eq!(key_message_aad(room, from, to, parsed.clear), aad);
        assert_eq!(
            parsed.open(&key, room, from, to).unwrap().as_slice(),
            e.as_slice()
        );
    }
    for c in v["safety_number"].as_array().unwrap() {
        let members: Vec<(u64, [u8; 65])> = c["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_u64().unwrap(), arr::<65>(&m["public_key"])))
            .collect();
        assert_eq!(
            safety_number(members.iter().map(|(id, pk)| (*id, pk))),
            c["code"].as_str().unwrap()
        );
    }
    for c in v["chat"].as_array().unwrap() {
        let e = EpochSecret::from_bytes(arr(&c["epoch_secret"]));
        let (epoch, sender, seq) = (
            c["epoch"].as_u64().unwrap(),
            c["sender_id"].as_u64().unwrap(),
            c["seq"].as_u64().unwrap(),
        );
        let room = c["room"].as_str().unwrap();
        let key = chat_key(&e, sender, epoch);
        assert_eq!(h(key.as_bytes()), c["key"].as_str().unwrap());
        let plaintext = unhex(&c["plaintext"]);
        let ct = seal_chat(&key, room, sender, epoch, seq, &plaintext).unwrap();
        assert_eq!(h(&ct), c["ciphertext"].as_str().unwrap());
        assert_eq!(
            open_chat(&key, room, sender, epoch, seq, &ct).unwrap(),
            plaintext
        );
        let payload = unhex(&c["payload"]);
        let parsed = ChatPayload::parse(&payload).unwrap();
        assert_eq!(
            (parsed.epoch, parsed.seq, parsed.sealed),
            (epoch, seq, &ct[..])
        );
    }
    for section in ["pairwise", "frame", "wrap", "safety_number", "chat"] {
        assert!(v[section].as_array().unwrap().len() >= 3, "{section}");
    }
}

#[test]
fn key_schedule_known_answers() {
    let generated = generate();
    if std::env::var_os("SEALED_REGENERATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(PATH, text).unwrap();
    }
    let text = std::fs::read_to_string(PATH)
        .expect("tests/vectors/key-schedule.json (regenerate with SEALED_REGENERATE_VECTORS=1)");
    let stored: Value = serde_json::from_str(&text).unwrap();
    check(&stored);
    assert_eq!(
        stored, generated,
        "the generator and the stored file disagree"
    );
}
