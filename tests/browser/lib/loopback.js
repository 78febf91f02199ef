// A meeting of two in one page, without the server's media plane: two
// encryption workers (the page's own E2ee class), a sending and a receiving
// RTCPeerConnection wired directly, key messages relayed in the page. Isolates
// the browser side (worker, transforms, WASM engine) from the SFU.

/** Runs in the page (`page.evaluate(loopbackCall, seconds)`); returns what the receiver saw. */
export async function loopbackCall(seconds) {
  const { E2ee } = await import('/js/e2ee.js');
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const peers = {};
  const relay = (from) => (to, payload) => peers[to]?.receive(from, payload.slice());
  peers[1] = new E2ee({ onOutgoing: relay(1) });
  peers[2] = new E2ee({ onOutgoing: relay(2) });
  const keyA = await peers[1].newIdentity();
  const keyB = await peers[2].newIdentity();
  peers[1].start({ room: 'loopback', ownId: 1, secret, members: [{ id: 2, publicKey: keyB }] });
  peers[2].start({ room: 'loopback', ownId: 2, secret, members: [{ id: 1, publicKey: keyA }] });

  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
  const sender = new RTCPeerConnection();
  const receiver = new RTCPeerConnection();
  sender.onicecandidate = (e) => e.candidate && receiver.addIceCandidate(e.candidate);
  receiver.onicecandidate = (e) => e.candidate && sender.addIceCandidate(e.candidate);
  for (const track of stream.getTracks()) {
    const t = sender.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    t.sender.transform = peers[1].senderTransform(track.kind);
  }
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  document.body.append(video);
  receiver.ontrack = (e) => {
    e.receiver.transform = peers[2].receiverTransform(e.track.kind, 1);
    video.srcObject = e.streams[0];
  };
  await sender.setLocalDescription(await sender.createOffer());
  await receiver.setRemoteDescription(sender.localDescription);
  await receiver.setLocalDescription(await receiver.createAnswer());
  await sender.setRemoteDescription(receiver.localDescription);

  await new Promise((r) => setTimeout(r, seconds * 1000));
  let framesDecoded = 0;
  for (const s of (await receiver.getStats()).values()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video') framesDecoded += s.framesDecoded ?? 0;
  }
  const result = {
    framesDecoded,
    sender: await peers[1].status(),
    receiver: await peers[2].status(),
  };
  sender.close();
  receiver.close();
  for (const track of stream.getTracks()) track.stop();
  return result;
}
