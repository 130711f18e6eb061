#!/usr/bin/env node
// Join a PigeonHub-WASM hub with the PeerPigeon client library (npm peerpigeon 1.1.3).
//
//   node connect.mjs ws://192.168.1.50:3000 [--network demo] [--name alice]
//
// Run it twice (two terminals, or two machines) with the same hub and network: the hub introduces
// the peers (peer-discovered), relays their WebRTC offer/answer, and they then chat directly over a
// data channel. Lines typed on stdin are sent to every connected peer.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    network: { type: 'string', default: 'global' },
    name: { type: 'string', default: `node-${process.pid}` },
  },
});
const url = positionals[0];
if (!url || !/^wss?:\/\//.test(url)) {
  console.error('usage: node connect.mjs ws://<hub IP>:3000 [--network NAME] [--name NAME]');
  console.error('The hub prints its address at boot: "I (...) pigeonhub: IPv4 address: x.x.x.x"');
  process.exit(2);
}

const { PeerPigeonMesh } = await import('peerpigeon');
const mesh = new PeerPigeonMesh({
  networkName: values.network,
  ignoreEnvironmentErrors: true, // plain Node: no browser APIs
  enableWebDHT: false,
  enableCrypto: false,
});

mesh.on('statusChanged', (s) => {
  if (s.type === 'connected') console.log(`connected to ${url} (network "${values.network}")`);
  if (s.type === 'disconnected') console.log('hub connection lost; the library reconnects');
});
mesh.on('peerDiscovered', ({ peerId }) => console.log(`discovered ${peerId.slice(0, 8)}… via the hub`));
mesh.on('peerConnected', ({ peerId }) => {
  console.log(`direct link to ${peerId.slice(0, 8)}… open`);
  mesh.sendMessage(`${values.name} joined`);
});
mesh.on('peerDisconnected', ({ peerId }) => console.log(`${peerId.slice(0, 8)}… left`));
mesh.on('messageReceived', ({ from, content }) => {
  if (from !== mesh.peerId) console.log(`${from.slice(0, 8)}…: ${content}`);
});

await mesh.init();
console.log(`peer id ${mesh.peerId}`);
try {
  await mesh.connect(url);
} catch (err) {
  console.error(`could not reach ${url}: ${err.message}`);
  console.error('Check that the board is on the same network and that `curl http://<ip>:3000/health` answers.');
  process.exit(1);
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => line.trim() && mesh.sendMessage(`${values.name}: ${line.trim()}`));
const stop = () => {
  mesh.disconnect();
  setTimeout(() => process.exit(0), 300); // WebRTC threads keep Node alive otherwise
};
process.on('SIGINT', stop);
rl.on('close', stop);
