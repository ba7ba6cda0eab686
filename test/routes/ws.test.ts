// Protocol tests over injectWS (no port): every client message, every error, the limits.
import t, { type Test } from 'tap'
import type WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { defineTool, type Agent } from '../../src/index.js'
import { CRITICAL_EVENT_TYPES, PROTOCOL } from '../../src/protocol.js'
import { TestClient, buildApp, mint, mintRaw, runProblems, testEnv, tokenFor } from '../helpers.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Opens an injectWS connection and waits for `welcome`. The client is dropped when the test ends,
 * before the app closes (teardowns run last-in first-out): injectWS's in-memory streams would
 * otherwise leave the server waiting out the closing handshake.
 */
async function open (t: Test, app: FastifyInstance, token: string | undefined, headers: Record<string, string> = {}, path = '/ws'): Promise<TestClient> {
  let client: TestClient | undefined
  const all = { 'sec-websocket-protocol': PROTOCOL, ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...headers }
  await app.injectWS(path, { headers: all }, { onInit: (ws: WebSocket) => { client = new TestClient(ws) } })
  const opened = client as TestClient
  t.teardown(() => { opened.socket.terminate() })
  await opened.nextOf('welcome')
  return opened
}

async function refused (app: FastifyInstance, headers: Record<string, string>, path = '/ws'): Promise<string> {
  try {
    await app.injectWS(path, { headers: { 'sec-websocket-protocol': PROTOCOL, ...headers } })
  } catch (err) {
    return (err as Error).message
  }
  throw new Error('the upgrade was accepted')
}

/** An agent that waits until cancelled (or 10 s), thinking first so the run is visibly under way. */
const waiting: Agent = async (run) => {
  run.think('waiting')
  await new Promise((resolve) => { const timer = setTimeout(resolve, 10_000); run.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(null) }) })
  return 'done'
}

t.test('welcome describes the connection and its limits', async (t) => {
  const app = await buildApp(t, { env: testEnv({ MAX_MESSAGE_BYTES: '4096', MAX_CONCURRENT_RUNS: '3', HEARTBEAT_MS: '20000' }) })
  const client = await open(t, app, tokenFor('alice'))
  t.match(client.messages[0], {
    type: 'welcome',
    protocol: 'agent-events.v1',
    connectionId: /^[0-9a-f-]{36}$/,
    userId: 'alice',
    heartbeatMs: 20000,
    limits: { maxMessageBytes: 4096, maxConcurrentRuns: 3, messagesPerSecond: 20, messageBurst: 40 }
  })
})

t.test('a run streams the five critical events, in order, after run_accepted', async (t) => {
  const app = await buildApp(t)
  const client = await open(t, app, tokenFor('alice'))
  client.send({ type: 'run', id: 'r1', input: { message: 'What is 6 * 7?' } })
  const accepted = await client.nextOf('run_accepted')
  t.match(accepted, { type: 'run_accepted', id: 'r1', runId: String, threadId: String, agent: 'demo' })
  const events = await client.runEvents(accepted.runId)
  t.same(runProblems(events), [])
  const types = events.map((e) => e.type)
  for (const type of CRITICAL_EVENT_TYPES) t.ok(types.includes(type), `${type} was delivered`)
  t.ok(types.indexOf('agent_thinking') < types.indexOf('tool_executing'))
  t.match(events.find((e) => e.type === 'tool_completed'), { data: { tool: 'calculator', status: 'success', result: { value: 42 } } })
  t.match(events.at(-1), { data: { status: 'completed' } })
  t.ok(events.every((e) => e.threadId === accepted.threadId))
})

t.test('ping is answered with pong, echoing the id', async (t) => {
  const app = await buildApp(t)
  const client = await open(t, app, tokenFor('alice'))
  client.send({ type: 'ping', id: 'p-1' })
  t.same(await client.next(), { type: 'pong', id: 'p-1' })
  client.send({ type: 'ping' })
  t.same(await client.next(), { type: 'pong' })
})

t.test('bad frames get BAD_MESSAGE with a reason, and the connection stays usable', async (t) => {
  const app = await buildApp(t)
  const client = await open(t, app, tokenFor('alice'))
  const bad: Array<[unknown, RegExp, string?]> = [
    ['{not json', /not valid JSON/],
    ['[1,2]', /must be a JSON object/],
    ['"run"', /must be a JSON object/],
    [{ id: 'a' }, /needs a string "type"/, 'a'],
    [{ type: 'launch', id: 'b' }, /unknown message type "launch"/, 'b'],
    [{ type: 'run', id: 'c' }, /invalid run message: .*input/, 'c'],
    [{ type: 'run', id: 'd', input: { message: 5 } }, /input\.message must be string/, 'd'],
    [{ type: 'run', id: 'e', input: { message: 'x' }, priority: 'high' }, /must not have additional properties \(priority\)/, 'e'],
    [{ type: 'subscribe', id: 'f', runId: 'x', after: -1 }, /after must be >= 0/, 'f'],
    [{ type: 'subscribe', id: 'g', runId: 'x', after: 1.5 }, /after must be integer/, 'g'],
    [{ type: 'cancel', id: 'h', runId: 'has spaces' }, /runId must match pattern/, 'h'],
    [{ type: 'ping', id: 'x'.repeat(65) }, /id must not have more than 64 characters/],
    [{ type: 'run', input: { message: 'x' }, agent: '../../etc/passwd' }, /agent must match pattern/],
    [{ type: 'ping', __proto__: { polluted: true }, constructor: 'x' }, /additional properties/]
  ]
  for (const [frame, reason, id] of bad) {
    client.send(typeof frame === 'string' ? frame : JSON.stringify(frame))
    const error = await client.nextOf('error')
    t.equal(error.code, 'BAD_MESSAGE', String(reason))
    t.match(error.message, reason)
    t.equal(error.id, id)
    client.send({ type: 'ping', id: 'still-here' })
    t.same(await client.next(), { type: 'pong', id: 'still-here' })
  }
  client.socket.send(Buffer.from([1, 2, 3]), { binary: true })
  t.match(await client.nextOf('error'), { code: 'BAD_MESSAGE', message: /binary frames are not accepted/ })
  client.send({ type: 'ping' })
  t.same(await client.next(), { type: 'pong' })
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
})

t.test('unknown agents and too many runs are typed errors', async (t) => {
  const app = await buildApp(t, { env: testEnv({ MAX_CONCURRENT_RUNS: '1' }), agents: { waiting } })
  const client = await open(t, app, tokenFor('alice'))
  client.send({ type: 'run', id: 'x', agent: 'nobody', input: { message: 'hi' } })
  t.match(await client.nextOf('error'), { id: 'x', code: 'UNKNOWN_AGENT', message: 'No agent named "nobody"' })
  client.send({ type: 'run', id: 'one', input: { message: 'hi' } })
  const accepted = await client.nextOf('run_accepted')
  client.send({ type: 'run', id: 'two', input: { message: 'hi' } })
  for (;;) {
    const message = await client.next()
    if (message.type === 'error') {
      t.match(message, { id: 'two', code: 'TOO_MANY_RUNS', message: /limit 1/ })
      break
    }
  }
  client.send({ type: 'cancel', runId: accepted.runId })
})

t.test('a second connection of the same user subscribes after a seq and gets exactly the rest', async (t) => {
  const app = await buildApp(t)
  const first = await open(t, app, tokenFor('alice'))
  first.send({ type: 'run', input: { message: 'What is 2 + 2?' } })
  const { runId } = await first.nextOf('run_accepted')
  const all = await first.runEvents(runId)
  const second = await open(t, app, tokenFor('alice'))
  second.send({ type: 'subscribe', id: 's', runId, after: 3 })
  t.same(await second.next(), { type: 'subscribed', id: 's', runId, recovered: true, fromSeq: 4 })
  const rest = await second.runEvents(runId)
  t.same(rest, all.slice(3))
  second.send({ type: 'subscribe', runId })
  t.same(await second.next(), { type: 'subscribed', runId, recovered: true, fromSeq: 1 }, 'after omitted means from the start')
  t.same(await second.runEvents(runId), all)
})

t.test("another user's run is answered exactly like one that does not exist", async (t) => {
  const app = await buildApp(t, { agents: { waiting } })
  const alice = await open(t, app, tokenFor('alice'))
  alice.send({ type: 'run', input: { message: 'mine' } })
  const { runId } = await alice.nextOf('run_accepted')
  const mallory = await open(t, app, tokenFor('mallory'))
  const answers: unknown[] = []
  for (const target of [runId, '3f1c0d2e-0000-4000-8000-000000000000']) {
    for (const type of ['subscribe', 'cancel']) {
      mallory.send({ type, id: 'q', runId: target })
      const error = await mallory.nextOf('error')
      answers.push({ request: type, ...error, message: error.message.replace(target, 'RUN') })
    }
  }
  t.same(answers.slice(0, 2), answers.slice(2), 'identical for a real and a random runId')
  t.match(answers[0], { code: 'NOT_FOUND', message: 'Run "RUN" not found' })
  alice.send({ type: 'cancel', runId })
  const events = await alice.runEvents(runId)
  t.match(events.at(-1), { data: { status: 'cancelled' } })
  t.notOk(mallory.messages.some((m) => 'runId' in m && m.runId === runId && 'seq' in m), 'mallory saw none of its events')
})

/** A connection of alice with a `waiting` run under way (its first thought received). */
async function runUnderWay (t: Test): Promise<{ client: TestClient, runId: string }> {
  const app = await buildApp(t, { agents: { waiting } })
  const client = await open(t, app, tokenFor('alice'))
  client.send({ type: 'run', input: { message: 'x' } })
  const { runId } = await client.nextOf('run_accepted')
  await client.nextOf('agent_started')
  await client.nextOf('agent_thinking')
  return { client, runId }
}

t.test('cancel ends a run; cancelling again says RUN_ENDED', async (t) => {
  const { client, runId } = await runUnderWay(t)
  client.send({ type: 'cancel', id: 'c1', runId })
  const completed = await client.nextOf('agent_completed')
  t.match(completed, { seq: 3, data: { status: 'cancelled' } })
  client.send({ type: 'cancel', id: 'c2', runId })
  t.match(await client.nextOf('error'), { id: 'c2', code: 'RUN_ENDED', message: `Run "${runId}" has already ended` })
})

t.test('unsubscribe stops delivery and is acknowledged', async (t) => {
  const { client, runId } = await runUnderWay(t)
  client.send({ type: 'unsubscribe', id: 'u', runId })
  t.same(await client.next(), { type: 'unsubscribed', id: 'u', runId })
  client.send({ type: 'cancel', runId })
  await sleep(50)
  client.send({ type: 'ping', id: 'last' })
  t.same(await client.next(), { type: 'pong', id: 'last' }, 'the terminal event was not delivered')
})

t.test('auth refreshes the token of the same user; another user or a bad token closes with 4401', async (t) => {
  const app = await buildApp(t)
  const client = await open(t, app, tokenFor('alice'))
  const fresh = mint({ sub: 'alice' }, { expiresIn: 7200 })
  client.send({ type: 'auth', id: 'a1', token: fresh })
  const ok = await client.nextOf('auth_ok')
  t.equal(ok.id, 'a1')
  t.ok(Math.abs(Date.parse(ok.expiresAt ?? '') - (Date.now() + 7200_000)) < 5000)

  const other = await open(t, app, tokenFor('alice'))
  other.send({ type: 'auth', token: tokenFor('mallory') })
  t.match(await other.waitClosed(), { code: 4401, reason: /another user/ })

  const bad = await open(t, app, tokenFor('alice'))
  bad.send({ type: 'auth', token: mint({ sub: 'alice' }, { expiresIn: -3600 }) })
  t.match(await bad.waitClosed(), { code: 4401, reason: /expired/ })

  const subscriber = await open(t, app, tokenFor('alice'))
  for (const after of [1e21, Number.MAX_SAFE_INTEGER + 1, -1]) {
    subscriber.send({ type: 'subscribe', id: 'far', runId: 'some-run', after })
    t.match(await subscriber.nextOf('error'), { id: 'far', code: 'BAD_MESSAGE', message: /after/ }, `subscribe after ${after}: a coded error`)
  }
  subscriber.send({ type: 'ping', id: 'still' })
  t.same(await subscriber.next(), { type: 'pong', id: 'still' }, 'and the connection stays')

  // Dates no Date can hold: a clear auth error, never INTERNAL, and nothing changed before it.
  for (const exp of ['1e13', '1e400']) {
    const far = await open(t, app, tokenFor('alice'))
    far.send({ type: 'auth', id: 'far', token: mintRaw(`{"sub":"alice","iat":${Math.floor(Date.now() / 1000)},"exp":${exp}}`) })
    t.match(await far.waitClosed(), { code: 4401, reason: /exp claim must be a whole number/ }, `exp ${exp}`)
    t.notOk(far.messages.some((message) => message.type === 'error'), `exp ${exp}: no INTERNAL error`)
  }
})

t.test('a connection is closed with 4401 when its token expires, unless refreshed first', async (t) => {
  const app = await buildApp(t)
  const expiring = await open(t, app, mint({ sub: 'alice' }, { expiresIn: 1 }))
  const refreshed = await open(t, app, mint({ sub: 'alice' }, { expiresIn: 1 }))
  refreshed.send({ type: 'auth', token: mint({ sub: 'alice' }, { expiresIn: 3600 }) })
  await refreshed.nextOf('auth_ok')
  t.match(await expiring.waitClosed(3000), { code: 4401, reason: 'token expired' })
  refreshed.send({ type: 'ping', id: 'alive' })
  t.same(await refreshed.next(), { type: 'pong', id: 'alive' })
})

t.test('the message rate limit answers RATE_LIMITED, then closes with 4429 if it goes on', async (t) => {
  const app = await buildApp(t, { env: testEnv({ MESSAGE_RATE_PER_SEC: '1', MESSAGE_RATE_BURST: '3' }) })
  const client = await open(t, app, tokenFor('alice'))
  for (let i = 0; i < 4; i++) client.send({ type: 'ping', id: String(i) })
  t.same(await client.next(), { type: 'pong', id: '0' })
  t.same(await client.next(), { type: 'pong', id: '1' })
  t.same(await client.next(), { type: 'pong', id: '2' })
  t.match(await client.next(), { type: 'error', id: '3', code: 'RATE_LIMITED', message: /at most 1 per second/ }, 'the refused request is named by its id')
  for (let i = 0; i < 10; i++) client.send({ type: 'ping' })
  t.match(await client.waitClosed(), { code: 4429 })
})

t.test('a frame over MAX_MESSAGE_BYTES closes the connection with 1009', async (t) => {
  const app = await buildApp(t, { env: testEnv({ MAX_MESSAGE_BYTES: '1024' }) })
  const client = await open(t, app, tokenFor('alice'))
  client.send({ type: 'run', input: { message: 'x'.repeat(2000) } })
  t.match(await client.waitClosed(), { code: 1009 })
})

t.test('admission: 401 without a usable token, 403 for a foreign origin, 429 past the connection limit', async (t) => {
  const app = await buildApp(t, { env: testEnv({ ALLOWED_ORIGINS: 'https://app.example', MAX_CONNECTIONS_PER_USER: '2' }) })
  t.equal(await refused(app, {}), 'Unexpected server response: 401')
  t.equal(await refused(app, { authorization: `Bearer ${mint({ sub: 'none' })}` }), 'Unexpected server response: 401')
  t.equal(await refused(app, { authorization: `Bearer ${tokenFor('alice')}`, origin: 'https://evil.example' }), 'Unexpected server response: 403')
  await open(t, app, tokenFor('alice'), { origin: 'https://app.example' })
  await open(t, app, tokenFor('alice'))
  t.equal(await refused(app, { authorization: `Bearer ${tokenFor('alice')}` }), 'Unexpected server response: 429')
  await open(t, app, tokenFor('bob'))
  t.equal(await refused(app, { authorization: `Bearer ${tokenFor('alice')}` }), 'Unexpected server response: 429', 'other users do not free alice a slot')
})


t.test('a query-string token is refused unless ALLOW_QUERY_TOKEN is on', async (t) => {
  const strict = await buildApp(t)
  t.equal(await refused(strict, {}, `/ws?token=${tokenFor('alice')}`), 'Unexpected server response: 401')
  const lax = await buildApp(t, { env: testEnv({ ALLOW_QUERY_TOKEN: 'true' }) })
  const client = await open(t, lax, undefined, {}, `/ws?token=${tokenFor('alice')}`)
  client.send({ type: 'ping' })
  t.same(await client.next(), { type: 'pong' })
})

t.test('a tool failure or a failing agent still ends the run with one terminal event', async (t) => {
  const explode = defineTool({ name: 'explode', description: 'Fails', parameters: Type.Object({}), async execute () { throw new Error('boom') } })
  const app = await buildApp(t, {
    tools: [explode],
    agents: {
      fragile: async (run) => {
        const outcome = await run.tools.call('explode', {})
        if (outcome.status !== 'success') throw new Error('cannot go on')
      }
    }
  })
  const client = await open(t, app, tokenFor('alice'))
  client.send({ type: 'run', input: { message: 'x' } })
  const { runId } = await client.nextOf('run_accepted')
  const events = await client.runEvents(runId)
  t.same(runProblems(events), [])
  t.same(events.map((e) => e.type), ['agent_started', 'tool_executing', 'tool_completed', 'agent_completed'])
  t.match(events[2], { data: { status: 'error', error: { code: 'TOOL_FAILED' } } })
  t.match(events[3], { data: { status: 'failed', error: { code: 'AGENT_FAILED' } } })
})

t.test('subscriptions per connection are limited', async (t) => {
  const app = await buildApp(t, { env: testEnv({ MAX_SUBSCRIPTIONS_PER_CONNECTION: '1', MAX_CONCURRENT_RUNS: '5' }), agents: { waiting } })
  const client = await open(t, app, tokenFor('alice'))
  client.send({ type: 'run', input: { message: 'x' } })
  const { runId } = await client.nextOf('run_accepted')
  client.send({ type: 'run', id: 'again', input: { message: 'y' } })
  for (;;) {
    const message = await client.next()
    if (message.type === 'error') {
      t.match(message, { id: 'again', code: 'TOO_MANY_RUNS', message: /already follows 1 runs/ })
      break
    }
  }
  client.send({ type: 'cancel', runId })
})

t.test('subscribing at the end of a finished run: subscribed, nothing more, and nothing held', async (t) => {
  const app = await buildApp(t, { env: testEnv({ MAX_SUBSCRIPTIONS_PER_CONNECTION: '2' }) })
  const client = await open(t, app, tokenFor('alice'))
  const finished: Array<{ runId: string, lastSeq: number }> = []
  for (let i = 0; i < 3; i++) {
    client.send({ type: 'run', input: { message: 'What is 2 + 2?' } })
    const accepted = await client.nextOf('run_accepted')
    const events = await client.runEvents(accepted.runId)
    finished.push({ runId: accepted.runId, lastSeq: events.length })
  }
  // Three finished runs, each subscribed at its last seq, on a connection allowed to follow two:
  // a subscription that stayed open would make the third a TOO_MANY_RUNS.
  for (const [i, { runId, lastSeq }] of finished.entries()) {
    client.send({ type: 'subscribe', id: `s${i}`, runId, after: lastSeq })
    t.match(await client.next(), { type: 'subscribed', id: `s${i}`, runId, fromSeq: lastSeq + 1 })
  }
  // One before the end: exactly the terminal event, then the subscription ends by itself.
  const last = finished[2] as { runId: string, lastSeq: number }
  client.send({ type: 'subscribe', id: 'tail', runId: last.runId, after: last.lastSeq - 1 })
  t.match(await client.next(), { type: 'subscribed', id: 'tail', fromSeq: last.lastSeq })
  t.match(await client.next(), { type: 'agent_completed', runId: last.runId, seq: last.lastSeq })
  client.send({ type: 'ping', id: 'p' })
  t.match(await client.next(), { type: 'pong', id: 'p' }, 'and nothing else came')
})
