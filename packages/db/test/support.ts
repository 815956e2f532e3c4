import { createLogger, type Logger } from '@assist-tee/logger';
import {
  EnvironmentEntity,
  environmentsMigrations,
  ExecutionEntity,
  executionMigrations,
  openDatabase,
  type Database,
} from '../src/index.js';

export const testLogger = (): Logger =>
  createLogger({ level: process.env.TEE_LOG_LEVEL ?? 'warn' }, { name: 'db-test' });

export const openEnvironments = (url: string): Promise<Database> =>
  openDatabase({
    url,
    schema: 'environments',
    entities: [EnvironmentEntity],
    migrations: environmentsMigrations,
    logger: testLogger(),
  });

export const openExecution = (url: string): Promise<Database> =>
  openDatabase({
    url,
    schema: 'execution',
    entities: [ExecutionEntity],
    migrations: executionMigrations,
    logger: testLogger(),
  });
