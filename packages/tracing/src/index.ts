export * from './spans.js';
export * from './tracing.js';
