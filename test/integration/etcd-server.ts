/**
 * A throwaway etcd for tests: Debian's etcd-server on loopback, free ports, a temp data dir,
 * stopped and removed by stop(). Short heartbeat and election timeouts lower etcd's minimum
 * lease ttl (1.5 election timeouts, rounded up to a second) so lease tests take seconds.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';

export interface EtcdServer {
  readonly endpoint: string;
  /** etcd's pid (a new one after a restart): SIGSTOP makes it hang on open connections, as a partition does. */
  readonly pid: number;
  /** SIGKILLs etcd and starts it again on its data directory and ports: what it had committed is there again. */
  restartAfterKill(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** `host`: the address it listens on (loopback; a netns test bridge's for agents in namespaces). */
export async function startEtcd(host = '127.0.0.1'): Promise<EtcdServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'shardform-etcd-'));
  const [clientPort, peerPort] = [await freePort(host), await freePort(host)];
  const client = `http://${host}:${clientPort}`;
  const peer = `http://${host}:${peerPort}`;
  const output: string[] = [];
  let child: ChildProcess;
  let exited: Promise<void>;
  const running = () => child.exitCode === null && child.signalCode === null;

  /** Starts etcd on the data directory (a new member the first time, the same one after a kill) and waits until it answers. */
  const launch = async () => {
    child = spawn(
      'etcd',
      [
        '--name', 'test',
        '--data-dir', join(dataDir, 'data'),
        '--listen-client-urls', client, '--advertise-client-urls', client,
        '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `test=${peer}`,
        '--heartbeat-interval', '50', '--election-timeout', '500',
        '--logger', 'zap', '--log-level', 'warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
    child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
    exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const probe = new Etcd3({ hosts: client, dialTimeout: 500 });
    try {
      for (let attempt = 0; ; attempt++) {
        if (child.exitCode !== null) throw new Error(`etcd exited with ${child.exitCode}: ${output.join('').slice(-2000)}`);
        try {
          await probe.get('/ready-probe').string();
          return;
        } catch (error) {
          if (attempt > 200) throw new Error(`etcd did not become ready: ${(error as Error).message}\n${output.join('').slice(-2000)}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      probe.close();
    }
  };
  const stop = async () => {
    if (running()) {
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await launch();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    endpoint: client,
    get pid() {
      return child.pid!;
    },
    async restartAfterKill() {
      if (running()) {
        child.kill('SIGKILL');
        await exited;
      }
      await launch();
    },
    stop,
  };
}
