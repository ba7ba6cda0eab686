import t from 'tap'
import { createMemoryStore } from '../../src/stores/memory-store.js'
import { eventStoreContract } from './contract.js'

t.test('the EventStore contract', async (t) => {
  eventStoreContract(t, async ({ historyTtlMs }) => createMemoryStore({ historyTtlMs }))
})

t.test('expiry follows the clock exactly, and tombstones are bounded', async (t) => {
  let now = 1_000_000
  const store = createMemoryStore({ historyTtlMs: 1000, now: () => now, tombstoneTtlMs: 5000, maxTombstones: 2 })
  t.teardown(() => store.close())
  for (const runId of ['a', 'b', 'c']) {
    await store.createRun({ runId, threadId: 't', agent: 'demo', ownerId: 'alice' }, { maxActivePerOwner: 10 })
    await store.endRun(runId, 'completed')
  }
  now += 999
  t.match(await store.getRun('a'), { state: 'found' }, 'not a millisecond early')
  now += 1
  t.same(await store.getRun('c'), { state: 'expired', ownerId: 'alice' })
  t.same(await store.getRun('b'), { state: 'expired', ownerId: 'alice' })
  t.same(await store.getRun('a'), { state: 'missing' }, 'beyond maxTombstones the oldest tombstone is forgotten')
  await t.rejects(store.createRun({ runId: 'b', threadId: 't', agent: 'demo', ownerId: 'x' }, { maxActivePerOwner: 10 }), 'a remembered id is not reused')
  now += 5000
  t.same(await store.getRun('c'), { state: 'missing' }, 'tombstones expire too')
  await t.resolves(store.createRun({ runId: 'c', threadId: 't', agent: 'demo', ownerId: 'x' }, { maxActivePerOwner: 10 }))
})

t.test('a closed store is not ready', async (t) => {
  const store = createMemoryStore({ historyTtlMs: 1000 })
  await store.close()
  await t.rejects(store.ping(), /closed/)
})
