// The load generator: a separate process that drives one server target with one workload, checks
// every event it receives (per run: no gap, no repeat, in order, only on its owner's connections)
// and reports its figures to the orchestrator. It asks the server for CPU and memory measurements
// through the orchestrator. Configuration: the JSON LoadConfig in BENCH_LOAD.
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import { io } from 'socket.io-client'
import { signToken } from './shared/jwt.js'
import { clockUs, stampOf, tokenLatencyUs, type RunPlan, type Schedule } from './shared/plan.js'
import { median, quantile } from './shared/stats.js'
import type { CpuMeasure, Correctness, LoadConfig, LoadMessage, LoadResult, MemoryMeasure, ServerMessage, ServerReply, ServerRequest, WorkloadSpec } from './shared/ipc.js'
import type { GcPauses } from './shared/gc-pauses.js'

const PROTOCOL = 'agent-events.v1'
/** Handshakes in flight at once while connections open. */
const OPEN_CONCURRENCY = 100
/**
 * Connections per loopback source address in the scaling workload: 127.0.0.2 takes the first
 * SOURCE_SPREAD, 127.0.0.3 the next, and so on, far below the ~28,000 ephemeral ports of one.
 */
const SOURCE_SPREAD = 5000

type Message = Readonly<Record<string, unknown>>

// ---- Requests to the server, through the orchestrator -------------------------------------------

const replies = new Map<number, (reply: ServerReply) => void>()
let lastRequestId = 0
process.on('message', (message: ServerMessage) => {
  if (message.type !== 'reply') return
  replies.get(message.id)?.(message.reply)
  replies.delete(message.id)
})

function ask (request: ServerRequest): Promise<ServerReply> {
  const id = ++lastRequestId
  return new Promise((resolve) => {
    replies.set(id, resolve)
    process.send?.({ type: 'request', id, request } satisfies LoadMessage)
  })
}

async function measureCpu (): Promise<CpuMeasure> {
  const reply = await ask('measure-stop')
  if (reply.kind !== 'measure') throw new Error(`unexpected reply ${reply.kind}`)
  return reply
}

async function measureMemory (): Promise<MemoryMeasure> {
  const reply = await ask('memory')
  if (reply.kind !== 'memory') throw new Error(`unexpected reply ${reply.kind}`)
  return reply
}

// ---- Connections ------------------------------------------------------------------------------

interface Link {
  send(message: Message): void
  close(): void
}

interface RunTrack {
  readonly runId: string
  readonly expected: number
  /** When the client sent `run` (performance.now()); undefined for a replay. */
  readonly sentAt: number | undefined
  lastSeq: number
  done: boolean
  readonly finish: () => void
}

interface PendingRun {
  readonly plan: RunPlan
  readonly sentAt: number
  readonly finish: () => void
}

/** One connection of one user, and what it follows. */
class Conn {
  link: Link | undefined
  closing = false
  readonly runs = new Map<string, RunTrack>()
  readonly pending: PendingRun[] = []
  constructor (readonly user: string) {}
}

class Checker {
  readonly counts: Correctness = { lost: 0, duplicated: 0, outOfOrder: 0, misdelivered: 0, failedRuns: 0, failedConnections: 0 }
  readonly owners = new Map<string, string>()
  readonly unfinished = new Set<RunTrack | PendingRun>()
  delivered = 0
  unsolicited = 0
  lastEventAt = 0
  latencies: number[] | undefined
  /** Bytes of the run events' frames as received (the payload of each WebSocket frame). */
  bytes = 0
  /** From `run` sent to run_accepted, and to agent_started, in ms: every run of the window. */
  accepted: number[] = []
  started: number[] = []

  receive (conn: Conn, message: Message, size: number): void {
    if (typeof message.seq !== 'number') {
      this.#control(conn, message)
      return
    }
    const runId = String(message.runId)
    const run = conn.runs.get(runId)
    if (this.owners.get(runId) !== conn.user) {
      this.counts.misdelivered++
      return
    }
    // Another connection's run of the same user (Socket.IO's room per user sends it everywhere):
    // not misdelivered, but not this connection's to count either.
    if (run === undefined) {
      this.unsolicited++
      return
    }
    this.delivered++
    this.bytes += size
    this.lastEventAt = performance.now()
    const seq = message.seq
    if (seq === 1 && run.sentAt !== undefined) this.started.push(this.lastEventAt - run.sentAt)
    if (seq <= run.lastSeq) {
      this.counts.duplicated++
      return
    }
    if (seq !== run.lastSeq + 1 || run.done) {
      this.counts.outOfOrder++
      this.counts.lost += Math.max(0, seq - run.lastSeq - 1)
    }
    run.lastSeq = seq
    const data = message.data as Message
    if (this.latencies !== undefined && message.type === 'agent_thinking') {
      const stamp = stampOf(String(data.thought))
      if (stamp !== undefined) this.latencies.push((clockUs() - stamp) / 1000)
    } else if (this.latencies !== undefined && message.type === 'agent_message') {
      const us = tokenLatencyUs(String(data.delta))
      if (us !== undefined) this.latencies.push(us / 1000)
    }
    if (message.type === 'agent_completed' && !run.done) {
      if (data.status !== 'completed') this.counts.failedRuns++
      this.counts.lost += Math.max(0, run.expected - seq)
      this.#finish(run)
    }
  }

  #control (conn: Conn, message: Message): void {
    if (message.type === 'run_accepted') {
      const pending = conn.pending.shift()
      if (pending === undefined) return
      this.accepted.push(performance.now() - pending.sentAt)
      this.unfinished.delete(pending)
      const runId = String(message.runId)
      this.owners.set(runId, conn.user)
      this.follow(conn, runId, pending.plan.events, pending.finish, pending.sentAt)
    } else if (message.type === 'error') {
      this.counts.failedRuns++
      const pending = conn.pending.shift()
      if (pending !== undefined) {
        this.unfinished.delete(pending)
        pending.finish()
      }
    }
  }

  follow (conn: Conn, runId: string, expected: number, finish: () => void, sentAt?: number): void {
    const run: RunTrack = { runId, expected, sentAt, lastSeq: 0, done: false, finish }
    conn.runs.set(runId, run)
    this.unfinished.add(run)
  }

  #finish (run: RunTrack): void {
    run.done = true
    this.unfinished.delete(run)
    run.finish()
  }

  /** Starts a run on `conn`; resolves when its terminal event has arrived. */
  run (conn: Conn, plan: RunPlan): Promise<void> {
    return new Promise((finish) => {
      const pending = { plan, finish, sentAt: performance.now() }
      conn.pending.push(pending)
      this.unfinished.add(pending)
      conn.link?.send({ type: 'run', input: plan })
    })
  }

  /** Replays a finished run of `conn`'s user from seq 0; resolves when the terminal event arrived. */
  replay (conn: Conn, runId: string, expected: number): Promise<void> {
    return new Promise((finish) => {
      this.follow(conn, runId, expected, finish)
      conn.link?.send({ type: 'subscribe', runId, after: 0 })
    })
  }

  /** Waits for `work` until the deadline; whatever has not arrived by then is lost. */
  async settle (work: Promise<unknown>, deadline: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(resolve, Math.max(0, deadline - Date.now()), 'timeout') })
    const outcome = await Promise.race([work, timeout])
    clearTimeout(timer)
    if (outcome !== 'timeout') return
    for (const item of this.unfinished) {
      if ('runId' in item) this.counts.lost += item.expected - item.lastSeq
      else this.counts.failedRuns++
    }
    this.unfinished.clear()
  }
}

async function connectWs (url: string, token: string, conn: Conn, checker: Checker, localAddress?: string): Promise<Link> {
  const socket = new WebSocket(url, [PROTOCOL], { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false, ...(localAddress === undefined ? {} : { localAddress }) })
  socket.on('message', (data: Buffer) => { checker.receive(conn, JSON.parse(data.toString()) as Message, data.length) })
  socket.on('close', () => { if (!conn.closing) checker.counts.failedConnections++ })
  await once(socket, 'open')
  return {
    send: (message) => { socket.send(JSON.stringify(message)) },
    close: () => { socket.terminate() }
  }
}

async function connectSocketIo (url: string, token: string, conn: Conn, checker: Checker, _localAddress?: string): Promise<Link> {
  const socket = io(url, { transports: ['websocket'], auth: { token }, reconnection: false, forceNew: true })
  // The size of the frame that carried the event: engine.io reports its packet (the payload after
  // the packet type, one byte) synchronously before Socket.IO decodes and emits the event.
  let frameBytes = 0
  const receive = (message: Message): void => { checker.receive(conn, message, frameBytes) }
  socket.on('event', receive)
  socket.on('msg', receive)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('connect_error', reject)
  })
  socket.io.engine.on('packet', (packet: { data?: unknown }) => { frameBytes = typeof packet.data === 'string' ? Buffer.byteLength(packet.data) + 1 : 0 })
  socket.on('disconnect', () => { if (!conn.closing) checker.counts.failedConnections++ })
  return {
    send: (message) => { socket.emit('msg', message) },
    close: () => { socket.disconnect() }
  }
}

/** Opens one connection per user name, OPEN_CONCURRENCY at a time; failures are counted. */
async function openAll (config: LoadConfig, users: readonly string[], checker: Checker, spreadSources = false): Promise<Conn[]> {
  const connect = config.client === 'ws' ? connectWs : connectSocketIo
  const conns = users.map((user) => new Conn(user))
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < conns.length) {
      const index = next++
      const conn = conns[index] as Conn
      const source = spreadSources ? `127.0.0.${2 + Math.floor(index / SOURCE_SPREAD)}` : undefined
      try {
        conn.link = await connect(config.url, signToken(config.secret, conn.user), conn, checker, source)
      } catch {
        checker.counts.failedConnections++
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, conns.length) }, worker))
  return conns.filter((conn) => conn.link !== undefined)
}

function closeAll (conns: readonly Conn[]): void {
  for (const conn of conns) {
    conn.closing = true
    conn.link?.close()
  }
}

const names = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}-${i}`)

function plan (events: number, bytes: number, options: { intervalMs?: number, keep?: boolean, schedule?: Schedule, content?: 'thought' | 'token' } = {}): RunPlan {
  return { message: 'bench', events: Math.max(3, events), bytes, intervalMs: options.intervalMs ?? 0, keep: options.keep ?? false, schedule: options.schedule ?? 'interleaved', content: options.content ?? 'thought' }
}

// ---- Workloads --------------------------------------------------------------------------------

interface Window {
  readonly started: number
  readonly cpu: NodeJS.CpuUsage
}

/** Starts the measured window: the server's CPU counter, ours, and the clock. */
async function openWindow (checker: Checker): Promise<Window> {
  await ask('measure-start')
  checker.delivered = 0
  checker.bytes = 0
  checker.accepted = []
  checker.started = []
  return { started: performance.now(), cpu: process.cpuUsage() }
}

/** Events/s, the server's CPU in all and per event, and the load generator's per event, over the window. */
async function closeWindow (checker: Checker, window: Window): Promise<Record<string, number>> {
  const server = await measureCpu()
  const load = process.cpuUsage(window.cpu)
  const seconds = (checker.lastEventAt - window.started) / 1000
  const delivered = Math.max(1, checker.delivered)
  return {
    eventsPerSec: checker.delivered / seconds,
    serverCpuUs: server.cpuUs,
    cpuUsPerEvent: server.cpuUs / delivered,
    systemCpuUsPerEvent: server.systemCpuUs / delivered,
    loadCpuUsPerEvent: (load.user + load.system) / delivered,
    bytesPerEvent: checker.bytes / delivered,
    ...gcPauses(server.gc, delivered),
    ...startTimes(checker)
  }
}

/**
 * The collector's pauses on the server's main thread over the window: their sum per event (µs,
 * part of the server's CPU per event), the longest (ms), and the counts; and the bytes the
 * scavenges found alive, per event. None from a build before they were reported.
 */
function gcPauses (pauses: GcPauses | undefined, delivered: number): Record<string, number> {
  if (pauses === undefined) return {}
  return {
    gcPauseUsPerEvent: ((pauses.scavengeMs + pauses.otherMs) * 1000) / delivered,
    gcPauseMaxMs: pauses.maxPauseMs,
    scavenges: pauses.scavenges,
    scavengePauseMs: pauses.scavengeMs,
    otherGcPauses: pauses.otherPauses,
    otherGcPauseMs: pauses.otherMs,
    fullCollections: pauses.fullCollections,
    ...(pauses.scavengeKeptBytes === undefined ? {} : { scavengeKeptBytes: pauses.scavengeKeptBytes, scavengeKeptBPerEvent: pauses.scavengeKeptBytes / delivered })
  }
}

/** Time to run_accepted and to agent_started of the window's runs (ms; NaN when none started). */
function startTimes (checker: Checker): Record<string, number> {
  return {
    acceptedP50Ms: quantile(checker.accepted, 0.5),
    acceptedP99Ms: quantile(checker.accepted, 0.99),
    startedP50Ms: quantile(checker.started, 0.5),
    startedP99Ms: quantile(checker.started, 0.99)
  }
}

/**
 * Warms the server's start path: `storm` again and again until `total` runs have been accepted
 * (counted from the server's run_accepted replies; one storm at least). A start path that has run
 * a few hundred times is still being compiled: measured after one storm, every server's start
 * latencies were mostly its JIT's warm-up. Returns the runs accepted.
 */
async function warmStarts (checker: Checker, deadline: number, total: number, storm: () => Promise<unknown>): Promise<number> {
  let accepted = 0
  do {
    checker.accepted = []
    await checker.settle(storm(), deadline)
    accepted += checker.accepted.length
  } while (accepted < total && checker.accepted.length > 0)
  return accepted
}

/** One short run on every connection at once: the warm-up storm of the streaming workloads. */
function shortRuns (conns: readonly Conn[], checker: Checker): () => Promise<unknown> {
  return () => Promise.all(conns.map((conn) => checker.run(conn, plan(3, 200))))
}

async function throughput (config: LoadConfig, spec: Extract<WorkloadSpec, { kind: 'throughput' }>, checker: Checker, deadline: number): Promise<Record<string, number>> {
  const conns = await openAll(config, names('user', spec.users), checker)
  try {
    const warmupRuns = await warmStarts(checker, deadline, spec.warmupRuns, shortRuns(conns, checker))
    if (spec.warmupEvents > 0) await checker.settle(Promise.all(conns.map((conn) => checker.run(conn, plan(spec.warmupEvents, spec.bytes, { schedule: spec.schedule })))), deadline)
    const window = await openWindow(checker)
    await checker.settle(Promise.all(conns.map((conn) => checker.run(conn, plan(spec.events, spec.bytes, { schedule: spec.schedule })))), deadline)
    return { ...await closeWindow(checker, window), warmupRuns }
  } finally {
    closeAll(conns)
  }
}

/**
 * The server's whole RSS in MiB before its connections opened and with them open, beside the RSS
 * per connection: the per-connection figure is what the process gained, which a process that
 * starts with free heap (garbage of its own startup) fills without growing.
 */
function processRss (before: MemoryMeasure, connected: MemoryMeasure): Record<string, number> {
  return { startRssMiB: before.rss / 2 ** 20, connectedRssMiB: connected.rss / 2 ** 20 }
}

/** The young generation's size in MiB with the connections open, where the server reports it. */
function youngGeneration (memory: MemoryMeasure): Record<string, number> {
  return memory.youngGeneration === undefined ? {} : { youngGenerationMiB: memory.youngGeneration / 2 ** 20 }
}

async function idle (config: LoadConfig, spec: Extract<WorkloadSpec, { kind: 'idle' }>, checker: Checker, deadline: number): Promise<Record<string, number>> {
  const before = await measureMemory()
  const conns = await openAll(config, names('idle', spec.connections), checker)
  try {
    // Let handshake garbage and timers settle before the server collects and measures.
    await sleep(spec.settleMs)
    const after = await measureMemory()
    // Then prove every connection is still authenticated and routed: one tiny run each.
    await checker.settle(Promise.all(conns.map((conn) => checker.run(conn, plan(3, 200)))), deadline)
    return {
      connections: conns.length,
      rssPerConnection: (after.rss - before.rss) / spec.connections,
      heapPerConnection: (after.heapUsed - before.heapUsed) / spec.connections,
      externalPerConnection: (after.external - before.external) / spec.connections,
      ...processRss(before, after),
      ...youngGeneration(after)
    }
  } finally {
    closeAll(conns)
  }
}

async function latency (config: LoadConfig, spec: Extract<WorkloadSpec, { kind: 'latency' }>, checker: Checker, deadline: number): Promise<Record<string, number>> {
  const conns = await openAll(config, names('user', spec.users), checker)
  // Runs start spread over one interval, so the offered load is even rather than one burst per interval.
  const paced = (durationMs: number): Promise<unknown> => Promise.all(conns.map(async (conn, i) => {
    await sleep((i * spec.intervalMs) / conns.length)
    await checker.run(conn, plan(Math.round(durationMs / spec.intervalMs) + 2, spec.bytes, { intervalMs: spec.intervalMs, content: spec.content }))
  }))
  try {
    const warmupRuns = await warmStarts(checker, deadline, spec.warmupRuns, shortRuns(conns, checker))
    if (spec.warmupMs > 0) await checker.settle(paced(spec.warmupMs), deadline)
    const window = await openWindow(checker)
    const latencies: number[] = []
    checker.latencies = latencies
    await checker.settle(paced(spec.durationMs), deadline)
    checker.latencies = undefined
    return { ...await closeWindow(checker, window), p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), maxMs: quantile(latencies, 1), warmupRuns }
  } finally {
    closeAll(conns)
  }
}

async function replay (config: LoadConfig, spec: Extract<WorkloadSpec, { kind: 'replay' }>, checker: Checker, deadline: number): Promise<Record<string, number>> {
  const conns = await openAll(config, ['replay'], checker)
  try {
    const [writer] = conns
    if (writer === undefined) return {}
    // What the finished run keeps in the server's heap, against the size of its frames.
    const before = await measureMemory()
    const [bytesBefore, deliveredBefore] = [checker.bytes, checker.delivered]
    await checker.settle(checker.run(writer, plan(spec.events, spec.bytes, { keep: true })), deadline)
    const after = await measureMemory()
    // Outside the heap: V8's external memory counts ordinary ArrayBuffers (and other memory held
    // for JS objects), Node's arrayBuffers every ArrayBuffer, shared ones too, in which the
    // gateway's memory store keeps its logs. The larger of the two growths counts each byte once.
    const outside = Math.max(after.external - before.external, (after.arrayBuffers ?? after.external) - (before.arrayBuffers ?? before.external))
    const retained = { retainedPerEvent: (after.heapUsed - before.heapUsed + outside) / spec.events, frameBytes: (checker.bytes - bytesBefore) / Math.max(1, checker.delivered - deliveredBefore) }
    const runId = [...writer.runs.keys()][0] ?? ''
    // A second connection of the same user, opened once the run has finished.
    const [reader] = await openAll(config, ['replay'], checker)
    if (reader === undefined) return {}
    conns.push(reader)
    const times: number[] = []
    let window: Window | undefined
    for (let i = 0; i < spec.warmups + spec.replays; i++) {
      if (i === spec.warmups) window = await openWindow(checker)
      const started = performance.now()
      await checker.settle(checker.replay(reader, runId, spec.events), deadline)
      if (window !== undefined) times.push(performance.now() - started)
    }
    const measured = window === undefined ? {} : await closeWindow(checker, window)
    return { ...measured, ...retained, replayMs: median(times), replayMaxMs: Math.max(...times) }
  } finally {
    closeAll(conns)
  }
}

/** Many runs starting at once: each connection starts one run, all within spreadMs (after the same storm until warmupRuns have started). */
async function start (config: LoadConfig, spec: Extract<WorkloadSpec, { kind: 'start' }>, checker: Checker, deadline: number): Promise<Record<string, number>> {
  const conns = await openAll(config, names('user', spec.users), checker)
  const storm = (): Promise<unknown> => Promise.all(conns.map(async (conn, i) => {
    const at = (i * spec.spreadMs) / conns.length
    if (at >= 1) await sleep(at)
    await checker.run(conn, plan(spec.events, 200))
  }))
  try {
    // The measured storm itself, until the warm-up's runs have started.
    const warmupRuns = await warmStarts(checker, deadline, spec.warmupRuns, storm)
    const window = await openWindow(checker)
    const began = performance.now()
    await checker.settle(storm(), deadline)
    const measured = await closeWindow(checker, window)
    const runs = checker.accepted.length
    // A run's whole cost, its start and end with its events: the window's server CPU over its runs.
    const cpuUsPerRun = runs === 0 ? Number.NaN : (measured.serverCpuUs ?? Number.NaN) / runs
    // What the window's scavenges found alive, over its runs: a start's objects in flight.
    const kept = measured.scavengeKeptBytes
    const perRun: Record<string, number> = kept === undefined ? {} : { scavengeKeptBPerRun: runs === 0 ? Number.NaN : kept / runs }
    return { ...measured, cpuUsPerRun, ...perRun, runsStarted: runs, warmupRuns, wallMs: performance.now() - began }
  } finally {
    closeAll(conns)
  }
}

/**
 * Connection scaling: handshakes/s, idle memory, the start path warmed (short runs on every
 * connection until warmupRuns have been accepted), then paced runs at each interval in turn.
 */
async function scale (config: LoadConfig, spec: Extract<WorkloadSpec, { kind: 'scale' }>, checker: Checker, deadline: number): Promise<Record<string, number>> {
  const before = await measureMemory()
  const opening = performance.now()
  const conns = await openAll(config, names('scale', spec.connections), checker, config.client === 'ws')
  const metrics: Record<string, number> = { connections: conns.length, handshakesPerSec: conns.length / ((performance.now() - opening) / 1000) }
  try {
    await sleep(spec.settleMs)
    const idleMemory = await measureMemory()
    metrics.rssPerConnection = (idleMemory.rss - before.rss) / spec.connections
    metrics.heapPerConnection = (idleMemory.heapUsed - before.heapUsed) / spec.connections
    Object.assign(metrics, processRss(before, idleMemory), youngGeneration(idleMemory))
    // Without it, the first phase began with every connection's first run, on a start path not
    // yet compiled: its CPU and run_accepted were a cold server's.
    metrics.warmupRuns = await warmStarts(checker, deadline, spec.warmupRuns, shortRuns(conns, checker))
    for (const intervalMs of spec.intervalsMs) {
      const events = Math.max(1, Math.round(spec.phaseMs / intervalMs))
      const window = await openWindow(checker)
      const latencies: number[] = []
      checker.latencies = latencies
      // The runs start spread over one interval, so the offered load is even.
      await checker.settle(Promise.all(conns.map(async (conn, i) => {
        await sleep((i * intervalMs) / conns.length)
        await checker.run(conn, plan(events + 2, 200, { intervalMs }))
      })), deadline)
      checker.latencies = undefined
      const measured = await closeWindow(checker, window)
      const tag = `${intervalMs / 1000}s`
      metrics[`cpuUsPerEvent@${tag}`] = measured.cpuUsPerEvent ?? Number.NaN
      metrics[`p50Ms@${tag}`] = quantile(latencies, 0.5)
      metrics[`p99Ms@${tag}`] = quantile(latencies, 0.99)
      metrics[`acceptedP50Ms@${tag}`] = measured.acceptedP50Ms ?? Number.NaN
      metrics[`acceptedP99Ms@${tag}`] = measured.acceptedP99Ms ?? Number.NaN
      // Every run's thoughts, agent_started and agent_completed: what was offered, and what arrived.
      metrics[`deliveredShare@${tag}`] = checker.delivered / (conns.length * (events + 2))
    }
    return metrics
  } finally {
    closeAll(conns)
  }
}

async function main (): Promise<void> {
  const config = JSON.parse(process.env.BENCH_LOAD ?? '{}') as LoadConfig
  const checker = new Checker()
  const deadline = Date.now() + config.timeoutMs
  const spec = config.workload
  let metrics: Record<string, number>
  switch (spec.kind) {
    case 'throughput': metrics = await throughput(config, spec, checker, deadline); break
    case 'idle': metrics = await idle(config, spec, checker, deadline); break
    case 'latency': metrics = await latency(config, spec, checker, deadline); break
    case 'replay': metrics = await replay(config, spec, checker, deadline); break
    case 'start': metrics = await start(config, spec, checker, deadline); break
    case 'scale': metrics = await scale(config, spec, checker, deadline); break
  }
  const result: LoadResult = { counts: checker.counts, delivered: checker.delivered, metrics }
  process.send?.({ type: 'result', result } satisfies LoadMessage, () => { process.exit(0) })
}

await main()
