// Redis for the tests: required in CI, skipped with a visible notice elsewhere when absent.
import { randomBytes } from 'node:crypto'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { Redis } from 'ioredis'
import { deleteKeysWithPrefix } from '../scripts/redis-keys.js'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0'

async function answers (url: string): Promise<boolean> {
  // A busy machine (the suite runs files in parallel) can hold a PING back for a while: only
  // several unanswered tries mean that Redis is not there.
  for (let attempt = 0; attempt < 4; attempt++) {
    if (await pings(url)) return true
  }
  return false
}

async function pings (url: string): Promise<boolean> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port || 6379) })
    socket.setTimeout(2500)
    socket.once('connect', () => { socket.write('PING\r\n') })
    socket.once('data', (data) => { socket.destroy(); resolve(data.toString().startsWith('+PONG')) })
    socket.once('error', () => { resolve(false) })
    socket.once('timeout', () => { socket.destroy(); resolve(false) })
  })
}

/**
 * The `skip` option of the Redis tests: false when Redis answers. Otherwise, in CI (where Redis
 * is required) the file fails; elsewhere its tests are skipped with a visible notice.
 */
export async function redisSkip (t: Test): Promise<false | string> {
  if (await answers(REDIS_URL)) return false
  if (process.env.CI !== undefined) {
    t.fail(`Redis is required in CI but does not answer at ${REDIS_URL} (.ci/run starts one)`)
    return false
  }
  process.stderr.write(`\n  NOTICE: Redis does not answer at ${REDIS_URL}; skipping the Redis tests (they are required in CI)\n\n`)
  return `Redis does not answer at ${REDIS_URL}`
}

/** A key prefix of this test's own, deleted afterwards. */
export function testPrefix (t: Test): string {
  const prefix = `agw-test-${randomBytes(4).toString('hex')}:`
  t.teardown(async () => {
    const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 })
    try {
      await redis.connect()
      await deleteKeysWithPrefix(redis, prefix)
    } finally {
      redis.disconnect()
    }
  })
  return prefix
}

/** The script calls a Redis node has executed (EVALSHA and EVAL), from INFO commandstats. */
export async function scriptCalls (redis: Pick<Redis, 'info'>): Promise<number> {
  const stats = await redis.info('commandstats')
  let calls = 0
  for (const [, count] of stats.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)) calls += Number(count)
  return calls
}

/** A redis-server of the test's own, on a free port, persisting every write (so it can restart). */
export class OwnRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'agw-redis-'))
  process?: ChildProcess
  constructor (readonly port: number) {}

  get url (): string {
    return `redis://127.0.0.1:${this.port}/0`
  }

  async start (): Promise<void> {
    this.process = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir,
      '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''
    ], { stdio: 'ignore' })
    const deadline = Date.now() + 10_000
    while (!(await answers(this.url))) {
      if (Date.now() > deadline) throw new Error('redis-server did not start')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  async stop (): Promise<void> {
    const child = this.process
    if (child === undefined || child.exitCode !== null) return
    child.kill('SIGTERM')
    await once(child, 'exit')
  }

  async dispose (): Promise<void> {
    await this.stop()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** A free TCP port for a server the test starts (below the ephemeral range: scripts/ports.ts). */
export { freePort } from '../scripts/ports.js'
