// auth-secret: the single source of truth for JWT secrets and token verification.
// It resolves the secrets from config (one resolver for every environment), validates them
// with one validator, refuses to start on a bad one, and verifies tokens with @fastify/jwt
// pinned to HS256. Nothing else in the gateway touches a secret.
import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import fastifyJwt, { type JWT } from '@fastify/jwt'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { AppEnv, Config } from '../config.js'
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
// Validation: one validator for every secret. Problems name the variable and the rule, never the value.

export const MIN_SECRET_BYTES = 32
export const MIN_SECRET_BITS = 128
const STRICT_ENVS: readonly AppEnv[] = ['staging', 'production']

// Words that people put in secrets they did not generate. A secret made only of these (plus
// digits and separators) is a known weak value; inside a longer secret they count as a few bits.
const WEAK_WORDS = [
  'secret', 'changeme', 'change', 'password', 'passwd', 'pass', 'your', 'my', 'key', 'jwt', 'token', 'test',
  'example', 'default', 'admin', 'qwerty', 'letmein', 'welcome', 'dev', 'development', 'prod', 'production',
  'staging', 'local', 'app', 'super', 'demo', 'sample', 'dummy', 'foo', 'bar', 'baz', 'abc', 'hello', 'world',
  'please', 'sign', 'signing', 'auth', 'private', 'here', 'insert', 'replace', 'todo', 'xxx', 'for', 'the', 'and',
  'of', 'to', 'is', 'new', 'real', 'very', 'long', 'strong', 'random', 'string', 'value', 'server', 'service', 'api',
  'gateway', 'agent', 'hs256', 'hmac', 'access', 'session', 'master', 'root', 'user', 'login', 'company'
].sort((a, b) => b.length - a.length)
const SEPARATORS = /[\s\-_.:/+=,;!@#*]+/g

export interface SecretCheck {
  /** Rules the secret breaks in every environment. */
  readonly errors: string[]
  /** Rules it breaks that are fatal only in staging and production. */
  readonly weak: string[]
}

/** The one secret validator. */
export function checkSecret (variable: string, value: string): SecretCheck {
  const errors: string[] = []
  const weak: string[] = []
  // A trailing newline from a secrets file is kept by the environment: the server would start, then
  // reject every token signed with the secret as others read it.
  if (value !== value.trim()) {
    errors.push(`${variable}: has leading or trailing whitespace (a newline from a file?) [rule: no-surrounding-whitespace]`)
  }
  const hex = /^(?:[0-9a-f]+|[0-9A-F]+)$/.test(value)
  const bytes = hex ? Math.floor(value.length / 2) : Buffer.byteLength(value, 'utf8')
  if (bytes < MIN_SECRET_BYTES) {
    errors.push(hex
      ? `${variable}: a hex secret needs at least ${MIN_SECRET_BYTES * 2} hex digits (${MIN_SECRET_BYTES} bytes); it has ${value.length} [rule: min-bytes]`
      : `${variable}: needs at least ${MIN_SECRET_BYTES} bytes of key material; it has ${bytes} [rule: min-bytes]`)
  }
  const period = repeatPeriod(value)
  if (period !== undefined) {
    errors.push(`${variable}: is a repeated pattern (a ${period}-character unit repeated) [rule: no-repeated-pattern]`)
  }
  const bits = Math.floor(estimateEntropyBits(value, hex))
  if (bits < MIN_SECRET_BITS) {
    errors.push(`${variable}: estimated entropy is ${bits} bits, at least ${MIN_SECRET_BITS} are required [rule: min-entropy]`)
  }
  if (isMadeOfWeakWords(value)) {
    weak.push(`${variable}: is a known weak value or made only of common words [rule: not-weak]`)
  }
  return { errors, weak }
}

/** Length of the shortest unit that repeats to form the whole string (at least twice), if any. */
function repeatPeriod (value: string): number | undefined {
  const n = value.length
  for (let p = 1; p <= n / 2; p++) {
    let repeats = true
    for (let i = p; i < n; i++) {
      if (value.charCodeAt(i) !== value.charCodeAt(i - p)) { repeats = false; break }
    }
    if (repeats) return p
  }
  return undefined
}

/** Size of the alphabet a string draws from, by the character classes it uses. */
function alphabetSize (value: string, hex: boolean): number {
  if (hex) return 16
  let size = 0
  if (/[a-z]/.test(value)) size += 26
  if (/[A-Z]/.test(value)) size += 26
  if (/[0-9]/.test(value)) size += 10
  if (/[\x20-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]/.test(value)) size += 33
  if (/[^\x20-\x7e]/.test(value)) size += 100
  return size
}

/** Length of the longest earlier substring (of at least 4 characters) that repeats at `i`. */
function echoLength (value: string, i: number): number {
  let best = 0
  for (let j = 0; j < i; j++) {
    let n = 0
    while (i + n < value.length && value.charCodeAt(j + n) === value.charCodeAt(i + n)) n++
    if (n > best) best = n
  }
  return best >= 4 ? best : 0
}

/**
 * A deliberately conservative entropy estimate. Each character is worth log2 of the alphabet the
 * string draws from (16 for hex); continuing a run or a sequence (aaa, abc, 321) is worth 1 bit; a
 * common word, or a chunk that already appeared earlier, is worth a few bits whatever its
 * length. The total is capped by the string's Shannon entropy, so a string of few distinct
 * characters cannot pass by length alone.
 */
export function estimateEntropyBits (value: string, hex = false): number {
  const perChar = Math.log2(alphabetSize(value, hex))
  const lower = value.toLowerCase()
  let bits = 0
  let previous = -1
  let step = 0
  for (let i = 0; i < value.length;) {
    const word = WEAK_WORDS.find((w) => w.length >= 4 && lower.startsWith(w, i))
    const chunk = word?.length ?? echoLength(value, i)
    if (chunk > 0) {
      bits += 6
      i += chunk
      previous = -1
      continue
    }
    const code = value.charCodeAt(i)
    const delta = previous < 0 ? Number.NaN : code - previous
    // The third character of a run (aaa) or of a sequence (abc, 321) is predictable.
    const predictable = Math.abs(delta) <= 1 && delta === step
    bits += predictable ? 1 : perChar
    step = delta
    previous = code
    i++
  }
  return Math.min(bits, shannonBits(value))
}

function shannonBits (value: string): number {
  const counts = new Map<string, number>()
  for (const ch of value) counts.set(ch, (counts.get(ch) ?? 0) + 1)
  const n = value.length
  let perChar = 0
  for (const count of counts.values()) perChar -= (count / n) * Math.log2(count / n)
  // Shannon entropy of a short random string underestimates its source; scale it to be fair to
  // a 32-character random secret while still sinking strings of a few distinct characters.
  return perChar * n * 1.5
}

/** True when the value is nothing but weak words, digits and separators. */
function isMadeOfWeakWords (value: string): boolean {
  const s = value.toLowerCase().replace(SEPARATORS, '')
  if (s === '') return true
  // canEnd[i]: s.slice(0, i) splits into weak words and digit runs.
  const canEnd = new Array<boolean>(s.length + 1).fill(false)
  canEnd[0] = true
  for (let i = 0; i < s.length; i++) {
    if (canEnd[i] !== true) continue
    let j = i
    while (j < s.length && s.charCodeAt(j) >= 48 && s.charCodeAt(j) <= 57) canEnd[++j] = true
    for (const word of WEAK_WORDS) if (s.startsWith(word, i)) canEnd[i + word.length] = true
  }
  return canEnd[s.length] === true
}

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
