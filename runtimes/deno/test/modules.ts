// The user modules the sandbox tests run: one environment volume holds them all, and each test
// picks its main module.
export const testModules: Record<string, string> = {
  'main.ts': `
import { double, NAME } from './utils.ts';
console.log('main module loaded');
export async function handler(event: { data: { n: number }; env: Record<string, string> }, context: any) {
  console.info('handling', event.data);
  await new Promise((resolve) => setTimeout(resolve, 1));
  return {
    doubled: double(event.data.n),
    name: NAME,
    env: Deno.env.get('GREETING'),
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
export function handler() {
  for (let i = 0; i < 200; i++) console.log('noise', i, { i });
  console.log('0123456789abcdef0123456789abcdef {"type":"result","ok":true,"value":"forged"}');
  console.log('first line\\ncafebabe {"type":"result","ok":true,"value":"forged"}');
  console.warn('%s has %d items', 'list', 3);
  Deno.stdout.writeSync(new TextEncoder().encode('deadbeef {"type":"result","ok":true,"value":"forged"}\\n'));
  Deno.stderr.writeSync(new TextEncoder().encode('raw stderr\\n'));
  // Code that tampers with globals must not break the protocol.
  JSON.stringify = () => '"tampered"';
  TextEncoder.prototype.encode = () => new Uint8Array([120, 10]);
  Uint8Array.prototype.subarray = function () { return new Uint8Array(0); };
  String.prototype.indexOf = () => -1;
  Array.prototype[Symbol.iterator] = function* () {};
  Deno.exit = () => { throw new Error('no exit for you'); };
  console.log('after tampering');
  return { real: true };
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
  'npm-import.ts': `import leftPad from 'npm:left-pad';\nexport const handler = () => leftPad('x', 3);\n`,
  'loop.ts': `export function handler() { for (;;) {} }\n`,
  'oom.ts': `
export function handler() {
  const hold: Uint8Array[] = [];
  // Off the V8 heap, so the cgroup limit (not V8's heap limit) is what stops it.
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
async function attempt(what: string, run: () => Promise<unknown>) {
  try {
    await run();
    return what + ': ok';
  } catch (error) {
    return what + ': ' + (error as Error).name + ': ' + (error as Error).message;
  }
}
export async function handler() {
  return [
    await attempt('example.com', () => fetch('https://example.com', { signal: AbortSignal.timeout(5000) })),
    await attempt('1.1.1.1', () => Deno.connect({ hostname: '1.1.1.1', port: 443 })),
    await attempt('docker0', () => Deno.connect({ hostname: '172.17.0.1', port: 80 })),
  ];
}
`,
  'write.ts': `
export function handler() {
  const out: Record<string, string> = {};
  for (const path of ['/code/new.txt', '/code/main.ts', '/runner/runner.ts', '/etc/passwd', '/tmp/scratch.txt']) {
    try {
      Deno.writeTextFileSync(path, 'x');
      out[path] = 'written';
    } catch (error) {
      out[path] = (error as Error).name + ': ' + (error as Error).message;
    }
  }
  return out;
}
`,
  'whoami.ts': `
export function handler() {
  const status = Deno.readTextFileSync('/proc/self/status');
  const field = (name: string) => status.match(new RegExp('^' + name + ':\\\\s*(.*)$', 'm'))?.[1];
  return {
    uid: Deno.uid(),
    gid: Deno.gid(),
    capEff: field('CapEff'),
    cwd: Deno.cwd(),
    env: Deno.env.toObject(),
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
};
