// GET /healthz (the process is alive) and GET /readyz (it can serve: not shutting down, and the
// event store answers; with the state of each MCP server as detail). Load balancers route by
// /readyz; orchestrators restart by /healthz.
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { NotReadyError } from '../errors.js'

async function healthRoutes (fastify: FastifyInstance): Promise<void> {
  const { eventStore: store, runEngine: engine } = fastify

  fastify.get('/healthz', async () => ({ status: 'ok' }))

  fastify.get('/readyz', async () => {
    if (engine.closing) throw new NotReadyError('shutting down')
    try {
      await store.ping()
    } catch (err) {
      fastify.log.warn({ err }, 'event store is not reachable')
      // Which Redis (or which shard of a cluster) does not answer: the operator's first question.
      throw new NotReadyError(`the event store is not reachable (${err instanceof Error ? err.message : String(err)})`)
    }
    // MCP servers are reported, not required: one that is down fails only its own tools' calls.
    const mcpServers = fastify.hasDecorator('mcpServers') ? fastify.mcpServers.status() : {}
    return Object.keys(mcpServers).length === 0 ? { status: 'ready' } : { status: 'ready', mcpServers }
  })
}

export default fp(healthRoutes, { name: 'routes/health', fastify: '5.x', encapsulate: true, dependencies: ['event-store', 'run-engine'] })
