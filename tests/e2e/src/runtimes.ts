import { Runtime } from '@assist-tee/client';

/** Every runtime an environment can use: suites that must hold for each run over these. */
export const RUNTIMES = [Runtime.DENO, Runtime.BUN] as const;
