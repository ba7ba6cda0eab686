// The Redis store on a real Redis Cluster (3 primaries, 3 replicas on loopback): the same
// contract as on one Redis, and what only a cluster has — every script on one slot, sharded
// pub/sub, replicas acknowledging before delivery.
import t from 'tap'
import { Cluster } from 'ioredis'
import type { EventStore, StoredEvent } from '../../src/contracts.js'
import { createRedisStore } from '../../src/stores/redis-store.js'
import { clusterLayout, parseClusterUrl } from '../../src/stores/redis-topology.js'
import { eventStoreContract } from './contract.js'
import { clusterSkip, startCluster } from '../redis-cluster.js'
import { scriptCalls } from '../redis.js'

const skip = await clusterSkip(t)

t.test('on a Redis Cluster', { skip }, async (t) => {
  const cluster = await startCluster(t)
  let n = 0
  /** A store (node) of its own key prefix, or of `keyPrefix` to share one with another node. */
  const open = (keyPrefix = `agw-c${++n}:`): EventStore => {
    const store = createRedisStore({ url: cluster.url, historyTtlMs: 60_000, leaseTtlMs: 5000, keyPrefix })
    t.teardown(() => store.close())
    return store
  }

  t.test('the EventStore contract', async (t) => {
    eventStoreContract(t, async ({ historyTtlMs }) => createRedisStore({ url: cluster.url, historyTtlMs, leaseTtlMs: 5000, keyPrefix: 'agw-contract:' }))
  })

  t.test('the contract again with REDIS_MIN_REPLICAS_ACK=1: every batch waits for its replica', async (t) => {
    let shortfalls = 0
    eventStoreContract(t, async ({ historyTtlMs }) => createRedisStore({
      url: cluster.url, historyTtlMs, leaseTtlMs: 5000, keyPrefix: 'agw-contract-ack:', minReplicasAck: 1, onReplicaShortfall: () => { shortfalls++ }
    }))
    t.test('every batch reached a replica in time', async (t) => { t.equal(shortfalls, 0) })
  })

  t.test('asking for more replicas than a shard has: delivered after the timeout, and counted', async (t) => {
    const acks: number[] = []
    const store = createRedisStore({
      url: cluster.url, historyTtlMs: 60_000, leaseTtlMs: 5000, keyPrefix: `agw-c${++n}:`, minReplicasAck: 2, replicaAckTimeoutMs: 50, onReplicaShortfall: (acked) => { acks.push(acked) }
    })
    t.teardown(() => store.close())
    const runId = `run-short-${Date.now()}`
    await store.createRun({ runId, threadId: 't', agent: 'demo', ownerId: 'alice' }, { maxActivePerOwner: 4 })
    const started = Date.now()
    const event = await store.append(runId, 'agent_thinking', JSON.stringify({ thought: 'x', step: 1 }))
    t.equal(event.seq, 1)
    t.ok(Date.now() - started >= 45, 'it waited for the timeout')
    t.same(acks, [1], 'one shortfall, with the one replica that did acknowledge')
  })

  t.test('a run\'s keys, its owner\'s active set, its lease set and its live channel share one slot', async (t) => {
    const store = open()
    const ownerId = 'carol'
    const runId = `run-slot-${Date.now()}`
    await store.createRun({ runId, threadId: 't', agent: 'demo', ownerId }, { maxActivePerOwner: 4 })
    await store.append(runId, 'agent_thinking', JSON.stringify({ thought: 'x', step: 1 }))
    const layout = clusterLayout(`agw-c${n}:`)
    const slot = layout.slotOfOwner(ownerId)
    const direct = new Cluster(parseClusterUrl(cluster.url).nodes)
    t.teardown(() => { direct.disconnect() })
    const keys = [layout.run(runId, slot), layout.stream(runId, slot), layout.tools(runId, slot), layout.owner(runId, slot), layout.active(ownerId, slot), layout.leases(slot), layout.live(runId, slot)]
    const slots = new Set(await Promise.all(keys.map(async (name) => direct.cluster('KEYSLOT', name))))
    t.equal(slots.size, 1, 'one hash slot for all of them')
    t.equal(await direct.get(layout.index(runId)), slot, 'the run is indexed by its id')
    t.equal(await direct.exists(`agw-c${n}:leases`), 0, 'no global lease key')
  })

  t.test('live events cross nodes through sharded pub/sub, and a cancel reaches the executing node', async (t) => {
    const keyPrefix = `agw-c${++n}:`
    const [a, b] = [open(keyPrefix), open(keyPrefix)]
    const runId = `run-live-${Date.now()}`
    const stopped: string[] = []
    a.onStopRequest((id) => { stopped.push(id) })
    const created = await a.createRun({ runId, threadId: 't', agent: 'demo', ownerId: 'dave' }, { maxActivePerOwner: 4 })
    if (!created.created) throw new Error('not created')
    const seen: StoredEvent[] = []
    const subscription = b.subscribe(runId, (event) => { seen.push(event) })
    await subscription.ready
    await Promise.all(Array.from({ length: 20 }, (_, i) => a.append(runId, 'agent_thinking', JSON.stringify({ thought: `s${i}`, step: i + 1 }))))
    const deadline = Date.now() + 5000
    while (seen.length < 20 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    t.same(seen.map((event) => event.seq), Array.from({ length: 20 }, (_, i) => i + 1))
    t.same(seen.map((event) => event.frame.toString()), (await b.read(runId, 0, 100)).map((event) => event.frame.toString()), 'the same frames as the log')
    await b.requestStop((await b.getRun(runId) as { meta: Parameters<EventStore['requestStop']>[0] }).meta)
    while (stopped.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    t.same(stopped, [runId])
    subscription.unsubscribe()
  })

  t.test('the batches of several owners\' runs at once: one script call per slot, never across slots', async (t) => {
    const warnings: string[] = []
    const record = (...args: unknown[]): void => { warnings.push(String(args.at(-1))) }
    const store = createRedisStore({ url: cluster.url, historyTtlMs: 60_000, leaseTtlMs: 5000, keyPrefix: `agw-c${++n}:`, log: { warn: record, error: record } })
    t.teardown(() => store.close())
    // Four owners (four slots, on different primaries or not), three runs each.
    const runs = Array.from({ length: 12 }, (_, i) => ({ runId: `run-slots-${i}-${Date.now()}`, ownerId: `owner-${i % 4}` }))
    for (const { runId, ownerId } of runs) await store.createRun({ runId, threadId: `t-${runId}`, agent: 'demo', ownerId }, { maxActivePerOwner: 4 })
    const layout = clusterLayout(`agw-c${n}:`)
    const slots = new Set(runs.map(({ ownerId }) => layout.slotOfOwner(ownerId)))
    const direct = new Cluster(parseClusterUrl(cluster.url).nodes)
    t.teardown(() => { direct.disconnect() })
    // Every script call the cluster's primaries have executed (the suite's other files have clusters of their own).
    const calls = async (): Promise<number> => (await Promise.all(direct.nodes('master').map(scriptCalls))).reduce((sum, count) => sum + count, 0)
    await store.append(runs[0]?.runId ?? '', 'agent_thinking', JSON.stringify({ thought: 'loads the script', step: 0 }))
    for (const step of [1, 2]) {
      const before = await calls()
      const events = await Promise.all(runs.map(({ runId }) => store.append(runId, 'agent_thinking', JSON.stringify({ thought: `${runId} ${step}`, step }))))
      t.equal(await calls() - before, slots.size, `append ${step}: one call per slot (${slots.size})`)
      t.same(events.map((event) => event.seq), runs.map(({ runId }) => runId === runs[0]?.runId ? step + 1 : step), `append ${step}: each run its own seq`)
    }
    for (const { runId } of [runs[0], runs[5], runs[11]] as Array<{ runId: string }>) {
      const logged = await store.read(runId, 0, 10)
      t.same(logged.map((event) => (JSON.parse(event.frame.toString()) as { data: { thought: string } }).data.thought).slice(-2), [`${runId} 1`, `${runId} 2`], `${runId}: its own events`)
    }
    // A call that mixed slots would be refused (CROSSSLOT) and each batch retried on its own, with a warning.
    t.same(warnings, [], 'no call was refused')
  })

})

t.test('a whole shard gone (primary and replica): its runs stop after the lease, other shards carry on, ping names it', { skip }, async (t) => {
  const cluster = await startCluster(t, { nodeTimeoutMs: 1000 })
  const store = createRedisStore({ url: cluster.url, historyTtlMs: 60_000, leaseTtlMs: 1500, keyPrefix: 'agw-gone:' })
  t.teardown(() => store.close())
  const layout = clusterLayout('agw-gone:')
  const direct = new Cluster(parseClusterUrl(cluster.url).nodes)
  t.teardown(() => { direct.disconnect() })
  // One run per owner until two of them live on different primaries.
  const byPrimary = new Map<number, string>()
  for (let i = 0; byPrimary.size < 2 && i < 100; i++) {
    const ownerId = `owner-${i}`
    const runId = `run-gone-${i}`
    await store.createRun({ runId, threadId: 't', agent: 'demo', ownerId }, { maxActivePerOwner: 4 })
    const slot = await direct.cluster('KEYSLOT', layout.run(runId, layout.slotOfOwner(ownerId)))
    const ranges = await direct.cluster('SLOTS')
    const port = ranges.find(([from, to]) => slot >= from && slot <= to)?.[2]?.[1] ?? 0
    if (!byPrimary.has(port)) byPrimary.set(port, runId)
  }
  const [[gonePort, goneRun], [, otherRun]] = [...byPrimary] as [[number, string], [number, string]]
  for (const port of [gonePort, ...await cluster.replicasOf(gonePort)]) await cluster.kill(port)

  const other = await store.append(otherRun, 'agent_thinking', JSON.stringify({ thought: 'still here', step: 1 }))
  t.equal(other.seq, 1, 'a run on another shard carries on')
  const pinged = await store.ping().then(() => 'ready', (err: unknown) => String(err))
  t.match(pinged, new RegExp(`127\\.0\\.0\\.1:${gonePort}`), 'ping names the shard that is gone')
  const started = Date.now()
  await t.rejects(store.append(goneRun, 'agent_thinking', JSON.stringify({ thought: 'lost', step: 1 })), /within its lease/)
  t.ok(Date.now() - started < 5000, 'the run on the gone shard gave up after about the lease')
  t.equal((await store.append(otherRun, 'agent_thinking', JSON.stringify({ thought: 'and on', step: 2 }))).seq, 2, 'and the other run still carries on')
})
