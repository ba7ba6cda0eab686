import t from 'tap'
import { Redis } from 'ioredis'
import type { StoredEvent } from '../../src/stores/event-store.js'
import { createRedisStore } from '../../src/stores/redis-store.js'
import { REDIS_URL, redisSkip, testPrefix } from '../redis.js'
import { eventStoreContract } from './contract.js'

const skip = await redisSkip(t)

t.test('the EventStore contract, on Redis', { skip }, async (t) => {
  const keyPrefix = testPrefix(t)
  eventStoreContract(t, async ({ historyTtlMs }) => createRedisStore({ url: REDIS_URL, historyTtlMs, leaseTtlMs: 5000, keyPrefix }))
})

t.test('a batch of appends crosses to the subscribers in one pub/sub message, frames intact', { skip }, async (t) => {
  const keyPrefix = testPrefix(t)
  const store = createRedisStore({ url: REDIS_URL, historyTtlMs: 60_000, leaseTtlMs: 5000, keyPrefix })
  t.teardown(() => store.close())
  const runId = `run-batch-${process.pid}`
  await store.createRun({ runId, threadId: 'thread-b', agent: 'demo', ownerId: 'alice' }, { maxActivePerOwner: 4 })
  const watcher = new Redis(REDIS_URL)
  t.teardown(() => { watcher.disconnect() })
  const messages: string[] = []
  watcher.on('message', (_channel: string, message: string) => { messages.push(message) })
  await watcher.subscribe(`${keyPrefix}live:{${runId}}`)
  const received: StoredEvent[] = []
  const subscription = store.subscribe(runId, (event) => { received.push(event) })
  await subscription.ready

  const data = (n: number): string => JSON.stringify({ thought: `line one\nline "two" ${n} ✓`, step: n })
  await Promise.all(Array.from({ length: 50 }, (_, i) => store.append(runId, 'agent_thinking', data(i + 1))))
  await until(() => received.length === 50, 'the 50 live events')
  // A later append's message arrives after every message of the batch (one connection, in order).
  await store.append(runId, 'agent_thinking', data(51))
  await until(() => messages.some((message) => message.includes('"step":51')), 'the next append\'s message')
  t.equal(messages.length, 2, 'one message for the batch of 50, one for the next append')
  await until(() => received.length === 51, 'the 51st live event')
  t.same(received.map((event) => event.seq), Array.from({ length: 51 }, (_, i) => i + 1))
  const logged = await store.read(runId, 0, 100)
  t.same(received.map((event) => event.frame.toString()), logged.map((event) => event.frame.toString()), 'live frames equal the logged ones')
  t.equal((JSON.parse(received[49]?.frame.toString() ?? '') as { data: { thought: string } }).data.thought, 'line one\nline "two" 50 ✓')
  subscription.unsubscribe()
})

t.test('a live message of an unknown format makes subscribers re-read the log, and nothing breaks', { skip }, async (t) => {
  const keyPrefix = testPrefix(t)
  const store = createRedisStore({ url: REDIS_URL, historyTtlMs: 60_000, leaseTtlMs: 5000, keyPrefix })
  t.teardown(() => store.close())
  const runId = `run-format-${process.pid}`
  await store.createRun({ runId, threadId: 'thread-f', agent: 'demo', ownerId: 'alice' }, { maxActivePerOwner: 4 })
  const received: number[] = []
  let resyncs = 0
  const subscription = store.subscribe(runId, (event) => { received.push(event.seq) }, () => { resyncs++ })
  await subscription.ready
  const publisher = new Redis(REDIS_URL)
  t.teardown(() => { publisher.disconnect() })
  for (const foreign of ['1\nagent_thinking\n2026-01-01T00:00:00.000Z\nthread-f\n{}', 'b1\nthread-f\n1\nagent_thinking', '']) {
    await publisher.publish(`${keyPrefix}live:{${runId}}`, foreign)
  }
  await until(() => resyncs === 3, 'three resyncs')
  t.same(received, [], 'nothing delivered from them')
  await store.append(runId, 'agent_thinking', JSON.stringify({ thought: 'still fine', step: 1 }))
  await until(() => received.length === 1, 'the next event')
  t.same(received, [1])
  subscription.unsubscribe()
})

async function until (condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
