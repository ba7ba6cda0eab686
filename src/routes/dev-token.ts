// GET /dev/token — mints a token for any user, for local development only. It exists only when
// APP_ENV=development AND the signing secret is one this process generated (every other case
// answers 404), and backs `npm run token` when the server runs with that per-process secret. A
// configured secret is shared with other services (production ones among them, when APP_ENV was
// forgotten): a token minted here must never be valid anywhere else.
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Type, type Static } from 'typebox'
import { userIdFromClaims } from '../plugins/user-context.js'

const DevTokenQuery = Type.Object({
  user: Type.String({ default: 'dev', minLength: 1, maxLength: 256 }),
  ttl: Type.Integer({ default: 43_200, minimum: 60, maximum: 7 * 86_400, description: 'Lifetime in seconds.' }),
  scope: Type.Optional(Type.String({ maxLength: 1024, description: 'Space-separated scopes.' }))
}, { additionalProperties: false })

async function devTokenRoute (fastify: FastifyInstance): Promise<void> {
  if (fastify.config.APP_ENV !== 'development') return
  if (!fastify.authSecret.generated) {
    fastify.log.warn(`APP_ENV=development but a JWT secret is configured (${fastify.authSecret.source}): GET /dev/token is NOT registered, since it signs only with a secret this process generates. If this is not a development machine, set APP_ENV=production.`)
    return
  }
  if (!['127.0.0.1', '::1', 'localhost'].includes(fastify.config.HOST)) {
    fastify.log.warn(`GET /dev/token mints tokens for any user and HOST=${fastify.config.HOST} exposes it beyond this machine; use APP_ENV=development only on a trusted network`)
  }
  fastify.get<{ Querystring: Static<typeof DevTokenQuery> }>('/dev/token', { schema: { querystring: DevTokenQuery } }, async (request) => {
    const { user, ttl, scope } = request.query
    const claims = scope === undefined ? { sub: user } : { sub: user, scope }
    userIdFromClaims(claims)
    const token = fastify.authSecret.sign(claims, { expiresInSec: ttl })
    return { token, userId: user, expiresAt: new Date(Date.now() + ttl * 1000).toISOString() }
  })
}

export default fp(devTokenRoute, { name: 'routes/dev-token', fastify: '5.x', encapsulate: true, dependencies: ['config', 'auth-secret'] })
