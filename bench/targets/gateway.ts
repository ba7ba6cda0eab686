// Target (a): the gateway itself, built from src/ exactly as src/server.ts builds it (the real
// logger, at LOG_LEVEL=silent), with a bench agent registered through the public plugin API, so
// every event takes the whole path: engine → emitter → log → fan-out → socket. Heartbeats stay on.
//   env: BENCH_SECRET, BENCH_STORE (memory | redis://…), BENCH_REDIS_PREFIX
// What src/server.ts imports (not the package's entry, which also loads the Redis store).
import { build } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import type { Agent } from '../../src/contracts.js'
import { loggerOptions } from '../../src/logger.js'
import { BENCH_AGENT, emitRun, toPlan } from '../shared/plan.js'
import { serveControl } from '../shared/control.js'

const bench: Agent = async ({ input, think, say, signal, drain }) => {
  // drain: the agent API's backpressure, as a fast agent should use it (a no-op wait unless the
  // store lags behind, as Redis does under this load).
  const events = await emitRun(toPlan(input), { think, say }, signal, drain)
  return { events: events + 2 }
}

const config = loadConfig({
  APP_ENV: 'production',
  LOG_LEVEL: 'silent',
  JWT_SECRET: process.env.BENCH_SECRET,
  EVENT_STORE: process.env.BENCH_STORE ?? 'memory',
  REDIS_KEY_PREFIX: process.env.BENCH_REDIS_PREFIX,
  // Limits that would otherwise throttle the workload: 5,000 handshakes from one address,
  // 1,000 users starting runs at once.
  HTTP_RATE_LIMIT_MAX: '1000000',
  MAX_CONNECTIONS_PER_USER: '100000',
  MESSAGE_RATE_PER_SEC: '100000',
  MESSAGE_RATE_BURST: '100000',
  MAX_CONCURRENT_RUNS: '10000',
  SHUTDOWN_GRACE_MS: '0'
})
const app = await build({ config, logger: loggerOptions(config), agents: { [BENCH_AGENT]: bench }, page: false })
await app.listen({ port: 0, host: '127.0.0.1' })
serveControl((app.server.address() as { port: number }).port, () => app.close())
