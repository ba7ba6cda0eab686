// Which event store EVENT_STORE names: the embedded memory store, or Redis (one server or a
// cluster) shared by every node. The Redis store, and with it ioredis (about 1 MiB of heap), is
// loaded only when it is the one named.
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config.js'
import type { EventStore } from '../contracts.js'
import { createMemoryStore } from './memory-store.js'

export interface StoreReports {
  /** A batch of events was delivered before REDIS_MIN_REPLICAS_ACK replicas held it. */
  replicaAckShortfall?: () => void
}

export async function createEventStore (config: Config, log: FastifyBaseLogger, reports: StoreReports = {}): Promise<EventStore> {
  if (config.EVENT_STORE === 'memory') {
    return createMemoryStore({
      historyTtlMs: config.RUN_HISTORY_TTL_MS,
      maxBytes: config.MEMORY_STORE_MAX_BYTES,
      maxBytesPerOwner: config.MEMORY_STORE_MAX_BYTES_PER_USER
    })
  }
  const { createRedisStore } = await import('./redis-store.js')
  return createRedisStore({
    url: config.EVENT_STORE,
    historyTtlMs: config.RUN_HISTORY_TTL_MS,
    leaseTtlMs: config.LEASE_TTL_MS,
    keyPrefix: config.REDIS_KEY_PREFIX,
    minReplicasAck: config.REDIS_MIN_REPLICAS_ACK,
    replicaAckTimeoutMs: config.REDIS_REPLICA_ACK_TIMEOUT_MS,
    ...(reports.replicaAckShortfall === undefined ? {} : { onReplicaShortfall: reports.replicaAckShortfall }),
    log
  })
}
