// The execution of one run: the agent is given its AgentRun — input, frozen context, think/say,
// drain, its own tool dispatcher, the abort signal, a logger — and raced against the run's abort
// signal, so cancel, deadline and shutdown end the run without waiting for an agent that ignores
// them. Ends the run once, with its outcome; never throws.
import type { FastifyBaseLogger } from 'fastify'
import { newId } from '../ids.js'
import { RunError, type Agent, type AgentRun, type RunContext } from '../contracts.js'
import type { RunEmitter } from '../delivery/emitter.js'
import type { ErrorInfo, RunEventData, RunInput } from '../protocol.js'
import type { RunToolDispatcher, ToolEventSink } from '../plugins/tool-dispatcher.js'
import type { Expiring } from '../delivery/expiries.js'
import type { Deadline, DeadlineList } from '../deadlines.js'

export type StopReason = 'cancelled' | 'timeout' | 'shutdown' | 'disconnected'

export type Outcome = Pick<RunEventData<'agent_completed'>, 'status' | 'output' | 'error'>

const stopOutcomes: Record<StopReason, Outcome> = {
  cancelled: { status: 'cancelled' },
  disconnected: { status: 'cancelled', error: { code: 'DISCONNECTED', message: 'Cancelled: no connection of the user followed the run' } },
  timeout: { status: 'failed', error: { code: 'TIMEOUT', message: 'The run did not finish before its deadline' } },
  shutdown: { status: 'failed', error: { code: 'SHUTDOWN', message: 'The server shut down before the run finished' } }
}

/** What a run's stopper tells when the run is stopped: an object's method, not a closure per run. */
export interface StopListener {
  stopped(): void
}

/**
 * The abort side of a run: stopped once, for the first reason given. Its AbortSignal is made
 * when first asked for (already aborted if the run was stopped before): an AbortController and
 * a listener on it are a real share of starting a run, and many agents never look at the signal.
 * The engine itself is told of the stop by a plain method call (`onStop`).
 */
export class RunStopper implements Expiring {
  #controller: AbortController | undefined
  #listener: StopListener | undefined
  reason: StopReason | undefined

  get signal (): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.reason !== undefined) this.#controller.abort(this.#error(this.reason))
    }
    return this.#controller.signal
  }

  /** Tells `listener` once, when the run is stopped (at once if it already was); a later call replaces an earlier one. */
  onStop (listener: StopListener): void {
    if (this.reason !== undefined) {
      listener.stopped()
      return
    }
    this.#listener = listener
  }

  stop (reason: StopReason): void {
    if (this.reason !== undefined) return
    this.reason = reason
    this.#controller?.abort(this.#error(reason))
    const listener = this.#listener
    this.#listener = undefined
    listener?.stopped()
  }

  /** Its deadline passed (DeadlineList). */
  expire (): void {
    this.stop('timeout')
  }

  #error (reason: StopReason): RunError {
    return new RunError(reason.toUpperCase(), stopOutcomes[reason].error?.message ?? 'The run was cancelled')
  }
}

/**
 * One run as the engine hands it over: what the agent is given, and what the engine does around
 * it. Methods, not closures per run: a run keeps this object while it lives.
 */
export interface Execution {
  readonly agent: Agent
  readonly context: RunContext
  readonly input: RunInput
  readonly emitter: RunEmitter
  readonly stopper: RunStopper
  /** Where the run's deadline waits: RUN_TIMEOUT_MS from when execute() begins. */
  readonly deadlines: DeadlineList
  /** Makes the run's tool dispatcher, given where its events go. */
  tools(events: ToolEventSink): RunToolDispatcher
  /** The run's logger, made on first use (most runs never log). */
  log(): FastifyBaseLogger
  /**
   * Ends the run with its outcome (the terminal event, the store, the engine's registry): the last
   * step of execute(), called once. Never rejects.
   */
  finish(outcome: Outcome): Promise<void>
}

/**
 * What an agent is given, frozen. Its getters belong to the class: an object literal with getters
 * of its own gets a hidden class of its own each time it is made — one more map and descriptor
 * array per run, kept while the run lives, and property loads on it that no inline cache can
 * share. think, say and drain are own properties, so an agent may destructure them: three small
 * closures over the run, the only functions made for it.
 */
class RunApi implements AgentRun {
  readonly think: AgentRun['think']
  readonly say: AgentRun['say']
  readonly drain: AgentRun['drain']
  readonly input: RunInput
  readonly context: RunContext
  readonly #running: Running

  constructor (running: Running) {
    const { emitter } = running.run
    // Consecutive `say` deltas form one message; a thought or a tool call in between ends it.
    this.think = (thought, explicitStep) => {
      const step = running.step = explicitStep ?? running.step + 1
      running.messageId = undefined
      emitter.emit('agent_thinking', { thought: String(thought), step })
    }
    this.say = (delta) => {
      const messageId = running.messageId ??= newId()
      emitter.emit('agent_message', { messageId, delta: String(delta) })
    }
    this.drain = () => emitter.drained()
    this.input = running.run.input
    this.context = running.run.context
    this.#running = running
    Object.freeze(this)
  }

  get signal (): AbortSignal {
    return this.#running.run.stopper.signal
  }

  get tools (): RunToolDispatcher {
    return this.#running.dispatcher()
  }

  get log (): FastifyBaseLogger {
    return this.#running.run.log()
  }
}

/**
 * A run while its agent runs: the state think and say keep (the step, the message being said;
 * RunApi's closures read and write it here), the dispatcher once asked for, and the run's end,
 * reached once — by the agent's promise or by the stopper, whichever comes first. One object with
 * methods, where an async function kept a suspended frame, the closures of a promise raced
 * against the stop and a promise per await: a run in flight is what every scavenge during a
 * storm of starts copies.
 */
class Running implements ToolEventSink, StopListener {
  /** The last thought's step (think). */
  step = 0
  /** The message `say` adds to; a thought or a tool call ends it. */
  messageId: string | undefined = undefined
  tools: RunToolDispatcher | undefined = undefined
  ended = false
  readonly run: Execution
  readonly deadline: Deadline

  constructor (run: Execution) {
    this.run = run
    this.deadline = run.deadlines.add(run.stopper)
  }

  /** Where the dispatcher's events go (ToolEventSink). */
  emit (type: 'tool_executing' | 'tool_progress' | 'tool_completed', data: RunEventData<'tool_executing' | 'tool_progress' | 'tool_completed'>): boolean {
    // A tool call ends the message being said, as a thought does.
    this.messageId = undefined
    return this.run.emitter.emit(type, data)
  }

  /** The run's dispatcher, made when the agent first asks for it: many agents call no tool. */
  dispatcher (): RunToolDispatcher {
    if (this.tools !== undefined) return this.tools
    this.tools = this.run.tools(this)
    // Asked for only after the run ended: it refuses every call, as the run's own would.
    if (this.ended) this.tools.close()
    return this.tools
  }

  /** The agent's promise settled with its output. */
  completed (output: unknown): void {
    this.end({ status: 'completed', output })
  }

  /** The agent's promise rejected (or the agent threw). */
  failed (err: unknown): void {
    if (this.ended) return
    const error: ErrorInfo = err instanceof RunError
      ? { code: err.code, message: err.message }
      : { code: 'AGENT_FAILED', message: 'The agent failed' }
    if (!(err instanceof RunError)) this.run.log().error({ err }, 'agent failed')
    this.end({ status: 'failed', error })
  }

  /** Cancel, deadline or shutdown (StopListener): the run ends without waiting for the agent. */
  stopped (): void {
    const { reason } = this.run.stopper
    if (reason !== undefined) this.end(stopOutcomes[reason])
  }

  end (outcome: Outcome): void {
    if (this.ended) return
    this.ended = true
    this.run.deadlines.remove(this.deadline)
    // Open tool calls end (cancelled) before the terminal event, so every tool_executing is paired.
    this.tools?.close()
    void this.run.finish(outcome)
  }
}

/**
 * Starts the agent of a run, unless the run was stopped already, and races it against the run's
 * stop: the first to come ends the run with its outcome (open tool calls closed as cancelled,
 * then `run.finish`, once). An agent that throws before its first await (one that is not async)
 * fails the run as its rejection would.
 */
export function execute (run: Execution): void {
  const running = new Running(run)
  run.stopper.onStop(running)
  if (running.ended) return
  let result: unknown
  try {
    result = run.agent(new RunApi(running))
  } catch (err) {
    running.failed(err)
    return
  }
  Promise.resolve(result).then((output) => { running.completed(output) }, (err: unknown) => { running.failed(err) })
}
