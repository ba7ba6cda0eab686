// npm run bench: the gateway against a raw `ws` server and Socket.IO 4, under the same workloads.
// Each server target runs alone in its own process, one at a time; a load generator in another
// process drives it. Targets alternate within every round (their order rotates) so machine drift
// hits all of them; the table reports medians of the rounds with min–max and ratios to raw ws.
// Every round checks correctness too: a lost, repeated, out-of-order or misdelivered event fails it.
//   npm run bench -- [--quick] [--rounds N] [--only burst,latency] [--profile [--profile-target raw-ws]] [--out file.json] (--help: all)
// Method and results: docs/performance.md.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { RedisCluster } from '../scripts/redis-cluster.js'
import { deleteKeysWithPrefix, withRedis } from '../scripts/redis-keys.js'
import { CORRECTNESS_KEYS, type ClientKind, type Correctness, type LoadConfig, type LoadMessage, type LoadResult, type ServerMessage, type ToServer, type WorkloadSpec } from './shared/ipc.js'
import { pairedRatio, spread, type PairedRatio } from './shared/stats.js'
import { allowedCpus, cpuList } from './shared/cpus.js'
import { UsageError, positiveInteger } from './shared/cli.js'
import { BURST_PER_TURN, TURN_BUDGET, type Schedule } from './shared/plan.js'
import { scalingSvg } from './chart.js'
import { formatSummary, summariseProfile, type ProfileWindow } from './profile.js'

// ---- Targets and workloads --------------------------------------------------------------------

type TargetName = 'gateway' | 'baseline' | 'gateway-memory' | 'redis-cluster' | 'raw-ws' | 'socketio'

interface Target {
  readonly name: TargetName
  /** The server script, in bench/targets/. */
  readonly script: string
  /**
   * A store of its own; otherwise the gateway uses its workload's store. `redis-cluster`: a
   * throwaway Redis Cluster (3 primaries, 3 replicas on loopback) that the bench starts itself.
   */
  readonly store?: 'memory' | 'redis-cluster'
  readonly client: ClientKind
  /** The URL of a server listening on `port`. */
  url(port: number): string
}

const TARGETS: Readonly<Record<TargetName, Target>> = {
  gateway: { name: 'gateway', script: 'gateway', client: 'ws', url: (port) => `ws://127.0.0.1:${port}/ws` },
  // The gateway on the memory store beside the gateway on Redis, to compare the stores round by round.
  'gateway-memory': { name: 'gateway-memory', script: 'gateway', store: 'memory', client: 'ws', url: (port) => `ws://127.0.0.1:${port}/ws` },
  // The gateway on a Redis Cluster beside the gateway on one Redis, under the same workload.
  'redis-cluster': { name: 'redis-cluster', script: 'gateway', store: 'redis-cluster', client: 'ws', url: (port) => `ws://127.0.0.1:${port}/ws` },
  // The gateway of another build (`--baseline DIR`), in the same rounds as this one: a change measured
  // against what it changes, with the host's drift shared by both.
  baseline: { name: 'baseline', script: 'gateway', client: 'ws', url: (port) => `ws://127.0.0.1:${port}/ws` },
  'raw-ws': { name: 'raw-ws', script: 'raw-ws', client: 'ws', url: (port) => `ws://127.0.0.1:${port}/` },
  socketio: { name: 'socketio', script: 'socketio', client: 'socketio', url: (port) => `http://127.0.0.1:${port}` }
}
const ALL_TARGETS: readonly TargetName[] = ['gateway', 'raw-ws', 'socketio']

interface Metric {
  readonly key: string
  readonly label: string
  readonly format: (value: number) => string
}

const count = (value: number): string => Math.round(value).toLocaleString('en-US')
const fixed = (digits: number) => (value: number): string => value.toFixed(digits)
const kib = (value: number): string => (value / 1024).toFixed(1)

const START_METRICS: readonly Metric[] = [
  { key: 'acceptedP50Ms', label: 'run_accepted p50 ms', format: fixed(2) },
  { key: 'acceptedP99Ms', label: 'run_accepted p99 ms', format: fixed(2) },
  { key: 'startedP50Ms', label: 'agent_started p50 ms', format: fixed(2) },
  { key: 'startedP99Ms', label: 'agent_started p99 ms', format: fixed(2) }
]
/** The paced rates of the connection-scaling runs: one event per connection every 5 s, every 1 s. */
export const SCALE_INTERVALS_MS = [5000, 1000] as const
export const SCALE_SIZES = [1000, 5000, 10_000, 19_500] as const

const BYTES: Metric = { key: 'bytesPerEvent', label: 'bytes/event on the wire', format: fixed(0) }
// Redis workloads only: the CPU time redis-server used over the window (INFO CPU, the whole server;
// on the cluster, the sum over its six nodes).
// The kernel's share of the server's CPU (system time): the socket writes, mostly. Two servers
// making the same system calls can still differ here — on loopback, a write also runs the
// receiving side's network stack and may have to wake the reader.
const SYSTEM_CPU: Metric = { key: 'systemCpuUsPerEvent', label: '… of it in the kernel', format: fixed(2) }
// The collector's pauses on the server's main thread (Node's gc performance entries), a part of
// its CPU per event; the longest pause of the window holds every socket for its length. What the
// scavenges found alive (copied or promoted) is their work: a scavenge's pause grows with it.
const GC_PAUSES: readonly Metric[] = [
  { key: 'gcPauseUsPerEvent', label: '… GC pauses µs/event', format: fixed(2) },
  { key: 'gcPauseMaxMs', label: 'longest GC pause ms', format: fixed(1) },
  { key: 'scavengeKeptBPerEvent', label: '… GC survivors B/event', format: fixed(0) }
]
const REDIS_CPU: Metric = { key: 'redisCpuUsPerEvent', label: 'redis-server CPU µs/ev', format: fixed(2) }
/** V8's young generation with the connections open: a fixed share of RSS that grows to a limit per Node version. */
const YOUNG_GENERATION: Metric = { key: 'youngGenerationMiB', label: 'young generation MiB', format: fixed(0) }
const PROCESS_RSS: readonly Metric[] = [
  { key: 'startRssMiB', label: 'RSS MiB, no connections', format: fixed(1) },
  { key: 'connectedRssMiB', label: 'RSS MiB, connected', format: fixed(1) }
]

const METRICS: Readonly<Record<WorkloadSpec['kind'], readonly Metric[]>> = {
  throughput: [
    { key: 'eventsPerSec', label: 'delivered events/s', format: count },
    { key: 'cpuUsPerEvent', label: 'server CPU µs/event', format: fixed(2) },
    SYSTEM_CPU,
    ...GC_PAUSES,
    REDIS_CPU,
    { key: 'loadCpuUsPerEvent', label: 'load-gen CPU µs/event', format: fixed(2) },
    BYTES,
    ...START_METRICS
  ],
  idle: [
    { key: 'rssPerConnection', label: 'RSS KiB/connection', format: kib },
    { key: 'heapPerConnection', label: 'heap KiB/connection', format: kib },
    ...PROCESS_RSS,
    YOUNG_GENERATION
  ],
  latency: [
    { key: 'p50Ms', label: 'latency p50 ms', format: fixed(2) },
    { key: 'p99Ms', label: 'latency p99 ms', format: fixed(2) },
    { key: 'maxMs', label: 'latency max ms', format: fixed(2) },
    { key: 'eventsPerSec', label: 'delivered events/s', format: count },
    { key: 'cpuUsPerEvent', label: 'server CPU µs/event', format: fixed(2) },
    SYSTEM_CPU,
    ...GC_PAUSES,
    REDIS_CPU,
    BYTES,
    ...START_METRICS
  ],
  start: [
    ...START_METRICS,
    { key: 'cpuUsPerEvent', label: 'server CPU µs/event', format: fixed(2) },
    SYSTEM_CPU,
    ...GC_PAUSES,
    { key: 'cpuUsPerRun', label: 'server CPU µs/run', format: fixed(1) },
    { key: 'scavengeKeptBPerRun', label: 'GC survivors B/run', format: fixed(0) }
  ],
  scale: [
    { key: 'handshakesPerSec', label: 'handshakes/s', format: count },
    { key: 'rssPerConnection', label: 'idle RSS KiB/connection', format: kib },
    { key: 'heapPerConnection', label: 'idle heap KiB/connection', format: kib },
    ...PROCESS_RSS,
    YOUNG_GENERATION,
    ...SCALE_INTERVALS_MS.flatMap((ms): Metric[] => {
      const tag = `${ms / 1000}s`
      return [
        { key: `cpuUsPerEvent@${tag}`, label: `1/${tag}: CPU µs/event`, format: fixed(2) },
        { key: `p50Ms@${tag}`, label: `1/${tag}: p50 ms`, format: fixed(2) },
        { key: `p99Ms@${tag}`, label: `1/${tag}: p99 ms`, format: fixed(2) },
        { key: `acceptedP50Ms@${tag}`, label: `1/${tag}: run_accepted p50`, format: fixed(2) },
        { key: `deliveredShare@${tag}`, label: `1/${tag}: offered delivered`, format: fixed(3) }
      ]
    })
  ],
  replay: [
    { key: 'replayMs', label: 'replay of the run ms', format: fixed(1) },
    { key: 'retainedPerEvent', label: 'retained heap B/event', format: fixed(0) },
    { key: 'frameBytes', label: 'frame B/event', format: fixed(0) },
    { key: 'cpuUsPerEvent', label: 'server CPU µs/event', format: fixed(2) }
  ]
}

interface Workload {
  readonly name: string
  readonly title: string
  readonly targets: readonly TargetName[]
  /** The gateway's EVENT_STORE: memory, or the Redis URL. */
  readonly redis: boolean
  readonly full: WorkloadSpec
  readonly quick: WorkloadSpec
  /** Ratio columns beyond the ones to raw ws: [target, the target it is divided by, the column's name]. */
  readonly ratios?: ReadonlyArray<readonly [TargetName, TargetName, string]>
}

/**
 * Runs started before a measured window, in every workload that starts runs in it: a server's
 * start path is still being compiled after a few hundred starts (measured after one storm, raw
 * ws's median run_accepted in (g) was 19 ms, against 1.6–2.4 ms after 10,000–20,000). `--quick`
 * starts two rounds of its connections instead.
 */
const WARMUP_RUNS = 10_000
const warmupRuns = (users: number, quick: boolean): number => (quick ? 2 * users : WARMUP_RUNS)

const burst = (users: number, events: number, quick: boolean, schedule: Schedule = 'interleaved'): WorkloadSpec =>
  ({ kind: 'throughput', users, events, bytes: 200, warmupRuns: warmupRuns(users, quick), warmupEvents: Math.ceil(events / 10), schedule })
const n = (value: number): string => value.toLocaleString('en-US')

/** What a workload does, in words, from its sizes. */
function describe (spec: WorkloadSpec): string {
  switch (spec.kind) {
    case 'throughput': return `${n(spec.users)} users × 1 run × ${n(spec.events)} events of ~${spec.bytes} B, ${spec.schedule === 'burst' ? `each run emitting ${BURST_PER_TURN} events per turn of the event loop` : `interleaved (one event per run per turn, ≤ ${TURN_BUDGET} per turn)`}, after ${n(spec.warmupRuns)} warm-up starts`
    case 'idle': return `${n(spec.connections)} authenticated idle connections, memory after forced GC`
    case 'latency': return `${n(spec.users)} users, one ${spec.content === 'token' ? 'agent_message delta of 4–16 B' : 'event'} per run every ${spec.intervalMs} ms (${n(spec.users * 1000 / spec.intervalMs)} events/s offered) for ${spec.durationMs / 1000} s, after ${n(spec.warmupRuns)} warm-up starts`
    case 'start': return `${n(spec.users)} connections each start one run of ${spec.events} events, all within ${spec.spreadMs} ms (${n(spec.users / spec.spreadMs)} per ms), after storms of ${n(spec.warmupRuns)} warm-up starts in all`
    case 'scale': return `${n(spec.connections)} authenticated connections from 127.0.0.2+, idle, then ${n(spec.warmupRuns)} warm-up starts, then each run paced at ${spec.intervalsMs.map((ms) => `1/${ms / 1000} s`).join(' and ')} for ${spec.phaseMs / 1000} s each`
    case 'replay': return `subscribe from seq 0 to a finished run of ${n(spec.events)} events (median of ${spec.replays} replays per round)`
  }
}

const start = (users: number, spreadMs: number, events: number, quick: boolean): WorkloadSpec => ({ kind: 'start', users, spreadMs, events, warmupRuns: warmupRuns(users, quick) })
const paced = (users: number, intervalMs: number, durationMs: number, warmupMs: number, content: 'thought' | 'token', quick: boolean): WorkloadSpec =>
  ({ kind: 'latency', users, intervalMs, durationMs, warmupRuns: warmupRuns(users, quick), warmupMs, bytes: content === 'token' ? 0 : 200, content })
/** A workload of the three servers on the memory store. */
const everyServer = (name: string, title: string, full: WorkloadSpec, quick: WorkloadSpec): Workload => ({ name, title, targets: ALL_TARGETS, redis: false, full, quick })
/** A workload on Redis and on a Redis Cluster, with the gateway on the memory store and raw ws alongside. */
const onRedis = (name: string, title: string, full: WorkloadSpec, quick: WorkloadSpec): Workload => ({
  name,
  title: `${title} on Redis and on a Redis Cluster, the gateway on the memory store and raw ws alongside for the ratios`,
  targets: ['gateway', 'redis-cluster', 'gateway-memory', 'raw-ws'],
  redis: true,
  full,
  quick,
  ratios: [['gateway', 'gateway-memory', 'redis/memory'], ['redis-cluster', 'gateway-memory', 'cluster/memory'], ['redis-cluster', 'gateway', 'cluster/redis']]
})

const WORKLOADS: readonly Workload[] = [
  everyServer('burst', '(a) interleaved runs', burst(100, 2000, false), burst(10, 200, true)),
  everyServer('many-users', '(b) many users, interleaved', burst(1000, 200, false), burst(50, 20, true)),
  everyServer('per-run-burst', '(a′) per-run burst — measures write coalescing, not the cost of an event', burst(100, 2000, false, 'burst'), burst(10, 200, true, 'burst')),
  everyServer('token-stream', '(f) token stream', paced(2000, 20, 6000, 1000, 'token', false), paced(50, 20, 600, 0, 'token', true)),
  everyServer('start-storm', '(g) run start under load', start(500, 50, 20, false), start(50, 50, 5, true)),
  // Short runs started faster than (g): what a run's start and end cost, with little else.
  everyServer('start-rate', '(g′) run starts at 10 per ms, short runs', start(4000, 400, 3, false), start(100, 10, 3, true)),
  everyServer('idle', '(c) idle memory', { kind: 'idle', connections: 5000, settleMs: 1000 }, { kind: 'idle', connections: 200, settleMs: 100 }),
  everyServer('latency', '(d) latency below saturation', paced(500, 50, 10_000, 1000, 'thought', false), paced(50, 50, 1000, 0, 'thought', true)),
  everyServer('replay', '(e) replay', { kind: 'replay', events: 10_000, bytes: 200, warmups: 2, replays: 5 }, { kind: 'replay', events: 1000, bytes: 200, warmups: 0, replays: 1 }),
  onRedis('burst-redis', '(a) interleaved', burst(100, 2000, false), burst(10, 200, true)),
  // Paced, each run's event is alone in its batch unless several runs emit in one tick: what a
  // Redis write costs when many runs stream slowly, as agents do.
  onRedis('latency-redis', '(d) paced', paced(500, 50, 10_000, 1000, 'thought', false), paced(50, 50, 1000, 0, 'thought', true))
]

/** `npm run bench:scale`: the connection-scaling runs, the gateway against raw ws at each size. */
// Idle memory is read first; then the start path is warmed, as in every workload that starts runs.
const scaleWorkload = (connections: number, phaseMs: number, quick: boolean): WorkloadSpec =>
  ({ kind: 'scale', connections, settleMs: 2000, intervalsMs: [...SCALE_INTERVALS_MS], phaseMs, warmupRuns: warmupRuns(connections, quick) })
function scaleWorkloads (sizes: readonly number[]): Workload[] {
  return sizes.map((size) => ({
    name: `scale-${size}`,
    title: `(s) ${n(size)} connections`,
    targets: ['gateway', 'raw-ws'],
    redis: false,
    full: scaleWorkload(size, 15_000, false),
    quick: scaleWorkload(size, 5_000, true)
  }))
}

// ---- Processes --------------------------------------------------------------------------------

const here = dirname(fileURLToPath(import.meta.url))

/**
 * Starts a Node script with an IPC channel, through bash so that the soft limit of open files
 * can be raised to the hard limit first (5,000 connections need ~5,000 descriptors per side).
 * With `cpus` (a taskset list such as "0" or "1-3"), the process and all its threads run on
 * those CPUs only.
 */
function spawnNode (script: string, execArgv: readonly string[], env: Record<string, string>, cpus?: string): ChildProcess {
  const pin = cpus === undefined ? [] : ['taskset', '-c', cpus]
  return spawn('bash', ['-c', 'ulimit -S -n "$(ulimit -H -n)" 2>/dev/null; exec "$@"', 'bench', ...pin, process.execPath, ...execArgv, isAbsolute(script) ? script : join(here, script)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env }
  })
}

/**
 * `--pin`: the server on the first CPU this process may use, the load generator on the others, so
 * that neither takes the other's time — the nearest one machine comes to a load generator on
 * another host. Redis is left where the scheduler puts it.
 */
interface Pinning {
  readonly server: string
  readonly load: string
}

function pinning (): Pinning {
  const own = allowedCpus(process.pid)
  if (own === undefined) throw new UsageError('--pin: the CPUs this process may use cannot be read (/proc/self/status)')
  const [server, ...load] = cpuList(own)
  if (server === undefined || load.length === 0) throw new UsageError(`--pin: needs at least 2 CPUs (this process may use ${own})`)
  try {
    execFileSync('taskset', ['-c', String(server), 'true'], { stdio: 'ignore' })
  } catch {
    throw new UsageError('--pin: taskset (util-linux) is not available or may not set a process\'s CPUs')
  }
  return { server: String(server), load: load.join(',') }
}

/** Resolves with the first message that `accept` turns into a value; rejects if the child exits first or time runs out. */
function firstMessage<T> (child: ChildProcess, accept: (message: unknown) => T | undefined, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { done(new Error(`${what}: no answer within ${timeoutMs} ms`)) }, timeoutMs)
    const onMessage = (message: unknown): void => {
      const value = accept(message)
      if (value !== undefined) done(undefined, value)
    }
    const onExit = (code: number | null): void => { done(new Error(`${what}: exited (${code}) before answering`)) }
    function done (err?: Error, value?: T): void {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      if (err === undefined) resolve(value as T)
      else reject(err)
    }
    child.on('message', onMessage)
    child.on('exit', onExit)
  })
}

/** Asks a server to stop (the load generator stops by itself), and kills it after `graceMs`. */
async function stopChild (child: ChildProcess, graceMs: number, ask: boolean): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  // A channel that closes meanwhile is fine: the process is on its way out.
  if (ask && child.connected) child.send({ type: 'stop' } satisfies ToServer, () => {})
  const timer = setTimeout(() => { child.kill('SIGKILL') }, graceMs)
  await exited
  clearTimeout(timer)
}

// ---- Rounds: a server target, the workloads it serves, a load generator for each ----------------

interface Options {
  readonly quick: boolean
  readonly rounds: number
  readonly only: readonly string[] | undefined
  readonly profileDir: string | undefined
  /** The server profiled with --profile (the gateway by default). */
  readonly profileTarget: TargetName
  readonly out: string | undefined
  readonly redisUrl: string
  /** The throwaway Redis Cluster of the `redis-cluster` target, once started. */
  readonly cluster?: RedisCluster
  /** `--scale`: the connection-scaling runs at these sizes instead of the workloads. */
  readonly scale: readonly number[] | undefined
  /** `--baseline`: the compiled bench of another build, whose gateway runs beside this one. */
  readonly baseline: string | undefined
  /** `--pin`: the CPUs of the server and of the load generator. */
  readonly pin: Pinning | undefined
}

export interface RoundResult {
  readonly workload: string
  readonly target: TargetName
  readonly round: number
  readonly ok: boolean
  readonly seconds: number
  /** The machine's 1-minute load average when the round ended (other processes compete for the CPU). */
  readonly loadAverage: number
  readonly counts?: Correctness
  readonly delivered?: number
  readonly metrics?: Readonly<Record<string, number>>
  readonly error?: string
  /** The CPUs the server and the load generator were allowed, read from the running processes. */
  readonly cpus?: { readonly server?: string, readonly load?: string }
}

const secret = randomBytes(32).toString('base64url')
const redisPrefixBase = `agw-bench-${process.pid}`

/**
 * The CPU time the redis-servers have used so far, in µs (INFO CPU: user + system, every thread),
 * summed over the servers given (one, or every node of a cluster).
 */
async function redisCpuUs (servers: readonly Redis[]): Promise<number> {
  const used = await Promise.all(servers.map(async (redis) => {
    const info = await redis.info('cpu')
    const field = (name: string): number => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)?.[1] ?? Number.NaN)
    return (field('used_cpu_user') + field('used_cpu_sys')) * 1e6
  }))
  return used.reduce((sum, us) => sum + us, 0)
}

/**
 * Runs one load generator against a started server and returns what it found. With `redis`, the
 * CPU of those redis-servers over the same window is added (the whole servers': on a shared Redis,
 * other clients' work counts too).
 */
async function drive (server: ChildProcess, port: number, target: Target, spec: WorkloadSpec, timeoutMs: number, redis: readonly Redis[] | undefined, cpus: string | undefined): Promise<LoadResult & { loadCpus?: string }> {
  const config: LoadConfig = { client: target.client, url: target.url(port), secret, workload: spec, timeoutMs }
  const load = spawnNode('load.js', [], { BENCH_LOAD: JSON.stringify(config) }, cpus)
  // Read once the load generator speaks: by then it is the Node process, not the shell before it.
  let loadCpus: string | undefined
  let redisFrom: number | undefined
  // Read when the window closes; awaited before the result is returned (it may come back after it).
  let redisUsed: Promise<number | undefined> = Promise.resolve(undefined)
  // The load generator's measurement requests go to the server; its replies come back.
  const forward = (message: LoadMessage): void => { if (server.connected) server.send(message, () => {}) }
  const toServer = (message: LoadMessage): void => {
    loadCpus ??= allowedCpus(load.pid)
    if (message.type !== 'request') return
    if (redis === undefined || (message.request !== 'measure-start' && message.request !== 'measure-stop')) {
      forward(message)
    } else if (message.request === 'measure-start') {
      void redisCpuUs(redis).then((us) => { redisFrom = us }, () => {}).finally(() => { forward(message) })
    } else {
      forward(message)
      redisUsed = redisCpuUs(redis).then((us) => (redisFrom === undefined ? undefined : us - redisFrom), () => undefined)
    }
  }
  const toLoad = (message: ServerMessage): void => { if (message.type === 'reply' && load.connected) load.send(message, () => {}) }
  load.on('message', toServer)
  server.on('message', toLoad)
  try {
    const result = await firstMessage(load, (m) => ((m as LoadMessage).type === 'result' ? (m as { result: LoadResult }).result : undefined), timeoutMs + 60_000, 'load generator')
    const used = await redisUsed
    if (redis !== undefined && used === undefined) process.stdout.write(`  ${target.name}: redis-server CPU not read\n`)
    if (used === undefined || result.delivered === 0) return { ...result, loadCpus }
    return { ...result, loadCpus, metrics: { ...result.metrics, redisCpuUsPerEvent: used / result.delivered } }
  } finally {
    server.off('message', toLoad)
    await stopChild(load, 5_000, false)
  }
}

/**
 * Starts one server target and runs `workloads` against it, one load generator each. The full
 * mode gives every round a fresh server; the quick mode, which only checks correctness, runs all
 * of a target's workloads on one server to keep start-ups (seconds for the gateway) few.
 */
async function session (options: Options, target: Target, redis: boolean, label: string, workloads: readonly Workload[], round: number): Promise<RoundResult[]> {
  const timeoutMs = options.scale !== undefined ? 900_000 : options.quick ? 30_000 : 180_000
  const redisPrefix = `${redisPrefixBase}-${label}:`
  const execArgv = ['--expose-gc', ...(options.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`])]
  const windowFile = options.profileDir === undefined ? undefined : join(options.profileDir, `${label}-${target.name}.window.json`)
  const script = target.name === 'baseline' ? join(options.baseline as string, 'bench', 'targets', `${target.script}.js`) : `targets/${target.script}.js`
  const server = spawnNode(script, execArgv, {
    BENCH_SECRET: secret,
    BENCH_STORE: storeOf(options, target, redis),
    BENCH_REDIS_PREFIX: redisPrefix,
    ...(windowFile === undefined ? {} : { BENCH_WINDOW_FILE: windowFile })
  }, options.pin?.server)
  const results: RoundResult[] = []
  // The gateway on Redis: redis-server's CPU is measured beside the gateway's (every node's on the cluster).
  const redisClients = !redis || target.script !== 'gateway' || target.store === 'memory'
    ? undefined
    : target.store === 'redis-cluster'
      ? await openAll((options.cluster?.ports ?? []).map((port) => `redis://127.0.0.1:${port}`))
      : await openAll([options.redisUrl])
  if (redis && target.script === 'gateway' && target.store !== 'memory' && redisClients === undefined) process.stdout.write(`  ${target.name}: no connection to read redis-server CPU\n`)
  try {
    const port = await firstMessage(server, (m) => ((m as ServerMessage).type === 'ready' ? (m as { port: number }).port : undefined), 30_000, `${target.name} server`)
      .catch((err: unknown) => err as Error)
    const serverCpus = allowedCpus(server.pid)
    for (const workload of workloads) {
      const started = performance.now()
      let outcome: (LoadResult & { loadCpus?: string }) | Error
      try {
        outcome = typeof port === 'number' ? await drive(server, port, target, options.quick ? workload.quick : workload.full, timeoutMs, redisClients, options.pin?.load) : port
      } catch (err) {
        outcome = err as Error
      }
      const base = { workload: workload.name, target: target.name, round, seconds: (performance.now() - started) / 1000, loadAverage: loadavg()[0] ?? 0 }
      let result: RoundResult
      if (outcome instanceof Error) {
        result = { ...base, ok: false, error: outcome.message }
      } else {
        const { loadCpus, ...measured } = outcome
        result = { ...base, ok: CORRECTNESS_KEYS.every((key) => measured.counts[key] === 0), ...measured, cpus: { server: serverCpus, load: loadCpus } }
      }
      results.push(result)
      const status = result.ok ? 'ok' : `FAILED ${result.error ?? JSON.stringify(result.counts)}`
      process.stdout.write(`  ${workload.name} round ${round} ${target.name}: ${status} (${result.seconds.toFixed(1)} s)\n`)
    }
  } finally {
    for (const client of redisClients ?? []) client.disconnect()
    await stopChild(server, 15_000, true)
    if (redis && target.store === 'redis-cluster') await flushCluster(options.cluster)
    else if (redis) await deleteKeys(options.redisUrl, redisPrefix)
    if (windowFile !== undefined) printProfile(options.profileDir as string, server.pid, windowFile)
  }
  return results
}

/** The profile a server wrote at exit (named after its pid), summarised over its measured window. */
function printProfile (dir: string, pid: number | undefined, windowFile: string): void {
  const file = readdirSync(dir).find((name) => name.endsWith(`.${pid}.0.001.cpuprofile`))
  if (file === undefined || !existsSync(windowFile)) {
    process.stdout.write(`  no CPU profile or measured window found for process ${pid}\n`)
    return
  }
  const window = JSON.parse(readFileSync(windowFile, 'utf8')) as ProfileWindow
  process.stdout.write(`\nCPU profile ${join(dir, file)}, measured window only (${((window.toUs - window.fromUs) / 1e6).toFixed(2)} s):\n`)
  process.stdout.write(`${formatSummary(summariseProfile(join(dir, file), 25, window))}\n\n`)
}

// ---- Redis ----------------------------------------------------------------------------------

async function openRedis (url: string): Promise<Redis | undefined> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2000, retryStrategy: () => null })
  redis.on('error', () => {})
  try {
    await redis.connect()
    return redis
  } catch {
    redis.disconnect()
    return undefined
  }
}

/** Connections to every server, or undefined when one does not answer (then no Redis CPU is reported). */
async function openAll (urls: readonly string[]): Promise<Redis[] | undefined> {
  const clients = await Promise.all(urls.map(openRedis))
  if (clients.every((client): client is Redis => client !== undefined)) return clients
  for (const client of clients) client?.disconnect()
  return undefined
}

/** The EVENT_STORE of a target's gateway within a workload. */
function storeOf (options: Options, target: Target, redis: boolean): string {
  if (!redis || target.store === 'memory') return 'memory'
  if (target.store === 'redis-cluster') {
    if (options.cluster === undefined) throw new Error('the redis-cluster target runs without a cluster')
    return options.cluster.url
  }
  return options.redisUrl
}

/** The cluster is the bench's own: after each session every primary forgets everything. */
async function flushCluster (cluster: RedisCluster | undefined): Promise<void> {
  if (cluster === undefined) return
  try {
    await Promise.all((await cluster.primaries()).map(async (port) => cluster.info(port, 'FLUSHALL')))
  } catch (err) {
    process.stderr.write(`bench: could not flush the Redis Cluster: ${(err as Error).message}\n`)
  }
}

async function redisAnswers (url: string): Promise<boolean> {
  try {
    return await withRedis(url, async (redis) => (await redis.ping()) === 'PONG')
  } catch {
    return false
  }
}

async function deleteKeys (url: string, prefix: string): Promise<void> {
  await withRedis(url, async (redis) => { await deleteKeysWithPrefix(redis, prefix) }).catch((err: unknown) => { process.stderr.write(`bench: could not delete the Redis keys ${prefix}*: ${(err as Error).message}\n`) })
}

// ---- Summary --------------------------------------------------------------------------------

export interface Stat {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
}

type Summary = Record<string, Partial<Record<TargetName, Record<string, Stat>>>>

function summarise (workloads: readonly Workload[], results: readonly RoundResult[]): Summary {
  const summary: Summary = {}
  for (const workload of workloads) {
    const byTarget: Partial<Record<TargetName, Record<string, Stat>>> = {}
    for (const target of workload.targets) {
      const rounds = results.filter((r) => r.workload === workload.name && r.target === target && r.ok && r.metrics !== undefined)
      const stats: Record<string, Stat> = {}
      for (const metric of METRICS[workload.full.kind]) {
        const values = rounds.map((r) => r.metrics?.[metric.key]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v))
        if (values.length > 0) stats[metric.key] = { ...spread(values), n: values.length }
      }
      byTarget[target] = stats
    }
    summary[workload.name] = byTarget
  }
  return summary
}

export interface TargetCheck {
  readonly goal: string
  readonly workload: string
  readonly value: number
  readonly limit: number
  readonly met: boolean
}

/** The performance targets of the gateway (issue 17), evaluated on the medians of the same run. */
function checkTargets (summary: Summary): TargetCheck[] {
  const checks: TargetCheck[] = []
  const stat = (workload: string, target: TargetName, key: string): number | undefined => summary[workload]?.[target]?.[key]?.median
  const check = (goal: string, workload: string, value: number | undefined, limit: number | undefined, atLeast: boolean): void => {
    if (value === undefined || limit === undefined) return
    checks.push({ goal, workload, value, limit, met: atLeast ? value >= limit : value <= limit })
  }
  const ratio = (goal: string, workload: string, key: string, other: TargetName, bound: number, atLeast: boolean): void => {
    const gateway = stat(workload, 'gateway', key)
    const base = stat(workload, other, key)
    if (gateway === undefined || base === undefined) return
    check(goal, workload, gateway / base, bound, atLeast)
  }
  for (const workload of ['burst', 'many-users']) {
    ratio('server CPU per event ≤ 1.2 × raw ws', workload, 'cpuUsPerEvent', 'raw-ws', 1.2, false)
    ratio('delivered events/s ≥ 1.25 × Socket.IO', workload, 'eventsPerSec', 'socketio', 1.25, true)
  }
  for (const workload of ['latency', 'token-stream']) {
    ratio('server CPU per event ≤ 1.2 × raw ws', workload, 'cpuUsPerEvent', 'raw-ws', 1.2, false)
    const raw = stat(workload, 'raw-ws', 'p99Ms')
    check('p99 ms ≤ raw ws p99 + 1 ms', workload, stat(workload, 'gateway', 'p99Ms'), raw === undefined ? undefined : raw + 1, false)
  }
  check('run_accepted p50 ms ≤ 2', 'start-storm', stat('start-storm', 'gateway', 'acceptedP50Ms'), 2, false)
  check('agent_started p99 ms ≤ 10', 'start-storm', stat('start-storm', 'gateway', 'startedP99Ms'), 10, false)
  const frame = stat('replay', 'gateway', 'frameBytes')
  check('memory store: retained heap B/event ≤ 2 × frame size', 'replay', stat('replay', 'gateway', 'retainedPerEvent'), frame === undefined ? undefined : 2 * frame, false)
  ratio('on Redis, delivered events/s ≥ 0.6 × the memory store', 'burst-redis', 'eventsPerSec', 'gateway-memory', 0.6, true)
  ratio('RSS per idle connection ≤ 1.1 × raw ws', 'idle', 'rssPerConnection', 'raw-ws', 1.1, false)
  for (const workload of Object.keys(summary).filter((name) => name.startsWith('scale-'))) {
    ratio('RSS per idle connection ≤ 1.1 × raw ws', workload, 'rssPerConnection', 'raw-ws', 1.1, false)
    for (const ms of SCALE_INTERVALS_MS) {
      const tag = `${ms / 1000}s`
      ratio(`1/${tag}: CPU per event ≤ 1.2 × raw ws`, workload, `cpuUsPerEvent@${tag}`, 'raw-ws', 1.2, false)
      ratio(`1/${tag}: p99 ≤ 2 × raw ws p99`, workload, `p99Ms@${tag}`, 'raw-ws', 2, false)
      check(`1/${tag}: the offered events delivered in full`, workload, stat(workload, 'gateway', `deliveredShare@${tag}`), 1, true)
    }
  }
  check('replay of 10,000 events ms < 200 (memory store)', 'replay', stat('replay', 'gateway', 'replayMs'), 200, false)
  return checks
}

/** The figures compared round by round against a baseline build, where a workload reports them. */
const PAIRED_KEYS = ['cpuUsPerEvent', 'cpuUsPerRun', 'gcPauseUsPerEvent', 'scavengeKeptBPerRun', 'eventsPerSec', 'p50Ms', 'p99Ms', 'acceptedP50Ms', 'rssPerConnection', 'heapPerConnection', 'connectedRssMiB', 'replayMs', 'retainedPerEvent']

type Paired = Record<string, Record<string, PairedRatio>>

/** `--baseline`: each workload's gateway/baseline ratios, round by round (see pairedRatio). */
function pairedWithBaseline (workloads: readonly Workload[], results: readonly RoundResult[]): Paired {
  const paired: Paired = {}
  const figures = (workload: string, target: TargetName, key: string): Map<number, number> => new Map(
    results.filter((r) => r.workload === workload && r.target === target && r.ok && r.metrics?.[key] !== undefined)
      .map((r) => [r.round, r.metrics?.[key] as number])
  )
  for (const workload of workloads.filter((w) => w.targets.includes('gateway') && w.targets.includes('baseline'))) {
    const byKey: Record<string, PairedRatio> = {}
    for (const metric of METRICS[workload.full.kind].filter((m) => PAIRED_KEYS.includes(m.key))) {
      const ratio = pairedRatio(figures(workload.name, 'gateway', metric.key), figures(workload.name, 'baseline', metric.key))
      if (ratio !== undefined) byKey[metric.key] = ratio
    }
    paired[workload.name] = byKey
  }
  return paired
}

function pairedReport (workloads: readonly Workload[], paired: Paired): string {
  const lines = ['gateway/baseline, round by round (the median ratio, its range over the rounds both ran):']
  for (const workload of workloads) {
    for (const metric of METRICS[workload.full.kind]) {
      const ratio = paired[workload.name]?.[metric.key]
      if (ratio === undefined) continue
      const range = ratio.n === 1 ? '' : ` (${ratio.min.toFixed(2)}–${ratio.max.toFixed(2)} over ${ratio.n} rounds)`
      lines.push(`  ${workload.name.padEnd(14)} ${metric.label.padEnd(24)} ${ratio.median.toFixed(2)}×${range}: ${ratio.verdict}`)
    }
  }
  return lines.join('\n')
}

const LABELS: Readonly<Record<TargetName, string>> = { gateway: 'gateway', baseline: 'gateway (baseline)', 'gateway-memory': 'gateway (memory)', 'redis-cluster': 'gateway (Redis Cluster)', 'raw-ws': 'raw ws', socketio: 'Socket.IO' }

function table (workloads: readonly Workload[], summary: Summary, results: readonly RoundResult[], quick: boolean): string {
  const lines: string[] = []
  const cell = (stat: Stat | undefined, format: (v: number) => string): string =>
    stat === undefined ? '—' : stat.n === 1 ? format(stat.median) : `${format(stat.median)} (${format(stat.min)}–${format(stat.max)})`
  for (const workload of workloads) {
    const failed = results.filter((r) => r.workload === workload.name && !r.ok).length
    lines.push('', `${workload.title}: ${describe(quick ? workload.quick : workload.full)}${failed > 0 ? `  [${failed} FAILED round(s)]` : ''}`)
    const others = workload.targets.filter((t) => t !== 'raw-ws')
    const extra = (workload.ratios ?? []).filter(([a, b]) => workload.targets.includes(a) && workload.targets.includes(b))
    const header = ['metric'.padEnd(24), ...workload.targets.map((t) => LABELS[t].padEnd(30)), ...others.map((t) => `${LABELS[t]}/raw`.padEnd(14)), ...extra.map(([, , name]) => name.padEnd(14))]
    lines.push(`  ${header.join(' ').trimEnd()}`)
    for (const metric of METRICS[workload.full.kind]) {
      const stats = summary[workload.name] ?? {}
      const ratio = (of: TargetName, to: TargetName): string => {
        const value = stats[of]?.[metric.key]?.median
        const base = stats[to]?.[metric.key]?.median
        return (value === undefined || base === undefined || base === 0 ? '—' : `${(value / base).toFixed(2)}×`).padEnd(14)
      }
      const ratios = [...others.map((t) => ratio(t, 'raw-ws')), ...extra.map(([a, b]) => ratio(a, b))]
      const row = [metric.label.padEnd(24), ...workload.targets.map((t) => cell(stats[t]?.[metric.key], metric.format).padEnd(30)), ...ratios]
      lines.push(`  ${row.join(' ').trimEnd()}`)
    }
  }
  return lines.join('\n')
}

function correctnessReport (results: readonly RoundResult[]): string {
  const failed = results.filter((r) => !r.ok)
  if (failed.length === 0) return `correctness: ${results.length} rounds, every one with 0 lost, duplicated, out-of-order and misdelivered events`
  return [`correctness: ${failed.length} of ${results.length} rounds FAILED`, ...failed.map((r) => {
    const counts = r.counts === undefined ? '' : CORRECTNESS_KEYS.filter((k) => r.counts?.[k] !== 0).map((k) => `${k} ${r.counts?.[k]}`).join(', ')
    return `  ${r.workload} / ${r.target} / round ${r.round}: ${r.error ?? counts}`
  })].join('\n')
}

/** Which source was measured: other work may be in progress in the same tree. */
function source (dir = process.cwd()): Record<string, unknown> {
  const git = (...args: string[]): string => {
    try {
      return execFileSync('git', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    } catch {
      return ''
    }
  }
  const changed = git('status', '--porcelain', '--', ':/src')
  return { commit: git('rev-parse', 'HEAD'), uncommittedSrcFiles: changed === '' ? 0 : changed.split('\n').length }
}

function machine (): Record<string, unknown> {
  return {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30 * 10) / 10,
    node: process.version,
    // Flags such as --max-semi-space-size change the figures; every server inherits them.
    ...(process.env.NODE_OPTIONS === undefined || process.env.NODE_OPTIONS === '' ? {} : { nodeOptions: process.env.NODE_OPTIONS }),
    kernel: release()
  }
}

// ---- Main -----------------------------------------------------------------------------------

const USAGE = `usage: npm run bench -- [options]
  --quick                   every workload at a tiny size, one round (what the tests run)
  --rounds N                rounds per workload (default 5; 1 with --quick, --profile or --scale)
  --only a,b                these workloads only: ${WORKLOADS.map((w) => w.name).join(', ')}
  --profile                 a CPU profile of one target (default workload: burst), summarised
  --profile-target NAME     the target profiled: ${Object.keys(TARGETS).join(', ')} (default gateway)
  --out FILE                where the results go (default bench/results/<date>.json for a full run)
  --redis URL               the Redis of the Redis workloads (default redis://127.0.0.1:6379/0)
  --scale [--sizes a,b]     the connection-scaling runs instead (npm run bench:scale)
  --baseline DIR            also run the gateway of another build, DIR being its compiled bench
                            (its dist-dev), in the same rounds: a change against what it changes,
                            with the two builds' ratio round by round
  --pin                     the server on CPU 0, the load generator on the others (taskset)
  --help                    this text`

function parseOptions (argv: readonly string[]): Options | 'help' {
  let values
  try {
    values = parseArgs({
      args: [...argv],
      options: {
        help: { type: 'boolean', default: false },
        quick: { type: 'boolean', default: false },
        rounds: { type: 'string' },
        only: { type: 'string' },
        profile: { type: 'boolean', default: false },
        'profile-target': { type: 'string', default: 'gateway' },
        out: { type: 'string' },
        redis: { type: 'string', default: 'redis://127.0.0.1:6379/0' },
        scale: { type: 'boolean', default: false },
        sizes: { type: 'string' },
        baseline: { type: 'string' },
        pin: { type: 'boolean', default: false }
      }
    }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (values.help) return 'help'
  const scale = values.scale ? (values.sizes?.split(',').map((size) => positiveInteger('--sizes', size.trim())) ?? (values.quick ? [200, 1000] : [...SCALE_SIZES])) : undefined
  const only = values.only?.split(',').map((name) => name.trim())
  const known = (scale === undefined ? WORKLOADS : scaleWorkloads(scale)).map((w) => w.name)
  const unknown = only?.filter((name) => !known.includes(name)) ?? []
  if (unknown.length > 0) throw new UsageError(`--only: no workload named ${unknown.join(', ')} (one of ${known.join(', ')})`)
  if (!Object.hasOwn(TARGETS, values['profile-target'])) throw new UsageError(`--profile-target: unknown target ${values['profile-target']} (one of ${Object.keys(TARGETS).join(', ')})`)
  const baseline = values.baseline === undefined ? undefined : resolve(values.baseline)
  if (baseline !== undefined && !existsSync(join(baseline, 'bench', 'targets', 'gateway.js'))) {
    throw new UsageError(`--baseline: no bench/targets/gateway.js in ${values.baseline} (the dist-dev of a checkout built with npx tsc -p tsconfig.scripts.json)`)
  }
  if (baseline === undefined && values['profile-target'] === 'baseline') throw new UsageError('--profile-target baseline: needs --baseline DIR')
  const date = new Date().toISOString().slice(0, 10)
  // Profiles stay out of the repository, next to the compiled bench.
  const profileDir = values.profile ? join(process.cwd(), 'dist-dev', 'profiles') : undefined
  return {
    quick: values.quick,
    rounds: values.rounds === undefined ? (values.quick || values.profile || values.scale ? 1 : 5) : positiveInteger('--rounds', values.rounds),
    // Profiling defaults to workload (a); --only picks others.
    only: only ?? (values.profile ? ['burst'] : undefined),
    profileDir,
    profileTarget: values['profile-target'] as TargetName,
    // Quick and profiling runs leave the committed results alone unless told where to write.
    // Only a complete run is written by default: a partial one must not replace the day's results.
    out: values.out ?? (values.quick || values.profile || only !== undefined ? undefined : join(process.cwd(), 'bench', 'results', `${scale === undefined ? '' : 'scale-'}${date}.json`)),
    redisUrl: values.redis,
    scale,
    baseline,
    pin: values.pin ? pinning() : undefined
  }
}

/** A workload with the baseline gateway right after this one wherever this one runs, and their ratio. */
function withBaseline (workload: Workload): Workload {
  const at = workload.targets.indexOf('gateway')
  if (at < 0) return workload
  return {
    ...workload,
    targets: [...workload.targets.slice(0, at + 1), 'baseline', ...workload.targets.slice(at + 1)],
    ratios: [...(workload.ratios ?? []), ['gateway', 'baseline', 'gateway/baseline']]
  }
}

export async function runBench (argv: readonly string[]): Promise<boolean> {
  const options = parseOptions(argv)
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return true
  }
  const began = performance.now()
  // What is measured is what was compiled when the run began, not what HEAD is when it ends.
  const measuredSource = source()
  let workloads = (options.scale === undefined ? WORKLOADS : scaleWorkloads(options.scale)).filter((w) => options.only === undefined || options.only.includes(w.name))
  if (options.baseline !== undefined) workloads = workloads.map(withBaseline)
  if (options.profileDir !== undefined) {
    workloads = workloads.map((w) => ({ ...w, targets: [options.profileTarget] }))
    mkdirSync(options.profileDir, { recursive: true })
  }
  const skipped: string[] = []
  if (workloads.some((w) => w.redis) && !(await redisAnswers(options.redisUrl))) {
    process.stdout.write(`NOTICE: Redis does not answer at ${options.redisUrl}; skipping the Redis workload\n`)
    skipped.push(...workloads.filter((w) => w.redis).map((w) => w.name))
    workloads = workloads.filter((w) => !w.redis)
  }
  // The redis-cluster target: a cluster of the bench's own, for the whole run, stopped at its end.
  // Interrupted (Ctrl-C), even while it starts, the cluster is stopped and its directories deleted.
  // A start under way is let finish first: stopping halfway would miss the nodes it has yet to spawn.
  let cluster: RedisCluster | undefined
  let starting: Promise<void> | undefined
  const interrupted = (): void => {
    void (async () => {
      await starting?.catch(() => {})
      await cluster?.stop().catch(() => {})
    })().finally(() => process.exit(130))
  }
  const needsCluster = workloads.some((w) => w.targets.includes('redis-cluster'))
  if (needsCluster) {
    process.once('SIGINT', interrupted)
    process.once('SIGTERM', interrupted)
  }
  try {
    if (needsCluster) {
      try {
        cluster = new RedisCluster()
        starting = cluster.start()
        await starting
      } catch (err) {
        await cluster?.stop().catch(() => {})
        cluster = undefined
        process.stdout.write(`NOTICE: no Redis Cluster could be started (${(err as Error).message}); skipping the redis-cluster target\n`)
        skipped.push(...workloads.filter((w) => w.targets.includes('redis-cluster')).map((w) => `${w.name}/redis-cluster`))
        workloads = workloads.map((w) => ({ ...w, targets: w.targets.filter((t) => t !== 'redis-cluster') }))
      }
    }
    return await measure({ ...options, ...(cluster === undefined ? {} : { cluster }) }, workloads, skipped, measuredSource, began)
  } finally {
    process.off('SIGINT', interrupted)
    process.off('SIGTERM', interrupted)
    await cluster?.stop()
  }
}

async function measure (options: Options, workloads: readonly Workload[], skipped: readonly string[], measuredSource: Record<string, unknown>, began: number): Promise<boolean> {
  // Every server runs on this process's Node: its version changes the figures (docs/performance.md).
  process.stdout.write(`bench: ${options.quick ? 'quick' : 'full'} mode, ${options.rounds} round(s), Node.js ${process.versions.node}${options.pin === undefined ? '' : ', pinned'}, workloads ${workloads.map((w) => w.name).join(', ')}${options.cluster === undefined ? '' : `, Redis Cluster ${options.cluster.url}`}\n`)
  const results: RoundResult[] = []
  if (options.quick && options.scale === undefined) {
    for (const redis of [false, true]) {
      for (const name of Object.keys(TARGETS) as TargetName[]) {
        const served = workloads.filter((w) => w.redis === redis && w.targets.includes(name))
        if (served.length > 0) results.push(...await session(options, TARGETS[name], redis, `quick${redis ? '-redis' : ''}`, served, 1))
      }
    }
  } else {
    for (const workload of workloads) {
      for (let round = 1; round <= options.rounds; round++) {
        // The order of the targets rotates from round to round: no target always runs first.
        const order = workload.targets.map((_, i) => workload.targets[(i + round - 1) % workload.targets.length] as TargetName)
        for (const name of order) results.push(...await session(options, TARGETS[name], workload.redis, `${workload.name}-${round}`, [workload], round))
      }
    }
  }
  const summary = summarise(workloads, results)
  const checks = options.quick ? [] : checkTargets(summary)
  const paired = options.baseline === undefined ? undefined : pairedWithBaseline(workloads, results)
  process.stdout.write(`${table(workloads, summary, results, options.quick)}\n\n${correctnessReport(results)}\n`)
  if (paired !== undefined) process.stdout.write(`\n${pairedReport(workloads, paired)}\n`)
  if (checks.length > 0) {
    process.stdout.write('\ntargets (gateway, on the medians):\n')
    for (const check of checks) {
      process.stdout.write(`  ${check.met ? 'met    ' : 'MISSED '} ${check.workload.padEnd(12)} ${check.goal}: ${check.value.toFixed(2)} (limit ${check.limit.toFixed(2)})\n`)
    }
  }
  const seconds = (performance.now() - began) / 1000
  process.stdout.write(`\nbench finished in ${seconds.toFixed(0)} s\n`)
  if (options.out !== undefined) {
    mkdirSync(dirname(options.out), { recursive: true })
    const report = {
      date: new Date().toISOString(),
      mode: options.quick ? 'quick' : 'full',
      rounds: options.rounds,
      machine: machine(),
      ...(options.pin === undefined ? {} : { pinned: options.pin }),
      source: measuredSource,
      // The baseline by its commit: where its build lies on this machine says nothing to a reader.
      ...(options.baseline === undefined ? {} : { baseline: source(options.baseline) }),
      workloads: Object.fromEntries(workloads.map((w) => [w.name, { title: `${w.title}: ${describe(options.quick ? w.quick : w.full)}`, targets: w.targets, store: w.redis ? 'redis' : 'memory', spec: options.quick ? w.quick : w.full }])),
      skipped,
      summary,
      ...(paired === undefined ? {} : { paired }),
      targets: checks,
      results,
      seconds
    }
    writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`)
    process.stdout.write(`results written to ${options.out}\n`)
    if (options.scale !== undefined && !options.quick) {
      const svg = join(process.cwd(), 'docs', 'connection-scaling.svg')
      writeFileSync(svg, scalingSvg(summary, `x: connections · medians · ${report.date.slice(0, 10)}${options.pin === undefined ? '' : ' · server and load generator on one CPU each'}`))
      process.stdout.write(`chart written to ${svg}\n`)
    }
  }
  return results.every((r) => r.ok)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = (await runBench(process.argv.slice(2))) ? 0 : 1
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`bench: ${err.message}\n${USAGE}\n`)
    process.exitCode = 2
  }
}

