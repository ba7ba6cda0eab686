import t from 'tap'
import { createRedisStore } from '../../src/stores/redis-store.js'
import { REDIS_URL, redisSkip, testPrefix } from '../redis.js'
import { eventStoreContract } from './contract.js'

const skip = await redisSkip(t)

t.test('the EventStore contract, on Redis', { skip }, async (t) => {
  const keyPrefix = testPrefix(t)
  eventStoreContract(t, async ({ historyTtlMs }) => createRedisStore({ url: REDIS_URL, historyTtlMs, leaseTtlMs: 5000, keyPrefix }))
})
