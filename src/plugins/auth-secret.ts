// auth-secret: the single source of truth for JWT secrets and token verification.
// It resolves the secrets from config (one resolver for every environment), validates them
// with one validator, refuses to start on a bad one, and verifies tokens with @fastify/jwt
// pinned to HS256. Nothing else in the gateway touches a secret.
import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import fastifyJwt, { type JWT } from '@fastify/jwt'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { AppEnv, Config } from '../config.js'
import { checkSecret } from '../secret-strength.js'
import { BEARER_PROTOCOL_PREFIX } from '../protocol.js'
import {
  NoTokenError, QueryTokenError, SecretInvalidError, TokenAlgorithmError, TokenClaimError, TokenExpiredError,
  TokenInactiveError, TokenInvalidError, TokenMalformedError, TokenSignatureError
} from '../errors.js'

// ---------------------------------------------------------------------------------------------
// Resolution: JWT_SECRET_<APP_ENV> wins over JWT_SECRET; the same rule for the previous secret.

export type SecretRole = 'current' | 'previous'
export interface ResolvedSecret { readonly variable: string, readonly value: string }

const roleBase: Record<SecretRole, string> = { current: 'JWT_SECRET', previous: 'JWT_PREVIOUS_SECRET' }

/** The one resolver: which variable holds the secret of this role in this environment, if any. */
export function resolveSecret (config: Config, role: SecretRole): ResolvedSecret | undefined {
  const base = roleBase[role]
  for (const variable of [`${base}_${config.APP_ENV.toUpperCase()}`, base]) {
    const value = (config as unknown as Record<string, unknown>)[variable]
    if (typeof value === 'string' && value !== '') return { variable, value }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Validation: one validator for every secret (checkSecret, src/secret-strength.ts).

const STRICT_ENVS: readonly AppEnv[] = ['staging', 'production']

export interface SecretResolution {
  readonly current: ResolvedSecret | undefined
  readonly previous: ResolvedSecret | undefined
  /** Fatal problems; the server must not start when there is any. */
  readonly problems: readonly string[]
  /** Problems tolerated in development and test, reported as warnings. */
  readonly warnings: readonly string[]
}

/** Resolves and validates every secret of the configuration, collecting all problems at once. */
export function inspectSecrets (config: Config): SecretResolution {
  const strict = STRICT_ENVS.includes(config.APP_ENV)
  const current = resolveSecret(config, 'current')
  const previous = resolveSecret(config, 'previous')
  const problems: string[] = []
  const warnings: string[] = []
  if (current === undefined && strict) {
    const variable = `JWT_SECRET_${config.APP_ENV.toUpperCase()}`
    problems.push(`no JWT secret is configured: set ${variable} or JWT_SECRET (APP_ENV=${config.APP_ENV} never uses a generated secret) [rule: required]`)
  }
  for (const secret of [current, previous]) {
    if (secret === undefined) continue
    const check = checkSecret(secret.variable, secret.value)
    problems.push(...check.errors)
    ;(strict ? problems : warnings).push(...check.weak)
  }
  if (current !== undefined && previous !== undefined && current.value === previous.value) {
    problems.push(`${previous.variable}: is the same as ${current.variable}; a previous secret must be the one being rotated out [rule: distinct-previous]`)
  }
  return { current, previous, problems, warnings }
}

// ---------------------------------------------------------------------------------------------
// Token extraction and verification

const QUERY_TOKEN_KEYS = ['token', 'access_token', 'jwt'] as const

/** Finds the token of a request: Authorization header, then bearer.<jwt> subprotocol, then (opt-in) query. */
export function extractToken (request: FastifyRequest, allowQuery: boolean): string {
  const query = (request.query ?? {}) as Record<string, unknown>
  const queryKey = QUERY_TOKEN_KEYS.find((key) => typeof query[key] === 'string' && query[key] !== '')
  if (queryKey !== undefined && !allowQuery) throw new QueryTokenError()

  const authorization = request.headers.authorization
  if (typeof authorization === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
    if (match?.[1] !== undefined) return match[1]
  }
  const protocols = request.headers['sec-websocket-protocol']
  if (typeof protocols === 'string') {
    for (const entry of protocols.split(',')) {
      const trimmed = entry.trim()
      if (trimmed.startsWith(BEARER_PROTOCOL_PREFIX) && trimmed.length > BEARER_PROTOCOL_PREFIX.length) {
        return trimmed.slice(BEARER_PROTOCOL_PREFIX.length)
      }
    }
  }
  if (queryKey !== undefined) return query[queryKey] as string
  throw new NoTokenError()
}

/** The claims of a verified token (only the ones the gateway reads are typed). */
export interface TokenClaims {
  readonly sub?: unknown
  readonly exp?: number
  readonly iat?: number
  readonly nbf?: number
  readonly iss?: string
  readonly aud?: string | string[]
  readonly scope?: unknown
  readonly scopes?: unknown
  readonly [claim: string]: unknown
}

// fast-jwt error codes → the gateway's 401 errors.
function toAuthError (err: unknown): Error {
  const code = (err as { code?: string }).code
  const message = (err as Error).message
  switch (code) {
    case 'FAST_JWT_MALFORMED':
    case 'FAST_JWT_INVALID_TYPE':
    case 'FAST_JWT_INVALID_PAYLOAD':
      return new TokenMalformedError()
    case 'FAST_JWT_INVALID_ALGORITHM':
    case 'FAST_JWT_MISSING_SIGNATURE':
      return new TokenAlgorithmError()
    case 'FAST_JWT_INVALID_SIGNATURE':
      return new TokenSignatureError()
    case 'FAST_JWT_EXPIRED':
      return new TokenExpiredError()
    case 'FAST_JWT_INACTIVE':
      return new TokenInactiveError()
    case 'FAST_JWT_MISSING_REQUIRED_CLAIM':
    case 'FAST_JWT_INVALID_CLAIM_VALUE':
    case 'FAST_JWT_INVALID_CLAIM_TYPE':
      return new TokenClaimError(message.replace(/\.$/, ''))
    default:
      return new TokenInvalidError()
  }
}

const NUMERIC_DATE_CLAIMS = ['exp', 'nbf', 'iat'] as const
/** The last second a JavaScript Date can hold (8.64e15 ms). */
export const MAX_NUMERIC_DATE = 8_640_000_000_000

export interface SignOptions {
  /** Lifetime in seconds (default one hour). */
  expiresInSec?: number
}

export interface AuthSecret {
  /** The variable the signing secret came from, or `generated` for a per-process development secret. */
  readonly source: string
  readonly generated: boolean
  /** Verifies a token (current secret, then the previous one); throws an AGW_ERR_AUTH_* 401 error. */
  verify: (token: string) => TokenClaims
  /** Signs claims with the current secret (never the previous one), adding `exp`, `iss`, `aud`. */
  sign: (claims: Record<string, unknown>, options?: SignOptions) => string
}

declare module 'fastify' {
  interface FastifyInstance {
    authSecret: AuthSecret
    /** onRequest hook: extracts and verifies the token, or answers 401 { code, message }. */
    authenticate: (request: FastifyRequest) => Promise<void>
  }
  interface FastifyRequest {
    /** The verified claims, set by `fastify.authenticate`. */
    tokenClaims: TokenClaims | null
  }
}

/** When the request's verified token expires (ms since the epoch); undefined without one or without `exp`. */
export function tokenExpiryMs (request: FastifyRequest): number | undefined {
  const exp = request.tokenClaims?.exp
  return typeof exp === 'number' ? exp * 1000 : undefined
}

/**
 * Registers @fastify/jwt in a private child scope under its own namespace, so that it neither
 * collides with nor depends on a host app's own @fastify/jwt.
 */
async function privateJwt (fastify: FastifyInstance, namespace: string, options: fastifyJwt.FastifyJWTOptions): Promise<JWT> {
  let jwt: JWT | undefined
  await fastify.register(async function jwtScope (scope) {
    await scope.register(fastifyJwt, { ...options, namespace, decoratorName: `${namespace}Claims` })
    jwt = (scope.jwt as unknown as Record<string, JWT>)[namespace]
  })
  return jwt as JWT
}

async function authSecret (fastify: FastifyInstance): Promise<void> {
  const { config } = fastify
  const inspection = inspectSecrets(config)
  if (inspection.problems.length > 0) {
    throw new SecretInvalidError(inspection.problems.map((problem) => `\n  - ${problem}`).join(''))
  }
  for (const warning of inspection.warnings) {
    fastify.log.warn(`${warning} (refused in staging and production)`)
  }
  const generated = inspection.current === undefined
  const secret = inspection.current?.value ?? randomBytes(32).toString('base64url')
  if (generated) {
    fastify.log.warn(`no JWT secret configured (APP_ENV=${config.APP_ENV}): generated a random one for this process; tokens will not survive a restart`)
  }

  const skewMs = config.JWT_CLOCK_SKEW_SEC * 1000
  const verify = {
    algorithms: ['HS256'],
    ...(config.JWT_ISSUER === undefined ? {} : { allowedIss: config.JWT_ISSUER }),
    ...(config.JWT_AUDIENCE.length === 0 ? {} : { allowedAud: [...config.JWT_AUDIENCE] }),
    // A configured issuer or audience must also be present: fast-jwt only checks them when they are.
    requiredClaims: [
      ...(config.JWT_REQUIRE_EXP ? ['exp'] : []),
      ...(config.JWT_ISSUER === undefined ? [] : ['iss']),
      ...(config.JWT_AUDIENCE.length === 0 ? [] : ['aud'])
    ],
    clockTolerance: skewMs
  } as unknown as fastifyJwt.FastifyJWTOptions['verify']
  const current = await privateJwt(fastify, 'agentGateway', {
    secret,
    sign: {
      algorithm: 'HS256',
      ...(config.JWT_ISSUER === undefined ? {} : { iss: config.JWT_ISSUER }),
      ...(config.JWT_AUDIENCE[0] === undefined ? {} : { aud: config.JWT_AUDIENCE[0] })
    },
    verify
  })
  // The previous secret is registered without a private key: @fastify/jwt cannot sign with it.
  const previous = inspection.previous === undefined
    ? undefined
    : await privateJwt(fastify, 'agentGatewayPrevious', { secret: { public: inspection.previous.value }, verify })

  const api: AuthSecret = Object.freeze({
    source: inspection.current?.variable ?? 'generated',
    generated,
    verify (token: string): TokenClaims {
      let claims: TokenClaims
      try {
        claims = current.verify<TokenClaims>(token)
      } catch (err) {
        if (previous === undefined || (err as { code?: string }).code !== 'FAST_JWT_INVALID_SIGNATURE') throw toAuthError(err)
        try {
          claims = previous.verify<TokenClaims>(token)
        } catch (previousErr) {
          throw toAuthError(previousErr)
        }
      }
      // 1e400 parses as Infinity ("never expires"), 1e13 s is past the last date a Date can hold.
      for (const claim of NUMERIC_DATE_CLAIMS) {
        const value = claims[claim]
        if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0 && value <= MAX_NUMERIC_DATE)) {
          throw new TokenClaimError(`the ${claim} claim must be a whole number of seconds since 1970, at most ${MAX_NUMERIC_DATE}`)
        }
      }
      // fast-jwt does not look at `iat`; a token issued in the future is not honest.
      if (typeof claims.iat === 'number' && claims.iat * 1000 > Date.now() + skewMs) {
        throw new TokenClaimError('the iat claim is in the future')
      }
      return claims
    },
    sign (claims: Record<string, unknown>, options: SignOptions = {}): string {
      return current.sign(claims, { expiresIn: options.expiresInSec ?? 3600 })
    }
  })

  fastify.decorate('authSecret', api)
  fastify.decorateRequest('tokenClaims', null)
  const telemetry = fastify.telemetry
  fastify.decorate('authenticate', async function authenticate (request: FastifyRequest): Promise<void> {
    try {
      request.tokenClaims = api.verify(extractToken(request, config.ALLOW_QUERY_TOKEN))
    } catch (err) {
      telemetry.authFailed((err as { code: string }).code)
      throw err
    }
  })
  fastify.log.debug({ source: api.source }, 'JWT secret resolved')
}

export default fp(authSecret, { name: 'auth-secret', fastify: '5.x', dependencies: ['config', 'telemetry'] })
