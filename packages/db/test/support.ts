import { createLogger, type Logger } from '@assist-tee/logger';
import {
  authSchema,
  type Database,
  environmentsSchema,
  executionSchema,
  openDatabase,
  reaperSchema,
} from '../src/index.js';

export const testLogger = (): Logger =>
  createLogger({ level: process.env.TEE_LOG_LEVEL ?? 'warn' }, { name: 'db-test' });

export const openEnvironments = (url: string): Promise<Database> =>
  openDatabase({
    url,
    ...environmentsSchema,
    logger: testLogger(),
  });

export const openAuth = (url: string): Promise<Database> =>
  openDatabase({
    url,
    ...authSchema,
    logger: testLogger(),
  });

export const openReaper = (url: string): Promise<Database> =>
  openDatabase({
    url,
    ...reaperSchema,
    logger: testLogger(),
  });

export const openExecution = (url: string): Promise<Database> =>
  openDatabase({
    url,
    ...executionSchema,
    logger: testLogger(),
  });
