#!/usr/bin/env python3
"""An independent implementation of Sealed's E2EE formats (docs/PROTOCOL.md, section E2EE),
checked against key-schedule.json.

Written from the protocol text with Python's `cryptography` package only: it shares no code
with the Rust engine, so a disagreement means one of the two (or the document) is wrong.

    python3 client-wasm/tests/vectors/check_vectors.py [path/to/key-schedule.json]

Prints one line per section and a closing "N passed, 0 failed"; exits 1 on any mismatch.
"""

import hashlib
import hmac
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

PAIRWISE_LABEL = b"sealed v1 pairwise"
ROSTER_LABEL = b"sealed v1 roster"
KEY_MESSAGE_LABEL = b"sealed v1 key message"
SENDER_LABEL = b"sealed v2 sender"
SAFETY_LABEL = b"sealed v2 safety"
CHAT_LABEL = b"sealed v2 chat"
KEY_MESSAGE_VERSION = 2
TYPE_EPOCH_KEY, TYPE_ACK, TYPE_COMMIT = 1, 2, 3
MAX_ROSTER = 1024
MAX_EPOCH_STEP = 256
MAX_CHAT_PLAINTEXT = 4096
SFRAME_SUITE = 0x0004  # AES_128_GCM_SHA256_128


def u64(n):
    return n.to_bytes(8, "big")


def expand(prk, info, length):
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


# ---- key schedule -------------------------------------------------------------------------


def pairwise_key(meeting_secret, room, private_a, public_b):
    a = ec.derive_private_key(int.from_bytes(private_a, "big"), ec.SECP256R1())
    b = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_b)
    shared_x = a.exchange(ec.ECDH(), b)
    public_a = a.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    lo, hi = sorted([public_a, public_b])
    info = PAIRWISE_LABEL + room.encode() + b"\x00" + lo + hi
    key = HKDF(hashes.SHA256(), 32, meeting_secret, info).derive(shared_x)
    return public_a, key


def base_key(epoch_secret, sender_id, epoch):
    return expand(epoch_secret, SENDER_LABEL + u64(sender_id) + u64(epoch), 16)


def kid(sender_id, epoch):
    return sender_id << 8 | (epoch & 0xFF)


def roster_hash(members):
    h = hashlib.sha256(ROSTER_LABEL)
    for m in members:
        h.update(u64(m["id"]) + bytes.fromhex(m["public_key"]))
    return h.digest()


def safety_number(members):
    h = hashlib.sha512(SAFETY_LABEL)
    for m in members:
        h.update(u64(m["id"]) + bytes.fromhex(m["public_key"]))
    d = h.digest()
    return " ".join(f"{int.from_bytes(d[5 * i:5 * i + 5], 'big') % 100000:05d}" for i in range(8))


# ---- SFrame (RFC 9605) --------------------------------------------------------------------


def min_bytes(n):
    return max(1, (n.bit_length() + 7) // 8)


def sframe_header(k, ctr):
    """Config byte |X|K K K|Y|C C C|, then the KID and CTR bytes that do not fit inline."""
    if k < 8:
        config, kid_bytes = k << 4, b""
    else:
        n = min_bytes(k)
        config, kid_bytes = 0x80 | (n - 1) << 4, k.to_bytes(n, "big")
    if ctr < 8:
        config |= ctr
        ctr_bytes = b""
    else:
        n = min_bytes(ctr)
        config |= 0x08 | (n - 1)
        ctr_bytes = ctr.to_bytes(n, "big")
    return bytes([config]) + kid_bytes + ctr_bytes


def parse_sframe_header(data):
    """(kid, ctr, header length) of an SFrame."""
    config, pos = data[0], 1
    if config & 0x80:
        n = ((config >> 4) & 7) + 1
        k, pos = int.from_bytes(data[pos:pos + n], "big"), pos + n
    else:
        k = (config >> 4) & 7
    if config & 0x08:
        n = (config & 7) + 1
        ctr, pos = int.from_bytes(data[pos:pos + n], "big"), pos + n
    else:
        ctr = config & 7
    return k, ctr, pos


def sframe_key_salt(base, k):
    secret = hmac.new(b"", base, hashlib.sha256).digest()  # HKDF-Extract(salt = "", base)
    tail = u64(k) + SFRAME_SUITE.to_bytes(2, "big")
    return (expand(secret, b"SFrame 1.0 Secret key " + tail, 16),
            expand(secret, b"SFrame 1.0 Secret salt " + tail, 12))


def sframe_encrypt(base, k, ctr, metadata, plaintext):
    key, salt = sframe_key_salt(base, k)
    header = sframe_header(k, ctr)
    nonce = bytes(a ^ b for a, b in zip(salt, ctr.to_bytes(12, "big")))
    return header + AESGCM(key).encrypt(nonce, plaintext, header + metadata)


def sframe_decrypt(base, metadata, sframe):
    k, ctr, n = parse_sframe_header(sframe)
    key, salt = sframe_key_salt(base, k)
    nonce = bytes(a ^ b for a, b in zip(salt, ctr.to_bytes(12, "big")))
    return AESGCM(key).decrypt(nonce, sframe[n:], sframe[:n] + metadata)


# ---- key messages -------------------------------------------------------------------------


class Reject(Exception):
    """An input refused, with the reason as its message."""


def key_message_aad(room, sender, recipient, clear):
    return KEY_MESSAGE_LABEL + room.encode() + b"\x00" + u64(sender) + u64(recipient) + clear


def epoch_key_clear(epoch, ids, hash_):
    return (bytes([KEY_MESSAGE_VERSION, TYPE_EPOCH_KEY]) + u64(epoch) + len(ids).to_bytes(2, "big")
            + b"".join(u64(i) for i in ids) + hash_)


def ack_clear(epoch, status, highest, hash_):
    return bytes([KEY_MESSAGE_VERSION, TYPE_ACK]) + u64(epoch) + bytes([status]) + u64(highest) + hash_


def commit_clear(epoch, hash_):
    return bytes([KEY_MESSAGE_VERSION, TYPE_COMMIT]) + u64(epoch) + hash_


def seal_message(key, nonce, room, sender, recipient, clear, plaintext=b""):
    aad = key_message_aad(room, sender, recipient, clear)
    return aad, clear + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def parse_key_message(msg):
    """Splits a key message: (type, fields, clear, nonce, sealed); raises Reject."""
    if len(msg) < 2:
        raise Reject("malformed")
    if msg[0] != KEY_MESSAGE_VERSION:
        raise Reject("version")
    kind, pos, fields = msg[1], 2, {}

    def take(n):
        nonlocal pos
        if pos + n > len(msg):
            raise Reject("malformed")
        pos += n
        return msg[pos - n:pos]

    if kind == TYPE_EPOCH_KEY:
        fields["epoch"] = int.from_bytes(take(8), "big")
        count = int.from_bytes(take(2), "big")
        if not 1 <= count <= MAX_ROSTER:
            raise Reject("malformed")
        ids = [int.from_bytes(take(8), "big") for _ in range(count)]
        if any(a >= b for a, b in zip(ids, ids[1:])):
            raise Reject("malformed")
        fields["roster"], fields["roster_hash"], sealed_len = ids, take(32), 48
    elif kind == TYPE_ACK:
        fields["epoch"] = int.from_bytes(take(8), "big")
        fields["status"] = take(1)[0]
        if fields["status"] > 1:
            raise Reject("malformed")
        fields["highest"] = int.from_bytes(take(8), "big")
        fields["roster_hash"], sealed_len = take(32), 16
    elif kind == TYPE_COMMIT:
        fields["epoch"] = int.from_bytes(take(8), "big")
        fields["roster_hash"], sealed_len = take(32), 16
    else:
        raise Reject("type")
    clear = msg[:pos]
    nonce = take(12)
    sealed = msg[pos:]
    if len(sealed) != sealed_len:
        raise Reject("malformed")
    return kind, fields, clear, nonce, sealed


def open_key_message(key, room, sender, recipient, msg):
    kind, fields, clear, nonce, sealed = parse_key_message(msg)
    try:
        plaintext = AESGCM(key).decrypt(nonce, sealed, key_message_aad(room, sender, recipient, clear))
    except Exception as e:  # cryptography raises InvalidTag
        raise Reject("auth") from e
    return kind, fields, plaintext


# ---- chat ---------------------------------------------------------------------------------


def chat_key(epoch_secret, sender_id, epoch):
    return expand(epoch_secret, CHAT_LABEL + u64(sender_id) + u64(epoch), 16)


def chat_aad(room, sender_id, epoch, seq):
    return CHAT_LABEL + room.encode() + b"\x00" + u64(sender_id) + u64(epoch) + u64(seq)


def chat_seal(key, room, sender_id, epoch, seq, plaintext):
    return AESGCM(key).encrypt(b"\x00" * 4 + u64(seq), plaintext, chat_aad(room, sender_id, epoch, seq))


def chat_open(epoch_secret, room, sender_id, payload):
    if len(payload) > 16 + MAX_CHAT_PLAINTEXT + 16:
        raise Reject("too_large")
    if len(payload) < 32:
        raise Reject("malformed")
    epoch, seq = int.from_bytes(payload[:8], "big"), int.from_bytes(payload[8:16], "big")
    key = chat_key(epoch_secret, sender_id, epoch)
    try:
        return AESGCM(key).decrypt(b"\x00" * 4 + u64(seq), payload[16:], chat_aad(room, sender_id, epoch, seq))
    except Exception as e:
        raise Reject("auth") from e


# ---- the checks ---------------------------------------------------------------------------


def hx(s):
    return bytes.fromhex(s)


def check_pairwise(c):
    public_a, key = pairwise_key(hx(c["meeting_secret"]), c["room"], hx(c["private_a"]), hx(c["public_b"]))
    assert public_a.hex() == c["public_a"], "public_a"
    assert key.hex() == c["key"], "pairwise key"


def check_frame(c):
    base = base_key(hx(c["epoch_secret"]), c["sender_id"], c["epoch"])
    assert base.hex() == c["base_key"], "base key"
    k = kid(c["sender_id"], c["epoch"])
    assert k == c["kid"], "kid"
    sframe = sframe_encrypt(base, k, c["ctr"], hx(c["metadata"]), hx(c["plaintext"]))
    assert sframe.hex() == c["sframe"], "sframe"
    assert sframe_decrypt(base, hx(c["metadata"]), sframe) == hx(c["plaintext"])


def check_wrap(c):
    h = roster_hash(c["roster"])
    assert h.hex() == c["roster_hash"], "roster hash"
    ids = [m["id"] for m in c["roster"]]
    clear = epoch_key_clear(c["epoch"], ids, h)
    aad, msg = seal_message(hx(c["key"]), hx(c["nonce"]), c["room"], c["leader_id"], c["recipient_id"],
                            clear, hx(c["epoch_secret"]))
    assert aad.hex() == c["aad"], "aad"
    assert msg.hex() == c["message"], "message"
    assert msg[len(clear) + 12:].hex() == c["ciphertext"], "ciphertext"
    _, fields, secret = open_key_message(hx(c["key"]), c["room"], c["leader_id"], c["recipient_id"], msg)
    assert secret == hx(c["epoch_secret"]) and fields["roster"] == ids


def check_ack(c):
    clear = ack_clear(c["epoch"], c["status"], c["highest"], hx(c["roster_hash"]))
    aad, msg = seal_message(hx(c["key"]), hx(c["nonce"]), c["room"], c["from"], c["to"], clear)
    assert aad.hex() == c["aad"] and msg.hex() == c["message"], "ack"
    assert len(msg) == 79


def check_commit(c):
    clear = commit_clear(c["epoch"], hx(c["roster_hash"]))
    aad, msg = seal_message(hx(c["key"]), hx(c["nonce"]), c["room"], c["from"], c["to"], clear)
    assert aad.hex() == c["aad"] and msg.hex() == c["message"], "commit"
    assert len(msg) == 70


def check_safety(c):
    assert safety_number(c["members"]) == c["code"], "safety number"


def check_chat(c):
    key = chat_key(hx(c["epoch_secret"]), c["sender_id"], c["epoch"])
    assert key.hex() == c["key"], "chat key"
    ct = chat_seal(key, c["room"], c["sender_id"], c["epoch"], c["seq"], hx(c["plaintext"]))
    assert ct.hex() == c["ciphertext"], "chat ciphertext"
    payload = u64(c["epoch"]) + u64(c["seq"]) + ct
    assert payload.hex() == c["payload"], "chat payload"
    assert chat_open(hx(c["epoch_secret"]), c["room"], c["sender_id"], payload) == hx(c["plaintext"])


def rejection(c):
    """The reason this implementation refuses a negative case ("accepted" if it does not)."""
    try:
        kind = c["kind"]
        if kind == "key_message":
            _, fields, _ = open_key_message(hx(c["key"]), c["room"], c["from"], c["to"], hx(c["message"]))
            if "own_view" in c and roster_hash(c["own_view"]) != fields["roster_hash"]:
                raise Reject("roster_differs")
        elif kind == "stale_ack":
            if c["highest"] > c["current"] + MAX_EPOCH_STEP:
                raise Reject("out_of_range")
        elif kind == "frame":
            sframe = hx(c["sframe"])
            k, _, _ = parse_sframe_header(sframe)
            if k >> 8 != c["track_sender_id"]:
                raise Reject("wrong_sender")
            base = base_key(hx(c["epoch_secret"]), c["track_sender_id"], c["epoch"])
            try:
                sframe_decrypt(base, hx(c["metadata"]), sframe)
            except Exception as e:
                raise Reject("auth") from e
        elif kind == "chat":
            chat_open(hx(c["epoch_secret"]), c["room"], c["from"], hx(c["payload"]))
        else:
            raise AssertionError(f"unknown negative kind {kind}")
    except Reject as r:
        return str(r)
    return "accepted"


def check_negative(c):
    got = rejection(c)
    assert got == c["reason"], f"{c['what']}: rejected as {got}, expected {c['reason']}"


SECTIONS = [
    ("pairwise", check_pairwise), ("frame", check_frame), ("wrap", check_wrap),
    ("safety_number", check_safety), ("chat", check_chat), ("ack", check_ack),
    ("commit", check_commit), ("negative", check_negative),
]


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("key-schedule.json")
    vectors = json.loads(path.read_text())
    passed = failed = 0
    for name, check in SECTIONS:
        cases = vectors.get(name, [])
        if len(cases) < 3:
            print(f"{name}: fewer than 3 cases")
            failed += 1
        for i, case in enumerate(cases):
            try:
                check(case)
                passed += 1
            except Exception as e:  # report every failing case, not just the first
                failed += 1
                print(f"{name}[{i}]: FAILED: {e!r}")
        print(f"{name}: {len(cases)} cases")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
