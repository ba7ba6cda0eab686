// What a run keeps while it lives is made of objects that share their hidden classes run after
// run. An object that gets a hidden class of its own each time (an object literal with getters of
// its own; `Object.freeze({ ...input })` once V8 has optimised the code that makes it) costs a
// map and a descriptor array per run, and every property load on it misses the inline caches.
// Checked with V8's own %HaveSameMap, after enough runs for the start path to be optimised.
import v8 from 'node:v8'
import t from 'tap'
import type { AgentRun } from '../../src/contracts.js'
import { createUserContext } from '../../src/plugins/user-context.js'
import { buildApp, testEnv } from '../helpers.js'

v8.setFlagsFromString('--allow-natives-syntax')
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- the only way to reach a V8 intrinsic from a test
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: unknown, b: unknown) => boolean

t.test("a run's API, its context and its input share their hidden classes with every other run's", async (t) => {
  const seen: AgentRun[] = []
  const app = await buildApp(t, {
    agents: { keep: async (run) => { seen.push(run); return 'ok' } },
    env: testEnv({ MAX_CONCURRENT_RUNS: '10000' })
  })
  const users = Array.from({ length: 100 }, (_, i) => createUserContext({ sub: `user-${i}`, scope: '' }, `request-${i}`))
  const RUNS = 5_000
  for (let i = 0; i < RUNS; i++) {
    await app.runEngine.start(users[i % users.length] as (typeof users)[number], { input: { message: `go ${i}`, step: i } })
    // Let the runs end now and then, as a server's do.
    if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve))
  }
  while (seen.length < RUNS) await new Promise((resolve) => setImmediate(resolve))
  const at = (i: number): AgentRun => seen[i] as AgentRun
  const [first, early, late, last] = [at(0), at(1), at(RUNS - 2), at(RUNS - 1)]
  for (const [name, of] of [['the run API', (run: AgentRun) => run], ['the context', (run: AgentRun) => run.context], ['the input', (run: AgentRun) => run.input]] as const) {
    t.ok(haveSameMap(of(first), of(early)), `${name}: the first two runs`)
    t.ok(haveSameMap(of(late), of(last)), `${name}: the last two of ${RUNS}`)
    t.ok(haveSameMap(of(first), of(last)), `${name}: the first and the last`)
  }
  t.ok(Object.isFrozen(last) && Object.isFrozen(last.input) && Object.isFrozen(last.context), 'all frozen')
  t.same(last.input, { message: `go ${RUNS - 1}`, step: RUNS - 1 })
})
