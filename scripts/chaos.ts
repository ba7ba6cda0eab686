// Chaos: many users run many agent runs while their clients drop and resubscribe by seq, read
// slowly, or cancel. An invariant checker counts lost, duplicated, out-of-order and cross-user
// events and runs without exactly one terminal event; every count must be 0.
//   npm run chaos -- [--users 200] [--runs 10] [--seed 7] [--store redis://127.0.0.1:6379/0]
// (smaller fixed-seed versions run in CI, on the memory store and on Redis)
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { Type } from 'typebox'
import type { FastifyInstance } from 'fastify'
import { build, defineTool, RunError, type Agent } from '../src/index.js'
import { PROTOCOL } from '../src/protocol.js'

export interface ChaosOptions {
  users: number
  runsPerUser: number
  seed: number
  /** Chance, per event received, that a client drops its connection. */
  dropRate: number
  /** Share of users that pause reading from time to time. */
  slowShare: number
  /** Share of runs their user cancels. */
  cancelShare: number
  /** EVENT_STORE of the gateway (default memory); with Redis, two nodes share it. */
  store?: string
  /** Key prefix on Redis. */
  keyPrefix?: string
  /** More environment for the gateway nodes (REDIS_MIN_REPLICAS_ACK, …). */
  env?: Record<string, string>
  /** Runs once every user has started their runs, while they are in flight (a fault to inject). */
  during?: (nodes: readonly FastifyInstance[]) => Promise<void>
}

export interface ChaosCounts {
  runs: number
  events: number
  drops: number
  resubscribes: number
  cancels: number
  lost: number
  duplicated: number
  outOfOrder: number
  crossUser: number
  unpairedTools: number
  runsWithoutOneTerminal: number
  differentFromLog: number
}

/** mulberry32: a small seeded PRNG, so a failing run can be replayed with its seed. */
function prng (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let x = state
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const lookup = defineTool({
  name: 'lookup',
  description: 'Takes a little while to answer',
  parameters: Type.Object({ key: Type.String(), delayMs: Type.Integer({ minimum: 0, maximum: 50 }) }),
  async execute ({ key, delayMs }, { signal }) {
    await new Promise((resolve) => { const timer = setTimeout(resolve, delayMs); signal.addEventListener('abort', () => { clearTimeout(timer); resolve(null) }) })
    if (key.endsWith('7')) throw new RunError('NOT_FOUND_HERE', `nothing under ${key}`)
    return { key, value: key.length }
  }
})

/** A run whose shape the input decides: steps, tool calls, a failure or a hang. */
const chaosAgent: Agent = async ({ input, think, say, tools, signal }) => {
  const plan = input as unknown as { steps: number, tools: number, fail: boolean, hang: boolean, delayMs: number }
  for (let step = 0; step < plan.steps && !signal.aborted; step++) {
    think(`step ${step}`)
    if (step < plan.tools) await tools.call('lookup', { key: `k${step}`, delayMs: plan.delayMs })
    else await sleep(plan.delayMs)
  }
  if (plan.fail) throw new RunError('PLANNED', 'this run was planned to fail')
  if (plan.hang) await new Promise((resolve) => { signal.addEventListener('abort', resolve) })
  for (let chunk = 0; chunk < 3; chunk++) say(`part ${chunk} `)
  return { steps: plan.steps }
}

interface Tracked {
  lastSeq: number
  /** Every frame received, by seq: compared with the log at the end. */
  readonly frames: string[]
  terminals: number
  openTools: Set<string>
  done: boolean
}

class ChaosUser {
  socket?: WebSocket
  readonly runs = new Map<string, Tracked>()
  readonly pending: Array<(runId: string) => void> = []
  /** True while the client is away (dropped, not yet reconnected). */
  away = false
  stopped = false

  #connections = 0

  constructor (
    readonly name: string,
    readonly urls: readonly string[],
    readonly token: string,
    readonly random: () => number,
    readonly options: ChaosOptions,
    readonly counts: ChaosCounts,
    readonly slow: boolean
  ) {}

  async connect (): Promise<void> {
    const url = this.urls[this.#connections++ % this.urls.length] as string
    const socket = new WebSocket(url, [PROTOCOL], { headers: { authorization: `Bearer ${this.token}` } })
    this.socket = socket
    socket.on('error', () => {})
    socket.on('message', (data: Buffer) => { this.receive(socket, JSON.parse(data.toString()) as Record<string, unknown>, data.toString()) })
    await once(socket, 'open')
    this.away = false
    for (const [runId, run] of this.runs) {
      if (run.done) continue
      this.counts.resubscribes++
      socket.send(JSON.stringify({ type: 'subscribe', runId, after: run.lastSeq }))
    }
  }

  receive (socket: WebSocket, message: Record<string, unknown>, frame: string): void {
    if (socket !== this.socket) return
    if (message.type === 'run_accepted') {
      const runId = message.runId as string
      this.runs.set(runId, { lastSeq: 0, frames: [], terminals: 0, openTools: new Set(), done: false })
      this.pending.shift()?.(runId)
      return
    }
    if (typeof message.seq !== 'number') return
    const run = this.runs.get(message.runId as string)
    if (run === undefined) {
      this.counts.crossUser++
      return
    }
    const seq = message.seq
    this.counts.events++
    if (seq <= run.lastSeq) {
      this.counts.duplicated++
      return
    }
    if (seq > run.lastSeq + 1) {
      this.counts.lost += seq - run.lastSeq - 1
      this.counts.outOfOrder++
    }
    run.lastSeq = seq
    run.frames[seq] = frame
    const data = message.data as { toolCallId?: string }
    if (message.type === 'tool_executing') run.openTools.add(data.toolCallId ?? '')
    if (message.type === 'tool_completed' && !run.openTools.delete(data.toolCallId ?? '')) this.counts.unpairedTools++
    if (message.type === 'agent_completed') {
      run.terminals++
      run.done = true
    }
    this.chaos(socket)
  }

  /** Now and then: drop the connection (and come back), or stop reading for a moment. */
  chaos (socket: WebSocket): void {
    if (this.random() < this.options.dropRate) {
      this.counts.drops++
      this.socket = undefined
      this.away = true
      socket.terminate()
      setTimeout(() => { void this.reconnect() }, Math.floor(this.random() * 30))
      return
    }
    if (this.slow && this.random() < 0.02) {
      const tcp = (socket as unknown as { _socket?: { pause(): void, resume(): void } })._socket
      tcp?.pause()
      setTimeout(() => { tcp?.resume() }, 5 + Math.floor(this.random() * 50))
    }
  }

  /** Comes back after a drop, retrying while the server refuses (for example while it closes). */
  async reconnect (): Promise<void> {
    while (!this.stopped) {
      try {
        await this.connect()
        return
      } catch {
        await sleep(20)
      }
    }
  }

  async start (): Promise<string> {
    const plan = {
      message: 'chaos',
      steps: 2 + Math.floor(this.random() * 12),
      tools: Math.floor(this.random() * 4),
      fail: this.random() < 0.05,
      hang: this.random() < 0.05,
      delayMs: Math.floor(this.random() * 5)
    }
    for (;;) {
      const socket = this.socket
      if (socket?.readyState === WebSocket.OPEN) {
        const accepted = new Promise<string>((resolve) => { this.pending.push(resolve) })
        socket.send(JSON.stringify({ type: 'run', input: plan }))
        const runId = await Promise.race([accepted, sleep(2000).then(() => '')])
        if (runId !== '') return runId
        this.pending.length = 0
      }
      await sleep(10)
    }
  }

  async play (): Promise<void> {
    await this.connect()
    const started: string[] = []
    for (let i = 0; i < this.options.runsPerUser; i++) {
      started.push(await this.start())
      this.counts.runs++
      await sleep(Math.floor(this.random() * 20))
    }
    for (const runId of started) {
      // A client that is away at that moment simply does not cancel.
      if (this.random() < this.options.cancelShare && this.socket?.readyState === WebSocket.OPEN) {
        this.counts.cancels++
        this.socket.send(JSON.stringify({ type: 'cancel', runId }))
      }
    }
  }

  get finished (): boolean {
    return !this.away && [...this.runs.values()].every((run) => run.done)
  }
}

/** Runs the chaos against a fresh in-process gateway on a real port and returns the counts. */
export async function runChaos (options: ChaosOptions): Promise<ChaosCounts> {
  const store = options.store ?? 'memory'
  const env = {
    APP_ENV: 'test', LOG_LEVEL: 'silent', SHUTDOWN_GRACE_MS: '0', RUN_TIMEOUT_MS: '1500',
    MAX_CONCURRENT_RUNS: String(options.runsPerUser), MAX_CONNECTIONS_PER_USER: '50',
    MESSAGE_RATE_PER_SEC: '1000', MESSAGE_RATE_BURST: '1000', HTTP_RATE_LIMIT_MAX: '1000000', SEND_BUFFER_BYTES: '16384',
    EVENT_STORE: store, REDIS_KEY_PREFIX: options.keyPrefix ?? 'agw-chaos:', JWT_SECRET: randomBytes(32).toString('base64url'),
    ...options.env
  }
  // On Redis, two nodes share the store and users alternate between them on every reconnect.
  const nodes = await Promise.all(Array.from({ length: store === 'memory' ? 1 : 2 }, () => build({ agents: { chaos: chaosAgent }, tools: [lookup], env })))
  const app = nodes[0] as FastifyInstance
  let users: ChaosUser[] = []
  const counts: ChaosCounts = { runs: 0, events: 0, drops: 0, resubscribes: 0, cancels: 0, lost: 0, duplicated: 0, outOfOrder: 0, crossUser: 0, unpairedTools: 0, runsWithoutOneTerminal: 0, differentFromLog: 0 }
  try {
    const urls = await Promise.all(nodes.map(async (node) => `${(await node.listen({ port: 0, host: '127.0.0.1' })).replace('http', 'ws')}/ws`))
    const random = prng(options.seed)
    users = Array.from({ length: options.users }, (_, i) => {
      const name = `chaos-${i}`
      return new ChaosUser(name, urls, app.authSecret.sign({ sub: name }), prng(Math.floor(random() * 2 ** 32)), options, counts, random() < options.slowShare)
    })
    const playing = Promise.all(users.map((user) => user.play()))
    await options.during?.(nodes)
    await playing
    const deadline = Date.now() + 60_000
    while (!users.every((user) => user.finished) && Date.now() < deadline) await sleep(20)
    for (const user of users) {
      for (const [runId, run] of user.runs) {
        if (run.terminals !== 1) counts.runsWithoutOneTerminal++
        if (run.openTools.size > 0) counts.unpairedTools += run.openTools.size
        const logged = await app.eventStore.getRun(runId)
        if (logged.state !== 'found' || logged.meta.lastSeq !== run.lastSeq || logged.meta.ownerId !== user.name) counts.differentFromLog++
        // Every event a client received is in the log afterwards, as it was received.
        else if ((await app.eventStore.read(runId, 0, run.lastSeq)).some((event) => event.frame.toString() !== run.frames[event.seq])) counts.differentFromLog++
      }
    }
  } finally {
    for (const user of users) {
      user.stopped = true
      user.socket?.terminate()
    }
    await Promise.all(nodes.map((node) => node.close()))
  }
  return counts
}

/** The counts that must all be zero. */
export const FAULT_COUNTS = ['lost', 'duplicated', 'outOfOrder', 'crossUser', 'unpairedTools', 'runsWithoutOneTerminal', 'differentFromLog'] as const

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      users: { type: 'string', default: '200' },
      runs: { type: 'string', default: '10' },
      seed: { type: 'string', default: String(Date.now() % 100_000) },
      drop: { type: 'string', default: '0.01' },
      store: { type: 'string', default: 'memory' }
    }
  })
  const options: ChaosOptions = {
    users: Number(values.users), runsPerUser: Number(values.runs), seed: Number(values.seed), dropRate: Number(values.drop),
    slowShare: 0.2, cancelShare: 0.1, store: values.store, keyPrefix: `agw-chaos-${process.pid}:`
  }
  const started = Date.now()
  const counts = await runChaos(options)
  process.stdout.write(`chaos seed ${options.seed} on ${options.store ?? 'memory'}: ${options.users} users × ${options.runsPerUser} runs in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
  for (const [name, value] of Object.entries(counts)) process.stdout.write(`  ${name.padEnd(24)} ${value}\n`)
  const faults = FAULT_COUNTS.filter((name) => counts[name] !== 0)
  process.stdout.write(faults.length === 0 ? 'every invariant held\n' : `FAILED: ${faults.join(', ')}\n`)
  process.exitCode = faults.length === 0 ? 0 : 1
}
