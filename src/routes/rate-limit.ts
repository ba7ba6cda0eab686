// Per-address rate limiting of the gateway's own HTTP routes (@fastify/rate-limit), registered
// inside each route plugin's scope so it never touches a host app's routes. The key is the client
// address Fastify resolves (see TRUST_PROXY when behind a proxy).
import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import { HttpRateLimitedError } from '../errors.js'

export async function limitRequestRate (fastify: FastifyInstance): Promise<void> {
  await fastify.register(rateLimit, {
    global: true,
    max: fastify.config.HTTP_RATE_LIMIT_MAX,
    timeWindow: fastify.config.HTTP_RATE_LIMIT_WINDOW_MS,
    // The default key, except that a request without a peer address (an in-process injection)
    // shares one bucket instead of failing the request.
    keyGenerator: (request) => normalizeIP(request.ip ?? 'unknown'),
    // Answered through the route's error handler, as { code, message } like every other error.
    errorResponseBuilder: (_request, context) => new HttpRateLimitedError(context.after)
  })
}
