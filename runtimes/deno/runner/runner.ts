// The Deno runner: Deno runs this inside the sandbox as `/runner/runner.ts <main module>`. The
// protocol lives in ./core.ts (runtimes/core/runner/core.ts, copied next to this file in the
// image); this file only hands it Deno's stdio, console formatting, exit, env, files and error
// events.
// Everything is captured here, before the core imports any user code.
import { type RunnerHost, startRunner, uncurry } from './core.ts';

const stdoutWriteSync = Deno.stdout.writeSync.bind(Deno.stdout);
const stderrWriteSync = Deno.stderr.writeSync.bind(Deno.stderr);
const stdinRead = Deno.stdin.read.bind(Deno.stdin);
const denoInspect = Deno.inspect;
const exit = Deno.exit;
const envSet = Deno.env.set.bind(Deno.env);
const envDelete = Deno.env.delete.bind(Deno.env);
const mkdirSync = Deno.mkdirSync;
const writeTextFileSync = Deno.writeTextFileSync;
const addEventListener = globalThis.addEventListener.bind(globalThis);
const preventDefault = uncurry(Event.prototype.preventDefault);
const Uint8ArrayCtor = Uint8Array;
const inspectOptions = Object.freeze({ __proto__: null, colors: false }) as Deno.InspectOptions;

const chunk = new Uint8ArrayCtor(64 * 1024);
const chunkBuffer = chunk.buffer;
/** A view of the first `length` bytes of `chunk`, built without subarray() (see core.ts). */
const chunkView = (length: number) => new Uint8ArrayCtor(chunkBuffer, 0, length);

const host: RunnerHost = {
  writeStdout: (bytes) => stdoutWriteSync(bytes),
  writeStderr: (bytes) => stderrWriteSync(bytes),
  readStdin: async () => {
    const read = await stdinRead(chunk);
    return read === null ? null : chunkView(read);
  },
  inspect: (value) => denoInspect(value, inspectOptions),
  exit: (code) => exit(code),
  setEnv: (name, value) => envSet(name, value),
  unsetEnv: (name) => envDelete(name),
  makeDirectory: (path) => mkdirSync(path, { recursive: true }),
  writeFile: (path, text) => writeTextFileSync(path, text),
  // The import map (--import-map, with dependencies) applies to every module, wherever it is.
  resolveBare: (specifier) => specifier,
  onUncaught: (listener) => {
    const onEvent = (event: Event & { reason?: unknown; error?: unknown }) => {
      preventDefault(event);
      listener('reason' in event ? event.reason : event.error);
    };
    addEventListener('unhandledrejection', onEvent);
    addEventListener('error', onEvent);
  },
  mainModule: Deno.args[0],
};

startRunner(host);
