/** Binds the API to `host:port` (the plan's host address, or --listen). The only place that opens a socket. */
import { createServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { ShardformError } from '../../src/errors';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
  /** Where the address came from (`--listen`, a host's address in the plan) and its text, for errors. */
  readonly field: string;
  readonly text: string;
}

/** `127.0.0.1:7100`, `[::1]:7100`, `0.0.0.0:7100`, or `:7100` (all interfaces); `defaultPort` when none is given. */
export function parseListenAddress(text: string, field: string, defaultPort?: number): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*))(?::([0-9]{1,5}))?$/.exec(text.trim());
  const host = match ? (match[1] ?? match[2]) : undefined;
  const port = match?.[3] !== undefined ? Number(match[3]) : defaultPort;
  if (!match || port === undefined || port < 0 || port > 65535 || (host === '' && match[3] === undefined)) {
    throw new ShardformError('INVALID_ARGUMENT', field, text, `${field}: ${JSON.stringify(text)} is not an address; use host:port, [v6]:port or :port (e.g. 127.0.0.1:7100)`);
  }
  return { host: host === '' ? '0.0.0.0' : host!, port, field, text };
}

/**
 * Binds the address and lets it go again. The agent serves only once its shards run; an address
 * this host cannot serve on (not one of its own, taken by another agent, a privileged port)
 * must stop the start before anything is written or started, as a usage error naming it.
 */
export async function checkListenable(address: ListenAddress): Promise<void> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: address.host, port: address.port, exclusive: true }, resolve);
    });
  } catch (error) {
    const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ShardformError('INVALID_ARGUMENT', address.field, address.text, `${address.field}: ${JSON.stringify(address.text)} cannot be served on this host: ${why}`);
  }
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export async function listen(app: FastifyInstance, address: ListenAddress): Promise<string> {
  return app.listen({ host: address.host, port: address.port });
}
