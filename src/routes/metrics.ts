// GET /metrics — Prometheus text format. With METRICS_TOKEN set it requires that bearer token
// (not a user JWT: scrapers are not users); without it, keep the endpoint off public networks.
import { timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { MetricsUnauthorizedError, MetricsDisabledError } from '../errors.js'

function sameToken (given: string, expected: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

async function metricsRoute (fastify: FastifyInstance): Promise<void> {
  const token = fastify.config.METRICS_TOKEN
  const registry = fastify.metricsRegistry
  if (registry === null) throw new MetricsDisabledError()
  fastify.get('/metrics', {
    onRequest: async (request: FastifyRequest) => {
      if (token === undefined) return
      const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')
      if (match?.[1] === undefined || !sameToken(match[1], token)) throw new MetricsUnauthorizedError()
    }
  }, async (_request, reply) => {
    reply.type(registry.contentType)
    return registry.metrics()
  })
}

export default fp(metricsRoute, { name: 'routes/metrics', fastify: '5.x', encapsulate: true, dependencies: ['config', 'telemetry'] })
