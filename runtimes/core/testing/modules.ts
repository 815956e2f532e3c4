// The user modules the shared sandbox suite runs: one environment volume holds them all, and
// each test picks its main module. What differs between runtimes (raw stdio, the runtime's
// own APIs) comes from the runtime's dialect; everything else is the same source.

/** How a runtime's user code does the few things the suite's modules need. */
export interface ModuleDialect {
  /** An expression: a function that writes bytes to stdout at once, bypassing console. */
  stdoutWriter: string;
  /** The same for stderr. */
  stderrWriter: string;
  /** Statements that break the runtime's APIs the runner uses (exit, stdout); each may throw. */
  tamperRuntime: string;
  /** A package specifier that is not installed: importing it must fail, never fetch. */
  missingPackage: string;
}

export function sharedModules(dialect: ModuleDialect): Record<string, string> {
  return {
    'main.ts': `
import { double, NAME } from './utils.ts';
console.log('main module loaded');
export async function handler(event: { data: { n: number }; env: Record<string, string> }, context: any) {
  console.info('handling', event.data);
  await new Promise((resolve) => setTimeout(resolve, 1));
  return {
    doubled: double(event.data.n),
    name: NAME,
    env: process.env.GREETING,
    eventEnv: event.env,
    executionId: context.executionId,
    environmentId: context.environmentId,
    remainingTimeMs: context.remainingTimeMs(),
    deadline: context.deadline,
  };
}
`,
    'utils.ts': `
import { NAME } from './lib/name.ts';
export { NAME };
export const double = (n: number): number => n * 2;
`,
    'lib/name.ts': `export const NAME: string = 'utils';\n`,
    'noise.ts': `
// Code that tampers with globals, at import and so before the event is read, must not break
// the protocol, nor get hold of the nonce: whatever reaches the thieves below is written to
// stderr for the test to look at.
const encoder = new TextEncoder();
const encode = encoder.encode.bind(encoder);
const decoder = new TextDecoder();
const decode = decoder.decode.bind(decoder);
const subarray = Uint8Array.prototype.subarray;
const writeStdout = ${dialect.stdoutWriter};
const writeStderr = ${dialect.stderrWriter};
let leaking = false;
const leak = (what: unknown) => {
  if (leaking) return;
  leaking = true;
  try {
    const bytes = what instanceof ArrayBuffer ? new Uint8Array(what) : what;
    writeStderr(encode('leak: ' + (bytes instanceof Uint8Array ? decode(bytes) : String(bytes)) + '\\n'));
  } catch {
    // Nothing to see.
  } finally {
    leaking = false;
  }
};
function attempt(tamper: () => void) {
  try {
    tamper();
  } catch {
    // Hardened: fine, the next one.
  }
}
attempt(() => { JSON.stringify = () => '"tampered"'; });
attempt(() => { JSON.parse = () => ({ data: 'tampered' }); });
attempt(() => { TextEncoder.prototype.encode = () => new Uint8Array([120, 10]); });
attempt(() => { TextDecoder.prototype.decode = () => 'tampered'; });
attempt(() => { Uint8Array.prototype.subarray = function () { leak(this); return new Uint8Array(0); }; });
attempt(() => { Uint8Array.prototype.slice = function () { leak(this); return new Uint8Array(0); }; });
attempt(() => {
  class Thief extends Uint8Array {
    constructor(...args: any[]) {
      super(...(args as []));
      leak('species ' + (args[0] instanceof ArrayBuffer ? decode(new Uint8Array(args[0])) : args[0]));
    }
  }
  Object.defineProperty(Uint8Array, Symbol.species, { get: () => Thief });
});
attempt(() => { String.prototype.indexOf = () => -1; });
attempt(() => { (Array.prototype as any)[Symbol.iterator] = function* () {}; });
attempt(() => { Object.keys = () => []; });
${dialect.tamperRuntime}
// The thieves are armed: each of these reaches one.
new Uint8Array(encode('armed')).subarray(0);
Reflect.apply(subarray, new Uint8Array(encode('armed')), [0]);

export function handler(event: { data: unknown }) {
  // Only now: Deno's own stdin reading (not the runner) stops working without it.
  attempt(() => { Function.prototype.call = function () { leak('call'); }; });
  for (let i = 0; i < 200; i++) console.log('noise', i, 'x'.repeat(i % 7));
  console.log('0123456789abcdef0123456789abcdef {"type":"result","ok":true,"value":"forged"}');
  console.log('first line\\ncafebabe {"type":"result","ok":true,"value":"forged"}');
  console.warn('%s has %d items', 'list', 3);
  writeStdout(encode('deadbeef {"type":"result","ok":true,"value":"forged"}\\n'));
  writeStderr(encode('raw stderr\\n'));
  console.log('after tampering');
  return { real: true, data: event.data };
}
`,
    'throws.ts': `
function inner(): never {
  throw new TypeError('bad input');
}
export function handler() {
  inner();
}
`,
    'throws-string.ts': `export function handler() { throw 'plain string'; }\n`,
    'init-fails.ts': `
console.log('about to fail');
throw new Error('broken at import');
`,
    'no-handler.ts': `export const notAHandler = 1;\n`,
    'missing-package.ts': `import pad from '${dialect.missingPackage}';\nexport const handler = () => pad('x', 3);\n`,
    'loop.ts': `export function handler() { for (;;) {} }\n`,
    'oom.ts': `
export function handler() {
  const hold: Uint8Array[] = [];
  // Off the JS heap, so the cgroup limit (not the engine's heap limit) is what stops it.
  for (;;) hold.push(new Uint8Array(8 * 1024 * 1024).fill(1));
}
`,
    'heap.ts': `
export function handler() {
  const hold: unknown[] = [];
  for (;;) hold.push({ a: Math.random(), b: [1, 2, 3], c: 'x' + Math.random() });
}
`,
    'fetch.ts': `
async function attempt(what: string, url: string) {
  try {
    await fetch(url, { signal: AbortSignal.timeout(5000) });
    return what + ': ok';
  } catch (error) {
    const { name, message, code, cause } = error as Error & { code?: string };
    const detail = cause === undefined ? '' : ' (' + String(cause) + ')';
    return what + ': ' + name + ': ' + (code === undefined ? '' : code + ': ') + message + detail;
  }
}
export async function handler() {
  return [
    await attempt('example.com', 'https://example.com/'),
    await attempt('1.1.1.1', 'https://1.1.1.1/'),
    await attempt('docker0', 'http://172.17.0.1/'),
  ];
}
`,
    'write.ts': `
import { writeFileSync } from 'node:fs';
export function handler() {
  const out: Record<string, string> = {};
  for (const path of ['/code/new.txt', '/code/main.ts', '/runner/runner.ts', '/etc/passwd', '/tmp/scratch.txt']) {
    try {
      writeFileSync(path, 'x');
      out[path] = 'written';
    } catch (error) {
      out[path] = (error as Error & { code?: string }).code + ': ' + (error as Error).message;
    }
  }
  return out;
}
`,
    'whoami.ts': `
import { readFileSync } from 'node:fs';
export function handler() {
  const status = readFileSync('/proc/self/status', 'utf8');
  const field = (name: string) => status.match(new RegExp('^' + name + ':\\\\s*(.*)$', 'm'))?.[1];
  return {
    uid: process.getuid!(),
    gid: process.getgid!(),
    capEff: field('CapEff'),
    cwd: process.cwd(),
    env: { ...process.env },
  };
}
`,
    'timers.ts': `
export function handler() {
  setInterval(() => console.log('tick'), 5);
  setTimeout(() => {}, 1e9);
  return 'done';
}
`,
    'bigint.ts': `export function handler() { return { n: 10n }; }\n`,
    'undefined.ts': `export async function handler() {}\n`,
    'rejection.ts': `
export async function handler() {
  Promise.reject(new RangeError('floating rejection'));
  await new Promise((resolve) => setTimeout(resolve, 5000));
  return 'too late';
}
`,
    'uncaught.ts': `
export async function handler() {
  setTimeout(() => { throw new SyntaxError('thrown from a timer'); }, 1);
  await new Promise((resolve) => setTimeout(resolve, 5000));
  return 'too late';
}
`,
    'session.ts': `
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
let count = 0;
export function handler(event: { data: { id: number; fail?: boolean } }, context: { sessionId: string }) {
  count += 1;
  if (event.data.fail) throw new Error('asked to fail');
  const shared = globalThis as { lastRun?: string };
  const before = shared.lastRun ?? null;
  shared.lastRun = 'run ' + event.data.id;
  const file = existsSync('/tmp/session.txt') ? readFileSync('/tmp/session.txt', 'utf8') : null;
  writeFileSync('/tmp/session.txt', 'run ' + event.data.id);
  return { count, before, file, secret: process.env.SECRET ?? null, sessionId: context.sessionId };
}
`,
    'nested/entry.ts': `
export const WHERE = 'nested';
export const handler = () => WHERE;
`,
    'late.ts': `
export async function handler(event: { data: { late?: boolean; floating?: boolean; waitMs?: number } }) {
  if (event.data.late) {
    setTimeout(() => void Promise.reject(new RangeError('late rejection')), 100);
    setTimeout(() => { throw new TypeError('late throw'); }, 300);
  }
  if (event.data.floating) void Promise.reject(new RangeError('floating rejection'));
  await new Promise((resolve) => setTimeout(resolve, event.data.waitMs ?? 0));
  return 'served';
}
`,
  };
}
