// run-engine: owns runs, whole — the agent registry, the registry of the runs this node executes,
// start (with the per-user concurrency admission the store counts across nodes), ownership
// lookups, cancel (here, or on another node through the store's stop requests), the deadline,
// cancel-on-disconnect with its grace period, and the shutdown grace. The engine, not the agent,
// emits `agent_started` and the single `agent_completed`, so no agent can forget them. A cancel
// travels one way: route → engine → the run's AbortSignal. Runs outlive their connection: a
// client that comes back subscribes by seq.
import { performance } from 'node:perf_hooks'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { Compile } from 'typebox/compile'
import { newId } from '../ids.js'
import type { Agent, RunContext, RunMeta, UserContext } from '../contracts.js'
import type { RunEmitter } from '../delivery/emitter.js'
import {
  AgentDuplicateError, AgentInvalidError, AgentRegistryClosedError, HistoryExpiredError, RunEndedError, RunNotFoundError,
  RunInputTooLargeError, RunRequestInvalidError, ShuttingDownError, ThreadBusyError, TooManyRunsError, UnknownAgentError
} from '../errors.js'
import { AgentName, RunRequest, type RunInput } from '../protocol.js'
import { execute, RunStopper, type Execution, type Outcome, type StopReason } from '../engine/execute.js'
import { DeadlineList } from '../deadlines.js'
import type { DispatcherOptions, RunToolDispatcher, ToolEventSink } from './tool-dispatcher.js'

/** `{ agent?, threadId?, input, cancelOnDisconnect? }`: the protocol's run request. */
export type StartRequest = Readonly<Omit<RunRequest, 'input'> & { input: RunInput }>

export interface StartedRun {
  readonly runId: string
  readonly threadId: string
  readonly agent: string
}

export interface StartOptions {
  /** At most one run of the user in flight on the thread (checked across nodes, atomically). */
  readonly exclusiveThread?: boolean
}

export interface RunEngine {
  /**
   * Accepts a run and starts it once the caller's continuation has run. Throws UNKNOWN_AGENT / TOO_MANY_RUNS / invalid-request errors;
   * with `exclusiveThread`, AGW_ERR_RUN_THREAD_BUSY while the user's latest run on the thread is still running.
   */
  start(user: UserContext, request: StartRequest, options?: StartOptions): Promise<StartedRun>
  /** The user's latest run on a thread (running, or ended with its history kept), on any node; undefined if none. */
  threadRun(user: UserContext, threadId: string): Promise<RunMeta | undefined>
  /** Cancels a run of this user on any node: NOT_FOUND for someone else's or a missing run, RUN_ENDED if over. */
  cancel(user: UserContext, runId: string): Promise<void>
  /** The run's metadata if `user` owns it; otherwise exactly the error of a run that does not exist. */
  getOwnedRun(user: UserContext, runId: string): Promise<RunMeta>
  /** The registered agents' names. */
  readonly agents: readonly string[]
  readonly defaultAgent: string
  /** Runs executing on this node (for one user when given). */
  activeRuns(userId?: string): number
  /** True once shutdown has begun: no new runs. */
  readonly closing: boolean
}

/** Agents by name, filled like the tool registry: from the plugin's options or `add()`, until the app is ready. */
export interface AgentRegistry {
  /** Adds an agent; only before the server is ready. Throws AGW_ERR_AGENT_INVALID / _DUPLICATE / _REGISTRY_CLOSED. */
  add(name: string, agent: Agent): void
  readonly names: readonly string[]
}

export interface RunEnginePluginOptions {
  /** Agents by name (more can be added with `fastify.agentRegistry.add` before ready). */
  agents?: Readonly<Record<string, Agent>>
  /** The agent used when a run names none; the first registered when omitted. */
  defaultAgent?: string
}

declare module 'fastify' {
  interface FastifyInstance {
    runEngine: RunEngine
    agentRegistry: AgentRegistry
  }
}

/** Bound on waiting for stopped runs to write their terminal event at shutdown. */
const SHUTDOWN_STOP_MS = 5_000

const validAgentName = Compile(AgentName)
const validRunRequest = Compile(RunRequest)

/**
 * Frames are validated by the route; programmatic callers get the same checks here. The input's
 * size is checked here too, the one place every transport passes, before any agent reads it.
 */
function checkRequest (request: StartRequest, maxInputBytes: number): void {
  if (!validRunRequest.Check(request)) {
    const first = [...validRunRequest.Errors(request)][0]
    throw new RunRequestInvalidError(`${first?.instancePath.slice(1).replaceAll('/', '.') ?? ''} ${first?.message ?? ''}`.trim())
  }
  let json: string
  try {
    json = JSON.stringify(request.input)
  } catch {
    throw new RunRequestInvalidError('input is not JSON-serialisable')
  }
  const bytes = Buffer.byteLength(json)
  if (bytes > maxInputBytes) throw new RunInputTooLargeError(bytes, maxInputBytes)
}

/**
 * A run's dispatcher options, the signal read when a tool is called (most runs never call one).
 * A class, not a literal with a getter: such a literal gets a hidden class of its own each time.
 */
class ToolOptions implements DispatcherOptions {
  readonly #stopper: RunStopper
  constructor (readonly context: RunContext, readonly events: ToolEventSink, stopper: RunStopper) {
    this.#stopper = stopper
  }

  get signal (): AbortSignal {
    return this.#stopper.signal
  }
}

/**
 * A frozen shallow copy of a run's input. Not `Object.freeze({ ...input })`: in optimised code
 * this V8 gives every object made that way a hidden class of its own (measured: every one of a
 * thousand, where `Object.assign` shares one), and a run keeps its input for its whole life.
 */
function frozenCopy (input: RunInput): RunInput {
  return Object.freeze(Object.assign({}, input))
}

/** A run this node executes. */
interface LiveRun {
  readonly ownerId: string
  readonly stopper: RunStopper
  readonly cancelOnDisconnect: boolean
  /** Armed while a cancelOnDisconnect run has no follower on this node. */
  unwatchedTimer?: NodeJS.Timeout
}

async function runEngine (fastify: FastifyInstance, opts: RunEnginePluginOptions): Promise<void> {
  const { config, eventStore: store, delivery, telemetry } = fastify
  const agents = new Map<string, Agent>()
  const live = new Map<string, LiveRun>()
  let sealed = false
  let closing = false
  let runEndedWaiters: Array<() => void> = []
  // Every run's deadline, RUN_TIMEOUT_MS from its start, on one timer.
  const deadlines = new DeadlineList(config.RUN_TIMEOUT_MS)

  const registry: AgentRegistry = {
    add (name: string, agent: Agent): void {
      if (!validAgentName.Check(String(name))) throw new AgentInvalidError(`agent name "${name}" must be 1-64 letters, digits, "_", "." or "-"`)
      if (typeof agent !== 'function') throw new AgentInvalidError(`agent "${name}" must be a function`)
      if (sealed) throw new AgentRegistryClosedError(name)
      if (agents.has(name)) throw new AgentDuplicateError(name)
      agents.set(name, agent)
    },
    get names () {
      return [...agents.keys()]
    }
  }
  for (const [name, agent] of Object.entries(opts.agents ?? {})) registry.add(name, agent)
  const defaultAgent = (): string => opts.defaultAgent ?? agents.keys().next().value ?? ''

  fastify.addHook('onReady', async () => {
    sealed = true
    if (agents.size === 0) throw new AgentInvalidError('at least one agent is required (option `agents`, or fastify.agentRegistry.add)')
    if (!agents.has(defaultAgent())) throw new AgentInvalidError(`the default agent "${defaultAgent()}" is not registered`)
  })

  function stop (runId: string, reason: StopReason): void {
    live.get(runId)?.stopper.stop(reason)
  }

  /** Arms the disconnect timer of a cancelOnDisconnect run that no sink of this node follows. */
  function unwatched (runId: string): void {
    const run = live.get(runId)
    if (run?.cancelOnDisconnect !== true || run.unwatchedTimer !== undefined) return
    run.unwatchedTimer = setTimeout(() => {
      run.unwatchedTimer = undefined
      if (!delivery.isWatched(runId)) stop(runId, 'disconnected')
    }, config.DISCONNECT_GRACE_MS)
    run.unwatchedTimer.unref()
  }

  delivery.onWatchChange((runId, watched) => {
    if (!watched) {
      unwatched(runId)
      return
    }
    const run = live.get(runId)
    if (run === undefined) return
    clearTimeout(run.unwatchedTimer)
    run.unwatchedTimer = undefined
  })
  // A `cancel` that arrived on another node, for a run this node executes.
  store.onStopRequest((runId) => { stop(runId, 'cancelled') })

  function ended (runId: string): void {
    clearTimeout(live.get(runId)?.unwatchedTimer)
    live.delete(runId)
    const waiters = runEndedWaiters
    runEndedWaiters = []
    for (const resolve of waiters) resolve()
  }

  async function getOwnedRun (user: UserContext, runId: string): Promise<RunMeta> {
    const lookup = await store.getRun(runId)
    if (lookup.state === 'found' && lookup.meta.ownerId === user.userId) return lookup.meta
    if (lookup.state === 'expired' && lookup.ownerId === user.userId) throw new HistoryExpiredError(runId)
    // Missing, or someone else's: the same error, so nobody learns that another user's run exists.
    throw new RunNotFoundError(runId)
  }

  /**
   * A run on its way: what execute() is given, with the engine's own steps as methods of one
   * class for every run (no closures per run).
   */
  class RunExecution implements Execution {
    readonly #started = performance.now()
    #logger: FastifyBaseLogger | undefined

    constructor (
      readonly agent: Agent,
      readonly context: RunContext,
      readonly input: RunInput,
      readonly emitter: RunEmitter,
      readonly stopper: RunStopper
    ) {}

    // The engine's one list, read from the class: no field per run.
    get deadlines (): DeadlineList {
      return deadlines
    }

    // The signal is read when a tool is called: most runs never make the dispatcher.
    tools (events: ToolEventSink): RunToolDispatcher {
      return fastify.createToolDispatcher(new ToolOptions(this.context, events, this.stopper))
    }

    log (): FastifyBaseLogger {
      this.#logger ??= fastify.log.child({ runId: this.context.runId, agent: this.context.agent })
      return this.#logger
    }

    async finish (outcome: Outcome): Promise<void> {
      const { runId } = this.context
      let status = outcome.status
      try {
        // Field by field: a spread followed by more properties costs microseconds in V8.
        status = await this.emitter.complete({ status: outcome.status, output: outcome.output, error: outcome.error, durationMs: Math.round(performance.now() - this.#started) })
        await store.endRun(runId, status)
      } catch (err) {
        this.log().error({ err }, 'could not write the terminal event')
      } finally {
        ended(runId)
        telemetry.runEnded(status)
      }
    }
  }

  function waitForRuns (deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (live.size === 0 || Date.now() >= deadline) {
          clearTimeout(timer)
          resolve()
        } else {
          runEndedWaiters.push(check)
        }
      }
      const timer = setTimeout(() => {
        runEndedWaiters = runEndedWaiters.filter((waiter) => waiter !== check)
        resolve()
      }, Math.max(0, deadline - Date.now()))
      check()
    })
  }

  // At shutdown, before the sinks close: refuse new runs, give running ones the grace period,
  // stop the rest — they write their terminal event, which subscribers then receive.
  delivery.beforeSinksClose(async () => {
    closing = true
    await waitForRuns(Date.now() + config.SHUTDOWN_GRACE_MS)
    for (const runId of [...live.keys()]) stop(runId, 'shutdown')
    await waitForRuns(Date.now() + SHUTDOWN_STOP_MS)
    // Every run was stopped: no deadline is left to keep a timer.
    deadlines.clear()
  })

  const engine: RunEngine = {
    get agents () {
      return registry.names
    },
    get defaultAgent () {
      return defaultAgent()
    },
    get closing () {
      return closing || delivery.closing
    },

    async start (user: UserContext, request: StartRequest, options: StartOptions = {}): Promise<StartedRun> {
      if (engine.closing) throw new ShuttingDownError()
      checkRequest(request, config.MAX_INPUT_BYTES)
      const name = request.agent ?? defaultAgent()
      const agent = agents.get(name)
      if (agent === undefined) throw new UnknownAgentError(name)
      const runId = newId()
      const threadId = request.threadId ?? newId()
      // Known before the store hears of it, so a stop request can never miss it.
      const runState: LiveRun = { ownerId: user.userId, stopper: new RunStopper(), cancelOnDisconnect: request.cancelOnDisconnect === true }
      live.set(runId, runState)
      try {
        // The store counts the user's runs in flight on every node, atomically.
        const limit = config.MAX_CONCURRENT_RUNS
        const created = await store.createRun(
          { runId, threadId, agent: name, ownerId: user.userId },
          { maxActivePerOwner: limit, exclusiveThread: options.exclusiveThread === true }
        )
        if (!created.created && 'busyRunId' in created) throw new ThreadBusyError(threadId, created.busyRunId)
        if (!created.created) {
          throw new TooManyRunsError(`${created.active} of yours are in progress (limit ${limit}); wait for one to finish or cancel one`)
        }
      } catch (err) {
        live.delete(runId)
        throw err
      }
      const emitter = delivery.openEmitter(runId, threadId)
      telemetry.runStarted()
      // Until a sink follows it, a cancelOnDisconnect run is unwatched.
      if (!delivery.isWatched(runId)) unwatched(runId)
      const context = fastify.createRunContext(user, { runId, threadId, agent: name })
      const input = frozenCopy(request.input)
      emitter.emit('agent_started', { agent: name, input })
      // The agent starts once this turn's promise continuations have run — the caller's, which
      // sends run_accepted and subscribes its connection, among them — so every event can flow
      // live. Not on the next turn of the event loop: every run accepted in one turn would then
      // start at the same instant, and agents that stream at a steady pace would stay in step,
      // their events reaching the sockets in bursts.
      const execution = new RunExecution(agent, context, input, emitter, runState.stopper)
      process.nextTick(() => { execute(execution) })
      return { runId, threadId, agent: name }
    },

    async cancel (user: UserContext, runId: string): Promise<void> {
      const meta = await getOwnedRun(user, runId)
      if (meta.status !== 'running') throw new RunEndedError(runId)
      if (live.has(runId)) stop(runId, 'cancelled')
      else await store.requestStop(meta)
    },

    getOwnedRun,

    async threadRun (user: UserContext, threadId: string): Promise<RunMeta | undefined> {
      return await store.threadRun(user.userId, threadId)
    },

    activeRuns (userId?: string): number {
      if (userId === undefined) return live.size
      let count = 0
      for (const runState of live.values()) if (runState.ownerId === userId) count++
      return count
    }
  }

  fastify.decorate('agentRegistry', registry)
  fastify.decorate('runEngine', engine)
}

export default fp(runEngine, {
  name: 'run-engine',
  fastify: '5.x',
  dependencies: ['config', 'telemetry', 'user-context', 'tool-dispatcher', 'event-store', 'delivery']
})
