// The client library against the real gateway on a real port, with `ws` as its WebSocket: typed
// runs, exactly-once in-order delivery through random server-side drops, token refresh, cancel,
// typed errors, and that its browser path carries nothing from Node or TypeBox.
import { once } from 'node:events'
import { readFile, readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { build as esbuild } from 'esbuild'
import type { FastifyInstance } from 'fastify'
import { createClient, GatewayError, type ClientOptions, type GatewayClient, type Run, type StateChange, type WebSocketLike } from '../../src/client/index.js'
import { BEARER_PROTOCOL_PREFIX, CLOSE_UNAUTHORIZED, PROTOCOL, TERMINAL_EVENT_TYPE, tokenExpiry } from '../../src/client/wire.js'
import * as protocol from '../../src/protocol.js'
import type { RunEvent } from '../../src/protocol.js'
import { buildApp, listen, mint, runProblems, testEnv, tokenFor } from '../helpers.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const FAST_RECONNECT = { initialDelayMs: 5, maxDelayMs: 100 }
const QUESTION = 'What is 12 * (3 + 4)? And convert 5 km to miles'

interface Watched {
  client: GatewayClient
  changes: StateChange[]
}

/** A client with `ws`, closed at teardown, that records every state change. */
function watch (t: Test, options: Omit<ClientOptions, 'WebSocket'> & { WebSocket?: ClientOptions['WebSocket'] }): Watched {
  const client = createClient({ WebSocket, reconnect: FAST_RECONNECT, ...options })
  const changes: StateChange[] = []
  client.onStateChange((change) => { changes.push(change) })
  t.teardown(() => { client.close() })
  return { client, changes }
}

/** Waits for a condition, polling; fails with `what` after the deadline (never a timed assertion). */
async function until (condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

async function collect (run: Run): Promise<RunEvent[]> {
  const events: RunEvent[] = []
  for await (const event of run) events.push(event)
  return events
}

/** The run's events as the server logged them: the truth a client must reproduce exactly. */
async function logged (app: FastifyInstance, runId: string): Promise<RunEvent[]> {
  const stored = await app.eventStore.read(runId, 0, 100_000)
  return stored.map((event) => JSON.parse(event.frame.toString()) as RunEvent)
}

/** Server-side sockets, as the gateway holds them, so a test can cut them. */
function serverSockets (app: FastifyInstance): Set<WebSocket> {
  const sockets = new Set<WebSocket>()
  app.websocketServer.on('connection', (socket: WebSocket) => {
    sockets.add(socket)
    socket.on('close', () => { sockets.delete(socket) })
  })
  return sockets
}

t.test('a run: typed events in seq order, exactly as logged, and done is the terminal event', async (t) => {
  const app = await buildApp(t)
  const { ws } = await listen(t, app)
  const { client, changes } = watch(t, { url: ws, token: tokenFor('alice') })
  t.equal(client.state, 'connecting')
  t.equal(client.welcome, undefined)

  const run = await client.run(QUESTION)
  t.equal(client.state, 'open')
  t.match(client.welcome, { type: 'welcome', protocol: 'agent-events.v1', userId: 'alice' })
  t.equal(run.agent, 'demo')
  t.type(run.threadId, 'string')
  const events = await collect(run)
  t.same(events, await logged(app, run.runId), 'every logged event, once, in order')
  t.same(runProblems(events), [])
  const done = await run.done
  t.equal(done, events.at(-1), 'done is the terminal event')
  t.equal(done.type, 'agent_completed')
  t.equal(done.data.status, 'completed')
  t.equal(run.lastSeq, events.length)
  t.ok(run.ended)
  t.same(await collect(run), events, 'a second iteration replays the same events')
  // The types come from protocol.ts: narrowing on `type` gives each event its own data.
  const tools = events.flatMap((event) => (event.type === 'tool_completed' ? [event.data.tool] : []))
  t.same(tools, ['calculator', 'convert_units'])
  t.same(changes.map((change) => change.state), ['open'])

  const second = await client.run({ message: 'What is 6 * 7?', locale: 'en' }, { threadId: run.threadId, agent: 'demo' })
  t.equal(second.threadId, run.threadId, 'options reach the server')
  t.match((await collect(second))[0], { type: 'agent_started', data: { input: { message: 'What is 6 * 7?', locale: 'en' } } })
})

t.test('random server-side drops during many concurrent runs: every event exactly once, in order', async (t) => {
  const RUNS = 16
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '40', MAX_CONCURRENT_RUNS: String(RUNS) }) })
  const sockets = serverSockets(app)
  const { ws } = await listen(t, app)
  const alice = watch(t, { url: ws, token: tokenFor('alice') })
  // Bob's client paces its frames hard, so its re-subscriptions queue up behind the rate.
  const bob = watch(t, { url: ws, token: tokenFor('bob'), rate: { perSecond: 200, burst: 2 } })
  const questions = ['What is 2 ^ 10? Then convert 100 F to C.', QUESTION, 'Tell me about Mount Everest', 'How many words are in "a b c d"?']
  const runs = await Promise.all(Array.from({ length: RUNS }, (_, i) =>
    (i % 2 === 0 ? alice : bob).client.run(questions[i % questions.length] as string)))
  const results = Promise.all(runs.map(collect))

  // Cut a random connection every few milliseconds while any run is live: mostly abruptly, some
  // with the shutdown close code, like a node going away.
  let drops = 0
  let dropsWhileLive = 0
  const live = (): boolean => runs.some((run) => !run.ended)
  while (live()) {
    await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 40))
    const open = [...sockets].filter((socket) => socket.readyState === WebSocket.OPEN)
    const victim = open[Math.floor(Math.random() * open.length)]
    if (victim === undefined || !live()) continue
    if (drops % 4 === 3) victim.close(1001, 'going away')
    else victim.terminate()
    drops++
    dropsWhileLive++
  }
  const all = await results
  t.ok(dropsWhileLive >= 5, `${dropsWhileLive} connections were cut while runs were live`)
  for (const [i, events] of all.entries()) {
    const run = runs[i] as Run
    t.same(events, await logged(app, run.runId), `run ${i}: exactly the logged events, once each, in order`)
    t.same(runProblems(events), [], `run ${i} is whole`)
  }
  const reconnects = [...alice.changes, ...bob.changes].filter((change) => change.state === 'reconnecting')
  t.ok(reconnects.length >= 5, `${reconnects.length} reconnects`)
  t.ok(reconnects.some((change) => change.closeCode === 1001), 'a 1001 close is reconnected like a drop')
  t.ok(reconnects.every((change) => (change.delayMs ?? -1) >= 0 && (change.delayMs ?? Infinity) <= FAST_RECONNECT.maxDelayMs), 'backoff stays within its bounds')
})

t.test('backoff grows exponentially with jitter while the server is away, and resets once connected', async (t) => {
  const app = await buildApp(t)
  const { ws } = await listen(t, app)
  await app.close()
  const { client, changes } = watch(t, { url: ws, token: tokenFor('alice'), reconnect: { initialDelayMs: 1, maxDelayMs: 16, jitter: 0 } })
  await until(() => changes.length >= 7, 'seven failed attempts')
  client.close()
  const delays = changes.filter((change) => change.state === 'reconnecting').map((change) => change.delayMs)
  t.same(delays.slice(0, 6), [1, 2, 4, 8, 16, 16], 'doubles per attempt up to the maximum')
  t.same(changes.filter((change) => change.state === 'reconnecting').slice(0, 3).map((change) => change.attempt), [1, 2, 3])

  const withJitter = watch(t, { url: ws, token: tokenFor('alice'), reconnect: { initialDelayMs: 1000, maxDelayMs: 1000, jitter: 1 } })
  await until(() => withJitter.changes.length >= 1, 'a first failed attempt')
  const delay = withJitter.changes[0]?.delayMs ?? -1
  t.ok(delay >= 0 && delay <= 1000, `a jittered delay within [0, 1000]: ${delay}`)
})

/** A WebSocket between the client and `ws` that loses, repeats and garbles frames, like a broken proxy. */
function lossyLink (stats: { dropped: number, repeated: number }): ClientOptions['WebSocket'] {
  return class Lossy implements WebSocketLike {
    readonly #inner: WebSocket
    #events = 0

    constructor (url: string, protocols: string[]) {
      this.#inner = new WebSocket(url, protocols)
    }

    get readyState (): number {
      return this.#inner.readyState
    }

    send (data: string): void {
      this.#inner.send(data)
    }

    close (code?: number, reason?: string): void {
      this.#inner.close(code, reason)
    }

    addEventListener (type: 'open' | 'message' | 'close' | 'error', listener: (event: any) => void): void {
      if (type !== 'message') {
        this.#inner.addEventListener(type, listener)
        return
      }
      this.#inner.addEventListener('message', (event) => {
        const data = event.data
        // The terminal event is never lost: a gap is only visible from an event after it.
        if (typeof data === 'string' && data.includes('"seq"') && !data.includes(TERMINAL_EVENT_TYPE)) {
          const n = ++this.#events
          if (n % 6 === 2) {
            stats.dropped++
            return
          }
          if (n % 5 === 0) {
            stats.repeated++
            listener({ data })
            listener({ data: 'not json' })
            listener({ data: new ArrayBuffer(4) })
          }
        }
        listener(event)
      })
    }
  }
}

t.test('through a link that loses and repeats events, each event still arrives once, in order', async (t) => {
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '2' }) })
  const { ws } = await listen(t, app)
  const stats = { dropped: 0, repeated: 0 }
  const { client } = watch(t, { url: ws, token: tokenFor('alice'), WebSocket: lossyLink(stats) })
  const runs = await Promise.all([client.run(QUESTION), client.run('What is 2 ^ 10? Then convert 100 F to C.')])
  for (const run of runs) {
    const events = await collect(run)
    t.same(events, await logged(app, run.runId), 'gaps were refilled by re-subscribing, repeats dropped')
  }
  t.ok(stats.dropped >= 2 && stats.repeated >= 2, `the link dropped ${stats.dropped} and repeated ${stats.repeated} events`)
})

t.test('subscribe: another client follows a run from any seq; the same client gets its own handle back', async (t) => {
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '5' }) })
  const { ws } = await listen(t, app)
  const { client } = watch(t, { url: ws, token: tokenFor('alice') })
  const run = await client.run(QUESTION)
  t.equal(await client.subscribe(run.runId), run, 'a run this client follows is not subscribed twice')
  const events = await collect(run)

  const tab = watch(t, { url: ws, token: tokenFor('alice') })
  const [fromStart, fromFive, whole] = await Promise.all([
    tab.client.subscribe(run.runId),
    tab.client.subscribe(run.runId, { after: 5 }).catch(() => undefined),
    collect(await tab.client.subscribe(run.runId, { after: 0 }))
  ])
  t.equal(fromFive, fromStart, 'one handle per run per client')
  t.same(whole, events)
  t.equal(fromStart.agent, undefined, 'the agent is only known from run_accepted')
  t.equal(fromStart.threadId, run.threadId, 'the thread is known from the first event')

  const late = watch(t, { url: ws, token: tokenFor('alice') })
  const tail = await collect(await late.client.subscribe(run.runId, { after: 5 }))
  t.same(tail, events.slice(5), 'after 5: the events from seq 6 on')
})

t.test('typed errors reject with a code', async (t) => {
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '200', MAX_CONCURRENT_RUNS: '2', RUN_HISTORY_TTL_MS: '0' }) })
  const { ws } = await listen(t, app)
  const { client } = watch(t, { url: ws, token: tokenFor('alice') })

  const missing = await client.subscribe('no-such-run').then(() => undefined, (err: unknown) => err)
  t.ok(missing instanceof GatewayError)
  t.match(missing, { name: 'GatewayError', code: 'NOT_FOUND', runId: 'no-such-run', message: /no-such-run/ })

  const running = await Promise.all([client.run('What is 1 + 1?'), client.run('What is 2 + 2?')])
  await t.rejects(client.run('What is 3 + 3?'), { name: 'GatewayError', code: 'TOO_MANY_RUNS', message: /limit 2/ })
  await t.rejects(client.run('hi', { agent: 'nobody' }), { code: 'UNKNOWN_AGENT' })
  for (const run of running) await run.cancel()

  const other = watch(t, { url: ws, token: tokenFor('mallory') })
  await t.rejects(other.client.subscribe(running[0]?.runId ?? ''), { code: 'NOT_FOUND' }, "another user's run does not exist")
  await t.rejects(client.subscribe(running[0]?.runId ?? ''), { code: 'HISTORY_EXPIRED' }, 'an ended run past its history TTL')
})

t.test('cancel: the run ends cancelled, also when asked while the connection is down', async (t) => {
  // Steps of a second, so that a run outlasts the client's time away.
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '1000' }) })
  const sockets = serverSockets(app)
  const { ws } = await listen(t, app)
  // The first retry waits half a second: with the tests' usual 5 ms, the client could be back
  // before a poll saw it down, and the cancel would not be asked for while disconnected.
  const { client, changes } = watch(t, { url: ws, token: tokenFor('alice'), reconnect: { initialDelayMs: 500, maxDelayMs: 500, jitter: 0 } })

  const run = await client.run(QUESTION)
  const events: RunEvent[] = []
  const iterating = (async () => { for await (const event of run) events.push(event) })()
  await until(() => events.some((event) => event.type === 'agent_thinking'), 'a first thought')
  const terminal = await run.cancel()
  t.match(terminal, { type: 'agent_completed', data: { status: 'cancelled' } })
  t.equal(await run.cancel(), terminal, 'cancelling an ended run gives its terminal event again')
  await iterating
  t.equal(events.at(-1), terminal)
  t.same(runProblems(events), [])

  const second = await client.run(QUESTION)
  await until(() => second.lastSeq >= 2, 'the second run to start')
  for (const socket of sockets) socket.terminate()
  await until(() => client.state !== 'open', 'the client to notice the drop')
  const cancelled = second.cancel()
  t.equal(client.state, 'reconnecting', 'the cancel is asked for while disconnected')
  t.match(await cancelled, { data: { status: 'cancelled' } }, 'and sent after the run is re-subscribed')
  t.same(await collect(second), await logged(app, second.runId))
  t.ok(changes.some((change) => change.state === 'reconnecting'))
})

t.test('a function token is refreshed with `auth` before it expires; the connection lives on', async (t) => {
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '5' }) })
  const { ws } = await listen(t, app)
  const issued: Array<{ token: string, exp: number }> = []
  let calls = 0
  const token = async (): Promise<string> => {
    calls++
    if (calls === 2) throw new Error('the identity provider is briefly down')
    const value = mint({ sub: 'alice' }, { expiresIn: 3 })
    issued.push({ token: value, exp: tokenExpiry(value) as number })
    return value
  }
  const { client, changes } = watch(t, { url: ws, token, refreshBeforeExpiryMs: 1000 })
  await until(() => client.state === 'open', 'the connection')
  const firstExp = issued[0]?.exp ?? 0
  await until(() => issued.length >= 3 && Date.now() > firstExp + 1000, 'two refreshes, past the first token expiry', 20_000)
  t.equal(client.state, 'open')
  t.same(changes.map((change) => change.state), ['open'], 'never disconnected: each refresh went through `auth`')
  const run = await client.run('What is 6 * 7?')
  t.equal((await run.done).data.status, 'completed', 'the connection still works')
  t.ok(calls >= 4, 'the failed refresh was retried')
})

t.test('a fixed token that expires closes the client with UNAUTHORIZED; a failing token function is retried', async (t) => {
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '400' }) })
  const { ws } = await listen(t, app)
  const { client, changes } = watch(t, { url: ws, token: mint({ sub: 'alice' }, { expiresIn: 2 }) })
  const run = await client.run(QUESTION)
  await t.rejects(run.done, { code: 'UNAUTHORIZED', runId: run.runId })
  t.equal(client.state, 'closed')
  t.match(changes.at(-1), { state: 'closed', closeCode: CLOSE_UNAUTHORIZED, error: { code: 'UNAUTHORIZED', message: /token function/ } })
  await t.rejects(client.run('again'), { code: 'CLOSED' })
  await t.rejects(client.subscribe(run.runId), { code: 'CLOSED' })

  let attempts = 0
  const flaky = watch(t, {
    url: ws,
    token: () => {
      if (++attempts < 3) throw new Error('not yet')
      return tokenFor('alice')
    }
  })
  await until(() => flaky.client.state === 'open', 'a connection once the token function works')
  t.same(flaky.changes.map((change) => [change.state, change.reason]).slice(0, 2), [['reconnecting', 'the token function failed'], ['reconnecting', 'the token function failed']])
})

t.test('close(): runs and requests in flight reject with CLOSED, iterators throw', async (t) => {
  const app = await buildApp(t, { env: testEnv({ DEMO_STEP_DELAY_MS: '200' }) })
  const { ws } = await listen(t, app)
  const { client, changes } = watch(t, { url: ws, token: tokenFor('alice') })
  const run = await client.run(QUESTION)
  const queued = client.run('never sent')
  const iterating = collect(run)
  client.close()
  client.close()
  await t.rejects(queued, { code: 'CLOSED' })
  await t.rejects(run.done, { code: 'CLOSED' })
  await t.rejects(iterating, { code: 'CLOSED' })
  await t.rejects(run.cancel(), { code: 'CLOSED' })
  t.same(changes.map((change) => change.state), ['open', 'closed'])

  const unused = watch(t, { url: ws, token: tokenFor('alice') })
  const pending = unused.client.run('queued before the connection opens')
  unused.client.close()
  await t.rejects(pending, { code: 'CLOSED' })
})

t.test('a run request whose connection drops before its answer rejects with CONNECTION_LOST', async (t) => {
  const app = await buildApp(t)
  const sockets = serverSockets(app)
  const { ws } = await listen(t, app)
  const { client } = watch(t, { url: ws, token: tokenFor('alice') })
  await client.run('What is 1 + 1?')
  // The engine answers on a later turn; the socket dies the moment the request arrives.
  for (const socket of sockets) socket.once('message', () => { socket.terminate() })
  await t.rejects(client.run('What is 2 + 2?'), { code: 'CONNECTION_LOST', message: /may or may not have started/ })
  await until(() => client.state === 'open', 'the reconnection')
  t.equal((await (await client.run('What is 3 + 3?')).done).data.status, 'completed')
})

t.test('a connection that goes silent is given up and replaced', async (t) => {
  const app = await buildApp(t)
  const sockets = serverSockets(app)
  const { ws } = await listen(t, app)
  const { client, changes } = watch(t, { url: ws, token: tokenFor('alice'), pingIntervalMs: 100 })
  await until(() => client.state === 'open', 'the connection')
  // The server stops reading: the client's pings go unanswered, though nothing closes.
  for (const socket of sockets) (socket as unknown as { _socket: { pause(): void } })._socket.pause()
  await until(() => changes.some((change) => change.state === 'reconnecting'), 'the client to give up on the silent connection')
  t.match(changes.find((change) => change.state === 'reconnecting'), { closeCode: 4000, reason: 'no answer from the server' })
  await until(() => client.state === 'open', 'a new connection')
  t.equal((await (await client.run('What is 6 * 7?')).done).data.status, 'completed')
})

t.test('the client paces itself by the limits the server announces: nothing refused, nothing lost', async (t) => {
  const app = await buildApp(t, { env: testEnv({ MESSAGE_RATE_PER_SEC: '5', MESSAGE_RATE_BURST: '3' }) })
  const { ws } = await listen(t, app)
  const { client } = watch(t, { url: ws, token: tokenFor('alice'), rate: { perSecond: 100, burst: 100 } })
  const runs = await Promise.all(Array.from({ length: 6 }, (_, i) => client.run(`What is ${i} + 1?`)))
  for (const run of runs) t.same(await collect(run), await logged(app, run.runId))
  const metrics = await app.metricsRegistry!.getSingleMetricAsString('agw_messages_rejected_total')
  t.notMatch(metrics, /RATE_LIMITED/, 'the server never had to refuse a message')
})

t.test('pacing holds when the server reads late and the first messages arrive bunched with later ones', async (t) => {
  const app = await buildApp(t, { env: testEnv({ MESSAGE_RATE_PER_SEC: '5', MESSAGE_RATE_BURST: '3' }) })
  // The server reads nothing for its first 150 ms: what the client sent at once arrives together
  // with what it sent later, as behind a busy server or a congested link.
  app.websocketServer.on('connection', (socket: WebSocket) => {
    const raw = (socket as unknown as { _socket: { pause(): void, resume(): void } })._socket
    raw.pause()
    setTimeout(() => { raw.resume() }, 150)
  })
  const { ws } = await listen(t, app)
  const { client } = watch(t, { url: ws, token: tokenFor('alice') })
  const runs = await Promise.all(Array.from({ length: 6 }, (_, i) => client.run(`What is ${i} * 2?`)))
  for (const run of runs) t.equal((await run.done).data.status, 'completed')
  const metrics = await app.metricsRegistry!.getSingleMetricAsString('agw_messages_rejected_total')
  t.notMatch(metrics, /RATE_LIMITED/, 'the server never had to refuse a message')
})

t.test('a request the server refuses with RATE_LIMITED is sent again at a slower pace, not failed', async (t) => {
  // A peer of the test's own: it refuses the first copy of every request, naming it.
  const { WebSocketServer } = await import('ws')
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'agent-events.v1' })
  t.teardown(() => { for (const peer of server.clients) peer.terminate(); server.close() })
  await once(server, 'listening')
  const seen: string[] = []
  let connections = 0
  server.on('connection', (peer) => {
    connections++
    peer.send(JSON.stringify({ type: 'welcome', protocol: 'agent-events.v1', connectionId: 'c', userId: 'alice', heartbeatMs: 30000, limits: { maxMessageBytes: 65536, maxConcurrentRuns: 4, messagesPerSecond: 1000, messageBurst: 1000 } }))
    peer.on('message', (data) => {
      const message = JSON.parse((data as Buffer).toString()) as { type: string, id: string }
      if (message.type !== 'run') return
      seen.push(message.id)
      if (seen.filter((id) => id === message.id).length === 1) {
        peer.send(JSON.stringify({ type: 'error', id: message.id, code: 'RATE_LIMITED', message: 'slow down' }))
        return
      }
      const event = (seq: number, type: string, data: unknown): string => JSON.stringify({ type, runId: 'r1', threadId: 't1', seq, ts: new Date().toISOString(), data })
      peer.send(JSON.stringify({ type: 'run_accepted', id: message.id, runId: 'r1', threadId: 't1', agent: 'demo' }))
      peer.send(event(1, 'agent_started', { agent: 'demo', input: { message: 'hi' } }))
      peer.send(event(2, 'agent_completed', { status: 'completed', durationMs: 1 }))
    })
  })
  const { port } = server.address() as { port: number }
  const { client } = watch(t, { url: `ws://127.0.0.1:${port}`, token: tokenFor('alice') })
  const run = await client.run('hi')
  t.equal((await run.done).data.status, 'completed', 'the run went through on the second try')
  t.equal(seen.length, 2)
  t.equal(seen[0], seen[1], 'the same request, sent again')
  t.equal(connections, 1, 'on the same connection')
})

t.test('createClient without a WebSocket to use says so', async (t) => {
  // Node 20 has no global WebSocket; Node 22 and later have one, which is hidden here.
  const runtime = globalThis as { WebSocket?: unknown }
  const own = Object.getOwnPropertyDescriptor(runtime, 'WebSocket')
  if (own !== undefined) {
    delete runtime.WebSocket
    t.teardown(() => { Object.defineProperty(runtime, 'WebSocket', own) })
  }
  t.equal(runtime.WebSocket, undefined)
  t.throws(() => createClient({ url: 'ws://127.0.0.1:1/ws', token: 'x' }), { name: 'GatewayError', code: 'NO_WEBSOCKET' })
})

t.test('the runtime constants mirror protocol.ts; token expiry is read from the JWT', async (t) => {
  t.equal(PROTOCOL, protocol.PROTOCOL)
  t.equal(BEARER_PROTOCOL_PREFIX, protocol.BEARER_PROTOCOL_PREFIX)
  t.equal(TERMINAL_EVENT_TYPE, protocol.TERMINAL_EVENT_TYPE)
  t.equal(CLOSE_UNAUTHORIZED, protocol.CloseCode.UNAUTHORIZED)
  const token = mint({ sub: 'a' }, { expiresIn: 60 })
  const exp = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()).exp as number
  t.equal(tokenExpiry(token), exp * 1000)
  t.equal(tokenExpiry(mint({ sub: 'a' }, { expiresIn: null })), undefined, 'no exp')
  t.equal(tokenExpiry('opaque'), undefined, 'not a JWT')
  t.equal(tokenExpiry('a.!!!.c'), undefined, 'an unreadable payload')
})

t.test('the browser path: no Node, no TypeBox; the package exports agent-gateway/client', async (t) => {
  const bundle = await esbuild({
    entryPoints: [`${root}src/client/index.ts`],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    minify: true,
    metafile: true,
    absWorkingDir: root
  })
  const inputs = Object.keys(bundle.metafile.inputs).sort()
  t.same(inputs, ['src/client/client.ts', 'src/client/index.ts', 'src/client/pacer.ts', 'src/client/run.ts', 'src/client/wire.ts'], 'only the client itself is bundled')
  const size = bundle.outputFiles[0]?.contents.byteLength ?? Infinity
  t.ok(size < 16_000, `the minified client is ${size} bytes`)

  for (const file of (await readdir(`${root}dist/client`)).filter((name) => name.endsWith('.js'))) {
    const code = await readFile(`${root}dist/client/${file}`, 'utf8')
    const imports = [...code.matchAll(/(?:import|export)[^'"]*from\s*'([^']+)'/g)].map((match) => match[1])
    t.ok(imports.every((path) => /^\.\/[a-z-]+\.js$/.test(path ?? '')), `dist/client/${file} imports only the client's own modules`)
  }
  // Resolved at run time (dist/ is built by pretest), so type-checking does not need a build.
  const specifier: string = 'agent-gateway/client'
  const subpath = await import(specifier) as typeof import('../../src/client/index.js')
  t.type(subpath.createClient, 'function')
  t.type(subpath.GatewayError, 'function')
})
