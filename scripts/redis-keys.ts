// Deleting every key under a prefix: how the tests and the benchmark clean up after their own
// Redis keys (each uses a REDIS_KEY_PREFIX of its own on a shared Redis).
import type { Redis } from 'ioredis'

export async function deleteKeysWithPrefix (redis: Redis, prefix: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) await redis.del(...keys)
  } while (cursor !== '0')
}
