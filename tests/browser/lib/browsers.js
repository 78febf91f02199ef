// Launches the Debian Chromium and Firefox ESR through puppeteer-core, with
// fake camera and microphone, and makes sure every browser is closed.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

export const CHROMIUM = process.env.SEALED_CHROMIUM ?? '/usr/bin/chromium';
export const FIREFOX = process.env.SEALED_FIREFOX ?? '/usr/bin/firefox-esr';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-domain-reliability',
  '--no-default-browser-check',
  // getDisplayMedia({preferCurrentTab: true}) shares this tab without a picker.
  '--auto-accept-this-tab-capture',
  // Three fake cameras, so a test can switch devices. Chromium gives them the
  // formats I420, Y16 and MJPEG in turn: fake_device_1 is a depth camera whose
  // frames no video encoder takes, so tests switch between devices 0 and 2.
  '--use-fake-device-for-media-stream=device-count=3',
  // puppeteer-core merges this with its own list into ONE --disable-features
  // flag (Chromium honours only the last one).
  '--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints,Translate,AutofillServerCommunication,CertificateTransparencyComponentUpdater',
];

const FIREFOX_PREFS = {
  // Fake media, no permission prompt, loopback ICE with real addresses.
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  // Without a *granted* camera permission (permission.disabled alone leaves it
  // at "prompt"), Firefox gathers ICE candidates on the default-route
  // interface only, never on loopback, where the SFU listens.
  'permissions.default.camera': 1,
  'permissions.default.microphone': 1,
  // Tab sharing through getUserMedia({video: {mediaSource: 'browser'}}): headless
  // Firefox has no getDisplayMedia picker (see lib/capture.js).
  'media.getusermedia.browser.enabled': true,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  // Firefox's own default, stated because ice_tcp.test.js depends on it: ICE over
  // TCP to the SFU's passive candidate when UDP is blocked.
  'media.peerconnection.ice.tcp': true,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  // No OpenH264 download: we use VP8.
  'media.gmp-manager.url': '',
  'media.gmp-manager.updateEnabled': false,
  'media.gmp-gmpopenh264.enabled': false,
  'media.gmp-gmpopenh264.autoupdate': false,
  // Quiet: no updates, telemetry, safe browsing or other background traffic.
  'app.update.enabled': false,
  'app.update.auto': false,
  'app.update.checkInstallTime': false,
  'browser.shell.checkDefaultBrowser': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'browser.safebrowsing.downloads.enabled': false,
  'browser.safebrowsing.blockedURIs.enabled': false,
  'browser.safebrowsing.provider.mozilla.updateURL': '',
  'browser.search.update': false,
  'browser.newtabpage.enabled': false,
  'browser.topsites.contile.enabled': false,
  'browser.ping-centre.telemetry': false,
  'captivedetect.canonicalURL': '',
  'datareporting.healthreport.uploadEnabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'extensions.update.enabled': false,
  'extensions.getAddons.cache.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'network.dns.disablePrefetch': true,
  'network.prefetch-next': false,
  'services.settings.server': 'http://127.0.0.1:9/',
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.unified': false,
  'toolkit.telemetry.archive.enabled': false,
  'toolkit.telemetry.server': '',
};

function register(t, browser, cleanup) {
  t.after(async () => {
    const closed = browser.close().catch(() => {});
    const timeout = new Promise((r) => setTimeout(r, 5000, 'timeout'));
    if ((await Promise.race([closed, timeout])) === 'timeout') browser.process()?.kill('SIGKILL');
    cleanup?.();
  });
}

/**
 * Headless Chromium with a fresh profile; closed when test `t` ends.
 *
 * `tabCapture`: let getDisplayMedia share the tab itself. The fake media UI
 * would hand out a fake "monitor" instead, so it is left out, and each browser
 * context must be granted the camera and microphone with `grantMedia`.
 * `spki`: trust a self-signed server certificate with this SPKI hash, as a
 * person would by flag.
 */
export async function launchChromium(t, { tabCapture = false, spki = null } = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'sealed-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir,
    args: [
      ...(tabCapture ? CHROMIUM_ARGS.filter((a) => a !== '--use-fake-ui-for-media-stream') : CHROMIUM_ARGS),
      ...(spki ? [`--ignore-certificate-errors-spki-list=${spki}`] : []),
    ],
    protocolTimeout: 60000,
  });
  register(t, browser, () => rmSync(userDataDir, { recursive: true, force: true }));
  return browser;
}

/** Grants `context` (a Chromium browser context) the camera and microphone on `origin`. */
export async function grantMedia(context, origin) {
  await context.overridePermissions(origin, ['camera', 'microphone']);
}

/**
 * Headless Firefox ESR over WebDriver BiDi; closed when test `t` ends.
 * `acceptInsecureCerts`: accept a self-signed server certificate.
 */
export async function launchFirefox(t, { acceptInsecureCerts = false } = {}) {
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    acceptInsecureCerts,
    extraPrefsFirefox: FIREFOX_PREFS,
    protocolTimeout: 60000,
  });
  register(t, browser);
  return browser;
}
