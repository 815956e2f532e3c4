// The runtime-agnostic core of the runner. Each runtime's entry (runtimes/<runtime>/runner/runner.ts)
// imports this module, captures what it needs from its own runtime, and calls `startRunner(host)`.
// In the image both live in /runner: the entry at /runner/runner.ts, this file at /runner/core.ts.
// The entry runs as `runner.ts <main module>`.
//
// Protocol (stdin/stdout, one line each):
//   stdin  1: a nonce (opaque token)
//   stdout  : `${nonce} {"type":"log",...}` for every console call, then `${nonce} {"type":"ready"}`
//             once the main module is imported (or a failed result with phase "init")
//   stdin  2: `{"data":...,"env":{...},"context":{"executionId","environmentId","timeoutMs"}}`
//   stdout  : `${nonce} {"type":"result","ok":...}`, exactly once; the process exits once stdin
//             closes (at once for a failed init or a bad event line)
// Any stdout line without the nonce is raw output of the user's code. The nonce lives only in
// this module's closure, so user code can neither read it nor forge a frame.
//
// Everything the protocol needs is captured when this module is evaluated, which is before the
// entry's own code and long before user code runs, so code that replaces globals or prototype
// methods cannot break it. The host's functions are captured by the entry the same way.

/** What a runtime gives the runner; every function must be captured before user code runs. */
export interface RunnerHost {
  /** Writes bytes to stdout synchronously (blocking); returns how many were written. */
  writeStdout(bytes: Uint8Array): number;
  /**
   * The next chunk of stdin, or null at end of input. The chunk only needs to stay valid until
   * the next call: it is copied at once.
   */
  readStdin(): Promise<Uint8Array | null>;
  /** The runtime's own console formatting of a value, without colours. */
  inspect(value: unknown): string;
  /** Ends the process at once with this exit code. */
  exit(code: number): never;
  /** Sets a variable in the process environment, where the handler's runtime APIs see it. */
  setEnv(name: string, value: string): void;
  /**
   * Calls `listener` with what was thrown for every uncaught exception and unhandled rejection
   * from now on, instead of the runtime's default (printing it and exiting).
   */
  onUncaught(listener: (thrown: unknown) => void): void;
  /** The runner's first argument: the main module, relative to /code. */
  mainModule: string | undefined;
}

/** `fn` as a plain function taking its `this` first, immune to later prototype changes. */
export const uncurry = <T, A extends unknown[], R>(fn: (this: T, ...args: A) => R) =>
  Function.prototype.call.bind(fn) as (self: T, ...args: A) => R;

const stringify = JSON.stringify;
const parse = JSON.parse;
const dateNow = Date.now;
const encode = uncurry(TextEncoder.prototype.encode).bind(null, new TextEncoder());
const decoder = new TextDecoder();
const decode = uncurry(TextDecoder.prototype.decode).bind(null, decoder) as (
  bytes: Uint8Array,
) => string;
const Uint8ArrayCtor = Uint8Array;
const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const getter = <R>(name: string) =>
  uncurry(Object.getOwnPropertyDescriptor(typedArrayPrototype, name)!.get as (this: unknown) => R);
const byteLength = getter<number>('length') as (self: Uint8Array) => number;
const bufferOf = getter<ArrayBuffer>('buffer') as (self: Uint8Array) => ArrayBuffer;
const byteOffsetOf = getter<number>('byteOffset') as (self: Uint8Array) => number;
const indexOf = uncurry(Uint8Array.prototype.indexOf) as (
  self: Uint8Array,
  value: number,
  from?: number,
) => number;
const setBytes = uncurry(Uint8Array.prototype.set) as (
  self: Uint8Array,
  source: Uint8Array,
  offset: number,
) => void;
/**
 * Bytes `start` to `end` of `bytes`, as a new view of the same memory. Not subarray(): that
 * builds its result through `constructor[Symbol.species]`, which user code can replace to be
 * handed the underlying buffer, and with it the nonce.
 */
const view = (bytes: Uint8Array, start: number, end = byteLength(bytes)) =>
  new Uint8ArrayCtor(bufferOf(bytes), byteOffsetOf(bytes) + start, end - start);
const stringSlice = uncurry(String.prototype.slice);
const stringCharAt = uncurry(String.prototype.charAt);
const stringIndexOf = uncurry(String.prototype.indexOf);
const stringReplaceAll = uncurry(String.prototype.replaceAll) as unknown as (
  self: string,
  search: string,
  replacement: string,
) => string;
const ObjectCreate = Object.create;
const mathRound = Math.round;
const performanceNow = performance.now.bind(performance);
const errorStackOf = (value: Error) => value.stack;
const objectKeys = Object.keys;
const ErrorCtor = Error;
const NumberCtor = Number;
const StringCtor = String;
const URLCtor = URL;
const isFinite = Number.isFinite;

// The host's members, copied once by startRunner.
let writeStdout: RunnerHost['writeStdout'];
let readStdin: RunnerHost['readStdin'];
let inspect: RunnerHost['inspect'];
let exit: RunnerHost['exit'];
let setEnv: RunnerHost['setEnv'];
let onUncaughtHost: RunnerHost['onUncaught'];
let mainModuleArg: RunnerHost['mainModule'];

// --- stdout --------------------------------------------------------------------------------

function writeAll(bytes: Uint8Array): void {
  const length = byteLength(bytes);
  let offset = 0;
  while (offset < length) offset += writeStdout(offset === 0 ? bytes : view(bytes, offset));
}

let nonce = '';
/** Frames are assembled as text from JSON-encoded primitives, so a toJSON that user code puts on
 * Object.prototype cannot change them. */
function writeFrame(json: string): void {
  writeAll(encode(nonce + ' ' + json + '\n'));
}

// --- stdin ---------------------------------------------------------------------------------

let pending: Uint8Array = new Uint8ArrayCtor(0);
let stdinClosed = false;

/** The next line of stdin without its newline, or undefined at end of input. */
async function readLine(): Promise<string | undefined> {
  for (;;) {
    const newline = indexOf(pending, 0x0a);
    if (newline !== -1) {
      const line = decode(view(pending, 0, newline));
      pending = view(pending, newline + 1);
      return line;
    }
    if (stdinClosed) return undefined;
    const chunk = await readStdin();
    if (chunk === null) {
      stdinClosed = true;
      if (byteLength(pending) === 0) return undefined;
      const line = decode(pending);
      pending = new Uint8ArrayCtor(0);
      return line;
    }
    const kept = byteLength(pending);
    const joined = new Uint8ArrayCtor(kept + byteLength(chunk));
    setBytes(joined, pending, 0);
    setBytes(joined, chunk, kept);
    pending = joined;
  }
}

// --- formatting ----------------------------------------------------------------------------

function show(value: unknown): string {
  if (typeof value === 'string') return value;
  return inspectAlways(value);
}

/** console-style formatting: printf-like substitutions in a leading string, then the rest. */
function format(args: unknown[]): string {
  let out = '';
  let next = 0;
  const first = args[0];
  if (typeof first === 'string') {
    next = 1;
    for (let i = 0; i < first.length; i++) {
      const char = stringCharAt(first, i);
      const spec = stringCharAt(first, i + 1);
      if (char !== '%' || spec === '') {
        out += char;
        continue;
      }
      if (spec === '%') {
        out += '%';
        i++;
      } else if (next < args.length && stringIndexOf('sdifoOjc', spec) !== -1) {
        const arg = args[next++];
        if (spec === 's') out += show(arg);
        else if (spec === 'd' || spec === 'i') {
          const n = typeof arg === 'bigint' ? arg : NumberCtor(arg);
          out += spec === 'i' && typeof n === 'number' && isFinite(n) ? StringCtor(n | 0) : show(n);
        } else if (spec === 'f') out += show(NumberCtor(arg));
        else if (spec === 'c') out += '';
        else out += spec === 'j' ? safeStringify(arg) : inspectAlways(arg);
        i++;
      } else {
        out += char;
      }
    }
  }
  for (; next < args.length; next++) {
    out += (out === '' && next === 0 ? '' : ' ') + show(args[next]);
  }
  return out;
}

function inspectAlways(value: unknown): string {
  try {
    return inspect(value);
  } catch {
    return '[uninspectable]';
  }
}

function safeStringify(value: unknown): string {
  try {
    return StringCtor(stringify(value));
  } catch {
    return '[Circular]';
  }
}

// --- console -------------------------------------------------------------------------------

type Level = 'debug' | 'info' | 'warn' | 'error';

let indent = '';

function log(level: Level, message: string): void {
  if (indent !== '') message = indent + stringReplaceAll(message, '\n', '\n' + indent);
  writeFrame(
    '{"type":"log","level":"' +
      level +
      '","message":' +
      stringify(message) +
      ',"time":' +
      dateNow() +
      '}',
  );
}

/** The caller's stack: the lines after "Error" and the console method's own frame. */
function callerStack(): string {
  let stack = errorStackOf(new ErrorCtor()) ?? '';
  for (let i = 0; i < 2; i++) stack = stringSlice(stack, stringIndexOf(stack, '\n') + 1);
  return stack;
}

/** Replaces the console so every call becomes a log frame, including count, time, assert and group. */
function installConsole(): void {
  const target = globalThis.console as unknown as Record<string, unknown>;
  const counts: Record<string, number> = ObjectCreate(null);
  const timers: Record<string, number> = ObjectCreate(null);
  const label = (value: unknown) => (value === undefined ? 'default' : StringCtor(value));
  const elapsed = (name: string) => {
    const ms = performanceNow() - timers[name]!;
    return (
      name + ': ' + (ms < 1000 ? mathRound(ms * 1000) / 1000 + 'ms' : mathRound(ms) / 1000 + 's')
    );
  };

  target.log = (...args: unknown[]) => log('info', format(args));
  target.info = (...args: unknown[]) => log('info', format(args));
  target.debug = (...args: unknown[]) => log('debug', format(args));
  target.warn = (...args: unknown[]) => log('warn', format(args));
  target.error = (...args: unknown[]) => log('error', format(args));
  target.dir = (value: unknown) => log('info', inspectAlways(value));
  target.dirxml = (...args: unknown[]) => log('info', format(args));
  target.table = (...args: unknown[]) => log('info', format(args));
  target.trace = (...args: unknown[]) => {
    log('error', 'Trace' + (args.length > 0 ? ': ' + format(args) : '') + '\n' + callerStack());
  };
  target.assert = (condition: unknown, ...args: unknown[]) => {
    if (!condition) log('error', 'Assertion failed' + (args.length > 0 ? ': ' + format(args) : ''));
  };
  target.count = (name?: unknown) => {
    const key = label(name);
    counts[key] = (counts[key] ?? 0) + 1;
    log('info', key + ': ' + counts[key]);
  };
  target.countReset = (name?: unknown) => {
    counts[label(name)] = 0;
  };
  target.time = (name?: unknown) => {
    const key = label(name);
    if (timers[key] !== undefined) return log('warn', "Timer '" + key + "' already exists");
    timers[key] = performanceNow();
  };
  target.timeLog = (name?: unknown, ...args: unknown[]) => {
    const key = label(name);
    if (timers[key] === undefined) return log('warn', "Timer '" + key + "' does not exist");
    log('info', elapsed(key) + (args.length > 0 ? ' ' + format(args) : ''));
  };
  target.timeEnd = (name?: unknown) => {
    const key = label(name);
    if (timers[key] === undefined) return log('warn', "Timer '" + key + "' does not exist");
    log('info', elapsed(key));
    delete timers[key];
  };
  target.group = (...args: unknown[]) => {
    if (args.length > 0) log('info', format(args));
    indent += '  ';
  };
  target.groupCollapsed = target.group;
  target.groupEnd = () => {
    indent = stringSlice(indent, 2);
  };
  // Nothing to show in a log: keep them harmless.
  target.clear = () => {};
  target.profile = () => {};
  target.profileEnd = () => {};
  target.timeStamp = () => {};
}

// --- errors and results --------------------------------------------------------------------

interface ErrorInfo {
  name: string;
  message: string;
  stack: string;
}

function describe(thrown: unknown): ErrorInfo {
  try {
    if (thrown instanceof ErrorCtor) {
      const stack = errorStackOf(thrown);
      return {
        name: StringCtor(thrown.name),
        message: StringCtor(thrown.message),
        stack: typeof stack === 'string' ? stack : '',
      };
    }
  } catch {
    // A hostile getter on the error: fall through to the generic description.
  }
  return { name: 'NonErrorThrown', message: show(thrown), stack: '' };
}

let resultWritten = false;
let ready = false;

/**
 * Writes the one result frame (later calls are ignored) and exits, so timers or servers the
 * handler left behind cannot keep the sandbox alive. After the handler's own result it exits
 * once stdin closes instead: the service closes it (or removes the sandbox) once the outcome is
 * recorded, so that the sandbox's teardown does not compete with that write for the CPU.
 */
function finish(json: string, code: number, untilStdinCloses = false): never {
  if (!resultWritten) {
    resultWritten = true;
    writeFrame(json);
    if (untilStdinCloses) {
      void exitWhenStdinCloses(code);
      return undefined as never;
    }
  }
  return exit(code);
}

async function exitWhenStdinCloses(code: number): Promise<never> {
  while ((await readLine()) !== undefined);
  return exit(code);
}

function errorJson(error: ErrorInfo): string {
  return (
    '{"name":' +
    stringify(error.name) +
    ',"message":' +
    stringify(error.message) +
    ',"stack":' +
    stringify(error.stack) +
    '}'
  );
}

type Phase = 'init' | 'handler' | 'protocol';

function failWith(phase: Phase, error: ErrorInfo): never {
  const handled = phase === 'handler';
  return finish(
    '{"type":"result","ok":false,"phase":"' + phase + '","error":' + errorJson(error) + '}',
    handled ? 0 : 1,
    handled,
  );
}

function fail(phase: Phase, thrown: unknown): never {
  return failWith(phase, describe(thrown));
}

function succeed(value: unknown): never {
  let json: string | undefined;
  try {
    json = stringify(value);
  } catch (error) {
    return failWith('handler', {
      name: 'ResultSerializationError',
      message:
        'the handler returned a value that cannot be serialised to JSON: ' +
        describe(error).message,
      stack: '',
    });
  }
  // undefined, functions and symbols serialise to nothing: the result is null.
  return finish('{"type":"result","ok":true,"value":' + (json ?? 'null') + '}', 0, true);
}

// --- main ----------------------------------------------------------------------------------

function onUncaught(thrown: unknown): void {
  fail(ready ? 'handler' : 'init', thrown);
}

async function main(): Promise<void> {
  const first = await readLine();
  if (first === undefined || first === '') {
    // Without a nonce no frame can be written; the exit code tells the service.
    return exit(2);
  }
  nonce = first;
  installConsole();
  onUncaughtHost(onUncaught);

  if (typeof mainModuleArg !== 'string' || mainModuleArg === '') {
    return fail('init', new ErrorCtor('the runner needs the main module path as its argument'));
  }
  let handler: unknown;
  try {
    const url = new URLCtor(mainModuleArg, 'file:///code/');
    if (url.protocol !== 'file:' || stringSlice(url.pathname, 0, 6) !== '/code/') {
      throw new ErrorCtor(`the main module must be under /code: ${mainModuleArg}`);
    }
    // The first user code runs here.
    const module = (await import(url.href)) as Record<string, unknown>;
    handler = module.handler;
  } catch (error) {
    return fail('init', error);
  }
  if (typeof handler !== 'function') {
    const error = new ErrorCtor(
      `the main module ${mainModuleArg} does not export a function "handler"`,
    );
    error.name = 'HandlerNotFound';
    return fail('init', error);
  }

  ready = true;
  writeFrame('{"type":"ready"}');

  const line = await readLine();
  let request: {
    data?: unknown;
    env?: Record<string, unknown>;
    context?: { executionId?: unknown; environmentId?: unknown; timeoutMs?: unknown };
  };
  try {
    if (line === undefined) throw new ErrorCtor('stdin closed before the event arrived');
    request = parse(line);
    if (typeof request !== 'object' || request === null) {
      throw new ErrorCtor('the event is not an object');
    }
    if (request.env !== undefined && (typeof request.env !== 'object' || request.env === null)) {
      throw new ErrorCtor('the event env is not an object');
    }
    // Index loops, not for-of: user code may have replaced Array.prototype[Symbol.iterator].
    const keys = objectKeys(request.env ?? {});
    for (let i = 0; i < keys.length; i++) setEnv(keys[i]!, StringCtor(request.env![keys[i]!]));
  } catch (error) {
    return fail('protocol', error);
  }

  const env = request.env ?? {};
  const timeoutMs = NumberCtor(request.context?.timeoutMs);
  const deadline = dateNow() + (isFinite(timeoutMs) ? timeoutMs : 0);
  const context = {
    executionId: StringCtor(request.context?.executionId ?? ''),
    environmentId: StringCtor(request.context?.environmentId ?? ''),
    deadline,
    remainingTimeMs: () => deadline - dateNow(),
  };
  const event = { data: request.data ?? null, env };

  let value: unknown;
  try {
    value = await (handler as (event: unknown, context: unknown) => unknown)(event, context);
  } catch (error) {
    return fail('handler', error);
  }
  return succeed(value);
}

/** Runs the protocol with the runtime's `host`: reads the nonce, imports the main module, runs
 * the handler on the event, writes the result and exits when stdin closes. Call it once. */
export function startRunner(host: RunnerHost): void {
  writeStdout = host.writeStdout;
  readStdin = host.readStdin;
  inspect = host.inspect;
  exit = host.exit;
  setEnv = host.setEnv;
  onUncaughtHost = host.onUncaught;
  mainModuleArg = host.mainModule;
  main().catch((error: unknown) => fail(ready ? 'handler' : 'init', error));
}
