// The page's side of the encryption worker (web/worker.js).
//
// The page never touches keys: it creates the transforms, relays the
// engine's key-exchange messages between the worker and the signaling socket,
// and shows the status the worker reports.

/** The one encryption worker of this page. */
export class E2ee {
  #worker;
  #nextReqId = 1;
  #pending = new Map();
  #ready;

  /**
   * `onOutgoing(to, payload)` sends an engine message to participant `to` (a number);
   * `onEvents(events)` and `onStatus(status)` receive what the worker reports;
   * `onFatal(message)` is called if the worker cannot run at all.
   */
  constructor({ onOutgoing, onEvents, onStatus, onFatal }) {
    this.onOutgoing = onOutgoing;
    this.onEvents = onEvents;
    this.onStatus = onStatus;
    this.onFatal = onFatal;
    this.#worker = new Worker('/worker.js', { type: 'module', name: 'sealed-e2ee' });
    this.#ready = new Promise((resolve, reject) => {
      this.#worker.onmessage = ({ data }) => {
        if (data.type === 'ready') resolve();
        if (data.type === 'fatal') reject(new Error(data.message));
        this.#handle(data);
      };
      // A module worker that fails to load (wrong MIME type, syntax error,
      // missing file) reports only an 'error' event, without a message.
      this.#worker.onerror = (event) => {
        event.preventDefault?.();
        const message = event.message || 'the encryption worker failed to start';
        reject(new Error(message));
        this.onFatal?.(message);
      };
    });
    this.#ready.catch(() => {});
  }

  /** Resolves once the WASM engine has loaded; rejects if it cannot. */
  ready() {
    return this.#ready;
  }

  /** Makes a fresh identity key pair in the worker; resolves to its public key (65 bytes). */
  async newIdentity() {
    await this.#ready;
    const reply = await this.#request({ type: 'identity' });
    return reply.publicKey;
  }

  /** Starts the E2EE session once the server has welcomed us. */
  start({ room, ownId, secret, members }) {
    this.#worker.postMessage({
      type: 'start',
      room,
      ownId: String(ownId),
      secret,
      members: members.map((m) => ({ id: String(m.id), publicKey: m.publicKey })),
    });
  }

  /** Tells the engine a participant joined. */
  memberJoined(id, publicKey) {
    this.#worker.postMessage({ type: 'member_joined', id: String(id), publicKey });
  }

  /** Tells the engine a participant left. */
  memberLeft(id) {
    this.#worker.postMessage({ type: 'member_left', id: String(id) });
  }

  /** Hands an E2EE message from participant `from` to the engine. */
  receive(from, payload) {
    this.#worker.postMessage({ type: 'receive', from: String(from), payload }, [payload.buffer]);
  }

  /** Drops the session (on leave or before rejoining). */
  reset() {
    this.#worker.postMessage({ type: 'reset' });
  }

  /**
   * Encrypts a chat plaintext (bytes) for the room under our sending epoch.
   * Resolves to the payload; rejects with an Error whose message is the
   * engine's code (e.g. `not_sending`).
   */
  async encryptChat(plaintext) {
    const reply = await this.#request({ type: 'chat_encrypt', plaintext });
    if (reply.error) throw new Error(reply.error);
    return reply.payload;
  }

  /**
   * Decrypts a chat payload from participant `from`. Resolves to
   * `{plaintext}` or `{error}` with the engine's code (`auth`, `replay`, …).
   */
  async decryptChat(from, payload) {
    const reply = await this.#request({ type: 'chat_decrypt', from: String(from), payload });
    return reply.error ? { error: reply.error } : { plaintext: reply.plaintext };
  }

  /** A fresh status snapshot from the worker. */
  status() {
    return this.#request({ type: 'status' }).then((reply) => reply.status);
  }

  /** A transform that encrypts what a sender of `kind` sends. */
  senderTransform(kind) {
    return new RTCRtpScriptTransform(this.#worker, { side: 'send', kind });
  }

  /** A transform that decrypts what a receiver of `kind` gets from `participant`. */
  receiverTransform(kind, participant) {
    return new RTCRtpScriptTransform(this.#worker, {
      side: 'recv',
      kind,
      participant: String(participant),
    });
  }

  #request(msg) {
    const reqId = this.#nextReqId++;
    return new Promise((resolve) => {
      this.#pending.set(reqId, resolve);
      this.#worker.postMessage({ ...msg, reqId });
    });
  }

  #handle(data) {
    switch (data.type) {
      case 'reply': {
        const resolve = this.#pending.get(data.reqId);
        this.#pending.delete(data.reqId);
        resolve?.(data);
        break;
      }
      case 'outgoing':
        for (const m of data.messages) this.onOutgoing?.(Number(m.to), m.payload);
        break;
      case 'events':
        this.onEvents?.(data.events);
        break;
      case 'status':
        this.onStatus?.(data.status);
        break;
      case 'fatal':
        this.onFatal?.(data.message);
        break;
      case 'error':
        console.warn('e2ee worker:', data.message);
        break;
      default:
        break;
    }
  }
}
