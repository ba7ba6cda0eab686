// What a run holds while it runs, followed by a connection: the figure the connection-scaling
// model multiplies by the runs in flight (docs/operations.md). Heap after a full collection,
// averaged over thousands of runs, is steady to a few bytes from one run of the test to the next
// (it is not a timing). Measured here: 5.6 KB on Node 20 and 5.0 KB on Node 24; 6.2 and 5.6 KB
// before the deadlines of all runs shared one timer, and 7.9 and 7.1 KB before a run kept one
// async frame and a connection's one subscription left its Map (docs/performance.md). The bound
// is about 10% over today's figure on Node 20.
import t from 'tap'
import { CountingSocket } from '../../bench/shared/counting-socket.js'
import { createUserContext } from '../../src/plugins/user-context.js'
import { buildApp, testEnv } from '../helpers.js'
import { gc } from '../gc.js'

const RUNS = 4000
/** Bytes of heap one running, followed run may hold. */
const BOUND = 6200

async function settledHeap (): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

t.test(`a running run followed by its connection holds at most ${BOUND} bytes of heap`, async (t) => {
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  // An agent as most are: it reads its signal, says something, then waits on its model.
  const app = await buildApp(t, {
    agents: { waits: async ({ think, signal }) => { think('thinking'); await gate; return signal.aborted } },
    env: testEnv({ MAX_CONCURRENT_RUNS: '10000' })
  })
  const users = Array.from({ length: RUNS }, (_, i) => createUserContext({ sub: `user-${i}` }, `request-${i}`))
  const sockets = users.map(() => new CountingSocket())
  const sinks = users.map((user, i) => app.delivery.attach((sockets[i] as CountingSocket).asWebSocket(), user))
  // One run first, so that what every run shares (compiled code, caches) is not counted.
  sinks[0]?.follow((await app.runEngine.start(users[0] as (typeof users)[number], { input: { message: 'warm' } })).runId, 0)
  const before = await settledHeap()
  for (let i = 1; i < RUNS; i++) {
    const run = await app.runEngine.start(users[i] as (typeof users)[number], { input: { message: 'go' } })
    sinks[i]?.follow(run.runId, 0)
  }
  const during = await settledHeap()
  t.equal(app.runEngine.activeRuns(), RUNS, 'every run is running')
  // welcome, agent_started and the thought reached every connection: the runs are followed, live.
  t.ok(sockets.every((socket) => socket.frames === 3), 'each connection was sent its welcome and its run\'s two events')
  const perRun = (during - before) / (RUNS - 1)
  t.ok(perRun <= BOUND, `a running, followed run holds ${Math.round(perRun)} bytes of heap (bound ${BOUND})`)
  t.ok(perRun > 1000, 'and the measure sees the runs at all')
  release()
  while (app.runEngine.activeRuns() > 0) await new Promise((resolve) => setImmediate(resolve))
  t.ok(sockets.every((socket) => socket.frames === 4), 'then each ended, agent_completed delivered')
})
