// Codec choices: which codecs we prefer on the wire and which one a frame uses.
//
// The SFU forwards Opus (audio) and VP8 (video) only, and the E2EE engine
// needs to know the codec of each frame to keep the right bytes in the clear.

/** MIME type we prefer for each track kind. */
export const PREFERRED_MIME = Object.freeze({ audio: 'audio/opus', video: 'video/VP8' });

/**
 * Reorders a codec capability list so that entries of `mimeType` come first,
 * keeping the relative order of everything else.
 *
 * Nothing is removed: Firefox keeps `a=rtcp-fb` lines of payload types that
 * `setCodecPreferences` removed, and a shorter list gains us nothing because
 * the SFU answers with the one codec it supports anyway.
 */
export function preferCodecs(codecs, mimeType) {
  const wanted = mimeType.toLowerCase();
  const first = codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
  const rest = codecs.filter((c) => c.mimeType.toLowerCase() !== wanted);
  return [...first, ...rest];
}

/**
 * Applies our codec preference to a transceiver where the browser supports it.
 * Returns true when preferences were set.
 */
export function applyCodecPreferences(transceiver, kind) {
  if (typeof transceiver.setCodecPreferences !== 'function') return false;
  const capabilities = globalThis.RTCRtpReceiver?.getCapabilities?.(kind);
  if (!capabilities || capabilities.codecs.length === 0) return false;
  const ordered = preferCodecs(capabilities.codecs, PREFERRED_MIME[kind]);
  if (ordered[0]?.mimeType.toLowerCase() !== PREFERRED_MIME[kind].toLowerCase()) return false;
  try {
    transceiver.setCodecPreferences(ordered);
    return true;
  } catch {
    return false;
  }
}

/**
 * The engine codec name for one encoded frame: `'opus'`, `'vp8'` or `'other'`.
 *
 * `mimeType` comes from `frame.getMetadata().mimeType` where the browser
 * provides it; Firefox does not for every frame (and its audio frames have no
 * `type`), so without it the track kind decides: we only negotiate Opus and VP8.
 */
export function frameCodec(kind, mimeType) {
  const mime = typeof mimeType === 'string' ? mimeType.toLowerCase() : '';
  if (kind === 'audio') return mime === '' || mime === 'audio/opus' ? 'opus' : 'other';
  if (kind === 'video') return mime === '' || mime === 'video/vp8' ? 'vp8' : 'other';
  return 'other';
}
