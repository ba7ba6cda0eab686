// The CI-sized chaos runs (npm run chaos runs larger ones): fixed seeds, every fault count zero.
import t, { type Test } from 'tap'
import { FAULT_COUNTS, runChaos, type ChaosOptions } from '../scripts/chaos.js'
import { REDIS_URL, redisSkip, testPrefix } from './redis.js'

const skip = await redisSkip(t)

async function chaos (t: Test, options: ChaosOptions): Promise<void> {
  const counts = await runChaos(options)
  t.comment(JSON.stringify(counts))
  t.equal(counts.runs, options.users * options.runsPerUser)
  t.ok(counts.drops > 10, `connections were dropped (${counts.drops}) and resubscribed (${counts.resubscribes})`)
  t.ok(counts.cancels > 0, 'runs were cancelled')
  t.ok(counts.events > 1000, `${counts.events} events were checked`)
  for (const name of FAULT_COUNTS) t.equal(counts[name], 0, name)
}

t.test('chaos on the memory store: users drop, resubscribe, read slowly and cancel; nothing is lost, repeated or misdelivered', async (t) => {
  await chaos(t, { users: 30, runsPerUser: 4, seed: 424242, dropRate: 0.03, slowShare: 0.3, cancelShare: 0.15 })
})

t.test('chaos on Redis, two nodes: users also move between nodes on every reconnect', { skip }, async (t) => {
  await chaos(t, { users: 20, runsPerUser: 4, seed: 777, dropRate: 0.03, slowShare: 0.3, cancelShare: 0.15, store: REDIS_URL, keyPrefix: testPrefix(t) })
})
