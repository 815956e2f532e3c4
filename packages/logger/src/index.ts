import { pino, type Logger, type LoggerOptions } from 'pino';
import { traceLogFields } from '@assist-tee/tracing';

export type { Logger } from 'pino';

export interface LoggerConfig {
  /** pino level: trace, debug, info, warn, error, fatal, silent. */
  level: string;
}

/** The root logger of a process; subsystems take `logger.child({ subsystem })`. */
export function createLogger(config: LoggerConfig, options: LoggerOptions = {}): Logger {
  return pino({
    level: config.level,
    // Credentials never reach the logs, whichever subsystem logs a request or a config.
    redact: {
      paths: [
        'authorization',
        '*.authorization',
        'headers.authorization',
        '*.headers.authorization',
        'password',
        '*.password',
      ],
      censor: '[redacted]',
    },
    // A line written inside a span names it, so a log search and a trace find each other.
    mixin: traceLogFields,
    ...options,
  });
}

export function subsystemLogger(root: Logger, subsystem: string): Logger {
  return root.child({ subsystem });
}
