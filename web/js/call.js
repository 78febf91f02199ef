// One attempt at being in a meeting: the signaling socket and the two
// PeerConnections of protocol v1.
//
// - publish: we offer once, with three `sendonly` transceivers — microphone,
//   camera, screen — each with an encrypting transform set on its sender
//   before negotiation (Chromium ignores a transform set later on a sendrecv
//   transceiver). A source without a track (camera off, not presenting) has
//   its transceiver all the same: switching a device or starting a screen
//   share is `replaceTrack`, never a renegotiation;
// - subscribe: the server offers one transceiver per remote track, we answer,
//   and a decrypting transform is set on each receiver in `ontrack`.
//   The stream id of a remote track is its publisher's participant id.
//
// A reconnect is a new Call (with a fresh identity), never a repaired one.

import { applyCodecPreferences } from './codecs.js';
import { failureMessage, peerPath } from './connection-info.js';
import { MediaWatchdog } from './reconnect.js';
import { msidsByMid, sectionSummary } from './sdp.js';
import { decodeBase64Url, encodeBase64Url } from './secret.js';
import { PROTOCOL_VERSION, SignalingClient, signalingUrl } from './signaling.js';

/** Error from joining; `code` is the server's error code or 'unreachable' / 'closed'. */
export class JoinError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** What we publish, in the order of the publish offer's media sections. */
export const SOURCES = Object.freeze([
  { source: 'audio', kind: 'audio' },
  { source: 'camera', kind: 'video' },
  { source: 'screen', kind: 'video' },
]);

/** One PeerConnection with the bookkeeping both of ours need. */
class Peer {
  constructor(kind, { iceServers, iceTransportPolicy }, sendCandidate, onError) {
    this.kind = kind;
    this.onError = onError;
    this.pc = new RTCPeerConnection({ iceServers, iceTransportPolicy, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.localDescriptionSent = false;
    this.localCandidates = [];
    this.remoteCandidates = [];
    this.queue = Promise.resolve();
    this.pc.onicecandidate = ({ candidate }) => {
      if (!candidate || candidate.candidate === '') return;
      if (this.localDescriptionSent) sendCandidate(kind, candidate.toJSON());
      else this.localCandidates.push(candidate.toJSON());
    };
    this.sendCandidate = sendCandidate;
  }

  /** Runs `task` after every earlier task on this PeerConnection. */
  enqueue(task) {
    this.queue = this.queue.then(task).catch((error) => {
      console.warn(`${this.kind} pc:`, error);
      this.onError(error);
    });
    return this.queue;
  }

  /** Call once our offer/answer went out: trickles the candidates gathered so far. */
  markDescriptionSent() {
    this.localDescriptionSent = true;
    for (const c of this.localCandidates.splice(0)) this.sendCandidate(this.kind, c);
  }

  /** Adds a remote candidate now, or after the remote description is set. */
  addRemoteCandidate(candidate) {
    if (this.pc.remoteDescription) {
      this.pc.addIceCandidate(candidate).catch((e) => console.warn(`${this.kind} candidate:`, e));
    } else {
      this.remoteCandidates.push(candidate);
    }
  }

  /** Adds candidates that arrived before the remote description. */
  async flushRemoteCandidates() {
    for (const c of this.remoteCandidates.splice(0)) {
      await this.pc.addIceCandidate(c).catch((e) => console.warn(`${this.kind} candidate:`, e));
    }
  }

  close() {
    this.pc.onicecandidate = null;
    this.pc.ontrack = null;
    this.pc.onconnectionstatechange = null;
    this.pc.close();
  }
}

/**
 * A meeting session over one signaling connection.
 *
 * `sources` holds the tracks to publish: `{audio, camera, screen}`, each a
 * MediaStreamTrack or null.
 *
 * `handlers` (all optional): onWelcome({ownId, participants}), onParticipantJoined(p),
 * onParticipantLeft(id), onRemoteTrack({participant, kind, trackId, track}),
 * onTrackUnpublished(participantId, trackId), onTrackMuted(participantId, kind, muted),
 * onActiveSpeakers(ids), onChat(from, payload), onServerError(code, message),
 * onDisconnected(reason, {noPath}) — `noPath`: the media never connected and
 * `reason` is a whole explanation for a person.
 */
export class Call {
  #signaling = null;
  #publish = null;
  #subscribe = null;
  #ended = false;
  #welcome = null;
  /** participant id → Map(track_id → kind) from track_published. */
  #remoteTracks = new Map();
  /** subscribe transceiver → {participant, kind, trackId}. */
  #receivers = new Map();
  /** mid → msid of the subscribe connection's last offer. */
  #subscribeMsids = new Map();
  /** source → publish transceiver. */
  #senders = new Map();
  /** source → our msid track id, as the SFU and the others know the track. */
  #publishTrackIds = new Map();
  /** The stream id our publish offer names (the SFU replaces it by our id). */
  #publishStream = new MediaStream();
  #publishOffers = 0;
  /** Subscribe transceivers whose codec preferences are set. */
  #codecsSet = new WeakSet();
  #watchdog;

  constructor({ room, name, secret, token, sources, e2ee, handlers }) {
    this.room = room;
    this.name = name;
    this.secret = secret;
    this.token = token;
    this.sources = { audio: null, camera: null, screen: null, ...sources };
    this.e2ee = e2ee;
    this.handlers = handlers ?? {};
    this.ownId = null;
    this.#watchdog = new MediaWatchdog((reason, { neverConnected }) => {
      // Never connected: no network path works from here; say so plainly.
      if (neverConnected) this.#disconnected(failureMessage({ relayOffered: this.relayOffered }), { noPath: true });
      else this.#disconnected(reason);
    });
  }

  /** Connects, joins and resolves once the server welcomed us. */
  async join() {
    // Key messages from the engine go to their recipient through the server,
    // which relays them without looking inside.
    this.e2ee.onOutgoing = (to, payload) => {
      if (!this.#ended) this.#signaling?.send({ type: 'e2ee', to, payload: encodeBase64Url(payload) });
    };
    const publicKey = await this.e2ee.newIdentity();
    let welcomed;
    const welcome = new Promise((resolve, reject) => {
      welcomed = { resolve, reject };
    });
    welcome.catch(() => {}); // handled below, or the call was disposed before the socket opened
    this.#welcome = welcomed;
    this.#signaling = await SignalingClient.connect(signalingUrl(location), {
      onMessage: (msg) => this.#onMessage(msg),
      onClose: ({ expected }) => {
        if (!this.#welcome) {
          if (!expected && !this.#ended) this.#disconnected('the connection to the server was lost');
          return;
        }
        this.#welcome.reject(new JoinError('closed', 'the server closed the connection'));
        this.#welcome = null;
      },
    }).catch((error) => {
      throw new JoinError(error.code ?? 'unreachable', error.message);
    });
    const join = {
      type: 'join',
      room: this.room,
      name: this.name,
      public_key: encodeBase64Url(publicKey),
      protocol: PROTOCOL_VERSION,
    };
    if (this.token) join.token = this.token;
    this.#signaling.send(join);
    await welcome;
  }

  /** Leaves the meeting for good (tells the server). */
  leave() {
    if (this.#ended) return;
    this.#signaling?.send({ type: 'leave' });
    this.dispose();
  }

  /** Tears everything down without telling the server (it is gone or will notice). */
  dispose() {
    this.#ended = true;
    this.#watchdog.stop();
    this.#welcome?.reject(new JoinError('closed', 'left'));
    this.#welcome = null;
    this.#signaling?.close();
    this.#publish?.close();
    this.#subscribe?.close();
    this.e2ee.reset();
  }

  /** Tells the others that our `source` ('audio' or 'camera') is muted or not. */
  announceMuted(source, muted) {
    const track = this.#publishTrackIds.get(source);
    if (track) this.#signaling?.send({ type: 'mute', track, muted });
  }

  /**
   * Sends `track` (or nothing, for null) as our `source`: same transceiver,
   * same encrypting transform, no renegotiation.
   */
  async replaceTrack(source, track) {
    this.sources[source] = track;
    const transceiver = this.#senders.get(source);
    if (transceiver) await transceiver.sender.replaceTrack(track);
  }

  /** The msid track id others know our `source` by (null before we offered). */
  publishedTrackId(source) {
    return this.#publishTrackIds.get(source) ?? null;
  }

  /** Sends an encrypted chat payload (bytes) to everybody else in the room. */
  sendChat(payload) {
    if (this.#ended || !this.#signaling?.open) return false;
    this.#signaling.send({ type: 'chat', payload: encodeBase64Url(payload) });
    return true;
  }

  /**
   * WebRTC statistics per remote participant and kind, for the status panel and tests,
   * with the subscribe connection's negotiated sections for diagnostics.
   */
  async rtcStats() {
    const inbound = [];
    for (const [transceiver, info] of this.#receivers) {
      if (transceiver.currentDirection === 'stopped') continue;
      const report = await transceiver.receiver.getStats().catch(() => null);
      for (const s of report?.values() ?? []) {
        if (s.type !== 'inbound-rtp') continue;
        inbound.push({
          participant: info.participant,
          kind: info.kind,
          trackId: info.trackId,
          packetsReceived: s.packetsReceived ?? 0,
          packetsLost: s.packetsLost ?? 0,
          nackCount: s.nackCount ?? 0,
          retransmittedPacketsReceived: s.retransmittedPacketsReceived ?? 0,
          bytesReceived: s.bytesReceived ?? 0,
          framesReceived: s.framesReceived ?? 0,
          framesDecoded: s.framesDecoded ?? 0,
          keyFramesDecoded: s.keyFramesDecoded ?? 0,
          framesDropped: s.framesDropped ?? 0,
          frameWidth: s.frameWidth ?? 0,
          totalSamplesReceived: s.totalSamplesReceived ?? 0,
        });
      }
    }
    const outbound = [];
    for (const [source, transceiver] of this.#senders) {
      const sender = transceiver.sender;
      if (!sender.track) continue;
      const report = await sender.getStats().catch(() => null);
      for (const s of report?.values() ?? []) {
        if (s.type !== 'outbound-rtp') continue;
        outbound.push({
          source,
          kind: s.kind ?? sender.track?.kind,
          packetsSent: s.packetsSent ?? 0,
          bytesSent: s.bytesSent ?? 0,
          framesEncoded: s.framesEncoded ?? 0,
        });
      }
    }
    const transceivers = (this.#subscribe?.pc.getTransceivers() ?? []).map((t) => ({
      mid: t.mid,
      direction: t.direction,
      currentDirection: t.currentDirection,
      kind: t.receiver.track?.kind,
      participant: this.#receivers.get(t)?.participant ?? null,
    }));
    return {
      publishOffers: this.#publishOffers,
      subscribeTransceivers: transceivers,
      subscribeSignaling: this.#subscribe?.pc.signalingState ?? 'none',
      subscribeSections: {
        offer: sectionSummary(this.#subscribe?.pc.currentRemoteDescription?.sdp),
        answer: sectionSummary(this.#subscribe?.pc.currentLocalDescription?.sdp),
      },
      publishState: this.#publish?.pc.connectionState ?? 'none',
      subscribeState: this.#subscribe?.pc.connectionState ?? 'none',
      path: await this.mediaPaths(),
      inbound,
      outbound,
    };
  }

  /** The network path each PeerConnection uses now (see connection-info.js). */
  async mediaPaths() {
    return {
      publish: await peerPath(this.#publish?.pc),
      subscribe: await peerPath(this.#subscribe?.pc),
    };
  }

  #disconnected(reason, details = {}) {
    if (this.#ended) return;
    this.dispose();
    this.handlers.onDisconnected?.(reason, details);
  }

  #negotiationFailed = (error) => {
    this.#disconnected(`media negotiation failed (${error?.message ?? error})`);
  };

  #sendCandidate = (pc, candidate) => {
    this.#signaling?.send({ type: 'ice_candidate', pc, candidate });
  };

  #onMessage(msg) {
    if (this.#ended) return;
    switch (msg.type) {
      case 'welcome':
        this.#onWelcome(msg);
        break;
      case 'participant_joined':
        this.e2ee.memberJoined(msg.participant.id, decodeBase64Url(msg.participant.public_key));
        this.handlers.onParticipantJoined?.(msg.participant);
        break;
      case 'participant_left':
        this.e2ee.memberLeft(msg.id);
        this.#remoteTracks.delete(msg.id);
        this.handlers.onParticipantLeft?.(msg.id);
        break;
      case 'publish_answer':
        this.#publish?.enqueue(async () => {
          await this.#publish.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
          await this.#publish.flushRemoteCandidates();
        });
        break;
      case 'subscribe_offer':
        this.#onSubscribeOffer(msg.sdp);
        break;
      case 'ice_candidate': {
        const peer = msg.pc === 'publish' ? this.#publish : this.#subscribe;
        if (peer && msg.candidate) peer.addRemoteCandidate(msg.candidate);
        break;
      }
      case 'e2ee':
        try {
          this.e2ee.receive(msg.from, decodeBase64Url(msg.payload));
        } catch {
          console.warn('signaling: e2ee payload is not base64url');
        }
        break;
      case 'track_published':
        if (!this.#remoteTracks.has(msg.participant)) this.#remoteTracks.set(msg.participant, new Map());
        this.#remoteTracks.get(msg.participant).set(msg.track_id, msg.kind);
        break;
      case 'track_unpublished':
        this.#remoteTracks.get(msg.participant)?.delete(msg.track_id);
        this.handlers.onTrackUnpublished?.(msg.participant, msg.track_id);
        break;
      case 'track_muted': {
        const kind = this.#remoteTracks.get(msg.participant)?.get(msg.track_id);
        if (kind) this.handlers.onTrackMuted?.(msg.participant, kind, msg.muted);
        break;
      }
      case 'active_speakers':
        this.handlers.onActiveSpeakers?.(msg.ids ?? []);
        break;
      case 'chat': {
        let payload;
        try {
          payload = decodeBase64Url(msg.payload);
        } catch {
          console.warn('signaling: chat payload is not base64url');
          break;
        }
        this.handlers.onChat?.(msg.from, payload);
        break;
      }
      case 'error':
        if (this.#welcome) {
          this.#welcome.reject(new JoinError(msg.code, msg.message));
          this.#welcome = null;
        } else {
          this.handlers.onServerError?.(msg.code, msg.message);
        }
        break;
      default:
        break;
    }
  }

  #onWelcome(msg) {
    this.ownId = msg.id;
    const iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
    // Only a server started with its test switch sends "relay"; relayed media is
    // as end-to-end encrypted as direct media.
    const ice = { iceServers, iceTransportPolicy: msg.ice_transport_policy === 'relay' ? 'relay' : 'all' };
    this.relayOffered = iceServers.length > 0;
    const participants = msg.participants ?? [];
    this.e2ee.start({
      room: this.room,
      ownId: msg.id,
      secret: this.secret,
      members: participants.map((p) => ({ id: p.id, publicKey: decodeBase64Url(p.public_key) })),
    });
    this.#subscribe = new Peer('subscribe', ice, this.#sendCandidate, this.#negotiationFailed);
    this.#subscribe.pc.ontrack = (event) => this.#onTrack(event);
    this.#watchdog.watch(this.#subscribe);
    this.#publish = new Peer('publish', ice, this.#sendCandidate, this.#negotiationFailed);
    this.#watchdog.watch(this.#publish);
    this.#publish.enqueue(() => this.#offerPublish());
    this.handlers.onWelcome?.({ ownId: msg.id, participants });
    this.#welcome?.resolve();
    this.#welcome = null;
  }

  async #offerPublish() {
    const pc = this.#publish.pc;
    for (const { source, kind } of SOURCES) {
      const track = this.sources[source];
      const transceiver = pc.addTransceiver(track ?? kind, {
        direction: 'sendonly',
        streams: [this.#publishStream],
      });
      transceiver.sender.transform = this.e2ee.senderTransform(kind);
      applyCodecPreferences(transceiver, kind);
      this.#senders.set(source, transceiver);
    }
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const msids = msidsByMid(pc.localDescription.sdp);
    for (const [source, transceiver] of this.#senders) {
      const msid = msids.get(transceiver.mid);
      if (msid) this.#publishTrackIds.set(source, msid.track);
    }
    this.#signaling.send({ type: 'publish_offer', sdp: pc.localDescription.sdp });
    this.#publishOffers += 1;
    this.#publish.markDescriptionSent();
    for (const source of ['audio', 'camera']) {
      const track = this.sources[source];
      if (track && !track.enabled) this.announceMuted(source, true);
    }
  }

  #onSubscribeOffer(sdp) {
    const peer = this.#subscribe;
    peer?.enqueue(async () => {
      this.#subscribeMsids = msidsByMid(sdp);
      await peer.pc.setRemoteDescription({ type: 'offer', sdp });
      // Only new transceivers: setting preferences again on one that is already
      // receiving can make the browser rebuild its receive stream, and the
      // picture then waits for the next keyframe.
      for (const transceiver of peer.pc.getTransceivers()) {
        const kind = transceiver.receiver.track?.kind;
        if (!kind || transceiver.stopped || this.#codecsSet.has(transceiver)) continue;
        applyCodecPreferences(transceiver, kind);
        this.#codecsSet.add(transceiver);
      }
      await peer.pc.setLocalDescription(await peer.pc.createAnswer());
      this.#signaling.send({ type: 'subscribe_answer', sdp: peer.pc.localDescription.sdp });
      peer.markDescriptionSent();
      await peer.flushRemoteCandidates();
    });
  }

  #onTrack(event) {
    const stream = event.streams[0];
    const participant = stream ? Number(stream.id) : NaN;
    const kind = event.track.kind;
    if (!Number.isSafeInteger(participant)) {
      console.warn('subscribe pc: a track without a publisher id, ignored');
      return;
    }
    // Set before any frame can arrive: ontrack runs inside setRemoteDescription,
    // before our answer lets the SFU send on this transceiver.
    event.receiver.transform = this.e2ee.receiverTransform(kind, participant);
    const trackId = this.#subscribeMsids.get(event.transceiver.mid)?.track ?? event.track.id;
    this.#receivers.set(event.transceiver, { participant, kind, trackId });
    this.handlers.onRemoteTrack?.({ participant, kind, trackId, track: event.track });
  }
}
