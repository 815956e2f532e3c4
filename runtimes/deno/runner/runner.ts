// The runner: Deno runs this inside the sandbox as `runner.ts <main module>`.
//
// Protocol (stdin/stdout, one line each):
//   stdin  1: a nonce (opaque token)
//   stdout  : `${nonce} {"type":"log",...}` for every console call, then `${nonce} {"type":"ready"}`
//             once the main module is imported (or a failed result with phase "init")
//   stdin  2: `{"data":...,"env":{...},"context":{"executionId","environmentId","timeoutMs"}}`
//   stdout  : `${nonce} {"type":"result","ok":...}`, exactly once, then the process exits.
// Any stdout line without the nonce is raw output of the user's code. The nonce lives only in
// this module's closure, so user code can neither read it nor forge a frame.

// Everything the protocol needs is captured before user code runs, so code that replaces
// globals or prototype methods cannot break it.
const uncurry = <T, A extends unknown[], R>(fn: (this: T, ...args: A) => R) =>
  Function.prototype.call.bind(fn) as (self: T, ...args: A) => R;

const stringify = JSON.stringify;
const parse = JSON.parse;
const dateNow = Date.now;
const encode = uncurry(TextEncoder.prototype.encode).bind(null, new TextEncoder());
const decoder = new TextDecoder();
const decode = uncurry(TextDecoder.prototype.decode).bind(null, decoder) as (
  bytes: Uint8Array,
) => string;
const subarray = uncurry(Uint8Array.prototype.subarray) as (
  self: Uint8Array,
  start: number,
  end?: number,
) => Uint8Array;
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
const stdoutWriteSync = Deno.stdout.writeSync.bind(Deno.stdout);
const stdinRead = Deno.stdin.read.bind(Deno.stdin);
const inspect = Deno.inspect;
const exit = Deno.exit;
const envSet = Deno.env.set.bind(Deno.env);
const errorStackOf = (value: Error) => value.stack;
const addEventListener = globalThis.addEventListener.bind(globalThis);
const preventDefault = uncurry(Event.prototype.preventDefault);
const objectKeys = Object.keys;
const ErrorCtor = Error;
const NumberCtor = Number;
const StringCtor = String;
const isFinite = Number.isFinite;
const mainModuleArg = Deno.args[0];

// --- stdout --------------------------------------------------------------------------------

function writeAll(bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += stdoutWriteSync(subarray(bytes, offset));
}

let nonce = '';
/** Frames are assembled as text from JSON-encoded primitives, so a toJSON that user code puts on
 * Object.prototype cannot change them. */
function writeFrame(json: string): void {
  writeAll(encode(nonce + ' ' + json + '\n'));
}

// --- stdin ---------------------------------------------------------------------------------

let pending: Uint8Array = new Uint8Array(0);
let stdinClosed = false;

/** The next line of stdin without its newline, or undefined at end of input. */
async function readLine(): Promise<string | undefined> {
  const chunk = new Uint8Array(64 * 1024);
  for (;;) {
    const newline = indexOf(pending, 0x0a);
    if (newline !== -1) {
      const line = decode(subarray(pending, 0, newline));
      pending = subarray(pending, newline + 1);
      return line;
    }
    if (stdinClosed) return undefined;
    const read = await stdinRead(chunk);
    if (read === null) {
      stdinClosed = true;
      if (pending.length === 0) return undefined;
      const line = decode(pending);
      pending = new Uint8Array(0);
      return line;
    }
    const joined = new Uint8Array(pending.length + read);
    setBytes(joined, pending, 0);
    setBytes(joined, subarray(chunk, 0, read), pending.length);
    pending = joined;
  }
}

// --- formatting ----------------------------------------------------------------------------

function show(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    return inspect(value, { colors: false });
  } catch {
    return '[uninspectable]';
  }
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
    return inspect(value, { colors: false });
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

/** Writes the one result frame (later calls are ignored) and exits at once, so timers or
 * servers the handler left behind cannot keep the sandbox alive. */
function finish(json: string, code: number): never {
  if (!resultWritten) {
    resultWritten = true;
    writeFrame(json);
  }
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
  return finish(
    '{"type":"result","ok":false,"phase":"' + phase + '","error":' + errorJson(error) + '}',
    phase === 'handler' ? 0 : 1,
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
  return finish('{"type":"result","ok":true,"value":' + (json ?? 'null') + '}', 0);
}

// --- main ----------------------------------------------------------------------------------

function onUncaught(event: Event & { reason?: unknown; error?: unknown }): void {
  preventDefault(event);
  const thrown = 'reason' in event ? event.reason : event.error;
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
  addEventListener('unhandledrejection', onUncaught);
  addEventListener('error', onUncaught);

  if (typeof mainModuleArg !== 'string' || mainModuleArg === '') {
    return fail('init', new ErrorCtor('the runner needs the main module path as its argument'));
  }
  let handler: unknown;
  try {
    const url = new URL(mainModuleArg, 'file:///code/');
    if (url.protocol !== 'file:' || stringSlice(url.pathname, 0, 6) !== '/code/') {
      throw new ErrorCtor(`the main module must be under /code: ${mainModuleArg}`);
    }
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
    for (let i = 0; i < keys.length; i++) envSet(keys[i]!, StringCtor(request.env![keys[i]!]));
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

main().catch((error: unknown) => fail(ready ? 'handler' : 'init', error));
