// The CI-sized chaos run (npm run chaos runs a larger one): fixed seed, every fault count zero.
import t from 'tap'
import { FAULT_COUNTS, runChaos } from '../scripts/chaos.js'

t.test('chaos: users drop, resubscribe, read slowly and cancel; nothing is lost, repeated or misdelivered', async (t) => {
  const counts = await runChaos({ users: 30, runsPerUser: 4, seed: 424242, dropRate: 0.03, slowShare: 0.3, cancelShare: 0.15 })
  t.comment(JSON.stringify(counts))
  t.equal(counts.runs, 120)
  t.ok(counts.drops > 10, `connections were dropped (${counts.drops}) and resubscribed (${counts.resubscribes})`)
  t.ok(counts.cancels > 0, 'runs were cancelled')
  t.ok(counts.events > 1000, `${counts.events} events were checked`)
  for (const name of FAULT_COUNTS) t.equal(counts[name], 0, name)
})
