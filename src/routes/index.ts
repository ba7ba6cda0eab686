// The gateway's routes, composed in one encapsulated scope that sets their shared plumbing once:
// the error handler that answers every failure as { code, message }, and — for the API a user
// calls — one HTTP rate-limit budget per client address, counted before authentication. Health,
// metrics and the demo page stay outside the budget (probes and scrapers must not be throttled).
// A new transport is one more route module registered here.
import swagger from '@fastify/swagger'
import type { FastifyInstance } from 'fastify'
import { httpErrorHandler } from '../errors.js'
import { limitRequestRate } from './rate-limit.js'
import healthRoutes from './health.js'
import metricsRoute from './metrics.js'
import pageRoute from './page.js'
import wsRoute from './ws.js'
import runsRoutes from './runs.js'
import agUiRoutes from './ag-ui.js'
import chatRoutes from './chat.js'
import devTokenRoute from './dev-token.js'

export interface GatewayRoutesOptions {
  /** Serve the demo page at `GET /` (default true). */
  page?: boolean
}

export default async function gatewayRoutes (fastify: FastifyInstance, opts: GatewayRoutesOptions): Promise<void> {
  fastify.setErrorHandler(httpErrorHandler)
  fastify.register(healthRoutes)
  if (fastify.metricsRegistry !== null) fastify.register(metricsRoute)
  fastify.register(async function api (scope) {
    await limitRequestRate(scope)
    // Documents every route registered after it in this scope, at GET /docs/json.
    await scope.register(swagger, {
      openapi: {
        info: { title: 'agent-gateway HTTP API', version: '1', description: 'Runs, their events as Server-Sent Events, and cancellation; AG-UI and AI SDK chat endpoints. The WebSocket protocol is documented in docs/protocol.md.' },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } }
      }
    })
    scope.register(wsRoute)
    scope.register(runsRoutes)
    scope.register(agUiRoutes)
    scope.register(chatRoutes)
    scope.register(devTokenRoute)
    scope.get('/docs/json', { schema: { hide: true } }, async () => scope.swagger())
  })
  if (opts.page !== false) fastify.register(pageRoute)
}
