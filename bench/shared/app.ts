// The app the in-process benches (bench:engine, bench:stream) measure: built as src/server.ts
// builds it — production config, the real logger at `silent`, the memory store — with the bench
// agent registered through the public `agents` option, and ready.
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
// What src/server.ts imports (not the package's entry, which also loads the Redis store).
import { build } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import type { Agent } from '../../src/contracts.js'
import { loggerOptions } from '../../src/logger.js'
import { BENCH_AGENT } from './plan.js'

/** `env`: settings on top of the bench's own (a store bound, say). */
export async function benchApp (agent: Agent, env: Readonly<Record<string, string>> = {}): Promise<FastifyInstance> {
  const config = loadConfig({
    APP_ENV: 'production',
    LOG_LEVEL: 'silent',
    JWT_SECRET: randomBytes(32).toString('base64url'),
    EVENT_STORE: 'memory',
    MAX_CONCURRENT_RUNS: '10000',
    SHUTDOWN_GRACE_MS: '0',
    ...env
  })
  const app = await build({ config, logger: loggerOptions(config), agents: { [BENCH_AGENT]: agent }, page: false })
  await app.ready()
  return app
}
