// The connection side of the client: one WebSocket at a time, reconnected with exponential
// backoff and jitter; after every `welcome` it re-subscribes each live run after its last seq
// (runs.ts drops repeats and asks again on a gap), re-sends cancels and queued runs, refreshes
// the token with `auth` before it expires, and paces what it sends under the server's rate limit.
// It runs unchanged in browsers and in Node: the only platform piece, the WebSocket class, is
// passed in or found on globalThis, and nothing here imports a runtime value from elsewhere.
import type { ClientMessage, Reply, ReplyOf, RunEvent, RunInput, ServerMessage } from '../protocol.js'
import type { ClientOptions, ConnectionState, GatewayClient, RunOptions, StateChange, TokenSource, WebSocketConstructor, WebSocketLike } from './options.js'
import { Pacer } from './pacer.js'
import { GatewayError, RunState, type Run, type RunOwner } from './run.js'
import { BEARER_PROTOCOL_PREFIX, CLOSE_UNAUTHORIZED, PROTOCOL, tokenExpiry } from './wire.js'

/** A request waiting for its reply, kept whole so that it can be sent again. */
interface PendingRequest {
  readonly message: ClientMessage & { id: string }
  readonly onReply: (reply: Reply) => void
  readonly onSent?: (() => void) | undefined
}

interface PendingRun {
  readonly message: ClientMessage & { type: 'run', id: string }
  sent: boolean
  resolve(run: Run): void
  reject(error: GatewayError): void
}

type Timer = ReturnType<typeof setTimeout>

/** A close code for connections the client gives up on itself (4000–4999 are free for applications). */
const CLOSE_CLIENT_DROP = 4000
const MAX_TIMER_MS = 2 ** 31 - 1
/** Least wait before asking a failing token function again while the connection is up. */
const REFRESH_RETRY_MS = 250

class Client implements GatewayClient, RunOwner {
  #state: ConnectionState = 'connecting'
  #welcome: ReplyOf<'welcome'> | undefined
  #socket: WebSocketLike | undefined
  readonly #listeners = new Set<(change: StateChange) => void>()
  /** Runs followed until their terminal event. */
  readonly #runs = new Map<string, RunState>()
  /** `run` requests not answered yet, by request id. */
  readonly #pendingRuns = new Map<string, PendingRun>()
  /** Reply handlers of the current connection, by request id. */
  readonly #replies = new Map<string, PendingRequest>()
  readonly #pacer: Pacer
  #attempt = 0
  #nextId = 0
  #heard = false
  #expiresAt: number | undefined
  #reconnectTimer: Timer | undefined
  #pingTimer: ReturnType<typeof setInterval> | undefined
  #refreshTimer: Timer | undefined

  readonly #url: string
  readonly #token: TokenSource
  readonly #WebSocket: WebSocketConstructor
  readonly #initialDelayMs: number
  readonly #maxDelayMs: number
  readonly #jitter: number
  readonly #refreshBeforeMs: number
  readonly #pingIntervalMs: number | undefined

  constructor (options: ClientOptions, WebSocketClass: WebSocketConstructor) {
    this.#url = String(options.url)
    this.#token = options.token
    this.#WebSocket = WebSocketClass
    this.#initialDelayMs = options.reconnect?.initialDelayMs ?? 250
    this.#maxDelayMs = options.reconnect?.maxDelayMs ?? 15_000
    this.#jitter = Math.min(1, Math.max(0, options.reconnect?.jitter ?? 0.5))
    this.#refreshBeforeMs = options.refreshBeforeExpiryMs ?? 60_000
    this.#pingIntervalMs = options.pingIntervalMs
    this.#pacer = new Pacer(options.rate?.perSecond ?? 10, options.rate?.burst ?? 20, (frame) => {
      if (this.#socket === undefined) return false
      this.#socket.send(frame)
      return true
    })
    // On the next microtask, so that listeners added right after createClient() see every change.
    queueMicrotask(() => { void this.#connect() })
  }

  get state (): ConnectionState {
    return this.#state
  }

  get welcome (): ReplyOf<'welcome'> | undefined {
    return this.#welcome
  }

  onStateChange (listener: (change: StateChange) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  run (input: string | RunInput, options: RunOptions = {}): Promise<Run> {
    if (this.#state === 'closed') return Promise.reject(this.#closedError())
    const id = this.#id()
    const message = {
      type: 'run' as const,
      id,
      input: typeof input === 'string' ? { message: input } : input,
      ...(options.agent === undefined ? {} : { agent: options.agent }),
      ...(options.threadId === undefined ? {} : { threadId: options.threadId })
    }
    return new Promise<Run>((resolve, reject) => {
      const pending: PendingRun = { message, sent: false, resolve, reject }
      this.#pendingRuns.set(id, pending)
      if (this.#state === 'open') this.#sendRun(pending)
    })
  }

  async subscribe (runId: string, options: { after?: number } = {}): Promise<Run> {
    if (this.#state === 'closed') throw this.#closedError()
    let run = this.#runs.get(runId)
    if (run === undefined) {
      run = new RunState(this, runId, options.after ?? 0)
      this.#runs.set(runId, run)
      if (this.#state === 'open') this.#follow(run)
    }
    await run.attached
    return run
  }

  requestCancel (run: RunState): void {
    if (this.#state === 'open' && !run.resubscribing) this.#sendCancel(run)
    // Otherwise the cancel goes out right after the run is (re-)subscribed.
  }

  close (): void {
    this.#shutdown(this.#closedError())
  }

  // --- the connection ------------------------------------------------------------------------

  async #connect (): Promise<void> {
    let token: string
    try {
      token = typeof this.#token === 'string' ? this.#token : await this.#token()
    } catch {
      // A token source that fails is retried like a connection that fails.
      if (this.#state !== 'closed') this.#retry(undefined, 'the token function failed')
      return
    }
    if (this.#state === 'closed') return
    this.#expiresAt = tokenExpiry(token)
    const socket = new this.#WebSocket(this.#url, [PROTOCOL, `${BEARER_PROTOCOL_PREFIX}${token}`])
    this.#socket = socket
    socket.addEventListener('message', (event) => { if (this.#socket === socket) this.#onFrame(event.data) })
    socket.addEventListener('close', (event) => { if (this.#socket === socket) this.#onClose(event.code, event.reason) })
    // Every error is followed by a close, which is where it is handled.
    socket.addEventListener('error', () => {})
  }

  #onFrame (data: unknown): void {
    if (typeof data !== 'string') return
    let message: ServerMessage
    try {
      message = JSON.parse(data) as ServerMessage
    } catch {
      return
    }
    this.#heard = true
    if ('seq' in message) {
      this.#onEvent(message)
      return
    }
    if (message.type === 'welcome') {
      this.#onWelcome(message)
      return
    }
    const request = message.id === undefined ? undefined : this.#replies.get(message.id)
    if (message.type === 'error' && message.code === 'RATE_LIMITED') {
      // The client's own pacing was not enough: it slows down, and the consumer never sees the
      // refusal. The server names the refused request, which is sent again at the slower pace;
      // a refusal that names none (an older server) means starting over on a new connection,
      // which re-sends every subscription and request in flight.
      this.#pacer.slowDown()
      if (request === undefined) {
        this.#drop(`${message.code}: ${message.message}`)
        return
      }
      const socket = this.#socket
      setTimeout(() => {
        if (this.#socket === socket && this.#replies.get(request.message.id) === request) this.#send(request.message, request.onSent)
      }, Math.ceil(1000 / this.#pacer.rate))
      return
    }
    if (request !== undefined) {
      this.#replies.delete(request.message.id)
      request.onReply(message)
    } else if (message.type === 'error' && message.id === undefined) {
      // An error that answers no request of ours: the connection is in an unknown state.
      this.#drop(`${message.code}: ${message.message}`)
    }
  }

  #onWelcome (welcome: ReplyOf<'welcome'>): void {
    this.#welcome = welcome
    this.#attempt = 0
    this.#pacer.adopt(welcome.limits)
    this.#setState({ state: 'open' })
    this.#heard = true
    this.#pingTimer = setInterval(() => { this.#checkAlive() }, this.#pingIntervalMs ?? Math.max(welcome.heartbeatMs, 5000))
    this.#scheduleRefresh()
    for (const run of this.#runs.values()) this.#follow(run)
    for (const pending of this.#pendingRuns.values()) this.#sendRun(pending)
  }

  #onClose (code: number, reason: string): void {
    this.#socket = undefined
    this.#replies.clear()
    this.#pacer.clear()
    clearInterval(this.#pingTimer)
    clearTimeout(this.#refreshTimer)
    for (const run of this.#runs.values()) run.resubscribing = false
    for (const [id, pending] of this.#pendingRuns) {
      if (!pending.sent) continue
      this.#pendingRuns.delete(id)
      pending.reject(new GatewayError('CONNECTION_LOST', 'The connection dropped before the server answered the run request; the run may or may not have started'))
    }
    if (this.#state === 'closed') return
    if (code === CLOSE_UNAUTHORIZED && typeof this.#token === 'string') {
      this.#shutdown(new GatewayError('UNAUTHORIZED', `The server refused the token (${reason}); pass a token function so the client can get a fresh one`), code, reason)
      return
    }
    this.#retry(code, reason)
  }

  /** Gives up on the current connection at once (without waiting for a closing handshake) and reconnects. */
  #drop (reason: string): void {
    const socket = this.#socket
    this.#onClose(CLOSE_CLIENT_DROP, reason)
    // A close reason must fit in 123 bytes, so the detail stays in the state change.
    socket?.close(CLOSE_CLIENT_DROP, 'reconnecting')
  }

  #retry (closeCode: number | undefined, reason: string): void {
    this.#attempt++
    const ceiling = Math.min(this.#maxDelayMs, this.#initialDelayMs * 2 ** (this.#attempt - 1))
    const delayMs = Math.round(ceiling * (1 - this.#jitter * Math.random()))
    this.#setState({ state: 'reconnecting', attempt: this.#attempt, delayMs, closeCode, reason })
    this.#reconnectTimer = setTimeout(() => { void this.#connect() }, delayMs)
  }

  #shutdown (error: GatewayError, closeCode?: number, reason?: string): void {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    clearTimeout(this.#reconnectTimer)
    for (const pending of this.#pendingRuns.values()) pending.reject(error)
    this.#pendingRuns.clear()
    for (const run of this.#runs.values()) run.fail(new GatewayError(error.code, error.message, run.runId))
    this.#runs.clear()
    const socket = this.#socket
    if (socket !== undefined) {
      this.#onClose(1000, 'client closed')
      socket.close(1000, 'client closed')
    }
    this.#emit({ state: 'closed', closeCode, reason, error })
  }

  #setState (change: StateChange): void {
    this.#state = change.state
    this.#emit(change)
  }

  #emit (change: StateChange): void {
    for (const listener of [...this.#listeners]) listener(change)
  }

  #closedError (): GatewayError {
    return new GatewayError('CLOSED', 'The client is closed')
  }

  /** A connection that said nothing for a whole interval is dead, even if no close ever came. */
  #checkAlive (): void {
    if (!this.#heard) {
      this.#drop('no answer from the server')
      return
    }
    this.#heard = false
    this.#send({ type: 'ping' })
  }

  /** Refreshes `refreshBeforeExpiryMs` before `exp`, or halfway there if that is sooner (but not within `floorMs`). */
  #scheduleRefresh (floorMs = 0): void {
    clearTimeout(this.#refreshTimer)
    const expiresAt = this.#expiresAt
    if (typeof this.#token === 'string' || expiresAt === undefined) return
    const remaining = expiresAt - Date.now()
    const delay = Math.max(floorMs, remaining - Math.min(this.#refreshBeforeMs, remaining / 2))
    this.#refreshTimer = setTimeout(() => { void this.#refresh() }, Math.min(delay, MAX_TIMER_MS))
  }

  async #refresh (): Promise<void> {
    const socket = this.#socket
    let token: string
    try {
      token = await (this.#token as () => string | Promise<string>)()
    } catch {
      // Try again halfway to `exp`; if the token expires first, the server closes with 4401 and
      // the reconnect asks the function again.
      if (socket === this.#socket) this.#scheduleRefresh(REFRESH_RETRY_MS)
      return
    }
    if (socket !== this.#socket || this.#state !== 'open') return
    this.#request({ type: 'auth', id: this.#id(), token }, (reply) => {
      if (reply.type !== 'auth_ok') return
      this.#expiresAt = reply.expiresAt === undefined ? undefined : Date.parse(reply.expiresAt)
      this.#scheduleRefresh()
    })
  }

  // --- runs ----------------------------------------------------------------------------------

  #onEvent (event: RunEvent): void {
    const run = this.#runs.get(event.runId)
    if (run === undefined) return
    const outcome = run.push(event)
    if (outcome === 'gap' && !run.resubscribing) this.#follow(run)
    if (run.ended) this.#runs.delete(run.runId)
  }

  #sendRun (pending: PendingRun): void {
    this.#request(pending.message, (reply) => {
      this.#pendingRuns.delete(pending.message.id)
      if (reply.type === 'run_accepted') {
        const run = new RunState(this, reply.runId, 0, reply)
        run.markAttached()
        this.#runs.set(run.runId, run)
        pending.resolve(run)
      } else if (reply.type === 'error') {
        pending.reject(new GatewayError(reply.code, reply.message))
      }
    }, () => { pending.sent = true })
  }

  /** (Re-)subscribes a run after its last seq; a cancel asked for meanwhile follows. */
  #follow (run: RunState): void {
    run.resubscribing = true
    this.#request({ type: 'subscribe', id: this.#id(), runId: run.runId, after: run.lastSeq }, (reply) => {
      if (reply.type === 'subscribed') {
        run.markAttached()
        if (run.cancelRequested && !run.ended) this.#sendCancel(run)
      } else if (reply.type === 'error') {
        this.#runs.delete(run.runId)
        run.fail(new GatewayError(reply.code, reply.message, run.runId))
      }
    })
  }

  #sendCancel (run: RunState): void {
    // A cancel has no reply of its own: the run's terminal event is the answer (RUN_ENDED when it
    // had already ended, which the terminal event also tells).
    this.#send({ type: 'cancel', runId: run.runId })
  }

  // --- sending -------------------------------------------------------------------------------

  #id (): string {
    return `c${++this.#nextId}`
  }

  #request (message: ClientMessage & { id: string }, onReply: (reply: Reply) => void, onSent?: () => void): void {
    this.#replies.set(message.id, { message, onReply, onSent })
    this.#send(message, onSent)
  }

  #send (message: ClientMessage, onSent?: () => void): void {
    this.#pacer.send(JSON.stringify(message), onSent)
  }
}

/**
 * Connects to an agent-gateway and keeps the connection: see docs/client.md.
 *
 * ```ts
 * const client = createClient({ url: 'wss://gateway.example/ws', token: () => fetchToken() })
 * const run = await client.run('What is 6 * 7?')
 * for await (const event of run) console.log(event.seq, event.type)
 * ```
 */
export function createClient (options: ClientOptions): GatewayClient {
  const WebSocketClass = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
  if (WebSocketClass === undefined) {
    throw new GatewayError('NO_WEBSOCKET', 'No WebSocket implementation: pass one, e.g. createClient({ url, token, WebSocket }) with `import WebSocket from \'ws\'` in Node')
  }
  return new Client(options, WebSocketClass)
}
