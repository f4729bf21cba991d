import { z } from 'zod';
import type { Authorizer, CommandGrant, DocumentAction, Principal } from '../core/access.js';
import { parsePointer } from '../core/json.js';

const ACTIONS = ['read', 'follow', 'write', 'rollback'] as const;

/**
 * One role. Patterns use `*` for any run of characters (`task.*`, `*`); a leading `!` excludes.
 * Path patterns are JSON Pointers whose segments may be `*` (one segment) or `**` (any number).
 */
export const roleDefinitionSchema = z
  .object({
    /** Permissions of commands this role may call. */
    commands: z.array(z.string().min(1).max(200)).max(500).optional(),
    /** May call every read-only command, whatever its permission. */
    queries: z.boolean().optional(),
    /** Document id pattern → what the role may do with matching documents. */
    documents: z.record(z.string().min(1).max(200), z.array(z.enum(ACTIONS))).optional(),
    /** Document id pattern → which JSON Pointers this role's commands may change. */
    paths: z
      .record(
        z.string().min(1).max(200),
        z.strictObject({
          allow: z.array(z.string().max(500)).optional(),
          deny: z.array(z.string().max(500)).optional(),
        }),
      )
      .optional(),
  })
  .strict();

export type RoleDefinition = z.infer<typeof roleDefinitionSchema>;
export const rolesConfigSchema = z.record(
  z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/),
  roleDefinitionSchema,
);
export type RolesConfig = z.infer<typeof rolesConfigSchema>;

/** The roles every server has unless configuration replaces them. */
export const DEFAULT_ROLES: RolesConfig = {
  admin: { commands: ['*'], documents: { '*': ['read', 'follow', 'write', 'rollback'] } },
  member: {
    commands: ['*', '!state.*', '!admin.*'],
    queries: true,
    documents: { '*': ['read', 'follow', 'write'] },
  },
  viewer: { queries: true, documents: { '*': ['read', 'follow'] } },
};

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

interface PatternSet {
  include: RegExp[];
  exclude: RegExp[];
}

function compilePatterns(patterns: readonly string[] = []): PatternSet {
  const set: PatternSet = { include: [], exclude: [] };
  for (const p of patterns) {
    if (p.startsWith('!')) set.exclude.push(globToRegExp(p.slice(1)));
    else set.include.push(globToRegExp(p));
  }
  return set;
}

function matchesSet(set: PatternSet, value: string): boolean {
  return set.include.some((r) => r.test(value)) && !set.exclude.some((r) => r.test(value));
}

type Segments = string[];

/** Whether a concrete path lies within the territory of a pattern (the pattern matches it or an ancestor via `**`). */
function withinPattern(path: Segments, pattern: Segments, pi = 0, qi = 0): boolean {
  if (qi === pattern.length) return pi === path.length;
  const q = pattern[qi]!;
  if (q === '**') {
    for (let skip = pi; skip <= path.length; skip++)
      if (withinPattern(path, pattern, skip, qi + 1)) return true;
    return false;
  }
  if (pi === path.length) return false;
  return (q === '*' || q === path[pi]) && withinPattern(path, pattern, pi + 1, qi + 1);
}

/** Whether changing `path` can change something the pattern covers: within it, or an ancestor of it. */
function overlapsPattern(path: Segments, pattern: Segments): boolean {
  if (withinPattern(path, pattern)) return true;
  // An ancestor of any path the pattern matches: every segment of `path` matches the pattern's prefix.
  for (let i = 0; i < path.length; i++) {
    const q = pattern[i];
    if (q === undefined) return false;
    if (q === '**') return true;
    if (q !== '*' && q !== path[i]) return false;
  }
  return path.length < pattern.length;
}

interface PathRules {
  docs: RegExp;
  allow: Segments[] | undefined;
  deny: Segments[];
  /** The deny patterns as configured, for people to read. */
  denied: string[];
}

interface CompiledRole {
  commands: PatternSet;
  queries: boolean;
  documents: Array<{ docs: RegExp; actions: ReadonlySet<DocumentAction> }>;
  paths: PathRules[];
}

function parsePattern(pattern: string, role: string): Segments {
  try {
    return parsePointer(pattern);
  } catch {
    throw new TypeError(`role "${role}": path pattern "${pattern}" must be a JSON Pointer (start with "/")`);
  }
}

/**
 * Role-based access from configuration: which commands a role may call, what it may do with which
 * documents, and which JSON Pointers its commands may change. A principal with several roles gets
 * the union of what they grant. Roles it names that are not configured grant nothing.
 */
export class RoleAuthorizer implements Authorizer {
  readonly roles: RolesConfig;
  readonly #compiled = new Map<string, CompiledRole>();

  constructor(roles: RolesConfig = DEFAULT_ROLES) {
    const parsed = rolesConfigSchema.safeParse(roles);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new TypeError(
        `invalid roles configuration at ${issue.path.join('.') || '(root)'}: ${issue.message}`,
      );
    }
    this.roles = parsed.data;
    for (const [name, role] of Object.entries(parsed.data)) {
      this.#compiled.set(name, {
        commands: compilePatterns(role.commands),
        queries: role.queries === true,
        documents: Object.entries(role.documents ?? {}).map(([docs, actions]) => ({
          docs: globToRegExp(docs),
          actions: new Set(actions),
        })),
        paths: Object.entries(role.paths ?? {}).map(([docs, rules]) => ({
          docs: globToRegExp(docs),
          allow: rules.allow?.map((p) => parsePattern(p, name)),
          deny: (rules.deny ?? []).map((p) => parsePattern(p, name)),
          denied: [...(rules.deny ?? [])],
        })),
      });
    }
  }

  get roleNames(): string[] {
    return [...this.#compiled.keys()];
  }

  canExecute(principal: Principal, command: CommandGrant): boolean {
    return this.#rolesOf(principal).some((role) => this.#grantsCommand(role, command));
  }

  canAccessDocument(principal: Principal, doc: string, action: DocumentAction): boolean {
    return this.#rolesOf(principal).some((role) =>
      role.documents.some((d) => d.actions.has(action) && d.docs.test(doc)),
    );
  }

  findForbiddenPath(
    principal: Principal,
    command: CommandGrant,
    doc: string,
    paths: readonly string[],
  ): string | undefined {
    const roles = this.#rolesOf(principal).filter(
      (role) =>
        this.#grantsCommand(role, command) &&
        role.documents.some((d) => d.actions.has('write') && d.docs.test(doc)),
    );
    for (const path of paths) {
      const segments = parsePointer(path);
      if (!roles.some((role) => this.#allowsPath(role, doc, segments))) return path;
    }
    return undefined;
  }

  /** Patterns denied in `doc` by every role that lets the principal write it through `command`. */
  deniedPaths(principal: Principal, command: CommandGrant, doc: string): readonly string[] {
    const roles = this.#rolesOf(principal).filter(
      (role) =>
        this.#grantsCommand(role, command) &&
        role.documents.some((d) => d.actions.has('write') && d.docs.test(doc)),
    );
    // A path one role denies, another may allow: only what all of them deny is never writable.
    const denied = roles.map(
      (role) => new Set(role.paths.filter((rules) => rules.docs.test(doc)).flatMap((rules) => rules.denied)),
    );
    const [first, ...rest] = denied;
    return first ? [...first].filter((pattern) => rest.every((set) => set.has(pattern))) : [];
  }

  #grantsCommand(role: CompiledRole, command: CommandGrant): boolean {
    return (role.queries && command.readOnly === true) || matchesSet(role.commands, command.permission);
  }

  #allowsPath(role: CompiledRole, doc: string, path: Segments): boolean {
    let allowLists = 0;
    let allowed = false;
    for (const rules of role.paths) {
      if (!rules.docs.test(doc)) continue;
      if (rules.deny.some((pattern) => overlapsPattern(path, pattern))) return false;
      if (rules.allow) {
        allowLists++;
        if (rules.allow.some((pattern) => withinPattern(path, pattern))) allowed = true;
      }
    }
    return allowLists === 0 || allowed;
  }

  #rolesOf(principal: Principal): CompiledRole[] {
    const out: CompiledRole[] = [];
    for (const name of principal.roles) {
      const role = this.#compiled.get(name);
      if (role) out.push(role);
    }
    return out;
  }
}
