// Deleting every key under a prefix: how the tests and the benchmark clean up after their own
// Redis keys (each uses a REDIS_KEY_PREFIX of its own on a shared Redis).
import { Redis } from 'ioredis'

/** A short-lived connection to `url` for `use`, which fails at once (no retries) if Redis is not there. */
export async function withRedis<T> (url: string, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2000, retryStrategy: () => null })
  redis.on('error', () => {})
  try {
    await redis.connect()
    return await use(redis)
  } finally {
    redis.disconnect()
  }
}

export async function deleteKeysWithPrefix (redis: Redis, prefix: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) await redis.del(...keys)
  } while (cursor !== '0')
}
