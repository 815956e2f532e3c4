import type { LogContext, Logger as OrmLogger, LoggerNamespace } from '@mikro-orm/core';
import type { Logger } from '@assist-tee/logger';

/** MikroORM's logger interface on top of pino: queries at debug, warnings and errors as such. */
export class PinoOrmLogger implements OrmLogger {
  constructor(
    private readonly logger: Logger,
    private debugMode: boolean | LoggerNamespace[],
  ) {}

  log(namespace: string, message: string, context?: LogContext): void {
    // The ORM's own warnings and errors (pool errors, deprecations) always get through.
    const always = context?.level === 'error' || context?.level === 'warning';
    if (!always && !this.isEnabled(namespace as LoggerNamespace, context)) return;
    this.write(context?.level, { namespace, label: context?.label }, message);
  }

  error(namespace: string, message: string, context?: LogContext): void {
    this.log(namespace, message, { ...context, level: 'error' });
  }

  warn(namespace: string, message: string, context?: LogContext): void {
    this.log(namespace, message, { ...context, level: 'warning' });
  }

  /** Only in debug mode (or a slow query): a failing query is the caller's error to log. */
  logQuery(context: LogContext): void {
    const namespace = context.namespace ?? 'query';
    if (!this.isEnabled(namespace, context)) return;
    // Parameters are left out on purpose: they carry user data (events, results, logs).
    const { query, took, results, affected, label } = context;
    this.write(context.level, { namespace, query, took, results, affected, label }, 'query');
  }

  setDebugMode(debugMode: boolean | LoggerNamespace[]): void {
    this.debugMode = debugMode;
  }

  isEnabled(namespace: LoggerNamespace, context?: LogContext): boolean {
    if (context?.enabled !== undefined) return context.enabled;
    if (namespace === 'deprecated') return true;
    const debugMode = context?.debugMode ?? this.debugMode;
    return Array.isArray(debugMode) ? debugMode.includes(namespace) : debugMode;
  }

  private write(level: LogContext['level'], fields: object, message: string): void {
    if (level === 'error') this.logger.error(fields, message);
    else if (level === 'warning') this.logger.warn(fields, message);
    else this.logger.debug(fields, message);
  }
}
