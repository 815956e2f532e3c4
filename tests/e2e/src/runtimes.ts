import { Runtime } from '@assist-tee/client';

/** Every runtime an environment can use: suites that must hold for each run over these. */
export const RUNTIMES = [Runtime.DENO, Runtime.BUN] as const;

/** [name, runtime] pairs, for `describe.each(NAMED_RUNTIMES)('… %s', (_, runtime) => …)`. */
export const NAMED_RUNTIMES = RUNTIMES.map((runtime) => [Runtime[runtime], runtime] as const);
