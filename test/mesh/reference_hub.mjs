#!/usr/bin/env node
// A reference PeerPigeon hub (npm peerpigeon 1.1.3 from test/interop, "G3" in docs/PROTOCOL.md
// §7) on loopback, for the hub-mesh tests: it dials the bootstrap hubs it is given, exactly like
// a PigeonHub deployment would.
//
//   node reference_hub.mjs --bootstrap ws://127.0.0.1:PORT [--bootstrap URL ...] [--port N]
//   node reference_hub.mjs --bootstrap self          # a pure bootstrap hub (dials nobody)
//
// The bootstrap list is always explicit: with an empty list the library dials ws://HOST:3000,
// which on a shared machine may be anything. "self" stands for the hub's own URL, which the
// library skips as a self-connection, so "--bootstrap self" means "dial nobody".
//
// stdout: one JSON object per line ({"event": ...}); the first is {"event":"started","port":N,
// "hubPeerId":...}. The library's own chatter goes to stderr (the tests keep it as the hub log).
// SIGTERM/SIGINT stop the server cleanly (exit 0).

import net from 'node:net';
import { parseArgs } from 'node:util';

for (const name of ['log', 'info', 'warn', 'debug']) {
  console[name] = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
}

const { values } = parseArgs({
  options: {
    bootstrap: { type: 'string', multiple: true },
    port: { type: 'string' },
  },
});
if (!values.bootstrap || values.bootstrap.length === 0) {
  process.stderr.write('usage: node reference_hub.mjs --bootstrap ws://HOST:PORT|self [--port N]\n');
  process.exit(2);
}

const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');

// The library treats port 0 as "3000" (options.port || 3000): ask the OS for a free port first.
async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Resolved relative to this file: test/mesh has no node_modules of its own.
const { PeerPigeonServer } = await import(
  new URL('../interop/node_modules/peerpigeon/index.js', import.meta.url));

const port = values.port ? Number(values.port) : await freePort();
const bootstrapHubs = values.bootstrap.map((u) => (u === 'self' ? `ws://127.0.0.1:${port}` : u));

const server = new PeerPigeonServer({
  port,
  host: '127.0.0.1',
  isHub: true,
  bootstrapHubs,
  maxPortRetries: 1,          // a busy port is an error here, not a silent move to the next one
});

// The library's events, forwarded so that tests can wait on them instead of parsing its log.
server.on('started', ({ port: p }) => emit('started', { port: p, hubPeerId: server.hubPeerId, bootstrapHubs }));
server.on('bootstrapConnected', ({ uri }) => emit('bootstrapConnected', { uri }));
server.on('bootstrapDisconnected', ({ uri, code, reason }) =>
  emit('bootstrapDisconnected', { uri, code, reason: String(reason ?? '') }));
server.on('hubRegistered', ({ peerId }) => emit('hubRegistered', { peerId }));
server.on('hubDiscovered', ({ peerId, via }) => emit('hubDiscovered', { peerId, via }));
server.on('hubMeshReady', (info) => emit('hubMeshReady', { info: JSON.stringify(info) }));
server.on('hubMeshMigrated', (info) => emit('hubMeshMigrated', { info: JSON.stringify(info) }));
server.on('hubP2PConnected', ({ hubPeerId }) => emit('hubP2PConnected', { hubPeerId }));
server.on('peerAnnounced', ({ peerId, networkName, isHub }) => emit('peerAnnounced', { peerId, networkName, isHub }));
server.on('bootstrapSignaling', ({ type, fromPeerId, targetPeerId, uri }) =>
  emit('bootstrapSignaling', { type, fromPeerId, targetPeerId, uri }));
server.on('error', (err) => emit('error', { message: String(err && err.message || err) }));

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  emit('stopping', { signal });
  try { await server.stop(); } catch { /* exiting anyway */ }
  // the hub-mesh client's WebRTC threads keep node alive: exit explicitly
  setTimeout(() => process.exit(0), 200);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

try {
  await server.start();
} catch (err) {
  emit('error', { message: String(err && err.stack || err) });
  process.exit(1);
}
