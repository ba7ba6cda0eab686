// The tools of the configured MCP servers as one tool source of the dispatcher. A server's tool
// `t` is offered as `<server>__t`, with the server's description and input JSON Schema, the
// server's `scope` and `timeoutMs`, filtered by `include` / `exclude`. The list follows the
// servers: a server that is down offers nothing, and a call of one of its tools (known from its
// last listing, or any name under its prefix) ends `error` MCP_UNAVAILABLE until it is back.
import type { FastifyBaseLogger } from 'fastify'
import type { Tool as McpTool } from '@modelcontextprotocol/sdk/types.js'
import { McpToolNameError } from '../errors.js'
import { TOOL_NAME, type Tool, type ToolSource } from '../contracts.js'
import { TOOL_NAME_SEPARATOR, qualifiedName, type McpServerEntry } from './config.js'
import { McpConnection, type McpServerStatus } from './connection.js'

export interface McpToolSourceOptions {
  readonly log: FastifyBaseLogger
  readonly clientInfo: { readonly name: string, readonly version: string }
  /** The deadline of a call when the server's entry sets none (TOOL_TIMEOUT_MS). */
  readonly defaultTimeoutMs: number
  readonly resultMaxBytes: number
  readonly backoff?: { readonly initialMs: number, readonly maxMs: number }
}

export interface McpServerReport extends McpServerStatus {
  /** Tools of the server offered to agents now. */
  readonly tools: number
}

const ANY_ARGUMENTS = { type: 'object' } as const

export class McpToolSource implements ToolSource {
  readonly #connections: McpConnection[]
  /** Each server's tools from its last listing, by qualified name (kept while it is down). */
  readonly #known = new Map<string, ReadonlyMap<string, Tool>>()
  readonly #options: McpToolSourceOptions
  readonly #log: FastifyBaseLogger
  #tools: ReadonlyMap<string, Tool> = new Map()
  /** Names of the tools registered without a source, which MCP tools must not take. */
  #reserved: ReadonlySet<string> = new Set()
  /** While starting, name problems are collected to stop start-up; later each is logged once. */
  #starting = true
  readonly #problems = new Set<string>()

  constructor (entries: readonly McpServerEntry[], options: McpToolSourceOptions) {
    this.#options = options
    this.#log = options.log
    this.#connections = entries.map((entry) => {
      const connection: McpConnection = new McpConnection(entry, {
        log: options.log,
        clientInfo: options.clientInfo,
        resultMaxBytes: options.resultMaxBytes,
        ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
        onTools: (tools) => {
          this.#known.set(entry.name, this.#build(connection, tools))
          this.#offer()
        },
        onState: () => { this.#offer() }
      })
      return connection
    })
  }

  get tools (): ReadonlyMap<string, Tool> {
    return this.#tools
  }

  unlisted (name: string): Tool | undefined {
    const connection = this.#connections.find((candidate) => name.startsWith(`${candidate.name}${TOOL_NAME_SEPARATOR}`))
    if (connection === undefined || connection.state === 'ready' || !TOOL_NAME.test(name)) return undefined
    return this.#known.get(connection.name)?.get(name) ?? {
      name,
      description: `A tool of the MCP server "${connection.name}", which is not available`,
      parameters: ANY_ARGUMENTS,
      ...(connection.entry.scope === undefined ? {} : { scope: connection.entry.scope }),
      execute: () => { throw connection.unavailable() }
    }
  }

  /**
   * Connects every server and waits for each first attempt, at most `waitMs` (may be infinite; servers still
   * connecting go on in the background). Throws AGW_ERR_MCP_TOOL_NAME when the tools of the
   * servers connected by then clash with `reserved` names, each other, or the name rules.
   */
  async start (waitMs: number, reserved: readonly string[]): Promise<void> {
    this.#reserved = new Set(reserved)
    let timer: NodeJS.Timeout | undefined
    const started = Promise.all(this.#connections.map((connection) => connection.start()))
    const waited = new Promise<void>((resolve) => { if (Number.isFinite(waitMs)) timer = setTimeout(resolve, waitMs) })
    try {
      await Promise.race([started, waited])
    } finally {
      clearTimeout(timer)
    }
    this.#starting = false
    const problems = [...this.#problems]
    for (const connection of this.#connections) {
      if (connection.state !== 'ready') this.#log.warn({ mcpServer: connection.name, state: connection.state }, 'MCP server not connected at start-up; its tools are unavailable until it is')
    }
    if (problems.length > 0) throw new McpToolNameError(problems.join('; '))
  }

  status (): Record<string, McpServerReport> {
    const report: Record<string, McpServerReport> = {}
    for (const connection of this.#connections) {
      let tools = 0
      for (const tool of this.#tools.values()) if (tool.name.startsWith(`${connection.name}${TOOL_NAME_SEPARATOR}`)) tools++
      report[connection.name] = { ...connection.status(), tools }
    }
    return report
  }

  /** The process id of a stdio server's running process. */
  pid (server: string): number | undefined {
    return this.#connections.find((connection) => connection.name === server)?.pid
  }

  async close (): Promise<void> {
    await Promise.all(this.#connections.map((connection) => connection.close()))
  }

  #problem (problem: string): void {
    if (this.#problems.has(problem)) return
    this.#problems.add(problem)
    if (!this.#starting) this.#log.warn({ problem }, 'an MCP tool is left out')
  }

  /** The server's tools as gateway tools, by qualified name. */
  #build (connection: McpConnection, tools: readonly McpTool[]): Map<string, Tool> {
    const { entry } = connection
    const built = new Map<string, Tool>()
    const timeoutMs = entry.timeoutMs ?? this.#options.defaultTimeoutMs
    for (const tool of tools) {
      if (entry.include?.has(tool.name) === false || entry.exclude.has(tool.name)) continue
      if (tool.execution?.taskSupport === 'required') {
        // Such tools answer only through MCP's experimental tasks, which the gateway does not drive.
        this.#log.debug({ mcpServer: entry.name, tool: tool.name }, 'MCP tool needs task-based execution; left out')
        continue
      }
      const name = qualifiedName(entry.name, tool.name)
      if (!TOOL_NAME.test(name)) {
        const why = name.length > 64 ? 'is longer than 64 characters' : 'has characters other than letters, digits, "_" and "-"'
        this.#problem(`"${name}" (tool "${tool.name}" of MCP server "${entry.name}") ${why}`)
        continue
      }
      built.set(name, {
        name,
        description: tool.description?.trim() || tool.title?.trim() || `The tool "${tool.name}" of the MCP server "${entry.name}"`,
        parameters: tool.inputSchema,
        ...(entry.scope === undefined ? {} : { scope: entry.scope }),
        timeoutMs,
        execute: (args, ctx) => connection.call(tool.name, args, ctx, timeoutMs)
      })
    }
    for (const wanted of entry.include ?? []) {
      if (!tools.some((tool) => tool.name === wanted)) this.#log.warn({ mcpServer: entry.name, tool: wanted }, 'MCP server has no tool of a name its "include" lists')
    }
    return built
  }

  /** Recomputes what is offered: the tools of the ready servers, first come first served on a name. */
  #offer (): void {
    const offered = new Map<string, Tool>()
    const owners = new Map<string, string>()
    for (const connection of this.#connections) {
      if (connection.state !== 'ready') continue
      for (const [name, tool] of this.#known.get(connection.name) ?? []) {
        const owner = this.#reserved.has(name) ? 'a registered tool' : owners.get(name)
        if (owner !== undefined) {
          this.#problem(`"${name}" (of MCP server "${connection.name}") has the name of ${owner}`)
          continue
        }
        owners.set(name, `a tool of MCP server "${connection.name}"`)
        offered.set(name, tool)
      }
    }
    this.#tools = offered
  }
}
