// npm run bench:stream: what one event costs the gateway on its whole path — agent API, emitter,
// log, fan-out, sink, down to `socket.send` — without the kernel, and how that grows with the
// number of runs streaming at once. The app is built as src/server.ts builds it (production
// config, the real logger at silent, the memory store). Per size, every round starts that many
// runs of one user each, every run followed by a sink on a socket that only counts what it is
// sent (where a real one would frame and write it), then lets them all stream `--events`
// agent_message deltas through the bench's shared emitting loop (bench/shared/plan.ts: at most
// 64 events per turn, one per run in rotation). Reported: the process's CPU time (user +
// system, garbage collection included) from the moment every run has started to the last
// run's end, per delivered event.
//   npm run bench:stream -- [--runs 100,2000,10000] [--events 150] [--rounds 5] [--quick]
// Checked in every round: each socket was sent its welcome and exactly its run's events.
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import type { Agent, StartedRun } from '../src/index.js'
import { createUserContext } from '../src/plugins/user-context.js'
import { benchApp } from './shared/app.js'
import { UsageError, parseOptions, positiveInteger, runCommand } from './shared/cli.js'
import { emitRun, toPlan } from './shared/plan.js'
import { CountingSocket } from './shared/counting-socket.js'
import { spread } from './shared/stats.js'

export interface StreamBenchOptions {
  /** Runs streaming at once, one size per entry. */
  readonly runs: readonly number[]
  /** Events of each run, agent_started and agent_completed included. */
  readonly events: number
  readonly rounds: number
}

export interface StreamSizeResult {
  readonly runs: number
  /** CPU time (user + system) per delivered event, in ns, one value per round. */
  readonly cpuNsPerEvent: readonly number[]
  readonly median: number
  readonly min: number
  readonly max: number
  /** Sockets checked, warm-up round included: each was sent its welcome and exactly its run's events. */
  readonly checked: number
}

/** One wave: `runs` runs started, followed, released to stream together; CPU ns per event. */
async function round (runs: number, events: number): Promise<number> {
  let open: () => void = () => {}
  const gate = new Promise<void>((resolve) => { open = resolve })
  const agent: Agent = async ({ input, think, say, signal, drain }) => {
    await gate
    return { events: await emitRun(toPlan(input), { think, say }, signal, drain) }
  }
  const app = await benchApp(agent)
  try {
    const sockets: CountingSocket[] = []
    const started: StartedRun[] = []
    for (let i = 0; i < runs; i++) {
      const user = createUserContext({ sub: `user-${i}`, scopes: [] }, `connection-${i}`)
      const socket = new CountingSocket()
      const sink = app.delivery.attach(socket.asWebSocket(), user)
      const run = await app.runEngine.start(user, { input: { message: 'go', events, content: 'token' } })
      sink.follow(run.runId, 0)
      sockets.push(socket)
      started.push(run)
    }
    // Every agent is waiting at the gate (an agent starts right after its run is accepted).
    await new Promise((resolve) => setImmediate(resolve))
    const before = process.cpuUsage()
    open()
    while (app.runEngine.activeRuns() > 0) await new Promise((resolve) => setImmediate(resolve))
    // Delivery of the last events may finish on the turn after the last run ended.
    await new Promise((resolve) => setImmediate(resolve))
    const used = process.cpuUsage(before)
    for (const [i, socket] of sockets.entries()) {
      // The welcome, then every event of the run: agent_started came before the gate opened.
      if (socket.frames !== events + 1) throw new Error(`run ${started[i]?.runId ?? i}: its socket was sent ${socket.frames} frames, not ${events + 1}`)
    }
    return (used.user + used.system) * 1000 / (runs * (events - 1))
  } finally {
    await app.close()
  }
}

export async function streamBench (options: StreamBenchOptions): Promise<StreamSizeResult[]> {
  const results: StreamSizeResult[] = []
  for (const runs of options.runs) {
    // The first round compiles the code: run, not reported.
    await round(runs, options.events)
    const cpuNsPerEvent: number[] = []
    for (let r = 0; r < options.rounds; r++) cpuNsPerEvent.push(await round(runs, options.events))
    results.push({
      runs,
      cpuNsPerEvent,
      ...spread(cpuNsPerEvent),
      checked: runs * (options.rounds + 1)
    })
  }
  return results
}

const USAGE = 'usage: npm run bench:stream -- [--runs 100,2000,10000] [--events 150] [--rounds 5] [--quick]'

function streamOptions (argv: readonly string[]): StreamBenchOptions {
  const values = parseOptions(argv, {
    runs: { type: 'string' },
    events: { type: 'string' },
    rounds: { type: 'string' },
    quick: { type: 'boolean', default: false }
  })
  const runs = values.runs === undefined
    ? (values.quick ? [50, 500] : [100, 2000, 10_000])
    : values.runs.split(',').map((size) => positiveInteger('--runs', size))
  const events = values.events === undefined ? (values.quick ? 20 : 150) : positiveInteger('--events', values.events)
  if (events < 3) throw new UsageError(`--events: a run has at least 3 events, got ${events}`)
  return {
    runs,
    events,
    rounds: values.rounds === undefined ? (values.quick ? 1 : 5) : positiveInteger('--rounds', values.rounds)
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await runCommand('bench:stream', USAGE, streamOptions, async (options) => {
    const began = performance.now()
    const results = await streamBench(options)
    process.stdout.write(`stream: runs of ${options.events} events (agent_message deltas between agent_started and agent_completed), ${options.rounds} rounds per size\n`)
    for (const result of results) {
      process.stdout.write(`  ${String(result.runs).padStart(6)} runs at once: ${result.median.toFixed(0)} ns of CPU per event, median (${result.min.toFixed(0)}–${result.max.toFixed(0)}); rounds: ${result.cpuNsPerEvent.map((ns) => ns.toFixed(0)).join(' ')}\n`)
    }
    const checked = results.reduce((sum, result) => sum + result.checked, 0)
    process.stdout.write(`  ${checked} sockets checked: each was sent its welcome and its run's ${options.events} events; ${((performance.now() - began) / 1000).toFixed(0)} s\n`)
  })
}
