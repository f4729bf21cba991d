import { createPublicKey } from 'node:crypto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  importSPKI,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { z } from 'zod';
import type { AuthenticationResult, Authenticator, Principal } from '../core/access.js';
import { looksLikeApiKey } from './apikeys.js';

/** Asymmetric algorithms only: a shared secret would let every verifier mint tokens. */
export const JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];

export const jwtConfigSchema = z.strictObject({
  /** Required `iss`. */
  issuer: z.string().min(1).max(2000),
  /** Required `aud`: this server's resource URL (RFC 8707), e.g. https://mcp.example.com/mcp. */
  audience: z.string().min(1).max(2000),
  /** Where the issuer publishes its keys. One of `jwksUrl`, `jwks`, `publicKey` is needed. */
  jwksUrl: z.url({ protocol: /^https?$/ }).optional(),
  /** The key set itself (for issuers whose keys are configured by hand). */
  jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1).max(100) }).optional(),
  /** One public key as PEM (SPKI). */
  publicKey: z.string().min(1).max(20_000).optional(),
  /** Claim holding the roles: a dotted path (default `roles`; e.g. `realm_access.roles`). */
  rolesClaim: z
    .string()
    .regex(/^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$/)
    .max(200)
    .optional(),
  /** Roles of a token that names none of the known roles (default: refuse the token). */
  defaultRoles: z.array(z.string().min(1).max(64)).max(20).optional(),
  /** Allowed clock difference for `exp` and `nbf`, in seconds (default 30, at most 300). */
  clockToleranceSeconds: z.number().int().min(0).max(300).optional(),
  /** Algorithms accepted (default: the asymmetric ones). */
  algorithms: z
    .array(z.enum(JWT_ALGORITHMS as [string, ...string[]]))
    .min(1)
    .optional(),
});

export type JwtConfig = z.infer<typeof jwtConfigSchema>;

type PublicKey = Awaited<ReturnType<typeof importSPKI>>;

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Why a token was refused: a bounded set, for logs and metrics; the client only learns "invalid". */
function reasonOf(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'expired';
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'aud') return 'wrong_audience';
    if (error.claim === 'iss') return 'wrong_issuer';
    if (error.claim === 'nbf') return 'not_yet_valid';
    return 'bad_claims';
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature';
  if (error instanceof errors.JOSEAlgNotAllowed) return 'algorithm_not_allowed';
  if (error instanceof errors.JWKSNoMatchingKey) return 'unknown_signing_key';
  if (error instanceof errors.JWKSTimeout) return 'jwks_unavailable';
  if (error instanceof errors.JOSEError) return 'malformed';
  // Anything else comes from fetching the key set (network, HTTP status, bad JSON).
  return 'jwks_unavailable';
}

function claimAt(payload: JWTPayload, path: string): unknown {
  let node: unknown = payload;
  for (const part of path.split('.')) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/**
 * Bearer JWTs from an OAuth authorization server: signature checked against the issuer's keys,
 * `iss` and `aud` required and matched, `exp`/`nbf` enforced within a bounded clock skew, roles read
 * from a configured claim and kept only when the server knows them. The token is used here and
 * nowhere else: it is never forwarded, logged or stored.
 */
export class JwtAuthenticator implements Authenticator {
  readonly #config: JwtConfig;
  readonly #keys: JWTVerifyGetKey | PublicKey;
  readonly #knownRoles: ReadonlySet<string>;

  private constructor(config: JwtConfig, keys: JWTVerifyGetKey | PublicKey, knownRoles: Iterable<string>) {
    this.#config = config;
    this.#keys = keys;
    this.#knownRoles = new Set(knownRoles);
  }

  /** `knownRoles`: the roles the server defines; others in a token are ignored. */
  static async create(config: JwtConfig, knownRoles: Iterable<string>): Promise<JwtAuthenticator> {
    const parsed = jwtConfigSchema.parse(config);
    const sources = [parsed.jwksUrl, parsed.jwks, parsed.publicKey].filter((s) => s !== undefined);
    if (sources.length !== 1) throw new TypeError('auth.jwt needs exactly one of jwksUrl, jwks, publicKey');
    let keys: JWTVerifyGetKey | PublicKey;
    if (parsed.jwksUrl) {
      keys = createRemoteJWKSet(new URL(parsed.jwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000 });
    } else if (parsed.jwks) {
      keys = createLocalJWKSet(parsed.jwks as unknown as JSONWebKeySet);
    } else {
      const algorithm = parsed.algorithms?.[0] ?? algorithmOfPem(parsed.publicKey!);
      keys = await importSPKI(parsed.publicKey!, algorithm);
    }
    return new JwtAuthenticator(parsed, keys, knownRoles);
  }

  /** Whether a credential has the shape of a JWT (three base64url parts); says nothing of validity. */
  static looksLikeJwt(credential: string): boolean {
    return credential.length <= 16_384 && JWT_SHAPE.test(credential);
  }

  async authenticate(credential: string): Promise<AuthenticationResult> {
    if (!JwtAuthenticator.looksLikeJwt(credential)) return { ok: false, reason: 'malformed' };
    let payload: JWTPayload;
    try {
      const options = {
        issuer: this.#config.issuer,
        audience: this.#config.audience,
        algorithms: this.#config.algorithms ?? JWT_ALGORITHMS,
        clockTolerance: this.#config.clockToleranceSeconds ?? 30,
        requiredClaims: ['exp', 'sub'],
      };
      const keys = this.#keys;
      const verified =
        typeof keys === 'function'
          ? await jwtVerify(credential, keys, options)
          : await jwtVerify(credential, keys, options);
      payload = verified.payload;
    } catch (error) {
      return { ok: false, reason: reasonOf(error) };
    }
    const sub = payload.sub;
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > 256)
      return { ok: false, reason: 'bad_claims' };
    const claimed = claimAt(payload, this.#config.rolesClaim ?? 'roles');
    const listed = Array.isArray(claimed) ? claimed : typeof claimed === 'string' ? claimed.split(' ') : [];
    let roles = listed.filter((r): r is string => typeof r === 'string' && this.#knownRoles.has(r));
    if (roles.length === 0) roles = (this.#config.defaultRoles ?? []).filter((r) => this.#knownRoles.has(r));
    if (roles.length === 0) return { ok: false, reason: 'no_known_role' };
    const name = typeof payload.name === 'string' ? payload.name.slice(0, 200) : sub;
    const principal: Principal = Object.freeze({
      id: `jwt:${sub}`,
      name,
      roles: Object.freeze([...new Set(roles)]),
      via: 'jwt',
    });
    return { ok: true, principal };
  }
}

/** The JWS algorithm for a PEM public key when none is configured: RS256, ES256/384/512 or EdDSA. */
function algorithmOfPem(pem: string): string {
  const key = createPublicKey(pem);
  const type = key.asymmetricKeyType;
  if (type === 'rsa') return 'RS256';
  if (type === 'ed25519') return 'EdDSA';
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
    if (curve === 'secp521r1') return 'ES512';
  }
  throw new TypeError(`auth.jwt.publicKey: unsupported key type ${type ?? 'unknown'}; set "algorithms"`);
}

/**
 * Tries each authenticator that claims the credential's shape: API keys by their prefix, JWTs by
 * theirs. A credential neither recognizes is malformed.
 */
export class BearerAuthenticator implements Authenticator {
  constructor(
    readonly apiKeys: Authenticator | undefined,
    readonly jwt: Authenticator | undefined,
  ) {}

  authenticate(credential: string): Promise<AuthenticationResult> {
    if (this.apiKeys && looksLikeApiKey(credential)) return this.apiKeys.authenticate(credential);
    if (this.jwt && JwtAuthenticator.looksLikeJwt(credential)) return this.jwt.authenticate(credential);
    return Promise.resolve({ ok: false, reason: 'malformed' });
  }
}
