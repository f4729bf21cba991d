/**
 * Tool parameters mirrored into HTTP headers (SEP-2243, 2026-07-28 Streamable HTTP "Schema
 * Extension"): a property annotated `x-mcp-header: Name` travels in the body and as
 * `Mcp-Param-Name`, so load balancers can route by it (a document id, a tenant). The server checks
 * that both agree, and answers 400 with -32020 (HeaderMismatch) when they do not. The SDK does this
 * only for its high-level `McpServer`; coremcp's surface uses the low-level `Server`, so here it is.
 */

/** One annotated property: where it sits in the arguments and the header it is mirrored to. */
export interface ParamHeader {
  path: string[];
  header: string;
  type: 'string' | 'integer' | 'boolean';
}

/** RFC 9110 token: the characters a header name may have. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const PRIMITIVE = new Set(['string', 'integer', 'boolean']);
/** Keywords whose subschemas are not statically reachable through `properties`: no annotation there. */
const UNREACHABLE = [
  'items',
  'prefixItems',
  'contains',
  'additionalProperties',
  'unevaluatedProperties',
  'unevaluatedItems',
  'propertyNames',
  'patternProperties',
  'dependentSchemas',
  'oneOf',
  'anyOf',
  'allOf',
  'not',
  'if',
  'then',
  'else',
  '$defs',
  'definitions',
];
const BY_NAME = new Set(['patternProperties', 'dependentSchemas', '$defs', 'definitions']);

/**
 * The annotated properties of a tool's input schema. Throws a TypeError naming the problem when an
 * annotation breaks the spec's rules (not a primitive, not reachable through `properties` alone, not a
 * token, not unique): clients must drop such a tool, so it must never be served.
 */
export function paramHeaders(tool: string, schema: unknown): ParamHeader[] {
  const found: ParamHeader[] = [];
  const seen = new Set<string>();
  const visit = (node: unknown, path: string[], reachable: boolean): void => {
    if (node === null || typeof node !== 'object') return;
    const s = node as Record<string, unknown>;
    if ('x-mcp-header' in s) {
      const where = path.join('.') || '<root>';
      const name = s['x-mcp-header'];
      if (!reachable || path.length === 0)
        throw new TypeError(
          `tool "${tool}": x-mcp-header at ${where} is not reachable through properties alone`,
        );
      if (typeof name !== 'string' || !TOKEN.test(name))
        throw new TypeError(`tool "${tool}": x-mcp-header at ${where} must be a header-name token`);
      if (typeof s.type !== 'string' || !PRIMITIVE.has(s.type))
        throw new TypeError(
          `tool "${tool}": x-mcp-header at ${where} must be on a string, integer or boolean`,
        );
      if (seen.has(name.toLowerCase()))
        throw new TypeError(`tool "${tool}": x-mcp-header "${name}" is declared twice`);
      seen.add(name.toLowerCase());
      found.push({ path, header: name, type: s.type as ParamHeader['type'] });
    }
    if (s.properties !== null && typeof s.properties === 'object')
      for (const [key, child] of Object.entries(s.properties)) visit(child, [...path, key], reachable);
    for (const keyword of UNREACHABLE) {
      const sub = s[keyword];
      if (sub === undefined) continue;
      const branches = Array.isArray(sub)
        ? sub
        : BY_NAME.has(keyword) && sub !== null && typeof sub === 'object'
          ? Object.values(sub)
          : [sub];
      for (const branch of branches) visit(branch, [...path, `<${keyword}>`], false);
    }
  };
  visit(schema, [], true);
  return found;
}

const SENTINEL_PREFIX = '=?base64?';
const SENTINEL_SUFFIX = '?=';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A header value as the client meant it: `=?base64?…?=` decoded (strictly), anything else as is. */
function decode(value: string): string | undefined {
  if (!value.startsWith(SENTINEL_PREFIX) || !value.endsWith(SENTINEL_SUFFIX)) return value;
  const payload = value.slice(SENTINEL_PREFIX.length, value.length - SENTINEL_SUFFIX.length);
  if (!BASE64.test(payload)) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(payload, 'base64'));
  } catch {
    return undefined;
  }
}

/**
 * Why the `Mcp-Param-*` headers disagree with the arguments, or undefined when they agree. A value
 * the body carries must come with its header; a null or absent one needs none.
 */
export function paramHeaderMismatch(
  declared: readonly ParamHeader[],
  args: unknown,
  header: (name: string) => string | undefined,
): string | undefined {
  for (const param of declared) {
    let value: unknown = args;
    for (const key of param.path)
      value =
        value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') continue;
    const name = `Mcp-Param-${param.header}`;
    const sent = header(name.toLowerCase());
    if (sent === undefined)
      return `the body carries ${param.path.join('.')} but the ${name} header is absent`;
    const decoded = decode(sent);
    if (decoded === undefined) return `the ${name} header carries an invalid Base64 value`;
    const same =
      typeof value === 'number' && /^-?\d+(\.\d+)?$/.test(decoded)
        ? Number(decoded) === value
        : decoded === String(value);
    if (!same) return `the ${name} header does not match ${param.path.join('.')} in the body`;
  }
  return undefined;
}
