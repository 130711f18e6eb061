#!/usr/bin/env node
// Two headless PeerPigeonMesh clients (npm peerpigeon 1.1.3, the library apps use) meet through a
// hub, connect over WebRTC and say "hello" on the data channel.
//
//   node mesh_pair.mjs --url ws://127.0.0.1:3000 [--network demo] [--timeout 30]
//
// stdout: one JSON object per line ({"event": ..., "peer": "A"|"B", ...}); the library's own
// chatter goes to stderr. Exit 0 once both peers received the other's hello, 1 on timeout/error.

import { parseArgs } from 'node:util';

// The library logs freely with console.*: keep stdout for our JSON lines only.
for (const name of ['log', 'info', 'warn', 'debug']) {
  console[name] = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
}

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    network: { type: 'string', default: `interop-${process.pid}` },
    timeout: { type: 'string', default: '30' },
  },
});
if (!values.url) {
  process.stderr.write('usage: node mesh_pair.mjs --url ws://HOST:PORT [--network N] [--timeout S]\n');
  process.exit(2);
}

const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');

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

async function startPeer(name) {
  const mesh = new PeerPigeonMesh({
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
  emit('ready', { peer: name, id: state.id, network: values.network });
  await mesh.connect(values.url);
  emit('signalingConnected', { peer: name, id: state.id, url: values.url });
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

try {
  await startPeer('A');
  await startPeer('B');
} catch (err) {
  emit('error', { message: String(err && err.stack || err) });
  finish(false, 'startup failed');
}
