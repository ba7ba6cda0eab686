// The delivery path alone on a bare Fastify (with config, telemetry and the event store, its
// declared dependencies), driven with fake sockets whose send buffer the test controls, so
// backpressure and catch-up can be stepped through.
import { EventEmitter } from 'node:events'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import type WebSocket from 'ws'
import { configPlugin } from '../../src/config.js'
import delivery from '../../src/plugins/delivery.js'
import eventStore from '../../src/plugins/event-store.js'
import telemetry from '../../src/plugins/telemetry.js'
import { DRAIN_BACKLOG, type RunEmitter } from '../../src/delivery/emitter.js'
import { createUserContext } from '../../src/plugins/user-context.js'
import type { ServerMessage } from '../../src/protocol.js'
import type { EventStore, StoredEvent } from '../../src/contracts.js'
import { gatedStore } from '../helpers.js'

/** A WebSocket stand-in: frames are recorded; while stalled, they pile up in the send buffer. */
class FakeSocket extends EventEmitter {
  readonly CONNECTING = 0
  readonly OPEN = 1
  readonly CLOSING = 2
  readonly CLOSED = 3
  readyState = 1
  bufferedAmount = 0
  stalled = false
  readonly frames: string[] = []
  readonly #flushCallbacks: Array<() => void> = []
  closedWith?: { code: number, reason: string }
  /** Called with each frame as it is sent. */
  onSend?: (frame: string) => void

  send (bytes: Buffer, options: { binary?: boolean }, callback?: () => void): void {
    if (options.binary !== false) throw new Error('the sink must send text frames')
    const frame = bytes.toString('utf8')
    this.frames.push(frame)
    this.onSend?.(frame)
    if (this.stalled) this.bufferedAmount += frame.length
    if (callback !== undefined) {
      if (this.stalled) this.#flushCallbacks.push(callback)
      else queueMicrotask(callback)
    }
  }

  /** The peer reads everything: the buffer empties and pending write callbacks fire. */
  drain (): void {
    this.stalled = false
    this.bufferedAmount = 0
    for (const callback of this.#flushCallbacks.splice(0)) callback()
  }

  ping (): void {}
  /** A well-behaved peer: it answers the close frame at once. */
  close (code: number, reason: string): void {
    this.closedWith = { code, reason }
    this.readyState = this.CLOSED
    queueMicrotask(() => this.emit('close'))
  }
  terminate (): void { this.readyState = this.CLOSED; this.emit('close') }

  messages (): ServerMessage[] { return this.frames.map((frame) => JSON.parse(frame) as ServerMessage) }
  seqs (): number[] { return this.messages().flatMap((m) => ('seq' in m ? [m.seq] : [])) }
}

const alice = createUserContext({ sub: 'alice' }, 'req-1')
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

async function deliveryApp (t: Test, options: { store?: EventStore, env?: Record<string, string> } = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test', SEND_BUFFER_BYTES: '16384', SHUTDOWN_GRACE_MS: '0', ...options.env } })
  app.register(telemetry)
  app.register(eventStore, { store: options.store })
  app.register(delivery)
  await app.ready()
  return app
}

/** A run in the store (as the engine registers it) and its emitter. */
async function openRun (app: FastifyInstance, runId: string, ownerId = 'alice'): Promise<RunEmitter> {
  await app.eventStore.createRun({ runId, threadId: 'thread-1', agent: 'demo', ownerId }, { maxActivePerOwner: 100 })
  return app.delivery.openEmitter(runId, 'thread-1')
}

const thought = (n: number, padding = 0): { thought: string, step: number } => ({ thought: `${n} ${'x'.repeat(padding)}`, step: n })

t.test('the emitter logs events in call order, once, and nothing after the terminal event', async (t) => {
  const app = await deliveryApp(t)
  const emitter = await openRun(app, 'run-1')
  t.equal(emitter.emit('agent_started', { agent: 'demo', input: { message: 'hi' } }), true)
  emitter.emit('agent_thinking', thought(1))
  const loop: Record<string, unknown> = {}
  loop.loop = loop
  t.throws(() => emitter.emit('agent_thinking', loop as never), TypeError, 'data JSON cannot hold throws at once…')
  t.equal(await emitter.complete({ status: 'completed', output: 'ok', durationMs: 5 }), 'completed')
  await emitter.complete({ status: 'failed', durationMs: 6 })
  t.equal(emitter.emit('agent_thinking', thought(2)), false, 'emits after the end are dropped')
  t.equal(emitter.ended, true)
  const log = await app.eventStore.read('run-1', 0, 100)
  t.same(log.map((e) => [e.seq, e.type]), [[1, 'agent_started'], [2, 'agent_thinking'], [3, 'agent_completed']], '…and logs nothing')
  t.match(JSON.parse((log[2] as StoredEvent).frame.toString()), { data: { status: 'completed', output: 'ok' } }, 'only the first completion counts')
})

t.test('drained(): a producer faster than the store waits for it; the backlog is counted and bounded', async (t) => {
  const gated = gatedStore()
  const app = await deliveryApp(t, { store: gated.store })
  const emitter = await openRun(app, 'run-drain')
  for (let i = 1; i <= DRAIN_BACKLOG; i++) emitter.emit('agent_thinking', thought(i))
  t.equal(emitter.backlog, DRAIN_BACKLOG)
  let drained = false
  await emitter.drained().then(() => { drained = true })
  t.equal(drained, true, 'at the limit it resolves at once')
  emitter.emit('agent_thinking', thought(DRAIN_BACKLOG + 1))
  const waiting = emitter.drained().then(() => { drained = true })
  drained = false
  await tick()
  t.equal(drained, false, 'past the limit it waits for the store')
  gated.open()
  await waiting
  t.ok(emitter.backlog <= DRAIN_BACKLOG, 'and resolves once the backlog is back under the limit')
  await emitter.complete({ status: 'completed', durationMs: 1 })
  t.equal(emitter.backlog, 0, 'every event written')
  t.equal((await app.eventStore.read('run-drain', 0, 1000)).length, DRAIN_BACKLOG + 2)
})

t.test('drained(): appends that fail count as settled, so nobody waits forever', async (t) => {
  const gated = gatedStore()
  const app = await deliveryApp(t, { store: gated.store })
  const emitter = await openRun(app, 'run-drain-fail')
  for (let i = 1; i <= DRAIN_BACKLOG + 10; i++) emitter.emit('agent_thinking', thought(i))
  const waiting = emitter.drained()
  gated.fail(new Error('the store is gone'))
  await waiting
  t.equal(emitter.backlog, 0)
  await emitter.complete({ status: 'completed', durationMs: 1 })
})

t.test('an output JSON cannot hold becomes a BAD_OUTPUT failure, still exactly one terminal event', async (t) => {
  const app = await deliveryApp(t)
  const emitter = await openRun(app, 'run-2')
  const output: Record<string, unknown> = {}
  output.self = output
  t.equal(await emitter.complete({ status: 'completed', output, durationMs: 1 }), 'failed', 'the status it wrote is returned, for the run to end with')
  const log = await app.eventStore.read('run-2', 0, 100)
  t.equal(log.length, 1)
  t.match(JSON.parse((log[0] as StoredEvent).frame.toString()), { type: 'agent_completed', data: { status: 'failed', error: { code: 'BAD_OUTPUT' }, durationMs: 1 } })
})

t.test('attach sends welcome; a subscription replays from after, then goes live without gap or duplicate', async (t) => {
  const app = await deliveryApp(t)
  const emitter = await openRun(app, 'run-4')
  for (let n = 1; n <= 5; n++) emitter.emit('agent_thinking', thought(n))
  const socket = new FakeSocket()
  const conn = app.delivery.attach(socket as unknown as WebSocket, alice)
  t.match(socket.messages()[0], { type: 'welcome', userId: 'alice', connectionId: alice.connectionId })
  t.equal(app.delivery.isWatched('run-4'), false)
  conn.follow('run-4', 2)
  t.equal(app.delivery.isWatched('run-4'), true, 'a followed run is watched on this node')
  emitter.emit('agent_thinking', thought(6)) // appended while the replay read is in flight
  await tick()
  for (let n = 7; n <= 9; n++) emitter.emit('agent_thinking', thought(n))
  await emitter.complete({ status: 'completed', durationMs: 1 })
  await tick()
  t.same(socket.seqs(), [3, 4, 5, 6, 7, 8, 9, 10])
  t.equal(conn.subscriptionCount, 0, 'the subscription ends itself after agent_completed')
  t.equal(app.delivery.isWatched('run-4'), false, 'and the run is no longer watched here')
  t.equal(app.delivery.connectionCount('alice'), 1)
  socket.terminate()
  t.equal(app.delivery.connectionCount('alice'), 0, 'a closed socket is forgotten')
})

t.test('one connection follows one run, then several, each to its end; re-following restarts, release ends all', async (t) => {
  const app = await deliveryApp(t)
  const emitters = new Map<string, RunEmitter>()
  for (const runId of ['run-a', 'run-b', 'run-c']) emitters.set(runId, await openRun(app, runId))
  const emit = (runId: string, n: number): void => { emitters.get(runId)?.emit('agent_thinking', thought(n)) }
  const socket = new FakeSocket()
  const conn = app.delivery.attach(socket as unknown as WebSocket, alice)
  const runsOf = (): Array<[string, number]> => socket.messages().flatMap((m) => ('seq' in m ? [[m.runId, m.seq] as [string, number]] : []))

  conn.follow('run-a', 0)
  t.equal(conn.subscriptionCount, 1)
  t.ok(conn.follows('run-a'))
  t.notOk(conn.follows('run-b'))
  await tick()
  emit('run-a', 1)
  conn.follow('run-b', 0)
  conn.follow('run-c', 0)
  t.equal(conn.subscriptionCount, 3, 'a second and a third run are followed alongside the first')
  t.ok(conn.follows('run-a') && conn.follows('run-b') && conn.follows('run-c'))
  await tick()
  emit('run-b', 1)
  emit('run-c', 1)
  emit('run-a', 2)
  await emitters.get('run-a')?.complete({ status: 'completed', durationMs: 1 })
  await tick()
  t.equal(conn.subscriptionCount, 2, 'the first run ended: its subscription with it')
  t.notOk(conn.follows('run-a'))
  t.same(runsOf().filter(([runId]) => runId === 'run-a').map(([, seq]) => seq), [1, 2, 3])

  conn.unsubscribe('run-b')
  t.equal(conn.subscriptionCount, 1)
  t.equal(app.delivery.isWatched('run-b'), false, 'an unsubscribed run is no longer watched here')
  emit('run-b', 2)
  // Following again from the start replays, without a duplicate of what is then live.
  conn.follow('run-c', 0)
  t.equal(conn.subscriptionCount, 1, 're-following a followed run restarts it, not a second subscription')
  await tick()
  emit('run-c', 2)
  await tick()
  t.same(runsOf().filter(([runId]) => runId === 'run-b').map(([, seq]) => seq), [1], 'nothing of run-b after the unsubscribe')
  t.same(runsOf().filter(([runId]) => runId === 'run-c').map(([, seq]) => seq), [1, 1, 2], 'run-c: sent, replayed from 0 once re-followed, then live')

  socket.terminate()
  t.equal(conn.subscriptionCount, 0, 'a released connection follows nothing')
  t.equal(app.delivery.isWatched('run-c'), false)
})

t.test('a stalled socket stops receiving live events past SEND_BUFFER_BYTES and catches up from the log', async (t) => {
  const app = await deliveryApp(t)
  const emitter = await openRun(app, 'run-5')
  const socket = new FakeSocket()
  const conn = app.delivery.attach(socket as unknown as WebSocket, alice)
  conn.follow('run-5', 0)
  await tick()
  socket.stalled = true
  for (let n = 1; n <= 200; n++) emitter.emit('agent_thinking', thought(n, 1000))
  await emitter.complete({ status: 'completed', durationMs: 1 })
  await tick()
  const sentWhileStalled = socket.seqs().length
  t.ok(sentWhileStalled < 30, `only ${sentWhileStalled} of 201 events were written while the peer read nothing`)
  t.ok(socket.bufferedAmount <= 16384 + 1200, `the send buffer stayed bounded (${socket.bufferedAmount} bytes)`)
  for (let round = 0; round < 100 && conn.subscriptionCount > 0; round++) {
    socket.drain()
    socket.stalled = true
    await tick()
  }
  socket.drain()
  t.same(socket.seqs(), Array.from({ length: 201 }, (_, i) => i + 1), 'then every event, once, in order')
})

t.test('a subscription that goes live and is congested at once starts catching up again', async (t) => {
  // The last event of a catch-up is sent; in the microtask right after the catch-up loop ends
  // (the subscription is live again) the socket becomes congested and the next event arrives.
  // The subscription must start a new catch-up for it, not stall.
  const app = await deliveryApp(t)
  const emitter = await openRun(app, 'run-6')
  emitter.emit('agent_thinking', thought(1))
  const socket = new FakeSocket()
  socket.onSend = (frame) => {
    if (!frame.includes('"seq":1,')) return
    socket.onSend = undefined
    queueMicrotask(() => {
      socket.stalled = true
      socket.bufferedAmount = 20_000
      emitter.emit('agent_thinking', thought(2))
    })
  }
  const conn = app.delivery.attach(socket as unknown as WebSocket, alice)
  conn.follow('run-6', 0)
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.same(socket.seqs(), [1], 'nothing is sent while the socket is congested')
  socket.drain()
  emitter.emit('agent_thinking', thought(3))
  await emitter.complete({ status: 'completed', durationMs: 1 })
  const deadline = Date.now() + 2000
  while (conn.subscriptionCount > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  t.same(socket.seqs(), [1, 2, 3, 4], 'once it drains, everything arrives')
})

t.test('delivery refuses sinks past MAX_CONNECTIONS_PER_USER, counting handshakes in progress', async (t) => {
  const app = await deliveryApp(t, { env: { MAX_CONNECTIONS_PER_USER: '2' } })
  app.delivery.admit('alice')
  app.delivery.admit('alice')
  t.throws(() => { app.delivery.admit('alice') }, { code: 'AGW_ERR_CONNECTION_LIMIT', statusCode: 429 })
  t.doesNotThrow(() => { app.delivery.admit('bob') })
  app.delivery.attach(new FakeSocket() as unknown as WebSocket, alice)
  t.throws(() => { app.delivery.admit('alice') }, { code: 'AGW_ERR_CONNECTION_LIMIT' }, 'an attached connection keeps its slot')
  app.delivery.admit('bob')
  t.throws(() => { app.delivery.admit('bob') }, { code: 'AGW_ERR_CONNECTION_LIMIT' })
  app.delivery.unadmit('bob')
  t.doesNotThrow(() => { app.delivery.admit('bob') }, 'a slot given back by unadmit is free again at once')
})

t.test('delivery cannot be registered without its dependencies', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(delivery)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED', message: /config/ })
})

t.test('shutdown: the producers end their runs first, subscribers get what was logged, then every socket closes with 1001', async (t) => {
  const app = await deliveryApp(t)
  const emitter = await openRun(app, 'run-7')
  const order: string[] = []
  app.delivery.beforeSinksClose(async () => {
    order.push('producers stop')
    t.equal(app.delivery.closing, true, 'no new sinks once shutdown has begun')
    t.throws(() => { app.delivery.admit('carol') }, { code: 'AGW_ERR_SHUTTING_DOWN' })
    await emitter.complete({ status: 'failed', error: { code: 'SHUTDOWN', message: 'bye' }, durationMs: 1 })
  })
  const socket = new FakeSocket()
  socket.on('close', () => { order.push('socket closed') })
  app.delivery.attach(socket as unknown as WebSocket, alice).follow('run-7', 0)
  await app.close()
  t.same(order, ['producers stop', 'socket closed'])
  t.match(socket.messages().at(-1), { type: 'agent_completed', data: { error: { code: 'SHUTDOWN' } } }, 'the terminal event was delivered first')
  t.same(socket.closedWith, { code: 1001, reason: 'server shutting down' })
})
