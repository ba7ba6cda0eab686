// The connection side of the client: one WebSocket at a time, reconnected with exponential
// backoff and jitter; after every `welcome` it re-subscribes each live run after its last seq
// (runs.ts drops repeats and asks again on a gap), re-sends cancels and queued runs, refreshes
// the token with `auth` before it expires, and paces what it sends under the server's rate limit.
// It runs unchanged in browsers and in Node: the only platform piece, the WebSocket class, is
// passed in or found on globalThis, and nothing here imports a runtime value from elsewhere.
import type { ClientMessage, Reply, ReplyOf, RunEvent, RunInput, RunRequest, ServerMessage } from '../protocol.js'
import { GatewayError, RunState, type Run, type RunOwner } from './run.js'
import { BEARER_PROTOCOL_PREFIX, CLOSE_UNAUTHORIZED, PROTOCOL, tokenExpiry } from './wire.js'

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed'

export interface StateChange {
  readonly state: ConnectionState
  /** `reconnecting`: the number of this retry (1, 2, …) and how long it waits before it. */
  readonly attempt?: number
  readonly delayMs?: number
  /** `reconnecting` / `closed`: the close code and reason of the connection that ended. */
  readonly closeCode?: number
  readonly reason?: string
  /** `closed`: why the client stopped. */
  readonly error?: GatewayError
}

/** A JWT, or a function that returns a fresh one; the function is called for every connection and before `exp`. */
export type TokenSource = string | (() => string | Promise<string>)

/** The part of a WebSocket the client uses: the browser's and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
  addEventListener(type: 'open', listener: () => void): void
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void
  addEventListener(type: 'close', listener: (event: { code: number, reason: string }) => void): void
  addEventListener(type: 'error', listener: (event: unknown) => void): void
}
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike

export interface ClientOptions {
  /** The gateway's WebSocket URL, e.g. `wss://gateway.example/ws`. */
  url: string | URL
  token: TokenSource
  /** The WebSocket class: `ws`'s default export in Node; the global one when omitted. */
  WebSocket?: WebSocketConstructor
  reconnect?: {
    /** First retry delay (default 250 ms); it doubles per failed attempt up to `maxDelayMs` (default 15 s). */
    initialDelayMs?: number
    maxDelayMs?: number
    /** Share of each delay that is random (0…1, default 0.5), so clients do not retry in lockstep. */
    jitter?: number
  }
  /** Refresh a function token this long before its `exp` (default 60 s, at most half its remaining life). */
  refreshBeforeExpiryMs?: number
  /** Check the connection this often (default: the server's `heartbeatMs`, at least 5 s); silent for a whole interval means dead. */
  pingIntervalMs?: number
  /** Pacing of outgoing messages, below the server's rate limit (default 10 per second, bursts of 20). */
  rate?: { perSecond?: number, burst?: number }
}

/** `{ agent?, threadId? }` of the protocol's run request. */
export type RunOptions = Omit<RunRequest, 'input'>

export interface GatewayClient {
  readonly state: ConnectionState
  /** The server's last `welcome` (user id, heartbeat, limits); undefined before the first. */
  readonly welcome: ReplyOf<'welcome'> | undefined
  /** Starts a run (queued until connected); rejects with a GatewayError (`TOO_MANY_RUNS`, `UNKNOWN_AGENT`, …). */
  run(input: string | RunInput, options?: RunOptions): Promise<Run>
  /** Follows an existing run from `after` (default 0: from its start); rejects with `NOT_FOUND` / `HISTORY_EXPIRED`. */
  subscribe(runId: string, options?: { after?: number }): Promise<Run>
  /** Calls `listener` on every state change; returns the function that removes it. */
  onStateChange(listener: (change: StateChange) => void): () => void
  /** Closes the connection for good; runs still followed end with `CLOSED`. */
  close(): void
}

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

interface Outgoing {
  readonly frame: string
  readonly onSent?: () => void
}

type Timer = ReturnType<typeof setTimeout>

/** A close code for connections the client gives up on itself (4000–4999 are free for applications). */
const CLOSE_CLIENT_DROP = 4000
const MAX_TIMER_MS = 2 ** 31 - 1
/** Least wait before asking a failing token function again while the connection is up. */
const REFRESH_RETRY_MS = 250
/** The share of the server's announced message rate the client uses (see #onWelcome). */
const PACING_RATE_SHARE = 0.9

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
  #queue: Outgoing[] = []
  #allowance: number
  #refilledAt = 0
  #perSecond: number
  #burst: number
  #attempt = 0
  #nextId = 0
  #heard = false
  #expiresAt: number | undefined
  #reconnectTimer: Timer | undefined
  #pingTimer: ReturnType<typeof setInterval> | undefined
  #refreshTimer: Timer | undefined
  #flushTimer: Timer | undefined

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
    this.#perSecond = options.rate?.perSecond ?? 10
    this.#burst = options.rate?.burst ?? 20
    this.#allowance = this.#burst
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
      this.#perSecond = Math.max(1, this.#perSecond / 2)
      this.#burst = Math.max(1, Math.floor(this.#burst / 2))
      if (request === undefined) {
        this.#drop(`${message.code}: ${message.message}`)
        return
      }
      const socket = this.#socket
      setTimeout(() => {
        if (this.#socket === socket && this.#replies.get(request.message.id) === request) this.#send(request.message, request.onSent)
      }, Math.ceil(1000 / this.#perSecond))
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
    // Pace by what the server announces (older servers announce nothing), so it need not refuse.
    // The server measures arrivals, not sends: frames held up on the way (a busy server, a slow
    // network) arrive closer together than they were sent. One message of the burst and a tenth
    // of the rate are kept in reserve so that such bunching stays within the server's bucket.
    const { messagesPerSecond, messageBurst } = welcome.limits as Partial<ReplyOf<'welcome'>['limits']>
    if (typeof messagesPerSecond === 'number') this.#perSecond = Math.min(this.#perSecond, messagesPerSecond * PACING_RATE_SHARE)
    if (typeof messageBurst === 'number') this.#burst = Math.min(this.#burst, Math.max(1, messageBurst - 1))
    this.#allowance = this.#burst
    this.#refilledAt = Date.now()
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
    this.#queue = []
    clearInterval(this.#pingTimer)
    clearTimeout(this.#refreshTimer)
    clearTimeout(this.#flushTimer)
    this.#flushTimer = undefined
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
    this.#queue.push({ frame: JSON.stringify(message), onSent })
    this.#flush()
  }

  /** Sends queued frames as fast as a token bucket allows. */
  #flush (): void {
    const socket = this.#socket
    if (this.#flushTimer !== undefined || socket === undefined) return
    const now = Date.now()
    this.#allowance = Math.min(this.#burst, this.#allowance + ((now - this.#refilledAt) / 1000) * this.#perSecond)
    this.#refilledAt = now
    while (this.#queue.length > 0 && this.#allowance >= 1) {
      const next = this.#queue.shift() as Outgoing
      this.#allowance -= 1
      socket.send(next.frame)
      next.onSent?.()
    }
    if (this.#queue.length === 0) return
    const waitMs = Math.ceil(((1 - this.#allowance) / this.#perSecond) * 1000)
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined
      this.#flush()
    }, waitMs)
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
