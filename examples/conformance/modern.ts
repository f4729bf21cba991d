/**
 * Fixtures for the 2026-07-28 scenarios of the conformance suite (0.2.x `--requirements 2026-07-28`)
 * and the tasks extension's scenarios: multi round-trip calls (`input_required`), diagnostic tools of
 * the stateless scenario, a tool mirroring a parameter into a header, and the tasks tools. Each is a
 * coremcp command: the questions go through `ctx.client`, the tasks through `task` and
 * `ctx.runAsTask()`, and every call through the pipeline.
 */
import { setTimeout as delay } from 'node:timers/promises';
import {
  type AppPrompt,
  type ClientChannel,
  CommandError,
  type DocumentDefinition,
  defineCommand,
  type SampleAnswer,
} from 'coremcp';
import { z } from 'zod';

function needClient(client: ClientChannel | undefined): ClientChannel {
  if (!client) throw new CommandError('client_unavailable', 'This fixture needs an MCP client connection');
  return client;
}

function sampledText(answer: SampleAnswer): string {
  const blocks = Array.isArray(answer.content) ? answer.content : [answer.content];
  const text = blocks.find((b) => b.type === 'text')?.text;
  return typeof text === 'string' ? text : '';
}

const text = (value: string) => [{ type: 'text' as const, text: value }];
const name = z.object({ name: z.string().max(200) });

export function modernCommands(fixtures: DocumentDefinition<unknown>) {
  const query = { doc: fixtures, timeoutMs: 30_000 };

  // --- multi round-trip requests (SEP-2322) ------------------------------------------------------

  const mrtrElicitation = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_input_required_result_elicitation',
    description: 'Asks for a name (input_required, key user_name), then greets it.',
    handler: async ({ client }) => {
      const who = await needClient(client).elicit(
        { message: 'What is your name?', requestedSchema: name },
        { key: 'user_name' },
      );
      return who.action === 'accept' ? `Hello, ${who.content.name}!` : 'Hello, stranger!';
    },
    content: text,
  });

  const mrtrSampling = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_input_required_result_sampling',
    description: 'Asks the client to sample an answer (input_required, key capital_question).',
    handler: async ({ client }) => {
      const answer = await needClient(client).sample(
        {
          messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }],
          maxTokens: 100,
        },
        { key: 'capital_question' },
      );
      return `The model said: ${sampledText(answer)}`;
    },
    content: text,
  });

  const mrtrRoots = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_input_required_result_list_roots',
    description: "Asks for the client's roots (input_required, key client_roots) and lists them.",
    handler: async ({ client }) => {
      const roots = await needClient(client).roots({ key: 'client_roots' });
      return `Roots: ${roots.map((r) => r.uri).join(', ')}`;
    },
    content: text,
  });

  const mrtrRequestState = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_input_required_result_request_state',
    description: 'Asks for a confirmation; the retry is accepted only with the signed requestState.',
    handler: async ({ client }) => {
      const answer = await needClient(client).elicit(
        { message: 'Please confirm', requestedSchema: z.object({ ok: z.boolean() }) },
        { key: 'confirm' },
      );
      // The answer can only come from a retry whose requestState verified (or pre-answered): state-ok.
      return `state-ok: confirmed=${answer.action === 'accept' && answer.content.ok}`;
    },
    content: text,
  });

  const mrtrMultiple = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_input_required_result_multiple_inputs',
    description: 'Asks for a name, a sampled greeting and the roots in one round.',
    handler: async ({ client }) => {
      const c = needClient(client);
      const [who, greeting, roots] = await Promise.all([
        c.elicit({ message: 'What is your name?', requestedSchema: name }, { key: 'user_name' }),
        c.sample(
          {
            messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }],
            maxTokens: 50,
          },
          { key: 'greeting' },
        ),
        c.roots({ key: 'client_roots' }),
      ]);
      const person = who.action === 'accept' ? who.content.name : 'stranger';
      return `${sampledText(greeting)} ${person} (${roots.length} roots)`;
    },
    content: text,
  });

  const mrtrMultiRound = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_input_required_result_multi_round',
    description: 'Asks a name, then (next round) a favourite color.',
    handler: async ({ client }) => {
      const c = needClient(client);
      const who = await c.elicit(
        { message: 'Step 1: What is your name?', requestedSchema: name },
        { key: 'step1' },
      );
      const color = await c.elicit(
        {
          message: 'Step 2: What is your favorite color?',
          requestedSchema: z.object({ color: z.string().max(50) }),
        },
        { key: 'step2' },
      );
      const person = who.action === 'accept' ? who.content.name : 'stranger';
      return `${person} likes ${color.action === 'accept' ? color.content.color : 'no color'}`;
    },
    content: text,
  });

  const mrtrTampered = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_input_required_result_tampered_state',
    description: 'Asks one question; a retry with an altered requestState is refused (-32602).',
    handler: async ({ client }) => {
      const answer = await needClient(client).elicit(
        { message: 'Proceed?', requestedSchema: z.object({ ok: z.boolean() }) },
        { key: 'proceed' },
      );
      return `answered: ${answer.action}`;
    },
    content: text,
  });

  const mrtrCapabilities = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_input_required_result_capabilities',
    description: 'Asks only what the client declared it can answer (elicitation and/or sampling).',
    handler: async ({ client }) => {
      const c = needClient(client);
      const asks: Array<Promise<unknown>> = [];
      if (c.supports('elicitation'))
        asks.push(c.elicit({ message: 'What is your name?', requestedSchema: name }, { key: 'user_name' }));
      if (c.supports('sampling'))
        asks.push(
          c.sample(
            { messages: [{ role: 'user', content: { type: 'text', text: 'Say hello' } }], maxTokens: 20 },
            { key: 'hello' },
          ),
        );
      await Promise.all(asks);
      return `asked ${asks.length} question(s)`;
    },
    content: text,
  });

  // --- stateless diagnostics (SEP-2575) ----------------------------------------------------------

  const missingCapability = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_missing_capability',
    description: 'Needs sampling: a client that did not declare it is refused with -32021.',
    handler: async ({ client }) => {
      const answer = await needClient(client).sample({
        messages: [{ role: 'user', content: { type: 'text', text: 'Anything' } }],
        maxTokens: 10,
      });
      return sampledText(answer);
    },
    content: text,
  });

  const streamingElicitation = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_streaming_elicitation',
    description:
      'Asks for input on 2026-07-28 the only way there is: an input_required result, never a request.',
    handler: async ({ client }) => {
      const who = await needClient(client).elicit({ message: 'Your name?', requestedSchema: name });
      return who.action;
    },
    content: text,
  });

  const logging = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_logging_tool',
    description: 'Logs at info level; sent only when the request asked for a log level.',
    handler: async ({ client }) => {
      await client?.log('info', 'test_logging_tool ran');
      return 'logged';
    },
    content: text,
  });

  // --- a parameter mirrored into a header (SEP-2243) ---------------------------------------------

  const headerParam = defineCommand({
    ...query,
    readOnly: true,
    name: 'test_header_param',
    description: 'Echoes a region that also travels as the Mcp-Param-Region header (x-mcp-header).',
    input: z.object({ region: z.string().max(200).meta({ 'x-mcp-header': 'Region' }) }),
    handler: ({ input }) => `region: ${input.region}`,
    content: text,
  });

  return [
    mrtrElicitation,
    mrtrSampling,
    mrtrRoots,
    mrtrRequestState,
    mrtrMultiple,
    mrtrMultiRound,
    mrtrTampered,
    mrtrCapabilities,
    missingCapability,
    streamingElicitation,
    logging,
    headerParam,
  ];
}

/** The tools of the tasks extension's scenarios (SEP-2663). */
export function taskCommands(fixtures: DocumentDefinition<unknown>) {
  const base = { doc: fixtures, timeoutMs: 120_000 };

  const greet = defineCommand({
    ...base,
    readOnly: true,
    name: 'greet',
    description: 'Greets synchronously (never a task).',
    input: z.object({ name: z.string().max(200) }),
    handler: ({ input }) => `Hello, ${input.name}!`,
    content: text,
  });

  const slowCompute = defineCommand({
    ...base,
    readOnly: true,
    name: 'slow_compute',
    description: 'Runs as a task: sleeps `seconds`, reporting progress each second, then answers.',
    task: 'optional',
    input: z.object({ seconds: z.number().min(0).max(600), label: z.string().max(200).optional() }),
    handler: async ({ input, client, signal, runAsTask }) => {
      await runAsTask(`Computing ${input.label ?? ''}`.trim());
      const total = Math.ceil(input.seconds);
      for (let i = 0; i < total; i++) {
        await delay(Math.min(1000, (input.seconds - i) * 1000), undefined, { signal });
        await client?.progress(i + 1, total, `${i + 1} of ${total} seconds`);
      }
      return `Computed ${input.label ?? 'result'} in ${input.seconds}s`;
    },
    content: text,
  });

  const failingJob = defineCommand({
    ...base,
    readOnly: true,
    name: 'failing_job',
    description: 'Runs only as a task, and ends with a tool error after about a second.',
    task: 'required',
    handler: async ({ signal, runAsTask }) => {
      await runAsTask('Failing soon');
      await delay(1000, undefined, { signal });
      throw new CommandError('job_failed', 'This job always fails');
    },
  });

  const protocolErrorJob = defineCommand({
    ...base,
    readOnly: true,
    name: 'protocol_error_job',
    description: 'Runs as a task and fails with a server-side error (the task fails, with a JSON-RPC error).',
    task: 'optional',
    handler: async ({ signal, runAsTask }) => {
      await runAsTask('About to fail');
      await delay(200, undefined, { signal });
      throw new Error('the job crashed');
    },
  });

  const confirmDelete = defineCommand({
    ...base,
    readOnly: true,
    name: 'confirm_delete',
    description: 'Runs as a task that asks for confirmation (tasks/update) before "deleting" a file.',
    task: 'optional',
    input: z.object({ filename: z.string().max(500) }),
    handler: async ({ input, client, runAsTask }) => {
      await runAsTask('Waiting for confirmation');
      const answer = await needClient(client).elicit({
        message: `Delete ${input.filename}?`,
        requestedSchema: z.object({ confirm: z.boolean() }),
      });
      const yes = answer.action === 'accept' && answer.content.confirm;
      return yes ? `Deleted ${input.filename}` : `Kept ${input.filename}`;
    },
    content: text,
  });

  const multiInput = defineCommand({
    ...base,
    readOnly: true,
    name: 'multi_input',
    description: 'Runs as a task that asks two questions at once, answerable one at a time.',
    task: 'optional',
    handler: async ({ client, runAsTask }) => {
      await runAsTask('Asking two questions');
      const c = needClient(client);
      const form = z
        .object({ name: z.string().max(200).optional(), confirm: z.boolean().optional() })
        .loose();
      const [first, second] = await Promise.all([
        c.elicit({ message: 'First question', requestedSchema: form }),
        c.elicit({ message: 'Second question', requestedSchema: form }),
      ]);
      return `answers: ${first.action}, ${second.action}`;
    },
    content: text,
  });

  const toolWithTask = defineCommand({
    ...base,
    readOnly: true,
    name: 'test_tool_with_task',
    description: 'Asks a name on the call (input_required), then runs as a task that greets it.',
    task: 'required',
    handler: async ({ client, signal, runAsTask }) => {
      const who = await needClient(client).elicit(
        { message: 'What is your name?', requestedSchema: name },
        { key: 'user_name' },
      );
      await runAsTask('Greeting');
      await delay(200, undefined, { signal });
      return `Hello, ${who.action === 'accept' ? who.content.name : 'stranger'}!`;
    },
    content: text,
  });

  return [greet, slowCompute, failingJob, protocolErrorJob, confirmDelete, multiInput, toolWithTask];
}

/** The prompt of `input-required-result-non-tool-request`: it asks for context before it answers. */
export const inputRequiredPrompt: AppPrompt = {
  name: 'test_input_required_result_prompt',
  title: 'Prompt that asks first',
  description: 'Asks which context to use (input_required, key user_context), then returns the prompt.',
  get: async (_args, { client }) => {
    const answer = await needClient(client).elicit(
      {
        message: 'What context should the prompt use?',
        requestedSchema: z.object({ context: z.string().max(1000) }),
      },
      { key: 'user_context' },
    );
    const context = answer.action === 'accept' ? answer.content.context : 'none';
    return { messages: [{ role: 'user', content: { type: 'text', text: `Use this context: ${context}` } }] };
  },
};
