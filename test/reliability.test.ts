// Faults and load: slow consumers, silent clients, clients that leave, runs that must end.
import { once } from 'node:events'
import t from 'tap'
import WebSocket from 'ws'
import type { Agent } from '../src/index.js'
import { createDemoAgent, demoTools } from '../src/agents/index.js'
import { PROTOCOL } from '../src/protocol.js'
import { buildApp, connect, firehose, listen, runEnded, runProblems, tcpOf, testEnv, tokenFor } from './helpers.js'
import { gc } from './gc.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Bytes the process holds that a stalled socket could grow: JS heap plus Buffers. */
function retained (): number {
  gc()
  gc()
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.external
}

async function until (condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await sleep(10)
  }
}

const waitForCancel: Agent = async (run) => {
  run.think('working until told otherwise')
  await new Promise((resolve) => { run.signal.addEventListener('abort', resolve) })
}

/**
 * A reader that keeps nothing but counters, so the memory measured is the server's: it checks
 * seq order as frames arrive and remembers only the last one.
 */
class CountingReader {
  count = 0
  lastSeq = 0
  outOfOrder = 0
  done = false
  runId = ''
  readonly socket: WebSocket

  constructor (url: string, token: string) {
    this.socket = new WebSocket(url, [PROTOCOL], { headers: { authorization: `Bearer ${token}` } })
    this.socket.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { type: string, runId?: string, seq?: number }
      if (message.type === 'run_accepted') this.runId = message.runId ?? ''
      if (message.seq === undefined || message.runId !== this.runId) return
      if (message.seq !== this.lastSeq + 1) this.outOfOrder++
      this.lastSeq = message.seq
      this.count++
      if (message.type === 'agent_completed') this.done = true
    })
  }

  get tcp (): { pause(): void, resume(): void } {
    return tcpOf(this.socket)
  }
}

t.test('a client that stops reading during 50,000 events costs at most 2 MB, then gets every event in order; others are not held up', async (t) => {
  const EVENTS = 50_000
  const app = await buildApp(t, { agents: { demo: createDemoAgent({ stepDelayMs: 0 }), firehose: firehose(EVENTS, 150, 1000) }, tools: demoTools })
  const { ws } = await listen(t, app)
  const slow = new CountingReader(ws, tokenFor('slow-reader'))
  t.teardown(() => { slow.socket.terminate() })
  await once(slow.socket, 'open')
  slow.socket.send(JSON.stringify({ type: 'run', agent: 'firehose', input: { message: 'go' } }))
  await until(() => slow.runId !== '', 'the run is accepted')
  slow.tcp.pause()
  await runEnded(app, slow.runId)
  const deliveredWhileStalled = slow.count

  const other = await connect(t, ws, { token: tokenFor('someone-else') })
  other.send({ type: 'run', input: { message: 'What is 2 + 2?' } })
  const otherRun = await other.nextOf('run_accepted')
  const otherEvents = await other.runEvents(otherRun.runId)
  t.same(runProblems(otherEvents), [], 'another user gets a whole run while the slow reader is stuck')
  t.equal(slow.count, deliveredWhileStalled, 'the slow reader is still stuck meanwhile')
  t.ok(deliveredWhileStalled < EVENTS, `only ${deliveredWhileStalled} events got through before it stalled`)

  const stalled = retained()
  slow.tcp.resume()
  await until(() => slow.done, 'the slow reader has caught up', 120_000)
  const caughtUp = retained()
  t.equal(slow.count, EVENTS + 2, 'every event arrived')
  t.equal(slow.outOfOrder, 0, 'in order, with no gap or repeat')
  const cost = stalled - caughtUp
  t.ok(cost < 2 * 1024 * 1024, `the stalled connection held ${Math.round(cost / 1024)} KiB (limit 2048 KiB)`)
})

t.test('cancelOnDisconnect: a run nobody follows for DISCONNECT_GRACE_MS is cancelled; a watched one is not', async (t) => {
  const app = await buildApp(t, { agents: { waitForCancel }, env: testEnv({ DISCONNECT_GRACE_MS: '150' }) })
  const { ws } = await listen(t, app)
  const token = tokenFor('alice')

  const first = await connect(t, ws, { token })
  first.send({ type: 'run', input: { message: 'x' }, cancelOnDisconnect: true })
  const abandoned = await first.waitFor('run_accepted')
  first.send({ type: 'run', input: { message: 'y' }, cancelOnDisconnect: true })
  const resumed = await first.waitFor('run_accepted')
  first.send({ type: 'run', input: { message: 'z' } })
  const ordinary = await first.waitFor('run_accepted')
  await until(() => first.messages.filter((m) => m.type === 'agent_thinking').length === 3, 'all three runs are under way')
  first.socket.terminate()
  await once(first.socket, 'close')

  const second = await connect(t, ws, { token })
  second.send({ type: 'subscribe', runId: resumed.runId, after: 2 })
  await second.nextOf('subscribed')
  await sleep(400)
  const lookup = async (runId: string): Promise<string> => {
    const found = await app.eventStore.getRun(runId)
    return found.state === 'found' ? found.meta.status : found.state
  }
  t.equal(await lookup(abandoned.runId), 'cancelled', 'the unwatched run was cancelled after the grace period')
  t.equal(await lookup(resumed.runId), 'running', 'a run another connection picked up within the grace period goes on')
  t.equal(await lookup(ordinary.runId), 'running', 'a run without cancelOnDisconnect outlives its client')
  second.send({ type: 'subscribe', runId: abandoned.runId })
  await second.nextOf('subscribed')
  const events = await second.runEvents(abandoned.runId)
  t.match(events.at(-1), { data: { status: 'cancelled', error: { code: 'DISCONNECTED' } } })
  t.same(runProblems(events), [])
  for (const runId of [resumed.runId, ordinary.runId]) second.send({ type: 'cancel', runId })
})

t.test('a client that stops answering pings is closed with 4408 and everything it held is freed', async (t) => {
  const app = await buildApp(t, { agents: { waitForCancel }, env: testEnv({ HEARTBEAT_MS: '100' }) })
  const { ws } = await listen(t, app)
  const silent = await connect(t, ws, { token: tokenFor('mute'), autoPong: false })
  silent.send({ type: 'run', input: { message: 'x' } })
  const { runId } = await silent.nextOf('run_accepted')
  t.equal(app.delivery.connectionCount('mute'), 1)
  t.match(await silent.waitClosed(3000), { code: 4408 })
  await until(() => app.delivery.connectionCount('mute') === 0, 'the connection is forgotten', 3000)
  const lookup = await app.eventStore.getRun(runId)
  t.match(lookup, { state: 'found', meta: { status: 'running' } }, 'its run goes on, ready for a reconnect')
  await app.runEngine.cancel({ userId: 'mute', scopes: [], requestId: 'r', connectionId: 'c' }, runId)
})

t.test('an open connection keeps none of its upgrade request: idle connections cost only their own state', async (t) => {
  const app = await buildApp(t)
  const { ws } = await listen(t, app)
  // The HTTP request of each upgrade, as ws hands it over (Fastify's request and reply hold it).
  const upgrades: Array<WeakRef<object>> = []
  app.websocketServer.on('connection', (_socket: WebSocket, request: object) => { upgrades.push(new WeakRef(request)) })
  const clients = await Promise.all(['idle-1', 'idle-2', 'idle-3'].map((user) => connect(t, ws, { token: tokenFor(user) })))
  t.equal(upgrades.length, 3)
  await sleep(20)
  gc()
  gc()
  t.equal(upgrades.filter((ref) => ref.deref() !== undefined).length, 0, 'every upgrade request was collected')
  // And the connections are whole: they answer, and run.
  clients[0]?.send({ type: 'ping', id: 'p' })
  t.match(await clients[0]?.nextOf('pong'), { id: 'p' })
  clients[1]?.send({ type: 'run', input: { message: 'hello' } })
  const { runId } = await (clients[1] as NonNullable<typeof clients[1]>).nextOf('run_accepted')
  await runEnded(app, runId)
})

t.test('every run ends with exactly one terminal event: a hung agent, a hung tool, a throwing agent', async (t) => {
  const { defineTool } = await import('../src/index.js')
  const { Type } = await import('typebox')
  const never = defineTool({ name: 'never', description: 'Never returns', timeoutMs: 50, parameters: Type.Object({}), execute: () => new Promise(() => {}) })
  const app = await buildApp(t, {
    tools: [never],
    env: testEnv({ RUN_TIMEOUT_MS: '300' }),
    agents: {
      hung: async () => { await new Promise(() => {}) },
      patient: async (run) => { const outcome = await run.tools.call('never', {}); return outcome.status },
      throws: async () => { throw new TypeError('Cannot read properties of undefined (reading "x") at /srv/agent.js:42') }
    }
  })
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor('alice') })
  const expectations: Array<[string, Record<string, unknown>]> = [
    ['hung', { status: 'failed', error: { code: 'TIMEOUT' } }],
    ['patient', { status: 'completed', output: 'timeout' }],
    ['throws', { status: 'failed', error: { code: 'AGENT_FAILED', message: 'The agent failed' } }]
  ]
  for (const [agent, terminal] of expectations) {
    client.send({ type: 'run', agent, input: { message: 'x' } })
    const { runId } = await client.nextOf('run_accepted')
    const events = await client.runEvents(runId)
    t.same(runProblems(events), [], agent)
    t.match(events.at(-1)?.data, terminal, agent)
    t.notMatch(JSON.stringify(events), /srv\/agent\.js|at \//, `${agent}: no stack trace reaches the client`)
    if (agent === 'patient') t.match(events.find((e) => e.type === 'tool_completed')?.data, { status: 'timeout' })
  }
})

