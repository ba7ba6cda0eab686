// run-engine: the agent registry and the life of every run. The engine, not the agent, emits
// `agent_started` and the single `agent_completed`, so no agent can forget them; it enforces the
// deadline, cancellation and the per-user concurrency limit. Runs outlive their connection:
// a client that comes back subscribes by seq.
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { AgentName, RunRequest, type ErrorInfo, type RunEventData, type RunInput } from '../protocol.js'
import { Compile } from 'typebox/compile'
import { AgentInvalidError, RunError, RunRequestInvalidError, ShuttingDownError, UnknownAgentError } from '../errors.js'
import type { RunEmitter } from './agent-bridge.js'
import type { RunToolDispatcher, ToolDispatcher, ToolEventSink } from './tool-dispatcher.js'
import type { RunContext, UserContext } from './user-context.js'

/** What an agent receives for one run. */
export interface AgentRun {
  readonly input: RunInput
  /** Frozen: userId, scopes, requestId, connectionId, runId, threadId, agent. */
  readonly context: RunContext
  /** Emits `agent_thinking`. Steps are numbered automatically unless given. (Safe to destructure.) */
  think: (thought: string, step?: number) => void
  /** Emits `agent_message`: a piece of the streamed answer. (Safe to destructure.) */
  say: (delta: string) => void
  /**
   * Resolves once the run's events are (all but a few hundred) written to the log: an agent that
   * emits in a tight loop awaits it now and then, so that a slow event store slows the agent
   * instead of filling the server's memory. Agents paced by a model or a network need not call it.
   */
  drain: () => Promise<void>
  /** Runs tools; emits their events. Never throws. */
  readonly tools: ToolDispatcher
  /** Aborted on cancel, deadline and shutdown: stop work promptly when it fires. */
  readonly signal: AbortSignal
  readonly log: FastifyBaseLogger
}

/** An agent: does the work of a run and returns its output (anything JSON-serialisable). */
export type Agent = (run: AgentRun) => Promise<unknown>

/** `{ agent?, threadId?, input, cancelOnDisconnect? }`: the protocol's run request. */
export type StartRequest = Readonly<Omit<RunRequest, 'input'> & { input: RunInput }>

export interface StartedRun {
  readonly runId: string
  readonly threadId: string
  readonly agent: string
}

export interface RunEngine {
  /** Accepts a run; its events flow through the bridge. Throws UNKNOWN_AGENT / TOO_MANY_RUNS errors. */
  start(user: UserContext, request: StartRequest): Promise<StartedRun>
  /** Cancels a run of this user on any node: NOT_FOUND for someone else's or a missing run, RUN_ENDED if over. */
  cancel(user: UserContext, runId: string): Promise<void>
  readonly agents: readonly string[]
  readonly defaultAgent: string
  /** Runs executing on this node (for one user when given). */
  activeRuns(userId?: string): number
}

export interface RunEnginePluginOptions {
  /** Agents by name. */
  agents: Readonly<Record<string, Agent>>
  /** The agent used when a run names none; the first one when omitted. */
  defaultAgent?: string
}

declare module 'fastify' {
  interface FastifyInstance {
    runEngine: RunEngine
  }
}

type StopReason = 'cancelled' | 'timeout' | 'shutdown' | 'disconnected'

const stopOutcomes: Record<StopReason, Pick<RunEventData<'agent_completed'>, 'status' | 'error'>> = {
  cancelled: { status: 'cancelled' },
  disconnected: { status: 'cancelled', error: { code: 'DISCONNECTED', message: 'Cancelled: no connection of the user followed the run' } },
  timeout: { status: 'failed', error: { code: 'TIMEOUT', message: 'The run did not finish before its deadline' } },
  shutdown: { status: 'failed', error: { code: 'SHUTDOWN', message: 'The server shut down before the run finished' } }
}

interface ActiveRun {
  readonly userId: string
  readonly controller: AbortController
  stopReason?: StopReason
}

const validAgentName = Compile(AgentName)
const validRunRequest = Compile(RunRequest)

/** Frames are validated by the route; programmatic callers get the same checks here. */
function checkRequest (request: StartRequest): void {
  if (!validRunRequest.Check(request)) {
    const first = [...validRunRequest.Errors(request)][0]
    throw new RunRequestInvalidError(`${first?.instancePath.slice(1).replaceAll('/', '.') ?? ''} ${first?.message ?? ''}`.trim())
  }
  try {
    JSON.stringify(request.input)
  } catch {
    throw new RunRequestInvalidError('input is not JSON-serialisable')
  }
}

function checkOptions (opts: Partial<RunEnginePluginOptions>): { agents: Map<string, Agent>, defaultAgent: string } {
  const entries = Object.entries(opts.agents ?? {})
  if (entries.length === 0) throw new AgentInvalidError('at least one agent is required (option `agents`)')
  for (const [name, agent] of entries) {
    if (!validAgentName.Check(String(name))) throw new AgentInvalidError(`agent name "${name}" must be 1-64 letters, digits, "_", "." or "-"`)
    if (typeof agent !== 'function') throw new AgentInvalidError(`agent "${name}" must be a function`)
  }
  const defaultAgent = opts.defaultAgent ?? (entries[0] as [string, Agent])[0]
  if (!entries.some(([name]) => name === defaultAgent)) throw new AgentInvalidError(`the default agent "${defaultAgent}" is not registered`)
  return { agents: new Map(entries), defaultAgent }
}

async function runEngine (fastify: FastifyInstance, opts: RunEnginePluginOptions): Promise<void> {
  const { agents, defaultAgent } = checkOptions(opts)
  const { config, agentBridge: bridge } = fastify
  const active = new Map<string, ActiveRun>()

  function stop (runId: string, reason: StopReason): void {
    const run = active.get(runId)
    if (run === undefined || run.stopReason !== undefined) return
    run.stopReason = reason
    run.controller.abort(new RunError(reason.toUpperCase(), stopOutcomes[reason].error?.message ?? 'The run was cancelled'))
  }

  async function execute (agent: Agent, name: string, context: RunContext, input: RunInput, emitter: RunEmitter, run: ActiveRun): Promise<void> {
    const started = performance.now()
    const { signal } = run.controller
    const log = fastify.log.child({ runId: context.runId, agent: name })
    let step = 0
    let messageId: string | undefined
    // Consecutive `say` deltas form one message; a thought or a tool call in between ends it.
    const toolEvents = {
      emit (type: 'tool_executing' | 'tool_completed', data: RunEventData<'tool_executing' | 'tool_completed'>): boolean {
        messageId = undefined
        return emitter.emit(type, data)
      }
    } as ToolEventSink
    const tools: RunToolDispatcher = fastify.createToolDispatcher({ context, events: toolEvents, signal })
    const api: AgentRun = Object.freeze({
      input,
      context,
      signal,
      tools,
      log,
      think (thought: string, explicitStep?: number): void {
        step = explicitStep ?? step + 1
        messageId = undefined
        emitter.emit('agent_thinking', { thought: String(thought), step })
      },
      say (delta: string): void {
        messageId ??= randomUUID()
        emitter.emit('agent_message', { messageId, delta: String(delta) })
      },
      drain (): Promise<void> {
        return emitter.drained()
      }
    })
    // Settles when the run is stopped, even if it was stopped before the agent began.
    const aborted = new Promise<'aborted'>((resolve) => {
      if (signal.aborted) resolve('aborted')
      else signal.addEventListener('abort', () => { resolve('aborted') }, { once: true })
    })
    const deadline = setTimeout(() => { stop(context.runId, 'timeout') }, config.RUN_TIMEOUT_MS)
    let outcome: Pick<RunEventData<'agent_completed'>, 'status' | 'output' | 'error'>
    try {
      // An agent cancelled before it began is not started at all.
      const result = signal.aborted ? await aborted : await Promise.race([Promise.resolve().then(() => agent(api)), aborted])
      outcome = run.stopReason !== undefined ? stopOutcomes[run.stopReason] : { status: 'completed', output: result }
    } catch (err) {
      if (run.stopReason !== undefined) {
        outcome = stopOutcomes[run.stopReason]
      } else {
        const error: ErrorInfo = err instanceof RunError
          ? { code: err.code, message: err.message }
          : { code: 'AGENT_FAILED', message: 'The agent failed' }
        if (!(err instanceof RunError)) log.error({ err }, 'agent failed')
        outcome = { status: 'failed', error }
      }
    } finally {
      clearTimeout(deadline)
    }
    // Open tool calls end (cancelled) before the terminal event, so every tool_executing is paired.
    tools.close()
    try {
      await emitter.complete({ ...outcome, durationMs: Math.round(performance.now() - started) })
    } catch (err) {
      log.error({ err }, 'could not write the terminal event')
    } finally {
      active.delete(context.runId)
    }
  }

  const engine: RunEngine = {
    agents: Object.freeze([...agents.keys()]),
    defaultAgent,

    async start (user: UserContext, request: StartRequest): Promise<StartedRun> {
      if (bridge.closing) throw new ShuttingDownError()
      checkRequest(request)
      const name = request.agent ?? defaultAgent
      const agent = agents.get(name)
      if (agent === undefined) throw new UnknownAgentError(name)
      const runId = randomUUID()
      const threadId = request.threadId ?? randomUUID()
      // Known before the store hears of it, so a stop request can never miss it.
      const run: ActiveRun = { userId: user.userId, controller: new AbortController() }
      active.set(runId, run)
      let emitter: RunEmitter
      try {
        // The store counts the user's runs in flight on every node (TOO_MANY_RUNS beyond the limit).
        emitter = await bridge.openRun({ runId, threadId, agent: name, ownerId: user.userId }, {
          stop: (reason) => { stop(runId, reason) },
          cancelOnDisconnect: request.cancelOnDisconnect === true
        })
      } catch (err) {
        active.delete(runId)
        throw err
      }
      const context = fastify.createRunContext(user, { runId, threadId, agent: name })
      const input = Object.freeze({ ...request.input })
      emitter.emit('agent_started', { agent: name, input })
      // The agent starts on the next turn of the event loop, after the caller has sent
      // run_accepted and subscribed its connection, so every event can flow live.
      setImmediate(() => { void execute(agent, name, context, input, emitter, run) })
      return { runId, threadId, agent: name }
    },

    async cancel (user: UserContext, runId: string): Promise<void> {
      await bridge.cancelRun(user, runId)
    },

    activeRuns (userId?: string): number {
      if (userId === undefined) return active.size
      let count = 0
      for (const run of active.values()) if (run.userId === userId) count++
      return count
    }
  }

  fastify.decorate('runEngine', engine)
}

export default fp(runEngine, {
  name: 'run-engine',
  fastify: '5.x',
  dependencies: ['config', 'user-context', 'tool-dispatcher', 'agent-bridge']
})
