// The gateway on a real Redis Cluster (3 primaries + 3 replicas on loopback), end to end on real
// ports: two gateway nodes serving 200 users who move between them, and a primary killed with
// SIGKILL mid-run while every batch waits for a replica (REDIS_MIN_REPLICAS_ACK=1).
import t, { type Test } from 'tap'
import { FAULT_COUNTS, runChaos, type ChaosCounts, type ChaosOptions } from '../scripts/chaos.js'
import { clusterSkip, startCluster } from './redis-cluster.js'

const skip = await clusterSkip(t)
// Two clusters started, a failover waited for and two chaos rounds: about a minute on a quiet
// machine, and several times that while the rest of the suite runs beside it.
t.setTimeout(400_000)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function chaos (t: Test, options: ChaosOptions): Promise<ChaosCounts> {
  const counts = await runChaos(options)
  t.comment(JSON.stringify(counts))
  t.equal(counts.runs, options.users * options.runsPerUser, 'every run was started')
  for (const name of FAULT_COUNTS) t.equal(counts[name], 0, name)
  return counts
}

t.test('two gateway nodes on a Redis Cluster, 200 users: cross-node subscribe, resume by seq and cancel lose nothing', { skip }, async (t) => {
  const cluster = await startCluster(t)
  const counts = await chaos(t, { users: 200, runsPerUser: 1, seed: 1601, dropRate: 0.02, slowShare: 0.2, cancelShare: 0.15, store: cluster.url, keyPrefix: 'agw-two-nodes:' })
  t.ok(counts.drops > 10 && counts.resubscribes > 10, `clients dropped (${counts.drops}) and resumed on the other node (${counts.resubscribes})`)
  t.ok(counts.cancels > 0, `runs were cancelled (${counts.cancels}), some on the node not executing them`)
})

t.test('a primary is killed (kill -9) mid-run with REDIS_MIN_REPLICAS_ACK=1: its replica takes over and no client loses an event', { skip }, async (t) => {
  const cluster = await startCluster(t, { nodeTimeoutMs: 1000 })
  let killed = 0
  let inFlight = 0
  let readyz: { statusCode: number, body: string } | undefined
  const counts = await chaos(t, {
    users: 40,
    runsPerUser: 3,
    seed: 1602,
    dropRate: 0.02,
    slowShare: 0.2,
    cancelShare: 0.1,
    store: cluster.url,
    keyPrefix: 'agw-failover:',
    // Long enough that runs in flight outlive the failover rather than time out during it.
    env: { REDIS_MIN_REPLICAS_ACK: '1', REDIS_REPLICA_ACK_TIMEOUT_MS: '100', RUN_TIMEOUT_MS: '30000' },
    during: async (nodes) => {
      await sleep(300)
      // The primary with the most runs in flight right now.
      const running = await Promise.all((await cluster.primaries()).map(async (port) => {
        const keys = (await cluster.info(port, '--scan', '--pattern', 'agw-failover:*:run:*')).split('\n').filter(Boolean)
        const statuses = await Promise.all(keys.map(async (name) => (await cluster.info(port, 'HGET', name, 'status')).trim()))
        return { port, running: statuses.filter((status) => status === 'running').length }
      }))
      const target = running.sort((x, y) => y.running - x.running)[0]
      inFlight = target?.running ?? 0
      killed = target?.port ?? 0
      await cluster.kill(killed)
      // Before the replica takes over, readiness names the shard that is gone.
      for (let i = 0; i < 20 && readyz?.statusCode !== 503; i++) {
        const response = await nodes[0]?.inject('/readyz')
        readyz = { statusCode: response?.statusCode ?? 0, body: response?.body ?? '' }
        await sleep(50)
      }
    }
  })
  t.ok(inFlight > 0, `${inFlight} runs were in flight on the killed primary`)
  t.ok(counts.events > 500, `${counts.events} events were checked`)
  t.equal(readyz?.statusCode, 503, 'not ready while a shard has no primary')
  t.match(readyz?.body, `127.0.0.1:${killed}`, 'and /readyz names it')
  const primaries = await cluster.primaries()
  t.equal(primaries.length, 3, 'a replica took over the dead primary\'s slots')
  t.notOk(primaries.includes(killed))
})
