/**
 * How a principal proved who it is. `console`: a person signed in to the web console (with an API key
 * or a JWT) and acting through its session.
 */
export type AuthMethod = 'api_key' | 'jwt' | 'stdio' | 'cli' | 'console' | 'internal' | 'none';

/** Who is calling. Every command runs on behalf of exactly one principal. */
export interface Principal {
  /** Stable identifier: an API key's id, a JWT subject, the local OS user. */
  readonly id: string;
  readonly roles: readonly string[];
  readonly via: AuthMethod;
  /** A human-friendly name (the API key's name, a JWT's name claim), for logs and audit. */
  readonly name?: string;
}

/** What a principal may do with a document. */
export type DocumentAction = 'read' | 'follow' | 'write' | 'rollback';

/** The command facts an authorizer decides on. */
export interface CommandGrant {
  readonly name: string;
  readonly permission: string;
  /** Queries change nothing; a role may grant all of them at once. */
  readonly readOnly?: boolean;
}

/**
 * The core's authorization port. `security/` implements it (RBAC from configuration); the core asks
 * it at each step of the pipeline and never decides access itself.
 */
export interface Authorizer {
  /** Whether the principal may call the command at all (and see it in tools/list). */
  canExecute(principal: Principal, command: CommandGrant): boolean;
  /** Whether the principal may read, follow, write or roll back a document. */
  canAccessDocument(principal: Principal, doc: string, action: DocumentAction): boolean;
  /**
   * The first JSON Pointer in `paths` the principal may not write through this command, or undefined
   * when all are allowed. Called with the paths the command's patches actually touch.
   */
  findForbiddenPath(
    principal: Principal,
    command: CommandGrant,
    doc: string,
    paths: readonly string[],
  ): string | undefined;
  /**
   * JSON Pointer patterns in `doc` the principal may never write through this command, whatever the
   * input: what a tool's description warns of. Optional; none when not implemented.
   */
  deniedPaths?(principal: Principal, command: CommandGrant, doc: string): readonly string[];
}

/** The principal for changes the server makes on its own (start-up, direct `state.update` calls). */
export const SYSTEM_PRINCIPAL: Principal = Object.freeze({
  id: 'system',
  roles: Object.freeze(['admin']),
  via: 'internal',
  name: 'system',
});

/** The authentication port: turns a bearer credential into a principal, or refuses it. */
export interface Authenticator {
  /** The principal for a credential, or undefined when it is unknown, invalid, expired or revoked. */
  authenticate(credential: string): Promise<AuthenticationResult>;
}

export type AuthenticationResult =
  | { ok: true; principal: Principal }
  /** `reason` is for logs and metrics (bounded set of values), never for the client. */
  | { ok: false; reason: string };
