import {
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
  type SpanOptions,
  type SpanStatus,
  SpanStatusCode,
  type TimeInput,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  CommandError,
  createCore,
  defineApp,
  defineCommand,
  defineDocument,
  localPrincipal,
  MemoryStore,
} from '../index.js';

interface Recorded {
  name: string;
  options: SpanOptions;
  parent: SpanContext | undefined;
  status?: SpanStatus;
  end?: TimeInput;
}

/** A tracer provider that records spans: what an OpenTelemetry SDK would receive. */
const recorded: Recorded[] = [];
class RecordingSpan implements Span {
  constructor(readonly record: Recorded) {}
  spanContext(): SpanContext {
    return { traceId: 'f'.repeat(32), spanId: 'e'.repeat(16), traceFlags: 1 };
  }
  setAttribute(): this {
    return this;
  }
  setAttributes(attributes: Attributes): this {
    this.record.options.attributes = { ...this.record.options.attributes, ...attributes };
    return this;
  }
  addEvent(): this {
    return this;
  }
  addLink(): this {
    return this;
  }
  addLinks(): this {
    return this;
  }
  setStatus(status: SpanStatus): this {
    this.record.status = status;
    return this;
  }
  updateName(): this {
    return this;
  }
  end(time?: TimeInput): void {
    this.record.end = time;
  }
  isRecording(): boolean {
    return true;
  }
  recordException(): void {}
}
const tracer = {
  startSpan(name: string, options: SpanOptions = {}, context?: Context): Span {
    const record: Recorded = { name, options, parent: context && trace.getSpanContext(context) };
    recorded.push(record);
    return new RecordingSpan(record);
  },
} as Tracer;

const counter = defineDocument<{ n: number }>('counter', { n: 0 });
const app = defineApp({
  name: 'traced',
  documents: [counter],
  commands: [
    defineCommand({
      name: 'bump',
      description: 'Adds to the counter',
      doc: counter,
      input: z.object({ by: z.number().int() }),
      handler: ({ input, draft }) => {
        if (input.by === 13) throw new CommandError('unlucky', 'Not 13');
        draft.n += input.by;
      },
    }),
  ],
});

beforeAll(() => {
  expect(trace.setGlobalTracerProvider({ getTracer: () => tracer })).toBe(true);
});
afterAll(() => trace.disable());

describe('command spans', () => {
  it('records one span per command, a child of the caller traceparent, with outcome and revision', async () => {
    const core = await createCore({ app, store: new MemoryStore() });
    const traceparent = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
    await core.execute('bump', { by: 2 }, { principal: localPrincipal('alice'), traceparent });
    await core.execute('bump', { by: 13 }, { principal: localPrincipal('alice') });
    await core.close();
    const [ok, failed] = recorded.filter((r) => r.name === 'coremcp bump');
    expect(ok).toMatchObject({
      parent: { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), isRemote: true },
      options: {
        attributes: {
          'coremcp.outcome': 'ok',
          'coremcp.doc': 'counter',
          'coremcp.revision': 1,
          'coremcp.committed': true,
        },
      },
    });
    expect(ok!.status).toBeUndefined();
    expect(Number(ok!.end) - Number(ok!.options.startTime)).toBeGreaterThanOrEqual(0);
    expect(failed).toMatchObject({
      parent: undefined,
      options: { attributes: { 'coremcp.outcome': 'unlucky', 'coremcp.committed': false } },
      status: { code: SpanStatusCode.ERROR, message: 'unlucky' },
    });
  });
});
