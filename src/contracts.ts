// The contracts a host app writes against: agents, tools, the contexts they receive, the error
// they throw to explain a failure, and the event store. This module imports no plugin, so agents,
// tools and stores depend on it alone, never on each other's internals or on the gateway's wiring;
// a lint rule keeps it that way (eslint.config.js).
import type { FastifyBaseLogger } from 'fastify'
import type { Static, TSchema } from 'typebox'
import type { RunEventData, RunEventType, RunInput, TerminalStatus } from './protocol.js'

// ---------------------------------------------------------------------------------------------
// Who is asking

/** A verified user, frozen: everything downstream is scoped to `userId` (the token's `sub`). */
export interface UserContext {
  readonly userId: string
  readonly scopes: readonly string[]
  readonly requestId: string
  readonly connectionId: string
}

/** A user context narrowed to one run: what agents and tools receive. */
export interface RunContext extends UserContext {
  readonly runId: string
  readonly threadId: string
  readonly agent: string
}

/**
 * An error whose code and message are safe to show the end user. Tools and agents throw it to
 * explain a failure (`new RunError('DIVISION_BY_ZERO', 'Cannot divide by zero')`); anything
 * else they throw is reported with a generic message and logged server-side only.
 */
export class RunError extends Error {
  readonly code: string
  constructor (code: string, message: string) {
    super(message)
    this.name = 'RunError'
    this.code = code
  }
}

// ---------------------------------------------------------------------------------------------
// Tools

export interface ToolContext {
  readonly context: RunContext
  /** Aborted when the run is cancelled, times out or shuts down, or when this call times out. */
  readonly signal: AbortSignal
  /**
   * Reports how far the call has got, as a `tool_progress` event of the run. `progress` must grow
   * from one report to the next (a report that does not is dropped); `total` is the value it
   * reaches when the work is done, if known. Reports closer together than
   * TOOL_PROGRESS_INTERVAL_MS are thinned to the latest; reports after the call ended are dropped.
   * (Safe to destructure.)
   */
  readonly progress: (progress: number, total?: number, message?: string) => void
}

export interface Tool<P extends TSchema = TSchema> {
  /** Unique; letters, digits, `_` and `-` (what LLM function calling accepts). */
  readonly name: string
  readonly description: string
  /** TypeBox object schema of the arguments. */
  readonly parameters: P
  /** When set, only users whose token carries this scope may call the tool. */
  readonly scope?: string
  /** Deadline of one call; TOOL_TIMEOUT_MS when omitted. */
  readonly timeoutMs?: number
  /** Returns (or resolves to) the result: anything JSON-serialisable. */
  execute(args: Static<P>, ctx: ToolContext): unknown
}

/** What a tool name must look like: what LLM function calling accepts. */
export const TOOL_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/

/**
 * Tools whose list changes while the server runs, such as the tools of MCP servers. The registry
 * reads `tools` on every list() and call(), so a source keeps it current rather than computing it.
 * A registered tool of the same name wins over a source's.
 */
export interface ToolSource {
  /** The tools it offers now, by name. */
  readonly tools: ReadonlyMap<string, Tool>
  /**
   * A tool it answers for without offering it now — one of a server that is down, whose execute
   * then says why it fails — or undefined for a name that is not its own.
   */
  unlisted?(name: string): Tool | undefined
}

/** Identity function that infers `args` from `parameters`. */
export function defineTool<P extends TSchema> (tool: Tool<P>): Tool<P> {
  return tool
}

export interface ToolInfo {
  readonly name: string
  readonly description: string
  readonly parameters: TSchema
}

export type ToolOutcome = RunEventData<'tool_completed'>

/**
 * A tool call that runs somewhere else — inside a remote agent — reported to the run: its
 * `tool_executing` is written when it is opened, and exactly one `tool_completed` when it ends.
 * The first of `complete` / `fail` (or the end of the run, which ends it `cancelled`) wins; later
 * ones write nothing and return the outcome it ended with. Reported after the run has ended, a
 * call is never opened: its handle writes nothing.
 */
export interface ExternalToolCall {
  readonly toolCallId: string
  /** Ends the call `success` with its result (anything JSON-serialisable; otherwise `BAD_RESULT`). */
  complete(result: unknown): ToolOutcome
  /** Ends the call with `status` (`error` unless given) and the error to show. */
  fail(code: string, message: string, status?: Exclude<ToolOutcome['status'], 'success'>): ToolOutcome
}

/** What an agent gets as `tools`. `call` never throws: every failure is an outcome. */
export interface ToolDispatcher {
  call(name: string, args?: unknown): Promise<ToolOutcome>
  /**
   * Reports a call the gateway does not execute (a remote agent's own tool) with the bookkeeping
   * of every call: its events are paired, and the end of the run closes it. Never throws; once the
   * run has ended the handle writes nothing.
   */
  external(name: string, args?: unknown): ExternalToolCall
  /** The tools this run may call (tools whose scope the user lacks are left out). */
  list(): ToolInfo[]
}

// ---------------------------------------------------------------------------------------------
// Agents

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

/**
 * An agent: does the work of a run and returns its output (anything JSON-serialisable). It never
 * emits `agent_started` or `agent_completed`: the run engine does, exactly once each. Throwing a
 * RunError fails the run with that code and message.
 */
export type Agent = (run: AgentRun) => Promise<unknown>

// ---------------------------------------------------------------------------------------------
// The event store: each run's event log, its metadata, and what nodes must agree on — which node
// executes a run, how many runs a user has in flight, how to reach the executing node.
// Implementations: src/stores/memory-store.ts (one process, the default) and
// src/stores/redis-store.ts (any number of nodes); test/stores/contract.ts is the suite every
// implementation must pass.

export type RunStatus = 'running' | TerminalStatus

export interface NewRun {
  readonly runId: string
  readonly threadId: string
  readonly agent: string
  /** The user id of the owner: the only user whose connections may see the run. */
  readonly ownerId: string
}

export interface RunMeta extends NewRun {
  readonly status: RunStatus
  readonly createdAt: string
  readonly endedAt?: string
  /** Seq of the last event appended (0 before the first). */
  readonly lastSeq: number
  /** The node executing the run (the one that created it). */
  readonly node: string
}

/**
 * One logged event: its seq and type, and its complete wire frame as UTF-8 bytes — serialised
 * and encoded once, then written as is to every socket that receives it.
 */
export interface StoredEvent {
  readonly seq: number
  readonly type: RunEventType
  readonly frame: Buffer
  /** When it was appended (epoch ms, the `ts` of the frame). */
  readonly at: number
}

/** False when the run has ended and its last event has seq <= after: nothing more will come. */
export function hasEventsAfter (meta: RunMeta, after: number): boolean {
  return meta.status === 'running' || after < meta.lastSeq
}

export type RunLookup =
  | { readonly state: 'found', readonly meta: RunMeta }
  /** The run existed but its history is gone; only its owner may be told so. */
  | { readonly state: 'expired', readonly ownerId: string }
  | { readonly state: 'missing' }

export type EventListener = (event: StoredEvent) => void

export interface StoreSubscription {
  /** Resolves once every event appended from then on is sure to reach the listener. */
  readonly ready: Promise<void>
  unsubscribe(): void
}

export type CreateResult =
  | { readonly created: true, readonly meta: RunMeta }
  /** The owner already has `active` runs in flight, the limit. */
  | { readonly created: false, readonly active: number }
  /** Asked for an exclusive thread: the owner's run `busyRunId` on that thread is still running. */
  | { readonly created: false, readonly busyRunId: string }

export interface CreateLimits {
  readonly maxActivePerOwner: number
  /**
   * Refuse the run while the owner's latest run on the same thread is still running (one run in
   * flight per conversation, as the chat endpoint needs), checked atomically with the count.
   */
  readonly exclusiveThread?: boolean
}

/** Appends to one run of a store in this process's memory (EventStore.appender). */
export interface RunAppender {
  /**
   * The same append as EventStore.append, done before it returns (subscribers notified too);
   * throws where `append` rejects.
   */
  appendNow(type: RunEventType, dataJson: string): StoredEvent
}

export interface EventStore {
  /** This node's id, recorded as the executing node of the runs it creates. */
  readonly nodeId: string
  /** Bytes of run history this process holds, for stores that keep it in memory (a gauge). */
  readonly sizeBytes?: () => number
  /**
   * Registers a new run executed by this node (status `running`, lastSeq 0), unless its owner
   * already has `maxActivePerOwner` runs in flight — counted across every node, atomically, so
   * concurrent starts cannot overshoot; with `exclusiveThread`, also unless the owner's latest run
   * on the thread is still running. The new run becomes the owner's latest run on its thread.
   * Rejects if the runId exists.
   */
  createRun(run: NewRun, limits: CreateLimits): Promise<CreateResult>
  getRun(runId: string): Promise<RunLookup>
  /**
   * The owner's latest run on a thread (the last created): running, or ended with its history
   * still kept; undefined when there is none (or its history expired). Only that owner's runs count.
   */
  threadRun(ownerId: string, threadId: string): Promise<RunMeta | undefined>
  /**
   * Appends an event whose `data` is already JSON. Assigns the next seq (gapless, starting at 1,
   * in call order for one run, unique even with concurrent writers) and the timestamp, builds the
   * frame, and notifies subscribers on every node. Rejects for an unknown or ended run.
   */
  append(runId: string, type: RunEventType, dataJson: string): Promise<StoredEvent>
  /**
   * Optional, for a store that writes in this process's memory: what appends to one running run
   * before returning (RunAppender). Asked for once per run, right after `createRun`; throws if
   * the run is unknown or has ended. The emitter prefers it, so that an event costs no promise,
   * no microtask and no lookup of its run on the way to the sockets.
   */
  appender?(runId: string): RunAppender
  /** Events with seq > afterSeq, in order, at most `limit`. Empty for an unknown run. */
  read(runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]>
  /**
   * Live events of a run, in seq order, from any node. Once `ready` resolves, every event
   * appended later reaches `listener`. If the store cannot vouch for that any more (it lost and
   * regained its connection), it calls `onResync`: events may have been missed, read the log.
   */
  subscribe(runId: string, listener: EventListener, onResync?: () => void): StoreSubscription
  /** Marks the run ended (frees its owner's slot); its history is kept for the TTL, then expires. */
  endRun(runId: string, status: TerminalStatus): Promise<void>
  /** Asks the node executing a run to stop it (a `cancel` that arrived on another node). */
  requestStop(run: RunMeta): Promise<void>
  /** Receives the stop requests addressed to this node's runs. */
  onStopRequest(handler: (runId: string) => void): void
  /** Resolves when the store can serve requests; rejects with the reason otherwise. */
  ping(): Promise<void>
  close(): Promise<void>
}
// A store shared by several nodes may end a run itself: when the node executing it is gone (its
// claim on the run lapsed), the store appends the run's terminal `agent_completed` (`failed`,
// `NODE_LOST`) and marks it ended, exactly once across the nodes. Subscribers receive it like any
// other event; the executing node, should it come back, finds its appends refused (the run has
// ended) and must not write a second terminal event.
