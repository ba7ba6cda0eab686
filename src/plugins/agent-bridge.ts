// agent-bridge: the one path from a run to sockets, and the only module that writes to one.
// Every event is serialised once, written to the run's log (the EventStore) before any socket
// sees it, and delivered only to subscribed connections of the run's owner. Each subscription
// keeps a seq cursor, so replay, live delivery and catch-up after backpressure join without a
// gap or a duplicate: anything not sent live is read back from the log.
import fp from 'fastify-plugin'
import fastifyWebsocket from '@fastify/websocket'
import type { ServerResponse } from 'node:http'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import {
  CloseCode, PROTOCOL, TERMINAL_EVENT_TYPE, type Reply, type RunEventData, type RunEventType, type TerminalStatus
} from '../protocol.js'
import {
  ConnectionLimitError, HistoryExpiredError, RunEndedError, RunNotFoundError, ShuttingDownError, TooManyRunsError, WebSocketPresentError
} from '../errors.js'
import { hasEventsAfter, type EventStore, type NewRun, type RunMeta, type StoredEvent } from '../stores/event-store.js'
import { createMemoryStore } from '../stores/memory-store.js'
import { createRedisStore } from '../stores/redis-store.js'
import { telemetryOf, type SinkKind, type Telemetry } from '../telemetry.js'
import type { UserContext } from './user-context.js'

/** Events read from the log per batch when a subscription replays or catches up. */
const READ_BATCH = 256
/** How long an admitted handshake holds a connection slot if the upgrade never completes. */
const ADMISSION_TTL_MS = 10_000
/** Bound on waiting for runs to write their terminal event and sockets to flush at shutdown. */
const SHUTDOWN_FLUSH_MS = 5_000
/** Frames are UTF-8 JSON bytes, sent as text frames. */
const TEXT_FRAME = { binary: false } as const
/** How often a congested socket's buffer is re-checked when no write callback is pending. */
const DRAIN_POLL_MS = 50
/** How long a peer may take to answer our close frame before it is cut off. */
const CLOSE_HANDSHAKE_MS = 2_000

export type NonTerminalEventType = Exclude<RunEventType, typeof TERMINAL_EVENT_TYPE>

/** A run's handle on the bridge: the only way a run's events reach the log and the sockets. */
export interface RunEmitter {
  readonly runId: string
  readonly threadId: string
  /** True once the terminal event has been written; later emits are dropped. */
  readonly ended: boolean
  /**
   * Logs and delivers one event, in call order. Throws a TypeError at once (logging nothing)
   * when `data` is not JSON-serialisable. Returns false after the run has ended.
   */
  emit<T extends NonTerminalEventType>(type: T, data: RunEventData<T>): boolean
  /** Writes the single `agent_completed` and ends the run in the store. Only the first call counts. */
  complete(data: RunEventData<'agent_completed'>): Promise<void>
  /** Events emitted but not yet written to the log. */
  readonly backlog: number
  /**
   * Resolves once the backlog is at most DRAIN_BACKLOG events (at once if it is already). A
   * producer faster than the store awaits it now and then, so that a slow store slows the
   * producer instead of filling the server's memory with events waiting to be written.
   */
  drained(): Promise<void>
}

/** The backlog of a run's unwritten events at which `drained()` resolves. */
export const DRAIN_BACKLOG = 256

export type StopReason = 'cancelled' | 'shutdown' | 'disconnected'

export interface OpenRunOptions {
  /**
   * Called on `cancel` (sent to any node), for a run still going at shutdown (after the grace
   * period), or, with `cancelOnDisconnect`, when no connection has followed it for
   * DISCONNECT_GRACE_MS. It must end the run soon.
   */
  stop(reason: StopReason): void
  /** Stop the run ('disconnected') once it has gone unwatched for DISCONNECT_GRACE_MS. */
  cancelOnDisconnect?: boolean
}

export interface AgentBridge {
  readonly store: EventStore
  /** True once shutdown has begun: no new runs or connections. */
  readonly closing: boolean
  /**
   * Registers a run in the store, executed by this node, and returns its emitter. Throws
   * AGW_ERR_RUN_TOO_MANY when its owner already has MAX_CONCURRENT_RUNS in flight on any node.
   */
  openRun(run: NewRun, options: OpenRunOptions): Promise<RunEmitter>
  /** The run's metadata if `user` owns it; otherwise exactly the error of a run that does not exist. */
  lookupOwnedRun(user: UserContext, runId: string): Promise<RunMeta>
  /** Cancels a run of `user`, on whichever node executes it. NOT_FOUND / RUN_ENDED errors. */
  cancelRun(user: UserContext, runId: string): Promise<void>
  /** Reserves a connection slot for a handshake, or throws AGW_ERR_CONNECTION_LIMIT (429). */
  admit(userId: string): void
  /** Takes over an upgraded socket: sends `welcome`, runs heartbeats, owns every write. */
  attach(socket: WebSocket, user: UserContext, options?: AttachOptions): Connection
  /**
   * Streams one run (which `user` owns: check first) as text/event-stream on a hijacked response,
   * from `options.after`, ending after its terminal event. Count it with `admit()` first.
   */
  openStream(response: ServerResponse, user: UserContext, options: EventStreamOptions): EventStream
  connectionCount(userId: string): number
}

declare module 'fastify' {
  interface FastifyInstance {
    agentBridge: AgentBridge
  }
}

export interface AttachOptions {
  /** When the token expires (ms since the epoch): the connection is closed with 4401 then. */
  expiresAtMs?: number
  /**
   * The TCP socket under the WebSocket (`request.raw.socket` of the upgrade). Given, the frames
   * written to it within one tick go out in one system call instead of one each.
   */
  rawSocket?: Corkable
}

/** A stream whose writes can be held back and sent together (net.Socket, http.ServerResponse). */
export interface Corkable {
  cork(): void
  uncork(): void
}

export interface AgentBridgePluginOptions {
  /** An EventStore to use instead of the embedded memory store (the bridge closes it on shutdown). */
  store?: EventStore
}

// ---------------------------------------------------------------------------------------------

/** Live fan-out of one run on this node: one store subscription shared by local subscribers. */
class Hub {
  lastSeq = 0
  readonly subs = new Set<Subscription>()
  readonly ready: Promise<void>
  readonly unsubscribe: () => void

  constructor (readonly runId: string, private readonly core: BridgeCore) {
    const subscription = core.store.subscribe(runId, (event) => { this.onEvent(event) }, () => { this.resync() })
    this.ready = subscription.ready
    this.unsubscribe = () => { subscription.unsubscribe() }
  }

  /** The store may have missed events: every subscriber re-reads the log from its cursor. */
  resync (): void {
    for (const sub of this.subs) sub.resync()
  }

  onEvent (event: StoredEvent): void {
    if (event.seq > this.lastSeq) this.lastSeq = event.seq
    for (const sub of this.subs) sub.offer(event)
  }

  remove (sub: Subscription): void {
    this.subs.delete(sub)
    if (this.subs.size === 0) {
      this.unsubscribe()
      this.core.hubs.delete(this.runId)
      this.core.unwatched(this.runId)
    }
  }
}

type SubscriptionMode = 'catchup' | 'live' | 'closed'

/** One sink (a WebSocket, an event stream) following one run, from a cursor: the seq of the last event sent. */
class Subscription {
  mode: SubscriptionMode = 'catchup'
  #catchingUp = false

  constructor (
    readonly sink: Sink,
    readonly hub: Hub,
    public cursor: number
  ) {}

  resync (): void {
    if (this.mode !== 'live') return
    this.mode = 'catchup'
    this.catchUp()
  }

  offer (event: StoredEvent): void {
    if (this.mode !== 'live') return
    if (event.seq <= this.cursor) {
      // A cursor past the run's end (a client that claimed more than it was sent): over all the same.
      if (event.type === TERMINAL_EVENT_TYPE) this.sink.endSubscription(this, true)
      return
    }
    if (event.seq !== this.cursor + 1 || this.sink.congested) {
      if (this.sink.congested) this.sink.bridge.telemetry.slowConsumerPaused()
      this.mode = 'catchup'
      this.catchUp()
      return
    }
    this.#deliver(event)
    this.sink.bridge.telemetry.eventDelivered(Date.now() - event.at)
  }

  #deliver (event: StoredEvent): void {
    this.sink.write(event)
    this.cursor = event.seq
    if (event.type === TERMINAL_EVENT_TYPE) this.sink.endSubscription(this, true)
  }

  /** Sends from the log until the cursor reaches the live edge with room in the socket's buffer. */
  catchUp (): void {
    if (this.#catchingUp) return
    this.#catchingUp = true
    this.#catchUpLoop().catch((err: unknown) => {
      this.sink.log.error({ err, runId: this.hub.runId }, 'catch-up from the event log failed')
      this.sink.fail('event log unavailable')
    })
  }

  async #catchUpLoop (): Promise<void> {
    const { sink, hub } = this
    try {
      // Reading the log only after the live subscription is in place leaves no gap between them.
      await hub.ready
      while (this.mode === 'catchup') {
        if (sink.congested) {
          await sink.drained()
          continue
        }
        const batch = await sink.bridge.store.read(hub.runId, this.cursor, READ_BATCH)
        let replayed = 0
        for (const event of batch) {
          if (this.mode !== 'catchup' || sink.congested) break
          if (event.seq === this.cursor + 1) {
            this.#deliver(event)
            replayed++
          } else if (event.seq <= this.cursor && event.type === TERMINAL_EVENT_TYPE) {
            sink.endSubscription(this, true)
          }
        }
        if (replayed > 0) sink.bridge.telemetry.eventsReplayed(replayed)
        // The hub's lastSeq is updated synchronously by live events, so this check cannot race:
        // an event appended while the read was in flight keeps the loop going.
        if (this.mode === 'catchup' && batch.length < READ_BATCH && this.cursor >= hub.lastSeq && !sink.congested) {
          this.mode = 'live'
        }
      }
    } finally {
      // Cleared in the very turn the loop ends (not in a later .finally()): otherwise an offer
      // that finds the socket congested right after going live would see the flag still set,
      // and its catch-up would never start.
      this.#catchingUp = false
    }
  }
}

/**
 * Where a user's events go: a WebSocket connection or an HTTP event stream. It follows runs
 * through subscriptions and tells them when its send buffer is full; every write to the peer
 * goes through a sink.
 */
export abstract class Sink {
  abstract readonly kind: SinkKind
  readonly id: string
  readonly log: FastifyBaseLogger
  protected readonly subs = new Map<string, Subscription>()
  #closed = false
  #drainWaiters: Array<() => void> = []
  #drainTimer: NodeJS.Timeout | undefined
  protected readonly highWater: number
  protected readonly lowWater: number
  /** Shared by every write, not allocated per frame. */
  protected readonly onFlushed = (): void => { this.checkDrained() }
  #corked = false
  readonly #uncork = (): void => {
    this.#corked = false
    this.transport?.uncork()
  }

  constructor (readonly bridge: BridgeCore, readonly user: UserContext) {
    this.id = user.connectionId
    this.log = bridge.log.child({ connectionId: this.id, userId: user.userId })
    this.highWater = bridge.config.SEND_BUFFER_BYTES
    this.lowWater = Math.floor(this.highWater / 2)
  }

  /** Bytes written but not yet handed to the kernel. */
  protected abstract get buffered (): number
  /** The stream the sink's bytes go out on, when it can be corked. */
  protected abstract get transport (): Corkable | undefined

  /**
   * Holds this tick's writes back until the tick ends, so that they reach the kernel in one
   * system call: under load, a run emits many events per tick and each write would otherwise be
   * a syscall of its own (the larger part of the cost of an event). Order is kept: corking only
   * delays the flush, and every write of the sink goes through the same stream.
   */
  protected batchWrites (): void {
    if (this.#corked) return
    const transport = this.transport
    if (transport === undefined) return
    this.#corked = true
    transport.cork()
    process.nextTick(this.#uncork)
  }
  /** Writes one event to the peer. */
  abstract write (event: StoredEvent): void
  /** Ends the sink after a failure it cannot recover from. */
  abstract fail (reason: string): void
  /** Called by the bridge's one heartbeat timer. */
  abstract heartbeat (): void
  /** Ends the sink at shutdown, after everything logged was delivered. */
  abstract goAway (): void

  /** Nothing left to deliver: no subscription, an empty send buffer. */
  get idle (): boolean {
    return this.subs.size === 0 && this.buffered === 0
  }

  get closed (): boolean {
    return this.#closed
  }

  get congested (): boolean {
    return this.buffered > this.highWater
  }

  /**
   * Resolves once the send buffer is back under the low-water mark (or the sink closed). Write
   * callbacks are the signal; a slow poll backs them up for buffer growth that has no callback of
   * ours pending (ws's own control frames).
   */
  drained (): Promise<void> {
    if (this.#closed || this.buffered <= this.lowWater) return Promise.resolve()
    this.#drainTimer ??= setInterval(() => { this.checkDrained() }, DRAIN_POLL_MS).unref()
    return new Promise((resolve) => { this.#drainWaiters.push(resolve) })
  }

  protected checkDrained (): void {
    if (this.#drainWaiters.length === 0) return
    if (!this.#closed && this.buffered > this.lowWater) return
    clearInterval(this.#drainTimer)
    this.#drainTimer = undefined
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const resolve of waiters) resolve()
  }

  /** True when a write of `bytes` leaves the buffer filling: then we want its flush callback. */
  protected filling (bytes: number): boolean {
    return this.buffered + bytes > this.lowWater
  }

  get subscriptionCount (): number {
    return this.subs.size
  }

  follows (runId: string): boolean {
    return this.subs.has(runId)
  }

  /** Starts (or restarts) following a run from `after` (the caller has checked ownership). */
  follow (runId: string, after: number): void {
    if (this.#closed) return
    this.unsubscribe(runId)
    let hub = this.bridge.hubs.get(runId)
    if (hub === undefined) {
      hub = new Hub(runId, this.bridge)
      this.bridge.hubs.set(runId, hub)
      this.bridge.watched(runId)
    }
    const sub = new Subscription(this, hub, after)
    this.subs.set(runId, sub)
    hub.subs.add(sub)
    sub.catchUp()
  }

  unsubscribe (runId: string): void {
    const sub = this.subs.get(runId)
    if (sub !== undefined) this.endSubscription(sub, false)
  }

  /** `completed`: the run's terminal event was delivered. */
  endSubscription (sub: Subscription, _completed: boolean): void {
    sub.mode = 'closed'
    if (this.subs.get(sub.hub.runId) === sub) this.subs.delete(sub.hub.runId)
    sub.hub.remove(sub)
  }

  /** Called when the peer is gone, whoever ended it; frees everything the sink holds. */
  release (): void {
    if (this.#closed) return
    this.#closed = true
    for (const sub of [...this.subs.values()]) this.endSubscription(sub, false)
    this.checkDrained()
    this.bridge.forget(this)
  }
}

/** One WebSocket connection. */
export class Connection extends Sink {
  readonly kind = 'websocket'
  alive = true
  #expiryTimer: NodeJS.Timeout | undefined

  constructor (bridge: BridgeCore, readonly socket: WebSocket, user: UserContext, private readonly rawSocket?: Corkable) {
    super(bridge, user)
  }

  protected get buffered (): number {
    return this.socket.bufferedAmount
  }

  protected get transport (): Corkable | undefined {
    return this.rawSocket
  }

  write (event: StoredEvent): void {
    this.sendFrame(event.frame)
  }

  /** Writes one text frame: a logged event's bytes (shared by every socket, never copied). */
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

  /** Follows a run this connection's user owns, from `after`, replying `subscribed` first. */
  async subscribe (runId: string, after: number, id?: string): Promise<void> {
    const meta = await this.bridge.lookupOwnedRun(this.user, runId)
    if (this.closed) return
    this.reply({ type: 'subscribed', id, runId, recovered: true, fromSeq: after + 1 })
    // A finished run the client has seen to its end: there is nothing left to follow.
    if (!hasEventsAfter(meta, after)) {
      this.unsubscribe(runId)
      return
    }
    this.follow(runId, after)
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
    super.release()
  }

  heartbeat (): void {
    if (!this.alive) {
      // The peer has not answered for a whole interval: say why, but do not wait long for it.
      this.close(CloseCode.HEARTBEAT_TIMEOUT, 'heartbeat timeout', Math.min(this.bridge.config.HEARTBEAT_MS, CLOSE_HANDSHAKE_MS))
      return
    }
    this.alive = false
    if (this.socket.readyState === this.socket.OPEN) this.socket.ping()
  }

  /** Closes at shutdown, after everything logged was delivered. */
  goAway (): void {
    this.close(CloseCode.GOING_AWAY, 'server shutting down')
  }
}

export interface EventStreamOptions {
  readonly runId: string
  /** Deliver events with seq > after. */
  readonly after: number
  /** The text written for one event ('' writes nothing). Called in seq order, once per event. */
  format(event: StoredEvent): string
  /** Called once when the stream ends: after the run's terminal event (true) or early (false). */
  onEnd?(completed: boolean): void
}

/**
 * One HTTP event stream (text/event-stream) following one run: the same subscription, cursor and
 * backpressure as a WebSocket, ending after the run's terminal event.
 */
export class EventStream extends Sink {
  readonly kind = 'sse'
  #ended = false

  constructor (bridge: BridgeCore, readonly response: ServerResponse, user: UserContext, private readonly options: EventStreamOptions) {
    super(bridge, user)
    response.on('drain', this.onFlushed)
  }

  protected get buffered (): number {
    return this.response.writableLength
  }

  protected get transport (): Corkable {
    return this.response
  }

  /** Writes the head of the response and starts following the run. */
  start (): void {
    this.response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Tells buffering proxies (nginx) to pass events through at once.
      'x-accel-buffering': 'no'
    })
    this.response.flushHeaders()
    this.follow(this.options.runId, this.options.after)
  }

  write (event: StoredEvent): void {
    if (this.closed) return
    const text = this.options.format(event)
    if (text === '') return
    this.batchWrites()
    this.response.write(text)
  }

  override endSubscription (sub: Subscription, completed: boolean): void {
    super.endSubscription(sub, completed)
    this.#end(completed)
  }

  #end (completed: boolean): void {
    if (this.#ended) return
    this.#ended = true
    if (!this.response.writableEnded) this.response.end()
    this.release()
    this.options.onEnd?.(completed)
  }

  fail (reason: string): void {
    this.log.warn({ reason }, 'event stream ended early')
    this.#end(false)
  }

  /** A comment line: keeps proxies from closing an idle stream. */
  heartbeat (): void {
    if (!this.closed) this.response.write(': keep-alive\n\n')
  }

  goAway (): void {
    this.#end(false)
  }
}

interface OpenRun {
  readonly emitter: Emitter
  readonly options: OpenRunOptions
  /** Armed while a cancelOnDisconnect run has no subscriber on this node. */
  unwatchedTimer?: NodeJS.Timeout
}

class Emitter implements RunEmitter {
  #ended = false
  #backlog = 0
  #drainWaiters: Array<() => void> = []

  constructor (
    private readonly core: BridgeCore,
    readonly runId: string,
    readonly threadId: string
  ) {}

  get ended (): boolean {
    return this.#ended
  }

  emit<T extends NonTerminalEventType> (type: T, data: RunEventData<T>): boolean {
    if (this.#ended) return false
    // Failures are logged inside #append; the agent is not made to wait for the log.
    void this.#append(type, JSON.stringify(data))
    return true
  }

  get backlog (): number {
    return this.#backlog
  }

  drained (): Promise<void> {
    if (this.#backlog <= DRAIN_BACKLOG) return Promise.resolve()
    return new Promise((resolve) => { this.#drainWaiters.push(resolve) })
  }

  // One pair of handlers for every append of the run: no closure per event.
  readonly #appended = (): void => {
    this.#backlog--
    if (this.#backlog <= DRAIN_BACKLOG && this.#drainWaiters.length > 0) {
      const waiters = this.#drainWaiters
      this.#drainWaiters = []
      for (const resolve of waiters) resolve()
    }
  }

  readonly #appendFailed = (err: unknown): void => {
    this.#appended()
    this.core.log.error({ err, runId: this.runId }, 'could not write a run event to the log')
  }

  #append (type: RunEventType, dataJson: string): Promise<unknown> {
    this.core.telemetry.eventAppended(type)
    const append = this.core.store.append(this.runId, type, dataJson)
    this.#backlog++
    append.then(this.#appended, this.#appendFailed)
    return append
  }

  async complete (data: RunEventData<'agent_completed'>): Promise<void> {
    if (this.#ended) return
    let dataJson: string
    try {
      dataJson = JSON.stringify(data)
    } catch {
      dataJson = JSON.stringify({
        status: 'failed',
        error: { code: 'BAD_OUTPUT', message: 'The agent returned an output that is not JSON-serialisable' },
        durationMs: data.durationMs
      })
    }
    this.#ended = true
    const status = (JSON.parse(dataJson) as { status: TerminalStatus }).status
    try {
      await this.#append(TERMINAL_EVENT_TYPE, dataJson)
      await this.core.store.endRun(this.runId, status)
    } finally {
      this.core.runEnded(this.runId)
      this.core.telemetry.runEnded(status)
    }
  }
}

/** The bridge's state, shared by its connections, subscriptions and emitters. */
class BridgeCore implements AgentBridge {
  readonly hubs = new Map<string, Hub>()
  readonly runs = new Map<string, OpenRun>()
  readonly connections = new Set<Sink>()
  readonly byUser = new Map<string, Set<Sink>>()
  readonly admissions = new Map<string, number[]>()
  closing = false
  #runEndedWaiters: Array<() => void> = []
  #heartbeat: NodeJS.Timeout | undefined

  constructor (
    readonly store: EventStore,
    readonly config: FastifyInstance['config'],
    readonly log: FastifyBaseLogger,
    readonly telemetry: Telemetry
  ) {}

  async openRun (run: NewRun, options: OpenRunOptions): Promise<RunEmitter> {
    if (this.closing) throw new ShuttingDownError()
    const limit = this.config.MAX_CONCURRENT_RUNS
    const result = await this.store.createRun(run, { maxActivePerOwner: limit })
    if (!result.created) {
      throw new TooManyRunsError(`${result.active} of yours are in progress (limit ${limit}); wait for one to finish or cancel one`)
    }
    const emitter = new Emitter(this, run.runId, run.threadId)
    this.runs.set(run.runId, { emitter, options })
    this.telemetry.runStarted()
    // Until a connection follows it, a cancelOnDisconnect run is unwatched too.
    this.unwatched(run.runId)
    return emitter
  }

  /** A run of this node lost its last local subscriber. */
  unwatched (runId: string): void {
    const run = this.runs.get(runId)
    if (run?.options.cancelOnDisconnect !== true || run.unwatchedTimer !== undefined) return
    run.unwatchedTimer = setTimeout(() => {
      run.unwatchedTimer = undefined
      if (!this.hubs.has(runId)) run.options.stop('disconnected')
    }, this.config.DISCONNECT_GRACE_MS)
    run.unwatchedTimer.unref()
  }

  /** A connection of this node started following a run. */
  watched (runId: string): void {
    const run = this.runs.get(runId)
    if (run === undefined) return
    clearTimeout(run.unwatchedTimer)
    run.unwatchedTimer = undefined
  }

  runEnded (runId: string): void {
    clearTimeout(this.runs.get(runId)?.unwatchedTimer)
    this.runs.delete(runId)
    const waiters = this.#runEndedWaiters
    this.#runEndedWaiters = []
    for (const resolve of waiters) resolve()
  }

  async cancelRun (user: UserContext, runId: string): Promise<void> {
    const meta = await this.lookupOwnedRun(user, runId)
    if (meta.status !== 'running') throw new RunEndedError(runId)
    const local = this.runs.get(runId)
    if (local !== undefined) local.options.stop('cancelled')
    else await this.store.requestStop(meta)
  }

  async lookupOwnedRun (user: UserContext, runId: string): Promise<RunMeta> {
    const lookup = await this.store.getRun(runId)
    if (lookup.state === 'found' && lookup.meta.ownerId === user.userId) return lookup.meta
    if (lookup.state === 'expired' && lookup.ownerId === user.userId) throw new HistoryExpiredError(runId)
    // Missing, or someone else's: the same error, so nobody learns that another user's run exists.
    throw new RunNotFoundError(runId)
  }

  admit (userId: string): void {
    if (this.closing) throw new ShuttingDownError()
    const now = Date.now()
    const pending = (this.admissions.get(userId) ?? []).filter((expiresAt) => expiresAt > now)
    if (this.connectionCount(userId) + pending.length >= this.config.MAX_CONNECTIONS_PER_USER) {
      throw new ConnectionLimitError(this.config.MAX_CONNECTIONS_PER_USER)
    }
    pending.push(now + ADMISSION_TTL_MS)
    this.admissions.set(userId, pending)
  }

  attach (socket: WebSocket, user: UserContext, options: AttachOptions = {}): Connection {
    const conn = new Connection(this, socket, user, options.rawSocket)
    this.#register(conn)
    // A pong, or any frame, proves the peer is alive.
    socket.on('pong', () => { conn.alive = true })
    socket.on('message', () => { conn.alive = true })
    socket.on('close', () => { conn.release() })
    conn.setExpiry(options.expiresAtMs)
    conn.reply({
      type: 'welcome',
      protocol: PROTOCOL,
      connectionId: conn.id,
      userId: user.userId,
      heartbeatMs: this.config.HEARTBEAT_MS,
      limits: {
        maxMessageBytes: this.config.MAX_MESSAGE_BYTES,
        maxConcurrentRuns: this.config.MAX_CONCURRENT_RUNS,
        messagesPerSecond: this.config.MESSAGE_RATE_PER_SEC,
        messageBurst: this.config.MESSAGE_RATE_BURST
      }
    })
    return conn
  }

  openStream (response: ServerResponse, user: UserContext, options: EventStreamOptions): EventStream {
    const stream = new EventStream(this, response, user, options)
    this.#register(stream)
    response.on('close', () => { stream.goAway() })
    stream.start()
    return stream
  }

  /** Counts a new sink against its user's admission and includes it in heartbeats. */
  #register (sink: Sink): void {
    const pending = this.admissions.get(sink.user.userId)
    pending?.shift()
    if (pending?.length === 0) this.admissions.delete(sink.user.userId)
    this.connections.add(sink)
    let userSinks = this.byUser.get(sink.user.userId)
    if (userSinks === undefined) {
      userSinks = new Set()
      this.byUser.set(sink.user.userId, userSinks)
    }
    userSinks.add(sink)
    this.telemetry.connectionOpened(sink.kind)
    this.#ensureHeartbeat()
  }

  forget (sink: Sink): void {
    if (this.connections.delete(sink)) this.telemetry.connectionClosed(sink.kind)
    const userSinks = this.byUser.get(sink.user.userId)
    userSinks?.delete(sink)
    if (userSinks?.size === 0) this.byUser.delete(sink.user.userId)
    if (this.connections.size === 0) {
      clearInterval(this.#heartbeat)
      this.#heartbeat = undefined
    }
  }

  connectionCount (userId: string): number {
    return this.byUser.get(userId)?.size ?? 0
  }

  // One timer for every connection, not one per connection.
  #ensureHeartbeat (): void {
    if (this.#heartbeat !== undefined) return
    this.#heartbeat = setInterval(() => {
      for (const conn of [...this.connections]) conn.heartbeat()
    }, this.config.HEARTBEAT_MS)
    this.#heartbeat.unref()
  }

  #waitForRuns (deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.runs.size === 0 || Date.now() >= deadline) {
          clearTimeout(timer)
          resolve()
        } else {
          this.#runEndedWaiters.push(check)
        }
      }
      const timer = setTimeout(() => {
        this.#runEndedWaiters = this.#runEndedWaiters.filter((waiter) => waiter !== check)
        resolve()
      }, Math.max(0, deadline - Date.now()))
      check()
    })
  }

  /**
   * Shutdown, in order: refuse new runs and connections; give running runs the grace period;
   * stop the rest (they write their terminal event); let every subscriber receive what was
   * logged; close every socket with 1001 so clients reconnect elsewhere and resume by seq.
   */
  async shutdown (): Promise<void> {
    this.closing = true
    await this.#waitForRuns(Date.now() + this.config.SHUTDOWN_GRACE_MS)
    for (const run of [...this.runs.values()]) run.options.stop('shutdown')
    await this.#waitForRuns(Date.now() + SHUTDOWN_FLUSH_MS)
    const flushDeadline = Date.now() + SHUTDOWN_FLUSH_MS
    while (Date.now() < flushDeadline && [...this.connections].some((sink) => !sink.idle)) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    const sockets = [...this.connections].flatMap((sink) => (sink instanceof Connection ? [sink.socket] : []))
    for (const sink of [...this.connections]) sink.goAway()
    clearInterval(this.#heartbeat)
    // The server's close waits for every socket: give peers a moment to answer the close frame,
    // then drop the ones that do not.
    const closeDeadline = Date.now() + CLOSE_HANDSHAKE_MS
    while (Date.now() < closeDeadline && sockets.some((socket) => socket.readyState !== socket.CLOSED)) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    for (const socket of sockets) if (socket.readyState !== socket.CLOSED) socket.terminate()
  }
}

async function agentBridge (fastify: FastifyInstance, opts: AgentBridgePluginOptions): Promise<void> {
  if (fastify.hasDecorator('websocketServer')) throw new WebSocketPresentError()
  const { config } = fastify
  const store = opts.store ?? (config.EVENT_STORE === 'memory'
    ? createMemoryStore({ historyTtlMs: config.RUN_HISTORY_TTL_MS })
    : createRedisStore({
      url: config.EVENT_STORE,
      historyTtlMs: config.RUN_HISTORY_TTL_MS,
      leaseTtlMs: config.LEASE_TTL_MS,
      keyPrefix: config.REDIS_KEY_PREFIX,
      log: fastify.log
    }))
  const core = new BridgeCore(store, config, fastify.log, telemetryOf(fastify))
  core.telemetry.countUnwrittenWith(() => {
    let unwritten = 0
    for (const run of core.runs.values()) unwritten += run.emitter.backlog
    return unwritten
  })
  // A `cancel` that arrived on another node, for a run this node executes.
  store.onStopRequest((runId) => { core.runs.get(runId)?.options.stop('cancelled') })

  await fastify.register(fastifyWebsocket, {
    options: {
      maxPayload: config.MAX_MESSAGE_BYTES,
      clientTracking: false,
      // Select only our protocol: without this, ws would echo the client's first offer, which
      // can be `bearer.<jwt>` — the token, in the response headers.
      handleProtocols: (protocols: Set<string>) => (protocols.has(PROTOCOL) ? PROTOCOL : false)
    },
    // Replaces the plugin's default (close every client at once) with an orderly shutdown.
    preClose: async function preClose () {
      await core.shutdown()
    }
  })

  fastify.decorate('agentBridge', core as AgentBridge)
  fastify.addHook('onClose', async () => {
    await store.close()
  })
}

export default fp(agentBridge, { name: 'agent-bridge', fastify: '5.x', dependencies: ['config'] })
