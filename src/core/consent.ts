import { createHash } from 'node:crypto';
import type { Principal } from './access.js';
import type { CommandDefinition } from './commands.js';
import type { InputRequests } from './input.js';
import { canonicalJson, type JsonObject, type JsonValue } from './json.js';
import type { JsonPatch } from './patch.js';

/**
 * Consent for commands that declare `confirm`: the dry run's changes are shown to the client as an
 * elicitation (a summary and the RFC 6902 patches), and only an approval of those very changes
 * commits. The elicitation's answer says what the client sent back; it does not prove that a human
 * read it (docs/security.md).
 */

/** The key of the consent question among a call's questions. */
export const CONSENT_KEY = 'coremcp.consent';

/** What a consent question was about: the documents' revisions and the hash of the changes shown. */
export interface ConsentGrant {
  revisions: Record<string, number>;
  diffHash: string;
}

/** The changes a consent shows, one entry per document. */
export interface ConsentChange {
  doc: string;
  revision: number;
  patches: JsonPatch;
}

/** Most patch operations written out in the question's message; all of them travel in its `_meta`. */
const SHOWN_OPERATIONS = 50;
/** Longest value shown in the message for one operation. */
const SHOWN_VALUE_CHARS = 200;
/** Largest change list carried in the question's `_meta` (bytes of JSON). */
const META_BYTES = 256 * 1024;

/** SHA-256 of the changes, canonical: what a consent is bound to and the audit records. */
export function hashChanges(changes: readonly ConsentChange[]): string {
  const body = [...changes]
    .sort((a, b) => (a.doc < b.doc ? -1 : a.doc > b.doc ? 1 : 0))
    .map((c) => ({ doc: c.doc, revision: c.revision, patches: c.patches as unknown as JsonValue }));
  return createHash('sha256').update(canonicalJson(body)).digest('hex');
}

/** The client's answer to the consent question: approved, refused, or not given (yet). */
export function readConsent(
  answers: Readonly<Record<string, JsonValue>>,
): 'accepted' | 'declined' | undefined {
  const answer = answers[CONSENT_KEY];
  if (answer === null || typeof answer !== 'object' || Array.isArray(answer)) return undefined;
  if (answer.action === 'decline' || answer.action === 'cancel') return 'declined';
  if (answer.action !== 'accept') return undefined;
  const content = answer.content;
  if (content === null || typeof content !== 'object' || Array.isArray(content)) return undefined;
  if (content.approve === true) return 'accepted';
  if (content.approve === false) return 'declined';
  return undefined;
}

export interface ConsentFacts {
  input: unknown;
  principal: Principal;
  result: JsonValue;
  changes: readonly ConsentChange[];
  diffHash: string;
}

/** The consent question for a dry run: an elicitation form with the summary and the patches. */
export function consentQuestion(command: CommandDefinition, facts: ConsentFacts): InputRequests {
  const summary = command.confirm!({
    input: facts.input,
    principal: facts.principal,
    result: facts.result,
    changes: facts.changes,
  });
  const lines: string[] = [];
  let shown = 0;
  const total = facts.changes.reduce((n, c) => n + c.patches.length, 0);
  for (const change of facts.changes) {
    lines.push(`${change.doc} @ revision ${change.revision}:`);
    for (const op of change.patches) {
      if (shown++ >= SHOWN_OPERATIONS) break;
      lines.push(`  ${describeOperation(op)}`);
    }
  }
  if (total > SHOWN_OPERATIONS) lines.push(`  ... and ${total - SHOWN_OPERATIONS} more`);
  const message = [
    String(summary).slice(0, 2000),
    '',
    `Changes (RFC 6902 JSON Patch; diff ${facts.diffHash.slice(0, 16)}):`,
    ...lines,
  ].join('\n');
  const changes = facts.changes.map((c) => ({
    doc: c.doc,
    revision: c.revision,
    patches: c.patches as unknown as JsonValue,
  }));
  const detail: JsonObject = { command: command.name, diffHash: facts.diffHash, operations: total };
  if (Buffer.byteLength(JSON.stringify(changes)) <= META_BYTES) detail.changes = changes;
  return {
    [CONSENT_KEY]: {
      method: 'elicitation/create',
      params: {
        mode: 'form',
        message,
        requestedSchema: {
          type: 'object',
          properties: {
            approve: {
              type: 'boolean',
              title: 'Approve these changes',
              description: 'Commit exactly the changes listed; anything else commits nothing.',
              default: false,
            },
          },
          required: ['approve'],
        },
        _meta: { 'coremcp/consent': detail },
      },
    },
  };
}

function describeOperation(op: JsonPatch[number]): string {
  const value =
    'value' in op
      ? ` ${truncate(JSON.stringify(op.value) ?? 'null')}`
      : 'from' in op
        ? ` from ${op.from}`
        : '';
  return `${op.op} ${op.path || '/'}${value}`;
}

function truncate(text: string): string {
  return text.length <= SHOWN_VALUE_CHARS ? text : `${text.slice(0, SHOWN_VALUE_CHARS)}…`;
}
