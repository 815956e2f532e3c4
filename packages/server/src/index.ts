export * from './errors.js';
export * from './health.js';
export * from './in-flight.js';
export * from './http-server.js';
export * from './pagination.js';
export * from './process.js';
export * from './ids.js';
export * from './sandbox-runtime.js';
