import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from '../src/index.js';

const readme = new URL('../../../README.md', import.meta.url);

// The README's curl session must work as written: it runs here against a test stack, with only
// the address swapped.
describe("the README's curl session", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('sets up, executes, lists and deletes', async () => {
    const text = await readFile(readme, 'utf8');
    const script = block(text, 'readme-session').replaceAll('http://localhost:8080', stack.url);
    // From the repository's root, so that `npm run keys` makes the key in this stack's database.
    const { stdout } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', script], {
      timeout: 60_000,
      cwd: new URL('../../..', import.meta.url).pathname,
      env: { ...process.env, TEE_DATABASE_URL: stack.config.databaseUrl },
    });
    expect(stdout).toMatch(/^environment [0-9a-f-]{36}$/m);
    expect(stdout).toContain('"status": "EXECUTION_STATUS_SUCCEEDED"');
    expect(stdout).toMatch(/"result": \{\s*"sum": 42\s*\}/);
    expect(stdout).toContain('"adding 2 40"');
    expect(stdout.trim().endsWith('ENVIRONMENT_STATUS_DELETED')).toBe(true);
  });

  it('runs the three-step code-interpreter exchange of the Sessions section', async () => {
    const text = await readFile(readme, 'utf8');
    const session = block(text, 'readme-session');
    // The setup of the curl session (key, environment), then the code-interpreter block.
    const setup = session.slice(0, session.indexOf('# Execute:'));
    const script = setup + block(text, 'readme-code-interpreter');
    const { stdout } = await promisify(execFile)(
      'bash',
      ['-euo', 'pipefail', '-c', script.replaceAll('http://localhost:8080', stack.url)],
      {
        timeout: 60_000,
        cwd: new URL('../../..', import.meta.url).pathname,
        env: { ...process.env, TEE_DATABASE_URL: stack.config.databaseUrl },
      },
    );
    // The outputs the README shows as comments, in order.
    const shown = [...block(text, 'readme-code-interpreter').matchAll(/^# (\{.*\})$/gm)].map(
      (match) => JSON.parse(match[1]!) as unknown,
    );
    const printed = stdout
      .trim()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as unknown);
    expect(printed).toEqual(shown);
  });
});

function block(text: string, name: string): string {
  const found = new RegExp(
    `<!-- ${name}:start -->\n\`\`\`bash\n([\\s\\S]*?)\`\`\`\n<!-- ${name}:end -->`,
  ).exec(text);
  expect(found, `README has a ${name} block`).not.toBeNull();
  return found![1]!;
}
