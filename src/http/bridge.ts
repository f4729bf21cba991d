import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * A web `Request` for a Node request whose body the edge has already read (or that has none): the
 * headers as sent, minus `Content-Length` when no body travels with it.
 */
export function toWebRequest(
  req: IncomingMessage,
  url: URL,
  method: string,
  body: string | undefined,
  signal: AbortSignal,
): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || name.startsWith(':')) continue;
    if (Array.isArray(value)) for (const item of value) headers.append(name, item);
    else headers.set(name, value);
  }
  if (body === undefined) headers.delete('content-length');
  return new Request(url, { method, headers, signal, body });
}

/**
 * Writes a web `Response` to a Node response. A plain body is read whole and sent in one write,
 * headers and all, with its length; an event stream is streamed as it comes, honouring backpressure,
 * and cancelled when the client goes away.
 */
export async function writeWebResponse(
  res: ServerResponse,
  response: Response,
  signal: AbortSignal,
): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  if (response.body === null) {
    res.writeHead(response.status, headers);
    res.end();
    return;
  }
  if (!headers['content-type']?.startsWith('text/event-stream')) {
    const body = Buffer.from(await response.arrayBuffer());
    headers['content-length'] = String(body.length);
    res.writeHead(response.status, headers);
    res.end(body);
    return;
  }
  res.writeHead(response.status, headers);
  const reader = response.body.getReader();
  const onAbort = () => void reader.cancel().catch(() => {});
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || signal.aborted) break;
      if (!res.write(value))
        await new Promise<void>((resolve) => {
          const resume = () => {
            res.off('drain', resume);
            signal.removeEventListener('abort', resume);
            resolve();
          };
          res.on('drain', resume);
          signal.addEventListener('abort', resume, { once: true });
        });
    }
  } catch {
    // The client went away mid-stream; nothing to tell it.
  } finally {
    signal.removeEventListener('abort', onAbort);
    res.end();
  }
}
