// Meeting links: room ids, meeting secrets and their base64url form.
//
// A meeting link is `/m/<room>#<base64url secret>`. The secret sits in the
// fragment because browsers never send fragments to the server; from there it
// lives only in memory. Nothing in this module logs or stores it.

/** Length of a room id made by "New meeting". */
export const ROOM_ID_LENGTH = 10;

/** Length in bytes of a meeting secret. */
export const SECRET_LENGTH = 32;

/** Maximum room name length accepted by the server (protocol v1). */
export const MAX_ROOM_LENGTH = 64;

const ROOM_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const BASE64URL_PATTERN = /^[A-Za-z0-9_-]*$/;

function randomBytes(length) {
  return crypto.getRandomValues(new Uint8Array(length));
}

/** A fresh random room id: `ROOM_ID_LENGTH` characters of [A-Za-z0-9_-]. */
export function newRoomId() {
  // 64 symbols divide 256 evenly, so masking a byte keeps the choice uniform.
  return Array.from(randomBytes(ROOM_ID_LENGTH), (b) => ROOM_ALPHABET[b & 63]).join('');
}

/** A fresh 32-byte meeting secret. */
export function newMeetingSecret() {
  return randomBytes(SECRET_LENGTH);
}

/** True when `room` is a valid room name (1..=64 chars of [A-Za-z0-9_-]). */
export function isValidRoom(room) {
  return typeof room === 'string' && ROOM_PATTERN.test(room);
}

/** Encodes bytes as base64url without padding. */
export function encodeBase64Url(bytes) {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

/**
 * Decodes base64url (padding optional) into bytes.
 * Throws a `TypeError` on characters outside the base64url alphabet.
 */
export function decodeBase64Url(text) {
  const trimmed = text.replace(/=+$/, '');
  if (!BASE64URL_PATTERN.test(trimmed) || trimmed.length % 4 === 1) {
    throw new TypeError('not base64url');
  }
  const binary = atob(trimmed.replaceAll('-', '+').replaceAll('_', '/'));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The path of a meeting page. */
export function meetingPath(room) {
  return `/m/${room}`;
}

/** The full invite link of a meeting: origin, path and the secret in the fragment. */
export function meetingLink(origin, room, secret) {
  return `${origin}${meetingPath(room)}#${encodeBase64Url(secret)}`;
}

/**
 * Reads what the address bar asks for.
 *
 * Returns one of:
 * - `{ view: 'landing' }` for `/` (and anything that is not a meeting path),
 * - `{ view: 'meeting', room, secret }` with a 32-byte `secret`,
 * - `{ view: 'meeting', room, secret: null, problem: 'missing_secret' | 'malformed_secret' }`,
 * - `{ view: 'bad_room' }` for `/m/<something that is not a room name>`.
 */
export function parseMeetingLocation(pathname, hash) {
  const match = /^\/m\/([^/]*)\/?$/.exec(pathname);
  if (!match) return { view: 'landing' };
  let room;
  try {
    room = decodeURIComponent(match[1]);
  } catch {
    return { view: 'bad_room' };
  }
  if (!isValidRoom(room)) return { view: 'bad_room' };
  const fragment = (hash ?? '').replace(/^#/, '');
  if (fragment === '') return { view: 'meeting', room, secret: null, problem: 'missing_secret' };
  let secret;
  try {
    secret = decodeBase64Url(fragment);
  } catch {
    return { view: 'meeting', room, secret: null, problem: 'malformed_secret' };
  }
  if (secret.length !== SECRET_LENGTH) {
    return { view: 'meeting', room, secret: null, problem: 'malformed_secret' };
  }
  return { view: 'meeting', room, secret };
}

/** The `sessionStorage` key under which a tab keeps one room's secret. */
function storageKey(room) {
  return `sealed.secret.${room}`;
}

/**
 * Keeps `secret` for `room` in this tab's `storage` (its `sessionStorage`), so a
 * reload rejoins without the secret sitting in the address bar or the history.
 * Other tabs and other sites never see a tab's `sessionStorage`; it ends with the
 * tab. Returns false when storage is unavailable (then a reload asks for the link).
 */
export function rememberSecret(storage, room, secret) {
  try {
    storage.setItem(storageKey(room), encodeBase64Url(secret));
    return true;
  } catch {
    return false;
  }
}

/** The secret this tab kept for `room`, or null. */
export function recallSecret(storage, room) {
  let text = null;
  try {
    text = storage.getItem(storageKey(room));
  } catch {
    return null;
  }
  if (!text) return null;
  try {
    const secret = decodeBase64Url(text);
    return secret.length === SECRET_LENGTH ? secret : null;
  } catch {
    return null;
  }
}

/** Forgets the secret this tab kept for `room` (on leaving the meeting). */
export function forgetSecret(storage, room) {
  try {
    storage.removeItem(storageKey(room));
  } catch {
    // nothing kept
  }
}

/**
 * Where the meeting secret is on this page load: read from the address
 * fragment (then taken out of the address bar and this history entry with
 * `history.replaceState`, and kept in this tab's `sessionStorage`), or, for
 * an address without a fragment, the secret this tab kept for the room
 * (a reload). Returns what `parseMeetingLocation` returns.
 */
export function takeMeetingSecret({ location, history, storage }) {
  const where = parseMeetingLocation(location.pathname, location.hash);
  if (where.view !== 'meeting') return where;
  if (where.secret) {
    rememberSecret(storage, where.room, where.secret);
    history.replaceState(history.state, '', `${location.pathname}${location.search}`);
    return where;
  }
  if (where.problem === 'missing_secret') {
    const kept = recallSecret(storage, where.room);
    if (kept) return { view: 'meeting', room: where.room, secret: kept };
  }
  return where;
}
