// What an event costs Redis: one gateway process appends events straight into the Redis store, on
// one Redis and on a throwaway 3 + 3 Redis Cluster (with and without REDIS_MIN_REPLICAS_ACK=1),
// and reports events/s and the Redis CPU per event (INFO cpu, summed over the servers). The model
// in docs/scaling.md ("How it grows with shards") starts from these numbers.
//   npm run store-cost -- [--redis redis://127.0.0.1:6379/0] [--runs 100] [--events 300]
// The one-Redis CPU figure counts everything that server does meanwhile: use a Redis of your own.
import { execFileSync } from 'node:child_process'
import { parseArgs } from 'node:util'
import { createRedisStore } from '../src/stores/redis-store.js'
import { RedisCluster } from './redis-cluster.js'

function cpuSeconds (port: number): number {
  const info = execFileSync('redis-cli', ['-p', String(port), 'INFO', 'cpu']).toString()
  const field = (name: string): number => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0)
  return field('used_cpu_sys') + field('used_cpu_user')
}

async function measure (label: string, url: string, ports: number[], minReplicasAck: number, runs: number, events: number): Promise<void> {
  const keyPrefix = `agw-cost-${process.pid}-${Date.now()}:`
  const store = createRedisStore({ url, historyTtlMs: 60_000, leaseTtlMs: 15_000, keyPrefix, minReplicasAck })
  try {
    const data = JSON.stringify({ thought: 'x'.repeat(180), step: 1 })
    for (let r = 0; r < runs; r++) await store.createRun({ runId: `run-${r}`, threadId: 't', agent: 'cost', ownerId: `user-${r}` }, { maxActivePerOwner: 10 })
    const cpuBefore = ports.reduce((sum, port) => sum + cpuSeconds(port), 0)
    const started = performance.now()
    // Each run awaits every 10th append: batches of about 10, as a chatty agent produces.
    await Promise.all(Array.from({ length: runs }, async (_, r) => {
      for (let e = 0; e < events; e++) {
        const appended = store.append(`run-${r}`, 'agent_thinking', data)
        if (e % 10 === 9) await appended
      }
    }))
    const seconds = (performance.now() - started) / 1000
    const cpu = ports.reduce((sum, port) => sum + cpuSeconds(port), 0) - cpuBefore
    const total = runs * events
    process.stdout.write(`${label.padEnd(34)} ${Math.round(total / seconds).toString().padStart(7)} events/s   ${(cpu * 1e6 / total).toFixed(1).padStart(5)} µs Redis CPU per event\n`)
  } finally {
    await store.close()
  }
}

const { values } = parseArgs({
  options: { redis: { type: 'string', default: 'redis://127.0.0.1:6379/0' }, runs: { type: 'string', default: '100' }, events: { type: 'string', default: '300' } }
})
const runs = Number(values.runs)
const events = Number(values.events)
const cluster = new RedisCluster()
await cluster.start()
try {
  await measure('one Redis', values.redis, [Number(new URL(values.redis).port || 6379)], 0, runs, events)
  await measure('cluster 3+3', cluster.url, cluster.ports, 0, runs, events)
  await measure('cluster 3+3, REDIS_MIN_REPLICAS_ACK=1', cluster.url, cluster.ports, 1, runs, events)
} finally {
  await cluster.stop()
}
