#!/usr/bin/env node
// Two headless PeerPigeonMesh clients (npm peerpigeon 1.1.3, the library apps use, with real
// WebRTC through the @roamhq/wrtc override of package.json) meet through one hub (--url) or
// through two linked hubs (A on --url-a, B on --url-b), connect over WebRTC with the
// offer/answer/ICE relayed by the hub(s), and say "hello" on the data channel.
//
//   node peer_pair.mjs --url ws://127.0.0.1:3000 [--network demo] [--timeout 30]
//   node peer_pair.mjs --url-a ws://127.0.0.1:P1 --url-b ws://127.0.0.1:P2
//                      [--network demo] [--first a|b] [--gap 1.0] [--timeout 40]
//                      [--id-a HEX40] [--id-b HEX40]
//
// --first: which client joins first; --gap: seconds before the second one joins (so the first
// one's announce has crossed the link before the second exists: the late-joiner path).
// --id-a/--id-b: fixed peer ids. The 1.1.3 client lets only the larger id start the WebRTC offer
// (PeerDiscovery.shouldInitiateConnection), so fixing them decides which side must have
// discovered the other for the connection to happen.
// stdout: one JSON object per line ({"event": ..., "peer": "A"|"B", ...}); library chatter goes
// to stderr. Exit 0 once both peers received the other's hello, 1 on timeout/error.

import { parseArgs } from 'node:util';

for (const name of ['log', 'info', 'warn', 'debug']) {
  console[name] = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
}

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    'url-a': { type: 'string' },
    'url-b': { type: 'string' },
    network: { type: 'string', default: `mesh-${process.pid}` },
    first: { type: 'string', default: 'a' },
    gap: { type: 'string' },
    timeout: { type: 'string', default: '40' },
    'id-a': { type: 'string' },
    'id-b': { type: 'string' },
  },
});
values['url-a'] ??= values.url;
values['url-b'] ??= values.url;
// Across two hubs the second client joins a second later by default, so the first one's
// announce has crossed the link before it exists; on one hub they join back to back.
values.gap ??= values.url ? '0' : '1.0';
if (!values['url-a'] || !values['url-b'] || !['a', 'b'].includes(values.first)) {
  process.stderr.write('usage: node peer_pair.mjs (--url URL | --url-a URL --url-b URL) [--network N] ' +
                       '[--first a|b] [--gap S] [--timeout S]\n');
  process.exit(2);
}

const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');

// The import also installs global.WebSocket and, through the override, @roamhq/wrtc as the
// library's WebRTC.
const { PeerPigeonMesh } = await import('peerpigeon');

const peers = {};
let finished = false;

function finish(ok, reason) {
  if (finished) return;
  finished = true;
  emit(ok ? 'done' : 'failed', { ok, reason });
  for (const p of Object.values(peers)) {
    try { p.mesh.disconnect(); } catch { /* already gone */ }
  }
  // WebRTC threads keep node alive: exit explicitly once the goodbyes had a moment to go out.
  setTimeout(() => process.exit(ok ? 0 : 1), 300);
}

async function startPeer(name, url) {
  const peerId = values[name === 'A' ? 'id-a' : 'id-b'];
  const mesh = new PeerPigeonMesh({
    ...(peerId ? { peerId } : {}),
    networkName: values.network,
    ignoreEnvironmentErrors: true,
    enableWebDHT: false,
    enableCrypto: false,
  });
  const state = { name, mesh, id: null, greeted: new Set(), heard: new Set() };
  peers[name] = state;

  mesh.on('peerDiscovered', ({ peerId }) => emit('peerDiscovered', { peer: name, peerId }));
  mesh.on('peerConnected', ({ peerId }) => {
    emit('peerConnected', { peer: name, peerId });
    state.greeted.add(peerId);
    mesh.sendMessage(`hello from ${name}`);
  });
  mesh.on('peerDisconnected', ({ peerId, reason }) => emit('peerDisconnected', { peer: name, peerId, reason }));
  mesh.on('messageReceived', ({ from, content }) => {
    if (from === state.id) return; // the library echoes our own broadcasts locally
    emit('messageReceived', { peer: name, from, content });
    if (typeof content === 'string' && content.startsWith('hello from ')) state.heard.add(from);
    if (Object.values(peers).length === 2 && Object.values(peers).every((p) => p.heard.size > 0)) {
      finish(true, 'both peers received hello over the data channel');
    }
  });

  await mesh.init();
  state.id = mesh.peerId;
  emit('ready', { peer: name, id: state.id, network: values.network, url });
  await mesh.connect(url);
  emit('signalingConnected', { peer: name, id: state.id, url });
  return state;
}

const timer = setTimeout(() => finish(false, `timeout after ${values.timeout} s`),
  Number(values.timeout) * 1000);
timer.unref?.();

// Re-send hellos until both sides heard one: the first may race the data channel opening.
setInterval(() => {
  for (const p of Object.values(peers)) {
    if (p.greeted.size > 0) p.mesh.sendMessage(`hello from ${p.name}`);
  }
}, 1000).unref?.();

const order = values.first === 'a'
  ? [['A', values['url-a']], ['B', values['url-b']]]
  : [['B', values['url-b']], ['A', values['url-a']]];
try {
  await startPeer(...order[0]);
  await new Promise((resolve) => setTimeout(resolve, Number(values.gap) * 1000));
  await startPeer(...order[1]);
} catch (err) {
  emit('error', { message: String(err && err.stack || err) });
  finish(false, 'startup failed');
}
