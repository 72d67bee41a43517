/** Binds the API to `host:port` (the plan's host address, or --listen). The only place that opens a socket. */
import type { FastifyInstance } from 'fastify';
import { ShardformError } from '../../src/errors';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** `127.0.0.1:7100`, `[::1]:7100`, `0.0.0.0:7100`, or `:7100` (all interfaces); `defaultPort` when none is given. */
export function parseListenAddress(text: string, field: string, defaultPort?: number): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*))(?::([0-9]{1,5}))?$/.exec(text.trim());
  const host = match ? (match[1] ?? match[2]) : undefined;
  const port = match?.[3] !== undefined ? Number(match[3]) : defaultPort;
  if (!match || port === undefined || port < 0 || port > 65535 || (host === '' && match[3] === undefined)) {
    throw new ShardformError('INVALID_ARGUMENT', field, text, `${field}: ${JSON.stringify(text)} is not an address; use host:port, [v6]:port or :port (e.g. 127.0.0.1:7100)`);
  }
  return { host: host === '' ? '0.0.0.0' : host!, port };
}

export async function listen(app: FastifyInstance, address: ListenAddress): Promise<string> {
  return app.listen({ host: address.host, port: address.port });
}
