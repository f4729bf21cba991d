import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { jwtConfigSchema } from '../security/jwt.js';
import { authThrottleSchema, rateLimitSchema } from '../security/ratelimit.js';
import { rolesConfigSchema } from '../security/rbac.js';
import { UsageError } from './usage.js';

export const CONFIG_FILE = 'coremcp.config.json';

/** `coremcp.config.json`: settings an operator changes without touching the app's code. */
export const configSchema = z.strictObject({
  /** Roles; replace the app's and the built-in ones of the same name. */
  roles: rolesConfigSchema.optional(),
  http: z
    .strictObject({
      allowedHosts: z.array(z.string().min(1).max(253)).max(100).optional(),
      allowedOrigins: z.array(z.string().min(1).max(253)).max(100).optional(),
      maxBodyBytes: z
        .number()
        .int()
        .min(1024)
        .max(64 * 1024 * 1024)
        .optional(),
      maxSessions: z.number().int().min(1).max(100_000).optional(),
      /** Most 2025-era sessions one principal holds; its least recently used makes room (default 32). */
      maxSessionsPerPrincipal: z.number().int().min(1).max(100_000).optional(),
      /** Most open `subscriptions/listen` streams per principal (default 16). */
      maxListenStreamsPerPrincipal: z.number().int().min(1).max(100_000).optional(),
    })
    .optional(),
  stdio: z
    .strictObject({
      /** Roles of the local user over stdio (default: admin; the local user owns the data). */
      roles: z.array(z.string().min(1).max(64)).min(1).max(20).optional(),
    })
    .optional(),
  /** Who may call: API keys (always) and bearer JWTs from an OAuth authorization server. */
  auth: z
    .strictObject({
      jwt: jwtConfigSchema.optional(),
      /** This server's public MCP URL, as clients reach it (RFC 9728 `resource`; default the listen URL). */
      resource: z.url({ protocol: /^https?$/ }).optional(),
      /** Authorization servers clients may get tokens from (RFC 9728 `authorization_servers`). */
      authorizationServers: z
        .array(z.url({ protocol: /^https?$/ }))
        .max(20)
        .optional(),
    })
    .optional(),
  /** Abuse limits: per-principal request rate and failed-authentication throttling per address. */
  limits: z
    .strictObject({
      rate: rateLimitSchema.optional(),
      authFailures: authThrottleSchema.optional(),
      /** Stored idempotency records kept per principal (default 10,000); the oldest go first. */
      idempotencyKeysPerPrincipal: z.number().int().min(1).max(10_000_000).optional(),
    })
    .optional(),
  /** History kept per document; older commits are compacted hourly by the server. */
  retention: z
    .strictObject({
      keepCommits: z.number().int().min(0).optional(),
      keepDays: z.number().int().min(0).optional(),
    })
    .refine((policy) => policy.keepCommits !== undefined || policy.keepDays !== undefined, {
      message: 'retention needs keepCommits or keepDays (or both)',
    })
    .optional(),
  /** How long a graceful shutdown (SIGTERM, SIGINT, stdin closed) waits for calls in flight, in seconds (default 10). */
  shutdownSeconds: z.number().int().min(0).max(3600).optional(),
  /** How long idempotency keys are honoured, in hours (default 24). */
  idempotencyHours: z
    .number()
    .int()
    .min(1)
    .max(24 * 365)
    .optional(),
  store: z
    .strictObject({
      /** A database URL (`postgres://…`); default SQLite in the data directory. */
      url: z.string().min(1).max(2048).optional(),
      /** PostgreSQL: the schema coremcp's tables live in (default: the URL's `?schema=`, else `coremcp`). */
      schema: z
        .string()
        .regex(/^[a-z_][a-z0-9_]{0,47}$/)
        .optional(),
      /** PostgreSQL: connections in the pool (default 10). */
      poolSize: z.number().int().min(1).max(1000).optional(),
      /** PostgreSQL: the server cancels a statement running longer than this, in ms (default 10,000). */
      statementTimeoutMs: z.number().int().min(100).max(3_600_000).optional(),
      /** PostgreSQL: where the LISTEN connection goes when `url` is a transaction-mode pooler (default `url`). */
      listenUrl: z.string().min(1).max(2048).optional(),
      /** PostgreSQL: look for other instances' commits at least this often, in ms, besides LISTEN (default 2,000; 0 = LISTEN only). */
      pollIntervalMs: z.number().int().min(0).max(3_600_000).optional(),
      durability: z.enum(['normal', 'full']).optional(),
      snapshotEvery: z.number().int().min(1).max(1_000_000).optional(),
      /** Concurrent writers' commits go to the store in one transaction (default true). */
      groupCommit: z.boolean().optional(),
      /** SQLite: how long a write waits in all for another process's lock, in ms (default 2,000). */
      busyWaitMs: z.number().int().min(0).max(60_000).optional(),
      /** SQLite: the write-ahead log is emptied once it passes this many MiB (default 16). */
      walLimitMiB: z.number().int().min(1).max(65_536).optional(),
    })
    .optional(),
});

export type CoreMcpConfig = z.infer<typeof configSchema>;

/** Reads the config file named, or `./coremcp.config.json` if present, or nothing. */
export function loadConfig(path: string | undefined): CoreMcpConfig {
  const file = path === undefined ? join(process.cwd(), CONFIG_FILE) : resolve(path);
  if (!existsSync(file)) {
    if (path !== undefined) throw new UsageError(`no such config file: ${path}`);
    return {};
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`${file} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new UsageError(`${file}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}
