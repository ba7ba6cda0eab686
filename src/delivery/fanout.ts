// The fan-out: one store subscription per run on this node (a hub), shared by every local sink
// that follows the run, each through a subscription with a cursor — the seq of the last event it
// sent. A live event is sent only if it is exactly cursor + 1 and the sink has room; anything else
// (a gap, a full buffer, a resume point) switches the subscription to catching up from the log,
// so replay, live delivery and recovery from backpressure join without a gap or a duplicate.
import type { EventStore, StoreSubscription, StoredEvent } from '../contracts.js'
import { TERMINAL_EVENT_TYPE } from '../protocol.js'
import type { Telemetry } from '../plugins/telemetry.js'

/** Events read from the log per batch when a subscription replays or catches up. */
const READ_BATCH = 256

/** What a subscription needs of the sink it writes to (src/delivery/sink.ts). */
export interface SubscriberSink {
  /** Its send buffer is over the high-water mark: live delivery pauses. */
  readonly congested: boolean
  /** Resolves once the send buffer is back under the low-water mark (or the sink closed). */
  drained(): Promise<void>
  write(event: StoredEvent): void
  /** The subscription is over: after the run's terminal event (true) or not. */
  endSubscription(sub: Subscription, completed: boolean): void
  /** The log could not be read: the sink cannot be served any more. */
  fail(reason: string): void
  readonly log: { error(obj: unknown, msg: string): void }
}

/** Told when a run gains its first follower on this node, or loses its last. */
export type WatchListener = (runId: string, watched: boolean) => void

/** Live fan-out of one run on this node: one store subscription shared by local subscribers. */
class Hub {
  lastSeq = 0
  /**
   * Replaced, never changed in place (an event goes to the subscribers it started with); an
   * array, not a Set: it is read on every event, mostly with one subscriber in it.
   */
  subs: readonly Subscription[] = []
  /** The one subscriber, when there is exactly one (the common case): an event reads one field. */
  #only: Subscription | undefined
  readonly ready: Promise<void>
  readonly #subscription: StoreSubscription

  constructor (readonly runId: string, store: EventStore) {
    // Bound, not a closure: one object fewer for every event to reach.
    this.#subscription = store.subscribe(runId, this.onEvent.bind(this), () => { this.resync() })
    this.ready = this.#subscription.ready
  }

  /** The store may have missed events: every subscriber re-reads the log from its cursor. */
  resync (): void {
    for (const sub of this.subs) sub.resync()
  }

  onEvent (event: StoredEvent): void {
    if (event.seq > this.lastSeq) this.lastSeq = event.seq
    const only = this.#only
    if (only !== undefined) {
      only.offer(event)
      return
    }
    const { subs } = this
    for (let i = 0; i < subs.length; i++) (subs[i] as Subscription).offer(event)
  }

  add (sub: Subscription): void {
    this.subs = [...this.subs, sub]
    this.#only = this.subs.length === 1 ? sub : undefined
  }

  remove (sub: Subscription): void {
    if (!this.subs.includes(sub)) return
    this.subs = this.subs.filter((each) => each !== sub)
    this.#only = this.subs.length === 1 ? this.subs[0] : undefined
  }

  close (): void {
    this.#subscription.unsubscribe()
  }
}

type SubscriptionMode = 'catchup' | 'live' | 'closed'

/** One sink following one run, from a cursor: the seq of the last event sent. */
export class Subscription {
  mode: SubscriptionMode = 'catchup'
  #catchingUp = false

  constructor (
    readonly fanout: Fanout,
    readonly sink: SubscriberSink,
    readonly hub: Hub,
    public cursor: number
  ) {}

  get runId (): string {
    return this.hub.runId
  }

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
      if (this.sink.congested) this.fanout.telemetry.slowConsumerPaused()
      this.mode = 'catchup'
      this.catchUp()
      return
    }
    this.#deliver(event)
    this.fanout.telemetry.eventDelivered(Date.now() - event.at)
  }

  #deliver (event: StoredEvent): void {
    this.sink.write(event)
    this.cursor = event.seq
    if (event.type === TERMINAL_EVENT_TYPE) this.sink.endSubscription(this, true)
  }

  /** Sends from the log until the cursor reaches the live edge with room in the sink's buffer. */
  catchUp (): void {
    if (this.#catchingUp) return
    this.#catchingUp = true
    this.#catchUpLoop().catch((err: unknown) => {
      this.sink.log.error({ err, runId: this.runId }, 'catch-up from the event log failed')
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
        const batch = await this.fanout.store.read(hub.runId, this.cursor, READ_BATCH)
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
        if (replayed > 0) this.fanout.telemetry.eventsReplayed(replayed)
        // The hub's lastSeq is updated synchronously by live events, so this check cannot race:
        // an event appended while the read was in flight keeps the loop going.
        if (this.mode === 'catchup' && batch.length < READ_BATCH && this.cursor >= hub.lastSeq && !sink.congested) {
          this.mode = 'live'
        }
      }
    } finally {
      // Cleared in the very turn the loop ends (not in a later .finally()): otherwise an offer
      // that finds the sink congested right after going live would see the flag still set, and
      // its catch-up would never start.
      this.#catchingUp = false
    }
  }
}

/** The hubs of this node and who is told when a run is watched here. */
export class Fanout {
  readonly #hubs = new Map<string, Hub>()
  readonly #watchListeners: WatchListener[] = []

  constructor (readonly store: EventStore, readonly telemetry: Telemetry) {}

  /** Starts a subscription of `sink` to a run from `after` (the caller has checked ownership). */
  subscribe (sink: SubscriberSink, runId: string, after: number): Subscription {
    let hub = this.#hubs.get(runId)
    if (hub === undefined) {
      hub = new Hub(runId, this.store)
      this.#hubs.set(runId, hub)
      this.#notify(runId, true)
    }
    const sub = new Subscription(this, sink, hub, after)
    hub.add(sub)
    sub.catchUp()
    return sub
  }

  /** Ends a subscription; a run that loses its last subscriber here drops its hub. */
  unsubscribe (sub: Subscription): void {
    sub.mode = 'closed'
    const { hub } = sub
    hub.remove(sub)
    if (hub.subs.length === 0 && this.#hubs.get(hub.runId) === hub) {
      hub.close()
      this.#hubs.delete(hub.runId)
      this.#notify(hub.runId, false)
    }
  }

  /** True while some sink of this node follows the run. */
  isWatched (runId: string): boolean {
    return this.#hubs.has(runId)
  }

  onWatchChange (listener: WatchListener): void {
    this.#watchListeners.push(listener)
  }

  #notify (runId: string, watched: boolean): void {
    for (const listener of this.#watchListeners) listener(runId, watched)
  }
}
