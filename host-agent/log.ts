/**
 * Structured JSON logs (pino): one line per event, `shard_id` and `application_id` as fields
 * (never interpolated into the message) so a log pipeline can filter one shard's history.
 * The logger is created once by the daemon and passed down; nothing else calls pino().
 */
import pino, { type DestinationStream, type Logger } from 'pino';

export type AgentLogger = Logger;

export interface LoggerOptions {
  /** pino level; default 'info' (SHARDFORM_LOG_LEVEL overrides in the CLI). */
  level?: string;
  /** Where lines go; default stdout. Tests pass a stream that collects lines. */
  destination?: DestinationStream;
  /** Fields on every line, e.g. { host_id }. */
  base?: Record<string, string>;
}

export function createLogger(options: LoggerOptions = {}): AgentLogger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { component: 'host-agent', ...options.base },
      // ISO time (not epoch millis) so the lines read well without a viewer.
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A child logger whose every line names the shard and its application. */
export function shardLogger(logger: AgentLogger, shard: { shardId: string; applicationId: string }): AgentLogger {
  return logger.child({ shard_id: shard.shardId, application_id: shard.applicationId });
}

/** A logger that drops everything (unit tests that do not look at logs). */
export function silentLogger(): AgentLogger {
  return pino({ level: 'silent' });
}

/** Collects JSON log lines in memory (tests assert on fields, not on message text only). */
export function memoryLogDestination(): DestinationStream & { lines(): Record<string, unknown>[] } {
  const raw: string[] = [];
  return {
    write(chunk: string) {
      raw.push(chunk);
    },
    lines: () => raw.join('').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}
