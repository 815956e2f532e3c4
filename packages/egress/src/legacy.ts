import { applyScript, listJson } from './nft.js';

/** The iptables chains earlier versions created, hooked into INPUT and DOCKER-USER. */
const LEGACY_CHAINS = new Set(['ASSIST-TEE-INPUT', 'ASSIST-TEE-FORWARD']);
const ATTEMPTS = 3;

interface ListedRule {
  family: string;
  table: string;
  chain: string;
  handle: number;
  expr?: Record<string, { target?: string }>[];
}

/**
 * Removes the chains earlier versions created with iptables (iptables-nft keeps them in the
 * `ip filter` and `ip6 filter` tables) and the jumps to them: their rejects would also refuse
 * what the new ruleset opens. Another process may be removing them at the same time, so a
 * failed attempt is retried on a fresh listing.
 */
export async function removeLegacyChains(): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const commands = await legacyCommands();
    if (commands.length === 0) return;
    try {
      await applyScript(commands);
      return;
    } catch (error) {
      if (attempt === ATTEMPTS) throw error;
    }
  }
}

async function legacyCommands(): Promise<string[]> {
  const commands: string[] = [];
  for (const family of ['ip', 'ip6']) {
    const objects = await listJson(['table', family, 'filter']).catch((error: unknown) => {
      // No iptables rules of that family at all.
      if (String(error).includes('No such file or directory')) return [];
      throw error;
    });
    const jumps = objects
      .map((object) => object.rule as ListedRule | undefined)
      .filter((rule) =>
        rule?.expr?.some((expr) => LEGACY_CHAINS.has(expr.jump?.target ?? expr.goto?.target ?? '')),
      );
    for (const rule of jumps) {
      commands.push(`delete rule ${family} filter ${rule!.chain} handle ${rule!.handle}`);
    }
    for (const object of objects) {
      const name = (object.chain as { name?: string } | undefined)?.name;
      if (name === undefined || !LEGACY_CHAINS.has(name)) continue;
      commands.push(
        `flush chain ${family} filter ${name}`,
        `delete chain ${family} filter ${name}`,
      );
    }
  }
  return commands;
}
