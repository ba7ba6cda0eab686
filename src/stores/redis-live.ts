// Live delivery in the Redis store: this node's subscribers of each run, the pub/sub channel on
// which a run's events cross nodes, and the messages that arrive on those channels. A message
// carries one appended batch (LIVE_FORMAT); one this node published itself is skipped unread,
// since its subscribers got the batch when Redis answered the append. Anything that may have been
// missed — a message of an unknown format, a resubscription after a reconnection or a failover —
// makes the run's subscribers read the log from where they are.
import type { FastifyBaseLogger } from 'fastify'
import { encodeRunEvent, runFrameHead, type RunEventType } from '../protocol.js'
import type { EventListener, StoredEvent, StoreSubscription } from '../contracts.js'
import type { KeyLayout, LiveConnection, Slot } from './redis-topology.js'
import { LIVE_FORMAT, LIVE_HEADER_LINES } from './redis-scripts.js'

/** An event read back from Redis (the log or the live channel); `head` is its run's runFrameHead. */
export function frameOf (head: string, seq: number, type: RunEventType, ts: string, dataJson: string): StoredEvent {
  return { seq, type, frame: Buffer.from(encodeRunEvent(head, type, seq, ts, dataJson), 'utf8'), at: Date.parse(ts) }
}

/** One event's lines in a batch (see LIVE_FORMAT). */
export function packed (type: RunEventType, ts: string, dataJson: string): string {
  return `${type}\n${ts}\n${dataJson}`
}

/** The `ready` of a channel this node does not listen to: it executes the run. */
const LOCAL: Promise<void> = Promise.resolve()

interface Channel {
  readonly runId: string
  /** The channel's name, once the run's slot is known and this node listens to it. */
  name?: string
  /** Settled once this node listens to the channel (LOCAL while it does not need to). */
  ready: Promise<void>
  /** The frame head of the channel's run, once its first message told the threadId. */
  head?: string
  readonly entries: Set<{ listener: EventListener, onResync?: (() => void) | undefined }>
}

export interface LiveChannelsOptions {
  readonly live: LiveConnection
  readonly key: KeyLayout
  readonly nodeId: string
  /** The slot of a run's keys; undefined for a run Redis does not know. */
  readonly slotOf: (runId: string) => Promise<Slot | undefined>
  /** A message on this node's control channel: a stop request for one of its runs. */
  readonly onControl: (payload: string) => void
  /** True while this node executes the run: its subscribers here get its batches from the appends. */
  readonly executesHere: (runId: string) => boolean
  readonly log?: Pick<FastifyBaseLogger, 'warn' | 'error'> | undefined
}

export class LiveChannels {
  readonly #byRun = new Map<string, Channel>()
  readonly #byName = new Map<string, Channel>()
  /** How the live messages of this node's own batches begin. */
  readonly #ownMessageHead: Buffer
  #closed = false

  constructor (private readonly options: LiveChannelsOptions) {
    const { live, key, nodeId, log } = options
    this.#ownMessageHead = Buffer.from(`${LIVE_FORMAT}\n${nodeId}\n`)
    live.onMessage((channel, payload) => { this.#onMessage(channel.toString(), payload) })
    // After a reconnection or a failover pub/sub messages may have been lost: once subscribed
    // again, every subscriber reads the log from where it is.
    live.onResubscribed(() => {
      for (const channel of this.#byRun.values()) this.#resync(channel)
    })
    live.subscribe(key.control(nodeId)).catch((err: unknown) => { log?.error({ err }, 'could not subscribe to stop requests') })
  }

  /** Delivers a batch of events, in order, to this node's subscribers of a run (if any). */
  deliver (runId: string, events: readonly StoredEvent[]): void {
    const channel = this.#byRun.get(runId)
    if (channel !== undefined) for (const event of events) this.#deliver(channel, event)
  }

  /** This node's subscribers of the run read the log from where they are. */
  resync (runId: string): void {
    const channel = this.#byRun.get(runId)
    if (channel !== undefined) this.#resync(channel)
  }

  /**
   * This node no longer executes the run (it let go of it in an outage): whatever happens to the
   * run now is written by another node, so its subscribers here listen to the live channel from
   * now on, and read the log from where they are.
   */
  executionLost (runId: string): void {
    const channel = this.#byRun.get(runId)
    if (channel === undefined || channel.ready !== LOCAL) return
    channel.ready = this.#listen(channel).then(() => { this.#resync(channel) })
    channel.ready.catch((err: unknown) => { this.options.log?.error({ err, runId }, 'could not subscribe to a run\'s live channel') })
  }

  subscribe (runId: string, listener: EventListener, onResync?: () => void): StoreSubscription {
    let channel = this.#byRun.get(runId)
    if (channel === undefined) {
      // The executing node's subscribers get each batch when Redis has applied it: the live
      // channel would only bring them their own batches again.
      const created: Channel = { runId, entries: new Set(), ready: LOCAL }
      if (!this.options.executesHere(runId)) created.ready = this.#listen(created)
      channel = created
      this.#byRun.set(runId, channel)
    }
    const entry = { listener, onResync }
    channel.entries.add(entry)
    const current = channel
    return {
      ready: current.ready,
      unsubscribe: () => {
        current.entries.delete(entry)
        if (current.entries.size === 0 && this.#byRun.get(runId) === current) {
          this.#byRun.delete(runId)
          if (current.name !== undefined) {
            this.#byName.delete(current.name)
            if (!this.#closed) void this.options.live.unsubscribe(current.name).catch(() => {})
          }
        }
      }
    }
  }

  /** Subscribes to the channel's run's live channel. */
  async #listen (channel: Channel): Promise<void> {
    const slot = await this.options.slotOf(channel.runId)
    // A run nobody knows has no channel: nothing will ever be published for it.
    if (slot === undefined || this.#byRun.get(channel.runId) !== channel) return
    channel.name = this.options.key.live(channel.runId, slot)
    this.#byName.set(channel.name, channel)
    await this.options.live.subscribe(channel.name)
  }

  /** The connection is closing: channels are no longer unsubscribed one by one. */
  close (): void {
    this.#closed = true
  }

  #deliver (channel: Channel, event: StoredEvent): void {
    for (const entry of channel.entries) {
      try {
        entry.listener(event)
      } catch {
        // A subscriber's failure must not stop the others.
      }
    }
  }

  #resync (channel: Channel): void {
    for (const entry of channel.entries) entry.onResync?.()
  }

  #onMessage (channelName: string, payload: Buffer): void {
    const { key, nodeId, log } = this.options
    if (channelName === key.control(nodeId)) {
      this.options.onControl(payload.toString())
      return
    }
    const channel = this.#byName.get(channelName)
    if (channel === undefined) return
    const own = this.#ownMessageHead
    if (payload.length > own.length && payload.subarray(0, own.length).equals(own)) return
    const lines = payload.toString('utf8').split('\n')
    const firstSeq = Number(lines[3])
    if (lines[0] !== LIVE_FORMAT || lines.length < LIVE_HEADER_LINES + 3 || (lines.length - LIVE_HEADER_LINES) % 3 !== 0 || !Number.isSafeInteger(firstSeq)) {
      log?.warn({ channel: channelName }, 'a live message of an unknown format; reading the log instead')
      this.#resync(channel)
      return
    }
    channel.head ??= runFrameHead(channel.runId, lines[2] as string)
    for (let i = LIVE_HEADER_LINES, seq = firstSeq; i < lines.length; i += 3, seq++) {
      this.#deliver(channel, frameOf(channel.head, seq, lines[i] as RunEventType, lines[i + 1] as string, lines[i + 2] as string))
    }
  }
}
