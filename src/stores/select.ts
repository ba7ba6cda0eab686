// Which event store EVENT_STORE names: the embedded memory store, or Redis (one server or a
// cluster) shared by every node. Naming the memory store loads no Redis client: the Redis store
// requires ioredis when its first connection is made (redis-topology.ts).
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config.js'
import type { EventStore } from '../contracts.js'
import { createMemoryStore } from './memory-store.js'
import { createRedisStore } from './redis-store.js'

export interface StoreReports {
  /** A batch of events was delivered before REDIS_MIN_REPLICAS_ACK replicas held it. */
  replicaAckShortfall?: () => void
}

export function createEventStore (config: Config, log: FastifyBaseLogger, reports: StoreReports = {}): EventStore {
  if (config.EVENT_STORE === 'memory') {
    return createMemoryStore({
      historyTtlMs: config.RUN_HISTORY_TTL_MS,
      maxBytes: config.MEMORY_STORE_MAX_BYTES,
      maxBytesPerOwner: config.MEMORY_STORE_MAX_BYTES_PER_USER
    })
  }
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
