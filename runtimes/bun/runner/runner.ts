// The Bun runner: Bun runs this inside the sandbox as `/runner/runner.ts <main module>`. The
// protocol lives in ./core.ts (runtimes/core/runner/core.ts, copied next to this file in the
// image); this file only hands it Bun's stdio, console formatting, exit, env, files, module
// resolution and error events.
// Everything is captured here, before the core imports any user code.
import { mkdirSync, writeFileSync, writeSync } from 'node:fs';
import utilTypes from 'node:util/types';
import { type RunnerHost, startRunner } from './core.ts';

// node:fs writeSync is JavaScript in Bun that looks up `isArrayBufferView` on node:util/types at
// each call, passing it the bytes: user code that replaced it would be handed every frame, nonce
// included. Pin it before any user code runs.
Object.defineProperty(utilTypes, 'isArrayBufferView', {
  value: utilTypes.isArrayBufferView,
  writable: false,
  configurable: false,
});

const write = writeSync;
const makeDirectory = mkdirSync;
const writeFile = writeFileSync;
const resolveSync = Bun.resolveSync.bind(Bun);
const bunInspect = Bun.inspect;
const exit = process.exit.bind(process);
const env = process.env;
const on = process.on.bind(process);
// Read through Bun's own stream rather than process.stdin: no Node stream machinery in between.
const stdin = Bun.stdin.stream().getReader();
const read = stdin.read.bind(stdin);
const inspectOptions = Object.freeze({ __proto__: null, colors: false });

const host: RunnerHost = {
  // A blocking write: stdout is a pipe, and a frame must be out before the process exits.
  writeStdout: (bytes) => write(1, bytes),
  writeStderr: (bytes) => write(2, bytes),
  readStdin: async () => {
    const { done, value } = await read();
    return done ? null : value;
  },
  inspect: (value) => bunInspect(value, inspectOptions),
  exit: (code) => exit(code),
  setEnv: (name, value) => {
    env[name] = value;
  },
  unsetEnv: (name) => {
    delete env[name];
  },
  makeDirectory: (path) => void makeDirectory(path, { recursive: true }),
  writeFile: (path, text) => writeFile(path, text),
  // Bun looks for packages in the node_modules above the importing file, and a snippet lives in
  // /tmp: point it at the module the main module would get. Unresolvable stays as written, so
  // the import fails with Bun's own error.
  resolveBare: (specifier, parentDir) => {
    try {
      return resolveSync(specifier, parentDir);
    } catch {
      return specifier;
    }
  },
  onUncaught: (listener) => {
    on('uncaughtException', (error) => listener(error));
    on('unhandledRejection', (reason) => listener(reason));
  },
  mainModule: process.argv[2],
};

startRunner(host);
