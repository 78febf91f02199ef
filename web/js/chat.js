// The meeting's encrypted chat: the plaintext format of what travels in it
// (text, hand raises, screen-share announcements; see docs/PROTOCOL.md, "Chat
// plaintext") and the chat panel. Encryption happens in the worker's engine;
// the server relays the ciphertext to the room and never sees these bytes.
// Names and bodies from other participants are untrusted text: always set with
// textContent.

import { element } from './tiles.js';

/** Largest plaintext the engine encrypts, in bytes. */
export const MAX_CHAT_PLAINTEXT = 4096;

/** Longest text message a person may type, in characters. */
export const MAX_CHAT_TEXT = 2000;

/** Why the engine could not decrypt a chat message, for people. */
const DECRYPT_ERRORS = {
  malformed: 'it is damaged',
  too_large: 'it is too large',
  unknown_epoch: 'it was sent under a key this browser does not have (yet)',
  unknown_sender: 'its sender is not in this browser’s view of the meeting',
  auth: 'it failed authentication (a different meeting key?)',
  replay: 'it is a copy of an earlier message',
  unreadable: 'its content is not a Sealed chat message',
};

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * The plaintext bytes of a chat message: `{t: 'text', body}`, `{t: 'hand', up}`
 * or `{t: 'screen', track, for_ms}`. Throws a RangeError if it would not fit.
 */
export function encodeChatMessage(message) {
  const bytes = encoder.encode(JSON.stringify(message));
  if (bytes.length > MAX_CHAT_PLAINTEXT) throw new RangeError('chat message too long');
  return bytes;
}

/**
 * Reads decrypted chat bytes. Returns `{t: 'text', body}`, `{t: 'hand', up}`,
 * `{t: 'screen', track, forMs}` (track: a string or null; forMs: how long the
 * sender has been presenting, 0 if not said), `{t: 'other'}` for a type
 * this page does not know (a newer page's), or null when the bytes are not a
 * chat message at all.
 */
export function decodeChatMessage(bytes) {
  let message;
  try {
    message = JSON.parse(decoder.decode(bytes));
  } catch {
    return null;
  }
  if (!message || typeof message !== 'object' || typeof message.t !== 'string') return null;
  switch (message.t) {
    case 'text':
      return typeof message.body === 'string' && message.body.trim() !== '' && [...message.body].length <= MAX_CHAT_TEXT
        ? { t: 'text', body: message.body }
        : null;
    case 'hand':
      return typeof message.up === 'boolean' ? { t: 'hand', up: message.up } : null;
    case 'screen': {
      const trackOk = message.track === null || (typeof message.track === 'string' && message.track.length <= 256);
      const forMs = message.for_ms ?? 0;
      return trackOk && Number.isSafeInteger(forMs) && forMs >= 0 ? { t: 'screen', track: message.track, forMs } : null;
    }
    default:
      return { t: 'other' };
  }
}

/** What a person reads for a chat message that could not be decrypted. */
export function undecryptableText(code) {
  return `cannot decrypt this message: ${DECRYPT_ERRORS[code] ?? code}`;
}

function clock(date) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** The chat panel: messages, the input, and the unread count on its button. */
export class ChatPanel {
  #unread = 0;

  /** `onSend(text)` sends a typed message and resolves to null or an error text. */
  constructor(root, { onSend }) {
    const $ = (id) => root.querySelector(`#${id}`);
    this.panel = $('chat');
    this.messages = $('chat-messages');
    this.form = $('chat-form');
    this.input = $('chat-input');
    this.toggle = $('toggle-chat');
    this.unreadBadge = $('chat-unread');
    this.input.maxLength = MAX_CHAT_TEXT;
    this.toggle.onclick = () => this.setOpen(this.panel.hidden);
    this.form.onsubmit = async (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      this.input.value = '';
      const error = await onSend(text);
      this.add({ who: 'You', text, own: true, error });
    };
    this.#renderUnread();
  }

  /** Opens or closes the panel; opening clears the unread count. */
  setOpen(open) {
    this.panel.hidden = !open;
    this.toggle.setAttribute('aria-pressed', String(open));
    if (open) {
      this.#unread = 0;
      this.#renderUnread();
      this.input.focus();
    }
  }

  /** Appends a line; `error` marks our own message as not sent. */
  add({ who, text, own = false, error = null }) {
    const item = this.#message(own ? 'chat-message own' : 'chat-message', who, text);
    if (error) {
      item.classList.add('not-sent');
      item.append(element('div', 'chat-error', `not sent: ${error}`));
    }
    this.#append(item, !own);
  }

  /** A message from `who` that this browser could not decrypt (`code` from the engine). */
  addUndecryptable(who, code) {
    const item = this.#message('chat-message undecryptable', who, undecryptableText(code));
    item.dataset.error = code;
    this.#append(item, true);
  }

  /** A line from the page itself (joined, reconnected, …). */
  note(text) {
    this.#append(element('li', 'chat-note', text), false);
  }

  /** Unread messages while the panel is closed. */
  get unread() {
    return this.#unread;
  }

  #message(className, who, text) {
    const item = element('li', className);
    const meta = element('div', 'chat-meta');
    meta.append(element('span', 'chat-from', who), element('time', 'chat-time', clock(new Date())));
    item.append(meta, element('div', 'chat-body', text));
    return item;
  }

  #append(item, countsAsUnread) {
    const atBottom = this.messages.scrollHeight - this.messages.scrollTop - this.messages.clientHeight < 40;
    this.messages.append(item);
    if (atBottom) this.messages.scrollTop = this.messages.scrollHeight;
    if (countsAsUnread && this.panel.hidden) {
      this.#unread += 1;
      this.#renderUnread();
    }
  }

  #renderUnread() {
    this.unreadBadge.hidden = this.#unread === 0;
    this.unreadBadge.textContent = String(this.#unread);
    this.toggle.setAttribute('aria-label', this.#unread ? `Chat, ${this.#unread} unread` : 'Chat');
  }
}
