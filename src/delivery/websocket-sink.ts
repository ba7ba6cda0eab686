// The WebSocket sink: one `agent-events.v1` connection. It sends `welcome`, writes every event and
// reply as a text frame (a logged event's bytes are shared by every socket, never copied), closes
// at token expiry (4401), and keeps the peer honest with heartbeats: a server ping every
// HEARTBEAT_MS, and a peer that has not answered for a whole interval is closed with 4408.
import type { FastifyBaseLogger } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import type { StoredEvent, UserContext } from '../contracts.js'
import { CloseCode, type Reply, type ReplyOf } from '../protocol.js'
import { Sink, type Corkable, type SinkHost, type Ticker } from './sink.js'

/** Frames are UTF-8 JSON bytes, sent as text frames. */
const TEXT_FRAME = { binary: false } as const
/** How long a peer may take to answer our close frame before it is cut off. */
export const CLOSE_HANDSHAKE_MS = 2_000

/** What every WebSocket sink of a server shares (one object, held by reference). */
export interface WebSocketSinkShared {
  /** The `welcome` message, but for the connection's own ids. */
  readonly welcome: Omit<ReplyOf<'welcome'>, 'type' | 'connectionId' | 'userId'>
  /** The shared heartbeat timer of WebSocket sinks. */
  readonly heartbeats: Ticker
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

/** Handles the frames a peer sends (the route's session). */
export interface MessageReceiver {
  onMessage(data: RawData, isBinary: boolean): void
}

/** The sink a socket belongs to, set by `start`. */
const SINK = Symbol('agw.websocketSink')
type OwnedSocket = WebSocket & { [SINK]?: WebSocketSink }

// ws calls its listeners with the socket as `this`.
function onPong (this: OwnedSocket): void {
  const sink = this[SINK]
  if (sink !== undefined) sink.alive = true
}
function onMessage (this: OwnedSocket, data: RawData, isBinary: boolean): void {
  this[SINK]?.received(data, isBinary)
}
function onClose (this: OwnedSocket): void {
  this[SINK]?.release()
}
function onError (this: OwnedSocket, error: Error & { code?: string }): void {
  const sink = this[SINK]
  if (sink !== undefined) logSocketError(sink.log, error)
}

export class WebSocketSink extends Sink {
  readonly kind = 'websocket'
  alive = true
  readonly #rawSocket: Corkable | undefined
  #receiver: MessageReceiver | undefined

  /**
   * `rawSocket`: the TCP socket under the WebSocket (`request.raw.socket` of the upgrade). Given,
   * the frames written to it within one tick go out in one system call instead of one each.
   */
  constructor (host: SinkHost, readonly socket: WebSocket, user: UserContext, private readonly shared: WebSocketSinkShared, rawSocket?: Corkable) {
    super(host, user)
    this.#rawSocket = rawSocket
  }

  /**
   * Takes the socket over: liveness, release on close, errors, expiry, heartbeats, then
   * `welcome`. The listeners are shared functions that find the sink on the socket, not
   * closures: an idle server holds thousands of sockets. `expiresAtMs`: when the token expires
   * (ms since the epoch); the connection is closed with 4401 then.
   */
  start (expiresAtMs?: number): void {
    const socket = this.socket as OwnedSocket
    socket[SINK] = this
    socket.on('pong', onPong)
    socket.on('message', onMessage)
    socket.on('close', onClose)
    // The sink takes the socket's errors over from @fastify/websocket, whose listener would keep
    // the upgrade's Fastify request and reply (and their logger) for the connection's life.
    socket.removeAllListeners('error')
    socket.on('error', onError)
    this.setExpiry(expiresAtMs)
    this.shared.heartbeats.add(this)
    this.reply({ type: 'welcome', connectionId: this.id, userId: this.user.userId, ...this.shared.welcome })
  }

  /** Where the frames the peer sends go from now on (set in the tick the sink was attached). */
  receive (receiver: MessageReceiver): void {
    this.#receiver = receiver
  }

  /** A frame from the peer: it proves the peer alive, and goes to the receiver. */
  received (data: RawData, isBinary: boolean): void {
    this.alive = true
    this.#receiver?.onMessage(data, isBinary)
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

  /** The token ran out: closed with 4401. */
  protected expired (): void {
    this.close(CloseCode.UNAUTHORIZED, 'token expired')
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
    this.shared.heartbeats.delete(this)
    super.release()
  }

  heartbeat (): void {
    if (!this.alive) {
      // The peer has not answered for a whole interval: say why, but do not wait long for it.
      this.close(CloseCode.HEARTBEAT_TIMEOUT, 'heartbeat timeout', Math.min(this.shared.welcome.heartbeatMs, CLOSE_HANDSHAKE_MS))
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
