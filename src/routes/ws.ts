// GET /ws — the agent-events.v1 WebSocket endpoint. It composes the plugins per connection:
// admission before the upgrade (origin, token, user, connection limit), then every frame is
// rate-limited, validated against the protocol schemas and handed to the engine or the sink.
// The route never writes to the socket itself: its WebSocket sink does (src/delivery/).
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import { hasEventsAfter, type UserContext } from '../contracts.js'
import { CloseCode, parseClientMessage, type ClientMessage, type WireErrorCode } from '../protocol.js'
import { OriginForbiddenError, OtherUserTokenError, UpgradeRequiredError, toWireError } from '../errors.js'
import type { MessageReceiver, WebSocketSink } from '../delivery/websocket-sink.js'
import { tokenExpiryMs } from '../plugins/auth-secret.js'
import { userIdFromClaims, userOf } from '../plugins/user-context.js'

/** A token bucket per connection; a client that keeps sending into an empty bucket is closed. */
class RateLimiter {
  #tokens: number
  #last = Date.now()
  #strikes = 0

  constructor (private readonly perSecond: number, private readonly burst: number) {
    this.#tokens = burst
  }

  /** 'ok', 'limited' (answer RATE_LIMITED) or 'abusive' (close 4429). */
  take (): 'ok' | 'limited' | 'abusive' {
    const now = Date.now()
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.perSecond)
    this.#last = now
    if (this.#tokens >= 1) {
      this.#tokens -= 1
      this.#strikes = 0
      return 'ok'
    }
    this.#strikes++
    return this.#strikes > this.burst ? 'abusive' : 'limited'
  }
}

/** The text of a frame (ws hands a server text frame over as one Buffer, but the type allows more). */
function frameText (data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8')
  return Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8')
}

/** What every connection's session shares: the route's plugins, looked up once. */
interface SessionDeps {
  readonly config: FastifyInstance['config']
  readonly engine: FastifyInstance['runEngine']
  readonly authSecret: FastifyInstance['authSecret']
  readonly telemetry: FastifyInstance['telemetry']
}

/**
 * One connection's message handling. A class rather than closures over the connection: a server
 * holds thousands of idle connections, and each would otherwise carry a handful of closures.
 */
class Session implements MessageReceiver {
  /** Made at the first message: a bucket starts full, so it is the same one, but idle costs nothing. */
  #limiter: RateLimiter | undefined

  constructor (private readonly deps: SessionDeps, private readonly conn: WebSocketSink, private readonly user: UserContext) {}

  onMessage (data: RawData, isBinary: boolean): void {
    const { conn, deps: { config } } = this
    if (conn.closed) return
    this.#limiter ??= new RateLimiter(config.MESSAGE_RATE_PER_SEC, config.MESSAGE_RATE_BURST)
    const verdict = this.#limiter.take()
    if (verdict === 'abusive') {
      conn.close(CloseCode.RATE_LIMITED, 'message rate limit exceeded')
      return
    }
    const parsed = isBinary ? undefined : parseClientMessage(frameText(data))
    if (verdict === 'limited') {
      // Parsed only to echo its id, so the client knows which request to send again.
      const id = parsed === undefined ? undefined : parsed.ok ? parsed.message.id : parsed.id
      this.fail(id, 'RATE_LIMITED', `Too many messages: at most ${config.MESSAGE_RATE_PER_SEC} per second (bursts of ${config.MESSAGE_RATE_BURST})`)
      return
    }
    if (parsed === undefined) {
      this.fail(undefined, 'BAD_MESSAGE', 'binary frames are not accepted; send UTF-8 JSON text frames')
      return
    }
    if (!parsed.ok) {
      this.fail(parsed.id, 'BAD_MESSAGE', parsed.reason)
      return
    }
    this.handle(parsed.message).catch((err: unknown) => {
      const wire = toWireError(err)
      if (wire.code === 'INTERNAL' && (err as { code?: string }).code !== 'AGW_ERR_SHUTTING_DOWN') {
        conn.log.error({ err, type: parsed.message.type }, 'message handling failed')
      }
      this.fail(parsed.message.id, wire.code, wire.message)
    })
  }

  fail (id: string | undefined, code: WireErrorCode, message: string): void {
    this.deps.telemetry.messageRejected(code)
    this.conn.reply({ type: 'error', id, code, message })
  }

  async handle (message: ClientMessage): Promise<void> {
    const { conn, user, deps: { config, engine } } = this
    switch (message.type) {
      case 'run': {
        if (conn.subscriptionCount >= config.MAX_SUBSCRIPTIONS_PER_CONNECTION) {
          this.fail(message.id, 'TOO_MANY_RUNS', `This connection already follows ${conn.subscriptionCount} runs; unsubscribe from one first`)
          return
        }
        const { type: _type, id: _id, ...request } = message
        const run = await engine.start(user, request)
        // run_accepted and the agent_started the subscription reads from the log: one write.
        conn.holdWrites()
        conn.reply({ type: 'run_accepted', id: message.id, ...run })
        conn.follow(run.runId, 0)
        return
      }
      case 'cancel':
        await engine.cancel(user, message.runId)
        return
      case 'subscribe':
        if (!conn.follows(message.runId) && conn.subscriptionCount >= config.MAX_SUBSCRIPTIONS_PER_CONNECTION) {
          this.fail(message.id, 'TOO_MANY_RUNS', `This connection already follows ${conn.subscriptionCount} runs; unsubscribe from one first`)
          return
        }
        await this.subscribe(message.runId, message.after ?? 0, message.id)
        return
      case 'unsubscribe':
        conn.unsubscribe(message.runId)
        conn.reply({ type: 'unsubscribed', id: message.id, runId: message.runId })
        return
      case 'auth':
        this.refresh(message.token, message.id)
        return
      case 'ping':
        conn.reply({ type: 'pong', id: message.id })
    }
  }

  /** Follows a run this connection's user owns, from `after`, replying `subscribed` first. */
  async subscribe (runId: string, after: number, id: string | undefined): Promise<void> {
    const { conn } = this
    const meta = await this.deps.engine.getOwnedRun(this.user, runId)
    if (conn.closed) return
    conn.reply({ type: 'subscribed', id, runId, recovered: true, fromSeq: after + 1 })
    // A finished run the client has seen to its end: there is nothing left to follow.
    if (hasEventsAfter(meta, after)) conn.follow(runId, after)
    else conn.unsubscribe(runId)
  }

  refresh (token: string, id: string | undefined): void {
    const { conn, deps: { authSecret, telemetry } } = this
    let userId: string
    let expiresAtMs: number | undefined
    let expiresAt: string | undefined
    // Everything is checked (and the expiry's date computed) before the connection changes.
    try {
      const claims = authSecret.verify(token)
      userId = userIdFromClaims(claims)
      expiresAtMs = claims.exp === undefined ? undefined : claims.exp * 1000
      expiresAt = expiresAtMs === undefined ? undefined : new Date(expiresAtMs).toISOString()
    } catch (err) {
      telemetry.authFailed((err as { code: string }).code)
      conn.close(CloseCode.UNAUTHORIZED, (err as Error).message.slice(0, 120))
      return
    }
    if (userId !== this.user.userId) {
      const refused = new OtherUserTokenError()
      telemetry.authFailed(refused.code)
      conn.close(CloseCode.UNAUTHORIZED, refused.message)
      return
    }
    conn.setExpiry(expiresAtMs)
    conn.reply({ type: 'auth_ok', id, expiresAt })
  }
}

async function wsRoute (fastify: FastifyInstance): Promise<void> {
  const { config, delivery, runEngine: engine, authSecret, telemetry } = fastify
  const deps: SessionDeps = { config, engine, authSecret, telemetry }

  async function checkOrigin (request: FastifyRequest): Promise<void> {
    const origin = request.headers.origin
    // Browsers always send Origin; other clients may not, and are not subject to CORS-style checks.
    if (config.ALLOWED_ORIGINS.length > 0 && origin !== undefined && !config.ALLOWED_ORIGINS.includes(origin)) {
      throw new OriginForbiddenError()
    }
  }

  async function admitConnection (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    // A plain GET holds no connection slot: it is answered before anything is reserved.
    if (!request.ws) {
      reply.header('upgrade', 'websocket')
      throw new UpgradeRequiredError()
    }
    delivery.admit(userOf(request).userId)
  }

  // The upgrade's HTTP response is never sent (the request is hijacked): let go of it, or the
  // TCP socket would keep it, and through it the request, for the connection's life.
  async function releaseResponse (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const socket = reply.raw.socket
    if (socket !== null && socket === request.raw.socket) reply.raw.detachSocket(socket)
  }

  fastify.get('/ws', {
    websocket: true,
    onRequest: [checkOrigin, fastify.requireUser, admitConnection],
    preHandler: releaseResponse
  }, (socket: WebSocket, request: FastifyRequest) => {
    const user = userOf(request)
    const conn = delivery.attach(socket, user, {
      expiresAtMs: tokenExpiryMs(request),
      // Undefined under injectWS, which has no TCP socket: then every frame is written at once.
      rawSocket: request.raw.socket ?? undefined
    })
    conn.receive(new Session(deps, conn, user))
  })
}

export default fp(wsRoute, {
  name: 'routes/ws',
  fastify: '5.x',
  encapsulate: true,
  dependencies: ['config', 'telemetry', 'auth-secret', 'user-context', 'delivery', 'run-engine']
})
