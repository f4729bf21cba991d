/**
 * The fixture server for the official MCP conformance suite (`npm run conformance`): the tools,
 * resources, resource templates and prompts its server scenarios call, by the names they expect.
 *
 * Every tool is a coremcp command, so each call goes through the whole pipeline (authorization,
 * zod validation, the handler against the `conformance` document, an audit record). None of them
 * changes the document, so they are all queries (`readOnly: true`). A command's result is plain
 * JSON: the MCP surface shows it as one text block plus `structuredContent`. The fixtures whose
 * scenarios want image, audio or embedded-resource blocks therefore return those blocks as JSON
 * under `content`; see docs/conformance.md for what the surface needs to send them as real blocks.
 */
import { setTimeout as delay } from 'node:timers/promises';
import {
  type ClientChannel,
  CommandError,
  defineApp,
  defineCommand,
  defineDocument,
  type ElicitForm,
  type JsonObject,
  type SampleAnswer,
} from 'coremcp';
import { z } from 'zod';
import { inputRequiredPrompt, modernCommands, taskCommands } from './modern.js';

/** A 1×1 red PNG. */
export const PNG_BASE64 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';

/** A WAV file with one silent 16-bit mono sample at 8 kHz (46 bytes). */
export const WAV_BASE64 = Buffer.from([
  ...Buffer.from('RIFF'),
  ...[38, 0, 0, 0],
  ...Buffer.from('WAVEfmt '),
  ...[16, 0, 0, 0, 1, 0, 1, 0],
  ...[0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0],
  ...Buffer.from('data'),
  ...[2, 0, 0, 0, 0, 0],
]).toString('base64');

const IMAGE_BLOCK = { type: 'image', data: PNG_BASE64, mimeType: 'image/png' } as const;

/** The document every fixture command reads. Nothing writes it. */
const fixtures = defineDocument('conformance', { suite: '@modelcontextprotocol/conformance' });

/** Waits between steps, giving up (with the handler) when the call is cancelled or times out. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal });
}

/** Asks the client to fill in a form and returns what it answered. */
async function elicit(client: ClientChannel | undefined, form: ElicitForm): Promise<JsonObject> {
  if (!client) throw new CommandError('client_unavailable', 'Elicitation needs an MCP client connection');
  const answer = await client.elicit(form);
  return { action: answer.action, content: answer.content ?? null };
}

/** The text of a sampling answer, if it has any. */
function sampledText(answer: SampleAnswer): string | undefined {
  const blocks = Array.isArray(answer.content) ? answer.content : [answer.content];
  const text = blocks.find((b) => b.type === 'text')?.text;
  return typeof text === 'string' ? text : undefined;
}

// --- content ---------------------------------------------------------------------------------

const simpleText = defineCommand({
  name: 'test_simple_text',
  description: 'Returns a fixed text (conformance: tools-call-simple-text).',
  doc: fixtures,
  readOnly: true,
  handler: () => 'This is a simple text response for testing.',
  content: (text) => [{ type: 'text', text }],
});

const imageContent = defineCommand({
  name: 'test_image_content',
  description: 'Returns a 1x1 PNG image content block (conformance: tools-call-image).',
  doc: fixtures,
  readOnly: true,
  handler: () => ({ content: [IMAGE_BLOCK] }),
  content: (result) => result.content,
});

const audioContent = defineCommand({
  name: 'test_audio_content',
  description: 'Returns a short WAV audio content block (conformance: tools-call-audio).',
  doc: fixtures,
  readOnly: true,
  handler: () => ({ content: [{ type: 'audio' as const, data: WAV_BASE64, mimeType: 'audio/wav' }] }),
  content: (result) => result.content,
});

const embeddedResource = defineCommand({
  name: 'test_embedded_resource',
  description: 'Returns an embedded text resource (conformance: tools-call-embedded-resource).',
  doc: fixtures,
  readOnly: true,
  handler: () => ({
    content: [
      {
        type: 'resource' as const,
        resource: {
          uri: 'test://embedded-resource',
          mimeType: 'text/plain',
          text: 'This is an embedded resource content.',
        },
      },
    ],
  }),
  content: (result) => result.content,
});

const multipleContentTypes = defineCommand({
  name: 'test_multiple_content_types',
  description: 'Returns text, image and embedded resource blocks (conformance: tools-call-mixed-content).',
  doc: fixtures,
  readOnly: true,
  handler: () => ({
    content: [
      { type: 'text' as const, text: 'Multiple content types test:' },
      IMAGE_BLOCK,
      {
        type: 'resource' as const,
        resource: {
          uri: 'test://mixed-content-resource',
          mimeType: 'application/json',
          text: JSON.stringify({ test: 'data', value: 123 }),
        },
      },
    ],
  }),
  content: (result) => result.content,
});

// --- notifications ---------------------------------------------------------------------------

const withLogging = defineCommand({
  name: 'test_tool_with_logging',
  description: 'Sends three info log messages while it runs (conformance: tools-call-with-logging).',
  doc: fixtures,
  readOnly: true,
  handler: async ({ client, signal }) => {
    const steps = ['Tool execution started', 'Tool processing data', 'Tool execution completed'];
    for (const [i, step] of steps.entries()) {
      if (i > 0) await pause(50, signal);
      await client?.log('info', step);
    }
    return { logged: steps.length };
  },
});

const withProgress = defineCommand({
  name: 'test_tool_with_progress',
  description: 'Reports progress 0, 50 and 100 of 100 (conformance: tools-call-with-progress).',
  doc: fixtures,
  readOnly: true,
  handler: async ({ client, signal }) => {
    for (const [i, progress] of [0, 50, 100].entries()) {
      if (i > 0) await pause(50, signal);
      await client?.progress(progress, 100, `Completed step ${progress} of 100`);
    }
    return { progress: 100, total: 100 };
  },
});

const errorHandling = defineCommand({
  name: 'test_error_handling',
  description: 'Always fails with a tool error (conformance: tools-call-error).',
  doc: fixtures,
  readOnly: true,
  handler: () => {
    throw new CommandError('fixture_error', 'This tool intentionally returns an error for testing');
  },
});

const reconnection = defineCommand({
  name: 'test_reconnection',
  description:
    'Returns after a short pause (conformance: server-sse-polling). coremcp keeps no SSE event store, ' +
    'so the stream is not closed mid-call.',
  doc: fixtures,
  readOnly: true,
  handler: async ({ signal }) => {
    await pause(100, signal);
    return 'Reconnection test completed: the result came on the original stream.';
  },
});

// --- requests to the client ------------------------------------------------------------------

const sampling = defineCommand({
  name: 'test_sampling',
  description: 'Asks the client to sample an LLM completion (conformance: tools-call-sampling).',
  doc: fixtures,
  readOnly: true,
  timeoutMs: 30_000,
  input: z.object({ prompt: z.string().max(10_000).describe('The prompt to send to the LLM') }),
  handler: async ({ input, client }) => {
    if (!client) throw new CommandError('client_unavailable', 'Sampling needs an MCP client connection');
    const answer = await client.sample({
      messages: [{ role: 'user', content: { type: 'text', text: input.prompt } }],
      maxTokens: 100,
    });
    return { response: `LLM response: ${sampledText(answer) ?? '(no text)'}`, model: answer.model };
  },
});

const elicitation = defineCommand({
  name: 'test_elicitation',
  description: 'Asks the user for a username and email (conformance: tools-call-elicitation).',
  doc: fixtures,
  readOnly: true,
  timeoutMs: 30_000,
  input: z.object({ message: z.string().max(10_000).describe('The message to show the user') }),
  handler: async ({ input, client }) =>
    elicit(client, {
      message: input.message,
      requestedSchema: {
        type: 'object',
        properties: {
          username: { type: 'string', description: "User's response" },
          email: { type: 'string', description: "User's email address" },
        },
        required: ['username', 'email'],
      },
    }),
});

const elicitationDefaults = defineCommand({
  name: 'test_elicitation_sep1034_defaults',
  description:
    'Asks for a form whose fields all have default values (SEP-1034; conformance: elicitation-sep1034-defaults).',
  doc: fixtures,
  readOnly: true,
  timeoutMs: 30_000,
  handler: async ({ client }) =>
    elicit(client, {
      message: 'Please review and update the form fields with defaults',
      requestedSchema: {
        type: 'object',
        properties: {
          name: { type: 'string', description: 'User name', default: 'John Doe' },
          age: { type: 'integer', description: 'User age', default: 30 },
          score: { type: 'number', description: 'User score', default: 95.5 },
          status: {
            type: 'string',
            description: 'User status',
            enum: ['active', 'inactive', 'pending'],
            default: 'active',
          },
          verified: { type: 'boolean', description: 'Verification status', default: true },
        },
        required: [],
      },
    }),
});

const elicitationEnums = defineCommand({
  name: 'test_elicitation_sep1330_enums',
  description:
    'Asks for a form with the five enum shapes of SEP-1330 (conformance: elicitation-sep1330-enums).',
  doc: fixtures,
  readOnly: true,
  timeoutMs: 30_000,
  handler: async ({ client }) =>
    elicit(client, {
      message: 'Please pick from the enum fields',
      requestedSchema: {
        type: 'object',
        properties: {
          untitledSingle: {
            type: 'string',
            description: 'Untitled single-select',
            enum: ['option1', 'option2', 'option3'],
          },
          titledSingle: {
            type: 'string',
            description: 'Titled single-select',
            oneOf: [
              { const: 'value1', title: 'First Option' },
              { const: 'value2', title: 'Second Option' },
              { const: 'value3', title: 'Third Option' },
            ],
          },
          legacyEnum: {
            type: 'string',
            description: 'Legacy titled single-select (enumNames is deprecated)',
            enum: ['opt1', 'opt2', 'opt3'],
            enumNames: ['Option One', 'Option Two', 'Option Three'],
          },
          untitledMulti: {
            type: 'array',
            description: 'Untitled multi-select',
            items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
          },
          titledMulti: {
            type: 'array',
            description: 'Titled multi-select',
            items: {
              anyOf: [
                { const: 'value1', title: 'First Choice' },
                { const: 'value2', title: 'Second Choice' },
                { const: 'value3', title: 'Third Choice' },
              ],
            },
          },
        },
        required: [],
      },
    }),
});

// --- schemas ---------------------------------------------------------------------------------

/** Registered with an id, so the tool's JSON Schema refers to it through `$defs` (SEP-1613). */
const address = z
  .object({ street: z.string().max(200).optional(), city: z.string().max(200).optional() })
  .meta({ id: 'address', $anchor: 'addressDef' });

/**
 * JSON Schema 2020-12 beyond what zod writes (SEP-2106): the composition and conditional keywords
 * travel as schema metadata, and the same rules are checked by zod, so the schema shown is the one
 * enforced: a phone or an email, and the phone when the contact method is the phone.
 */
const contact = z
  .object({
    name: z.string().max(200).optional(),
    address: address.optional(),
    contactMethod: z.enum(['phone', 'email']).optional(),
    phone: z.string().max(50).optional(),
    email: z.string().max(200).optional(),
  })
  .meta({
    allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
    if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then/else keyword, not a thenable
    then: { required: ['phone'] },
    else: { required: ['email'] },
  })
  .superRefine((value, ctx) => {
    if (value.phone === undefined && value.email === undefined)
      ctx.addIssue({ code: 'custom', message: 'a phone or an email is required', path: [] });
    if (value.contactMethod === 'phone' ? value.phone === undefined : value.email === undefined)
      ctx.addIssue({
        code: 'custom',
        message: value.contactMethod === 'phone' ? 'phone is required' : 'email is required',
        path: [value.contactMethod === 'phone' ? 'phone' : 'email'],
      });
  });

const jsonSchema202012 = defineCommand({
  name: 'json_schema_2020_12_tool',
  description:
    'Tool with JSON Schema 2020-12 features: $defs, $ref, $anchor, additionalProperties, allOf/anyOf, if/then/else (SEP-1613, SEP-2106).',
  doc: fixtures,
  readOnly: true,
  input: contact,
  handler: ({ input }) => ({ received: input }),
});

// --- the app ---------------------------------------------------------------------------------

export default defineApp({
  name: 'coremcp-conformance',
  version: '0.1.0',
  title: 'MCP conformance fixtures',
  instructions:
    'Fixtures for the official MCP conformance suite: every tool is a read-only coremcp command. ' +
    'Not an app for agents.',
  documents: [fixtures],
  commands: [
    simpleText,
    imageContent,
    audioContent,
    embeddedResource,
    multipleContentTypes,
    withLogging,
    withProgress,
    errorHandling,
    reconnection,
    sampling,
    elicitation,
    elicitationDefaults,
    elicitationEnums,
    jsonSchema202012,
    ...modernCommands(fixtures),
    ...taskCommands(fixtures),
  ],
  resources: [
    {
      uri: 'test://static-text',
      name: 'static-text',
      title: 'Static text',
      description: 'A fixed text resource (conformance: resources-read-text).',
      mimeType: 'text/plain',
      read: () => [
        {
          uri: 'test://static-text',
          mimeType: 'text/plain',
          text: 'This is the content of the static text resource.',
        },
      ],
    },
    {
      uri: 'test://static-binary',
      name: 'static-binary',
      title: 'Static binary',
      description: 'A 1x1 PNG image (conformance: resources-read-binary).',
      mimeType: 'image/png',
      read: () => [{ uri: 'test://static-binary', mimeType: 'image/png', blob: PNG_BASE64 }],
    },
    {
      uri: 'test://watched-resource',
      name: 'watched-resource',
      title: 'Watched resource',
      description: 'The resource the subscription scenarios subscribe to (resources-subscribe).',
      mimeType: 'text/plain',
      read: () => [
        { uri: 'test://watched-resource', mimeType: 'text/plain', text: 'Watched resource content' },
      ],
    },
  ],
  resourceTemplates: [
    {
      uriTemplate: 'test://template/{id}/data',
      name: 'template-data',
      title: 'Template data',
      description: 'JSON data for an id (conformance: resources-templates-read).',
      mimeType: 'application/json',
      read: (uri, { id }) => [
        {
          uri,
          mimeType: 'application/json',
          text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
        },
      ],
      complete: { id: (value) => ['1', '2', '3', '123'].filter((id) => id.startsWith(value)) },
    },
  ],
  prompts: [
    inputRequiredPrompt,
    {
      name: 'test_simple_prompt',
      title: 'Simple prompt',
      description: 'A prompt without arguments (conformance: prompts-get-simple).',
      get: () => ({
        messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
      }),
    },
    {
      name: 'test_prompt_with_arguments',
      title: 'Prompt with arguments',
      description: 'A prompt that substitutes two arguments (conformance: prompts-get-with-args).',
      arguments: [
        { name: 'arg1', description: 'First test argument', required: true },
        { name: 'arg2', description: 'Second test argument', required: true },
      ],
      get: (args) => ({
        messages: [
          {
            role: 'user',
            content: {
              type: 'text',
              text: `Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'`,
            },
          },
        ],
      }),
      complete: {
        arg1: (value) => ['paris', 'park', 'party', 'test', 'testing'].filter((v) => v.startsWith(value)),
        arg2: (value) => ['world', 'word', 'work'].filter((v) => v.startsWith(value)),
      },
    },
    {
      name: 'test_prompt_with_embedded_resource',
      title: 'Prompt with an embedded resource',
      description: 'A prompt that embeds a resource (conformance: prompts-get-embedded-resource).',
      arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
      get: (args) => ({
        messages: [
          {
            role: 'user',
            content: {
              type: 'resource',
              resource: {
                uri: args.resourceUri ?? 'test://example-resource',
                mimeType: 'text/plain',
                text: 'Embedded resource content for testing.',
              },
            },
          },
          { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
        ],
      }),
    },
    {
      name: 'test_prompt_with_image',
      title: 'Prompt with an image',
      description: 'A prompt that carries an image (conformance: prompts-get-with-image).',
      get: () => ({
        messages: [
          { role: 'user', content: { ...IMAGE_BLOCK } },
          { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
        ],
      }),
    },
  ],
});
