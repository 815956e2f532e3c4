import { describe, expect, it } from 'vitest';
import { bunInstallPlan, bunManifest } from '../src/dependencies.js';

describe('the generated package.json', () => {
  it('lists exactly the validated specifiers, and nothing that runs', () => {
    const manifest = JSON.parse(
      bunManifest({ npm: ['ms@2', '@scope/pkg.js@^1.2.0', 'zod'], url: [] }),
    ) as Record<string, unknown>;
    expect(manifest).toEqual({
      name: 'assist-tee-environment',
      private: true,
      dependencies: { ms: '2', '@scope/pkg.js': '^1.2.0', zod: 'latest' },
    });
  });

  it('is the one file the install starts from, installed without scripts', () => {
    const plan = bunInstallPlan({ npm: ['ms@2'], url: [] }, '/runner/bunfig.toml');
    expect(plan.files.map((file) => file.path)).toEqual(['package.json']);
    expect(plan.install).toEqual(
      expect.arrayContaining(['--config=/runner/bunfig.toml', 'install', '--ignore-scripts']),
    );
  });
});
