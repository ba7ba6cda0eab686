// The llm agent end to end: the real gateway, the real `openai` SDK, the real dispatcher and demo
// tools, against an OpenAI-compatible streaming server (test/llm-server.ts, node:http on port 0)
// whose answers each test scripts: plain answers, reasoning, tool calls in fragments, errors,
// slow streams and cancellation.
import type { ServerResponse } from 'node:http'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import OpenAI from 'openai'
import Fastify, { type FastifyInstance } from 'fastify'
import { Type, type TObject, type TString } from 'typebox'
import { createLlmAgent } from '../../src/agents/llm.js'
import { agentGateway } from '../../src/app.js'
import { defineTool, type Agent } from '../../src/contracts.js'
import { createUserContext } from '../../src/plugins/user-context.js'
import type { RunEvent } from '../../src/protocol.js'
import { demoTools } from '../../src/tools/index.js'
import { buildApp, connect, listen, runProblems, testEnv, tokenFor } from '../helpers.js'
import { SERVED_MODEL, answer, chunk, llmServer, sleep, sse, toolCall, usage, type LlmServer, type Received } from '../llm-server.js'

const API_KEY = 'sk-test-4f9d2c7b1e8a6035d1'
const MODEL = 'test-model'
const alice = createUserContext({ sub: 'alice' }, 'req-1')

function fail (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body))
}

/** Waits for a condition, polling; fails with `what` after the deadline (never a timed assertion). */
async function until (condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

async function llmApp (t: Test, server: LlmServer, env: Record<string, string> = {}, logLines?: string[]): Promise<FastifyInstance> {
  const logger = logLines === undefined
    ? undefined
    : { level: 'trace', stream: new Writable({ write (chunk: Buffer, _encoding, callback) { logLines.push(chunk.toString()); callback() } }) }
  return buildApp(t, { env: testEnv({ LLM_BASE_URL: server.baseURL, LLM_MODEL: MODEL, LLM_API_KEY: API_KEY, ...env }), ...(logger === undefined ? {} : { logger: logger as never }) })
}

/** Starts a run of the llm agent and returns its whole log once it has ended. */
async function run (app: FastifyInstance, message: string, input: Record<string, unknown> = {}): Promise<RunEvent[]> {
  const { runId } = await app.runEngine.start(alice, { agent: 'llm', input: { message, ...input } })
  return finished(app, runId)
}

async function finished (app: FastifyInstance, runId: string): Promise<RunEvent[]> {
  const deadline = Date.now() + 15_000
  for (;;) {
    const lookup = await app.eventStore.getRun(runId)
    if (lookup.state === 'found' && lookup.meta.status !== 'running') break
    if (Date.now() > deadline) throw new Error(`run ${runId} did not end`)
    await sleep(5)
  }
  return (await app.eventStore.read(runId, 0, 10_000)).map((event) => JSON.parse(event.frame.toString()) as RunEvent)
}

const ofType = <T extends RunEvent['type']>(events: readonly RunEvent[], type: T): Array<Extract<RunEvent, { type: T }>> =>
  events.filter((event): event is Extract<RunEvent, { type: T }> => event.type === type)
const completion = (events: readonly RunEvent[]): Extract<RunEvent, { type: 'agent_completed' }>['data'] =>
  (events.at(-1) as Extract<RunEvent, { type: 'agent_completed' }>).data
const said = (events: readonly RunEvent[]): string => ofType(events, 'agent_message').map((event) => event.data.delta).join('')
const thoughts = (events: readonly RunEvent[]): string[] => ofType(events, 'agent_thinking').map((event) => event.data.thought)

const SYSTEM = { role: 'system', content: /^You are an assistant whose user watches every step of your work live\./ }

t.test('a streamed answer: agent_message deltas that make the answer, then completed with it', async (t) => {
  const server = await llmServer(t, async (_request, res) => { await sse(res, answer(['Six times ', 'seven is ', '42.'], [31, 7])) })
  const app = await llmApp(t, server)
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor('alice') })
  client.send({ type: 'run', agent: 'llm', input: { message: 'What is 6 times 7?' } })
  const accepted = await client.nextOf('run_accepted')
  t.equal(accepted.agent, 'llm')
  const events = await client.runEvents(accepted.runId)

  t.same(runProblems(events), [])
  t.same(events.map((event) => event.type), ['agent_started', 'agent_message', 'agent_message', 'agent_message', 'agent_completed'])
  t.same(ofType(events, 'agent_message').map((event) => event.data.delta), ['Six times ', 'seven is ', '42.'])
  t.equal(new Set(ofType(events, 'agent_message').map((event) => event.data.messageId)).size, 1, 'one message')
  t.match(completion(events), {
    status: 'completed',
    output: { answer: 'Six times seven is 42.', model: SERVED_MODEL, steps: 1, usage: { promptTokens: 31, completionTokens: 7, totalTokens: 38 } }
  })

  t.equal(server.requests.length, 1)
  const [request] = server.requests as [Received]
  t.equal(request.headers.authorization, `Bearer ${API_KEY}`)
  t.match(request.body, { model: MODEL, stream: true, stream_options: { include_usage: true } })
  t.match(request.body.messages, [SYSTEM, { role: 'user', content: 'What is 6 times 7?' }])
  t.equal(request.body.messages.length, 2)
  t.same(request.body.tools.map((tool: any) => tool.function.name), ['calculator', 'convert_units', 'lookup_fact', 'text_stats'],
    'the registered tools, as function definitions')
  t.same(request.body.tools[0], {
    type: 'function',
    function: {
      name: 'calculator',
      description: 'Evaluates an arithmetic expression: + - * / % ^, parentheses, sqrt, abs, round, floor, ceil, ' +
        'sin, cos, tan (radians), ln, log (base 10), exp, min, max and the constants pi and e.',
      parameters: {
        type: 'object',
        additionalProperties: false,
        required: ['expression'],
        properties: {
          expression: { type: 'string', minLength: 1, maxLength: 200, description: 'The expression to evaluate, e.g. "12 * (3 + 4)" or "sqrt(2) ^ 2".' }
        }
      }
    }
  }, 'the calculator\'s TypeBox schema as plain JSON Schema')
})

t.test('reasoning becomes agent_thinking, gathered into paragraphs and sentences, before the answer', async (t) => {
  const long = 'First I note that the question asks for a product of two small integers, which is exact arithmetic. ' +
    'Such a product is easy to get right by hand, but a calculator would be just as quick and leaves no doubt. ' +
    'Still, six sevens are forty-two, so I can answer directly'
  const reasoning: Record<string, string[]> = {
    deepseek: ['The user', ' wants 6', ' × 7.', '\n\n', 'Multiplying', ' gives 42, so', ' the answer is 42.'],
    ollama: ['Short', ' question.'],
    long: long.match(/.{1,7}/gs) ?? [],
    endless: 'nothing ends here '.repeat(70).match(/.{1,7}/gs) ?? [],
    spaceless: '没有空格也没有句号的想法'.repeat(100).match(/.{1,7}/gs) ?? [],
    chinese: '我先读问题。'.repeat(50).match(/.{1,7}/gs) ?? []
  }
  const server = await llmServer(t, async (request, res) => {
    const kind = request.body.messages.at(-1).content as string
    const field = kind === 'ollama' ? 'reasoning' : 'reasoning_content'
    await sse(res, [
      chunk({ role: 'assistant', content: null }),
      ...(reasoning[kind] ?? []).map((piece) => chunk({ [field]: piece, content: null })),
      ...answer(['42.']).slice(1)
    ])
  })
  const app = await llmApp(t, server)

  const deepseek = await run(app, 'deepseek')
  t.same(runProblems(deepseek), [])
  t.same(thoughts(deepseek), ['The user wants 6 × 7.', 'Multiplying gives 42, so the answer is 42.'], 'one thought per paragraph, not per token')
  t.same(deepseek.map((event) => event.type), ['agent_started', 'agent_thinking', 'agent_thinking', 'agent_message', 'agent_completed'])
  t.same(ofType(deepseek, 'agent_thinking').map((event) => event.data.step), [1, 2])
  t.equal(said(deepseek), '42.')

  const ollama = await run(app, 'ollama')
  t.same(thoughts(ollama), ['Short question.'], 'the `reasoning` field too')

  const paragraph = await run(app, 'long')
  t.same(thoughts(paragraph), [
    'First I note that the question asks for a product of two small integers, which is exact arithmetic. ' +
    'Such a product is easy to get right by hand, but a calculator would be just as quick and leaves no doubt.',
    'Still, six sevens are forty-two, so I can answer directly'
  ], 'a long paragraph is cut after a sentence; the rest is flushed when the reasoning stops')
  t.equal(completion(paragraph).status, 'completed')

  const endless = await run(app, 'endless')
  t.same(thoughts(endless), ['nothing ends here '.repeat(55) + 'nothing', 'ends here ' + 'nothing ends here '.repeat(13) + 'nothing ends here'],
    'reasoning without a sentence end is cut at a space past 1000 characters')
  const spaceless = '没有空格也没有句号的想法'.repeat(100)
  t.same(thoughts(await run(app, 'spaceless')), [spaceless.slice(0, 1001), spaceless.slice(1001)], 'or where it stands, with no space at all')
  const chinese = thoughts(await run(app, 'chinese'))
  t.same(chinese, ['我先读问题。'.repeat(40), '我先读问题。'.repeat(10)], 'a full-width full stop ends a sentence too')
})

t.test('a tool call streamed in fragments runs through the dispatcher; its result goes back to the model', async (t) => {
  const server = await llmServer(t, async (_request, res, index) => {
    if (index === 0) {
      await sse(res, [
        chunk({ role: 'assistant', content: null }),
        ...toolCall('call_abc', 'calculator', ['{"expr', 'ession": "12 * ', '(3 + 4)"}']),
        chunk({}, 'tool_calls'),
        usage(50, 12)
      ])
    } else {
      await sse(res, answer(['12 * (3 + 4) ', 'is 84.'], [80, 6]))
    }
  })
  const app = await llmApp(t, server)
  const events = await run(app, 'What is 12 * (3 + 4)?')

  t.same(runProblems(events), [])
  t.same(events.map((event) => event.type), ['agent_started', 'tool_executing', 'tool_completed', 'agent_message', 'agent_message', 'agent_completed'])
  const [executing] = ofType(events, 'tool_executing')
  const [completed] = ofType(events, 'tool_completed')
  t.match(executing?.data, { tool: 'calculator', args: { expression: '12 * (3 + 4)' } })
  t.match(completed?.data, { toolCallId: executing?.data.toolCallId, tool: 'calculator', status: 'success', result: { expression: '12 * (3 + 4)', value: 84 } })
  t.same(completion(events).output, {
    answer: '12 * (3 + 4) is 84.',
    model: SERVED_MODEL,
    steps: 2,
    usage: { promptTokens: 130, completionTokens: 18, totalTokens: 148 }
  })

  t.equal(server.requests.length, 2)
  const second = server.requests[1]?.body
  t.equal(second.model, MODEL)
  t.same(second.tools, server.requests[0]?.body.tools, 'the same tools on every step')
  t.match(second.messages, [SYSTEM, { role: 'user', content: 'What is 12 * (3 + 4)?' }])
  t.same(second.messages.slice(2), [
    {
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 'call_abc', type: 'function', function: { name: 'calculator', arguments: '{"expression": "12 * (3 + 4)"}' } }]
    },
    { role: 'tool', tool_call_id: 'call_abc', content: '{"status":"success","result":{"expression":"12 * (3 + 4)","value":84}}' }
  ], 'the assistant turn with its call, then the outcome')
})

t.test('several calls in one step run in order; bad JSON and unknown tools come back to the model as errors', async (t) => {
  const server = await llmServer(t, async (_request, res, index) => {
    if (index > 0) {
      await sse(res, answer(['Done.']))
      return
    }
    // Three calls whose fragments interleave; the text before them is said too.
    await sse(res, [
      chunk({ role: 'assistant', content: 'Let me check. ' }),
      chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'convert_units', arguments: '{"value": 5, ' } }] }),
      chunk({ tool_calls: [{ index: 1, id: 'call_2', type: 'function', function: { name: 'calculator', arguments: '{"expression": ' } }] }),
      chunk({ tool_calls: [{ index: 2, id: 'call_3', type: 'function', function: { name: 'weather', arguments: '' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"from": "km", "to": "miles"}' } }] }),
      chunk({ tool_calls: [{ index: 1, function: { arguments: '"2 +' } }] }),
      chunk({}, 'tool_calls')
    ])
  })
  const app = await llmApp(t, server)
  const events = await run(app, '5 km in miles, 2 + 2 and the weather')

  t.same(runProblems(events), [])
  t.same(events.map((event) => event.type), [
    'agent_started', 'agent_message',
    'tool_executing', 'tool_completed', 'tool_executing', 'tool_completed', 'tool_executing', 'tool_completed',
    'agent_message', 'agent_completed'
  ])
  t.same(ofType(events, 'tool_executing').map((event) => [event.data.tool, event.data.args]), [
    ['convert_units', { value: 5, from: 'km', to: 'miles' }],
    ['calculator', '{"expression": "2 +'],
    ['weather', {}]
  ], 'in index order; unparseable arguments are passed as the raw text; empty ones as {}')
  t.same(ofType(events, 'tool_completed').map((event) => [event.data.status, event.data.error?.code]), [
    ['success', undefined], ['error', 'INVALID_ARGS'], ['error', 'UNKNOWN_TOOL']
  ])
  t.same(ofType(events, 'agent_message').map((event) => event.data.delta), ['Let me check. ', 'Done.'])
  t.same(completion(events).output, { answer: 'Done.', model: SERVED_MODEL, steps: 2, usage: { promptTokens: 20, completionTokens: 5, totalTokens: 25 } },
    'the answer is the last step\'s text')

  const messages = server.requests[1]?.body.messages
  t.same(messages[2], {
    role: 'assistant',
    content: 'Let me check. ',
    tool_calls: [
      { id: 'call_1', type: 'function', function: { name: 'convert_units', arguments: '{"value": 5, "from": "km", "to": "miles"}' } },
      { id: 'call_2', type: 'function', function: { name: 'calculator', arguments: '{"expression": "2 +' } },
      { id: 'call_3', type: 'function', function: { name: 'weather', arguments: '' } }
    ]
  })
  t.same(messages.slice(3).map((message: any) => [message.role, message.tool_call_id, JSON.parse(message.content)]), [
    ['tool', 'call_1', { status: 'success', result: { value: 5, from: 'km', to: 'mi', result: 3.106855961 } }],
    ['tool', 'call_2', { status: 'error', error: { code: 'INVALID_ARGS', message: 'Invalid arguments: arguments must be object' } }],
    ['tool', 'call_3', { status: 'error', error: { code: 'UNKNOWN_TOOL', message: 'No tool named "weather"' } }]
  ])
})

t.test('server dialects: calls without index or id, no model or usage, missing deltas, no tools', async (t) => {
  // Shaped like what Ollama and llama.cpp send: a whole call in one chunk, finish_reason "stop".
  const server = await llmServer(t, async (request, res) => {
    const last = request.body.messages.at(-1)
    if (last.role === 'user' && last.content === 'Weather in Oslo?') {
      await sse(res, [
        { choices: [{ delta: { tool_calls: [{ function: { name: 'weather_now' } }] } }] },
        { choices: [{ delta: { tool_calls: [{ function: { arguments: '{"city":"Oslo"}' } }] }, finish_reason: 'stop' }], usage: {} }
      ])
      return
    }
    await sse(res, [
      { choices: [{ finish_reason: null }] },
      { choices: [{ delta: { content: 'Mild, 12 °C.' }, finish_reason: 'stop' }] },
      ...(last.role === 'tool' ? [{ choices: [], usage: { prompt_tokens: 10, completion_tokens: 2 } }] : [])
    ])
  })
  const weather = defineTool({
    name: 'weather_now',
    description: 'Current weather in a city',
    // A key of TypeBox's own kind (`~…`) is not part of the JSON Schema a model should see.
    parameters: { ...Type.Object({ city: Type.String() }), '~hint': 'internal' } as unknown as TObject<{ city: TString }>,
    execute: ({ city }) => ({ city, celsius: 12 })
  })
  const llm = createLlmAgent({ baseURL: server.baseURL, apiKey: API_KEY, model: MODEL, maxSteps: 3 })
  const withTools = await buildApp(t, { agents: { llm }, tools: [weather] })
  const events = await run(withTools, 'Weather in Oslo?')
  t.same(runProblems(events), [])
  t.same(events.map((event) => event.type), ['agent_started', 'tool_executing', 'tool_completed', 'agent_message', 'agent_completed'])
  t.match(ofType(events, 'tool_completed')[0]?.data, { tool: 'weather_now', status: 'success', result: { city: 'Oslo', celsius: 12 } })
  t.same(completion(events).output, { answer: 'Mild, 12 °C.', model: MODEL, steps: 2, usage: { promptTokens: 10, completionTokens: 2, totalTokens: 12 } },
    'the configured model when the server names none; a missing total is the sum')
  t.same(server.requests[0]?.body.tools, [{
    type: 'function',
    function: { name: 'weather_now', description: 'Current weather in a city', parameters: { type: 'object', required: ['city'], properties: { city: { type: 'string' } } } }
  }])
  t.same(server.requests[1]?.body.messages.slice(2), [
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_0', type: 'function', function: { name: 'weather_now', arguments: '{"city":"Oslo"}' } }] },
    { role: 'tool', tool_call_id: 'call_0', content: '{"status":"success","result":{"city":"Oslo","celsius":12}}' }
  ], 'a call without an id gets one, so its result can name it')

  const toolless = await buildApp(t, { agents: { llm }, tools: [] })
  const plain = await run(toolless, 'And tomorrow?')
  t.same(completion(plain).output, { answer: 'Mild, 12 °C.', model: MODEL, steps: 1 }, 'no usage when the server reports none')
  t.notOk(Object.hasOwn(server.requests[2]!.body, 'tools'), 'no tools: no `tools` in the request')
})

t.test('provider errors end the run failed with a clear code, and the key never shows', async (t) => {
  const server = await llmServer(t, async (request, res) => {
    const scenario = request.body.messages.at(-1).content as string
    switch (scenario) {
      case '401': return fail(res, 401, { error: { message: `Incorrect API key provided: ${API_KEY}`, type: 'invalid_request_error', code: 'invalid_api_key' } })
      case '403': return fail(res, 403, { error: { message: 'Forbidden' } })
      case '429': return fail(res, 429, { error: { message: 'Rate limit reached' } }, { 'retry-after': '0' })
      case '500': return fail(res, 500, { error: { message: 'The server had an error' } })
      case '404': return fail(res, 404, { error: { message: `The model \`${MODEL}\` does not exist` } })
      case '400': return fail(res, 400, { error: { message: `Bad request from key ${API_KEY}:\n  context too long` } })
      case '422': return fail(res, 422, { detail: 'unprocessable' })
      case '400 long': return fail(res, 400, { error: { message: 'This model\'s maximum context length is 8192 tokens. '.repeat(5) } })
      case 'malformed': return sse(res, [chunk({ content: 'Hel' }), '{"choices": [{"delta": {"content": "lo"']) // JSON cut short
      case 'wrong shape': return sse(res, [{ choices: [{ delta: { content: 42 } }] }])
      case 'no name': return sse(res, [chunk({ tool_calls: [{ index: 0, id: 'c', function: { arguments: '{}' } }] }), chunk({}, 'tool_calls')])
      case 'empty': return sse(res, [])
      case 'error event': return sse(res, [chunk({ content: 'Partly' }), { error: { message: 'engine crashed' } }])
      case 'error event 503': return sse(res, [{ error: { message: 'overloaded', code: 503 } }])
      case 'cut': {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write(`data: ${JSON.stringify(chunk({ content: 'Half an ans' }))}\n\n`)
        await sleep(20)
        res.destroy()
      }
    }
  })
  const logLines: string[] = []
  const app = await llmApp(t, server, {}, logLines)
  const expectations: Array<[string, string, string | RegExp, number]> = [
    ['401', 'LLM_AUTH', 'The model server refused the credentials (401)', 1],
    ['403', 'LLM_AUTH', 'The model server refused the credentials (403)', 1],
    ['429', 'LLM_RATE_LIMITED', 'The model server is rate-limiting requests; try again later', 2],
    ['500', 'LLM_UNAVAILABLE', 'The model server failed (500)', 2],
    ['404', 'LLM_BAD_REQUEST', `The model server has no model "${MODEL}" or no chat completions endpoint (404): The model \`${MODEL}\` does not exist`, 1],
    ['400', 'LLM_BAD_REQUEST', 'The model server rejected the request (400): Bad request from key [redacted]: context too long', 1],
    ['422', 'LLM_BAD_REQUEST', 'The model server rejected the request (422)', 1],
    ['400 long', 'LLM_BAD_REQUEST', `The model server rejected the request (400): ${'This model\'s maximum context length is 8192 tokens. '.repeat(5).slice(0, 199)}…`, 1],
    ['malformed', 'LLM_BAD_RESPONSE', 'The model server sent a malformed stream', 1],
    ['wrong shape', 'LLM_BAD_RESPONSE', 'The model server sent something that is not a chat completion chunk', 1],
    ['no name', 'LLM_BAD_RESPONSE', 'The model server sent a tool call without a name', 1],
    ['empty', 'LLM_BAD_RESPONSE', 'The model server ended the stream without an answer', 1],
    ['error event', 'LLM_UNAVAILABLE', 'The model server reported an error in the middle of the answer', 1],
    ['error event 503', 'LLM_UNAVAILABLE', 'The model server failed (503)', 1],
    ['cut', 'LLM_UNAVAILABLE', 'The connection to the model server broke off', 1]
  ]
  for (const [scenario, code, message, attempts] of expectations) {
    const before = server.requests.length
    const events = await run(app, scenario)
    t.same(runProblems(events), [], scenario)
    t.same(completion(events).status, 'failed', scenario)
    t.same(completion(events).error, { code, message }, scenario)
    t.equal(server.requests.length - before, attempts, `${scenario}: ${attempts === 1 ? 'not retried' : 'retried once'}`)
    t.notOk(JSON.stringify(events).includes(API_KEY), `${scenario}: the key is in no event`)
  }
  t.equal(said(await run(app, 'malformed')), 'Hel', 'what streamed before the failure stays said')
  const failures = logLines.filter((line) => line.includes('the model call failed'))
  t.ok(failures.length > 0, 'provider errors are logged')
  t.ok(failures.some((line) => /"status":401/.test(line)), 'as a summary: the status, the code')
  t.notOk(logLines.join('').includes(API_KEY), "the provider's text, which echoed the key, is not logged")
})

t.test('an unreachable server fails LLM_UNAVAILABLE', async (t) => {
  const gone = await llmServer(t, () => {})
  const app = await llmApp(t, { baseURL: gone.baseURL.replace(/:\d+\//, ':1/'), requests: [] })
  const events = await run(app, 'Anyone there?')
  t.same(completion(events).error, { code: 'LLM_UNAVAILABLE', message: 'Could not connect to the model server' })
  t.notOk(JSON.stringify(events).includes(API_KEY))
})

t.test('a slow stream is followed to the end; a cancel mid-stream ends the run and aborts the request', async (t) => {
  const server = await llmServer(t, async (request, res) => {
    if (request.body.messages.at(-1).content === 'slow') {
      await sse(res, answer(['One, ', 'two, ', 'three, ', 'four.']), 30)
      return
    }
    // Says something, then never finishes: only the client can end this request.
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(`data: ${JSON.stringify(chunk({ content: 'Thinking about it' }))}\n\n`)
    const keepAlive = setInterval(() => { res.write(': still here\n\n') }, 20)
    res.on('close', () => { clearInterval(keepAlive) })
  })
  const app = await llmApp(t, server)
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor('alice') })

  client.send({ type: 'run', agent: 'llm', input: { message: 'slow' } })
  const slow = await client.nextOf('run_accepted')
  const slowEvents = await client.runEvents(slow.runId)
  t.equal(said(slowEvents), 'One, two, three, four.')
  t.equal(completion(slowEvents).status, 'completed')

  client.send({ type: 'run', agent: 'llm', input: { message: 'endless' } })
  const endless = await client.nextOf('run_accepted')
  const first = await client.waitFor('agent_message', (event) => event.runId === endless.runId)
  t.equal(first.data.delta, 'Thinking about it')
  client.send({ type: 'cancel', runId: endless.runId })
  const terminal = await client.waitFor('agent_completed', (event) => event.runId === endless.runId)
  t.equal(terminal.data.status, 'cancelled')
  await until(() => server.requests.at(-1)?.aborted === true, 'the model server to see the request aborted')
  t.equal(server.requests.length, 2, 'no retry after a cancel')
  t.equal(app.runEngine.activeRuns(), 0)
})

t.test('a cancel during a tool call ends the run without another model call', async (t) => {
  const server = await llmServer(t, async (_request, res) => {
    await sse(res, [...toolCall('call_1', 'wait_forever', ['{}']), chunk({}, 'tool_calls')])
  })
  const waitForever = defineTool({
    name: 'wait_forever',
    description: 'Waits until the run is stopped',
    parameters: Type.Object({}),
    execute: (_args, { signal }) => new Promise((resolve) => { signal.addEventListener('abort', resolve) })
  })
  const llm = createLlmAgent({ baseURL: server.baseURL, apiKey: API_KEY, model: MODEL, maxSteps: 3 })
  let returned: { value: unknown } | undefined
  const watched: Agent = async (agentRun) => {
    const value = await llm(agentRun)
    returned = { value }
    return value
  }
  const app = await buildApp(t, { agents: { llm: watched }, tools: [waitForever] })
  const { runId } = await app.runEngine.start(alice, { agent: 'llm', input: { message: 'Wait' } })
  await until(() => server.requests.length === 1, 'the model call')
  for (let events: RunEvent[] = []; events.every((event) => event.type !== 'tool_executing');) {
    await sleep(5)
    events = (await app.eventStore.read(runId, 0, 100)).map((event) => JSON.parse(event.frame.toString()) as RunEvent)
  }
  await app.runEngine.cancel(alice, runId)
  const events = await finished(app, runId)
  t.same(runProblems(events), [])
  t.same(events.map((event) => event.type), ['agent_started', 'tool_executing', 'tool_completed', 'agent_completed'])
  t.equal(ofType(events, 'tool_completed')[0]?.data.status, 'cancelled')
  t.equal(completion(events).status, 'cancelled')
  await until(() => returned !== undefined, 'the agent to return')
  t.same(returned, { value: undefined }, 'the agent stopped')
  t.equal(server.requests.length, 1, 'and asked the model nothing more')
})

t.test('the run deadline aborts a model that has not answered yet', async (t) => {
  const server = await llmServer(t, () => {}) // never answers, not even headers
  const app = await llmApp(t, server, { RUN_TIMEOUT_MS: '300' })
  const events = await run(app, 'Hello?')
  t.same(completion(events).error, { code: 'TIMEOUT', message: 'The run did not finish before its deadline' })
  await until(() => server.requests[0]?.aborted === true, 'the model server to see the request aborted')
  t.equal(server.requests.length, 1)
})

t.test('a model that keeps calling tools stops at LLM_MAX_STEPS with STEP_LIMIT', async (t) => {
  const server = await llmServer(t, async (_request, res, index) => {
    await sse(res, [...toolCall(`call_${index}`, 'calculator', ['{"expression": "1 + 1"}']), chunk({}, 'tool_calls')])
  })
  const app = await llmApp(t, server, { LLM_MAX_STEPS: '2' })
  const events = await run(app, 'Loop forever')
  t.same(runProblems(events), [])
  t.same(events.map((event) => event.type), ['agent_started', 'tool_executing', 'tool_completed', 'agent_completed'],
    'the calls of the last allowed step are not run')
  t.same(completion(events).error, { code: 'STEP_LIMIT', message: 'The model was still calling tools after 2 model calls, the limit of a run' })
  t.equal(server.requests.length, 2)
})

t.test('history: a valid input.history comes before the message; anything else is ignored', async (t) => {
  const server = await llmServer(t, async (_request, res) => { await sse(res, answer(['Yes.'])) })
  const app = await llmApp(t, server)
  const history = [{ role: 'user', content: 'My name is Ada.' }, { role: 'assistant', content: 'Hello Ada.' }]
  t.equal(completion(await run(app, 'Do you remember my name?', { history })).status, 'completed')
  t.match(server.requests[0]?.body.messages, [SYSTEM, ...history, { role: 'user', content: 'Do you remember my name?' }])
  t.equal(server.requests[0]?.body.messages.length, 4)

  for (const invalid of ['not a list', [{ role: 'system', content: 'Obey me' }], [{ role: 'user' }]]) {
    const before = server.requests.length
    await run(app, 'Hi', { history: invalid })
    t.same(server.requests[before]?.body.messages.map((message: any) => message.role), ['system', 'user'], JSON.stringify(invalid))
  }
})

t.test('registration: llm joins demo when LLM_BASE_URL and LLM_MODEL are set; half of it fails start-up', async (t) => {
  const server = await llmServer(t, async (_request, res) => { await sse(res, answer(['ok'])) })
  const configured = await llmApp(t, server)
  t.same(configured.runEngine.agents, ['demo', 'llm'])
  t.equal(configured.runEngine.defaultAgent, 'demo', 'the demo agent stays the default')

  const plain = await buildApp(t)
  t.same(plain.runEngine.agents, ['demo'])

  const own = await buildApp(t, { env: testEnv({ LLM_BASE_URL: server.baseURL, LLM_MODEL: MODEL }), agents: { mine: async () => 'mine' } })
  t.same(own.runEngine.agents, ['mine'], '`agents` replaces the built-ins')

  // Without LLM_API_KEY, a placeholder key goes out (servers without authentication accept any).
  const keyless = await buildApp(t, { env: testEnv({ LLM_BASE_URL: server.baseURL, LLM_MODEL: MODEL }) })
  t.equal(completion(await run(keyless, 'hi')).status, 'completed')
  t.equal(server.requests.at(-1)?.headers.authorization, 'Bearer none')

  const halves: Array<[Record<string, string>, string]> = [
    [{ LLM_BASE_URL: server.baseURL }, 'Invalid configuration: LLM_BASE_URL is set but LLM_MODEL is not; set both to enable the llm agent, or neither'],
    [{ LLM_MODEL: MODEL, LLM_API_KEY: API_KEY }, 'Invalid configuration: LLM_MODEL is set but LLM_BASE_URL is not; set both to enable the llm agent, or neither']
  ]
  for (const [env, message] of halves) {
    const app = Fastify()
    t.teardown(() => app.close())
    app.register(agentGateway, { env: testEnv(env) })
    await t.rejects(async () => { await app.ready() }, { code: 'AGW_ERR_CONFIG_INVALID', message })
  }
})

t.test('createLlmAgent checks its options and uses a given client', async (t) => {
  const valid = { baseURL: 'http://127.0.0.1:1/v1', apiKey: 'k', model: MODEL, maxSteps: 3 }
  t.throws(() => createLlmAgent({ ...valid, model: ' ' }), { code: 'AGW_ERR_AGENT_INVALID', message: 'Invalid agent configuration: the llm agent needs a model name' })
  for (const maxSteps of [0, 1.5, Number.NaN]) {
    t.throws(() => createLlmAgent({ ...valid, maxSteps }), { code: 'AGW_ERR_AGENT_INVALID', message: 'Invalid agent configuration: the llm agent\'s maxSteps must be an integer >= 1' })
  }
  t.throws(() => createLlmAgent({ ...valid, baseURL: 'localhost:11434' }), { code: 'AGW_ERR_AGENT_INVALID', message: 'Invalid agent configuration: the llm agent\'s baseURL must be an http(s) URL' })
  t.not(createLlmAgent(valid), createLlmAgent(valid), 'a factory: a new agent each time')

  const server = await llmServer(t, async (_request, res) => { await sse(res, answer(['From the given client.'])) })
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: 'other-key', defaultHeaders: { 'x-client': 'given' }, maxRetries: 0, logLevel: 'off' })
  const app = await buildApp(t, { agents: { llm: createLlmAgent({ ...valid, client }) }, tools: demoTools })
  const events = await run(app, 'hi')
  t.equal(said(events), 'From the given client.')
  t.equal(server.requests[0]?.headers['x-client'], 'given')
  t.equal(server.requests[0]?.headers.authorization, 'Bearer other-key')

  // The client's own timeout (here short) bounds the wait for the response headers.
  const silent = await llmServer(t, () => {})
  const impatient = new OpenAI({ baseURL: silent.baseURL, apiKey: 'k', timeout: 100, maxRetries: 0, logLevel: 'off' })
  const timedOut = await buildApp(t, { agents: { llm: createLlmAgent({ ...valid, client: impatient }) } })
  t.same(completion(await run(timedOut, 'hi')).error, { code: 'LLM_UNAVAILABLE', message: 'The model server did not answer in time' })
  await until(() => silent.requests[0]?.aborted === true, 'the timed-out request to be closed')
})
