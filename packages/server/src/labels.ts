import { invalidArgument } from './errors.js';

const MAX_LABELS = 64;
const MAX_LABEL_VALUE_LENGTH = 256;
// Kubernetes-like label keys: short, plain, and safe to show anywhere.
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9_./-]{0,61}[A-Za-z0-9])?$/;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/** Labels of an environment or a session: InvalidArgument naming the label that is not right. */
export function validateLabels(labels: Record<string, string>): void {
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) {
    throw invalidArgument('labels', `at most ${MAX_LABELS} labels are allowed, got ${keys.length}`);
  }
  for (const key of keys) {
    const field = `labels[${JSON.stringify(key)}]`;
    if (!LABEL_KEY.test(key)) {
      throw invalidArgument(
        field,
        'a key is 1 to 63 letters, digits and _ . / - (starting and ending with a letter or digit)',
      );
    }
    const value = labels[key]!;
    if (value.length > MAX_LABEL_VALUE_LENGTH) {
      throw invalidArgument(field, `is longer than ${MAX_LABEL_VALUE_LENGTH} characters`);
    }
    if (CONTROL_CHARACTER.test(value)) {
      throw invalidArgument(field, 'must not contain control characters');
    }
  }
}
