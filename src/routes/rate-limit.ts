// Per-address rate limiting of the gateway's API (@fastify/rate-limit): one budget per client
// address across every route of the scope it is added to, counted in a scope-level onRequest hook
// — before any route's own hooks, so requests refused by authentication count too. The key is the
// client address Fastify resolves (see TRUST_PROXY when behind a proxy).
import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import { HttpRateLimitedError } from '../errors.js'

export async function limitRequestRate (fastify: FastifyInstance): Promise<void> {
  // global: false — no per-route hooks (they would run after the routes' own authentication).
  await fastify.register(rateLimit, { global: false })
  fastify.addHook('onRequest', fastify.rateLimit({
    max: fastify.config.HTTP_RATE_LIMIT_MAX,
    timeWindow: fastify.config.HTTP_RATE_LIMIT_WINDOW_MS,
    // The default key, except that a request without a peer address (an in-process injection)
    // shares one bucket instead of failing the request.
    keyGenerator: (request) => normalizeIP(request.ip ?? 'unknown'),
    // Answered through the scope's error handler, as { code, message } like every other error.
    errorResponseBuilder: (_request, context) => new HttpRateLimitedError(context.after)
  }))
}
