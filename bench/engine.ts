// npm run bench:engine: what a run costs the gateway itself, without sockets. The app is built as
// src/server.ts builds it (production config, the real logger at silent, the memory store), and
// runs are started through `fastify.runEngine` in waves of 500, each run emitting `--events`
// thoughts; the process's CPU time per run is reported, round by round. With no load generator
// and no kernel in the way, this is the quietest instrument the project has for a run's start and
// end and an event's path through engine, emitter and log — the socket benchmark (npm run bench)
// says what users get, this says where the gateway's own share went.
//   npm run bench:engine -- [--events 3] [--runs 20000] [--rounds 10] [--fresh] [--alloc]
//                           [--survivors] [--quick] [--spread] [--redis URL]
// --spread gives each thought a turn of the event loop of its own, as a paced agent's are (on
// Redis each is then a batch of its own); --redis runs on a Redis store instead of the memory
// store (its keys, under a prefix of their own, are deleted at the end). Every run is checked:
// it must end `completed` with exactly its events in the log. With --alloc, one more round runs
// under V8's sampling heap profiler, collected objects included: the bytes a run allocates, and
// where — a figure that, unlike CPU time, does not move with the host's load. With --survivors,
// that round counts only what no scavenge collected, and where it was allocated: the bytes per
// run that scavenges kept until they moved them to the old generation, or that V8 allocated there
// directly (it does so for a place whose objects tend to survive) — the old generation's share of
// a run, which only full collections free.
import { randomBytes } from 'node:crypto'
import { Session } from 'node:inspector/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import type { Agent, StartedRun } from '../src/index.js'
import { createUserContext } from '../src/plugins/user-context.js'
import { deleteKeysWithPrefix, withRedis } from '../scripts/redis-keys.js'
import { benchApp } from './shared/app.js'
import { UsageError, parseOptions, positiveInteger, runCommand } from './shared/cli.js'
import { spread } from './shared/stats.js'
import { GcPauseCounter } from './shared/gc-pauses.js'

const WAVE = 500
/** Rounds run first and not reported: the code is compiled and the store filled meanwhile. */
const WARMUP_ROUNDS = 2

export interface EngineBenchOptions {
  /** Thoughts each run emits between agent_started and agent_completed. */
  readonly events: number
  /** Runs per round. */
  readonly runs: number
  readonly rounds: number
  /**
   * false: the store is held at a byte bound (two waves' worth of frames, at least 4 MiB), so
   * that runs are evicted and tombstones pile up to their bound as on a server that has been up
   * for a while; true: a store that only grows.
   */
  readonly fresh: boolean
  /** One more round under the sampling heap profiler. */
  readonly alloc?: boolean
  /** That round counts only the bytes no scavenge collected. */
  readonly survivors?: boolean
  /** Each thought in a turn of the event loop of its own, as a paced agent's. */
  readonly spread?: boolean
  /** A Redis URL: the Redis store instead of the memory store (`fresh` does not apply). */
  readonly redis?: string
}

/**
 * Where a run's allocations go: bytes per run, by the innermost function of src/ on the stack; with
 * the `survivors` option, only the bytes no scavenge collected.
 */
export interface AllocationProfile {
  readonly bytesPerRun: number
  readonly top: ReadonlyArray<{ readonly where: string, readonly bytesPerRun: number }>
  /** Survivors only: rounds profiled again because a full collection ran in them. */
  readonly rerun?: number
  /** Survivors only: full collections in the round reported (0 unless every attempt had one). */
  readonly fullCollections?: number
}

export interface EngineBenchResult {
  readonly options: EngineBenchOptions
  /** CPU time (user + system) per run, one value per reported round. */
  readonly cpuUsPerRun: readonly number[]
  readonly median: number
  readonly min: number
  readonly max: number
  /** Runs checked (status and event count): every run of every round. */
  readonly checked: number
  readonly allocation?: AllocationProfile
}

/** The store's bound when not fresh: room for the last wave, to check it, and the one before. */
function boundBytes (events: number): number {
  // A frame of this bench is under 256 bytes.
  return Math.max(4 * 1024 * 1024, 2 * WAVE * (events + 2) * 256)
}

export async function engineBench (options: EngineBenchOptions): Promise<EngineBenchResult> {
  const thought = 'a thought of about forty bytes, give or take'
  const agent: Agent = async ({ think }) => {
    for (let i = 0; i < options.events; i++) {
      if (options.spread === true) await new Promise((resolve) => setImmediate(resolve))
      think(thought)
    }
    return { events: options.events }
  }
  const redisPrefix = `agw-bench-engine-${randomBytes(4).toString('hex')}:`
  // The store would wait for a Redis that is not there (as a server rides out an outage): asked first, once.
  if (options.redis !== undefined) {
    const url = options.redis
    await withRedis(url, async (redis) => await redis.ping()).catch(() => { throw new Error(`--redis: no Redis answers at ${url}`) })
  }
  const app = await benchApp(agent, options.redis !== undefined
    ? { EVENT_STORE: options.redis, REDIS_KEY_PREFIX: redisPrefix }
    : options.fresh ? {} : { MEMORY_STORE_MAX_BYTES: String(boundBytes(options.events)) })
  const users = Array.from({ length: 1000 }, (_, i) => createUserContext({ sub: `user-${i}`, scopes: [] }, `request-${i}`))
  const cpuUsPerRun: number[] = []
  let checked = 0
  /** One round: the CPU time per run, the checks' own taken out. */
  const round = async (): Promise<number> => {
    const before = process.cpuUsage()
    let checking = 0
    for (let started = 0; started < options.runs; started += WAVE) {
      const wave: StartedRun[] = []
      for (let i = 0; i < Math.min(WAVE, options.runs - started); i++) {
        wave.push(await app.runEngine.start(users[(started + i) % users.length] as (typeof users)[number], { input: { message: 'go' } }))
      }
      while (app.runEngine.activeRuns() > 0) await new Promise((resolve) => setImmediate(resolve))
      const checkStart = process.cpuUsage()
      for (const run of wave) {
        const lookup = await app.eventStore.getRun(run.runId)
        if (lookup.state !== 'found' || lookup.meta.status !== 'completed' || lookup.meta.lastSeq !== options.events + 2) {
          throw new Error(`run ${run.runId} ended wrong: ${JSON.stringify(lookup)}`)
        }
      }
      const used = process.cpuUsage(checkStart)
      checking += used.user + used.system
      checked += wave.length
    }
    const used = process.cpuUsage(before)
    return (used.user + used.system - checking) / options.runs
  }
  let allocation: AllocationProfile | undefined
  try {
    for (let i = 0; i < WARMUP_ROUNDS + options.rounds; i++) {
      const us = await round()
      if (i >= WARMUP_ROUNDS) cpuUsPerRun.push(us)
    }
    if (options.alloc === true || options.survivors === true) allocation = await allocationOf(round, options.runs, options.survivors === true)
  } finally {
    await app.close()
    if (options.redis !== undefined) await withRedis(options.redis, async (redis) => { await deleteKeysWithPrefix(redis, redisPrefix) })
  }
  return { options, cpuUsPerRun, ...spread(cpuUsPerRun), checked, ...(allocation === undefined ? {} : { allocation }) }
}

/** Bytes between samples: small enough for a run's few kilobytes to be sampled many times. */
const SAMPLING_BYTES = 128
/** Rounds the survivors' profile may take: one with a full collection in it is profiled again. */
const SURVIVOR_ATTEMPTS = 5

interface SampleNode {
  readonly callFrame: { readonly functionName: string, readonly url: string, readonly lineNumber: number }
  readonly selfSize: number
  readonly children: readonly SampleNode[]
}

/**
 * Runs one round under the sampling heap profiler, objects the GC collected meanwhile included —
 * all of them, or (`survivors`) only those no scavenge collected: the young generation's own
 * garbage is left out, the round's last included (a scavenge is made before the profile is read).
 * A full collection collects the young generation too, and the profile keeps what it collected:
 * a round with one in it would count young garbage as surviving, so it is profiled again.
 */
export async function allocationOf (round: () => Promise<number>, runs: number, survivors: boolean): Promise<AllocationProfile> {
  const session = new Session()
  session.connect()
  const pauses = survivors ? new GcPauseCounter() : undefined
  try {
    await session.post('HeapProfiler.enable')
    for (let attempt = 1; ; attempt++) {
      await session.post('HeapProfiler.startSampling', { samplingInterval: SAMPLING_BYTES, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !survivors })
      pauses?.start()
      await round()
      if (survivors) scavenge()
      // Counted up to the scavenge, which settles what the round's young objects were (a
      // collection's entry reaches the counter in the check phase after it): the profiler
      // itself collects the whole heap as it starts and stops sampling.
      if (survivors) await nextTurn()
      const fullCollections = pauses?.stop().fullCollections ?? 0
      const { profile } = await session.post('HeapProfiler.stopSampling') as unknown as { profile: { head: SampleNode } }
      if (fullCollections > 0 && attempt < SURVIVOR_ATTEMPTS) continue
      return { ...placesOf(profile.head, runs), ...(survivors ? { rerun: attempt - 1, fullCollections } : {}) }
    }
  } finally {
    pauses?.close()
    session.disconnect()
  }
}

/** A sampled profile's bytes per run, in all and by the innermost function of src/. */
function placesOf (head: SampleNode, runs: number): AllocationProfile {
  const byPlace = new Map<string, number>()
  let total = 0
  const walk = (node: SampleNode, place: string): void => {
    const { functionName, url, lineNumber } = node.callFrame
    const src = url.lastIndexOf('/src/')
    const here = src < 0 ? place : `${functionName === '' ? '(anonymous)' : functionName} ${url.slice(src + 1)}:${lineNumber + 1}`
    if (node.selfSize > 0) {
      total += node.selfSize
      byPlace.set(here, (byPlace.get(here) ?? 0) + node.selfSize)
    }
    for (const child of node.children) walk(child, here)
  }
  walk(head, '(outside src/)')
  const top = [...byPlace].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([where, bytes]) => ({ where, bytesPerRun: bytes / runs }))
  return { bytesPerRun: total / runs, top }
}

/** A scavenge now: V8's `gc`, exposed for this process only when first asked for. */
function scavenge (): void {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as (options: { type: 'minor', execution: 'sync' }) => void
  gc({ type: 'minor', execution: 'sync' })
}

const USAGE = 'usage: npm run bench:engine -- [--events 3] [--runs 20000] [--rounds 10] [--fresh] [--alloc] [--survivors] [--quick] [--spread] [--redis URL]'

function engineOptions (argv: readonly string[]): EngineBenchOptions {
  const values = parseOptions(argv, {
    events: { type: 'string' },
    runs: { type: 'string' },
    rounds: { type: 'string' },
    fresh: { type: 'boolean', default: false },
    alloc: { type: 'boolean', default: false },
    survivors: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    spread: { type: 'boolean', default: false },
    redis: { type: 'string' }
  })
  if (values.redis !== undefined && !/^rediss?:\/\//.test(values.redis)) {
    throw new UsageError(`--redis: expected a redis:// or rediss:// URL, got "${values.redis}"`)
  }
  if (values.redis !== undefined && values.fresh) throw new UsageError('--fresh: the memory store\'s option; it does not apply with --redis')
  if (values.alloc && values.survivors) throw new UsageError('--alloc, --survivors: the profiled round counts one or the other; give one')
  return {
    events: values.events === undefined ? 3 : positiveInteger('--events', values.events),
    runs: values.runs === undefined ? (values.quick ? 1000 : 20_000) : positiveInteger('--runs', values.runs),
    rounds: values.rounds === undefined ? (values.quick ? 1 : 10) : positiveInteger('--rounds', values.rounds),
    fresh: values.fresh,
    alloc: values.alloc,
    survivors: values.survivors,
    spread: values.spread,
    ...(values.redis === undefined ? {} : { redis: values.redis })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await runCommand('bench:engine', USAGE, engineOptions, async (options) => {
    const began = performance.now()
    const result = await engineBench(options)
    const store = options.redis !== undefined
      ? 'the Redis store'
      : options.fresh ? 'a store that only grows' : `the store at a ${(boundBytes(options.events) / 1024 / 1024).toFixed(0)} MiB bound`
    const spread = options.spread === true ? ', each in a turn of its own' : ''
    process.stdout.write(`engine: ${options.rounds} rounds of ${options.runs} runs of ${options.events} thoughts (${options.events + 2} events)${spread}, ${store}\n`)
    process.stdout.write(`  CPU per run: ${result.median.toFixed(1)} µs median (${result.min.toFixed(1)}–${result.max.toFixed(1)}); rounds: ${result.cpuUsPerRun.map((us) => us.toFixed(1)).join(' ')}\n`)
    const { allocation } = result
    if (allocation !== undefined) {
      const what = options.survivors === true ? 'heap per run no scavenge collected' : 'heap allocated per run'
      const rerun = allocation.rerun === undefined || allocation.rerun === 0 ? '' : `, after ${allocation.rerun} with a full collection in it`
      const full = allocation.fullCollections === undefined || allocation.fullCollections === 0 ? '' : `; a full collection ran in it too, and the young garbage it collected is counted`
      process.stdout.write(`  ${what}: ${Math.round(allocation.bytesPerRun)} bytes (one more round${rerun}, sampled every ${SAMPLING_BYTES} bytes${full}); by the innermost function of src/:\n`)
      for (const { where, bytesPerRun } of allocation.top) process.stdout.write(`    ${String(Math.round(bytesPerRun)).padStart(6)}  ${where}\n`)
    }
    process.stdout.write(`  ${result.checked} runs checked: each completed, with its ${options.events + 2} events in the log; ${((performance.now() - began) / 1000).toFixed(0)} s\n`)
  })
}
