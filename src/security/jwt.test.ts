import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { BearerAuthenticator, JwtAuthenticator } from './jwt.js';

const ISSUER = 'https://issuer.test';
const AUDIENCE = 'https://mcp.test/mcp';
const ROLES = ['admin', 'member', 'viewer'];

async function setUp(alg: 'ES256' | 'RS256' | 'EdDSA') {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const sign = (claims: Record<string, unknown>, exp: number | string = '5m') =>
    new SignJWT(claims)
      .setProtectedHeader({ alg, kid: 'k' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject('agent')
      .setExpirationTime(exp)
      .sign(privateKey);
  return { publicKey, sign };
}

describe('JwtAuthenticator', () => {
  it.each(['ES256', 'RS256', 'EdDSA'] as const)(
    'verifies %s tokens against a PEM public key',
    async (alg) => {
      const { publicKey, sign } = await setUp(alg);
      const auth = await JwtAuthenticator.create(
        { issuer: ISSUER, audience: AUDIENCE, publicKey: await exportSPKI(publicKey) },
        ROLES,
      );
      expect(await auth.authenticate(await sign({ roles: ['viewer', 'root'] }))).toEqual({
        ok: true,
        principal: { id: 'jwt:agent', name: 'agent', roles: ['viewer'], via: 'jwt' },
      });
    },
  );

  it('reads roles from a nested claim or a space-separated string, and falls back to defaultRoles', async () => {
    const { publicKey, sign } = await setUp('ES256');
    const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256' }] };
    const nested = await JwtAuthenticator.create(
      { issuer: ISSUER, audience: AUDIENCE, jwks, rolesClaim: 'realm_access.roles' },
      ROLES,
    );
    const result = await nested.authenticate(await sign({ realm_access: { roles: ['member'] } }));
    expect(result.ok && result.principal.roles).toEqual(['member']);
    const spaced = await JwtAuthenticator.create(
      { issuer: ISSUER, audience: AUDIENCE, jwks, rolesClaim: 'scope' },
      ROLES,
    );
    const fromScope = await spaced.authenticate(await sign({ scope: 'openid member admin' }));
    expect(fromScope.ok && fromScope.principal.roles).toEqual(['member', 'admin']);
    const fallback = await JwtAuthenticator.create(
      { issuer: ISSUER, audience: AUDIENCE, jwks, defaultRoles: ['viewer'] },
      ROLES,
    );
    const none = await fallback.authenticate(await sign({}));
    expect(none.ok && none.principal.roles).toEqual(['viewer']);
  });

  it('names why a token is refused (for logs and metrics), within the clock tolerance', async () => {
    const { publicKey, sign } = await setUp('ES256');
    const auth = await JwtAuthenticator.create(
      {
        issuer: ISSUER,
        audience: AUDIENCE,
        publicKey: await exportSPKI(publicKey),
        clockToleranceSeconds: 30,
      },
      ROLES,
    );
    const now = Math.floor(Date.now() / 1000);
    expect(await auth.authenticate(await sign({ roles: ['member'] }, now - 10))).toMatchObject({ ok: true });
    expect(await auth.authenticate(await sign({ roles: ['member'] }, now - 60))).toEqual({
      ok: false,
      reason: 'expired',
    });
    expect(await auth.authenticate(await sign({ roles: ['member'], nbf: now + 600 }))).toEqual({
      ok: false,
      reason: 'not_yet_valid',
    });
    expect(await auth.authenticate('a.b')).toEqual({ ok: false, reason: 'malformed' });
    expect(await auth.authenticate(await sign({ roles: ['nobody'] }))).toEqual({
      ok: false,
      reason: 'no_known_role',
    });
  });

  it('refuses a configuration with no key source or two', async () => {
    await expect(JwtAuthenticator.create({ issuer: ISSUER, audience: AUDIENCE }, ROLES)).rejects.toThrow(
      /exactly one/,
    );
  });

  it('sends each credential shape to its authenticator only', async () => {
    const { publicKey, sign } = await setUp('ES256');
    const jwt = await JwtAuthenticator.create(
      { issuer: ISSUER, audience: AUDIENCE, publicKey: await exportSPKI(publicKey) },
      ROLES,
    );
    const bearer = new BearerAuthenticator(undefined, jwt);
    expect(await bearer.authenticate(await sign({ roles: ['member'] }))).toMatchObject({ ok: true });
    expect(await bearer.authenticate(`cmcp_000000000000_${'A'.repeat(43)}`)).toEqual({
      ok: false,
      reason: 'malformed',
    });
  });
});
