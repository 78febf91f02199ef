// What this browser must offer for an end-to-end encrypted meeting.

/**
 * Names of the features `scope` (normally `globalThis`) lacks; empty when the
 * browser can take part.
 */
export function missingFeatures(scope) {
  const missing = [];
  if (!scope.isSecureContext) missing.push('a secure (https) page');
  if (typeof scope.RTCPeerConnection !== 'function') missing.push('WebRTC (RTCPeerConnection)');
  if (typeof scope.RTCRtpScriptTransform !== 'function') {
    missing.push('encoded transforms (RTCRtpScriptTransform)');
  }
  if (typeof scope.Worker !== 'function') missing.push('Web Workers');
  if (typeof scope.WebAssembly !== 'object') missing.push('WebAssembly');
  if (typeof scope.navigator?.mediaDevices?.getUserMedia !== 'function') missing.push('camera access (getUserMedia)');
  return missing;
}

/** The explanation shown when `missing` is not empty. */
export function unsupportedMessage(missing) {
  return (
    'Sealed encrypts every video and audio frame inside your browser, and this browser cannot do that: ' +
    `it lacks ${missing.join(', ')}.\n\n` +
    'Use a current version of Chrome, Edge, Firefox or Safari.'
  );
}
