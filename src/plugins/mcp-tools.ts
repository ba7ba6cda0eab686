// mcp-tools: the tools of MCP (Model Context Protocol) servers, as a tool source of the
// dispatcher, so that to agents, the dispatcher and the events an MCP tool is a tool like any
// other. The servers come from the file MCP_CONFIG names and from the `servers` option; they are
// connected while the app gets ready (one that cannot start is reported and retried, never
// fatal) and closed on shutdown, stopping every process they started. See src/mcp/.
import { readFile } from 'node:fs/promises'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { loadMcpConfigFile, mergeMcpServers, parseMcpServers, type McpServersConfig } from '../mcp/config.js'
import type { McpServerReport } from '../mcp/source.js'

export interface McpServers {
  /** Each configured server's state, by name (what /readyz shows); empty when none is configured. */
  status(): Record<string, McpServerReport>
  /** The process id of a stdio server's running process. */
  pid(server: string): number | undefined
}

declare module 'fastify' {
  interface FastifyInstance {
    mcpServers: McpServers
  }
}

export interface McpToolsPluginOptions {
  /** MCP servers by name, as under `mcpServers` in an MCP_CONFIG file. */
  servers?: McpServersConfig
  /** Waits before connecting a lost server again (default: from 0.5 s, doubling up to 30 s). */
  backoff?: { initialMs: number, maxMs: number }
}

// ready() waits for the servers' first connection attempts, but within Fastify's plugin timeout,
// which also bounds onReady hooks: slower servers go on connecting in the background.
const STARTUP_SHARE_OF_PLUGIN_TIMEOUT = 0.8

async function packageVersion (): Promise<string> {
  try {
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
    /* c8 ignore next -- the package always has a version */
    return typeof version === 'string' ? version : '0.0.0'
  /* c8 ignore next 3 -- only when the package is laid out differently */
  } catch {
    return '0.0.0'
  }
}

async function mcpTools (fastify: FastifyInstance, opts: McpToolsPluginOptions): Promise<void> {
  const { config } = fastify
  const entries = mergeMcpServers(
    config.MCP_CONFIG === undefined ? [] : await loadMcpConfigFile(config.MCP_CONFIG),
    opts.servers === undefined ? [] : parseMcpServers(opts.servers, 'the mcpServers option')
  )
  if (entries.length === 0) {
    fastify.decorate('mcpServers', { status: () => ({}), pid: () => undefined })
    return
  }
  // The MCP SDK is loaded only when a server is configured: a gateway without any starts as fast as before.
  const { McpToolSource } = await import('../mcp/source.js')
  const source = new McpToolSource(entries, {
    log: fastify.log,
    clientInfo: { name: 'agent-gateway', version: await packageVersion() },
    defaultTimeoutMs: config.TOOL_TIMEOUT_MS,
    resultMaxBytes: config.MCP_RESULT_MAX_BYTES,
    ...(opts.backoff === undefined ? {} : { backoff: opts.backoff })
  })
  fastify.decorate('mcpServers', { status: () => source.status(), pid: (server: string) => source.pid(server) })
  fastify.toolRegistry.addSource(source)
  fastify.addHook('onReady', async () => {
    try {
      const { pluginTimeout } = fastify.initialConfig
      const waitMs = typeof pluginTimeout === 'number' && pluginTimeout > 0 ? pluginTimeout * STARTUP_SHARE_OF_PLUGIN_TIMEOUT : Number.POSITIVE_INFINITY
      await source.start(waitMs, fastify.toolRegistry.names)
    } catch (err) {
      await source.close()
      throw err
    }
  })
  fastify.addHook('onClose', async () => { await source.close() })
}

export default fp(mcpTools, { name: 'mcp-tools', fastify: '5.x', dependencies: ['config', 'tool-dispatcher'] })
