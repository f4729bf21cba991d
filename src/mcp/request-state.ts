import { randomBytes } from 'node:crypto';
import { createRequestStateCodec, type RequestStateCodec } from '@modelcontextprotocol/server';
import type { ConsentGrant } from '../core/consent.js';
import { sha256 } from '../core/digest.js';
import { CommandError } from '../core/errors.js';
import { canonicalJson, type JsonObject, type JsonValue } from '../core/json.js';
import type { Store } from '../core/store.js';

/**
 * The `requestState` of multi round-trip calls (2026-07-28 `input_required`): what a call has
 * gathered so far, carried by the client between rounds. It is attacker-controlled input, so it is
 * signed (HMAC-SHA256 with the SDK's codec, under a key kept in the store so every instance checks
 * it), bound to the principal, the method and name, and a digest of the arguments, valid for a short
 * time, and good for one retry: its nonce is consumed in the store before the retry runs.
 *
 * Signed, not encrypted: the client can read what it carries (its own answers, the consent's diff
 * hash and revisions), never change it.
 */

/** The store secret the codec's key lives under. */
export const REQUEST_STATE_SECRET = 'mrtr-request-state';

/** What a round carries to the next. */
interface RoundPayload {
  v: 1;
  /** Nonce: consumed once. */
  n: string;
  /** Principal id. */
  s: string;
  /** Method and name: `tools/call task.remove`. */
  t: string;
  /** SHA-256 of the canonical arguments. */
  i: string;
  /** Expiry, ms since the epoch (the runtime's clock). */
  e: number;
  /** The keys the last round asked. */
  q: string[];
  /** Answers gathered before the last round. */
  a: JsonObject;
  /** The consent the last round asked for. */
  g?: ConsentGrant;
}

/** Who and what a state is for. */
export interface RoundBinding {
  principal: string;
  /** Method and name, e.g. `tools/call task.remove`. */
  target: string;
  arguments: unknown;
}

/** What a verified state gives the retry. */
export interface RoundInput {
  /** Answers from earlier rounds plus this retry's answers to the questions last asked. */
  answers: Record<string, JsonValue>;
  consent: ConsentGrant | undefined;
}

export interface RequestStatesOptions {
  /** How long a state is good for, in ms (default 10 minutes). */
  ttlMs?: number;
  clock?: () => Date;
}

export class RequestStates {
  readonly #store: Pick<Store, 'secret' | 'consumeOnce'>;
  readonly #ttlMs: number;
  readonly #clock: () => Date;
  #codec: Promise<RequestStateCodec<RoundPayload>> | undefined;

  constructor(store: Pick<Store, 'secret' | 'consumeOnce'>, options: RequestStatesOptions = {}) {
    this.#store = store;
    this.#ttlMs = options.ttlMs ?? 10 * 60_000;
    this.#clock = options.clock ?? (() => new Date());
  }

  /** Seals what the next round needs. */
  async mint(
    binding: RoundBinding,
    round: {
      asked: readonly string[];
      answers: Record<string, JsonValue>;
      consent?: ConsentGrant | undefined;
    },
  ): Promise<string> {
    const payload: RoundPayload = {
      v: 1,
      n: randomBytes(16).toString('base64url'),
      s: binding.principal,
      t: binding.target,
      i: digest(binding.arguments),
      e: this.#clock().getTime() + this.#ttlMs,
      q: [...round.asked],
      a: round.answers,
    };
    if (round.consent) payload.g = round.consent;
    return (await this.#codecOf()).mint(payload);
  }

  /**
   * Checks a state the client echoed and consumes it: the answers and consent this retry may use.
   * Throws `request_state_invalid`, `request_state_expired` or `request_state_replayed`.
   */
  async redeem(state: unknown, binding: RoundBinding, responses: unknown): Promise<RoundInput> {
    if (typeof state !== 'string' || state.length === 0 || state.length > 1024 * 1024)
      throw invalid('malformed');
    let payload: RoundPayload;
    try {
      payload = await (await this.#codecOf()).verify(state, undefined as never);
    } catch (error) {
      const reason = error instanceof Error ? error.message : 'malformed';
      if (reason === 'expired') throw expired();
      throw invalid(reason === 'mac' ? 'signature' : 'malformed');
    }
    if (!isPayload(payload)) throw invalid('malformed');
    if (payload.e <= this.#clock().getTime()) throw expired();
    if (payload.s !== binding.principal) throw invalid('principal');
    if (payload.t !== binding.target) throw invalid('target');
    if (payload.i !== digest(binding.arguments)) throw invalid('arguments');
    if (!(await this.#store.consumeOnce(`mrtr:${payload.n}`, new Date(payload.e).toISOString()))) {
      throw new CommandError(
        'request_state_replayed',
        'This requestState was already used: start the call again',
        {
          details: { reason: 'replayed' },
        },
      );
    }
    const answers: Record<string, JsonValue> = { ...payload.a };
    const given = isObject(responses) ? responses : {};
    // Only answers to the questions last asked count; anything else the client sent is ignored.
    for (const key of payload.q) if (Object.hasOwn(given, key)) answers[key] = given[key] as JsonValue;
    return { answers, consent: payload.g };
  }

  #codecOf(): Promise<RequestStateCodec<RoundPayload>> {
    this.#codec ??= this.#store
      .secret(REQUEST_STATE_SECRET, () => randomBytes(32).toString('base64url'))
      .then((key) =>
        // The codec's own expiry is a ceiling; the payload's, on the runtime's clock, decides.
        createRequestStateCodec<RoundPayload>({ key, ttlSeconds: Math.ceil(this.#ttlMs / 1000) + 60 }),
      );
    return this.#codec;
  }
}

/** The answers a first round (no state) may use: every bare response the client sent. */
export function firstRoundInput(responses: unknown): RoundInput {
  const answers: Record<string, JsonValue> = {};
  if (isObject(responses))
    for (const [key, value] of Object.entries(responses)) answers[key] = value as JsonValue;
  return { answers, consent: undefined };
}

function digest(value: unknown): string {
  return sha256(canonicalJson((value ?? {}) as JsonValue), 'base64url');
}

function invalid(reason: string): CommandError {
  return new CommandError('request_state_invalid', 'This requestState was not issued for this call', {
    details: { reason },
  });
}

function expired(): CommandError {
  return new CommandError('request_state_expired', 'This requestState has expired: start the call again', {
    details: { reason: 'expired' },
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isPayload(value: unknown): value is RoundPayload {
  if (!isObject(value)) return false;
  return (
    value.v === 1 &&
    typeof value.n === 'string' &&
    typeof value.s === 'string' &&
    typeof value.t === 'string' &&
    typeof value.i === 'string' &&
    typeof value.e === 'number' &&
    Array.isArray(value.q) &&
    value.q.every((k) => typeof k === 'string') &&
    isObject(value.a)
  );
}
