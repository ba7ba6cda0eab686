// The AI SDK chat endpoint, driven by the real `ai` package over a real port: DefaultChatTransport
// sends and reconnects exactly as useChat does, parses every chunk with the SDK's own schema, and
// readUIMessageStream builds the assistant message the way the UI would.
import t, { type Test } from 'tap'
import { Type } from 'typebox'
import { DefaultChatTransport, readUIMessageStream, type UIMessage, type UIMessageChunk } from 'ai'
import { RunError, defineTool, type Agent } from '../../src/index.js'
import { createDemoAgent, demoTools } from '../../src/agents/index.js'
import { CHAT_RESUME_WINDOW_MS, resumable } from '../../src/routes/chat.js'
import { buildApp, listen, mint, testEnv, tokenFor } from '../helpers.js'
import { REDIS_URL, redisSkip, testPrefix } from '../redis.js'

const skipRedis = await redisSkip(t)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const waitForCancel: Agent = async (run) => {
  run.think('Waiting to be cancelled.')
  await new Promise((resolve) => { run.signal.addEventListener('abort', resolve) })
}
const counting = defineTool({
  name: 'counting',
  description: 'Counts to three, reporting each step',
  parameters: Type.Object({}),
  async execute (_args, { progress }) {
    for (let n = 1; n <= 3; n++) {
      progress(n, 3, `counted ${n}`)
      await sleep(130)
    }
    return { counted: 3 }
  }
})
const stuck = defineTool({
  name: 'stuck',
  description: 'Never answers',
  parameters: Type.Object({}),
  timeoutMs: 50,
  async execute (_args, { signal }) {
    await new Promise((resolve) => { signal.addEventListener('abort', resolve) })
  }
})
const agents: Record<string, Agent> = {
  demo: createDemoAgent({ stepDelayMs: 0 }),
  slowDemo: createDemoAgent({ stepDelayMs: 60 }),
  progressing: async (run) => {
    await run.tools.call('counting', {})
    await run.tools.call('stuck', {})
    run.say('Done.')
  },
  failing: async (run) => {
    run.think('Trying a tool that is not there.')
    await run.tools.call('no_such_tool', {})
    run.say('Let me see… ')
    throw new RunError('NO_LUCK', 'It did not work out')
  },
  waitForCancel
}

interface Node {
  readonly http: string
  transport (userId?: string): DefaultChatTransport<UIMessage>
}

async function node (t: Test, env: Record<string, string> = {}): Promise<Node> {
  const app = await buildApp(t, { agents, tools: [...demoTools, counting, stuck], env: testEnv(env) })
  const { http } = await listen(t, app)
  return {
    http,
    transport: (userId = 'alice') => new DefaultChatTransport<UIMessage>({ api: `${http}/v1/chat`, headers: { authorization: `Bearer ${tokenFor(userId)}` } })
  }
}

let chats = 0
const newChatId = (): string => `chat-${process.pid}-${++chats}`
const userMessage = (text: string, id = `u-${++chats}`): UIMessage => ({ id, role: 'user', parts: [{ type: 'text', text }] })

/** Sends like useChat's submit and returns the stream of chunks (already checked by the SDK's schema). */
async function send (transport: DefaultChatTransport<UIMessage>, chatId: string, messages: UIMessage[], options: { agent?: string, abortSignal?: AbortSignal } = {}): Promise<ReadableStream<UIMessageChunk>> {
  return transport.sendMessages({
    chatId,
    messages,
    trigger: 'submit-message',
    messageId: undefined,
    abortSignal: options.abortSignal,
    ...(options.agent === undefined ? {} : { body: { agent: options.agent } })
  })
}

/** The assistant message as the UI would hold it at the end, and every chunk and error seen. */
async function finalMessage (stream: ReadableStream<UIMessageChunk>): Promise<{ message: UIMessage | undefined, chunks: UIMessageChunk[], errors: Error[] }> {
  const chunks: UIMessageChunk[] = []
  const errors: Error[] = []
  const tapped = stream.pipeThrough(new TransformStream<UIMessageChunk, UIMessageChunk>({ transform (chunk, controller) { chunks.push(chunk); controller.enqueue(chunk) } }))
  let message: UIMessage | undefined
  for await (const snapshot of readUIMessageStream({ stream: tapped, onError: (err) => { errors.push(err as Error) } })) message = snapshot
  return { message, chunks, errors }
}

function post (url: string, body: unknown, userId: string | null = 'alice'): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(userId === null ? {} : { authorization: `Bearer ${tokenFor(userId)}` }) },
    body: JSON.stringify(body)
  })
}

/** The part kinds of a message in order, for asserting that each appears once. */
const partKinds = (message: UIMessage | undefined): string[] => (message?.parts ?? []).map((part) => part.type === 'dynamic-tool' ? `tool:${part.toolCallId}` : part.type === 'text' ? `text:${part.text}` : part.type)

t.test('DefaultChatTransport + readUIMessageStream: one assistant message with the reasoning, the tool calls with their outputs, and the answer', async (t) => {
  const gateway = await node(t)
  const chatId = newChatId()
  const { message, chunks, errors } = await finalMessage(await send(gateway.transport(), chatId, [userMessage('What is 6 * 7?')]))
  t.same(errors, [])
  t.ok(message !== undefined)
  if (message === undefined) return
  const metadata = message.metadata as { runId: string }
  t.match(metadata, { runId: String, threadId: chatId, agent: 'demo', status: 'completed', seq: Number }, 'the run, its thread (the chat) and its last seq')
  t.equal(message.id, metadata.runId, 'the message is named after the run')
  t.equal(message.role, 'assistant')
  const reasoning = message.parts.filter((part) => part.type === 'reasoning')
  t.ok(reasoning.length >= 2, 'the thoughts are reasoning parts')
  t.ok(reasoning.every((part) => part.state === 'done' && part.text.length > 0))
  t.match(message.parts.filter((part) => part.type === 'dynamic-tool'), [
    { type: 'dynamic-tool', toolName: 'calculator', state: 'output-available', input: { expression: '6 * 7' }, output: { expression: '6 * 7', value: 42 } }
  ], 'the tool call, as a dynamic tool, with its output')
  t.match(message.parts.filter((part) => part.type === 'text'), [{ type: 'text', text: '6 * 7 = 42.', state: 'done' }])
  t.equal(message.parts[0]?.type, 'step-start')
  t.same(chunks.map((chunk) => chunk.type).filter((type) => type === 'start' || type === 'finish'), ['start', 'finish'])
  t.match(chunks.at(-1), { type: 'finish', finishReason: 'stop' })

  // The wire itself: the header the SDK looks for, SSE, and [DONE] at the end.
  const response = await post(`${gateway.http}/v1/chat`, { id: newChatId(), messages: [userMessage('What is 6 * 7?')], trigger: 'submit-message' })
  t.equal(response.status, 200)
  t.equal(response.headers.get('x-vercel-ai-ui-message-stream'), 'v1')
  t.match(response.headers.get('content-type'), /^text\/event-stream/)
  const body = await response.text()
  t.ok(body.startsWith('data: {"type":"start","messageId":'), 'starts with the start chunk')
  t.ok(body.endsWith('data: [DONE]\n\n'), 'ends with [DONE]')

  // The next turn of the same chat: the history goes along, the chat is the thread.
  const next = await finalMessage(await send(gateway.transport(), chatId, [
    userMessage('What is 6 * 7?'), message, userMessage('And how many miles is 5 km?')
  ]))
  t.match(next.message?.metadata, { threadId: chatId, status: 'completed' })
  t.not(next.message?.id, message.id, 'a new run, a new message')
  t.match(next.message?.parts.filter((part) => part.type === 'dynamic-tool'), [{ toolName: 'convert_units', state: 'output-available' }])
})

t.test('a failing tool is an output-error part; a failing run an error chunk, then finish', async (t) => {
  const gateway = await node(t)
  const { message, chunks, errors } = await finalMessage(await send(gateway.transport(), newChatId(), [userMessage('Go')], { agent: 'failing' }))
  t.match(message?.parts.filter((part) => part.type === 'dynamic-tool'), [{ toolName: 'no_such_tool', state: 'output-error', errorText: /no_such_tool/ }])
  t.match(message?.parts.filter((part) => part.type === 'text'), [{ text: 'Let me see… ' }], 'what was said before the failure stays')
  t.match(errors, [{ message: 'NO_LUCK: It did not work out' }], 'the run\'s error reaches the client\'s onError')
  t.match(chunks.slice(-2), [{ type: 'error', errorText: 'NO_LUCK: It did not work out' }, { type: 'finish', finishReason: 'error', messageMetadata: { status: 'failed' } }])
})

t.test('tool progress is one data part per call, updated in place; a timed-out call is an output-error part', async (t) => {
  const gateway = await node(t)
  const { message, chunks, errors } = await finalMessage(await send(gateway.transport(), newChatId(), [userMessage('Count')], { agent: 'progressing' }))
  t.same(errors, [])
  const progress = chunks.filter((chunk) => chunk.type === 'data-tool-progress')
  t.ok(progress.length >= 2, 'each report is a chunk')
  const tools = message?.parts.filter((part) => part.type === 'dynamic-tool') ?? []
  t.match(tools, [
    { toolName: 'counting', state: 'output-available', output: { counted: 3 } },
    { toolName: 'stuck', state: 'output-error', errorText: /^[A-Z_]+: / }
  ])
  t.match(message?.parts.filter((part) => part.type === 'data-tool-progress'), [
    { type: 'data-tool-progress', id: tools[0]?.toolCallId, data: { toolCallId: tools[0]?.toolCallId, progress: 3, total: 3, message: 'counted 3' } }
  ], 'one part for the call, holding the last report')
  t.match(message?.metadata, { status: 'completed' })
})

t.test('an aborted stream leaves the run going; reconnectToStream gives the complete message, every part once', async (t) => {
  const gateway = await node(t)
  const transport = gateway.transport()
  const chatId = newChatId()
  const abort = new AbortController()
  const reader = (await send(transport, chatId, [userMessage('What is 6 * 7 and how many miles is 5 km?')], { agent: 'slowDemo', abortSignal: abort.signal })).getReader()
  const before: UIMessageChunk[] = []
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    before.push(value)
    if (value.type === 'tool-input-available') break
  }
  abort.abort()
  await reader.cancel().catch(() => {})
  t.ok(before.some((chunk) => chunk.type === 'tool-input-available'), 'the stream was cut mid-run')
  t.notOk(before.some((chunk) => chunk.type === 'finish'))

  const resumed = await transport.reconnectToStream({ chatId })
  t.ok(resumed !== null, 'the chat has a run in flight')
  if (resumed === null) return
  const { message, errors } = await finalMessage(resumed)
  t.same(errors, [])
  t.equal(message?.id, (before[0] as { messageId?: string }).messageId, 'the same message')
  t.match(message?.metadata, { status: 'completed' }, 'the run was not stopped by the abort')
  const kinds = partKinds(message)
  t.same(kinds.filter((kind) => kind.startsWith('tool:')).length, 2, 'both tool calls')
  t.same(new Set(kinds.filter((kind) => kind.startsWith('tool:'))).size, 2, 'each once')
  t.match(message?.parts.filter((part) => part.type === 'text'), [{ text: '6 * 7 = 42. 5 km = 3.106855961 mi.' }])
  t.ok(message?.parts.filter((part) => part.type === 'dynamic-tool').every((part) => part.state === 'output-available'))

  // Just after the end, a reload still gets the last message; the rule behind it:
  const replay = await transport.reconnectToStream({ chatId })
  t.ok(replay !== null, 'a run that ended a moment ago is replayed')
  if (replay !== null) t.equal((await finalMessage(replay)).message?.id, message?.id)
  const endedAt = new Date(Date.now() - CHAT_RESUME_WINDOW_MS - 1).toISOString()
  const meta = { runId: 'r', threadId: chatId, agent: 'demo', ownerId: 'alice', node: 'n', createdAt: endedAt, lastSeq: 9 }
  t.notOk(resumable({ ...meta, status: 'completed', endedAt }), 'longer ago, nothing to resume')
  t.ok(resumable({ ...meta, status: 'running' }))
  t.ok(resumable({ ...meta, status: 'cancelled', endedAt: new Date().toISOString() }))
})

t.test('one run per chat; cancel stops it; only the owner sees or stops a chat', async (t) => {
  const gateway = await node(t)
  const chatId = newChatId()
  const running = await send(gateway.transport(), chatId, [userMessage('Wait')], { agent: 'waitForCancel' })
  const outcome = finalMessage(running)

  const second = await post(`${gateway.http}/v1/chat`, { id: chatId, messages: [userMessage('Again')], agent: 'demo' })
  t.equal(second.status, 409)
  t.match(await second.json(), { code: 'AGW_ERR_RUN_THREAD_BUSY', message: new RegExp(chatId) })
  const refused: unknown = await send(gateway.transport(), chatId, [userMessage('Again')]).then(() => undefined, (err: unknown) => err)
  t.match(refused, { statusCode: 409, message: /already has a run in progress/ }, 'the SDK surfaces the refusal with its reason')
  const elsewhere = await post(`${gateway.http}/v1/chat`, { id: newChatId(), messages: [userMessage('What is 1 + 1?')] })
  t.equal(elsewhere.status, 200, 'another chat of the same user is free')
  await elsewhere.text()
  const otherUser = await post(`${gateway.http}/v1/chat`, { id: chatId, messages: [userMessage('What is 1 + 1?')] }, 'mallory')
  t.equal(otherUser.status, 200, 'the same chat id of another user is another chat')
  await otherUser.text()

  // Someone else's chat is a chat that does not exist: nothing to resume, nothing to cancel.
  t.equal(await gateway.transport('eve').reconnectToStream({ chatId }), null)
  const theirs = await post(`${gateway.http}/v1/chat/${chatId}/cancel`, {}, 'eve')
  t.equal(theirs.status, 404)
  t.match(await theirs.json(), { code: 'AGW_ERR_CHAT_NOT_FOUND' })
  t.equal((await post(`${gateway.http}/v1/chat/${newChatId()}/cancel`, {})).status, 404)
  t.equal((await post(`${gateway.http}/v1/chat/${chatId}/cancel`, {}, null)).status, 401)

  const cancelled = await post(`${gateway.http}/v1/chat/${chatId}/cancel`, {})
  t.equal(cancelled.status, 202)
  const { runId } = await cancelled.json() as { runId: string }
  t.match((await outcome).message, { id: runId, metadata: { status: 'cancelled' } })
  t.match((await outcome).chunks.at(-1), { type: 'finish', finishReason: 'other' })
  const again = await post(`${gateway.http}/v1/chat/${chatId}/cancel`, {})
  t.equal(again.status, 409)
  t.match(await again.json(), { code: 'AGW_ERR_RUN_ENDED' })
  const after = await post(`${gateway.http}/v1/chat`, { id: chatId, messages: [userMessage('What is 2 + 2?')] })
  t.equal(after.status, 200, 'once stopped, the chat takes the next message')
  t.match(await after.text(), /2 \+ 2 = 4/)
})

t.test('a stream whose token expires ends with an error chunk and no [DONE]; the run goes on', async (t) => {
  const gateway = await node(t)
  const chatId = newChatId()
  const shortLived = new DefaultChatTransport<UIMessage>({ api: `${gateway.http}/v1/chat`, headers: { authorization: `Bearer ${mint({ sub: 'alice' }, { expiresIn: 1 })}` } })
  const { chunks, errors } = await finalMessage(await send(shortLived, chatId, [userMessage('Wait')], { agent: 'waitForCancel' }))
  t.match(chunks.at(-1), { type: 'error', errorText: /^AGW_ERR_AUTH_TOKEN_EXPIRED: / })
  t.notOk(chunks.some((chunk) => chunk.type === 'finish'))
  t.match(errors, [{ message: /AGW_ERR_AUTH_TOKEN_EXPIRED/ }])
  const resumed = await gateway.transport().reconnectToStream({ chatId })
  t.ok(resumed !== null, 'with a fresh token the run is still there to resume')
  const cancelled = await post(`${gateway.http}/v1/chat/${chatId}/cancel`, {})
  t.equal(cancelled.status, 202)
  if (resumed !== null) t.match((await finalMessage(resumed)).message?.metadata, { status: 'cancelled' })
})

t.test('bad requests are refused with a reason; no token is 401; a new chat has nothing to resume', async (t) => {
  const gateway = await node(t)
  const url = `${gateway.http}/v1/chat`
  const cases: Array<[string, unknown, string, RegExp]> = [
    ['no id', { messages: [userMessage('hi')] }, 'AGW_ERR_VALIDATION', /id/],
    ['a chat id with a slash', { id: 'a/b', messages: [userMessage('hi')] }, 'AGW_ERR_VALIDATION', /id/],
    ['no messages', { id: newChatId(), messages: [] }, 'AGW_ERR_VALIDATION', /messages/],
    ['a message without parts', { id: newChatId(), messages: [{ id: 'm', role: 'user' }] }, 'AGW_ERR_VALIDATION', /parts/],
    ['an unknown role', { id: newChatId(), messages: [{ id: 'm', role: 'robot', parts: [] }] }, 'AGW_ERR_VALIDATION', /role/],
    ['no user message', { id: newChatId(), messages: [{ id: 'm', role: 'assistant', parts: [{ type: 'text', text: 'hi' }] }] }, 'AGW_ERR_CHAT_INPUT', /no user message/],
    ['a bad agent name', { id: newChatId(), messages: [userMessage('hi')], agent: 'no spaces' }, 'AGW_ERR_VALIDATION', /agent/],
    ['an unknown agent', { id: newChatId(), messages: [userMessage('hi')], agent: 'nobody' }, 'AGW_ERR_RUN_UNKNOWN_AGENT', /nobody/],
    ['not an object', [1, 2], 'AGW_ERR_VALIDATION', /./]
  ]
  for (const [name, body, code, message] of cases) {
    const response = await post(url, body)
    t.equal(response.status, 400, name)
    t.match(await response.json(), { code, message }, name)
  }
  const broken = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${tokenFor('alice')}` }, body: '{"id":' })
  t.equal(broken.status, 400, 'unparsable JSON')
  t.equal((await post(url, { id: newChatId(), messages: [userMessage('hi')] }, null)).status, 401)
  const noToken = await fetch(`${url}/${newChatId()}/stream`)
  t.equal(noToken.status, 401)
  t.match(await noToken.json(), { code: 'AGW_ERR_AUTH_NO_TOKEN' })
  t.equal(await gateway.transport().reconnectToStream({ chatId: newChatId() }), null, 'a chat that never ran: 204')
  const badId = await fetch(`${url}/a%20b/stream`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } })
  t.equal(badId.status, 400)

  // The OpenAPI document lists all three routes.
  const docs = await (await fetch(`${gateway.http}/docs/json`)).json() as { paths: Record<string, Record<string, unknown>> }
  t.ok(docs.paths['/v1/chat']?.post)
  t.ok(docs.paths['/v1/chat/{chatId}/stream']?.get)
  t.ok(docs.paths['/v1/chat/{chatId}/cancel']?.post)
})

t.test('on Redis: a chat started on node A is resumed through node B, and stays one run at a time across nodes', { skip: skipRedis }, async (t) => {
  const prefix = testPrefix(t)
  const env = { EVENT_STORE: REDIS_URL, REDIS_KEY_PREFIX: prefix }
  const a = await node(t, env)
  const b = await node(t, env)
  const chatId = newChatId()
  const abort = new AbortController()
  const reader = (await send(a.transport(), chatId, [userMessage('What is 6 * 7 and how many miles is 5 km?')], { agent: 'slowDemo', abortSignal: abort.signal })).getReader()
  const first = await reader.read()
  t.match(first.value, { type: 'start' })
  abort.abort()
  await reader.cancel().catch(() => {})

  const busy = await post(`${b.http}/v1/chat`, { id: chatId, messages: [userMessage('Again')] })
  t.equal(busy.status, 409, 'node B refuses a second submit while the run goes on on node A')
  t.match(await busy.json(), { code: 'AGW_ERR_RUN_THREAD_BUSY' })

  const resumed = await b.transport().reconnectToStream({ chatId })
  t.ok(resumed !== null)
  if (resumed === null) return
  const { message, errors } = await finalMessage(resumed)
  t.same(errors, [])
  t.equal(message?.id, (first.value as { messageId?: string }).messageId, 'the message of the run on A')
  t.match(message?.metadata, { status: 'completed', threadId: chatId })
  t.equal(message?.parts.filter((part) => part.type === 'dynamic-tool' && part.state === 'output-available').length, 2)
  t.match(message?.parts.filter((part) => part.type === 'text'), [{ text: '6 * 7 = 42. 5 km = 3.106855961 mi.' }])

  // Cancel through B a run that A executes.
  const waiting = await send(a.transport(), chatId, [userMessage('Wait')], { agent: 'waitForCancel' })
  const outcome = finalMessage(waiting)
  await sleep(50)
  const cancelled = await post(`${b.http}/v1/chat/${chatId}/cancel`, {})
  t.equal(cancelled.status, 202)
  t.match((await outcome).message?.metadata, { status: 'cancelled' })
})
