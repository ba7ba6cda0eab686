// The WebSocket sink: one `agent-events.v1` connection. It sends `welcome`, writes every event and
// reply as a text frame (a logged event's bytes are shared by every socket, never copied), closes
// at token expiry (4401), and keeps the peer honest with heartbeats: a server ping every
// HEARTBEAT_MS, and a peer that has not answered for a whole interval is closed with 4408.
import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket } from 'ws'
import type { StoredEvent, UserContext } from '../contracts.js'
import { CloseCode, type Reply, type ReplyOf } from '../protocol.js'
import { Sink, type Corkable, type SinkHost, type Ticker } from './sink.js'

/** Frames are UTF-8 JSON bytes, sent as text frames. */
const TEXT_FRAME = { binary: false } as const
/** How long a peer may take to answer our close frame before it is cut off. */
export const CLOSE_HANDSHAKE_MS = 2_000

export interface WebSocketSinkOptions {
  /** The `welcome` message, but for the connection's own ids. */
  readonly welcome: Omit<ReplyOf<'welcome'>, 'type' | 'connectionId' | 'userId'>
  /** The shared heartbeat timer of WebSocket sinks. */
  readonly heartbeats: Ticker
  /** When the token expires (ms since the epoch): the connection is closed with 4401 then. */
  readonly expiresAtMs?: number
  /**
   * The TCP socket under the WebSocket (`request.raw.socket` of the upgrade). Given, the frames
   * written to it within one tick go out in one system call instead of one each.
   */
  readonly rawSocket?: Corkable
}

/**
 * Logs an error of an established WebSocket. A frame that breaks the protocol (invalid UTF-8, an
 * oversized frame) is the client's doing — ws has already closed the connection with the right
 * code — so it is said plainly, without a stack; anything else is an error of ours.
 */
export function logSocketError (log: Pick<FastifyBaseLogger, 'info' | 'error'>, error: Error & { code?: string }): void {
  if (typeof error.code === 'string' && error.code.startsWith('WS_ERR_')) {
    log.info({ code: error.code, reason: error.message }, 'client broke the WebSocket protocol; connection closed')
  } else {
    log.error({ err: error }, 'WebSocket error')
  }
}

export class WebSocketSink extends Sink {
  readonly kind = 'websocket'
  alive = true
  #expiryTimer: NodeJS.Timeout | undefined
  readonly #heartbeats: Ticker
  readonly #rawSocket: Corkable | undefined

  constructor (host: SinkHost, readonly socket: WebSocket, user: UserContext, private readonly options: WebSocketSinkOptions) {
    super(host, user)
    this.#heartbeats = options.heartbeats
    this.#rawSocket = options.rawSocket
  }

  /** Takes the socket over: liveness, release on close, expiry, heartbeats, then `welcome`. */
  start (): void {
    // A pong, or any frame, proves the peer is alive.
    this.socket.on('pong', () => { this.alive = true })
    this.socket.on('message', () => { this.alive = true })
    this.socket.on('close', () => { this.release() })
    // The sink takes the socket's errors over from @fastify/websocket, whose listener would keep
    // the upgrade's Fastify request and reply (and their logger) for the connection's life.
    this.socket.removeAllListeners('error')
    this.socket.on('error', (error: Error & { code?: string }) => { logSocketError(this.log, error) })
    this.setExpiry(this.options.expiresAtMs)
    this.#heartbeats.add(this)
    this.reply({ type: 'welcome', connectionId: this.id, userId: this.user.userId, ...this.options.welcome })
  }

  protected get buffered (): number {
    return this.socket.bufferedAmount
  }

  protected get transport (): Corkable | undefined {
    return this.#rawSocket
  }

  write (event: StoredEvent): void {
    this.sendFrame(event.frame)
  }

  /** Writes one text frame. */
  sendFrame (frame: Buffer): void {
    if (this.closed || this.socket.readyState !== this.socket.OPEN) return
    this.batchWrites()
    // A flush callback is only needed while the buffer is filling: it is how a paused
    // subscription learns the socket drained.
    this.socket.send(frame, TEXT_FRAME, this.filling(frame.length) ? this.onFlushed : undefined)
  }

  reply (message: Reply): void {
    this.sendFrame(Buffer.from(JSON.stringify(message), 'utf8'))
  }

  /** Arms (or re-arms after an `auth` refresh) the close at token expiry. */
  setExpiry (expiresAtMs: number | undefined): void {
    clearTimeout(this.#expiryTimer)
    this.#expiryTimer = undefined
    if (expiresAtMs === undefined || this.closed) return
    // setTimeout cannot wait longer than ~24.8 days; re-check when a long timer fires.
    const delay = Math.min(Math.max(0, expiresAtMs - Date.now()), 2 ** 31 - 1)
    this.#expiryTimer = setTimeout(() => {
      if (Date.now() >= expiresAtMs) this.close(CloseCode.UNAUTHORIZED, 'token expired')
      else this.setExpiry(expiresAtMs)
    }, delay)
    this.#expiryTimer.unref()
  }

  fail (reason: string): void {
    this.close(1011, reason)
  }

  /**
   * Idempotent; frees everything the connection holds at once. The close frame tells the peer
   * why; a peer that does not complete the closing handshake within `terminateAfterMs` is cut
   * off (ws would otherwise hold the socket for 30 s).
   */
  close (code: number, reason: string, terminateAfterMs = CLOSE_HANDSHAKE_MS): void {
    if (!this.closed && this.socket.readyState === this.socket.OPEN) {
      this.socket.close(code, reason)
      setTimeout(() => { this.terminate() }, terminateAfterMs).unref()
    }
    this.release()
  }

  /** Drops the TCP connection without a closing handshake (a peer that no longer answers). */
  terminate (): void {
    if (this.socket.readyState !== this.socket.CLOSED) this.socket.terminate()
    this.release()
  }

  override release (): void {
    clearTimeout(this.#expiryTimer)
    this.#heartbeats.delete(this)
    super.release()
  }

  heartbeat (): void {
    if (!this.alive) {
      // The peer has not answered for a whole interval: say why, but do not wait long for it.
      this.close(CloseCode.HEARTBEAT_TIMEOUT, 'heartbeat timeout', Math.min(this.options.welcome.heartbeatMs, CLOSE_HANDSHAKE_MS))
      return
    }
    this.alive = false
    if (this.socket.readyState === this.socket.OPEN) this.socket.ping()
  }

  /** Closes at shutdown, after everything logged was delivered. */
  goAway (): void {
    this.close(CloseCode.GOING_AWAY, 'server shutting down')
  }

  /** True once the peer has completed (or lost) the closing handshake. */
  get socketClosed (): boolean {
    return this.socket.readyState === this.socket.CLOSED
  }
}
