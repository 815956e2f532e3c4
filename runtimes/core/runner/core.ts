// The runtime-agnostic core of the runner. Each runtime's entry (runtimes/<runtime>/runner/runner.ts)
// imports this module, captures what it needs from its own runtime, and calls `startRunner(host)`.
// In the image both live in /runner: the entry at /runner/runner.ts, this file at /runner/core.ts.
// The entry runs as `runner.ts <main module>`.
//
// The protocol is ../src/runner-protocol.ts (only its types are imported: the image holds no
// copy of it). In short: the nonce line, log frames, `ready` once the main module is imported
// (or a failed result with run 0 and phase "init", and exit 1), then one result per RunMessage
// line, in order, each followed by a `flushed` mark on stderr, until stdin closes (exit 0). A bad line fails with phase "protocol" and exit 1.
// Any stdout line without the nonce is raw output of the user's code. The nonce lives only in
// this module's closure, so user code can neither read it nor forge a frame.
//
// One process serves many runs (a session): module scope, globalThis and /tmp persist between
// them. A snippet run is a module sent as text: it is written to /tmp and imported.
//
// Everything the protocol needs is captured when this module is evaluated, which is before the
// entry's own code and long before user code runs, so code that replaces globals or prototype
// methods cannot break it. The host's functions are captured by the entry the same way.
import type {
  FailurePhase,
  RunnerError,
  RunnerFrame,
  RunnerLogLevel,
  SnippetImport,
} from '../src/runner-protocol.ts';

/** What a runtime gives the runner; every function must be captured before user code runs. */
export interface RunnerHost {
  /** Writes bytes to stdout synchronously (blocking); returns how many were written. */
  writeStdout(bytes: Uint8Array): number;
  /** The same for stderr. */
  writeStderr(bytes: Uint8Array): number;
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
  /** Removes a variable from the process environment. */
  unsetEnv(name: string): void;
  /** Creates a directory and its parents (no error if it exists). */
  makeDirectory(path: string): void;
  /** Writes a text file (replacing it), synchronously. */
  writeFile(path: string, text: string): void;
  /**
   * What a bare import specifier (`lodash`, `@scope/pkg/sub`) of the main module, in directory
   * `parentDir`, should become in a snippet that lives elsewhere: the specifier itself where the
   * runtime resolves it the same from anywhere, else the module's absolute path.
   */
  resolveBare(specifier: string, parentDir: string): string;
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
const setPrototypeOf = Object.setPrototypeOf;
const hasOwn = Object.hasOwn;
const isArray = Array.isArray;
const isSafeInteger = Number.isSafeInteger;
const decodeURIComponentOf = decodeURIComponent;
const PromiseCtor = Promise;
const mathRound = Math.round;
const performanceNow = performance.now.bind(performance);
const errorStackOf = (value: Error) => value.stack;
const objectKeys = Object.keys;
const ErrorCtor = Error;
const NumberCtor = Number;
const StringCtor = String;
const URLCtor = URL;
// Snippets resolve their imports after user code ran: URL's own getters, not what is there then.
const urlGetter = (name: string) =>
  uncurry(Object.getOwnPropertyDescriptor(URL.prototype, name)!.get as (this: URL) => string);
const hrefOf = urlGetter('href');
const pathnameOf = urlGetter('pathname');
const isFinite = Number.isFinite;

// The host's members, copied once by startRunner.
let writeStdout: RunnerHost['writeStdout'];
let writeStderr: RunnerHost['writeStderr'];
let readStdin: RunnerHost['readStdin'];
let inspect: RunnerHost['inspect'];
let exit: RunnerHost['exit'];
let setEnv: RunnerHost['setEnv'];
let unsetEnv: RunnerHost['unsetEnv'];
let makeDirectory: RunnerHost['makeDirectory'];
let writeFile: RunnerHost['writeFile'];
let resolveBare: RunnerHost['resolveBare'];
let onUncaughtHost: RunnerHost['onUncaught'];
let mainModuleArg: RunnerHost['mainModule'];

// --- stdout --------------------------------------------------------------------------------

function writeAll(bytes: Uint8Array, write = writeStdout): void {
  const length = byteLength(bytes);
  let offset = 0;
  while (offset < length) offset += write(offset === 0 ? bytes : view(bytes, offset));
}

/** `fields` without a prototype: a toJSON (or anything else) that user code puts on
 * Object.prototype does not reach it. Literals define their properties without setters. */
function bare<T extends object>(fields: T): T {
  return setPrototypeOf(fields, null) as T;
}

let nonce = '';
/** Writes a frame built with bare() (every object in it our own), under the nonce. */
function writeFrame(frame: RunnerFrame, write = writeStdout): void {
  writeAll(encode(nonce + ' ' + stringify(frame) + '\n'), write);
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

let indent = '';

function log(level: RunnerLogLevel, message: string): void {
  if (indent !== '') message = indent + stringReplaceAll(message, '\n', '\n' + indent);
  writeFrame(bare({ type: 'log', level, message, time: dateNow() }));
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

function describe(thrown: unknown): RunnerError {
  try {
    if (thrown instanceof ErrorCtor) {
      const stack = errorStackOf(thrown);
      return bare({
        name: StringCtor(thrown.name),
        message: StringCtor(thrown.message),
        stack: typeof stack === 'string' ? stack : '',
      });
    }
  } catch {
    // A hostile getter on the error: fall through to the generic description.
  }
  return bare({ name: 'NonErrorThrown', message: show(thrown), stack: '' });
}

let ready = false;
/** The run in progress, 0 between runs: a result for any other run is late and dropped. */
let currentRun = 0;
/** Resolves the main loop's wait for the current run. */
let runSettled: (() => void) | undefined;

/**
 * Writes the result of `run` if it is still the current one (once), and ends the run. A value
 * that does not serialise fails the run instead.
 */
function settle(run: number, frame: RunnerFrame): void {
  if (run === 0 || run !== currentRun) return;
  let json: string;
  try {
    json = stringify(frame);
  } catch (error) {
    json = stringify(
      failure(
        run,
        'handler',
        bare({
          name: 'ResultSerializationError',
          message:
            'the handler returned a value that cannot be serialised to JSON: ' +
            describe(error).message,
          stack: '',
        }),
      ),
    );
  }
  currentRun = 0;
  const wake = runSettled;
  runSettled = undefined;
  try {
    writeAll(encode(nonce + ' ' + json + '\n'));
    // After everything the run wrote to stderr (see the protocol): the host waits for it. A
    // run that closed stderr can write nothing more there, so stdout carries the mark.
    const flushed = bare({ type: 'flushed', run }) as RunnerFrame;
    try {
      writeFrame(flushed, writeStderr);
    } catch {
      writeFrame(flushed);
    }
  } finally {
    wake?.();
  }
}

function failure(run: number, phase: FailurePhase, error: RunnerError): RunnerFrame {
  return bare({ type: 'result', run, ok: false, phase, error });
}

function success(run: number, value: unknown): RunnerFrame {
  // undefined, functions and symbols serialise to nothing: the result is null.
  const kind = typeof value;
  const known = kind !== 'undefined' && kind !== 'function' && kind !== 'symbol';
  return bare({ type: 'result', run, ok: true, value: known ? value : null });
}

/** Fails the process, not a run: writes the result and exits at once. */
function abort(run: number, phase: 'init' | 'protocol', thrown: unknown): never {
  writeFrame(failure(run, phase, describe(thrown)));
  return exit(1);
}

// --- run messages --------------------------------------------------------------------------

/** `record[key]` if it is the record's own, so nothing user code put on Object.prototype leaks in. */
function own(record: unknown, key: string): unknown {
  return typeof record === 'object' && record !== null && hasOwn(record, key)
    ? (record as Record<string, unknown>)[key]
    : undefined;
}

function protocolError(message: string): Error {
  const error = new ErrorCtor(message);
  error.name = 'ProtocolError';
  return error;
}

interface Run {
  id: number;
  /** What the process environment gets (a copy without a prototype). */
  env: Record<string, string>;
  /** What the handler's event gets: the message's own object. */
  eventEnv: object;
  context: { executionId: string; environmentId: string; sessionId: string; timeoutMs: number };
  work:
    | { kind: 'handler'; data: unknown }
    | { kind: 'snippet'; code: string; imports: SnippetImport[] };
}

let lastRun = 0;

/** The run a line asks for; throws with `readId` set to the id if it was readable. */
function parseRun(line: string, readId: (id: number) => void): Run {
  const message: unknown = parse(line);
  if (typeof message !== 'object' || message === null || own(message, 'type') !== 'run') {
    throw protocolError('the line is not a run message');
  }
  const id = own(message, 'id');
  if (typeof id !== 'number' || !isSafeInteger(id) || id <= 0) {
    throw protocolError('the run id is not a positive integer');
  }
  readId(id);
  // A snippet's module URL carries the id: a repeated one would import the cached module.
  if (id <= lastRun) throw protocolError(`run ${id} does not follow run ${lastRun}`);
  lastRun = id;

  const rawEnv = own(message, 'env');
  if (typeof rawEnv !== 'object' || rawEnv === null) throw protocolError('env is not an object');
  const env: Record<string, string> = ObjectCreate(null);
  // Index loops, not for-of: user code may have replaced Array.prototype[Symbol.iterator].
  const names = objectKeys(rawEnv);
  for (let i = 0; i < names.length; i++) env[names[i]!] = StringCtor(own(rawEnv, names[i]!));

  const rawContext = own(message, 'context');
  const timeoutMs = NumberCtor(own(rawContext, 'timeoutMs'));
  const context = {
    executionId: StringCtor(own(rawContext, 'executionId') ?? ''),
    environmentId: StringCtor(own(rawContext, 'environmentId') ?? ''),
    sessionId: StringCtor(own(rawContext, 'sessionId') ?? ''),
    timeoutMs: isFinite(timeoutMs) ? timeoutMs : 0,
  };

  const kind = own(message, 'kind');
  if (kind === 'handler') {
    return {
      id,
      env,
      eventEnv: rawEnv,
      context,
      work: { kind, data: own(message, 'data') ?? null },
    };
  }
  if (kind !== 'snippet') throw protocolError('kind is neither "handler" nor "snippet"');
  const code = own(message, 'code');
  const rawImports = own(message, 'imports');
  if (typeof code !== 'string') throw protocolError('the snippet code is not a string');
  if (!isArray(rawImports)) throw protocolError('the snippet imports are not an array');
  // No prototype: a setter user code put on Array.prototype cannot see the entries.
  const imports = bare([] as SnippetImport[]);
  let end = code.length;
  // From the last import back: the code is rewritten in that order, so positions stay valid.
  for (let i = rawImports.length - 1; i >= 0; i--) {
    const entry = rawImports[i] as unknown;
    const start = own(entry, 'start');
    const stop = own(entry, 'end');
    const specifier = own(entry, 'specifier');
    if (
      typeof start !== 'number' ||
      typeof stop !== 'number' ||
      typeof specifier !== 'string' ||
      !(start >= 0 && start <= stop && stop <= end) ||
      stringSlice(code, start, stop) !== specifier
    ) {
      throw protocolError(`snippet import ${i} does not match the code`);
    }
    imports[imports.length] = { start, end: stop, specifier };
    end = start;
  }
  return { id, env, eventEnv: rawEnv, context, work: { kind, code, imports } };
}

/** The names the previous run set: unset before the next one. */
let envNames: string[] = [];

function applyEnv(env: Record<string, string>): void {
  for (let i = 0; i < envNames.length; i++) unsetEnv(envNames[i]!);
  envNames = objectKeys(env);
  for (let i = 0; i < envNames.length; i++) setEnv(envNames[i]!, env[envNames[i]!]!);
}

// --- snippets ------------------------------------------------------------------------------

const SNIPPET_DIR = '/tmp/.assist-tee';
let snippetDirMade = false;
/** The main module's URL (file:///code/...), set once it is imported. */
let mainUrl = '';

/** Whether `specifier` starts with a URL scheme (`node:`, `npm:`, `file:`, `https:`). */
function hasScheme(specifier: string): boolean {
  for (let i = 0; i < specifier.length; i++) {
    const char = stringCharAt(specifier, i);
    if (char === ':') return i > 0;
    const letter = (char >= 'a' && char <= 'z') || (char >= 'A' && char <= 'Z');
    if (
      !letter &&
      (i === 0 || !((char >= '0' && char <= '9') || char === '+' || char === '.' || char === '-'))
    ) {
      return false;
    }
  }
  return false;
}

/** What an import of the main module's directory becomes in a snippet that lives in /tmp. */
function rewriteSpecifier(specifier: string): string {
  if (
    stringSlice(specifier, 0, 2) === './' ||
    stringSlice(specifier, 0, 3) === '../' ||
    specifier === '.' ||
    specifier === '..'
  ) {
    return hrefOf(new URLCtor(specifier, mainUrl));
  }
  if (stringCharAt(specifier, 0) === '/' || hasScheme(specifier)) return specifier;
  const directory = decodeURIComponentOf(pathnameOf(new URLCtor('.', mainUrl)));
  return resolveBare(specifier, stringSlice(directory, 0, directory.length - 1));
}

/** Writes the snippet to /tmp, its imports rewritten, and imports it: its default export's value. */
async function evaluateSnippet(id: number, code: string, imports: SnippetImport[]) {
  // `imports` runs from the last one back (see parseRun).
  for (let i = 0; i < imports.length; i++) {
    const { start, end, specifier } = imports[i]!;
    code = stringSlice(code, 0, start) + rewriteSpecifier(specifier) + stringSlice(code, end);
  }
  if (!snippetDirMade) {
    makeDirectory(SNIPPET_DIR);
    snippetDirMade = true;
  }
  const path = SNIPPET_DIR + '/snippet-' + id + '.ts';
  writeFile(path, code);
  const module = (await import('file://' + path)) as Record<string, unknown>;
  return await module.default;
}

// --- main ----------------------------------------------------------------------------------

type Handler = (event: unknown, context: unknown) => unknown;

/** Performs one run and settles it; never throws. */
async function perform(run: Run, handler: Handler): Promise<void> {
  let value: unknown;
  try {
    applyEnv(run.env);
    const deadline = dateNow() + run.context.timeoutMs;
    const context = {
      executionId: run.context.executionId,
      environmentId: run.context.environmentId,
      sessionId: run.context.sessionId,
      deadline,
      remainingTimeMs: () => deadline - dateNow(),
    };
    const { work } = run;
    value =
      work.kind === 'handler'
        ? await handler({ data: work.data, env: run.eventEnv }, context)
        : await evaluateSnippet(run.id, work.code, work.imports);
  } catch (error) {
    return settle(run.id, failure(run.id, 'handler', describe(error)));
  }
  settle(run.id, success(run.id, value));
}

function onUncaught(thrown: unknown): void {
  if (!ready) return abort(0, 'init', thrown);
  if (currentRun !== 0) return settle(currentRun, failure(currentRun, 'handler', describe(thrown)));
  // Left behind by an earlier run (a timer, a floating promise): no run to fail.
  const error = describe(thrown);
  log('error', 'Uncaught (between calls): ' + error.name + ': ' + error.message);
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
    return abort(0, 'init', new ErrorCtor('the runner needs the main module path as its argument'));
  }
  let handler: unknown;
  try {
    const url = new URLCtor(mainModuleArg, 'file:///code/');
    if (url.protocol !== 'file:' || stringSlice(url.pathname, 0, 6) !== '/code/') {
      throw new ErrorCtor(`the main module must be under /code: ${mainModuleArg}`);
    }
    mainUrl = url.href;
    // The first user code runs here.
    const module = (await import(mainUrl)) as Record<string, unknown>;
    handler = module.handler;
  } catch (error) {
    return abort(0, 'init', error);
  }
  if (typeof handler !== 'function') {
    const error = new ErrorCtor(
      `the main module ${mainModuleArg} does not export a function "handler"`,
    );
    error.name = 'HandlerNotFound';
    return abort(0, 'init', error);
  }

  ready = true;
  writeFrame(bare({ type: 'ready' }));

  for (;;) {
    const line = await readLine();
    // The service closes stdin when it is done with the sandbox; timers or servers that
    // runs left behind must not keep it alive.
    if (line === undefined) return exit(0);
    let id = 0;
    let run: Run;
    try {
      run = parseRun(line, (readId) => (id = readId));
    } catch (error) {
      return abort(id, 'protocol', error);
    }
    const settled = new PromiseCtor<void>((resolve) => (runSettled = resolve));
    currentRun = run.id;
    void perform(run, handler as Handler);
    await settled;
  }
}

/** Runs the protocol with the runtime's `host`: reads the nonce, imports the main module, then
 * serves runs until stdin closes. Call it once. */
export function startRunner(host: RunnerHost): void {
  writeStdout = host.writeStdout;
  writeStderr = host.writeStderr;
  readStdin = host.readStdin;
  inspect = host.inspect;
  exit = host.exit;
  setEnv = host.setEnv;
  unsetEnv = host.unsetEnv;
  makeDirectory = host.makeDirectory;
  writeFile = host.writeFile;
  resolveBare = host.resolveBare;
  onUncaughtHost = host.onUncaught;
  mainModuleArg = host.mainModule;
  main().catch((error: unknown) => {
    if (!ready) abort(0, 'init', error);
    else if (currentRun !== 0) settle(currentRun, failure(currentRun, 'handler', describe(error)));
    else abort(0, 'protocol', error);
  });
}
