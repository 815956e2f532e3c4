import { createServer } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@assist-tee/logger';
import { createDockerClient, SandboxDriver } from '../src/index.js';

// What an engine behind a proxy can answer a build with: JSON lines, then something else.
const BUILD_RESPONSE = '{"stream":"Step 1/1 : FROM scratch\\n"}\n<html>502 Bad Gateway</html>\n';

describe('buildImage', () => {
  let dir: string;
  const engine = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(BUILD_RESPONSE);
    });
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tee-build-output-'));
    await new Promise<void>((resolve) => engine.listen(join(dir, 'engine.sock'), resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => engine.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it('fails the build on a line that is not JSON, instead of throwing from a stream listener', async () => {
    const driver = new SandboxDriver({
      docker: createDockerClient({ socketPath: join(dir, 'engine.sock') }),
      logger: createLogger({ level: 'silent' }),
      runtime: 'runsc',
    });
    const context = await mkdtemp(join(dir, 'context-'));
    await writeFile(join(context, 'Dockerfile'), 'FROM scratch\n');
    await expect(
      driver.buildImage({ contextDir: context, tag: 'assist-tee/never:built' }),
    ).rejects.toThrow(
      /building assist-tee\/never:built failed: the engine sent a line that is not JSON: <html>502 Bad Gateway<\/html>\nStep 1\/1/,
    );
  });
});
