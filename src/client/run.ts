// One run as the client follows it: its events in seq order, each exactly once, however many
// times the connection dropped and the run was re-subscribed. The seq check here is the whole
// guarantee: an event is taken only if it is exactly the next one; anything older is a repeat
// and is dropped, anything newer is a gap and makes the client re-subscribe from the last seq.
import type { RunEvent, RunEventOf, WireErrorCode } from '../protocol.js'
import { TERMINAL_EVENT_TYPE } from './wire.js'

/** Errors the client itself reports, next to the protocol's wire codes. */
export type ClientErrorCode =
  /** A `run` request was sent but the connection dropped before its answer: it may or may not have started. */
  | 'CONNECTION_LOST'
  /** `client.close()` was called. */
  | 'CLOSED'
  /** The server closed the connection with 4401 and the token is a fixed string that cannot be refreshed. */
  | 'UNAUTHORIZED'
  /** No WebSocket implementation was passed and none is global. */
  | 'NO_WEBSOCKET'

export type GatewayErrorCode = WireErrorCode | ClientErrorCode

/** Every rejection of the client is one of these, with a `code` to branch on. */
export class GatewayError extends Error {
  override readonly name = 'GatewayError'

  constructor (readonly code: GatewayErrorCode, message: string, readonly runId?: string) {
    super(message)
  }
}

export type TerminalEvent = RunEventOf<typeof TERMINAL_EVENT_TYPE>

/** A run being followed: iterate it for its events; `done` is its terminal event. */
export interface Run extends AsyncIterable<RunEvent> {
  readonly runId: string
  /** Known from `run_accepted`, or from the first event of a subscription. */
  readonly threadId: string | undefined
  /** Known from `run_accepted` (not for `subscribe`). */
  readonly agent: string | undefined
  /** The seq of the last event received (the `after` of the next re-subscription). */
  readonly lastSeq: number
  /** True once the terminal event arrived or the run can no longer be followed. */
  readonly ended: boolean
  /** The `agent_completed` event; rejects with a GatewayError if the run cannot be followed to its end. */
  readonly done: Promise<TerminalEvent>
  /**
   * Asks the server to cancel the run (again after a reconnect if need be) and resolves with its
   * terminal event — `status: 'cancelled'`, or whatever the run ended with if it finished first.
   */
  cancel(): Promise<TerminalEvent>
}

/** What a run needs from its client. */
export interface RunOwner {
  requestCancel(run: RunState): void
}

/** The client's side of a run; consumers only ever see it as a `Run`. */
export class RunState implements Run {
  threadId: string | undefined
  /** Set while a `subscribe` for this run is on its way (a gap then needs no second one). */
  resubscribing = false
  cancelRequested = false
  readonly done: Promise<TerminalEvent>
  /** Settles with the first `subscribed` (or `run_accepted`): what `client.subscribe()` awaits. */
  readonly attached: Promise<void>
  readonly #events: RunEvent[] = []
  #lastSeq: number
  #ended = false
  #failure: GatewayError | undefined
  #waiters: Array<() => void> = []
  #resolveDone!: (event: TerminalEvent) => void
  #rejectDone!: (error: GatewayError) => void
  #resolveAttached!: () => void
  #rejectAttached!: (error: GatewayError) => void

  readonly agent: string | undefined

  /** `accepted`: what `run_accepted` said, for a run this client started. */
  constructor (
    private readonly owner: RunOwner,
    readonly runId: string,
    after: number,
    accepted?: { agent: string, threadId: string }
  ) {
    this.#lastSeq = after
    this.agent = accepted?.agent
    this.threadId = accepted?.threadId
    this.done = new Promise((resolve, reject) => { this.#resolveDone = resolve; this.#rejectDone = reject })
    this.attached = new Promise((resolve, reject) => { this.#resolveAttached = resolve; this.#rejectAttached = reject })
    // Nobody has to await these; a consumer who does still sees the rejection.
    this.done.catch(() => {})
    this.attached.catch(() => {})
  }

  get lastSeq (): number {
    return this.#lastSeq
  }

  get ended (): boolean {
    return this.#ended
  }

  markAttached (): void {
    this.resubscribing = false
    this.#resolveAttached()
  }

  /** Takes the next event of the run; 'stale' for a repeat, 'gap' when events are missing before it. */
  push (event: RunEvent): 'taken' | 'stale' | 'gap' {
    if (this.#ended || event.seq <= this.#lastSeq) return 'stale'
    if (event.seq !== this.#lastSeq + 1) return 'gap'
    this.#events.push(event)
    this.#lastSeq = event.seq
    this.threadId ??= event.threadId
    if (event.type === TERMINAL_EVENT_TYPE) {
      this.#ended = true
      this.#resolveDone(event)
    }
    this.#wake()
    return 'taken'
  }

  /** Ends the run for this client without a terminal event. */
  fail (error: GatewayError): void {
    if (this.#ended) return
    this.#ended = true
    this.#failure = error
    this.#rejectDone(error)
    this.#rejectAttached(error)
    this.#wake()
  }

  cancel (): Promise<TerminalEvent> {
    if (!this.#ended && !this.cancelRequested) {
      this.cancelRequested = true
      this.owner.requestCancel(this)
    }
    return this.done
  }

  /** Every iterator yields every event received, from the first, then ends after the terminal one. */
  async * [Symbol.asyncIterator] (): AsyncGenerator<RunEvent, void, undefined> {
    let index = 0
    for (;;) {
      while (index < this.#events.length) yield this.#events[index++] as RunEvent
      if (this.#failure !== undefined) throw this.#failure
      if (this.#ended) return
      await new Promise<void>((resolve) => { this.#waiters.push(resolve) })
    }
  }

  #wake (): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const wake of waiters) wake()
  }
}
