import type { IncomingMessage } from 'node:http';
import { TransportError } from '../core/errors.js';
import { HttpFailure } from './respond.js';

/** Bodies over the limit are read and dropped up to this size (so the client sees the 413), then cut off. */
export const DISCARD_LIMIT = 16 * 1024 * 1024;

/**
 * Reads a request body up to `maxBytes`. A larger body is read on and discarded up to `DISCARD_LIMIT`,
 * so the client, still sending, gets to read the 413 rather than a reset; past that the request is
 * paused and the connection closed after the answer.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    let over = Number.isFinite(declared) && declared > maxBytes;
    if (over && declared > DISCARD_LIMIT) return reject(tooLarge(maxBytes));
    const chunks: Buffer[] = [];
    let size = 0;
    let ended = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) over = true;
      if (!over) chunks.push(chunk);
      else if (size > DISCARD_LIMIT) {
        req.pause();
        reject(tooLarge(maxBytes));
      }
    });
    req.on('end', () => {
      ended = true;
      if (over) reject(tooLarge(maxBytes));
      else resolve(Buffer.concat(chunks, size).toString('utf8'));
    });
    req.on('error', reject);
    req.on('close', () => {
      if (!ended) reject(new TransportError('bad_request', 'The request body ended early'));
    });
  });
}

function tooLarge(maxBytes: number): HttpFailure {
  return new HttpFailure(
    new TransportError('payload_too_large', `Request bodies are limited to ${maxBytes} bytes`),
    { headers: { connection: 'close' } },
  );
}
