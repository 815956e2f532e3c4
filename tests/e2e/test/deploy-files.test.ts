import { readFile } from 'node:fs/promises';
import { parser } from '@prometheus-io/lezer-promql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { startTestStack, type TestStack } from '../src/index.js';

const deploy = new URL('../../../deploy/', import.meta.url);
const ALERTS = new URL('prometheus/alerts.yml', deploy);
const PROMETHEUS = new URL('prometheus/prometheus.yml', deploy);
const DASHBOARD = new URL('grafana/assist-tee-dashboard.json', deploy);

/** The alerts the README's table describes: each must stay. */
const REQUIRED_ALERTS = [
  'WarmPoolStarvation',
  'SandboxStartFailures',
  'OutboxBacklogGrowing',
  'ConsumerLag',
  'QuotaRefusalsSpiking',
  'ReaperNotSweeping',
];

interface AlertRule {
  alert?: string;
  record?: string;
  expr?: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface AlertFile {
  groups: { name: string; rules: AlertRule[] }[];
}

interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; refId?: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
}

interface Dashboard {
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown; definition?: string }[] };
}

/** One PromQL expression of the deploy files, and who uses it (for the failure messages). */
interface Query {
  where: string;
  expr: string;
}

/**
 * Every metric name a scrape exports, from its `# TYPE` lines (prom-client prints them for every
 * registered metric, sampled or not), with the series names each type makes.
 */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = match as unknown as [string, string, string];
    if (type === 'histogram') {
      names.add(`${name}_bucket`).add(`${name}_sum`).add(`${name}_count`);
    } else if (type === 'summary') {
      names.add(name).add(`${name}_sum`).add(`${name}_count`);
    } else {
      names.add(name);
    }
  }
  return names;
}

/** Grafana's variables, as something PromQL parses: durations for the intervals, `.*` else. */
function withoutTemplateVariables(expr: string): string {
  return expr
    .replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '5m')
    .replace(/\$\{[^}]+\}|\[\[\w+\]\]|\$\w+/g, '.*');
}

/** A lezer-promql parse of the query: its error nodes' positions and the metric names it reads. */
function analyse(expr: string): { errors: number[]; metrics: string[] } {
  const source = withoutTemplateVariables(expr);
  const text = (node: { from: number; to: number }) => source.slice(node.from, node.to);
  const unquote = (literal: string) => JSON.parse(literal.replace(/^'|'$/g, '"')) as string;
  const errors: number[] = [];
  const metrics: string[] = [];
  parser.parse(source).iterate({
    enter(ref) {
      if (ref.type.isError) errors.push(ref.from);
      const node = ref.node;
      if (ref.name === 'VectorSelector') {
        const identifier = node.getChild('Identifier');
        if (identifier) metrics.push(text(identifier));
      } else if (ref.name === 'UnquotedLabelMatcher' || ref.name === 'QuotedLabelMatcher') {
        // {__name__="x"} names the metric too (a regex matcher names none for certain).
        const label = node.getChild('LabelName') ?? node.getChild('QuotedLabelName');
        const op = node.getChild('MatchOp')?.firstChild;
        const value = node.getChild('StringLiteral');
        if (label && op?.name === 'EqlSingle' && value) {
          const name =
            label.name === 'LabelName' ? text(label) : unquote(text(label.firstChild ?? label));
          if (name === '__name__') metrics.push(unquote(text(value)));
        }
      } else if (ref.name === 'QuotedLabelName' && node.parent?.name === 'LabelMatchers') {
        // {"metric.name"}: a quoted name on its own is the metric's.
        metrics.push(unquote(text(node.firstChild ?? node)));
      }
    },
  });
  return { errors, metrics };
}

async function readAlerts(): Promise<AlertFile> {
  return parseYaml(await readFile(ALERTS, 'utf8')) as AlertFile;
}

async function readDashboard(): Promise<Dashboard> {
  return JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard;
}

/** The dashboard's panels, those in collapsed rows included. */
function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

/** Every alert's and every panel target's expression. */
async function queries(): Promise<Query[]> {
  const alerts = (await readAlerts()).groups.flatMap((group) =>
    group.rules.map((rule) => ({
      where: `alert ${rule.alert ?? rule.record} (group ${group.name})`,
      expr: rule.expr ?? '',
    })),
  );
  const dashboard = await readDashboard();
  const targets = allPanels(dashboard.panels).flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({
      where: `panel "${panel.title}" target ${target.refId}`,
      expr: target.expr ?? '',
    })),
  );
  // label_values(<selector>, label) of the query variables: its selector.
  const variables = dashboard.templating.list.flatMap((variable) => {
    const found = /^label_values\((.+),\s*\w+\)$/.exec(variable.definition ?? '');
    return found ? [{ where: `variable $${variable.name}`, expr: found[1]! }] : [];
  });
  return [...alerts, ...targets, ...variables];
}

describe('the Prometheus and Grafana files in deploy/', () => {
  let stack: TestStack;
  let exported: Set<string>;
  beforeAll(async () => {
    stack = await startTestStack();
    const response = await fetch(`${stack.url}/metrics`);
    expect(response.status).toBe(200);
    exported = exportedNames(await response.text());
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('holds PromQL that parses, in every alert and panel', async () => {
    const all = await queries();
    expect(all.length).toBeGreaterThan(40);
    const problems = all.flatMap(({ where, expr }) => {
      if (expr.trim() === '') return [`${where}: no expr`];
      const { errors, metrics } = analyse(expr);
      return [
        ...errors.map((at) => `${where}: PromQL does not parse at ${at}: ${expr}`),
        ...(metrics.length === 0 ? [`${where}: reads no metric: ${expr}`] : []),
      ];
    });
    expect(problems).toEqual([]);
  });

  it('reads only metrics the processes export', async () => {
    // The check works: the scrape has the RPC histogram's series and Node's metrics.
    expect(exported).toContain('assist_tee_rpc_duration_seconds_bucket');
    expect(exported).toContain('process_cpu_seconds_total');
    const problems = (await queries()).flatMap(({ where, expr }) =>
      [...new Set(analyse(expr).metrics)]
        .filter((metric) => !exported.has(metric))
        .map((metric) => `${where}: ${metric} is not exported by /metrics`),
    );
    expect(problems).toEqual([]);
  });

  it('gives every alert a duration, a severity, a summary and an action', async () => {
    const rules = (await readAlerts()).groups.flatMap((group) => group.rules);
    const names = rules.map((rule) => rule.alert);
    const problems = rules.flatMap((rule) => {
      const where = `alert ${rule.alert}`;
      return [
        ...(rule.alert ? [] : [`a rule without an alert name: ${rule.expr}`]),
        ...(/^\d+[smhdwy]$/.test(rule.for ?? '') ? [] : [`${where}: no valid for: ${rule.for}`]),
        ...(['critical', 'warning', 'info'].includes(rule.labels?.severity ?? '')
          ? []
          : [`${where}: severity is ${rule.labels?.severity}`]),
        ...(['summary', 'description', 'action'] as const)
          .filter((key) => (rule.annotations?.[key] ?? '').trim() === '')
          .map((key) => `${where}: no ${key} annotation`),
      ];
    });
    expect(problems).toEqual([]);
    expect(names.filter((name, i) => names.indexOf(name) !== i)).toEqual([]);
    expect(names).toEqual(expect.arrayContaining(REQUIRED_ALERTS));
  });

  it('has prometheus.yml load the alerts and scrape /metrics', async () => {
    const config = parseYaml(await readFile(PROMETHEUS, 'utf8')) as {
      rule_files?: string[];
      scrape_configs?: { job_name: string; metrics_path?: string; static_configs?: unknown[] }[];
    };
    const ruleFiles = (config.rule_files ?? []).map((file) => new URL(file, PROMETHEUS).href);
    expect(ruleFiles).toContain(ALERTS.href);
    const jobs = config.scrape_configs ?? [];
    expect(jobs.map((job) => job.job_name).sort()).toEqual(
      ['environments', 'execution', 'reaper', 'standalone'].sort(),
    );
    for (const job of jobs) {
      expect(job.metrics_path, `job ${job.job_name}`).toBe('/metrics');
      expect(job.static_configs?.length, `job ${job.job_name}`).toBeGreaterThan(0);
    }
  });

  it('has a dashboard on a chosen Prometheus data source', async () => {
    const dashboard = await readDashboard();
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
    );
    const panels = allPanels(dashboard.panels);
    const ids = panels.map((panel) => panel.id);
    expect(ids.filter((id, i) => id === undefined || ids.indexOf(id) !== i)).toEqual([]);
    const elsewhere = panels
      .filter((panel) => panel.type !== 'row')
      .flatMap((panel) => [panel.datasource, ...(panel.targets ?? []).map((t) => t.datasource)])
      .filter((source) => source?.uid !== '${datasource}');
    expect(elsewhere).toEqual([]);
  });
});
