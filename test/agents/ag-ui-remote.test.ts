// Remote AG-UI agents behind the gateway: real AG-UI servers on real ports replay what LangGraph's,
// CrewAI's and Mastra's AG-UI integrations send, and a user's WebSocket sees the run.
import t, { type Test } from 'tap'
import { HttpAgent } from '@ag-ui/client'
import { EventType, type BaseEvent, type RunAgentInput } from '@ag-ui/core'
import type { FastifyInstance } from 'fastify'
import { createAgUiAgent, type AgUiAgentOptions } from '../../src/agents/ag-ui-remote.js'
import type { RunEvent } from '../../src/protocol.js'
import { buildApp, connect, listen, runProblems, testEnv, tokenFor, type TestClient } from '../helpers.js'
import { REDIS_URL, freePort, redisSkip, testPrefix } from '../redis.js'
import { agUiServer, run, type Step } from '../ag-ui-server.js'

// Every rejection of the whole file, wherever it comes from: none may go unhandled (HttpAgent 1.0
// leaks one when a stream is cut; the remote agent must not).
const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => { unhandled.push(reason) })
t.teardown(() => {
  if (unhandled.length > 0) throw new Error(`unhandled rejections: ${unhandled.map(String).join('; ')}`)
})

const ev = (type: EventType, fields: Record<string, unknown> = {}): BaseEvent => ({ type, ...fields })

interface Gateway {
  readonly app: FastifyInstance
  readonly client: TestClient
  /** Starts a run of `agent` and resolves with all its events. */
  runOf(input?: Record<string, unknown>, agent?: string): Promise<RunEvent[]>
}

async function gateway (t: Test, agents: Record<string, AgUiAgentOptions>, env: Record<string, string> = {}): Promise<Gateway> {
  const app = await buildApp(t, {
    agents: Object.fromEntries(Object.entries(agents).map(([name, options]) => [name, createAgUiAgent(options)])),
    env: testEnv(env)
  })
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor('alice') })
  return {
    app,
    client,
    async runOf (input = { message: 'hello' }, agent = 'remote') {
      client.send({ type: 'run', agent, input })
      const { runId } = await client.waitFor('run_accepted')
      return await client.runEvents(runId, 15_000)
    }
  }
}

const summary = (events: readonly RunEvent[]): unknown[] => events.map((event) => {
  switch (event.type) {
    case 'agent_thinking': return ['thinking', event.data.thought, event.data.step]
    case 'agent_message': return ['message', event.data.delta]
    case 'tool_executing': return ['executing', event.data.tool, event.data.args]
    case 'tool_completed': return ['completed', event.data.tool, event.data.status, event.data.result ?? event.data.error?.code]
    case 'agent_completed': return ['end', event.data.status, event.data.error?.code ?? event.data.output]
    default: return [event.type]
  }
})

const terminal = (events: readonly RunEvent[]) => {
  const last = events.at(-1)
  if (last?.type !== 'agent_completed') throw new Error('no terminal event')
  return last.data
}

t.test('a LangGraph-shaped run: steps, reasoning, text, a tool call with its result, state and raw events', async (t) => {
  const remote = await agUiServer(t)
  const langgraph = (input: RunAgentInput) => ({
    steps: run(input, [
      ev(EventType.STEP_STARTED, { stepName: 'agent' }),
      ev(EventType.REASONING_START, { messageId: 'r1' }),
      ev(EventType.REASONING_MESSAGE_START, { messageId: 'r1', role: 'reasoning' }),
      ev(EventType.REASONING_MESSAGE_CONTENT, { messageId: 'r1', delta: 'The user wants the weather; ' }),
      ev(EventType.REASONING_MESSAGE_CONTENT, { messageId: 'r1', delta: 'I will look it up.' }),
      ev(EventType.REASONING_MESSAGE_END, { messageId: 'r1' }),
      ev(EventType.REASONING_END, { messageId: 'r1' }),
      ev(EventType.RAW, { event: { event: 'on_chat_model_stream', data: {} }, source: 'langgraph' }),
      ev(EventType.TEXT_MESSAGE_START, { messageId: 'ai-1', role: 'assistant' }),
      ev(EventType.TEXT_MESSAGE_CONTENT, { messageId: 'ai-1', delta: 'Let me check.' }),
      ev(EventType.TEXT_MESSAGE_END, { messageId: 'ai-1' }),
      ev(EventType.TOOL_CALL_START, { toolCallId: 'call_1', toolCallName: 'get_weather', parentMessageId: 'ai-1' }),
      ev(EventType.TOOL_CALL_ARGS, { toolCallId: 'call_1', delta: '{"city":' }),
      ev(EventType.TOOL_CALL_ARGS, { toolCallId: 'call_1', delta: '"Paris"}' }),
      ev(EventType.TOOL_CALL_END, { toolCallId: 'call_1' }),
      ev(EventType.STATE_SNAPSHOT, { snapshot: { city: 'Paris' } }),
      ev(EventType.STEP_FINISHED, { stepName: 'agent' }),
      ev(EventType.STEP_STARTED, { stepName: 'tools' }),
      ev(EventType.TOOL_CALL_RESULT, { messageId: 'tool-1', toolCallId: 'call_1', content: '{"temp":21}', role: 'tool' }),
      ev(EventType.STEP_FINISHED, { stepName: 'tools' }),
      ev(EventType.STATE_DELTA, { delta: [{ op: 'add', path: '/temp', value: 21 }] }),
      ev(EventType.CUSTOM, { name: 'on_progress', value: 50 }),
      ev(EventType.STEP_STARTED, { stepName: 'agent' }),
      ev(EventType.TEXT_MESSAGE_START, { messageId: 'ai-2', role: 'assistant' }),
      ev(EventType.TEXT_MESSAGE_CONTENT, { messageId: 'ai-2', delta: 'It is 21 °C ' }),
      ev(EventType.TEXT_MESSAGE_CONTENT, { messageId: 'ai-2', delta: 'in Paris.' }),
      ev(EventType.TEXT_MESSAGE_END, { messageId: 'ai-2' }),
      ev(EventType.STEP_FINISHED, { stepName: 'agent' }),
      ev(EventType.MESSAGES_SNAPSHOT, { messages: [{ id: 'ai-2', role: 'assistant', content: 'It is 21 °C in Paris.' }] })
    ], { ok: true })
  })
  remote.reply(langgraph)
  const gw = await gateway(t, { remote: { url: remote.url, headers: { Authorization: 'Bearer remote-secret' } } })
  const events = await gw.runOf({ message: 'Weather in Paris?', history: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'Hello!' }], state: { units: 'metric' }, locale: 'fr' })
  t.same(runProblems(events), [])
  t.same(summary(events), [
    ['agent_started'],
    ['thinking', 'Step: agent', 1],
    ['thinking', 'The user wants the weather; I will look it up.', 1],
    ['message', 'Let me check.'],
    ['executing', 'get_weather', { city: 'Paris' }],
    ['thinking', 'Step: tools', 2],
    ['completed', 'get_weather', 'success', { temp: 21 }],
    ['thinking', 'Step: agent', 3],
    ['message', 'It is 21 °C '],
    ['message', 'in Paris.'],
    ['end', 'completed', { answer: 'It is 21 °C in Paris.', result: { ok: true }, state: { city: 'Paris' } }]
  ])
  const messages = events.filter((event) => event.type === 'agent_message')
  t.not(messages[0]?.data.messageId, messages[1]?.data.messageId, 'a tool call in between starts a new message')
  t.equal(messages[1]?.data.messageId, messages[2]?.data.messageId)

  const [seen] = remote.requests
  t.equal(seen?.headers.authorization, 'Bearer remote-secret', 'the configured headers are sent')
  t.equal(seen?.headers.accept, 'text/event-stream')
  t.equal(seen?.input.runId, events[0]?.runId, 'the remote gets our run id …')
  t.equal(seen?.input.threadId, events[0]?.threadId, '… and thread id')
  t.match(seen?.input.messages, [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'Hello!' }, { role: 'user', content: 'Weather in Paris?' }])
  t.same(seen?.input.state, { units: 'metric' })
  t.same(seen?.input.forwardedProps, { locale: 'fr' })
  t.same(seen?.input.tools, [])
})

t.test('a CrewAI-shaped run: chunked text and tool calls, state snapshots, then RUN_ERROR', async (t) => {
  const remote = await agUiServer(t)
  remote.reply((input) => ({
    steps: [
      ev(EventType.RUN_STARTED, { threadId: input.threadId, runId: input.runId }),
      ev(EventType.STEP_STARTED, { stepName: 'research_task' }),
      ev(EventType.TEXT_MESSAGE_CHUNK, { messageId: 'm1', role: 'assistant', delta: 'Searching ' }),
      ev(EventType.TEXT_MESSAGE_CHUNK, { messageId: 'm1', delta: 'the web.' }),
      ev(EventType.TOOL_CALL_CHUNK, { toolCallId: 'tc1', toolCallName: 'search', parentMessageId: 'm1', delta: '{"q":"ag' }),
      ev(EventType.TOOL_CALL_CHUNK, { toolCallId: 'tc1', delta: '-ui"}' }),
      ev(EventType.STATE_SNAPSHOT, { snapshot: { task: 'research' } }),
      ev(EventType.RUN_ERROR, { message: 'Crew failed: rate limit from the model provider', code: 'CREW_ERROR' })
    ]
  }))
  const gw = await gateway(t, { remote: { url: remote.url } })
  const events = await gw.runOf()
  t.same(runProblems(events), [])
  t.same(summary(events), [
    ['agent_started'],
    ['thinking', 'Step: research_task', 1],
    ['message', 'Searching '],
    ['message', 'the web.'],
    ['executing', 'search', { q: 'ag-ui' }],
    ['completed', 'search', 'cancelled', undefined],
    ['end', 'failed', 'AG_UI_RUN_ERROR']
  ])
  t.equal(terminal(events).error?.message, 'Crew failed: rate limit from the model provider', "the remote's message is passed on")
})

t.test('a Mastra-shaped run: a tool with its result, and a frontend tool call left for the client', async (t) => {
  const remote = await agUiServer(t)
  remote.reply((input) => ({
    steps: run(input, [
      ev(EventType.TOOL_CALL_START, { toolCallId: 'a', toolCallName: 'weatherTool' }),
      ev(EventType.TOOL_CALL_ARGS, { toolCallId: 'a', delta: '{"location":"Oslo"}' }),
      ev(EventType.TOOL_CALL_END, { toolCallId: 'a' }),
      ev(EventType.TOOL_CALL_RESULT, { messageId: 'r-a', toolCallId: 'a', content: 'cold, probably' }),
      ev(EventType.TEXT_MESSAGE_START, { messageId: 'x', role: 'assistant' }),
      ev(EventType.TEXT_MESSAGE_CONTENT, { messageId: 'x', delta: 'Showing it on a map.' }),
      ev(EventType.TEXT_MESSAGE_END, { messageId: 'x' }),
      ev(EventType.TOOL_CALL_START, { toolCallId: 'b', toolCallName: 'showMap' }),
      ev(EventType.TOOL_CALL_ARGS, { toolCallId: 'b', delta: 'not json' }),
      ev(EventType.TOOL_CALL_END, { toolCallId: 'b' }),
      ev(EventType.TOOL_CALL_ARGS, { toolCallId: 'b', delta: '"late"' }),
      ev(EventType.TOOL_CALL_ARGS, { toolCallId: 'never-started', delta: '{}' }),
      ev(EventType.TOOL_CALL_RESULT, { messageId: 'r-z', toolCallId: 'never-started', content: 'x' }),
      ev(EventType.ACTIVITY_SNAPSHOT, { messageId: 'act', activityType: 'plan', content: { steps: 1 } }),
      ev('FUTURE_EVENT' as EventType, { whatever: 1 })
    ])
  }))
  const gw = await gateway(t, { remote: { url: remote.url } })
  const events = await gw.runOf()
  t.same(runProblems(events), [])
  t.same(summary(events), [
    ['agent_started'],
    ['executing', 'weatherTool', { location: 'Oslo' }],
    ['completed', 'weatherTool', 'success', 'cold, probably'],
    ['message', 'Showing it on a map.'],
    ['executing', 'showMap', 'not json'],
    ['completed', 'showMap', 'cancelled', 'AG_UI_NO_RESULT'],
    ['end', 'completed', { answer: 'Showing it on a map.' }]
  ])
})

t.test('exactly one agent_started and one terminal event, whatever the remote sends', async (t) => {
  const remote = await agUiServer(t)
  const text = (delta: string) => ev(EventType.TEXT_MESSAGE_CONTENT, { messageId: 'm', delta })
  const start = ev(EventType.TEXT_MESSAGE_START, { messageId: 'm', role: 'assistant' })
  remote.reply(
    // Duplicate RUN_FINISHED, and events after the end.
    (input) => ({ steps: [...run(input, [start, text('one')], 'first'), text('after the end'), ...run(input, [], 'second')] }),
    // No RUN_FINISHED at all: the stream just ends.
    (input) => ({ steps: [ev(EventType.RUN_STARTED, { threadId: input.threadId, runId: input.runId }), start, text('and then')] }),
    // Cut mid-way.
    (input) => ({ steps: [ev(EventType.RUN_STARTED, { threadId: input.threadId, runId: input.runId }), start, text('half'), { pause: 20 }, { cut: true }] }),
    // A second RUN_STARTED and RUN_ERROR after RUN_FINISHED.
    (input) => ({ steps: [...run(input, [start, text('done')]), ev(EventType.RUN_STARTED, { threadId: input.threadId, runId: 'again' }), ev(EventType.RUN_ERROR, { message: 'late' })] })
  )
  const gw = await gateway(t, { remote: { url: remote.url } })
  const cases: Array<[string, unknown[]]> = [
    ['duplicate RUN_FINISHED and events after it', [['agent_started'], ['message', 'one'], ['end', 'completed', { answer: 'one', result: 'first' }]]],
    ['no RUN_FINISHED', [['agent_started'], ['message', 'and then'], ['end', 'failed', 'AG_UI_STREAM_ENDED']]],
    ['a stream cut mid-way', [['agent_started'], ['message', 'half'], ['end', 'failed', 'AG_UI_STREAM_ENDED']]],
    ['a second run after the end', [['agent_started'], ['message', 'done'], ['end', 'completed', { answer: 'done' }]]]
  ]
  for (const [name, expected] of cases) {
    const events = await gw.runOf()
    t.same(runProblems(events), [], name)
    t.same(summary(events), expected, name)
    if (name === 'no RUN_FINISHED') t.match(terminal(events).error?.message, /ended its stream without finishing its run/)
    if (name === 'a stream cut mid-way') t.match(terminal(events).error?.message, /broke off before its run finished/)
  }
  t.same(unhandled, [], 'no unhandled rejection, also when the stream is cut')
})

t.test('the remote\'s failures end the run failed with distinct codes; the gateway stays healthy', async (t) => {
  const remote = await agUiServer(t)
  const closedPort = await freePort()
  const started = (input: RunAgentInput): Step => ev(EventType.RUN_STARTED, { threadId: input.threadId, runId: input.runId })
  remote.reply(
    { status: 500, contentType: 'application/json', body: JSON.stringify({ detail: 'Internal Server Error: graph "weather" not found' }) + ' '.repeat(50) + 'x'.repeat(400) },
    { status: 502, contentType: 'text/plain', body: 'upstream down '.repeat(500_000) },
    { status: 503, contentType: 'text/plain', steps: [{ raw: 'overloaded, ' }, { pause: 20 }, { cut: true }] },
    { status: 401, contentType: 'text/plain', body: '' },
    { status: 200, contentType: 'text/html', body: '<!doctype html><title>Login</title>' },
    (input) => ({ steps: [started(input), { raw: 'data: {not json\n\n' }] }),
    (input) => ({ steps: [started(input), ev(EventType.TEXT_MESSAGE_CONTENT, { delta: 'no message id' })] }),
    (input) => ({ steps: [started(input), { raw: 'data: [1,2]\n\n' }] }),
    (input) => ({ steps: [started(input), ev(EventType.TOOL_CALL_CHUNK, { delta: '{}' })] }),
    (input) => ({ steps: [...run(input, [], undefined).slice(0, 1), ev(EventType.RUN_FINISHED, { threadId: input.threadId, runId: input.runId, outcome: { type: 'cancelled' } })] }),
    (input) => ({ steps: [started(input), { hang: true }] }),
    { delayHeaders: 2_000 },
    // 750 ms in all, more than timeoutMs, but never 500 ms without a byte.
    (input) => ({ steps: [started(input), ...Array.from({ length: 5 }, (): Step[] => [{ pause: 150 }, { raw: ': keep-alive\n\n' }]).flat(), ...run(input, []).slice(1)] })
  )
  const gw = await gateway(t, {
    remote: { url: remote.url, timeoutMs: 500 },
    refused: { url: `http://127.0.0.1:${closedPort}/agent` }
  })
  const failure = async (agent = 'remote'): Promise<{ code?: string, message?: string }> => {
    const events = await gw.runOf(undefined, agent)
    t.same(runProblems(events), [])
    return terminal(events).error ?? {}
  }
  const refused = await failure('refused')
  t.same(refused, { code: 'AG_UI_UNREACHABLE', message: `Could not connect to the AG-UI agent at http://127.0.0.1:${closedPort}` })
  const status = await failure()
  t.equal(status.code, 'AG_UI_HTTP_STATUS')
  t.match(status.message, /^The AG-UI agent answered 500: \{"detail":"Internal Server Error: graph \\"weather\\" not found"\} x+…$/)
  t.ok((status.message?.length ?? 0) < 260, 'only an excerpt of the body')
  t.match(await failure(), { code: 'AG_UI_HTTP_STATUS', message: /^The AG-UI agent answered 502: (upstream down )+u[a-z]*…$/ }, 'a 7 MB error body is excerpted, not read whole')
  t.same(await failure(), { code: 'AG_UI_HTTP_STATUS', message: 'The AG-UI agent answered 503: overloaded,' }, 'an error body cut off: what came')
  t.same(await failure(), { code: 'AG_UI_HTTP_STATUS', message: 'The AG-UI agent answered 401' })
  t.same(await failure(), { code: 'AG_UI_NOT_SSE', message: 'The AG-UI agent answered with text/html, not an event stream (text/event-stream)' })
  t.match(await failure(), { code: 'AG_UI_BAD_EVENT', message: /not an AG-UI event stream/ })
  t.match(await failure(), { code: 'AG_UI_BAD_EVENT', message: /malformed TEXT_MESSAGE_CONTENT event \(messageId: / })
  t.match(await failure(), { code: 'AG_UI_BAD_EVENT', message: /not a JSON object/ })
  t.match(await failure(), { code: 'AG_UI_BAD_EVENT', message: /TOOL_CALL_CHUNK without a toolCallId/ })
  t.same(await failure(), { code: 'AG_UI_CANCELLED', message: 'The AG-UI agent cancelled its run' })
  const before = Date.now()
  t.same(await failure(), { code: 'AG_UI_STALLED', message: 'The AG-UI agent sent nothing for 500 ms' })
  t.ok(Date.now() - before < 2_000, 'a stall is noticed after timeoutMs')
  t.same(await failure(), { code: 'AG_UI_STALLED', message: 'The AG-UI agent did not answer within 500 ms' })
  const kept = await gw.runOf()
  t.same(terminal(kept).status, 'completed', 'keep-alive comments keep a slow stream from stalling')
  const health = await gw.app.inject({ url: '/healthz' })
  t.equal(health.statusCode, 200)
  t.same(unhandled, [])
})

t.test('cancelling the run aborts the request at once: the remote sees its client leave', async (t) => {
  const remote = await agUiServer(t)
  remote.reply((input) => ({
    steps: [ev(EventType.RUN_STARTED, { threadId: input.threadId, runId: input.runId }), ev(EventType.TEXT_MESSAGE_START, { messageId: 'm', role: 'assistant' }),
      ...Array.from({ length: 200 }, (_, i) => [ev(EventType.TEXT_MESSAGE_CONTENT, { messageId: 'm', delta: `${i} ` }), { pause: 50 }]).flat()]
  }))
  const gw = await gateway(t, { remote: { url: remote.url } })
  const request = remote.nextRequest()
  gw.client.send({ type: 'run', agent: 'remote', input: { message: 'go' } })
  const { runId } = await gw.client.waitFor('run_accepted')
  await gw.client.waitFor('agent_message', (event) => event.data.delta === '2 ')
  const seen = await request
  const cancelledAt = Date.now()
  gw.client.send({ type: 'cancel', runId })
  const end = await gw.client.waitFor('agent_completed')
  t.equal(end.data.status, 'cancelled')
  t.ok(Date.now() - cancelledAt < 1_000, 'the run ends without waiting for the remote')
  t.equal(await seen.clientLeft, true, 'the remote saw the request go')
  t.same(unhandled, [])
})

t.test('AG_UI_AGENTS registers each remote agent by its name, next to the built-in ones', async (t) => {
  const remote = await agUiServer(t)
  remote.reply((input) => ({ steps: run(input, [ev(EventType.TEXT_MESSAGE_START, { messageId: 'm', role: 'assistant' }), ev(EventType.TEXT_MESSAGE_CONTENT, { messageId: 'm', delta: 'from afar' })]) }))
  const app = await buildApp(t, { env: testEnv({ AG_UI_AGENTS: JSON.stringify({ research: { url: remote.url, headers: { 'x-api-key': 'k-123' }, timeoutMs: 5000 } }) }) })
  t.same(app.runEngine.agents, ['demo', 'research'])
  t.equal(app.runEngine.defaultAgent, 'demo')
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor('bob') })
  client.send({ type: 'run', agent: 'research', input: { message: 'hi' } })
  const { runId } = await client.waitFor('run_accepted')
  const events = await client.runEvents(runId)
  t.same(summary(events), [['agent_started'], ['message', 'from afar'], ['end', 'completed', { answer: 'from afar' }]])
  t.equal(remote.requests[0]?.headers['x-api-key'], 'k-123')
})

t.test('createAgUiAgent checks its options with coded errors that never show a header value', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [{ url: 'ftp://x' }, /url must be an http\(s\) URL/],
    [{ url: 'nope' }, /url must be an http\(s\) URL/],
    [{ url: 'http://x', headers: { 'a b': 'secret-1' } }, /header name "a b" is not a valid HTTP header name/],
    [{ url: 'http://x', headers: { auth: 'secret-1\n' } }, /header "auth" must be a string on one line/],
    [{ url: 'http://x', headers: 'secret-1' }, /headers must be an object/],
    [{ url: 'http://x', timeoutMs: 1.5 }, /timeoutMs must be an integer from 1 to 86400000/],
    [null, /must be an object/]
  ]
  for (const [options, message] of bad) {
    const err = t.throws(() => createAgUiAgent(options as AgUiAgentOptions)) as unknown as { code: string, message: string }
    t.equal(err.code, 'AGW_ERR_AGENT_INVALID')
    t.match(err.message, message)
    t.match(err.message, /^Invalid agent configuration: the AG-UI agent's options: /)
    t.notMatch(err.message, /secret-1/)
  }
})

t.test('AG_UI_AGENTS with unusable values stops the start with one line naming the agent, never a header value', async (t) => {
  const refused: Array<[unknown, string]> = [
    [{ url: 'ftp://a.example' }, 'url must be an http(s) URL'],
    [{ url: 'not a url' }, 'url must be an http(s) URL'],
    [{ url: 'https://a.example', headers: { Authorization: 42 } }, 'header "Authorization" must be a string on one line'],
    [{ url: 'https://a.example', headers: { Authorization: 's3cret-value\r\nX: y' } }, 'header "Authorization" must be a string on one line'],
    [{ url: 'https://a.example', headers: { 'bad header': 's3cret-value' } }, 'header name "bad header" is not a valid HTTP header name'],
    [{ url: 'https://a.example', timeoutMs: 0 }, 'timeoutMs must be an integer from 1 to 86400000']
  ]
  for (const [entry, problem] of refused) {
    const { build } = await import('../../src/app.js')
    let err: { code?: string, message: string } | undefined
    try {
      // build() registers the plugins, which is where the agents are made.
      const app = await build({ env: testEnv({ AG_UI_AGENTS: JSON.stringify({ research: entry }) }) })
      await app.close()
    } catch (error) {
      err = error as { code?: string, message: string }
    }
    t.equal(err?.code, 'AGW_ERR_CONFIG_INVALID')
    t.equal(err?.message, `Invalid configuration: AG_UI_AGENTS: agent "research": ${problem}`)
    t.notMatch(err?.message ?? '', /s3cret-value/)
  }
})

t.test('an AG-UI front end on the gateway\'s own endpoint reaches the remote: its conversation goes on as it was sent', async (t) => {
  const remote = await agUiServer(t)
  remote.reply((input) => ({
    steps: run(input, [
      ev(EventType.TOOL_CALL_START, { toolCallId: 'c1', toolCallName: 'lookup' }),
      ev(EventType.TOOL_CALL_ARGS, { toolCallId: 'c1', delta: '{"id":7}' }),
      ev(EventType.TOOL_CALL_END, { toolCallId: 'c1' }),
      ev(EventType.TOOL_CALL_RESULT, { messageId: 'r1', toolCallId: 'c1', content: '{"found":true}' }),
      ev(EventType.TEXT_MESSAGE_START, { messageId: 'm', role: 'assistant' }),
      ev(EventType.TEXT_MESSAGE_CONTENT, { messageId: 'm', delta: 'Found it.' })
    ])
  }))
  const app = await buildApp(t, { agents: { remote: createAgUiAgent({ url: remote.url }) }, env: testEnv() })
  const { http } = await listen(t, app)
  const front = new HttpAgent({ url: `${http}/v1/ag-ui`, headers: { authorization: `Bearer ${tokenFor('dave')}` }, initialState: { plan: 'pro' } })
  front.addMessage({ id: 'u0', role: 'user', content: 'Earlier question' })
  front.addMessage({ id: 'a0', role: 'assistant', content: 'Earlier answer' })
  front.addMessage({ id: 'u1', role: 'user', content: 'Find order 7' })
  const texts: string[] = []
  const results: string[] = []
  const { result } = await front.runAgent({ forwardedProps: { agent: 'remote', tenant: 'acme' } }, {
    onTextMessageContentEvent: ({ event }) => { texts.push(event.delta) },
    onToolCallResultEvent: ({ event }) => { results.push(typeof event.content === 'string' ? event.content : JSON.stringify(event.content)) }
  })
  t.same(texts, ['Found it.'])
  t.same(results.map((content) => JSON.parse(content) as unknown), [{ found: true }], 'the remote\'s tool result reaches the front end')
  t.same(result, { answer: 'Found it.' })
  const seen = remote.requests[0]
  t.same(seen?.input.messages.map((message) => [message.id, message.role]), [['u0', 'user'], ['a0', 'assistant'], ['u1', 'user']], 'the messages as the client sent them')
  t.same(seen?.input.state, { plan: 'pro' })
  t.same(seen?.input.forwardedProps, { agent: 'remote', tenant: 'acme' })
  t.same(unhandled, [])
})

const redis = await redisSkip(t)

t.test('end to end on two nodes (Redis): live on A, a drop, resumed without a gap on B; a cancel from B stops the remote', { skip: redis }, async (t) => {
  const remote = await agUiServer(t)
  const deltas = Array.from({ length: 40 }, (_, i) => `${i} `)
  const slowText = (input: RunAgentInput, count: number) => ({
    steps: run(input, [
      ev(EventType.STEP_STARTED, { stepName: 'answer' }),
      ev(EventType.TEXT_MESSAGE_START, { messageId: 'm', role: 'assistant' }),
      ...deltas.slice(0, count).flatMap((delta) => [ev(EventType.TEXT_MESSAGE_CONTENT, { messageId: 'm', delta }), { pause: 25 }]),
      ev(EventType.TEXT_MESSAGE_END, { messageId: 'm' })
    ])
  })
  remote.reply((input) => slowText(input, 40), (input) => ({ ...slowText(input, 40), steps: [...slowText(input, 40).steps.slice(0, 3), { hang: true }] }))
  const prefix = testPrefix(t)
  const env = { EVENT_STORE: REDIS_URL, REDIS_KEY_PREFIX: prefix, AG_UI_AGENTS: JSON.stringify({ remote: { url: remote.url } }) }
  const nodes = await Promise.all([0, 1].map(async () => {
    const app = await buildApp(t, { env: testEnv(env) })
    return { app, ...(await listen(t, app)) }
  }))
  const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]]
  const token = tokenFor('carol')

  const onA = await connect(t, a.ws, { token })
  onA.send({ type: 'run', agent: 'remote', input: { message: 'count to 40' } })
  const { runId } = await onA.waitFor('run_accepted')
  const seenOnA = await onA.readThenDrop(10)
  const onB = await connect(t, b.ws, { token })
  onB.send({ type: 'subscribe', runId, after: seenOnA.at(-1)?.seq ?? 0 })
  await onB.waitFor('subscribed')
  const rest = await onB.runEvents(runId, 15_000)
  const all = [...seenOnA, ...rest]
  t.same(runProblems(all), [], 'A then B: nothing lost, nothing twice, in order')
  t.same(all.filter((event) => event.type === 'agent_message').map((event) => event.data.delta), deltas, 'every piece of the answer, once, in order')
  t.equal(terminal(all).status, 'completed')

  // A second run, executed by A, still streaming from the remote; cancelled by the user on B.
  const request = remote.nextRequest()
  const starter = await connect(t, a.ws, { token })
  starter.send({ type: 'run', agent: 'remote', input: { message: 'hang on' } })
  const second = await starter.waitFor('run_accepted')
  const seen = await request
  await starter.waitFor('agent_thinking')
  onB.send({ type: 'subscribe', runId: second.runId })
  await onB.waitFor('subscribed')
  onB.send({ type: 'cancel', runId: second.runId })
  const end = await onB.waitFor('agent_completed', (event) => event.runId === second.runId, 10_000)
  t.equal(end.data.status, 'cancelled')
  t.equal(await seen.clientLeft, true, 'the remote saw the request go')
  t.same(unhandled, [])
})
