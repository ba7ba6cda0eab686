// The Server-Sent Events sink: one HTTP response (text/event-stream) following one run, from a
// resume point, with the same subscription, cursor and backpressure as a WebSocket, ending after
// the run's terminal event. What the events look like is the format's: the runs API writes our
// frames with their seq as the id, AG-UI and the AI SDK write their own protocols' events.
import type { ServerResponse } from 'node:http'
import type { StoredEvent, UserContext } from '../contracts.js'
import type { Subscription } from './fanout.js'
import { Sink, type Corkable, type SinkHost, type Ticker } from './sink.js'

/** How one protocol writes a run as Server-Sent Events. */
export interface SseFormat {
  /** The text written for one event ('' writes nothing). Called in seq order, once per event. */
  event(event: StoredEvent): string
  /** Written once after the run's terminal event, before the response ends. */
  end?(): string
  /** Written when the stream is cut short for a reason the client must see (the token expired). */
  error?(code: string, message: string): string
  /** Response headers besides the content type and caching ones. */
  readonly headers?: Readonly<Record<string, string>>
}

export interface SseSinkOptions {
  readonly runId: string
  /** Deliver events with seq > after. */
  readonly after: number
  readonly format: SseFormat
  /** The shared keep-alive timer of event streams. */
  readonly keepAlive: Ticker
  /** When the token expires (ms since the epoch): the stream ends then, with the format's error. */
  readonly expiresAtMs?: number
  /** Called once when the stream ends: after the run's terminal event (true) or early (false). */
  onEnd?(completed: boolean): void
}

export class SseSink extends Sink {
  readonly kind = 'sse'
  #ended = false

  constructor (host: SinkHost, readonly response: ServerResponse, user: UserContext, private readonly options: SseSinkOptions) {
    super(host, user)
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
    this.response.on('close', () => { this.goAway() })
    this.response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Tells buffering proxies (nginx) to pass events through at once.
      'x-accel-buffering': 'no',
      ...this.options.format.headers
    })
    this.response.flushHeaders()
    this.options.keepAlive.add(this)
    this.setExpiry(this.options.expiresAtMs)
    this.follow(this.options.runId, this.options.after)
    // A client that left before the stream opened (while its run was being started or looked up)
    // will send no 'close' event any more.
    if (this.response.destroyed) this.goAway()
  }

  /** The token ran out: the stream ends with the format's error. */
  protected expired (): void {
    this.#writeText(this.options.format.error?.('AGW_ERR_AUTH_TOKEN_EXPIRED', 'The token has expired') ?? '')
    this.#end(false)
  }

  write (event: StoredEvent): void {
    this.#writeText(this.options.format.event(event))
  }

  #writeText (text: string): void {
    if (this.closed || text === '') return
    this.batchWrites()
    this.response.write(text)
  }

  override endSubscription (sub: Subscription, completed: boolean): void {
    super.endSubscription(sub, completed)
    if (completed) this.#writeText(this.options.format.end?.() ?? '')
    this.#end(completed)
  }

  #end (completed: boolean): void {
    if (this.#ended) return
    this.#ended = true
    this.flushWrites()
    if (!this.response.writableEnded) this.response.end()
    this.release()
    this.options.onEnd?.(completed)
  }

  override release (): void {
    this.options.keepAlive.delete(this)
    super.release()
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
