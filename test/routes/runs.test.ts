// The HTTP runs API and its Server-Sent Events, over a real port: same engine, same delivery path,
// same events as the WebSocket.
import { once } from 'node:events'
import type { Socket } from 'node:net'
import t from 'tap'
import type { Agent } from '../../src/index.js'
import type { RunEvent } from '../../src/protocol.js'
import { createMemoryStore } from '../../src/stores/memory-store.js'
import { buildApp, connect, listen, runProblems, testEnv, tokenFor } from '../helpers.js'

interface SseMessage { id?: string, data?: string, comment?: string }

/** Reads a whole event stream (until the server ends it) into its messages. */
async function readStream (url: string, headers: Record<string, string>): Promise<{ status: number, type: string | null, messages: SseMessage[] }> {
  const response = await fetch(url, { headers })
  const text = await response.text()
  const messages = text.split('\n\n').filter((block) => block !== '').map((block) => {
    const message: SseMessage = {}
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) message.comment = line.slice(1).trim()
      else if (line.startsWith('id: ')) message.id = line.slice(4)
      else if (line.startsWith('data: ')) message.data = line.slice(6)
    }
    return message
  })
  return { status: response.status, type: response.headers.get('content-type'), messages }
}

const events = (messages: SseMessage[]): RunEvent[] => messages.filter((m) => m.data !== undefined).map((m) => JSON.parse(m.data as string) as RunEvent)

const waitForCancel: Agent = async (run) => {
  run.think('waiting')
  await new Promise((resolve) => { run.signal.addEventListener('abort', resolve) })
}

t.test('start a run over HTTP, read it back, follow its events as SSE and resume with Last-Event-ID', async (t) => {
  const app = await buildApp(t)
  const { http } = await listen(t, app)
  const auth = { authorization: `Bearer ${tokenFor('alice')}` }
  const started = await fetch(`${http}/v1/runs`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ input: { message: 'What is 7 * 6?' } }) })
  t.equal(started.status, 202)
  const { runId, threadId, agent } = await started.json() as { runId: string, threadId: string, agent: string }
  t.equal(agent, 'demo')

  const whole = await readStream(`${http}/v1/runs/${runId}/events`, auth)
  t.equal(whole.status, 200)
  t.match(whole.type, /^text\/event-stream/)
  const all = events(whole.messages)
  t.same(runProblems(all), [], 'the whole run, in order, ending with the terminal event')
  t.same(whole.messages.filter((m) => m.data !== undefined).map((m) => m.id), all.map((e) => String(e.seq)), 'id: is the seq')
  t.match(all.find((e) => e.type === 'tool_completed'), { data: { tool: 'calculator', result: { value: 42 } } })

  const resumed = await readStream(`${http}/v1/runs/${runId}/events`, { ...auth, 'last-event-id': '4' })
  t.same(events(resumed.messages), all.slice(4), 'Last-Event-ID: exactly the events after it')
  const byQuery = await readStream(`${http}/v1/runs/${runId}/events?after=${all.length - 1}`, auth)
  t.same(events(byQuery.messages), all.slice(-1), '?after= works too')

  // Resumed at (or past) the end of the finished run: 204, which also stops an EventSource's
  // reconnecting, and no stream left open holding a connection slot.
  for (const headers of [{ 'last-event-id': String(all.length) }, { 'last-event-id': String(all.length + 5) }]) {
    const atEnd = await fetch(`${http}/v1/runs/${runId}/events`, { headers: { ...auth, ...headers }, signal: AbortSignal.timeout(5000) })
    t.equal(atEnd.status, 204, `Last-Event-ID ${headers['last-event-id']} of ${all.length}`)
    t.equal(await atEnd.text(), '')
  }
  t.equal((await fetch(`${http}/v1/runs/${runId}/events?after=${all.length}`, { headers: auth, signal: AbortSignal.timeout(5000) })).status, 204)
  for (const after of ['1e21', '9007199254740992', '-1', 'Infinity']) {
    const refused = await fetch(`${http}/v1/runs/${runId}/events?after=${after}`, { headers: auth, signal: AbortSignal.timeout(5000) })
    t.equal(refused.status, 400, `?after=${after} is refused`)
    t.match(await refused.json(), { code: 'AGW_ERR_VALIDATION' })
  }
  t.equal((await fetch(`${http}/v1/runs/${runId}/events`, { headers: { ...auth, 'last-event-id': '1e21' }, signal: AbortSignal.timeout(5000) })).status, 400, 'Last-Event-ID: 1e21 too')
  t.equal(app.delivery.connectionCount('alice'), 0, 'no stream is left open')

  const summary = await fetch(`${http}/v1/runs/${runId}`, { headers: auth })
  const body = await summary.json() as Record<string, unknown>
  t.match(body, { runId, threadId, agent: 'demo', status: 'completed', lastSeq: all.length })
  t.same(Object.keys(body).sort(), ['agent', 'createdAt', 'lastSeq', 'runId', 'status', 'threadId'])
  t.ok(Number.isFinite(Date.parse(String(body.createdAt))))
})

t.test('the SSE stream and a WebSocket of the same user see exactly the same events', async (t) => {
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '5' }) })
  const { http, ws } = await listen(t, app)
  const token = tokenFor('alice')
  const socket = await connect(t, ws, { token })
  socket.send({ type: 'run', input: { message: 'Convert 3 km to miles' } })
  const { runId } = await socket.nextOf('run_accepted')
  const [viaSocket, viaStream] = await Promise.all([socket.runEvents(runId), readStream(`${http}/v1/runs/${runId}/events`, { authorization: `Bearer ${token}` })])
  t.same(events(viaStream.messages), viaSocket)
})

t.test('cancel over HTTP; heartbeats keep a quiet stream open; the stream counts as a connection', async (t) => {
  const app = await buildApp(t, { agents: { waitForCancel }, env: testEnv({ HEARTBEAT_MS: '50', MAX_CONNECTIONS_PER_USER: '1' }) })
  const { http } = await listen(t, app)
  const auth = { authorization: `Bearer ${tokenFor('alice')}` }
  const json = { ...auth, 'content-type': 'application/json' }
  const { runId } = await (await fetch(`${http}/v1/runs`, { method: 'POST', headers: json, body: '{"input":{"message":"x"}}' })).json() as { runId: string }
  const streaming = readStream(`${http}/v1/runs/${runId}/events`, auth)
  await new Promise((resolve) => setTimeout(resolve, 200))
  const second = await fetch(`${http}/v1/runs/${runId}/events`, { headers: auth })
  t.equal(second.status, 429, 'MAX_CONNECTIONS_PER_USER counts event streams')
  t.match(await second.json(), { code: 'AGW_ERR_CONNECTION_LIMIT' })
  const cancelled = await fetch(`${http}/v1/runs/${runId}/cancel`, { method: 'POST', headers: auth })
  t.equal(cancelled.status, 202)
  t.same(await cancelled.json(), { runId })
  const stream = await streaming
  t.ok(stream.messages.some((m) => m.comment === 'keep-alive'), 'comment lines while the run was quiet')
  t.match(events(stream.messages).at(-1), { type: 'agent_completed', data: { status: 'cancelled' } })
  const again = await fetch(`${http}/v1/runs/${runId}/cancel`, { method: 'POST', headers: auth })
  t.equal(again.status, 409)
  t.match(await again.json(), { code: 'AGW_ERR_RUN_ENDED' })
})

t.test("errors: another user's run is a 404 identical to a missing one; bad input is a 400; no token is a 401", async (t) => {
  const app = await buildApp(t)
  const { http } = await listen(t, app)
  const alice = { authorization: `Bearer ${tokenFor('alice')}` }
  const mallory = { authorization: `Bearer ${tokenFor('mallory')}` }
  const { runId } = await (await fetch(`${http}/v1/runs`, { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body: '{"input":{"message":"hi"}}' })).json() as { runId: string }
  const missing = '7c9e6679-7425-40de-944b-e07fc1f90ae7'
  for (const [method, path] of [['GET', ''], ['GET', '/events'], ['POST', '/cancel']] as const) {
    const theirs = await fetch(`${http}/v1/runs/${runId}${path}`, { method, headers: mallory })
    const none = await fetch(`${http}/v1/runs/${missing}${path}`, { method, headers: mallory })
    t.equal(theirs.status, 404, `${method} ${path}`)
    t.same({ ...(await theirs.json() as object), message: 'x' }, { ...(await none.json() as object), message: 'x' })
  }
  const bad = await fetch(`${http}/v1/runs`, { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body: '{"input":{"message":5}}' })
  t.equal(bad.status, 400)
  t.match(await bad.json(), { code: 'AGW_ERR_VALIDATION', message: /input\/message must be string/ })
  // Every refusal in the catalogue's words, Fastify's own body checks included.
  const post = async (headers: Record<string, string>, body: string): Promise<[number, unknown]> => {
    const response = await fetch(`${http}/v1/runs`, { method: 'POST', headers: { ...alice, ...headers }, body })
    return [response.status, await response.json()]
  }
  const json = { 'content-type': 'application/json' }
  t.match(await post(json, '{"input":{"message":"hi"},"cancelOnDisconect":true}'), [400, { code: 'AGW_ERR_VALIDATION', message: /cancelOnDisconect.*must not have additional properties/ }],
    'a misspelt field is refused, as on the WebSocket')
  t.match(await post(json, '{"input":'), [400, { code: 'AGW_ERR_BAD_REQUEST', message: /JSON/ }])
  t.match(await post({ 'content-type': 'application/x-www-form-urlencoded' }, 'input=hi'), [415, { code: 'AGW_ERR_UNSUPPORTED_MEDIA_TYPE' }])
  t.match(await post(json, JSON.stringify({ input: { message: 'x'.repeat(2 * 1024 * 1024) } })), [413, { code: 'AGW_ERR_BODY_TOO_LARGE' }])
  const badResume = await fetch(`${http}/v1/runs/${runId}/events`, { headers: { ...alice, 'last-event-id': 'yesterday' } })
  t.equal(badResume.status, 400)
  t.match(await badResume.json(), { code: 'AGW_ERR_LAST_EVENT_ID' })
  const anonymous = await fetch(`${http}/v1/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"input":{"message":"hi"}}' })
  t.equal(anonymous.status, 401)
  t.match(await anonymous.json(), { code: 'AGW_ERR_AUTH_NO_TOKEN' })
})

t.test('the OpenAPI document describes the API from the same schemas', async (t) => {
  const app = await buildApp(t)
  const response = await app.inject('/docs/json')
  t.equal(response.statusCode, 200)
  const doc = response.json<{ openapi: string, paths: Record<string, Record<string, { security?: unknown, requestBody?: { content: Record<string, { schema: unknown }> } }>> }>()
  t.match(doc.openapi, /^3\./)
  t.same(Object.keys(doc.paths).sort(), [
    '/v1/ag-ui', '/v1/chat', '/v1/chat/{chatId}/cancel', '/v1/chat/{chatId}/stream',
    '/v1/runs', '/v1/runs/{runId}', '/v1/runs/{runId}/cancel', '/v1/runs/{runId}/events'
  ], 'every HTTP route of the API, from one document')
  t.same(doc.paths['/v1/ag-ui']?.post?.security, [{ bearer: [] }])
  t.same(doc.paths['/v1/chat']?.post?.security, [{ bearer: [] }])
  t.match(doc.paths['/v1/chat']?.post?.requestBody?.content['application/json']?.schema, { required: ['id', 'messages'], properties: { messages: { items: { required: ['id', 'role', 'parts'] } } } })
  t.same(doc.paths['/v1/chat/{chatId}/stream']?.get?.security, [{ bearer: [] }])
  t.match(doc.paths['/v1/runs']?.post?.requestBody?.content['application/json']?.schema, { required: ['input'], properties: { input: { required: ['message'] } } })
  t.same(doc.paths['/v1/runs/{runId}']?.get?.security, [{ bearer: [] }])
})

t.test('a client that leaves while its event stream is being looked up holds no connection slot', async (t) => {
  const memory = createMemoryStore({ historyTtlMs: 60_000 })
  let gated = false
  let entered!: () => void
  const lookingUp = new Promise<void>((resolve) => { entered = resolve })
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  // The memory store, except that looking a run up waits for the test once the gate is set.
  const store = new Proxy(memory, {
    get (target, key) {
      if (key === 'getRun') {
        return async (runId: string) => {
          if (gated) { entered(); await gate }
          return target.getRun(runId)
        }
      }
      const value: unknown = Reflect.get(target, key)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    }
  })
  const waitForCancel: Agent = async (run) => { await new Promise((resolve) => { run.signal.addEventListener('abort', resolve) }) }
  const app = await buildApp(t, { agents: { waitForCancel }, store })
  const { http } = await listen(t, app)
  const headers = { authorization: `Bearer ${tokenFor('alice')}`, 'content-type': 'application/json' }
  const started = await fetch(`${http}/v1/runs`, { method: 'POST', headers, body: JSON.stringify({ agent: 'waitForCancel', input: { message: 'hi' } }) })
  const { runId } = await started.json() as { runId: string }
  gated = true
  const sockets: Socket[] = []
  app.server.on('connection', (socket: Socket) => { sockets.push(socket) })
  const controller = new AbortController()
  const request = fetch(`${http}/v1/runs/${runId}/events`, { headers, signal: controller.signal })
  await lookingUp
  const closed = Promise.all(sockets.map((socket) => once(socket, 'close')))
  controller.abort()
  await t.rejects(request, { name: 'AbortError' })
  await closed
  gated = false
  release()
  for (let i = 0; i < 100 && app.delivery.connectionCount('alice') > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(app.delivery.connectionCount('alice'), 0, 'the stream that opened for nobody let its slot go')
  t.equal((await fetch(`${http}/v1/runs/${runId}/cancel`, { method: 'POST', headers: { authorization: headers.authorization } })).status, 202)
})
