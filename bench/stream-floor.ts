/**
 * The physical floor of a migration: the time to push the same number of bytes over the same
 * link with a plain TCP stream (no CRIU, no HTTP, no hashing, no disk). The sink runs inside
 * the destination host's network namespace and answers one byte once it has read them all.
 */
import { once } from 'node:events';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { spawnInHost, type NetnsHost } from '../src/dev/netns-hosts';

const SINK = `
const [address, port] = [process.argv[1], Number(process.argv[2])];
require('net').createServer((socket) => {
  let expected = -1, got = 0, header = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    if (expected < 0) {
      header = Buffer.concat([header, chunk]);
      if (header.length < 8) return;
      expected = Number(header.readBigUInt64BE(0));
      chunk = header.subarray(8);
    }
    got += chunk.length;
    if (got >= expected) socket.end('k');
  });
}).listen(port, address, () => console.log('ready'));
`;

export async function streamFloorMs(host: NetnsHost, port: number, bytes: number): Promise<number> {
  const sink = spawnInHost(host, [process.execPath, '-e', SINK, host.address, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await once(createInterface({ input: sink.stdout! }), 'line');
    const socket = connect(port, host.address);
    await once(socket, 'connect');
    const chunk = Buffer.alloc(1 << 20, 0xa5);
    const started = process.hrtime.bigint();
    const header = Buffer.alloc(8);
    header.writeBigUInt64BE(BigInt(bytes));
    socket.write(header);
    let left = bytes;
    while (left > 0) {
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      if (!socket.write(piece)) await once(socket, 'drain');
    }
    await once(socket, 'data');
    const elapsed = Number(process.hrtime.bigint() - started) / 1e6;
    socket.destroy();
    return Math.round(elapsed * 10) / 10;
  } finally {
    sink.kill('SIGKILL');
  }
}
