import * as crypto from 'node:crypto';

type OneShot = (algorithm: string, data: string, outputEncoding: 'hex' | 'base64url') => string;

/**
 * Node's one-shot `crypto.hash` (20.12 and later) builds no `Hash` object: about half the cost of
 * `createHash().update().digest()` for the short strings a call hashes (its patch, its audit record).
 */
const oneShot = (crypto as { hash?: OneShot }).hash;

/** SHA-256 of a string (as UTF-8), hex unless told otherwise. */
export function sha256(text: string, encoding: 'hex' | 'base64url' = 'hex'): string {
  return oneShot
    ? oneShot('sha256', text, encoding)
    : crypto.createHash('sha256').update(text).digest(encoding);
}
