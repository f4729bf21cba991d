import { randomFillSync } from 'node:crypto';

const pool = Buffer.alloc(16 * 512);
let offset = pool.length;

/**
 * A UUIDv7: 48 bits of Unix milliseconds, then randomness. Ids made close in time sort close
 * together, so the stores' indexes on them take inserts at one end instead of scattered pages.
 */
export function timeOrderedId(now = Date.now()): string {
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const bytes = pool.subarray(offset, offset + 16);
  offset += 16;
  bytes.writeUIntBE(now, 0, 6);
  bytes[6] = (bytes[6]! & 0x0f) | 0x70;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
