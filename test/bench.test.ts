// The benchmark's quick mode as a smoke test: every target (the gateway, raw ws, Socket.IO) runs
// every workload at a tiny size, and every round must deliver each event exactly once, in order,
// to its owner only. Correctness only: the figures of a shared CI machine are not asserted.
// The bench runs as its own processes, so it is compiled first (esbuild: a second, without
// type-checking, which `npm run typecheck` does), into a directory of its own under dist-dev/.
import { execFileSync, fork, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { build } from 'esbuild'
import { CORRECTNESS_KEYS } from '../bench/shared/ipc.js'
import { TURN_BUDGET, emitRun, tokenDelta, tokenLatencyUs, type RunPlan } from '../bench/shared/plan.js'
import type { RoundResult } from '../bench/run.js'
import { allowedCpus, cpuList } from '../bench/shared/cpus.js'
import { GcPauseCounter } from '../bench/shared/gc-pauses.js'
import { allocationOf } from '../bench/engine.js'
import { pairedRatio } from '../bench/shared/stats.js'
import { REDIS_URL, redisSkip } from './redis.js'
import { gc, scavenge } from './gc.js'
import { withRedis } from '../scripts/redis-keys.js'
import { clusterSkip } from './redis-cluster.js'

const root = fileURLToPath(new URL('..', import.meta.url))
// The quick bench takes well under a minute alone; a CI machine busy with other test files is slower.
t.setTimeout(300_000)

interface Report {
  mode: string
  machine: { node: string, nodeOptions?: string }
  workloads: Record<string, { targets: string[], spec: Record<string, unknown> }>
  skipped: string[]
  results: RoundResult[]
}

let compiled: Promise<string> | undefined
/** The bench, compiled once for this file's tests into a directory removed when they end. */
async function compiledBench (): Promise<string> {
  compiled ??= (async () => {
    mkdirSync(join(root, 'dist-dev'), { recursive: true })
    const out = mkdtempSync(join(root, 'dist-dev', 'bench-test-'))
    t.teardown(() => { rmSync(out, { recursive: true, force: true }) })
    await build({
      absWorkingDir: root,
      entryPoints: ['bench/**/*.ts', 'src/**/*.ts', 'scripts/**/*.ts'],
      outbase: '.',
      outdir: out,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      logLevel: 'silent'
    })
    return out
  })()
  return await compiled
}

/** Runs a compiled bench script to its end: its exit code and what it wrote. */
async function runScript (script: string, argv: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const out = await compiledBench()
  // A clean environment: no coverage or loader hooks of tap's in the benchmark's processes.
  const child = spawn(process.execPath, [join(out, 'bench', script), ...argv], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const [code] = await once(child, 'exit') as [number | null]
  return { code, stdout, stderr }
}

/** Emits `runs` runs through the shared loop and returns, per turn of the event loop, the run of each event. */
async function turnsOf (runs: number, plan: RunPlan): Promise<number[][]> {
  const turns: number[][] = []
  let inTurn = false
  const record = (run: number): void => {
    if (!inTurn) {
      turns.push([])
      inTurn = true
      // Everything the loop emits in one turn is synchronous: the microtask marks the turn's end.
      queueMicrotask(() => { inTurn = false })
    }
    turns[turns.length - 1]?.push(run)
  }
  const { signal } = new AbortController()
  await Promise.all(Array.from({ length: runs }, (_, run) => emitRun(plan, { think: () => { record(run) }, say: () => { record(run) } }, signal)))
  return turns
}

t.test('the shared emitting loop interleaves: one event per run per turn, at most TURN_BUDGET per turn, every run served', async (t) => {
  const turns = await turnsOf(100, { message: '', events: 12, bytes: 200, intervalMs: 0 })
  t.equal(turns.flat().length, 100 * 10, 'every middle event emitted')
  t.ok(turns.every((turn) => turn.length <= TURN_BUDGET), `no turn over ${TURN_BUDGET} events`)
  t.ok(turns.every((turn) => new Set(turn).size === turn.length), 'no run twice in one turn')
  t.equal(turns[0]?.length, TURN_BUDGET, 'a full turn when more runs are active than the budget')
  t.same(turns[1]?.slice(0, 36), Array.from({ length: 36 }, (_, i) => 64 + i), 'the next turn goes on where the last stopped')
})

t.test('the per-run burst schedule lets one run emit a batch per turn', async (t) => {
  const turns = await turnsOf(2, { message: '', events: 402, bytes: 200, intervalMs: 0, schedule: 'burst' })
  t.equal(turns.flat().length, 800)
  t.ok(turns.some((turn) => turn.filter((run) => run === 0).length === 200), 'a batch of 200 from one run in one turn')
})

t.test('paced runs go through the same loop at their interval', async (t) => {
  const began = performance.now()
  const turns = await turnsOf(3, { message: '', events: 7, bytes: 200, intervalMs: 10, content: 'token' })
  t.equal(turns.flat().length, 15)
  t.ok(performance.now() - began >= 40, 'five events 10 ms apart take at least 40 ms')
})

t.test('a token delta is 4–16 bytes and carries its send time', async (t) => {
  for (let step = 1; step <= 26; step++) {
    const delta = tokenDelta(step)
    t.ok(delta.length >= 4 && delta.length <= 16, `step ${step}: ${delta.length} bytes`)
    const latency = tokenLatencyUs(delta)
    t.ok(latency !== undefined && latency >= 0 && latency < 50_000, 'latency decoded')
  }
})

t.test('npm run bench -- --quick: every round of every target delivers every event once, in order, to its owner', async (t) => {
  const redisMissing = await redisSkip(t)
  const clusterMissing = redisMissing === false ? await clusterSkip(t) : redisMissing
  const out = await compiledBench()
  const { code, stdout, stderr } = await runScript('run.js', ['--quick', '--redis', REDIS_URL, '--out', join(out, 'quick.json')])
  const output = stdout + stderr
  t.equal(code, 0, 'the quick bench exits with 0')

  const report = JSON.parse(readFileSync(join(out, 'quick.json'), 'utf8')) as Report
  t.equal(report.mode, 'quick')
  t.equal(report.machine.node, process.version, 'the results file records the Node every server ran on')
  t.match(stdout, `bench: quick mode, 1 round(s), Node.js ${process.versions.node}, workloads`, 'the first line says which Node every server runs on')
  if (redisMissing === false) {
    t.ok('burst-redis' in report.workloads, 'the burst ran on Redis too')
    t.ok('latency-redis' in report.workloads, 'and the paced workload')
  }
  for (const [workload, { targets }] of Object.entries(report.workloads)) {
    for (const target of targets) {
      const rounds = report.results.filter((r) => r.workload === workload && r.target === target)
      t.equal(rounds.length, 1, `${workload} / ${target} ran`)
      for (const round of rounds) {
        t.equal(round.error, undefined, `${workload} / ${target}: no error`)
        t.ok((round.delivered ?? 0) > 0, `${workload} / ${target}: events were delivered`)
        for (const key of CORRECTNESS_KEYS) t.equal(round.counts?.[key], 0, `${workload} / ${target}: ${key}`)
      }
    }
  }
  const stream = report.results.find((r) => r.workload === 'token-stream' && r.target === 'gateway')
  t.ok((stream?.metrics?.bytesPerEvent ?? 0) > 0, 'token stream: bytes per event measured')
  t.ok(Number.isFinite(stream?.metrics?.p99Ms), 'token stream: latency measured from the deltas')
  // Every window of a streaming or start workload reports its server's GC pauses, for every target.
  for (const round of report.results.filter((r) => ['burst', 'token-stream', 'latency', 'start-rate'].includes(r.workload))) {
    const { gcPauseUsPerEvent = Number.NaN, gcPauseMaxMs = Number.NaN, scavenges = Number.NaN, scavengePauseMs = Number.NaN, otherGcPauseMs = Number.NaN } = round.metrics ?? {}
    t.ok(Number.isInteger(scavenges) && scavenges >= 0, `${round.workload} / ${round.target}: the window's scavenges counted`)
    t.ok(gcPauseMaxMs >= 0 && gcPauseMaxMs <= scavengePauseMs + otherGcPauseMs + 1e-9, `${round.workload} / ${round.target}: the longest pause is within their sum`)
    // The window's events, as its CPU per event counts them.
    const events = (round.metrics?.serverCpuUs ?? Number.NaN) / (round.metrics?.cpuUsPerEvent ?? Number.NaN)
    t.ok(Math.abs(gcPauseUsPerEvent * events - (scavengePauseMs + otherGcPauseMs) * 1000) <= 1e-6 * Math.max(1, gcPauseUsPerEvent * events), `${round.workload} / ${round.target}: pauses per event are their sum over the window's events`)
    const { scavengeKeptBytes = Number.NaN, scavengeKeptBPerEvent = Number.NaN } = round.metrics ?? {}
    t.ok(scavengeKeptBytes >= 0 && (scavenges > 0 || scavengeKeptBytes === 0), `${round.workload} / ${round.target}: what the scavenges kept counted, and only if there were any`)
    t.ok(Math.abs(scavengeKeptBPerEvent * events - scavengeKeptBytes) <= 1e-6 * Math.max(1, scavengeKeptBytes), `${round.workload} / ${round.target}: kept per event is the window's over its events`)
  }
  for (const round of report.results.filter((r) => r.workload === 'idle')) {
    t.ok((round.metrics?.youngGenerationMiB ?? 0) > 0, `idle / ${round.target}: the server's young generation measured`)
    const { startRssMiB = 0, connectedRssMiB = 0, rssPerConnection = Number.NaN, connections = 0 } = round.metrics ?? {}
    t.ok(startRssMiB > 0 && connectedRssMiB > 0, `idle / ${round.target}: the server's whole RSS measured before and with the connections`)
    t.ok(Math.abs((connectedRssMiB - startRssMiB) * 2 ** 20 / connections - rssPerConnection) < 1e-6, `idle / ${round.target}: RSS per connection is what the process gained, over its connections`)
  }
  const storm = report.results.find((r) => r.workload === 'start-storm' && r.target === 'gateway')
  t.ok(Number.isFinite(storm?.metrics?.acceptedP50Ms) && Number.isFinite(storm?.metrics?.startedP99Ms), 'start storm: time to run_accepted and agent_started measured')
  const starts = report.results.find((r) => r.workload === 'start-rate' && r.target === 'gateway')?.metrics ?? {}
  t.ok((starts.serverCpuUs ?? 0) > 0 && (starts.runsStarted ?? 0) > 0, 'start rate: the server CPU of the window and its runs counted')
  t.equal(starts.cpuUsPerRun, (starts.serverCpuUs ?? 0) / (starts.runsStarted ?? 1), 'start rate: CPU per run is the window\'s server CPU over its runs')
  // Every workload that starts runs in its window warms the start path first, storm after storm
  // until its warmupRuns have been accepted: a window after a single storm measured every server
  // still compiling its start path.
  const warmed = Object.entries(report.workloads).filter(([, { spec }]) => 'warmupRuns' in spec)
  t.same(warmed.map(([name]) => name).sort(), ['burst', 'burst-redis', 'latency', 'latency-redis', 'many-users', 'per-run-burst', 'start-rate', 'start-storm', 'token-stream'].filter((name) => name in report.workloads), 'every workload that starts runs in its window warms up its starts')
  for (const [workload, { spec }] of warmed) {
    const { users, warmupRuns: asked } = spec as { users: number, warmupRuns: number }
    t.ok(asked > users, `${workload}: the quick spec asks for more than one warm-up storm`)
    for (const round of report.results.filter((r) => r.workload === workload)) {
      const { warmupRuns = 0 } = round.metrics ?? {}
      t.ok(warmupRuns >= asked, `${workload} / ${round.target}: ${warmupRuns} runs accepted before the window`)
    }
  }
  for (const workload of ['start-storm', 'start-rate']) {
    const users = (report.workloads[workload]?.spec as { users: number } | undefined)?.users
    for (const round of report.results.filter((r) => r.workload === workload)) {
      t.equal(round.metrics?.runsStarted, users, `${workload} / ${round.target}: the window counts its own storm only`)
    }
  }
  if (redisMissing === false) {
    const redisRow = report.results.find((r) => r.workload === 'burst-redis' && r.target === 'gateway')
    t.ok((redisRow?.metrics?.redisCpuUsPerEvent ?? 0) > 0, 'on Redis: redis-server CPU measured')
    const pacedRow = report.results.find((r) => r.workload === 'latency-redis' && r.target === 'gateway')
    t.ok((pacedRow?.metrics?.redisCpuUsPerEvent ?? 0) > 0 && Number.isFinite(pacedRow?.metrics?.p99Ms), 'paced on Redis: redis-server CPU and latency measured')
  }
  if (clusterMissing === false) {
    // The bench starts a Redis Cluster of its own for this target (and stops it).
    t.ok(report.workloads['burst-redis']?.targets.includes('redis-cluster'), 'the burst ran on a Redis Cluster too')
    const clusterRow = report.results.find((r) => r.workload === 'burst-redis' && r.target === 'redis-cluster')
    t.ok((clusterRow?.metrics?.redisCpuUsPerEvent ?? 0) > 0, 'on the Redis Cluster: the CPU of its redis-servers measured')
    t.match(output, /cluster\/redis/, 'the table has the ratio of the cluster to the single Redis')
  }
  if (t.passing() === false) t.comment(output)
})

t.test('npm run bench:scale -- --quick: idle memory, then the start path warmed, then every paced phase delivered in full', async (t) => {
  const out = await compiledBench()
  const file = join(out, 'scale.json')
  const { code, stderr } = await runScript('run.js', ['--scale', '--quick', '--sizes', '200', '--out', file])
  t.equal(code, 0, stderr)
  const report = JSON.parse(readFileSync(file, 'utf8')) as Report
  const spec = report.workloads['scale-200']?.spec as { connections: number, warmupRuns: number } | undefined
  // A phase starts every connection's run at once: without the warm-up, the first one measured
  // a start path still compiling, a cold server's CPU and run_accepted.
  t.ok((spec?.warmupRuns ?? 0) > (spec?.connections ?? Number.POSITIVE_INFINITY), 'the quick spec asks for more than one warm-up storm')
  const rounds = report.results.filter((r) => r.workload === 'scale-200')
  t.same(rounds.map((r) => r.target).sort(), ['gateway', 'raw-ws'])
  for (const round of rounds) {
    const metrics = round.metrics ?? {}
    t.ok((metrics.warmupRuns ?? 0) >= (spec?.warmupRuns ?? Number.POSITIVE_INFINITY), `${round.target}: ${metrics.warmupRuns} runs accepted before the first phase`)
    t.ok(Number.isFinite(metrics.rssPerConnection) && Number.isFinite(metrics.heapPerConnection), `${round.target}: idle memory read before the warm-up`)
    for (const tag of ['5s', '1s']) {
      t.equal(metrics[`deliveredShare@${tag}`], 1, `${round.target}: every offered event of the 1 event/${tag} phase delivered`)
      t.ok(Number.isFinite(metrics[`acceptedP50Ms@${tag}`]), `${round.target}: the phase's own starts timed`)
    }
    for (const key of CORRECTNESS_KEYS) t.equal(round.counts?.[key], 0, `${round.target}: ${key}`)
  }
})

t.test('--baseline: the gateway of another build runs in the same rounds, beside this one', async (t) => {
  const out = await compiledBench()
  // This very build as its own baseline: what is checked is that it runs, is checked and is reported.
  // Node's options reach every server, and the results file says what they were.
  const { code, stdout, stderr } = await runScript('run.js', ['--quick', '--only', 'token-stream', '--baseline', out, '--out', join(out, 'baseline.json')], { NODE_OPTIONS: '--max-semi-space-size=16' })
  t.equal(code, 0, stderr)
  const report = JSON.parse(readFileSync(join(out, 'baseline.json'), 'utf8')) as Report & { baseline?: { commit: string } }
  // (tap adds an --import of its own to every process it sees spawned)
  t.match(report.machine.nodeOptions, /(?:^|\s|")--max-semi-space-size=16(?:$|\s|")/, 'the results file records NODE_OPTIONS')
  t.same(report.workloads['token-stream']?.targets, ['gateway', 'baseline', 'raw-ws', 'socketio'], 'right after the gateway')
  const round = report.results.find((r) => r.workload === 'token-stream' && r.target === 'baseline')
  t.ok((round?.delivered ?? 0) > 0, 'the baseline delivered the workload')
  for (const key of CORRECTNESS_KEYS) t.equal(round?.counts?.[key], 0, `baseline: ${key}`)
  t.equal(report.baseline?.commit, execFileSync('git', ['rev-parse', 'HEAD'], { cwd: out, encoding: 'utf8' }).trim(), 'the report says which build the baseline was, by its commit')
  t.notOk(JSON.stringify(report).includes(out), 'and not where it lies on this machine')
  t.match(stdout, /gateway \(baseline\)/, 'the table has its column')
  t.match(stdout, /gateway\/baseline/, 'and the ratio of this build to it')
  // One round (--quick): the ratio round by round is reported, and says it has no range.
  const paired = (report as Report & { paired?: Record<string, Record<string, { n: number, median: number, verdict: string }>> }).paired?.['token-stream']
  const gatewayCpu = round === undefined ? undefined : report.results.find((r) => r.workload === 'token-stream' && r.target === 'gateway')?.metrics?.cpuUsPerEvent
  t.equal(paired?.cpuUsPerEvent?.n, 1, 'the CPU per event paired over the one round')
  t.equal(paired?.cpuUsPerEvent?.median, (gatewayCpu ?? Number.NaN) / (round?.metrics?.cpuUsPerEvent ?? Number.NaN), 'as this build\'s figure over the baseline\'s')
  t.equal(paired?.cpuUsPerEvent?.verdict, 'one round: no range')
  t.match(stdout, /\ngateway\/baseline, round by round[^\n]*\n(?: {2}token-stream [^\n]*\n)* {2}token-stream +server CPU µs\/event +\d+\.\d\d×: one round: no range\n/, 'printed under the table')
})

t.test('a measured window begins in the state the warm-up left: only memory readings force a collection', async (t) => {
  const out = await compiledBench()
  // A bench target's control channel, with V8's gc() counted: what each request makes it collect.
  const probe = join(out, 'control-probe.mjs')
  writeFileSync(probe, [
    "import { serveControl } from './bench/shared/control.js'",
    'const collect = globalThis.gc',
    'let collections = 0',
    'globalThis.gc = () => { collections++; collect() }',
    "process.on('message', (message) => { if (message.type === 'collections') process.send({ type: 'collections', collections }) })",
    // A scavenge on request, not counted as a forced collection: what a window's pauses are made of.
    "process.on('message', (message) => { if (message.type === 'scavenge') { collect({ type: 'minor', execution: 'sync' }); process.send({ type: 'scavenged' }) } })",
    'serveControl(0, async () => {})'
  ].join('\n'))
  const child = fork(probe, [], { execArgv: ['--expose-gc'], env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  t.teardown(() => { child.kill() })
  // The target answers every message it is sent, ours for the count included: replies are told apart by id.
  const next = async (type: string, id?: number): Promise<Record<string, unknown>> => await new Promise((resolve) => {
    const listener = (message: Record<string, unknown>): void => {
      if (message.type !== type || (id !== undefined && message.id !== id)) return
      child.off('message', listener)
      resolve(message)
    }
    child.on('message', listener)
  })
  const collections = async (): Promise<number> => {
    const counted = next('collections')
    child.send({ type: 'collections' })
    return (await counted).collections as number
  }
  let id = 0
  const ask = async (request: string): Promise<Record<string, unknown>> => {
    const reply = next('reply', ++id)
    child.send({ type: 'request', id, request })
    return await reply
  }
  await next('ready')
  const atStart = await collections()
  t.ok(atStart >= 1, 'the target collects its startup garbage before any workload')
  t.match((await ask('measure-start')).reply, { kind: 'started' })
  t.equal(await collections(), atStart, 'opening a window collects nothing')
  const scavenged = next('scavenged')
  child.send({ type: 'scavenge' })
  await scavenged
  const measured = (await ask('measure-stop')).reply as { kind: string, gc?: { scavenges: number, scavengeMs: number, otherPauses: number, otherMs: number, maxPauseMs: number } }
  t.equal(measured.kind, 'measure')
  // The startup's forced full collection came before the window: only the scavenge is in it.
  t.equal(measured.gc?.scavenges, 1, 'the window counts the scavenge made in it')
  t.equal(measured.gc?.otherPauses, 0, 'and no collection made before it opened')
  t.ok((measured.gc?.scavengeMs ?? 0) > 0 && measured.gc?.maxPauseMs === measured.gc?.scavengeMs, 'its pause is measured, the longest of the window')
  t.match((await ask('memory')).reply, { kind: 'memory' })
  t.ok(await collections() > atStart, 'a memory reading is taken after a forced collection')
  child.send({ type: 'stop' })
  t.same(await once(child, 'exit'), [0, null], 'the target stops on request')
})

t.test('a window\'s GC pauses: only the collections made while it is open, counted by kind', async (t) => {
  const counter = new GcPauseCounter()
  t.teardown(() => { counter.close() })
  // Node hands a collection's entry to observers in the check phase after it: this one, made just
  // before the window opens, arrives once it is open, and is told apart by its time.
  scavenge()
  counter.start()
  await nextTurn()
  await nextTurn()
  scavenge()
  gc()
  await nextTurn()
  const pauses = counter.stop()
  t.equal(pauses.scavenges, 1, 'the scavenge made in the window, not the one before it')
  t.equal(pauses.otherPauses, 1, 'the full collection apart')
  t.equal(pauses.fullCollections, 1, 'and counted as one')
  t.ok(pauses.scavengeMs > 0 && pauses.otherMs > 0, 'each with its pause')
  t.equal(pauses.maxPauseMs, Math.max(pauses.scavengeMs, pauses.otherMs), 'the longest pause is one of them')
  scavenge()
  await nextTurn()
  counter.start()
  t.same(counter.stop(), { scavenges: 0, scavengeMs: 0, otherPauses: 0, otherMs: 0, fullCollections: 0, maxPauseMs: 0, scavengeKeptBytes: 0 }, 'a window opened after a collection, and closed before the next, counts none')
})

t.test('a window counts the bytes its scavenges found alive, and only theirs', async (t) => {
  const counter = new GcPauseCounter()
  t.teardown(() => { counter.close() })
  // Objects made just after a scavenge (so that the young generation has room for them all)
  // and alive at the window's: it moves them all. Each is at least 40 bytes (its header and two
  // fields).
  scavenge()
  const alive = Array.from({ length: 2_000 }, (_, i) => ({ i, text: `object ${i}` }))
  counter.start()
  scavenge()
  const kept = counter.stop().scavengeKeptBytes ?? 0
  t.ok(kept >= alive.length * 40, `the window's scavenge moved what was alive: ${kept} bytes`)
  counter.start()
  t.equal(counter.stop().scavengeKeptBytes, 0, 'a window without a scavenge counts none')
})

t.test('bench:engine --survivors profiles again a round a full collection ran in, up to five times', async (t) => {
  // A full collection collects young garbage too, which the profile would keep as surviving.
  let calls = 0
  const collecting = async (): Promise<number> => {
    calls++
    gc()
    return 0
  }
  const once = await allocationOf(async () => {
    calls++
    if (calls === 1) gc()
    return 0
  }, 1, true)
  t.ok((once.rerun ?? 0) >= 1 && calls === (once.rerun ?? 0) + 1, `the round with a full collection was profiled again (${calls} rounds)`)
  t.equal(once.fullCollections, 0, 'the figure reported is from a round without one')
  calls = 0
  const always = await allocationOf(collecting, 1, true)
  t.equal(calls, 5, 'five rounds at most')
  t.equal(always.rerun, 4)
  t.ok((always.fullCollections ?? 0) >= 1, 'and the last one says it had a full collection')
  calls = 0
  const all = await allocationOf(collecting, 1, false)
  t.equal(calls, 1, 'the whole allocation profile is not profiled again: it counts what any collection collected')
  t.equal(all.rerun, undefined)
})

t.test('a ratio round by round: only rounds both ran, its median and range, and what the range says', async (t) => {
  const rounds = (...values: Array<number | undefined>): Map<number, number> =>
    new Map(values.flatMap((value, i) => (value === undefined ? [] : [[i + 1, value] as [number, number]])))
  t.same(pairedRatio(rounds(9, 10, 11), rounds(10, 10, 10)), { median: 1, min: 0.9, max: 1.1, n: 3, verdict: '1 within the range' })
  t.same(pairedRatio(rounds(9, 8, 9.5), rounds(10, 10, 10)), { median: 0.9, min: 0.8, max: 0.95, n: 3, verdict: 'below 1 in every round' })
  t.same(pairedRatio(rounds(12, 22), rounds(10, 20)), { median: 1.15, min: 1.1, max: 1.2, n: 2, verdict: 'above 1 in every round' })
  // Paired by round, not by rank: the medians' ratio here would be 1, every round's is 2 or 0.5.
  t.same(pairedRatio(rounds(2, 8), rounds(1, 16)), { median: 1.25, min: 0.5, max: 2, n: 2, verdict: '1 within the range' })
  t.same(pairedRatio(rounds(5, undefined, 6), rounds(5, 7, 0)), { median: 1, min: 1, max: 1, n: 1, verdict: 'one round: no range' }, 'a round missing on one side, or with a 0 to divide by, does not count')
  t.same(pairedRatio(rounds(Number.NaN, 3), rounds(2, Number.POSITIVE_INFINITY)), undefined, 'nor one without a finite figure; none left: undefined')
  t.equal(pairedRatio(new Map(), rounds(1)), undefined)
})

t.test('a CPU list as the kernel and taskset write it, and a process\'s own', async (t) => {
  t.same(cpuList('0'), [0])
  t.same(cpuList('0-3'), [0, 1, 2, 3])
  t.same(cpuList('0-1,4,6-7'), [0, 1, 4, 6, 7])
  t.ok(cpuList(allowedCpus(process.pid) ?? '').length >= 1, 'this process may use at least one CPU')
  t.equal(allowedCpus(undefined), undefined, 'no process, no list')
  t.equal(allowedCpus(2 ** 31 - 1), undefined, 'a process that does not exist has none')
})

/** The CPUs this test process may use, as the kernel lists them. */
function ownCpus (): number[] {
  return cpuList(allowedCpus(process.pid) ?? '')
}

t.test('--pin: the server on one CPU, the load generator on the others, as the processes themselves report', async (t) => {
  const out = await compiledBench()
  const [first, ...rest] = ownCpus()
  const { code, stdout, stderr } = await runScript('run.js', ['--quick', '--only', 'start-storm', '--pin', '--out', join(out, 'pinned.json')])
  if (rest.length === 0) {
    // One CPU cannot hold two processes apart: refused, not run unpinned.
    t.equal(code, 2, stdout)
    t.match(stderr, /^bench: --pin: needs at least 2 CPUs/)
    return
  }
  t.equal(code, 0, stderr)
  t.match(stdout, /^bench: quick mode, 1 round\(s\), Node\.js [\d.]+, pinned, workloads start-storm\n/, 'the first line says the run is pinned')
  const report = JSON.parse(readFileSync(join(out, 'pinned.json'), 'utf8')) as Report & { pinned?: { server: string, load: string } }
  t.same(report.pinned, { server: String(first), load: rest.join(',') }, 'the results file says how the run was pinned')
  const rounds = report.results.filter((r) => r.workload === 'start-storm')
  t.equal(rounds.length, 3, 'every target ran')
  for (const round of rounds) {
    t.ok(round.ok, `${round.target}: correct`)
    t.same(cpuList(round.cpus?.server ?? ''), [first], `${round.target}: the server, as the kernel lists its CPUs`)
    t.same(cpuList(round.cpus?.load ?? ''), rest, `${round.target}: the load generator, likewise`)
  }
})

t.test('without --pin, each round records the CPUs its processes could use', async (t) => {
  const out = await compiledBench()
  const { code, stderr } = await runScript('run.js', ['--quick', '--only', 'idle', '--out', join(out, 'unpinned.json')])
  t.equal(code, 0, stderr)
  const report = JSON.parse(readFileSync(join(out, 'unpinned.json'), 'utf8')) as Report & { pinned?: unknown }
  t.equal(report.pinned, undefined, 'not pinned')
  t.equal(report.results.length, 3)
  for (const round of report.results) {
    t.same(cpuList(round.cpus?.server ?? ''), ownCpus(), `${round.target}: the server, every CPU`)
    t.same(cpuList(round.cpus?.load ?? ''), ownCpus(), `${round.target}: the load generator, every CPU`)
  }
})

t.test('a command line the bench cannot run is refused in one line, with its usage, before anything starts', async (t) => {
  const help = await runScript('run.js', ['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /^usage: npm run bench -- \[options\]/, '--help prints the usage')
  t.match(help.stdout, /--only a,b +these workloads only: burst, many-users,/, 'with the workloads\' names')
  const refusals: Array<[string[], RegExp]> = [
    [['--bogus'], /^bench: Unknown option '--bogus'/],
    [['--only', 'many-users,nope'], /^bench: --only: no workload named nope \(one of burst, many-users/],
    [['--rounds', '0'], /^bench: --rounds: expected a positive whole number, got "0"/],
    [['--rounds', 'three'], /^bench: --rounds: expected a positive whole number/],
    [['--scale', '--sizes', '1000,lots'], /^bench: --sizes: expected a positive whole number, got "lots"/],
    [['--profile', '--profile-target', 'nginx'], /^bench: --profile-target: unknown target nginx \(one of gateway/],
    [['--baseline', 'no/such/build'], /^bench: --baseline: no bench\/targets\/gateway.js in no\/such\/build/],
    [['--profile', '--profile-target', 'baseline'], /^bench: --profile-target baseline: needs --baseline DIR/]
  ]
  await Promise.all(refusals.map(async ([argv, reason]) => {
    const { code, stdout, stderr } = await runScript('run.js', argv)
    t.equal(code, 2, `${argv.join(' ')}: exit code 2`)
    t.match(stderr, reason, `${argv.join(' ')}: the reason first`)
    t.match(stderr, /\nusage: npm run bench/, 'then the usage')
    t.notMatch(stderr, /\n\s+at /, 'no stack trace')
    t.equal(stdout, '', 'and nothing was run')
  }))
})

t.test('npm run bench:stream: CPU per event by runs at once, every socket checked', async (t) => {
  const { code, stdout, stderr } = await runScript('stream.js', ['--runs', '30,60', '--events', '10', '--rounds', '2'])
  t.equal(code, 0, stderr)
  const sizes = [...stdout.matchAll(/ {2}\s*(\d+) runs at once: (\d+) ns of CPU per event, median \((\d+)–(\d+)\); rounds: ([\d ]+)\n/g)]
  t.same(sizes.map((size) => Number(size[1])), [30, 60], `one line per size, in order: ${stdout}`)
  for (const size of sizes) {
    const [median, min, max] = [size[2], size[3], size[4]].map(Number) as [number, number, number]
    const rounds = size[5]?.trim().split(' ').map(Number) ?? []
    t.equal(rounds.length, 2, `${size[1]}: one figure per reported round`)
    t.ok(rounds.every((ns) => Number.isFinite(ns) && ns > 0), `${size[1]}: each a CPU time`)
    t.ok(min <= median && median <= max, `${size[1]}: median within min–max`)
  }
  // One warm-up round and two reported, per size: every socket got its welcome and 10 events.
  t.match(stdout, /\n {2}270 sockets checked: each was sent its welcome and its run's 10 events/)
  for (const argv of [['--runs', '100,none'], ['--events', '2'], ['--bogus']]) {
    const refused = await runScript('stream.js', argv)
    t.equal(refused.code, 2, `${argv.join(' ')}: exit code 2, as the bench's own refusals`)
    t.match(refused.stderr, /^bench:stream: (--runs: expected a positive whole number, got "none"|--events: a run has at least 3 events, got 2|Unknown option '--bogus')\nusage: npm run bench:stream/)
    t.equal(refused.stdout, '', 'nothing was run')
  }
})

t.test('npm run bench:engine: runs through the engine alone, every one checked', async (t) => {
  const { code, stdout, stderr } = await runScript('engine.js', ['--events', '4', '--runs', '600', '--rounds', '2'])
  t.equal(code, 0, stderr)
  const figures = /CPU per run: ([\d.]+) µs median \(([\d.]+)–([\d.]+)\); rounds: ([\d. ]+)\n/.exec(stdout)
  t.ok(figures !== null, `a CPU figure per run: ${stdout}`)
  const [median, min, max] = [figures?.[1], figures?.[2], figures?.[3]].map(Number) as [number, number, number]
  const rounds = figures?.[4]?.trim().split(' ').map(Number) ?? []
  t.equal(rounds.length, 2, 'one figure per reported round')
  t.ok(rounds.every((us) => Number.isFinite(us) && us > 0), 'each a CPU time')
  t.ok(min <= median && median <= max, 'median within min–max')
  // Two warm-up rounds and two reported: every run ended `completed` with its 6 events logged.
  t.match(stdout, /\n {2}2400 runs checked: each completed, with its 6 events in the log/)
  const alloc = await runScript('engine.js', ['--events', '4', '--runs', '600', '--rounds', '1', '--alloc'])
  t.equal(alloc.code, 0, alloc.stderr)
  const perRun = /heap allocated per run: (\d+) bytes/.exec(alloc.stdout)
  // A run logs 6 frames and makes its emitter, context and ids: kilobytes, not bytes nor megabytes.
  t.ok(perRun !== null && Number(perRun[1]) > 1000 && Number(perRun[1]) < 1_000_000, `a figure per run: ${alloc.stdout}`)
  t.match(alloc.stdout, /\n {4} *\d+ {2}start src\/plugins\/run-engine\.js:\d+\n/, "the engine's start among the places named")
  t.match(alloc.stdout, /\n {2}2400 runs checked/, 'the profiled round is checked as the others')
  // What no scavenge collected is part of what was allocated: a run's garbage mostly dies young.
  const kept = await runScript('engine.js', ['--events', '4', '--runs', '600', '--rounds', '1', '--survivors'])
  t.equal(kept.code, 0, kept.stderr)
  const keptPerRun = /heap per run no scavenge collected: (\d+) bytes/.exec(kept.stdout)
  t.ok(keptPerRun !== null && Number(keptPerRun[1]) < Number(perRun?.[1]), `a smaller figure per run: ${kept.stdout}`)
  t.match(kept.stdout, /\n {2}2400 runs checked/, 'that round is checked too')
  if (await redisSkip(t) === false) {
    // Paced thoughts on the Redis store: every run checked against Redis, and its keys gone after.
    const prefixes = async (): Promise<number> => withRedis(REDIS_URL, async (redis) => (await redis.keys('agw-bench-engine-*')).length)
    const before = await prefixes()
    const onRedis = await runScript('engine.js', ['--events', '4', '--runs', '600', '--rounds', '1', '--spread', '--redis', REDIS_URL])
    t.equal(onRedis.code, 0, onRedis.stderr)
    t.match(onRedis.stdout, /^engine: 1 rounds of 600 runs of 4 thoughts \(6 events\), each in a turn of its own, the Redis store\n/, 'on Redis, spread')
    t.match(onRedis.stdout, /\n {2}1800 runs checked: each completed, with its 6 events in the log/)
    t.equal(await prefixes(), before, 'its Redis keys were deleted')
  }
  for (const argv of [['--runs', 'many'], ['--rounds', '0'], ['--bogus'], ['--redis', 'http://localhost:6379'], ['--fresh', '--redis', REDIS_URL], ['--alloc', '--survivors']]) {
    const refused = await runScript('engine.js', argv)
    t.equal(refused.code, 2, `${argv.join(' ')}: exit code 2, as the bench's own refusals`)
    t.match(refused.stderr, /^bench:engine: (--runs: expected a positive whole number, got "many"|--rounds: expected a positive whole number, got "0"|Unknown option '--bogus'|--redis: expected a redis:\/\/ or rediss:\/\/ URL, got "http:\/\/localhost:6379"|--fresh: the memory store's option; it does not apply with --redis|--alloc, --survivors: the profiled round counts one or the other; give one)\nusage: npm run bench:engine/)
    t.equal(refused.stdout, '', 'nothing was run')
  }
  // A Redis that is not there: said in one line, at once, rather than waited for.
  const absent = await runScript('engine.js', ['--runs', '500', '--rounds', '1', '--redis', 'redis://127.0.0.1:1/0'])
  t.equal(absent.code, 1, 'no Redis: exit code 1')
  t.equal(absent.stderr, 'bench:engine: --redis: no Redis answers at redis://127.0.0.1:1/0\n')
})
