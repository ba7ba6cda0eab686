// The benchmark's quick mode as a smoke test: every target (the gateway, raw ws, Socket.IO) runs
// every workload at a tiny size, and every round must deliver each event exactly once, in order,
// to its owner only. Correctness only: the figures of a shared CI machine are not asserted.
// The bench runs as its own processes, so it is compiled first (esbuild: a second, without
// type-checking, which `npm run typecheck` does), into a directory of its own under dist-dev/.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { build } from 'esbuild'
import { CORRECTNESS_KEYS } from '../bench/shared/ipc.js'
import type { RoundResult } from '../bench/run.js'
import { REDIS_URL, redisSkip } from './redis.js'

const root = fileURLToPath(new URL('..', import.meta.url))
// The quick bench takes well under a minute alone; a CI machine busy with other test files is slower.
t.setTimeout(300_000)

interface Report {
  mode: string
  workloads: Record<string, { targets: string[] }>
  skipped: string[]
  results: RoundResult[]
}

t.test('npm run bench -- --quick: every round of every target delivers every event once, in order, to its owner', async (t) => {
  const redisMissing = await redisSkip(t)
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

  // A clean environment: no coverage or loader hooks of tap's in the benchmark's processes.
  const child = spawn(process.execPath, [join(out, 'bench', 'run.js'), '--quick', '--redis', REDIS_URL, '--out', join(out, 'quick.json')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0, 'the quick bench exits with 0')

  const report = JSON.parse(readFileSync(join(out, 'quick.json'), 'utf8')) as Report
  t.equal(report.mode, 'quick')
  if (redisMissing === false) t.ok('burst-redis' in report.workloads, 'the burst ran on Redis too')
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
  if (t.passing() === false) t.comment(output)
})
