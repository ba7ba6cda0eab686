// End to end over real TCP sockets, with the `ws` client: what a user of the service sees.
import t from 'tap'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import type { Agent } from '../src/contracts.js'
import { CRITICAL_EVENT_TYPES, PROTOCOL, type RunEvent } from '../src/protocol.js'
import {
  OTHER_SECRET, buildApp, connect, firehose, listen, mint, randomUser, refusedUpgrade, runEnded, runProblems, tcpOf, testEnv, tokenFor
} from './helpers.js'

t.test('a browser-style connection: token in the subprotocol, only agent-events.v1 echoed, the whole run delivered', async (t) => {
  const app = await buildApp(t)
  const { ws } = await listen(t, app)
  const token = tokenFor('alice')
  const upgrade = new Promise<Record<string, unknown>>((resolve) => {
    const socket = new WebSocket(ws, [PROTOCOL, `bearer.${token}`])
    socket.on('upgrade', (response) => { socket.on('open', () => { socket.close(); resolve(response.headers) }) })
  })
  const headers = await upgrade
  t.equal(headers['sec-websocket-protocol'], PROTOCOL, 'the server selects exactly agent-events.v1')
  t.notMatch(JSON.stringify(headers), token, 'the token is never echoed')

  const client = await connect(t, ws, { token, viaProtocol: true })
  t.equal(client.socket.protocol, PROTOCOL)
  client.send({ type: 'run', id: 'q', input: { message: 'What is 12 * (3 + 4)? Also convert 10 km to miles.' } })
  const accepted = await client.nextOf('run_accepted')
  const events = await client.runEvents(accepted.runId)
  t.same(runProblems(events), [])
  t.same([...new Set(events.map((e) => e.type))].filter((type) => (CRITICAL_EVENT_TYPES as readonly string[]).includes(type)).sort(), [...CRITICAL_EVENT_TYPES].sort())
  const tools = events.flatMap((e) => (e.type === 'tool_completed' ? [[e.data.tool, e.data.status]] : []))
  t.same(tools, [['calculator', 'success'], ['convert_units', 'success']])
  const answer = events.flatMap((e) => (e.type === 'agent_message' ? [e.data.delta] : [])).join('')
  t.match(answer, /84/)
  t.match(answer, /6\.21/)
  t.match(events.at(-1), { type: 'agent_completed', data: { status: 'completed', output: { answer } } })
})

t.test('50 users with two runs each: every event reaches its owner and nobody else', async (t) => {
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '2' }) })
  const { ws } = await listen(t, app)
  const users = Array.from({ length: 50 }, (_, i) => `user-${i}`)
  const clients = await Promise.all(users.map((user) => connect(t, ws, { token: tokenFor(user) })))
  const questions = ['What is 17 * 23?', 'How many miles in 42 km?']
  const results = await Promise.all(clients.map(async (client, i) => {
    for (const [n, message] of questions.entries()) client.send({ type: 'run', id: `${users[i] ?? ''}-${n}`, input: { message } })
    // run_accepted always precedes a run's events, so an event of an unknown run is foreign.
    const seen = new Map<string, RunEvent[]>()
    let completed = 0
    while (completed < 2) {
      const message = await client.next(20_000)
      if (message.type === 'run_accepted') seen.set(message.runId, [])
      if (!('seq' in message)) continue
      const events = seen.get(message.runId)
      if (events === undefined) throw new Error(`${users[i] ?? ''} received an event of a run that is not theirs`)
      events.push(message)
      if (message.type === 'agent_completed') completed++
    }
    return seen
  }))
  let total = 0
  results.forEach((seen, i) => {
    t.equal(seen.size, 2, `${users[i] ?? ''} has two runs`)
    for (const [runId, events] of seen) {
      total += events.length
      const problems = runProblems(events)
      if (problems.length > 0) t.fail(`${users[i] ?? ''} run ${runId}: ${problems.join('; ')}`)
    }
  })
  t.ok(total > 50 * 2 * 8, `${total} events delivered, all to their owners, every run whole and in order`)
  // Every connection got exactly its own two runs' events and no one else's.
  for (const [i, client] of clients.entries()) {
    const runIds = new Set(client.messages.flatMap((m) => (m.type === 'run_accepted' ? [m.runId] : [])))
    const foreign = client.messages.filter((m) => 'seq' in m && !runIds.has(m.runId))
    t.equal(foreign.length, 0, `${users[i] ?? ''} saw no foreign events`)
  }
})

t.test('a client that drops mid-run reconnects, subscribes after its last seq, and loses nothing', async (t) => {
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '30' }) })
  const { ws } = await listen(t, app)
  const token = tokenFor('alice')
  const first = await connect(t, ws, { token })
  first.send({ type: 'run', input: { message: 'What is 2 ^ 10? Then convert 100 F to C.' } })
  const { runId } = await first.nextOf('run_accepted')
  const before = await first.readThenDrop(4)
  const lastSeq = before.at(-1)?.seq ?? 0

  const second = await connect(t, ws, { token })
  second.send({ type: 'subscribe', id: 'resume', runId, after: lastSeq })
  t.same(await second.next(), { type: 'subscribed', id: 'resume', runId, recovered: true, fromSeq: lastSeq + 1 })
  const after = await second.runEvents(runId)
  t.equal(after[0]?.seq, lastSeq + 1, 'resumes exactly after the last seq seen')
  t.same(runProblems([...before, ...after]), [], 'nothing lost, nothing repeated, in order')
  t.match(after.at(-1), { data: { status: 'completed' } }, 'the run kept going while nobody watched')
})

t.test("another user's runId is answered exactly like a random one", async (t) => {
  const app = await buildApp(t)
  const { ws } = await listen(t, app)
  const alice = await connect(t, ws, { token: tokenFor('alice') })
  alice.send({ type: 'run', input: { message: 'hello' } })
  const { runId } = await alice.nextOf('run_accepted')
  await alice.runEvents(runId)
  const mallory = await connect(t, ws, { token: tokenFor('mallory') })
  mallory.send({ type: 'subscribe', id: 'x', runId })
  const theirs = await mallory.nextOf('error')
  const random = '0b8e6a1e-1111-4222-8333-444455556666'
  mallory.send({ type: 'subscribe', id: 'x', runId: random })
  const missing = await mallory.nextOf('error')
  t.same({ ...theirs, message: theirs.message.replace(runId, '?') }, { ...missing, message: missing.message.replace(random, '?') })
  t.equal(theirs.code, 'NOT_FOUND')
})

t.test('every refused handshake is a real HTTP status with { code, message } and no socket', async (t) => {
  const app = await buildApp(t, { env: testEnv({ ALLOWED_ORIGINS: 'https://app.example', JWT_ISSUER: 'https://idp.example', JWT_AUDIENCE: 'agent-gateway' }) })
  const { ws } = await listen(t, app)
  const now = Math.floor(Date.now() / 1000)
  const good = { iss: 'https://idp.example', aud: 'agent-gateway' }
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
  const cases: Array<[string, Record<string, string>, number, string, string?]> = [
    ['no token', {}, 401, 'AGW_ERR_AUTH_NO_TOKEN'],
    ['malformed', bearer('not.a.jwt'), 401, 'AGW_ERR_AUTH_TOKEN_MALFORMED'],
    ['alg none', bearer(mint({ sub: 'a', ...good }, { alg: 'none', signature: '' })), 401, 'AGW_ERR_AUTH_TOKEN_ALGORITHM'],
    ['HS384', bearer(mint({ sub: 'a', ...good }, { alg: 'HS384' })), 401, 'AGW_ERR_AUTH_TOKEN_ALGORITHM'],
    ['wrong signature', bearer(mint({ sub: 'a', ...good }, { secret: OTHER_SECRET })), 401, 'AGW_ERR_AUTH_TOKEN_SIGNATURE'],
    ['expired', bearer(mint({ sub: 'a', ...good }, { expiresIn: -600 })), 401, 'AGW_ERR_AUTH_TOKEN_EXPIRED'],
    ['not yet valid', bearer(mint({ sub: 'a', nbf: now + 600, ...good })), 401, 'AGW_ERR_AUTH_TOKEN_INACTIVE'],
    ['no exp', bearer(mint({ sub: 'a', ...good }, { expiresIn: null })), 401, 'AGW_ERR_AUTH_TOKEN_CLAIM'],
    ['wrong aud', bearer(mint({ sub: 'a', iss: good.iss, aud: 'other' })), 401, 'AGW_ERR_AUTH_TOKEN_CLAIM'],
    ['wrong iss', bearer(mint({ sub: 'a', iss: 'https://evil.example', aud: good.aud })), 401, 'AGW_ERR_AUTH_TOKEN_CLAIM'],
    ['no sub', bearer(mint({ ...good })), 401, 'AGW_ERR_AUTH_SUBJECT_INVALID'],
    ['placeholder sub', bearer(mint({ sub: 'undefined', ...good })), 401, 'AGW_ERR_AUTH_SUBJECT_INVALID'],
    ['query token', {}, 401, 'AGW_ERR_AUTH_QUERY_TOKEN', `?token=${mint({ sub: 'a', ...good })}`],
    ['foreign origin', { ...bearer(mint({ sub: 'a', ...good })), origin: 'https://evil.example' }, 403, 'AGW_ERR_ORIGIN_FORBIDDEN']
  ]
  for (const [name, headers, status, code, query] of cases) {
    const { status: got, body } = await refusedUpgrade(`${ws}${query ?? ''}`, headers)
    t.equal(got, status, name)
    t.equal(body.code, code, name)
    t.type(body.message, 'string')
    t.same(Object.keys(body).sort(), ['code', 'message'], `${name}: exactly { code, message }`)
  }
  const { status } = await refusedUpgrade(ws, { authorization: `Bearer ${mint({ sub: 'a', ...good })}`, origin: 'https://app.example' }).catch(() => ({ status: 101 }))
  t.equal(status, 101, 'an allowed origin with a good token is upgraded')
})

t.test('HTTP 429 past MAX_CONNECTIONS_PER_USER, and a closed connection frees its slot', async (t) => {
  const app = await buildApp(t, { env: testEnv({ MAX_CONNECTIONS_PER_USER: '2' }) })
  const { ws } = await listen(t, app)
  const token = tokenFor('alice')
  const a = await connect(t, ws, { token })
  await connect(t, ws, { token })
  t.match(await refusedUpgrade(ws, { authorization: `Bearer ${token}` }), { status: 429, body: { code: 'AGW_ERR_CONNECTION_LIMIT', message: /limit 2/ } })
  a.close()
  await a.waitClosed()
  await new Promise((resolve) => setTimeout(resolve, 20))
  await t.resolves(connect(t, ws, { token }))
})

t.test('a client that stops answering pings is closed with 4408', async (t) => {
  const app = await buildApp(t, { env: testEnv({ HEARTBEAT_MS: '100' }) })
  const { ws } = await listen(t, app)
  const silent = await connect(t, ws, { token: tokenFor('alice'), autoPong: false })
  const polite = await connect(t, ws, { token: tokenFor('bob') })
  t.match(await silent.waitClosed(2000), { code: 4408, reason: 'heartbeat timeout' })
  await new Promise((resolve) => setTimeout(resolve, 300))
  polite.send({ type: 'ping', id: 'ok' })
  t.same(await polite.next(), { type: 'pong', id: 'ok' }, 'a client that answers stays connected')
})

t.test('a slow reader never makes the server buffer without bound and still gets every event, in order', async (t) => {
  const EVENTS = 20_000
  const HIGH_WATER = 64 * 1024
  const app = await buildApp(t, { agents: { firehose: firehose(EVENTS) }, env: testEnv({ SEND_BUFFER_BYTES: String(HIGH_WATER) }) })
  const serverSockets: WebSocket[] = []
  app.websocketServer.on('connection', (socket: WebSocket) => { serverSockets.push(socket) })
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor('alice') })
  const tcp = tcpOf(client.socket)
  client.send({ type: 'run', input: { message: 'go' } })
  const { runId } = await client.nextOf('run_accepted')
  tcp.pause()
  let maxBuffered = 0
  const sampler = setInterval(() => { maxBuffered = Math.max(maxBuffered, serverSockets[0]?.bufferedAmount ?? 0) }, 1)
  // Wait until the agent has written every event to the log while the client reads nothing.
  await runEnded(app, runId)
  await new Promise((resolve) => setTimeout(resolve, 200))
  clearInterval(sampler)
  const frameBytes = 300
  t.ok(maxBuffered <= HIGH_WATER + frameBytes, `server-side buffer peaked at ${maxBuffered} bytes (bound ${HIGH_WATER} + one frame) for ~${Math.round(EVENTS * 260 / 1024)} KiB of events`)
  t.ok(maxBuffered > HIGH_WATER / 2, 'the stalled socket did fill up (the test exercises backpressure)')
  tcp.resume()
  const events = await client.runEvents(runId, 30_000)
  t.equal(events.length, EVENTS + 2)
  t.same(runProblems(events), [], 'every event, once, in order, caught up from the log')
})

/** Every write the server makes to an upgraded TCP socket, as the number of chunks each carried. */
function countSocketWrites (app: FastifyInstance): number[] {
  const writes: number[] = []
  type Writer = (this: unknown, ...args: any[]) => void
  app.server.on('upgrade', (_request, socket: { _write: Writer, _writev: Writer }) => {
    const write = socket._write
    const writev = socket._writev
    socket._write = function (...args) { writes.push(1); write.apply(this, args) }
    socket._writev = function (chunks: unknown[], ...rest) { writes.push(chunks.length); writev.call(this, chunks, ...rest) }
  })
  return writes
}

t.test('the frames a run emits in one tick leave in two writes to the socket, in order', async (t) => {
  const app = await buildApp(t, { agents: { firehose: firehose(300, 160, 1000) } })
  const writes = countSocketWrites(app)
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor('alice') })
  const before = writes.length
  client.send({ type: 'run', input: { message: 'go' } })
  const accepted = await client.nextOf('run_accepted')
  const events = await client.runEvents(accepted.runId)
  t.equal(events.length, 302)
  t.same(runProblems(events), [], 'every event, in seq order')
  const during = writes.slice(before)
  // Unbatched, each of the 303 frames would be a write of its own. The agent emits its 300
  // thoughts in one tick: the first goes out at once, the other 299 together when the tick ends.
  t.ok(during.length <= 8, `${during.length} writes for 303 frames`)
  t.ok(Math.max(...during) >= 2 * 299, 'one write carried the rest of the tick\'s frames (a header and a payload each)')
})

t.test("a tick's first frame to a socket is written at once: it does not wait for the tick to end", async (t) => {
  const handed: number[] = []
  let writes: number[] = []
  const agent: Agent = async ({ think }) => {
    // A tick of its own, as a model's next chunk arriving would be.
    await new Promise((resolve) => setImmediate(resolve))
    const before = writes.length
    think('first')
    handed.push(writes.length - before)
    think('second')
    think('third')
    handed.push(writes.length - before)
    return 'done'
  }
  const app = await buildApp(t, { agents: { agent } })
  writes = countSocketWrites(app)
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor('alice') })
  client.send({ type: 'run', input: { message: 'go' } })
  const accepted = await client.nextOf('run_accepted')
  const events = await client.runEvents(accepted.runId)
  t.same(runProblems(events), [])
  t.same(events.filter((e) => e.type === 'agent_thinking').map((e) => e.type === 'agent_thinking' && e.data.thought), ['first', 'second', 'third'])
  t.same(handed, [1, 1], 'the first thought reached the socket before think() returned; the next two waited to share a write')

t.test('run_accepted and agent_started leave in one write to the socket', async (t) => {
  let release!: () => void
  const held = new Promise<void>((resolve) => { release = resolve })
  // Emits nothing until the test has looked at the writes of the run's start.
  const agent: Agent = async ({ think }) => {
    await held
    think('after the start')
    return 'done'
  }
  const app = await buildApp(t, { agents: { agent } })
  const writes = countSocketWrites(app)
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor('alice') })
  const before = writes.length
  client.send({ type: 'run', id: 'r1', input: { message: 'go' } })
  const accepted = await client.nextOf('run_accepted')
  const started = await client.nextOf('agent_started')
  t.equal(started.runId, accepted.runId)
  // Two frames, a header and a payload each, in one writev; before, the reply went out alone.
  t.same(writes.slice(before), [4], 'one write carried both frames')
  release()
  const events = [started, ...await client.runEvents(accepted.runId)]
  t.same(runProblems(events), [])
  t.same(events.map((event) => event.type), ['agent_started', 'agent_thinking', 'agent_completed'])
})
})

t.test('health: /healthz is alive, /readyz is ready', async (t) => {
  const app = await buildApp(t)
  const { http } = await listen(t, app)
  const healthz = await fetch(`${http}/healthz`)
  t.equal(healthz.status, 200)
  t.same(await healthz.json(), { status: 'ok' })
  const readyz = await fetch(`${http}/readyz`)
  t.equal(readyz.status, 200)
  t.same(await readyz.json(), { status: 'ready' })
})

t.test('/readyz answers 503 when the event store does not answer', async (t) => {
  const { createMemoryStore } = await import('../src/stores/memory-store.js')
  const store = createMemoryStore({ historyTtlMs: 1000 })
  let healthy = true
  const flaky = { ...store, ping: async () => { if (!healthy) throw new Error('connection refused') } }
  const app = await buildApp(t, { store: flaky })
  t.equal((await app.inject('/readyz')).statusCode, 200)
  healthy = false
  const response = await app.inject('/readyz')
  t.equal(response.statusCode, 503)
  t.same(response.json(), { code: 'AGW_ERR_NOT_READY', message: 'Not ready: the event store is not reachable (connection refused)' })
})

t.test('a random user cannot learn anything through cancel either', async (t) => {
  const app = await buildApp(t)
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor(randomUser()) })
  client.send({ type: 'cancel', id: 'c', runId: 'nope' })
  t.same(await client.next(), { type: 'error', id: 'c', code: 'NOT_FOUND', message: 'Run "nope" not found' })
})
