/**
 * `labelSelector` and `fieldSelector` query parameters, with the grammar of
 * k8s.io/apimachinery/pkg/labels and fields: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
 * `k notin (a,b)`, `k` (exists), `!k` (does not exist), requirements joined by commas.
 */
import { badRequest } from './status.js';

type Requirement = (labels: Record<string, string>) => boolean;

/** Splits on commas that are not inside parentheses. */
function splitRequirements(selector: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const character of selector) {
    if (character === '(') depth += 1;
    if (character === ')') depth -= 1;
    if (character === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else {
      current += character;
    }
  }
  parts.push(current);
  return parts.map((part) => part.trim()).filter((part) => part.length > 0);
}

function parseRequirement(text: string, selector: string): Requirement {
  const setMatch = /^([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(text);
  if (setMatch) {
    const [, key, operator, rawValues] = setMatch as unknown as [string, string, string, string];
    const values = rawValues.split(',').map((value) => value.trim());
    return operator === 'in'
      ? (labels) => key in labels && values.includes(labels[key] as string)
      : (labels) => !(key in labels) || !values.includes(labels[key] as string);
  }
  const notEqual = /^([^\s!=]+)\s*!=\s*(\S*)$/.exec(text);
  if (notEqual) {
    const [, key, value] = notEqual as unknown as [string, string, string];
    return (labels) => labels[key] !== value;
  }
  const equal = /^([^\s!=]+)\s*==?\s*(\S*)$/.exec(text);
  if (equal) {
    const [, key, value] = equal as unknown as [string, string, string];
    return (labels) => labels[key] === value;
  }
  const notExists = /^!([^\s!=]+)$/.exec(text);
  if (notExists) {
    const key = notExists[1] as string;
    return (labels) => !(key in labels);
  }
  const exists = /^([^\s!=()]+)$/.exec(text);
  if (exists) {
    const key = exists[1] as string;
    return (labels) => key in labels;
  }
  throw badRequest(`unable to parse requirement: "${text}" in selector "${selector}"`);
}

/** Compiles a label selector; an empty or absent selector matches everything. */
export function compileLabelSelector(selector: string | null | undefined): (labels: Record<string, string> | undefined) => boolean {
  if (!selector) return () => true;
  const requirements = splitRequirements(selector).map((text) => parseRequirement(text, selector));
  return (labels) => requirements.every((requirement) => requirement(labels ?? {}));
}

function valueAtPath(object: unknown, path: string): string | undefined {
  let current: unknown = object;
  for (const segment of path.split('.')) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  if (current === undefined || current === null) return undefined;
  return String(current);
}

/**
 * Compiles a field selector (`metadata.name=x,status.phase!=Running`). The real server allows
 * only a few fields per type; the fake evaluates any dotted path, which is a superset.
 */
export function compileFieldSelector(selector: string | null | undefined): (object: unknown) => boolean {
  if (!selector) return () => true;
  const requirements = splitRequirements(selector).map((text) => {
    const match = /^([^!=\s]+)\s*(!=|==|=)\s*(.*)$/.exec(text);
    if (!match) throw badRequest(`invalid field selector: "${text}"`);
    const [, path, operator, value] = match as unknown as [string, string, string, string];
    return (object: unknown) => {
      const actual = valueAtPath(object, path) ?? '';
      return operator === '!=' ? actual !== value : actual === value;
    };
  });
  return (object) => requirements.every((requirement) => requirement(object));
}

/** A `spec.selector` (matchLabels + matchExpressions) as a predicate, like a controller uses it. */
export function compileSelectorObject(selector: {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}): (labels: Record<string, string> | undefined) => boolean {
  return (labels = {}) => {
    for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
      if (labels[key] !== value) return false;
    }
    for (const expression of selector.matchExpressions ?? []) {
      const present = expression.key in labels;
      const value = labels[expression.key];
      const values = expression.values ?? [];
      switch (expression.operator) {
        case 'In':
          if (!present || !values.includes(value as string)) return false;
          break;
        case 'NotIn':
          if (present && values.includes(value as string)) return false;
          break;
        case 'Exists':
          if (!present) return false;
          break;
        case 'DoesNotExist':
          if (present) return false;
          break;
        default:
          return false;
      }
    }
    return true;
  };
}
