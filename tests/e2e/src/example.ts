/** The README's example: a main module importing a helper, summing event.data.a + event.data.b. */
export const sumExample = {
  modules: {
    'main.ts': [
      "import { add } from './utils.ts';",
      '',
      'export function handler(event: { data: { a: number; b: number } }) {',
      "  console.log('adding', event.data.a, event.data.b);",
      '  return { sum: add(event.data.a, event.data.b) };',
      '}',
      '',
    ].join('\n'),
    'utils.ts': 'export const add = (a: number, b: number): number => a + b;\n',
  },
  mainModule: 'main.ts',
};

/** A one-module environment whose handler body is `body` (it sees `event` and `context`). */
export function handlerModules(body: string): {
  modules: Record<string, string>;
  mainModule: string;
} {
  return {
    modules: {
      'main.ts': `export async function handler(event: any, context: any) {\n${body}\n}\n`,
    },
    mainModule: 'main.ts',
  };
}
