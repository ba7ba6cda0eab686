// One MCP server as the gateway keeps it: a session of the official SDK's Client over stdio (a
// child process) or Streamable HTTP, connected while the app gets ready, connected again with
// exponential backoff and jitter whenever it is lost (a stdio server that exits is started
// again), its tool list fetched again on `notifications/tools/list_changed`, and closed on
// shutdown without leaving a child process behind. Calls made through it are cancelled with
// MCP's `notifications/cancelled` when their signal fires, and pass progress notifications on.
import type { FastifyBaseLogger } from 'fastify'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import {
  ErrorCode, McpError, ProgressNotificationSchema, ToolListChangedNotificationSchema, type CallToolResult, type Tool as McpTool
} from '@modelcontextprotocol/sdk/types.js'
import { RunError, type ToolContext } from '../contracts.js'
import { redactUrl } from '../logger.js'
import type { McpServerEntry } from './config.js'
import { errorMessage, summariseResult, type McpToolResult } from './result.js'

export type McpServerState = 'connecting' | 'ready' | 'down' | 'closed'

/** A server's state as /readyz shows it (no command line, URL, header or environment). */
export interface McpServerStatus {
  readonly transport: 'stdio' | 'http'
  readonly state: McpServerState
  /** Connections made again after the first. */
  readonly restarts: number
  /** Why it is down. */
  readonly error?: string
  /** When it is down: the wait before the next attempt. */
  readonly retryInMs?: number
}

export interface McpConnectionOptions {
  readonly log: FastifyBaseLogger
  readonly clientInfo: { readonly name: string, readonly version: string }
  /** Bounds of a tool call's result, as JSON. */
  readonly resultMaxBytes: number
  /** Called with the server's tools after every successful listing. */
  readonly onTools: (tools: readonly McpTool[]) => void
  /** Called when the state changes. */
  readonly onState: () => void
  /** The first wait before connecting again, doubled per failure up to `maxMs`. */
  readonly backoff?: { readonly initialMs: number, readonly maxMs: number }
}

// initialize and tools/list must answer within this; tools/call is bounded by the call's own deadline.
const REQUEST_TIMEOUT_MS = 30_000
// The dispatcher ends a call at its deadline and aborts it; the SDK's own timer is only a backstop.
const CALL_TIMEOUT_MARGIN_MS = 5_000
const MAX_LIST_PAGES = 100
// A connection that stayed up this long resets the backoff; one that keeps dying soon keeps backing off.
const STABLE_MS = 60_000
const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 30_000 }
const STDERR_LINE_LENGTH = 300

const isZodError = (err: unknown): boolean => Array.isArray((err as { issues?: unknown } | null)?.issues)

function describeError (err: unknown): string {
  const error = err as { code?: unknown, message?: unknown } | null
  const message = typeof error?.message === 'string' ? error.message : String(err)
  return typeof error?.code === 'string' && !message.includes(error.code) ? `${message} (${error.code})` : message
}

export class McpConnection {
  readonly entry: McpServerEntry
  readonly #options: McpConnectionOptions
  readonly #log: FastifyBaseLogger
  #state: McpServerState = 'connecting'
  #client: Client | undefined
  #transport: StdioClientTransport | StreamableHTTPClientTransport | undefined
  /** Consecutive failed or short-lived connections, for the backoff. */
  #failures = 0
  #restarts = 0
  #readyAt = 0
  #error: string | undefined
  /** What went wrong on the transport of the current attempt (a spawn error says more than "closed"). */
  #transportError: string | undefined
  #lastStderr: string | undefined
  #retryAt: number | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #refreshing: Promise<void> | undefined
  #refreshAgain = false
  /** Where the progress of each open call goes, by the progressToken sent with it. */
  readonly #progress = new Map<string, ToolContext['progress']>()
  #nextToken = 0

  constructor (entry: McpServerEntry, options: McpConnectionOptions) {
    this.entry = entry
    this.#options = options
    this.#log = options.log.child({ mcpServer: entry.name })
  }

  get name (): string {
    return this.entry.name
  }

  get state (): McpServerState {
    return this.#state
  }

  /** The process id of a stdio server that is running, for operators and tests. */
  get pid (): number | undefined {
    const transport = this.#transport
    return transport instanceof StdioClientTransport ? transport.pid ?? undefined : undefined
  }

  status (): McpServerStatus {
    return {
      transport: this.entry.transport,
      state: this.#state,
      restarts: this.#restarts,
      ...(this.#state === 'down' && this.#error !== undefined ? { error: this.#error } : {}),
      ...(this.#state === 'down' && this.#retryAt !== undefined ? { retryInMs: Math.max(0, this.#retryAt - Date.now()) } : {})
    }
  }

  /** Connects; resolves once the first attempt has succeeded or failed (a failure is retried). */
  start (): Promise<void> {
    return this.#attempt()
  }

  async #attempt (): Promise<void> {
    if (this.#state === 'closed') return
    this.#retryAt = undefined
    this.#transportError = undefined
    const client = new Client({ ...this.#options.clientInfo }, { capabilities: {} })
    const transport = this.#makeTransport()
    this.#client = client
    this.#transport = transport
    this.#setState('connecting')
    client.onclose = () => { this.#lost(client, this.#transportError ?? this.#closedReason()) }
    client.onerror = (err) => {
      this.#transportError ??= describeError(err)
      this.#log.debug({ err }, 'MCP transport error')
    }
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      if (this.#client === client) void this.refresh()
    })
    // Progress is routed by tokens of our own rather than the SDK's onprogress: the SDK handles a
    // notification a tick later than the response that follows it, and by then has forgotten the
    // call, so the last report before a result would be lost.
    client.setNotificationHandler(ProgressNotificationSchema, ({ params }) => {
      this.#progress.get(String(params.progressToken))?.(params.progress, params.total, params.message)
    })
    try {
      await client.connect(transport, { timeout: REQUEST_TIMEOUT_MS })
      const tools = await this.#listTools(client)
      if (this.#client !== client) return
      this.#readyAt = Date.now()
      this.#error = undefined
      this.#options.onTools(tools)
      this.#setState('ready')
      this.#log.info({ tools: tools.length, pid: this.pid }, 'MCP server connected')
    } catch (err) {
      this.#lost(client, this.#transportError ?? describeError(err))
    }
  }

  #makeTransport (): StdioClientTransport | StreamableHTTPClientTransport {
    const { entry } = this
    if (entry.transport === 'http') {
      return new StreamableHTTPClientTransport(entry.url as URL, { requestInit: { headers: { ...entry.headers } } })
    }
    // The SDK gives the child a minimal environment (PATH, HOME, USER, SHELL, TERM, LOGNAME) plus
    // `env`: never the gateway's own variables, which hold its secrets.
    const transport = new StdioClientTransport({
      command: entry.command as string,
      args: [...entry.args],
      env: { ...entry.env },
      ...(entry.cwd === undefined ? {} : { cwd: entry.cwd }),
      stderr: 'pipe'
    })
    this.#lastStderr = undefined
    let pending = ''
    transport.stderr?.on('data', (chunk: Buffer) => {
      const lines = (pending + chunk.toString('utf8')).split('\n')
      pending = (lines.pop() ?? '').slice(-STDERR_LINE_LENGTH)
      for (const raw of lines) {
        const line = raw.trim().slice(0, STDERR_LINE_LENGTH)
        if (line === '') continue
        this.#lastStderr = line
        this.#log.debug({ line }, 'MCP server stderr')
      }
    })
    return transport
  }

  #closedReason (): string {
    if (this.entry.transport === 'http') return 'the connection closed'
    return this.#lastStderr === undefined ? 'the process exited' : `the process exited (last output: ${this.#lastStderr})`
  }

  /** The session is gone (or never came up): drop it and connect again after the backoff. */
  #lost (client: Client, reason: string): void {
    if (this.#client !== client) return
    this.#client = undefined
    // Stops a process that is still running (it failed to initialize, or its connection broke).
    void client.close().catch(() => {})
    const wasReady = this.#state === 'ready'
    if (wasReady && Date.now() - this.#readyAt >= STABLE_MS) this.#failures = 0
    const { initialMs, maxMs } = this.#options.backoff ?? DEFAULT_BACKOFF
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(this.#failures, 30))
    const delay = Math.round(ceiling * (0.5 + Math.random() / 2))
    this.#failures++
    this.#error = reason
    this.#retryAt = Date.now() + delay
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#restarts++
      void this.#attempt()
    }, delay)
    this.#setState('down')
    this.#log.warn({ reason, retryInMs: delay, url: this.entry.url === undefined ? undefined : redactUrl(this.entry.url.href) },
      wasReady ? 'MCP server lost; connecting again' : 'MCP server could not be connected; trying again')
  }

  #setState (state: McpServerState): void {
    if (this.#state === 'closed' || this.#state === state) return
    this.#state = state
    this.#options.onState()
  }

  async #listTools (client: Client): Promise<McpTool[]> {
    const tools: McpTool[] = []
    let cursor: string | undefined
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      const result = await client.listTools(cursor === undefined ? undefined : { cursor }, { timeout: REQUEST_TIMEOUT_MS })
      tools.push(...result.tools)
      cursor = result.nextCursor
      if (cursor === undefined) return tools
    }
    throw new Error(`tools/list had more than ${MAX_LIST_PAGES} pages`)
  }

  /** Fetches the tool list again (notifications/tools/list_changed); calls that overlap are folded into one more. */
  refresh (): Promise<void> {
    if (this.#refreshing !== undefined) {
      this.#refreshAgain = true
      return this.#refreshing
    }
    this.#refreshing = (async () => {
      do {
        this.#refreshAgain = false
        const client = this.#client
        if (client === undefined || this.#state !== 'ready') return
        try {
          const tools = await this.#listTools(client)
          if (this.#client === client) this.#options.onTools(tools)
        } catch (err) {
          this.#log.warn({ err }, 'could not fetch the changed tool list of the MCP server')
        }
      } while (this.#refreshAgain)
    })().finally(() => { this.#refreshing = undefined })
    return this.#refreshing
  }

  /** The error a call gets while the server is not connected. */
  unavailable (): RunError {
    const why = this.#state === 'connecting' ? 'it is still connecting' : this.#state === 'closed' ? 'the gateway is shutting down' : this.#error ?? 'it is down'
    return new RunError('MCP_UNAVAILABLE', `The MCP server "${this.name}" is not available: ${why}`)
  }

  /** Calls one of the server's tools (by its own name); throws RunErrors the user may read. */
  async call (tool: string, args: unknown, ctx: ToolContext, timeoutMs: number): Promise<McpToolResult> {
    const client = this.#client
    if (this.#state !== 'ready' || client === undefined) throw this.unavailable()
    // The SDK never forgets a signal it was given: after the call it would still send
    // notifications/cancelled when the signal fires. So it gets one of its own, linked to the
    // call's signal only while the request is open.
    const controller = new AbortController()
    const abort = (): void => { controller.abort(ctx.signal.reason) }
    ctx.signal.addEventListener('abort', abort, { once: true })
    const progressToken = `agw-${++this.#nextToken}`
    this.#progress.set(progressToken, ctx.progress)
    let result: CallToolResult
    try {
      // Parsed with the SDK's default CallToolResultSchema (not the compatibility form): a CallToolResult.
      result = await client.callTool({ name: tool, arguments: args as Record<string, unknown>, _meta: { progressToken } }, undefined, {
        signal: controller.signal,
        timeout: timeoutMs + CALL_TIMEOUT_MARGIN_MS
      }) as CallToolResult
    } catch (err) {
      throw this.#callError(client, tool, err)
    } finally {
      ctx.signal.removeEventListener('abort', abort)
      this.#progress.delete(progressToken)
    }
    if (result.isError === true) throw new RunError('MCP_TOOL_ERROR', errorMessage(result, tool))
    return summariseResult(result, this.#options.resultMaxBytes)
  }

  #callError (client: Client, tool: string, err: unknown): RunError {
    if (err instanceof McpError && err.code !== Number(ErrorCode.ConnectionClosed)) {
      const message = err.message.replace(/^MCP error -?\d+: /, '')
      return new RunError('MCP_PROTOCOL_ERROR', `The MCP server "${this.name}" refused the call of "${tool}" (${err.code}): ${message}`)
    }
    if (isZodError(err)) {
      this.#log.warn({ err }, 'the MCP server answered a tool call with something that is not a tool result')
      return new RunError('MCP_PROTOCOL_ERROR', `The MCP server "${this.name}" answered the call of "${tool}" with something that is not a tool result`)
    }
    // The session is broken (the process died, the HTTP server is gone or forgot the session):
    // a stdio server's exit is noticed by the transport too; either way it is connected again.
    this.#lost(client, this.#transportError ?? (err instanceof McpError ? this.#closedReason() : describeError(err)))
    return new RunError('MCP_UNAVAILABLE', `The MCP server "${this.name}" stopped answering during the call of "${tool}"`)
  }

  /** Ends the session for good: an HTTP session is terminated, a stdio server's process stopped. */
  async close (): Promise<void> {
    if (this.#state === 'closed') return
    this.#setState('closed')
    clearTimeout(this.#retryTimer)
    const client = this.#client
    const transport = this.#transport
    this.#client = undefined
    if (client === undefined) return
    if (transport instanceof StreamableHTTPClientTransport && transport.sessionId !== undefined) {
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref())
      await Promise.race([transport.terminateSession().catch(() => {}), timeout])
    }
    await client.close().catch(() => {})
  }
}
