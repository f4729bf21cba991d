import type { CommandDefinition } from '../core/commands.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { looksLikeApiKey } from './apikeys.js';

export const REDACTED = '[REDACTED]';

/** Member names whose values are credentials whatever the schema says. */
const SECRET_NAME =
  /(^|[_-])(password|passwd|passphrase|secret|token|api[_-]?key|apikey|authorization|credentials?|private[_-]?key|client[_-]?secret|cookie|session[_-]?id)$/i;

/** Values that look like credentials: bearer headers, JWTs, well-known key formats, PEM blocks. */
const CREDENTIAL_VALUE = [
  /^bearer\s+\S+/i,
  /^basic\s+[A-Za-z0-9+/=]{8,}$/i,
  /^eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*$/,
  /^(sk|pk|rk)[-_](live|test|proj)?[-_]?[A-Za-z0-9]{16,}$/,
  /^(ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}$/,
  /^xox[abprs]-[A-Za-z0-9-]{10,}$/,
  /^AKIA[0-9A-Z]{16}$/,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
];

/**
 * The same shapes anywhere inside a longer text (`use key cmcp_… for the deploy`): each occurrence is
 * replaced, the words around it kept. One pass over the string for all of them.
 */
const CREDENTIAL_IN_TEXT = new RegExp(
  [
    /cmcp_[a-z0-9]{12}_[A-Za-z0-9_-]{43}/,
    /\bbearer\s+[A-Za-z0-9._~+/=-]{8,}/,
    /\bbasic\s+[A-Za-z0-9+/=]{8,}/,
    /\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/,
    /\b(?:sk|pk|rk)[-_](?:live|test|proj)?[-_]?[A-Za-z0-9]{16,}/,
    /\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}/,
    /\bxox[abprs]-[A-Za-z0-9-]{10,}/,
    /\bAKIA[0-9A-Z]{16}\b/,
    /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/,
  ]
    .map((pattern) => pattern.source)
    .join('|'),
  'gi',
);

export function looksLikeCredential(value: string): boolean {
  return looksLikeApiKey(value) || CREDENTIAL_VALUE.some((pattern) => pattern.test(value));
}

/** A string with every credential-shaped part replaced; a string that is one credential as a whole, replaced whole. */
export function redactText(value: string): string {
  if (looksLikeCredential(value)) return REDACTED;
  CREDENTIAL_IN_TEXT.lastIndex = 0;
  return CREDENTIAL_IN_TEXT.test(value) ? value.replace(CREDENTIAL_IN_TEXT, REDACTED) : value;
}

type SecretTree = { [key: string]: SecretTree | true };

/** Collects the members a JSON Schema marks `secret: true` (zod: `.meta({ secret: true })`). */
function secretTree(schema: JsonValue | undefined, depth = 0): SecretTree | true | undefined {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema) || depth > 16) return undefined;
  if (schema.secret === true) return true;
  const tree: SecretTree = {};
  let found = false;
  const properties = schema.properties;
  if (properties && typeof properties === 'object' && !Array.isArray(properties)) {
    for (const [key, child] of Object.entries(properties)) {
      const sub = secretTree(child, depth + 1);
      if (sub) {
        tree[key] = sub;
        found = true;
      }
    }
  }
  for (const key of ['items', 'additionalProperties'] as const) {
    const sub = secretTree(schema[key], depth + 1);
    if (sub) {
      tree['*'] = sub;
      found = true;
    }
  }
  for (const key of ['anyOf', 'oneOf', 'allOf'] as const) {
    const list = schema[key];
    if (!Array.isArray(list)) continue;
    for (const option of list) {
      const sub = secretTree(option, depth + 1);
      if (sub === true) return true;
      if (sub) {
        Object.assign(tree, sub);
        found = true;
      }
    }
  }
  return found ? tree : undefined;
}

function redactValue(value: JsonValue, secrets: SecretTree | undefined): JsonValue {
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    const sub = secrets?.['*'];
    return value.map((item) => (sub === true ? REDACTED : redactValue(item, sub)));
  }
  const out: JsonObject = {};
  for (const [key, child] of Object.entries(value)) {
    const sub = secrets?.[key] ?? secrets?.['*'];
    out[key] = sub === true || SECRET_NAME.test(key) ? REDACTED : redactValue(child, sub);
  }
  return out;
}

/**
 * Redacts command inputs for the audit trail and logs: members the schema marks secret, members named
 * like credentials, and string values shaped like credentials. Secret paths are computed once per
 * command.
 */
export function createRedactor(): (command: CommandDefinition, input: JsonValue) => JsonValue {
  const trees = new WeakMap<CommandDefinition, SecretTree | undefined>();
  return (command, input) => {
    let tree = trees.get(command);
    if (tree === undefined && !trees.has(command)) {
      const found = secretTree(command.inputJsonSchema);
      tree = found === true ? { '*': true } : found;
      trees.set(command, tree);
    }
    return redactValue(input, tree);
  };
}

/** Redacts any JSON value by the name and shape rules alone (for logs of things without a schema). */
export function redactJson(value: JsonValue): JsonValue {
  return redactValue(value, undefined);
}
