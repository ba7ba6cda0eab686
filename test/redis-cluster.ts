// A Redis Cluster of the test's own (3 primaries + 3 replicas on loopback ports), torn down after.
import type { Test } from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { RedisCluster, type RedisClusterOptions } from '../scripts/redis-cluster.js'

async function hasBinaries (): Promise<boolean> {
  try {
    await Promise.all(['redis-server', 'redis-cli'].map(async (binary) => promisify(execFile)(binary, ['--version'])))
    return true
  } catch {
    return false
  }
}

/** The `skip` of the cluster tests: required in CI (.ci/run installs redis-server), skipped visibly elsewhere. */
export async function clusterSkip (t: Test): Promise<false | string> {
  if (await hasBinaries()) return false
  if (process.env.CI !== undefined) {
    t.fail('redis-server and redis-cli are required in CI (.ci/run installs them)')
    return false
  }
  process.stderr.write('\n  NOTICE: redis-server/redis-cli not found; skipping the Redis Cluster tests (they are required in CI)\n\n')
  return 'redis-server/redis-cli not found'
}

export async function startCluster (t: Test, options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const cluster = new RedisCluster(options)
  t.teardown(() => cluster.stop())
  await cluster.start()
  return cluster
}
