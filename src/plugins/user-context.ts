// user-context: turns verified claims into an immutable per-user execution context, and makes
// the frozen run contexts that agents and tools receive. The user id comes from `sub` only.
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { newId } from '../ids.js'
import type { RunContext, UserContext } from '../contracts.js'
import { SubjectInvalidError, UserContextMissingError } from '../errors.js'
import type { TokenClaims } from './auth-secret.js'

export type { RunContext, UserContext }

export const MAX_USER_ID_LENGTH = 256
const MAX_SCOPES = 100
// Values that systems write into `sub` when they have no user; they must never become a user id
// (they would make strangers share one event stream).
const PLACEHOLDER_SUBJECTS: readonly string[] = ['none', 'null', 'undefined', 'nil', 'nan', 'unknown', 'anonymous', '[object object]', 'false', 'true']

/** The user id of verified claims, or AGW_ERR_AUTH_SUBJECT_INVALID (401). */
export function userIdFromClaims (claims: TokenClaims): string {
  const sub = claims.sub
  if (typeof sub !== 'string') throw new SubjectInvalidError(sub === undefined ? 'it is missing' : 'it must be a string')
  if (sub.trim() === '') throw new SubjectInvalidError('it is empty')
  // A lone surrogate is no text: stores that keep UTF-8 turn it into U+FFFD, making two users one.
  if (!(sub as string & { isWellFormed(): boolean }).isWellFormed()) throw new SubjectInvalidError('it is not well-formed Unicode (a lone surrogate)')
  if (sub.length > MAX_USER_ID_LENGTH) throw new SubjectInvalidError(`it is longer than ${MAX_USER_ID_LENGTH} characters`)
  if (sub !== sub.trim()) throw new SubjectInvalidError('it has leading or trailing whitespace')
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(sub)) throw new SubjectInvalidError('it contains control characters')
  if (PLACEHOLDER_SUBJECTS.includes(sub.toLowerCase())) throw new SubjectInvalidError('it is a placeholder value')
  return sub
}

/** Scopes from the OAuth-style `scope` (space-separated) or a `scopes` / `scp` array. */
function scopesFromClaims (claims: TokenClaims): string[] {
  const raw = claims.scope ?? claims.scopes ?? claims.scp
  const list = typeof raw === 'string' ? raw.split(/\s+/) : Array.isArray(raw) ? raw : []
  const scopes = list.filter((scope): scope is string => typeof scope === 'string' && scope !== '' && scope.length <= 128)
  return [...new Set(scopes)].slice(0, MAX_SCOPES)
}

/** A frozen user context from verified claims. */
export function createUserContext (claims: TokenClaims, requestId: string): UserContext {
  return Object.freeze({
    userId: userIdFromClaims(claims),
    scopes: Object.freeze(scopesFromClaims(claims)),
    requestId,
    connectionId: newId()
  })
}

/** A frozen child of a user context for one run. */
export function createRunContext (parent: UserContext, run: { runId: string, threadId: string, agent: string }): RunContext {
  return Object.freeze({
    userId: parent.userId,
    scopes: parent.scopes,
    requestId: parent.requestId,
    connectionId: parent.connectionId,
    runId: run.runId,
    threadId: run.threadId,
    agent: run.agent
  })
}

/**
 * The authenticated user of a request, typed: for routes whose onRequest includes
 * `fastify.requireUser`. A route without it is a programming error, reported as a 500.
 */
export function userOf (request: FastifyRequest): UserContext {
  const user = request.userContext
  if (user === null) throw new UserContextMissingError(request.routeOptions.url ?? request.url)
  return user
}

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook: authenticates the request and sets `request.userContext`, or answers 401. */
    requireUser: (request: FastifyRequest) => Promise<void>
    createRunContext: typeof createRunContext
  }
  interface FastifyRequest {
    userContext: UserContext | null
  }
}

async function userContext (fastify: FastifyInstance): Promise<void> {
  fastify.decorateRequest('userContext', null)
  fastify.decorate('createRunContext', createRunContext)
  const telemetry = fastify.telemetry
  fastify.decorate('requireUser', async function requireUser (request: FastifyRequest): Promise<void> {
    // A refused token is counted by authenticate; an unusable subject here.
    await fastify.authenticate(request)
    try {
      request.userContext = createUserContext(request.tokenClaims as TokenClaims, request.id)
    } catch (err) {
      telemetry.authFailed((err as { code: string }).code)
      throw err
    }
  })
}

export default fp(userContext, { name: 'user-context', fastify: '5.x', dependencies: ['auth-secret', 'telemetry'] })
