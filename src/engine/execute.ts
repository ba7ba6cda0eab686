// The execution of one run: the agent is given its AgentRun — input, frozen context, think/say,
// drain, its own tool dispatcher, the abort signal, a logger — and raced against the run's abort
// signal, so cancel, deadline and shutdown end the run without waiting for an agent that ignores
// them. Resolves with the run's outcome; never throws.
import type { FastifyBaseLogger } from 'fastify'
import { newId } from '../ids.js'
import { RunError, type Agent, type AgentRun, type RunContext } from '../contracts.js'
import type { RunEmitter } from '../delivery/emitter.js'
import type { ErrorInfo, RunEventData, RunInput } from '../protocol.js'
import type { RunToolDispatcher, ToolEventSink } from '../plugins/tool-dispatcher.js'
import type { Expiring } from '../delivery/expiries.js'
import type { DeadlineList } from '../deadlines.js'

export type StopReason = 'cancelled' | 'timeout' | 'shutdown' | 'disconnected'

export type Outcome = Pick<RunEventData<'agent_completed'>, 'status' | 'output' | 'error'>

const stopOutcomes: Record<StopReason, Outcome> = {
  cancelled: { status: 'cancelled' },
  disconnected: { status: 'cancelled', error: { code: 'DISCONNECTED', message: 'Cancelled: no connection of the user followed the run' } },
  timeout: { status: 'failed', error: { code: 'TIMEOUT', message: 'The run did not finish before its deadline' } },
  shutdown: { status: 'failed', error: { code: 'SHUTDOWN', message: 'The server shut down before the run finished' } }
}

/**
 * The abort side of a run: stopped once, for the first reason given. Its AbortSignal is made
 * when first asked for (already aborted if the run was stopped before): an AbortController and
 * a listener on it are a real share of starting a run, and many agents never look at the signal.
 * The engine itself is told of the stop by a plain callback (`onStop`).
 */
export class RunStopper implements Expiring {
  #controller: AbortController | undefined
  #onStop: (() => void) | undefined
  reason: StopReason | undefined

  get signal (): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.reason !== undefined) this.#controller.abort(this.#error(this.reason))
    }
    return this.#controller.signal
  }

  /** Calls `callback` once, when the run is stopped (at once if it already was); a later call replaces an earlier one. */
  onStop (callback: () => void): void {
    if (this.reason !== undefined) {
      callback()
      return
    }
    this.#onStop = callback
  }

  stop (reason: StopReason): void {
    if (this.reason !== undefined) return
    this.reason = reason
    this.#controller?.abort(this.#error(reason))
    const onStop = this.#onStop
    this.#onStop = undefined
    onStop?.()
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
   * Ends the run with its outcome (the terminal event, the store, the engine's registry), awaited
   * by execute() as its last step. Never rejects.
   */
  finish(outcome: Outcome): Promise<void>
}

/**
 * What an agent is given, frozen. Its getters belong to the class: an object literal with getters
 * of its own gets a hidden class of its own each time it is made — one more map and descriptor
 * array per run, kept while the run lives, and property loads on it that no inline cache can
 * share. think, say and drain are own properties, so an agent may destructure them.
 */
class RunApi implements AgentRun {
  readonly think: AgentRun['think']
  readonly say: AgentRun['say']
  readonly drain: AgentRun['drain']
  readonly input: RunInput
  readonly context: RunContext
  readonly #run: Execution
  readonly #tools: () => RunToolDispatcher

  constructor (run: Execution, tools: () => RunToolDispatcher, emits: Pick<AgentRun, 'think' | 'say' | 'drain'>) {
    this.think = emits.think
    this.say = emits.say
    this.drain = emits.drain
    this.input = run.input
    this.context = run.context
    this.#run = run
    this.#tools = tools
    Object.freeze(this)
  }

  get signal (): AbortSignal {
    return this.#run.stopper.signal
  }

  get tools (): RunToolDispatcher {
    return this.#tools()
  }

  get log (): FastifyBaseLogger {
    return this.#run.log()
  }
}

/** The agent's promise; a throw before its first await (an agent that is not async) rejects it. */
function startAgent (agent: Agent, api: AgentRun): Promise<unknown> {
  try {
    return Promise.resolve(agent(api))
  } catch (err) {
    // Passed on as thrown, as an async agent's rejection would be.
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
    return Promise.reject(err)
  }
}

/**
 * Runs the agent to its outcome, closes the run's open tool calls (cancelled) and ends the run
 * with `run.finish`; resolves once that is done, and never rejects. The run's only async frame
 * while it lives: the engine's own steps before and after are plain calls.
 */
export async function execute (run: Execution): Promise<void> {
  const { emitter, stopper } = run
  let step = 0
  let messageId: string | undefined
  // The run's dispatcher is made when the agent first asks for it: many agents call no tool.
  let tools: RunToolDispatcher | undefined
  let ended = false
  const dispatcher = (): RunToolDispatcher => {
    if (tools !== undefined) return tools
    const toolEvents = {
      emit (type: 'tool_executing' | 'tool_progress' | 'tool_completed', data: RunEventData<'tool_executing' | 'tool_progress' | 'tool_completed'>): boolean {
        // Consecutive `say` deltas form one message; a thought or a tool call in between ends it.
        messageId = undefined
        return emitter.emit(type, data)
      }
    } as ToolEventSink
    tools = run.tools(toolEvents)
    // Asked for only after the run ended: it refuses every call, as the run's own would.
    if (ended) tools.close()
    return tools
  }
  const api = new RunApi(run, dispatcher, {
    think (thought: string, explicitStep?: number): void {
      step = explicitStep ?? step + 1
      messageId = undefined
      emitter.emit('agent_thinking', { thought: String(thought), step })
    },
    say (delta: string): void {
      messageId ??= newId()
      emitter.emit('agent_message', { messageId, delta: String(delta) })
    },
    drain (): Promise<void> {
      return emitter.drained()
    }
  })
  const deadline = run.deadlines.add(stopper)
  let outcome: Outcome
  try {
    // Whichever comes first: the agent's end or the run's stop (cancel, deadline, shutdown). One
    // promise, settled by either, in place of Promise.race over two: a running run keeps fewer
    // promises and reactions. The agent starts in a microtask, and not at all once stopped.
    const result = await new Promise<unknown>((resolve, reject) => {
      stopper.onStop(resolve as () => void)
      queueMicrotask(() => {
        if (stopper.reason === undefined) startAgent(run.agent, api).then(resolve, reject)
      })
    })
    outcome = stopper.reason !== undefined ? stopOutcomes[stopper.reason] : { status: 'completed', output: result }
  } catch (err) {
    if (stopper.reason !== undefined) {
      outcome = stopOutcomes[stopper.reason]
    } else {
      const error: ErrorInfo = err instanceof RunError
        ? { code: err.code, message: err.message }
        : { code: 'AGENT_FAILED', message: 'The agent failed' }
      if (!(err instanceof RunError)) run.log().error({ err }, 'agent failed')
      outcome = { status: 'failed', error }
    }
  } finally {
    run.deadlines.remove(deadline)
  }
  // Open tool calls end (cancelled) before the terminal event, so every tool_executing is paired.
  ended = true
  tools?.close()
  await run.finish(outcome)
}
