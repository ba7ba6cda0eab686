// The sink contract: where a user's events go — a WebSocket connection (websocket-sink.ts) or an
// HTTP event stream (sse-sink.ts); a new transport is one more subclass. A sink follows runs
// through fan-out subscriptions, tells them when its send buffer is full, and is the only thing
// that writes to its peer. Each sink kind keeps its peer alive its own way, on a shared Ticker.
import type { FastifyBaseLogger } from 'fastify'
import type { StoredEvent, UserContext } from '../contracts.js'
import type { SinkKind } from '../plugins/telemetry.js'
import type { ExpirySchedule, Expiring } from './expiries.js'
import type { Fanout, SubscriberSink, Subscription } from './fanout.js'

/** How often a congested sink's buffer is re-checked when no write callback is pending. */
const DRAIN_POLL_MS = 50

/**
 * The sinks written to in this tick, settled together by one process.nextTick for all of them
 * (not one callback per sink: with thousands of sockets each written once per tick, those were a
 * measurable share of an event's cost).
 */
const written: Sink[] = []
function endOfTick (): void {
  // A sink uncorked here may write again synchronously (a write callback): that write opens its
  // next tick, queued after this loop has run over the sinks of this one.
  const sinks = written.splice(0, written.length)
  for (const sink of sinks) sink.flushWrites()
}

/** A stream whose writes can be held back and sent together (net.Socket, http.ServerResponse). */
export interface Corkable {
  cork(): void
  uncork(): void
}

/** What a sink needs of the delivery path that made it. */
export interface SinkHost {
  readonly fanout: Fanout
  readonly log: FastifyBaseLogger
  /** Bytes queued for one peer before live delivery to it pauses (SEND_BUFFER_BYTES). */
  readonly sendBufferBytes: number
  /** The one timer that ends sinks when their tokens expire. */
  readonly expiries: ExpirySchedule
  /** Called once, when the sink is released. */
  released(sink: Sink): void
}

// A sink lives as long as its connection, and an idle server holds thousands: what every sink
// holds is kept to its state, with the closures and the child logger made only when first needed.
export abstract class Sink implements SubscriberSink, Expiring {
  abstract readonly kind: SinkKind
  readonly id: string
  // The runs it follows. Most connections follow none or one at a time: one is a field, and the
  // Map (about 300 bytes, kept for the connection's life) is made only when a second is followed.
  // Either the Map holds every subscription, or the field holds the only one.
  #sub: Subscription | undefined
  #subs: Map<string, Subscription> | undefined
  #closed = false
  /** Written to in this tick (listed in `written`). */
  #inTick = false
  #corked = false
  #log: FastifyBaseLogger | undefined
  #onFlushed: (() => void) | undefined
  #drainWaiters: Array<() => void> | undefined
  #drainTimer: NodeJS.Timeout | undefined
  /** Its place in the expiry schedule, while its token has an expiry. */
  #expiryKey: number | undefined

  constructor (protected readonly host: SinkHost, readonly user: UserContext) {
    this.id = user.connectionId
  }

  /** The connection's logger (its id and user bound), made on first use. */
  get log (): FastifyBaseLogger {
    this.#log ??= this.host.log.child({ connectionId: this.id, userId: this.user.userId })
    return this.#log
  }

  /** Bytes queued for the peer before live delivery pauses. */
  protected get highWater (): number {
    return this.host.sendBufferBytes
  }

  protected get lowWater (): number {
    return Math.floor(this.host.sendBufferBytes / 2)
  }

  /** The write callback that re-checks a filling buffer: one per sink, made on first need. */
  protected get onFlushed (): () => void {
    this.#onFlushed ??= () => { this.checkDrained() }
    return this.#onFlushed
  }

  /** Bytes written but not yet handed to the kernel. */
  protected abstract get buffered (): number
  /** The stream the sink's bytes go out on, when it can be corked. */
  protected abstract get transport (): Corkable | undefined

  /**
   * Called before each write. The first write of a tick goes out at once; from the second on,
   * the sink's transport is corked until the tick ends, so a run that emits many events in one
   * tick reaches the kernel in two system calls instead of one per event. Holding back the first
   * one too would make every frame wait for the whole tick — under many interleaved runs, a turn
   * of the agents' loop writes each socket once and may last milliseconds. Order is kept: corking
   * only delays the flush, and every write of the sink goes through the same stream.
   */
  protected batchWrites (): void {
    if (this.#corked) return
    if (!this.#inTick) {
      this.#enterTick()
      return
    }
    this.#cork()
  }

  /**
   * Holds back every write of the rest of this tick, the next one included, and sends them
   * together when the tick ends. For a caller that knows more frames follow its next one within
   * the tick: a run's `run_accepted` and the `agent_started` its subscription then reads from the
   * log leave in one system call instead of two. The tick ends once the caller's continuations
   * have run, so the reply is not held for a turn of the event loop.
   */
  holdWrites (): void {
    if (this.#corked || this.#closed) return
    if (!this.#inTick) this.#enterTick()
    this.#cork()
  }

  #enterTick (): void {
    this.#inTick = true
    if (written.length === 0) process.nextTick(endOfTick)
    written.push(this)
  }

  #cork (): void {
    const transport = this.transport
    if (transport === undefined) return
    this.#corked = true
    transport.cork()
  }

  /**
   * Lets this tick's held-back writes go now (at the end of the tick, or before the transport is
   * ended: Node 24 drops what a corked HTTP response holds when it is ended before it is uncorked).
   */
  flushWrites (): void {
    this.#inTick = false
    if (!this.#corked) return
    this.#corked = false
    this.transport?.uncork()
  }

  /** Writes one event to the peer. */
  abstract write (event: StoredEvent): void
  /** Ends the sink after a failure it cannot recover from. */
  abstract fail (reason: string): void
  /** Keeps the peer alive (or finds it dead); called by the sink kind's Ticker. */
  abstract heartbeat (): void
  /** Ends the sink at shutdown, after everything logged was delivered. */
  abstract goAway (): void
  /** Ends the sink because its token expired, telling the peer so in the transport's way. */
  protected abstract expired (): void

  /** Arms (or re-arms, after an `auth` refresh) the end of the sink at its token's expiry (ms since the epoch). */
  setExpiry (expiresAtMs: number | undefined): void {
    const { expiries } = this.host
    if (this.#expiryKey !== undefined) expiries.delete(this, this.#expiryKey)
    this.#expiryKey = expiresAtMs === undefined || this.#closed ? undefined : expiries.add(this, expiresAtMs)
  }

  /** Called by the expiry schedule when the token has run out. */
  expire (): void {
    this.#expiryKey = undefined
    this.expired()
  }

  /** Nothing left to deliver: no subscription, an empty send buffer. */
  get idle (): boolean {
    return this.subscriptionCount === 0 && this.buffered === 0
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
    return new Promise((resolve) => { (this.#drainWaiters ??= []).push(resolve) })
  }

  protected checkDrained (): void {
    if (this.#drainWaiters === undefined) return
    if (!this.#closed && this.buffered > this.lowWater) return
    clearInterval(this.#drainTimer)
    this.#drainTimer = undefined
    const waiters = this.#drainWaiters
    this.#drainWaiters = undefined
    for (const resolve of waiters) resolve()
  }

  /** True when a write of `bytes` leaves the buffer filling: then we want its flush callback. */
  protected filling (bytes: number): boolean {
    return this.buffered + bytes > this.lowWater
  }

  get subscriptionCount (): number {
    return this.#subs?.size ?? (this.#sub === undefined ? 0 : 1)
  }

  follows (runId: string): boolean {
    return this.#subscription(runId) !== undefined
  }

  #subscription (runId: string): Subscription | undefined {
    if (this.#subs !== undefined) return this.#subs.get(runId)
    return this.#sub?.runId === runId ? this.#sub : undefined
  }

  /** Starts (or restarts) following a run from `after` (the caller has checked ownership). */
  follow (runId: string, after: number): void {
    if (this.#closed) return
    this.unsubscribe(runId)
    const sub = this.host.fanout.subscribe(this, runId, after)
    if (this.#subs !== undefined) {
      this.#subs.set(runId, sub)
    } else if (this.#sub === undefined) {
      this.#sub = sub
    } else {
      this.#subs = new Map([[this.#sub.runId, this.#sub], [runId, sub]])
      this.#sub = undefined
    }
  }

  unsubscribe (runId: string): void {
    const sub = this.#subscription(runId)
    if (sub !== undefined) this.endSubscription(sub, false)
  }

  /** `completed`: the run's terminal event was delivered. */
  endSubscription (sub: Subscription, _completed: boolean): void {
    if (this.#sub === sub) this.#sub = undefined
    else if (this.#subs?.get(sub.runId) === sub) this.#subs.delete(sub.runId)
    this.host.fanout.unsubscribe(sub)
  }

  /** Called when the peer is gone, whoever ended it; frees everything the sink holds. */
  release (): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#expiryKey !== undefined) this.host.expiries.delete(this, this.#expiryKey)
    this.#expiryKey = undefined
    if (this.#sub !== undefined) this.endSubscription(this.#sub, false)
    if (this.#subs !== undefined) for (const sub of [...this.#subs.values()]) this.endSubscription(sub, false)
    this.checkDrained()
    this.host.released(this)
  }
}

/** One timer for every sink of a kind, not one per sink: calls `heartbeat()` on each, every `intervalMs`. */
export class Ticker {
  readonly #sinks = new Set<Sink>()
  #timer: NodeJS.Timeout | undefined

  constructor (private readonly intervalMs: number) {}

  add (sink: Sink): void {
    this.#sinks.add(sink)
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => {
      for (const each of [...this.#sinks]) each.heartbeat()
    }, this.intervalMs)
    this.#timer.unref()
  }

  delete (sink: Sink): void {
    this.#sinks.delete(sink)
    if (this.#sinks.size === 0) this.stop()
  }

  stop (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}
