// tool-dispatcher: the registry of tools and the factory that makes one dispatcher per run.
// The dispatcher, not the tool, emits `tool_executing` and exactly one `tool_completed` per call,
// so no tool can forget them; it validates arguments, checks the scope, enforces the timeout,
// passes the run's abort signal, turns the tool's progress reports into `tool_progress` events,
// and never throws into the agent. Next to the tools registered at start-up, tool sources offer
// tools whose list changes while the server runs (the tools of MCP servers).
import { performance } from 'node:perf_hooks'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { Compile, type Validator } from 'typebox/compile'
import { newId } from '../ids.js'
import { RunError, TOOL_NAME, type ExternalToolCall, type RunContext, type Tool, type ToolContext, type ToolDispatcher, type ToolInfo, type ToolOutcome, type ToolSource } from '../contracts.js'
import type { ErrorInfo, RunEventData, ToolStatus } from '../protocol.js'
import { DispatcherPrivateError, ToolDuplicateError, ToolInvalidError, ToolRegistryClosedError } from '../errors.js'

/** The run engine's handle on a run's dispatcher. */
export interface RunToolDispatcher extends ToolDispatcher {
  /** Ends every open call with `cancelled` and refuses new ones (no events after the run ends). */
  close(): void
  readonly openCalls: number
}

/** The part of the run's emitter a dispatcher needs. */
export interface ToolEventSink {
  emit(type: 'tool_executing', data: RunEventData<'tool_executing'>): unknown
  emit(type: 'tool_progress', data: RunEventData<'tool_progress'>): unknown
  emit(type: 'tool_completed', data: RunEventData<'tool_completed'>): unknown
}

export interface DispatcherOptions {
  readonly context: RunContext
  readonly events: ToolEventSink
  readonly signal: AbortSignal
}

interface RegisteredTool {
  readonly tool: Tool
  readonly validator: Validator
  readonly timeoutMs: number
}

/** Where the dispatcher finds a tool: the registered ones, then the sources. */
interface ToolCatalog {
  find(name: string): RegisteredTool | undefined
  all(): Iterable<RegisteredTool>
}

interface OpenCall {
  readonly toolCallId: string
  readonly tool: string
  readonly started: number
  resolve?: (outcome: ToolOutcome) => void
  /** How the call ended, once it has. */
  ended?: ToolOutcome
  timer?: NodeJS.Timeout
  /** The last progress reported (emitted or not), and when the last `tool_progress` was emitted. */
  progress?: number
  progressAt: number
  /** The latest report held back by TOOL_PROGRESS_INTERVAL_MS, and the timer that emits it. */
  pendingProgress?: RunEventData<'tool_progress'>
  progressTimer?: NodeJS.Timeout
}

const PROGRESS_MESSAGE_LENGTH = 500

// Only the factory below holds this token, so only it can construct a dispatcher.
const factoryToken: unique symbol = Symbol('tool-dispatcher factory')

class Dispatcher implements RunToolDispatcher {
  readonly #tools: ToolCatalog
  readonly #options: DispatcherOptions
  readonly #log: FastifyBaseLogger
  readonly #progressIntervalMs: number
  readonly #open = new Map<string, OpenCall>()
  #closed = false

  constructor (token: typeof factoryToken, tools: ToolCatalog, options: DispatcherOptions, log: FastifyBaseLogger, progressIntervalMs: number) {
    if (token !== factoryToken) throw new DispatcherPrivateError()
    this.#tools = tools
    this.#options = options
    this.#log = log
    this.#progressIntervalMs = progressIntervalMs
  }

  get openCalls (): number {
    return this.#open.size
  }

  list (): ToolInfo[] {
    const infos: ToolInfo[] = []
    for (const { tool } of this.#tools.all()) {
      if (this.#allowed(tool)) infos.push({ name: tool.name, description: tool.description, parameters: tool.parameters })
    }
    return infos
  }

  async call (name: string, args: unknown = {}): Promise<ToolOutcome> {
    const call: OpenCall = { toolCallId: newId(), tool: String(name), started: performance.now(), progressAt: Number.NEGATIVE_INFINITY }
    if (this.#closed) return this.#outcome(call, 'cancelled', { error: { code: 'RUN_ENDED', message: 'The run has ended' } })
    try {
      this.#options.events.emit('tool_executing', { toolCallId: call.toolCallId, tool: call.tool, args })
    } catch {
      this.#options.events.emit('tool_executing', { toolCallId: call.toolCallId, tool: call.tool, args: null })
      this.#open.set(call.toolCallId, call)
      return this.#finish(call, 'error', { code: 'INVALID_ARGS', message: 'The arguments are not JSON-serialisable' })
    }
    this.#open.set(call.toolCallId, call)

    const registered = this.#tools.find(call.tool)
    if (registered === undefined) {
      return this.#finish(call, 'error', { code: 'UNKNOWN_TOOL', message: `No tool named "${call.tool}"` })
    }
    if (!registered.validator.Check(args)) {
      return this.#finish(call, 'error', { code: 'INVALID_ARGS', message: describeArgErrors(registered.validator, args) })
    }
    if (!this.#allowed(registered.tool)) {
      return this.#finish(call, 'error', { code: 'FORBIDDEN', message: `Calling "${call.tool}" needs the scope "${registered.tool.scope ?? ''}"` })
    }
    if (this.#options.signal.aborted) return this.#finish(call, 'cancelled')
    return this.#execute(call, registered, args)
  }

  external (name: string, args: unknown = {}): ExternalToolCall {
    const call: OpenCall = { toolCallId: newId(), tool: String(name), started: performance.now(), progressAt: Number.NEGATIVE_INFINITY }
    const handle: ExternalToolCall = {
      toolCallId: call.toolCallId,
      complete: (result) => call.ended ?? this.#finish(call, 'success', undefined, result),
      fail: (code, message, status = 'error') => call.ended ?? this.#finish(call, status, { code: String(code), message: String(message) })
    }
    // After the run, the call is never opened: finishing it writes nothing.
    if (this.#closed) return handle
    try {
      this.#options.events.emit('tool_executing', { toolCallId: call.toolCallId, tool: call.tool, args })
    } catch {
      this.#options.events.emit('tool_executing', { toolCallId: call.toolCallId, tool: call.tool, args: null })
    }
    this.#open.set(call.toolCallId, call)
    return handle
  }

  close (): void {
    this.#closed = true
    for (const call of [...this.#open.values()]) this.#finish(call, 'cancelled')
  }

  #allowed (tool: Tool): boolean {
    return tool.scope === undefined || this.#options.context.scopes.includes(tool.scope)
  }

  #execute (call: OpenCall, registered: RegisteredTool, args: unknown): Promise<ToolOutcome> {
    const timeout = new AbortController()
    const runSignal = this.#options.signal
    const onRunAbort = (): void => { this.#finish(call, 'cancelled') }
    runSignal.addEventListener('abort', onRunAbort, { once: true })
    return new Promise<ToolOutcome>((resolve) => {
      call.resolve = (outcome) => {
        runSignal.removeEventListener('abort', onRunAbort)
        // The tool's signal says why it should stop (what an MCP server is told on cancellation).
        timeout.abort(runSignal.aborted ? runSignal.reason : new RunError(outcome.error?.code ?? 'CALL_ENDED', outcome.error?.message ?? `"${call.tool}" has ended`))
        resolve(outcome)
      }
      call.timer = setTimeout(() => {
        this.#finish(call, 'timeout', { code: 'TIMEOUT', message: `"${call.tool}" did not finish within ${registered.timeoutMs} ms` })
      }, registered.timeoutMs)
      const ctx: ToolContext = {
        context: this.#options.context,
        signal: AbortSignal.any([runSignal, timeout.signal]),
        progress: (progress, total, message) => { this.#progress(call, progress, total, message) }
      }
      Promise.resolve()
        .then(() => registered.tool.execute(args, ctx))
        .then(
          (result) => { this.#finish(call, 'success', undefined, result) },
          (err: unknown) => { this.#finish(call, 'error', this.#toolError(call, err)) }
        )
    })
  }

  #progress (call: OpenCall, progress: unknown, total: unknown, message: unknown): void {
    if (!this.#open.has(call.toolCallId) || typeof progress !== 'number' || !Number.isFinite(progress)) return
    if (call.progress !== undefined && progress <= call.progress) return
    call.progress = progress
    const data: RunEventData<'tool_progress'> = { toolCallId: call.toolCallId, progress }
    if (typeof total === 'number' && Number.isFinite(total)) data.total = total
    if (typeof message === 'string' && message !== '') {
      data.message = message.length > PROGRESS_MESSAGE_LENGTH ? `${message.slice(0, PROGRESS_MESSAGE_LENGTH - 1)}…` : message
    }
    const wait = call.progressAt + this.#progressIntervalMs - performance.now()
    if (wait <= 0) {
      this.#emitProgress(call, data)
      return
    }
    call.pendingProgress = data
    call.progressTimer ??= setTimeout(() => {
      call.progressTimer = undefined
      const pending = call.pendingProgress
      call.pendingProgress = undefined
      if (pending !== undefined && this.#open.has(call.toolCallId)) this.#emitProgress(call, pending)
    }, wait)
  }

  #emitProgress (call: OpenCall, data: RunEventData<'tool_progress'>): void {
    call.progressAt = performance.now()
    this.#options.events.emit('tool_progress', data)
  }

  #toolError (call: OpenCall, err: unknown): ErrorInfo {
    if (err instanceof RunError) return { code: err.code, message: err.message }
    this.#log.warn({ err, tool: call.tool, runId: this.#options.context.runId }, 'tool failed')
    return { code: 'TOOL_FAILED', message: `"${call.tool}" failed` }
  }

  /** Ends a call exactly once: emits its `tool_completed` and resolves the agent's promise. */
  #finish (call: OpenCall, status: ToolStatus, error?: ErrorInfo, result?: unknown): ToolOutcome {
    if (!this.#open.delete(call.toolCallId)) return this.#outcome(call, status, { error })
    clearTimeout(call.timer)
    clearTimeout(call.progressTimer)
    let outcome = this.#outcome(call, status, status === 'success' ? { result } : { error })
    try {
      this.#options.events.emit('tool_completed', outcome)
    } catch {
      outcome = this.#outcome(call, 'error', { error: { code: 'BAD_RESULT', message: `"${call.tool}" returned a value that is not JSON-serialisable` } })
      this.#options.events.emit('tool_completed', outcome)
    }
    call.ended = outcome
    call.resolve?.(outcome)
    return outcome
  }

  #outcome (call: OpenCall, status: ToolStatus, extra: { result?: unknown, error?: ErrorInfo | undefined }): ToolOutcome {
    const outcome: ToolOutcome = {
      toolCallId: call.toolCallId,
      tool: call.tool,
      status,
      durationMs: Math.round((performance.now() - call.started) * 10) / 10
    }
    if (extra.result !== undefined) outcome.result = extra.result
    if (extra.error !== undefined) outcome.error = extra.error
    return outcome
  }
}

function describeArgErrors (validator: Validator, args: unknown): string {
  const first = [...validator.Errors(args)].find((error) => error.keyword !== 'boolean')
  /* c8 ignore next -- a failed Check always reports at least one error */
  if (first === undefined) return 'Invalid arguments'
  const where = first.instancePath === '' ? 'arguments' : first.instancePath.slice(1).replaceAll('/', '.')
  return `Invalid arguments: ${where} ${first.message}`
}

function checkTool (tool: unknown): asserts tool is Tool {
  const t = tool as Partial<Tool> | null
  if (typeof t !== 'object' || t === null) throw new ToolInvalidError('a tool must be an object')
  const label = typeof t.name === 'string' ? `"${t.name}"` : 'a tool'
  if (typeof t.name !== 'string' || !TOOL_NAME.test(t.name)) {
    throw new ToolInvalidError(`${label}: name must match ${TOOL_NAME.source}`)
  }
  if (typeof t.description !== 'string' || t.description.trim() === '') throw new ToolInvalidError(`${label}: description is required`)
  const parameters: { type?: unknown } | undefined = t.parameters
  if (typeof parameters !== 'object' || parameters === null || parameters.type !== 'object') {
    throw new ToolInvalidError(`${label}: parameters must be a TypeBox object schema (Type.Object)`)
  }
  if (typeof t.execute !== 'function') throw new ToolInvalidError(`${label}: execute must be a function`)
  if (t.scope !== undefined && (typeof t.scope !== 'string' || t.scope === '')) throw new ToolInvalidError(`${label}: scope must be a non-empty string`)
  if (t.timeoutMs !== undefined && (!Number.isInteger(t.timeoutMs) || t.timeoutMs <= 0)) {
    throw new ToolInvalidError(`${label}: timeoutMs must be a positive integer`)
  }
}

export interface ToolRegistry {
  /** Adds a tool; only before the server is ready. Throws AGW_ERR_TOOL_DUPLICATE / _INVALID. */
  add(tool: Tool): void
  /** Adds a source of tools that come and go at run time; only before the server is ready. */
  addSource(source: ToolSource): void
  /** The names of the tools added with add() (not those of the sources). */
  readonly names: readonly string[]
}

declare module 'fastify' {
  interface FastifyInstance {
    toolRegistry: ToolRegistry
    /** The only way to get a ToolDispatcher: one per run. */
    createToolDispatcher(options: DispatcherOptions): RunToolDispatcher
  }
}

export interface ToolDispatcherPluginOptions {
  tools?: readonly Tool[]
}

async function toolDispatcher (fastify: FastifyInstance, opts: ToolDispatcherPluginOptions): Promise<void> {
  const tools = new Map<string, RegisteredTool>()
  const sources: ToolSource[] = []
  let sealed = false
  const registered = (tool: Tool): RegisteredTool => ({
    tool,
    validator: Compile(tool.parameters),
    timeoutMs: tool.timeoutMs ?? fastify.config.TOOL_TIMEOUT_MS
  })
  // A source's tool is checked and its schema compiled once, when it is first seen; a source
  // replaces its Tool objects when its list changes. null: the tool failed the check.
  const seen = new WeakMap<Tool, RegisteredTool | null>()
  const fromSource = (tool: Tool | undefined): RegisteredTool | undefined => {
    if (tool === undefined) return undefined
    let entry = seen.get(tool)
    if (entry === undefined) {
      try {
        checkTool(tool)
        entry = registered(tool)
      } catch (err) {
        fastify.log.warn({ err }, 'a tool source offered a tool that cannot be used')
        entry = null
      }
      seen.set(tool, entry)
    }
    return entry ?? undefined
  }
  const catalog: ToolCatalog = {
    find (name) {
      const tool = tools.get(name)
      if (tool !== undefined) return tool
      for (const source of sources) {
        const found = fromSource(source.tools.get(name) ?? source.unlisted?.(name))
        if (found !== undefined) return found
      }
      return undefined
    },
    * all () {
      yield * tools.values()
      const named = new Set(tools.keys())
      for (const source of sources) {
        for (const [name, tool] of source.tools) {
          const found = named.has(name) ? undefined : fromSource(tool)
          if (found === undefined) continue
          named.add(name)
          yield found
        }
      }
    }
  }
  const registry: ToolRegistry = {
    add (tool: Tool): void {
      checkTool(tool)
      if (sealed) throw new ToolRegistryClosedError(tool.name)
      if (tools.has(tool.name)) throw new ToolDuplicateError(tool.name)
      tools.set(tool.name, registered(tool))
    },
    addSource (source: ToolSource): void {
      if (sealed) throw new ToolRegistryClosedError('(a tool source)')
      sources.push(source)
    },
    get names () {
      return [...tools.keys()]
    }
  }
  for (const tool of opts.tools ?? []) registry.add(tool)

  fastify.decorate('toolRegistry', registry)
  fastify.decorate('createToolDispatcher', (options: DispatcherOptions): RunToolDispatcher =>
    new Dispatcher(factoryToken, catalog, options, fastify.log, fastify.config.TOOL_PROGRESS_INTERVAL_MS))
  fastify.addHook('onReady', async () => { sealed = true })
}

export default fp(toolDispatcher, { name: 'tool-dispatcher', fastify: '5.x', dependencies: ['config'] })
