// The bridge alone on a bare Fastify (config is its only dependency), driven with fake sockets
// whose send buffer the test controls, so backpressure and catch-up can be stepped through.
import { EventEmitter } from 'node:events'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import type WebSocket from 'ws'
import { configPlugin } from '../../src/config.js'
import agentBridge, { DRAIN_BACKLOG, type RunEmitter } from '../../src/plugins/agent-bridge.js'
import { createUserContext } from '../../src/plugins/user-context.js'
import type { ServerMessage } from '../../src/protocol.js'
import type { EventStore, StoredEvent } from '../../src/stores/event-store.js'
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
    if (options.binary !== false) throw new Error('the bridge must send text frames')
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
const bob = createUserContext({ sub: 'bob' }, 'req-2')
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

async function bridgeApp (t: Test, options: { store?: EventStore, env?: Record<string, string> } = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test', SEND_BUFFER_BYTES: '16384', SHUTDOWN_GRACE_MS: '0', ...options.env } })
  app.register(agentBridge, { store: options.store })
  await app.ready()
  return app
}

async function openRun (app: FastifyInstance, runId: string, ownerId = 'alice'): Promise<RunEmitter> {
  return app.agentBridge.openRun({ runId, threadId: 'thread-1', agent: 'demo', ownerId }, { stop: () => {} })
}

const thought = (n: number, padding = 0): { thought: string, step: number } => ({ thought: `${n} ${'x'.repeat(padding)}`, step: n })

t.test('the emitter logs events in call order, once, and nothing after the terminal event', async (t) => {
  const app = await bridgeApp(t)
  const emitter = await openRun(app, 'run-1')
  t.equal(emitter.emit('agent_started', { agent: 'demo', input: { message: 'hi' } }), true)
  emitter.emit('agent_thinking', thought(1))
  const loop: Record<string, unknown> = {}
  loop.loop = loop
  t.throws(() => emitter.emit('agent_thinking', loop as never), TypeError, 'data JSON cannot hold throws at once…')
  await emitter.complete({ status: 'completed', output: 'ok', durationMs: 5 })
  await emitter.complete({ status: 'failed', durationMs: 6 })
  t.equal(emitter.emit('agent_thinking', thought(2)), false, 'emits after the end are dropped')
  t.equal(emitter.ended, true)
  const log = await app.agentBridge.store.read('run-1', 0, 100)
  t.same(log.map((e) => [e.seq, e.type]), [[1, 'agent_started'], [2, 'agent_thinking'], [3, 'agent_completed']], '…and logs nothing')
  t.match(JSON.parse((log[2] as StoredEvent).frame.toString()), { data: { status: 'completed', output: 'ok' } }, 'only the first completion counts')
  t.match(await app.agentBridge.store.getRun('run-1'), { state: 'found', meta: { status: 'completed', lastSeq: 3 } })
})

t.test('drained(): a producer faster than the store waits for it; the backlog is counted and bounded', async (t) => {
  const gated = gatedStore()
  const app = await bridgeApp(t, { store: gated.store })
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
  t.equal((await app.agentBridge.store.read('run-drain', 0, 1000)).length, DRAIN_BACKLOG + 2)
})

t.test('drained(): appends that fail count as settled, so nobody waits forever', async (t) => {
  const gated = gatedStore()
  const app = await bridgeApp(t, { store: gated.store })
  const emitter = await openRun(app, 'run-drain-fail')
  for (let i = 1; i <= DRAIN_BACKLOG + 10; i++) emitter.emit('agent_thinking', thought(i))
  const waiting = emitter.drained()
  gated.fail(new Error('the store is gone'))
  await waiting
  t.equal(emitter.backlog, 0)
  await emitter.complete({ status: 'completed', durationMs: 1 })
})

t.test('an output JSON cannot hold becomes a BAD_OUTPUT failure, still exactly one terminal event', async (t) => {
  const app = await bridgeApp(t)
  const emitter = await openRun(app, 'run-2')
  const output: Record<string, unknown> = {}
  output.self = output
  await emitter.complete({ status: 'completed', output, durationMs: 1 })
  const log = await app.agentBridge.store.read('run-2', 0, 100)
  t.equal(log.length, 1)
  t.match(JSON.parse((log[0] as StoredEvent).frame.toString()), { type: 'agent_completed', data: { status: 'failed', error: { code: 'BAD_OUTPUT' }, durationMs: 1 } })
  t.match(await app.agentBridge.store.getRun('run-2'), { state: 'found', meta: { status: 'failed' } })
})

t.test('lookupOwnedRun: the owner finds the run; anyone else gets exactly the error of a missing run', async (t) => {
  const app = await bridgeApp(t, { env: { RUN_HISTORY_TTL_MS: '50' } })
  const emitter = await openRun(app, 'run-3')
  t.match(await app.agentBridge.lookupOwnedRun(alice, 'run-3'), { runId: 'run-3', ownerId: 'alice' })
  const theirs = await app.agentBridge.lookupOwnedRun(bob, 'run-3').catch((err: Error & { code: string }) => [err.code, err.message.replace('run-3', 'ID')])
  const missing = await app.agentBridge.lookupOwnedRun(bob, 'run-x').catch((err: Error & { code: string }) => [err.code, err.message.replace('run-x', 'ID')])
  t.same(theirs, missing)
  t.same(theirs, ['AGW_ERR_RUN_NOT_FOUND', 'Run "ID" not found'])
  await emitter.complete({ status: 'completed', durationMs: 1 })
  await new Promise((resolve) => setTimeout(resolve, 120))
  await t.rejects(app.agentBridge.lookupOwnedRun(alice, 'run-3'), { code: 'AGW_ERR_RUN_HISTORY_EXPIRED' }, 'its owner learns the history expired')
  await t.rejects(app.agentBridge.lookupOwnedRun(bob, 'run-3'), { code: 'AGW_ERR_RUN_NOT_FOUND' }, 'others still learn nothing')
})

t.test('attach sends welcome; a subscription replays from after, then goes live without gap or duplicate', async (t) => {
  const app = await bridgeApp(t)
  const emitter = await openRun(app, 'run-4')
  for (let n = 1; n <= 5; n++) emitter.emit('agent_thinking', thought(n))
  const socket = new FakeSocket()
  const conn = app.agentBridge.attach(socket as unknown as WebSocket, alice)
  t.match(socket.messages()[0], { type: 'welcome', userId: 'alice', connectionId: alice.connectionId })
  await conn.subscribe('run-4', 2, 'sub-1')
  t.same(socket.messages()[1], { type: 'subscribed', id: 'sub-1', runId: 'run-4', recovered: true, fromSeq: 3 })
  emitter.emit('agent_thinking', thought(6)) // appended while the replay read is in flight
  await tick()
  for (let n = 7; n <= 9; n++) emitter.emit('agent_thinking', thought(n))
  await emitter.complete({ status: 'completed', durationMs: 1 })
  await tick()
  t.same(socket.seqs(), [3, 4, 5, 6, 7, 8, 9, 10])
  t.equal(conn.subscriptionCount, 0, 'the subscription ends itself after agent_completed')
  t.equal(app.agentBridge.connectionCount('alice'), 1)
  socket.terminate()
  t.equal(app.agentBridge.connectionCount('alice'), 0, 'a closed socket is forgotten')
})

t.test('a stalled socket stops receiving live events past SEND_BUFFER_BYTES and catches up from the log', async (t) => {
  const app = await bridgeApp(t)
  const emitter = await openRun(app, 'run-5')
  const socket = new FakeSocket()
  const conn = app.agentBridge.attach(socket as unknown as WebSocket, alice)
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
  const app = await bridgeApp(t)
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
  const conn = app.agentBridge.attach(socket as unknown as WebSocket, alice)
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

t.test('the bridge refuses connections past MAX_CONNECTIONS_PER_USER, counting handshakes in progress', async (t) => {
  const app = await bridgeApp(t, { env: { MAX_CONNECTIONS_PER_USER: '2' } })
  app.agentBridge.admit('alice')
  app.agentBridge.admit('alice')
  t.throws(() => { app.agentBridge.admit('alice') }, { code: 'AGW_ERR_CONNECTION_LIMIT', statusCode: 429 })
  t.doesNotThrow(() => { app.agentBridge.admit('bob') })
  app.agentBridge.attach(new FakeSocket() as unknown as WebSocket, alice)
  t.throws(() => { app.agentBridge.admit('alice') }, { code: 'AGW_ERR_CONNECTION_LIMIT' }, 'an attached connection keeps its slot')
})

t.test('the bridge cannot be registered without config', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(agentBridge)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED', message: /config/ })
})

t.test('shutdown closes every socket with 1001 after the runs have ended', async (t) => {
  const app = await bridgeApp(t)
  let stopped = false
  const emitter = await app.agentBridge.openRun({ runId: 'run-7', threadId: 't', agent: 'demo', ownerId: 'alice' }, {
    stop: () => { stopped = true; void emitter.complete({ status: 'failed', error: { code: 'SHUTDOWN', message: 'bye' }, durationMs: 1 }) }
  })
  const socket = new FakeSocket()
  app.agentBridge.attach(socket as unknown as WebSocket, alice).follow('run-7', 0)
  const closing = app.close()
  await new Promise((resolve) => setTimeout(resolve, 50))
  socket.terminate()
  await closing
  t.equal(stopped, true, 'the run was asked to stop')
  t.match(socket.messages().at(-1), { type: 'agent_completed', data: { error: { code: 'SHUTDOWN' } } }, 'its terminal event was delivered first')
  t.same(socket.closedWith, { code: 1001, reason: 'server shutting down' })
  await t.rejects(app.agentBridge.openRun({ runId: 'late', threadId: 't', agent: 'demo', ownerId: 'alice' }, { stop: () => {} }), { code: 'AGW_ERR_SHUTTING_DOWN' })
})
