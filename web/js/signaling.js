// The signaling WebSocket: JSON objects with a `type` field, protocol v1.
//
// The URL is always `ws(s)://<host>/ws`: never put the meeting secret (or
// anything derived from it) into it.

/** Signaling protocol version this page speaks. */
export const PROTOCOL_VERSION = 1;

/** The WebSocket URL for the page's own origin. */
export function signalingUrl(location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/** A connected signaling socket. Use `SignalingClient.connect`. */
export class SignalingClient {
  #socket;
  #closedByUs = false;

  /**
   * Opens the socket. Resolves once it is open; rejects with an Error whose
   * `code` is 'unreachable' if it closes before opening.
   *
   * `onMessage(msg)` receives every parsed server message; `onClose({expected})`
   * is called once when the socket closes after opening (`expected` is true
   * when we closed it ourselves).
   */
  static connect(url, { onMessage, onClose, timeoutMs = 8000 }) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      const client = new SignalingClient(socket);
      const timer = setTimeout(() => {
        socket.close();
        reject(Object.assign(new Error('server did not answer in time'), { code: 'unreachable' }));
      }, timeoutMs);
      socket.onopen = () => {
        clearTimeout(timer);
        socket.onclose = (event) => onClose({ expected: client.#closedByUs, code: event.code });
        resolve(client);
      };
      socket.onclose = () => {
        clearTimeout(timer);
        reject(Object.assign(new Error('cannot reach the server'), { code: 'unreachable' }));
      };
      socket.onmessage = (event) => {
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          console.warn('signaling: ignoring a message that is not JSON');
          return;
        }
        if (msg && typeof msg.type === 'string') onMessage(msg);
      };
    });
  }

  constructor(socket) {
    this.#socket = socket;
  }

  /** Sends one message object; silently dropped if the socket is not open. */
  send(msg) {
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(msg));
  }

  /** True while the socket is open. */
  get open() {
    return this.#socket.readyState === WebSocket.OPEN;
  }

  /** Closes the socket; `onClose` will report it as expected. */
  close() {
    this.#closedByUs = true;
    this.#socket.close(1000, 'bye');
  }
}
