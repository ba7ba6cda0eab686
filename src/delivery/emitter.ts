// The first step of an event's path: a run's emitter stamps nothing itself — it serialises the
// data once and appends it to the event store, which assigns seq and ts and builds the frame —
// and keeps count of what is not written yet, so that a fast producer can wait for a slow store.
import type { FastifyBaseLogger } from 'fastify'
import type { EventStore, RunAppender } from '../contracts.js'
import { TERMINAL_EVENT_TYPE, type RunEventData, type RunEventType, type TerminalStatus } from '../protocol.js'
import type { Telemetry } from '../plugins/telemetry.js'

export type NonTerminalEventType = Exclude<RunEventType, typeof TERMINAL_EVENT_TYPE>

/** A run's handle on the delivery path: the only way its events reach the log and the sinks. */
export interface RunEmitter {
  readonly runId: string
  readonly threadId: string
  /** True once the terminal event has been emitted; later emits are dropped. */
  readonly ended: boolean
  /**
   * Logs and delivers one event, in call order. Throws a TypeError at once (logging nothing)
   * when `data` is not JSON-serialisable. Returns false after the run has ended.
   */
  emit<T extends NonTerminalEventType>(type: T, data: RunEventData<T>): boolean
  /**
   * Writes the single `agent_completed` (only the first call counts) and resolves with the status
   * it carries once it is in the log: `failed` / BAD_OUTPUT when the output is not JSON-serialisable.
   */
  complete(data: RunEventData<'agent_completed'>): Promise<TerminalStatus>
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

export interface EmitterHost {
  readonly store: EventStore
  readonly telemetry: Telemetry
  readonly log: FastifyBaseLogger
  /** Called once the terminal event is written (or failed to be). */
  finished(emitter: Emitter): void
}

const DONE: Promise<void> = Promise.resolve()

export class Emitter implements RunEmitter {
  #ended = false
  #backlog = 0
  /** Producers waiting for the backlog to shrink; made on first need (a store in memory never has one). */
  #drainWaiters: Array<() => void> | undefined
  /** The handlers of every append of the run to an asynchronous store, made on its first. */
  #onAppend: { appended: () => void, failed: (err: unknown) => void } | undefined

  /** The store's own appender for this run, when it writes in this process's memory. */
  readonly #appender: RunAppender | undefined

  /** Made right after the run was created in the store. */
  constructor (
    private readonly host: EmitterHost,
    readonly runId: string,
    readonly threadId: string
  ) {
    this.#appender = host.store.appender?.(runId)
  }

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
    return new Promise((resolve) => { (this.#drainWaiters ??= []).push(resolve) })
  }

  #appended (): void {
    this.#backlog--
    const waiters = this.#drainWaiters
    if (this.#backlog <= DRAIN_BACKLOG && waiters !== undefined && waiters.length > 0) {
      this.#drainWaiters = undefined
      for (const resolve of waiters) resolve()
    }
  }

  // One pair of handlers for every append of the run: no closure per event.
  #handlers (): { appended: () => void, failed: (err: unknown) => void } {
    this.#onAppend ??= {
      appended: () => { this.#appended() },
      failed: (err) => {
        this.#appended()
        this.host.log.error({ err, runId: this.runId }, 'could not write a run event to the log')
      }
    }
    return this.#onAppend
  }

  #append (type: RunEventType, dataJson: string): Promise<unknown> {
    this.host.telemetry.eventAppended(type)
    if (this.#appender !== undefined) {
      // A store in this process's memory writes (and notifies the sinks) before returning: no
      // promise per event, and nothing ever waits to be written, so the backlog stays 0.
      try {
        this.#appender.appendNow(type, dataJson)
      } catch (err) {
        this.host.log.error({ err, runId: this.runId }, 'could not write a run event to the log')
        // complete() awaits the terminal event's write and reports its failure; emit() does not.
        if (type === TERMINAL_EVENT_TYPE) return Promise.reject(err instanceof Error ? err : new Error(String(err)))
      }
      return DONE
    }
    const append = this.host.store.append(this.runId, type, dataJson)
    this.#backlog++
    const { appended, failed } = this.#handlers()
    append.then(appended, failed)
    return append
  }

  async complete (data: RunEventData<'agent_completed'>): Promise<TerminalStatus> {
    if (this.#ended) return data.status
    let dataJson: string
    let status = data.status
    try {
      dataJson = JSON.stringify(data)
    } catch {
      status = 'failed'
      dataJson = JSON.stringify({
        status,
        error: { code: 'BAD_OUTPUT', message: 'The agent returned an output that is not JSON-serialisable' },
        durationMs: data.durationMs
      })
    }
    this.#ended = true
    try {
      await this.#append(TERMINAL_EVENT_TYPE, dataJson)
    } finally {
      this.host.finished(this)
    }
    return status
  }
}
