// GET /metrics — Prometheus text format. With METRICS_TOKEN set it requires that bearer token
// (not a user JWT: scrapers are not users); without it, keep the endpoint off public networks.
import { timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { MetricsUnauthorizedError, httpErrorHandler } from '../errors.js'

function sameToken (given: string, expected: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

async function metricsRoute (fastify: FastifyInstance): Promise<void> {
  const token = fastify.config.METRICS_TOKEN
  fastify.setErrorHandler(httpErrorHandler)
  fastify.get('/metrics', {
    onRequest: async (request: FastifyRequest) => {
      if (token === undefined) return
      const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')
      if (match?.[1] === undefined || !sameToken(match[1], token)) throw new MetricsUnauthorizedError()
    }
  }, async (_request, reply) => {
    reply.type(fastify.metricsRegistry.contentType)
    return fastify.metricsRegistry.metrics()
  })
}

export default fp(metricsRoute, { name: 'routes/metrics', fastify: '5.x', encapsulate: true, dependencies: ['config', 'metrics'] })
