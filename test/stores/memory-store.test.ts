import { FrameLog } from '../../src/stores/frame-log.js'
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

t.test('the frame log keeps every frame byte for byte across its chunks, before and after it is sealed', async (t) => {
  const log = new FrameLog()
  const frames: string[] = []
  // Sizes from 1 byte to well past the first chunk, with multi-byte characters among them.
  for (let i = 0; i < 600; i++) {
    const text = `{"n":${i},"pad":"${'é'.repeat(i % 7)}${'x'.repeat((i * 37) % 3000)}"}`
    frames.push(text)
    const event = log.append('agent_thinking', text, 1000 + i)
    t.equal(event.seq, i + 1)
    if (event.frame.toString('utf8') !== text) t.fail(`frame ${i + 1} as appended`)
  }
  const check = (label: string): void => {
    const all = [...log.read(0, 250), ...log.read(250, 250), ...log.read(500, 250)]
    t.equal(all.length, 600, `${label}: every event read`)
    t.ok(all.every((event, i) => event.seq === i + 1 && event.at === 1000 + i && event.frame.toString('utf8') === frames[i]), `${label}: every frame identical, in seq order`)
    t.same(log.read(598, 10).map((event) => event.seq), [599, 600], `${label}: a read past the end stops at the end`)
  }
  check('open')
  log.seal()
  check('sealed')
})
