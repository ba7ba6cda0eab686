// An append waits on Redis for a round trip, so many appends outlive a scavenge. V8 counts that
// for each object or array literal (its allocation site) and, once most of a site's objects
// have survived, allocates the site's objects straight in the old generation, where a dead one
// keeps every young object it points to alive until a full collection. The Redis store makes
// what it creates per append by constructors, which have no allocation site: after the very
// schedule that makes V8 pretenure a literal (appends kept waiting through scavenges, round after
// round), a new append's entry is still born young. Checked with V8's own %InYoungGeneration.
import v8 from 'node:v8'
import t from 'tap'
import type { StoredEvent } from '../../src/contracts.js'
import { createRedisStore } from '../../src/stores/redis-store.js'
import { REDIS_URL, redisSkip, testPrefix } from '../redis.js'
import { scavenge } from '../gc.js'

v8.setFlagsFromString('--allow-natives-syntax')
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- the only way to reach a V8 intrinsic from a test
const inYoungGeneration = new Function('o', 'return %InYoungGeneration(o)') as (o: unknown) => boolean

const skip = await redisSkip(t)

/** The append an event settled: the store's entry for it, which the event keeps to build its frame. */
const entryOf = (event: StoredEvent): unknown => (event as unknown as { entry: unknown }).entry

t.test('appends kept waiting through scavenges, round after round, do not make V8 allocate the next ones old', { skip }, async (t) => {
  const store = createRedisStore({ url: REDIS_URL, historyTtlMs: 60_000, leaseTtlMs: 5000, keyPrefix: testPrefix(t) })
  t.teardown(() => store.close())
  const runId = `run-pretenuring-${process.pid}`
  await store.createRun({ runId, threadId: 'thread-pretenuring', agent: 'demo', ownerId: 'alice' }, { maxActivePerOwner: 4 })
  const data = JSON.stringify({ step: 1 })
  // Six rounds were enough for V8 to pretenure the object literal these entries were made by
  // until 2026-12-07 (Node 20 and 24); twenty leave room.
  for (let round = 0; round < 20; round++) {
    const waiting = Array.from({ length: 200 }, () => store.append(runId, 'agent_thinking', data))
    scavenge()
    scavenge()
    await Promise.all(waiting)
  }
  let young = 0
  for (let i = 0; i < 20; i++) {
    const entry = entryOf(await store.append(runId, 'agent_thinking', data))
    t.type(entry, 'object')
    if (inYoungGeneration(entry)) young++
  }
  // Young unless two scavenges happened between an append and its settling: none is forced here.
  t.ok(young >= 18, `${young} of 20 new appends born young`)
  await store.endRun(runId, 'completed')
})
