import { createLogger, type Logger } from '@assist-tee/logger';
import {
  EnvironmentEntity,
  EnvironmentsOutboxEntity,
  environmentsMigrations,
  ExecutionEntity,
  ExecutionOutboxEntity,
  executionMigrations,
  openDatabase,
  ProcessedEventEntity,
  reaperMigrations,
  SweepEntity,
  type Database,
} from '../src/index.js';

export const testLogger = (): Logger =>
  createLogger({ level: process.env.TEE_LOG_LEVEL ?? 'warn' }, { name: 'db-test' });

export const openEnvironments = (url: string): Promise<Database> =>
  openDatabase({
    url,
    schema: 'environments',
    entities: [EnvironmentEntity, EnvironmentsOutboxEntity, ProcessedEventEntity],
    migrations: environmentsMigrations,
    logger: testLogger(),
  });

export const openReaper = (url: string): Promise<Database> =>
  openDatabase({
    url,
    schema: 'reaper',
    entities: [SweepEntity],
    migrations: reaperMigrations,
    logger: testLogger(),
  });

export const openExecution = (url: string): Promise<Database> =>
  openDatabase({
    url,
    schema: 'execution',
    entities: [ExecutionEntity, ExecutionOutboxEntity],
    migrations: executionMigrations,
    logger: testLogger(),
  });
