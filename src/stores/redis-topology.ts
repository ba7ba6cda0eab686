// What differs between one Redis and a Redis Cluster for the Redis store: the connections, the
// pub/sub flavour, and the key layout. The store's logic (src/stores/redis-store.ts) is the same on
// both. On a cluster every script touches one hash slot: a run's keys, its owner's active set, the
// lease set that covers it and its live channel all carry the hash tag of its owner's bucket.
// Layout and reasoning: docs/scaling.md.
import { createRequire } from 'node:module'
import type { ClusterNode, Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'

type IoRedis = typeof import('ioredis')
let ioredisModule: IoRedis | undefined

/**
 * ioredis (a CommonJS package, about 1 MiB of heap), required when the first topology is made:
 * a host app that imports the package's entry for the memory store never loads it, while
 * createRedisStore stays synchronous.
 */
function ioredis (): IoRedis {
  ioredisModule ??= createRequire(import.meta.url)('ioredis') as IoRedis
  return ioredisModule
}

/** Buckets of owners on a cluster: the unit that lands on a hash slot (fixed: changing it moves every owner). */
export const OWNER_BUCKETS = 256

const CLUSTER_SLOTS = 16_384

/** Where a run's keys live: '' on one Redis, its owner's bucket tag (`b17`) on a cluster. */
export type Slot = string

export interface KeyLayout {
  /** True when runs must be looked up by runId to find their slot (cluster). */
  readonly indexed: boolean
  slotOfOwner(ownerId: string): Slot
  run(runId: string, slot: Slot): string
  stream(runId: string, slot: Slot): string
  tools(runId: string, slot: Slot): string
  /** Who owned a run, kept a while after its history expired (for HISTORY_EXPIRED). */
  owner(runId: string, slot: Slot): string
  active(ownerId: string, slot: Slot): string
  /** A thread's latest run (the chat endpoint's one run in flight per thread). */
  thread(ownerId: string, threadId: string, slot: Slot): string
  /** A run's key is runKeyHead(slot) + runId + runKeyTail: the create script builds one from a thread's latest run. */
  runKeyHead(slot: Slot): string
  readonly runKeyTail: string
  leases(slot: Slot): string
  live(runId: string, slot: Slot): string
  control(node: string): string
  /** Cluster only: runId → slot, so a run can be found from its id alone. */
  index(runId: string): string
  /** Every slot whose lease set the reaper scans. */
  readonly slots: readonly Slot[]
}

/** One Redis: the layout the store has always had (one lease set, runs tagged by runId). */
export function singleLayout (prefix: string): KeyLayout {
  return {
    indexed: false,
    slotOfOwner: () => '',
    run: (runId) => `${prefix}run:{${runId}}`,
    stream: (runId) => `${prefix}events:{${runId}}`,
    tools: (runId) => `${prefix}tools:{${runId}}`,
    owner: (runId) => `${prefix}owner:{${runId}}`,
    active: (ownerId) => `${prefix}active:{${ownerId}}`,
    // A thread id never holds '/', so the owner after it cannot be mistaken for part of it.
    thread: (ownerId, threadId) => `${prefix}thread:${threadId}/${ownerId}`,
    runKeyHead: () => `${prefix}run:{`,
    runKeyTail: '}',
    leases: () => `${prefix}leases`,
    live: (runId) => `${prefix}live:{${runId}}`,
    control: (node) => `${prefix}control:${node}`,
    index: (runId) => `${prefix}run:{${runId}}`,
    slots: ['']
  }
}

/** FNV-1a: a stable, well-spread hash of an owner id. */
function fnv1a (text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash
}

/** A cluster: everything of a run in its owner's bucket `{b<n>}`; leases sharded by bucket. */
export function clusterLayout (prefix: string): KeyLayout {
  const tagged = (slot: Slot, rest: string): string => `${prefix}{${slot}}:${rest}`
  return {
    indexed: true,
    slotOfOwner: (ownerId) => `b${fnv1a(ownerId) % OWNER_BUCKETS}`,
    run: (runId, slot) => tagged(slot, `run:${runId}`),
    stream: (runId, slot) => tagged(slot, `events:${runId}`),
    tools: (runId, slot) => tagged(slot, `tools:${runId}`),
    owner: (runId, slot) => tagged(slot, `owner:${runId}`),
    active: (ownerId, slot) => tagged(slot, `active:${ownerId}`),
    thread: (ownerId, threadId, slot) => tagged(slot, `thread:${threadId}/${ownerId}`),
    runKeyHead: (slot) => tagged(slot, 'run:'),
    runKeyTail: '',
    leases: (slot) => tagged(slot, 'leases'),
    live: (runId, slot) => tagged(slot, `live:${runId}`),
    control: (node) => `${prefix}{node-${node}}:control`,
    index: (runId) => `${prefix}{${runId}}:slot`,
    slots: Array.from({ length: OWNER_BUCKETS }, (_, i) => `b${i}`)
  }
}

/** The live side: pub/sub on one Redis, sharded pub/sub (SSUBSCRIBE) on a cluster. */
export interface LiveConnection {
  subscribe(channel: string): Promise<unknown>
  unsubscribe(channel: string): Promise<unknown>
  onMessage(handler: (channel: Buffer, payload: Buffer) => void): void
  /** After the subscriptions may have missed messages (a reconnection, a failover). */
  onResubscribed(handler: () => void): void
  quit(): Promise<unknown>
}

export interface Topology {
  readonly kind: 'redis' | 'cluster'
  /** Commands; a Cluster routes each by its keys (its command signatures are those of Redis). */
  readonly command: Redis
  readonly live: LiveConnection
  /** The publish command scripts use for live channels. */
  readonly publish: 'PUBLISH' | 'SPUBLISH'
  readonly layout: KeyLayout
  /** Resolves when every shard answers; rejects naming the ones that do not. */
  ping(): Promise<void>
  quit(): Promise<void>
}

export function backoff (attempt: number): number {
  return Math.min(2000, 50 * 2 ** Math.min(attempt, 6))
}

function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what} did not answer within ${ms} ms`)) }, ms) })
  ]).finally(() => { clearTimeout(timer) })
}

// Commands wait out an outage (no retry limit) instead of failing: events are delayed, not lost.
// Starting while Redis is unreachable is allowed: /readyz says not ready until it answers.
const WAIT_OUT_OUTAGES = { maxRetriesPerRequest: null, enableOfflineQueue: true, retryStrategy: backoff }

function singleTopology (url: string, prefix: string, log?: Pick<FastifyBaseLogger, 'warn'>): Topology {
  // No auto-pipelining: the store already sends one script call per slot per turn for every run
  // with events waiting, and ioredis sends an auto-pipeline only once the previous one is
  // answered, so a paced event could wait a whole round trip before leaving (docs/performance.md,
  // "Auto-pipelining off").
  const { Redis: Client } = ioredis()
  const command = new Client(url, WAIT_OUT_OUTAGES)
  const subscriber = new Client(url, { ...WAIT_OUT_OUTAGES, autoResubscribe: true })
  command.on('error', (err: Error) => { log?.warn({ err: err.message }, 'redis command connection error') })
  subscriber.on('error', (err: Error) => { log?.warn({ err: err.message }, 'redis subscriber connection error') })
  return {
    kind: 'redis',
    command,
    publish: 'PUBLISH',
    layout: singleLayout(prefix),
    live: {
      subscribe: (channel) => subscriber.subscribe(channel),
      unsubscribe: (channel) => subscriber.unsubscribe(channel),
      onMessage: (handler) => { subscriber.on('messageBuffer', handler) },
      onResubscribed: (handler) => {
        // ioredis resubscribes by itself on reconnection; the first 'ready' is the first connection.
        let connectedBefore = false
        subscriber.on('ready', () => {
          if (connectedBefore) handler()
          connectedBefore = true
        })
      },
      quit: () => subscriber.quit()
    },
    async ping () {
      // While reconnecting a PING would only wait in the offline queue: report it at once.
      if (command.status === 'reconnecting' || command.status === 'end') throw new Error(`redis is ${command.status}`)
      await withTimeout(command.ping(), 1000, 'redis')
    },
    async quit () {
      await Promise.allSettled([command.quit(), subscriber.quit()])
    }
  }
}

/** The seed nodes and credentials of a `redis-cluster://[user:password@]host:port,host:port` URL. */
export function parseClusterUrl (url: string): { nodes: ClusterNode[], username?: string, password?: string } {
  const match = /^redis-cluster:\/\/(?:([^@/]*)@)?([^/?#]+)\/?$/.exec(url)
  if (match === null) throw new Error('a redis-cluster URL is redis-cluster://[user:password@]host:port[,host:port…]')
  const nodes = (match[2] as string).split(',').map((hostPort) => {
    const at = hostPort.lastIndexOf(':')
    const port = Number(hostPort.slice(at + 1))
    if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`"${hostPort}" is not host:port`)
    return { host: hostPort.slice(0, at), port }
  })
  const credentials = match[1]
  if (credentials === undefined) return { nodes }
  const colon = credentials.indexOf(':')
  const username = decodeURIComponent(colon < 0 ? '' : credentials.slice(0, colon))
  const password = decodeURIComponent(colon < 0 ? credentials : credentials.slice(colon + 1))
  return { nodes, ...(username === '' ? {} : { username }), password }
}

function clusterTopology (url: string, prefix: string, log?: Pick<FastifyBaseLogger, 'warn'>): Topology {
  const { nodes, username, password } = parseClusterUrl(url)
  const options = {
    redisOptions: { ...(username === undefined ? {} : { username }), ...(password === undefined ? {} : { password }) },
    enableOfflineQueue: true,
    clusterRetryStrategy: backoff,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 200,
    maxRedirections: 32
  }
  // No auto-pipelining, as on one Redis; on the bench's cluster it also lowered events/s and raised
  // redis-server's CPU per event.
  const { Cluster: ClusterClient } = ioredis()
  const command = new ClusterClient(nodes, options)
  const subscriber = new ClusterClient(nodes, { ...options, shardedSubscribers: true })
  command.on('error', (err: Error) => { log?.warn({ err: err.message }, 'redis cluster command error') })
  subscriber.on('error', (err: Error) => { log?.warn({ err: err.message }, 'redis cluster subscriber error') })
  const channels = new Set<string>()
  /** Who served each slot when last seen: how a shard that is gone is named. */
  const lastPrimary: string[] = []
  const rememberPrimaries = (): void => {
    for (let slot = 0; slot < CLUSTER_SLOTS; slot++) {
      const primary = command.slots[slot]?.[0]
      if (primary !== undefined) lastPrimary[slot] = primary
    }
  }
  command.on('refresh', rememberPrimaries)
  return {
    kind: 'cluster',
    // Cluster has every command Redis has, routed by key; the store only uses keyed commands
    // (and PING/WAIT, which it sends to a chosen node).
    command: command as unknown as Redis,
    publish: 'SPUBLISH',
    layout: clusterLayout(prefix),
    live: {
      subscribe: async (channel) => {
        channels.add(channel)
        return subscriber.ssubscribe(channel)
      },
      unsubscribe: async (channel) => {
        channels.delete(channel)
        return subscriber.sunsubscribe(channel)
      },
      onMessage: (handler) => { subscriber.on('smessageBuffer', handler) },
      onResubscribed: (handler) => {
        // The sharded subscribers are rebuilt when the topology changes (a failover): subscribe
        // again, and only then tell the store, so that the log it re-reads misses nothing after.
        const group = (subscriber as unknown as { subscriberGroupEmitter?: NodeJS.EventEmitter }).subscriberGroupEmitter
        let first = true
        group?.on('subscribersReady', () => {
          if (first) {
            first = false
            return
          }
          Promise.all([...channels].map(async (channel) => subscriber.ssubscribe(channel)))
            .catch((err: unknown) => { log?.warn({ err }, 'could not subscribe again after a topology change') })
            .finally(handler)
        })
      },
      quit: () => subscriber.quit()
    },
    async ping () {
      if (command.status === 'end' || command.status === 'close') throw new Error(`redis cluster is ${command.status}`)
      // Still connecting: the first command waits for the slots map.
      if (command.status !== 'ready') await withTimeout(command.ping(), 1000, 'redis cluster')
      const primaries = command.nodes('master')
      const failures = (await Promise.all(primaries.map(async (node) => {
        const name = `${node.options.host ?? ''}:${node.options.port ?? ''}`
        try {
          await withTimeout(node.ping(), 1000, `shard ${name}`)
          return undefined
        } catch (err) {
          return err instanceof Error && err.message.startsWith('shard') ? err.message : `shard ${name}: ${String(err)}`
        }
      }))).filter((failure) => failure !== undefined)
      // Slots no connected primary serves (its shard is gone, replicas too): named by who served them last.
      rememberPrimaries()
      const gone = new Map<string, number[]>()
      const connected = new Set(primaries.map((node) => `${node.options.host ?? ''}:${node.options.port ?? ''}`))
      for (let slot = 0; slot < CLUSTER_SLOTS; slot++) {
        const primary = command.slots[slot]?.[0]
        if (primary !== undefined && connected.has(primary)) continue
        const name = primary ?? lastPrimary[slot] ?? 'unknown'
        gone.set(name, [...(gone.get(name) ?? []), slot])
      }
      for (const [name, slots] of gone) failures.push(`shard ${name}: ${slots.length} slots (${slots[0] ?? ''}–${slots.at(-1) ?? ''}) have no primary`)
      if (failures.length > 0) throw new Error(failures.join('; '))
    },
    async quit () {
      await Promise.allSettled([command.quit(), subscriber.quit()])
    }
  }
}

export function connectTopology (url: string, prefix: string, log?: Pick<FastifyBaseLogger, 'warn'>): Topology {
  return url.startsWith('redis-cluster://') ? clusterTopology(url, prefix, log) : singleTopology(url, prefix, log)
}
