// POST /v1/ag-ui, driven by the real @ag-ui/client HttpAgent over a real port: its enforcement
// (every event parsed with @ag-ui/core's schemas) and its verification (what opens must close, in
// order) run on every event, and a run passes only if both accept the whole stream.
import { once } from 'node:events'
import type { Socket } from 'node:net'
import t from 'tap'
import Fastify from 'fastify'
import { HttpAgent } from '@ag-ui/client'
import { EventType, PROTOCOL_VERSION, type BaseEvent, type Message } from '@ag-ui/core'
import { EventSchema } from '@ag-ui/core/schemas'
import { createMemoryStore, RunError, type Agent, type EventStore, type NewRun } from '../../src/index.js'
import { createDemoAgent, demoTools } from '../../src/agents/index.js'
import type { RunEvent } from '../../src/protocol.js'
import agUiRoutes from '../../src/routes/ag-ui.js'
import { buildApp, listen, tokenFor } from '../helpers.js'

const token = tokenFor('alice')
const auth = { authorization: `Bearer ${token}` }

const waitForCancel: Agent = async (run) => {
  run.think('Waiting to be cancelled.')
  await new Promise((resolve) => { run.signal.addEventListener('abort', resolve) })
}
const agents: Record<string, Agent> = {
  demo: createDemoAgent({ stepDelayMs: 0 }),
  failing: async (run) => {
    run.say('Let me see… ')
    throw new RunError('NO_LUCK', 'It did not work out')
  },
  crashing: async () => { throw new Error('a secret detail') },
  waitForCancel
}

/** The data of every Server-Sent Event in a response body. */
function sseData (text: string): unknown[] {
  return text.split('\n\n').flatMap((block) => block.split('\n').filter((line) => line.startsWith('data: ')).map((line) => JSON.parse(line.slice(6)) as unknown))
}

interface Observed {
  /** Every event as the client's subscribers saw it: after its enforcement and verification. */
  readonly events: BaseEvent[]
  /** The same events as they came over the wire. */
  readonly wire: unknown[]
  readonly contentType: string | null
  /** What the client warned about (it warns when it strips or downgrades anything). */
  readonly warnings: string[]
}

/** An HttpAgent for the endpoint that records what it receives, raw and as its subscribers see it. */
function agUiAgent (url: string, headers: Record<string, string> = auth): { agent: HttpAgent, observe: (run: () => Promise<unknown>) => Promise<Observed> } {
  let body: Promise<string> = Promise.resolve('')
  let contentType: string | null = null
  const events: BaseEvent[] = []
  const agent = new HttpAgent({
    url: `${url}/v1/ag-ui`,
    headers,
    fetch: async (input, init) => {
      const response = await fetch(input, init)
      contentType = response.headers.get('content-type')
      body = response.clone().text().catch(() => '')
      return response
    }
  })
  agent.subscribe({ onEvent: ({ event }) => { events.push(event) } })
  return {
    agent,
    async observe (run) {
      events.length = 0
      const warnings: string[] = []
      const warn = console.warn
      console.warn = (...args: unknown[]) => { warnings.push(args.map(String).join(' ')) }
      try {
        await run()
      } finally {
        console.warn = warn
      }
      return { events: [...events], wire: sseData(await body), contentType, warnings }
    }
  }
}

const typesOf = (events: readonly BaseEvent[]): string[] => events.map((event) => event.type)
const ofType = <T extends EventType>(events: readonly BaseEvent[], type: T): Array<BaseEvent & Record<string, unknown>> =>
  events.filter((event) => event.type === type)
const ourRunId = (events: readonly BaseEvent[]): string => (events[0]?.metadata as { agentGateway: { runId: string } }).agentGateway.runId

/** Our own record of a run: its events as logged. */
async function logged (store: EventStore, runId: string): Promise<RunEvent[]> {
  return (await store.read(runId, 0, 1000)).map((event) => JSON.parse(event.frame.toString('utf8')) as RunEvent)
}

const reasoning = (thoughts: number): string[] => [
  'REASONING_START',
  ...Array.from({ length: thoughts }, () => ['REASONING_MESSAGE_START', 'REASONING_MESSAGE_CONTENT', 'REASONING_MESSAGE_END']).flat(),
  'REASONING_END'
]

t.test('HttpAgent runs the demo agent: reasoning, a tool call with our ids, the answer, over two turns', async (t) => {
  const app = await buildApp(t)
  const { http } = await listen(t, app)
  const { agent, observe } = agUiAgent(http)
  agent.addMessage({ id: 'q1', role: 'user', content: 'What is 6 * 7?' })
  let result: unknown
  const first = await observe(async () => { result = await agent.runAgent({ runId: 'ag-ui-run-1' }) })

  t.same(typesOf(first.events), [
    'RUN_STARTED',
    ...reasoning(2),
    'TOOL_CALL_START', 'TOOL_CALL_ARGS', 'TOOL_CALL_END', 'TOOL_CALL_RESULT',
    ...reasoning(2),
    'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END',
    'RUN_FINISHED'
  ])
  t.match(first.contentType, /^text\/event-stream/)
  t.same(first.warnings, [], 'the client stripped, translated or downgraded nothing')
  t.same(first.wire, first.events, 'the subscribers saw exactly what was sent')
  for (const event of first.wire) t.ok(EventSchema.safeParse(event).success, `${(event as BaseEvent).type} is valid per @ag-ui/core`)

  const runId = ourRunId(first.events)
  const ours = await logged(app.eventStore, runId)
  const executing = ours.find((event) => event.type === 'tool_executing')
  const thoughts = ours.filter((event) => event.type === 'agent_thinking')
  t.match(ours[0], { type: 'agent_started', threadId: agent.threadId, data: { agent: 'demo', input: { message: 'What is 6 * 7?', agUi: { messages: [{ id: 'q1', role: 'user' }], context: [] } } } })

  t.same(first.events[0], {
    type: 'RUN_STARTED',
    timestamp: Date.parse(ours[0]!.ts),
    threadId: agent.threadId,
    runId: 'ag-ui-run-1',
    protocolVersion: PROTOCOL_VERSION,
    metadata: { agentGateway: { runId, threadId: agent.threadId, agent: 'demo' } }
  }, 'the ids the client sent; ours in the metadata')
  t.same(ofType(first.events, EventType.REASONING_MESSAGE_CONTENT).map((event) => event.delta), thoughts.map((event) => event.type === 'agent_thinking' && event.data.thought))
  t.same(ofType(first.events, EventType.REASONING_START).map((event) => event.messageId), [`${runId}:${thoughts[0]!.seq}`, `${runId}:${thoughts[2]!.seq}`])
  const toolCallId = executing?.type === 'tool_executing' ? executing.data.toolCallId : 'missing'
  t.match(ofType(first.events, EventType.TOOL_CALL_START), [{ toolCallId, toolCallName: 'calculator' }])
  t.notOk('parentMessageId' in ofType(first.events, EventType.TOOL_CALL_START)[0]!, 'no text came before the call')
  t.match(ofType(first.events, EventType.TOOL_CALL_ARGS), [{ toolCallId, delta: '{"expression":"6 * 7"}' }])
  t.match(ofType(first.events, EventType.TOOL_CALL_RESULT), [{ toolCallId, role: 'tool', content: '{"expression":"6 * 7","value":42}' }])
  t.same(ofType(first.events, EventType.TEXT_MESSAGE_CONTENT).map((event) => event.delta).join(''), '6 * 7 = 42.')
  t.same(first.events.at(-1), { type: 'RUN_FINISHED', timestamp: Date.parse(ours.at(-1)!.ts), threadId: agent.threadId, runId: 'ag-ui-run-1', result: { answer: '6 * 7 = 42.' } })

  t.match(result, { result: { answer: '6 * 7 = 42.' } })
  const byRole = (role: Message['role']): Message[] => agent.messages.filter((message) => message.role === role)
  t.same(byRole('assistant'), [
    { id: toolCallId, role: 'assistant', toolCalls: [{ id: toolCallId, type: 'function', function: { name: 'calculator', arguments: '{"expression":"6 * 7"}' } }] },
    { id: ofType(first.events, EventType.TEXT_MESSAGE_START)[0]!.messageId, role: 'assistant', content: '6 * 7 = 42.' }
  ], "the client's conversation: the call, then the answer")
  t.match(byRole('tool'), [{ toolCallId, content: '{"expression":"6 * 7","value":42}' }])
  t.equal(byRole('reasoning').length, 4)

  const summary = await (await fetch(`${http}/v1/runs/${runId}`, { headers: auth })).json() as Record<string, unknown>
  t.match(summary, { runId, threadId: agent.threadId, agent: 'demo', status: 'completed' }, "the client's threadId is the run's thread")

  agent.addMessage({ id: 'q2', role: 'user', content: 'And how many miles is 5 km?' })
  const history = agent.messages.map((message) => message.id)
  const second = await observe(() => agent.runAgent({ runId: 'ag-ui-run-2' }))
  t.equal(second.events[0]?.runId, 'ag-ui-run-2')
  t.equal(second.events.at(-1)?.type, 'RUN_FINISHED')
  t.same(second.warnings, [])
  const next = await logged(app.eventStore, ourRunId(second.events))
  t.match(next[0], { threadId: agent.threadId, data: { input: { message: 'And how many miles is 5 km?' } } }, 'the same thread, the new question')
  const sent = (next[0]?.data as unknown as { input: { agUi: { messages: Message[] } } }).input.agUi.messages
  t.same(sent.map((message) => message.id), history, 'the whole conversation goes along in input.agUi')
  t.same((next[0]?.data as unknown as { input: { history: unknown } }).input.history, [
    { role: 'user', content: 'What is 6 * 7?' },
    { role: 'assistant', content: '6 * 7 = 42.' }
  ], 'and its text, as input.history, for agents that keep a conversation (tool calls and reasoning left out)')
})

t.test('a failing agent ends in RUN_ERROR with its code, after its open message is closed', async (t) => {
  const app = await buildApp(t, { agents, tools: demoTools })
  const { http } = await listen(t, app)
  const { agent, observe } = agUiAgent(http)
  agent.addMessage({ id: 'q1', role: 'user', content: 'Try something' })
  const errors: unknown[] = []
  const failed = await observe(() => agent.runAgent({ forwardedProps: { agent: 'failing' } }, { onRunErrorEvent: ({ event }) => { errors.push(event) } }))
  t.same(typesOf(failed.events), ['RUN_STARTED', 'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END', 'RUN_ERROR'])
  t.match(failed.events[0], { metadata: { agentGateway: { agent: 'failing' } } }, 'forwardedProps.agent chose the agent')
  t.match(errors, [{ type: 'RUN_ERROR', code: 'NO_LUCK', message: 'It did not work out' }])
  t.same(failed.warnings, [])
  t.match(await (await fetch(`${http}/v1/runs/${ourRunId(failed.events)}`, { headers: auth })).json(), { status: 'failed' })

  const crashed = await observe(() => agent.runAgent({ forwardedProps: { agent: 'crashing' } }))
  t.match(crashed.events.at(-1), { type: 'RUN_ERROR', code: 'AGENT_FAILED', message: 'The agent failed' }, 'what the agent threw stays in the log')
})

t.test('aborting the request cancels the run; a cancel from elsewhere ends the stream with a cancelled outcome', async (t) => {
  const app = await buildApp(t, { agents, tools: demoTools })
  const { http } = await listen(t, app)
  const { agent, observe } = agUiAgent(http)
  agent.addMessage({ id: 'q1', role: 'user', content: 'Take your time' })
  const aborted = await observe(() => agent.runAgent({ forwardedProps: { agent: 'waitForCancel' } }, {
    onReasoningMessageEndEvent: () => { agent.abortRun() }
  }))
  t.same(typesOf(aborted.events), ['RUN_STARTED', 'REASONING_START', 'REASONING_MESSAGE_START', 'REASONING_MESSAGE_CONTENT', 'REASONING_MESSAGE_END', 'RUN_ERROR'])
  t.match(aborted.events.at(-1), { type: 'RUN_ERROR', code: 'abort' }, 'the client ends an aborted run itself')
  const runId = ourRunId(aborted.events)
  // The run's own event stream ends with its terminal event.
  const text = await (await fetch(`${http}/v1/runs/${runId}/events`, { headers: auth })).text()
  t.match((sseData(text) as RunEvent[]).at(-1), { type: 'agent_completed', data: { status: 'cancelled' } })
  t.match(await (await fetch(`${http}/v1/runs/${runId}`, { headers: auth })).json(), { status: 'cancelled' })

  const finished: unknown[] = []
  const cancelled = await observe(() => agent.runAgent({ runId: 'to-be-cancelled', forwardedProps: { agent: 'waitForCancel' } }, {
    onRunStartedEvent: async ({ event }) => {
      const response = await fetch(`${http}/v1/runs/${ourRunId([event])}/cancel`, { method: 'POST', headers: auth })
      t.equal(response.status, 202)
    },
    onRunFinishedEvent: (params) => { finished.push(params.outcome) }
  }))
  t.same(cancelled.events.at(-1), { type: 'RUN_FINISHED', timestamp: (cancelled.events.at(-1) as BaseEvent).timestamp, threadId: agent.threadId, runId: 'to-be-cancelled', outcome: { type: 'cancelled' } })
  t.same(typesOf(cancelled.events).slice(-2), ['REASONING_END', 'RUN_FINISHED'], 'the open reasoning span is closed first')
  t.same(finished, ['cancelled'], 'the client reports the outcome as cancelled, not success')
  t.same(cancelled.warnings, [])
})

t.test('a client that leaves while its run is being started still cancels it', async (t) => {
  const memory = createMemoryStore({ historyTtlMs: 60_000 })
  let entered!: (runId: string) => void
  const starting = new Promise<string>((resolve) => { entered = resolve })
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  // The memory store, except that creating a run waits for the test.
  const store = new Proxy(memory, {
    get (target, key) {
      if (key === 'createRun') {
        return async (run: NewRun, limits: { maxActivePerOwner: number }) => {
          entered(run.runId)
          await gate
          return target.createRun(run, limits)
        }
      }
      const value: unknown = Reflect.get(target, key)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    }
  })
  const app = await buildApp(t, { agents, tools: demoTools, store })
  const { http } = await listen(t, app)
  const sockets: Socket[] = []
  app.server.on('connection', (socket: Socket) => { sockets.push(socket) })
  const controller = new AbortController()
  const request = fetch(`${http}/v1/ag-ui`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ threadId: 't', runId: 'r', messages: [{ id: 'q', role: 'user', content: 'hi' }], forwardedProps: { agent: 'waitForCancel' } }),
    signal: controller.signal
  })
  const runId = await starting
  const closed = Promise.all(sockets.map((socket) => once(socket, 'close')))
  controller.abort()
  await t.rejects(request, { name: 'AbortError' })
  await closed
  release()
  const text = await (await fetch(`${http}/v1/runs/${runId}/events`, { headers: auth })).text()
  t.match((sseData(text) as RunEvent[]).at(-1), { type: 'agent_completed', data: { status: 'cancelled' } })
})

t.test('the input: bad bodies are 400 with a reason, no token is 401; text parts and foreign thread ids', async (t) => {
  const app = await buildApp(t, { agents, tools: demoTools })
  const { http } = await listen(t, app)
  const post = (body: unknown, headers: Record<string, string> = auth): Promise<Response> =>
    fetch(`${http}/v1/ag-ui`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const input = (extra: Record<string, unknown> = {}): Record<string, unknown> =>
    ({ threadId: 'thread-1', runId: 'run-1', messages: [{ id: 'q', role: 'user', content: 'What is 6 * 7?' }], ...extra })

  const refusals: Array<[unknown, string]> = [
    [{}, 'Invalid AG-UI RunAgentInput: threadId: Invalid input: expected string, received undefined; runId: Invalid input: expected string, received undefined; messages: Invalid input: expected array, received undefined'],
    [input({ messages: [{ id: 'q', role: 'robot', content: 'hi' }] }), 'Invalid AG-UI RunAgentInput: messages.0.role: Invalid input'],
    [input({ messages: [{ id: 's', role: 'system', content: 'Be brief.' }] }), 'Invalid AG-UI RunAgentInput: messages: there is no user message to answer'],
    [input({ forwardedProps: { agent: 'not an agent!' } }), 'Invalid AG-UI RunAgentInput: forwardedProps.agent: must be an agent name (1-64 letters, digits, "_", "." or "-")']
  ]
  for (const [body, message] of refusals) {
    const response = await post(body)
    t.equal(response.status, 400)
    t.same(await response.json(), { code: 'AGW_ERR_AG_UI_INPUT', message })
  }
  const unknown = await post(input({ forwardedProps: { agent: 'nobody' } }))
  t.equal(unknown.status, 400)
  t.same(await unknown.json(), { code: 'AGW_ERR_RUN_UNKNOWN_AGENT', message: 'No agent named "nobody"' })
  const anonymous = await post(input(), {})
  t.equal(anonymous.status, 401)
  t.match(await anonymous.json(), { code: 'AGW_ERR_AUTH_NO_TOKEN' })
  t.equal(app.runEngine.activeRuns(), 0, 'no run was started for any of them')

  const parts = [{ type: 'text', text: 'What is ' }, { type: 'image', source: { type: 'url', value: 'https://example.com/a.png' } }, { type: 'text', text: '6 * 7?' }]
  const response = await post(input({ threadId: 'a thread/of theirs', messages: [{ id: 'q', role: 'user', content: parts }] }))
  t.equal(response.status, 200)
  const events = sseData(await response.text()) as BaseEvent[]
  for (const event of events) t.ok(EventSchema.safeParse(event).success, `${event.type} is valid per @ag-ui/core`)
  t.match(events[0], { type: 'RUN_STARTED', threadId: 'a thread/of theirs', runId: 'run-1' })
  t.match(events.at(-1), { type: 'RUN_FINISHED', threadId: 'a thread/of theirs', runId: 'run-1', result: { answer: '6 * 7 = 42.' } })
  const ours = await logged(app.eventStore, ourRunId(events))
  t.match(ours[0], { data: { input: { message: 'What is 6 * 7?' } } }, 'the text parts, joined')
  t.not(ours[0]?.threadId, 'a thread/of theirs', 'not one of our thread ids: the run got its own')
})

t.test('the route plugin declares what it needs: alone, it fails ready()', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(agUiRoutes)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED' })
})
