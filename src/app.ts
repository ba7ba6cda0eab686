// The composition root: the whole gateway, registered in order on one screen. It never listens
// (src/server.ts does). `agentGateway` is the plugin other Fastify apps register; `build()`
// makes a standalone instance. Each plugin declares what it depends on, so the order below is
// for the reader; docs/architecture.md draws it.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import { configPlugin, type Config, type EnvSource } from './config.js'
import type { Agent, EventStore, Tool } from './contracts.js'
import { ConfigInvalidError } from './errors.js'
import telemetry from './plugins/telemetry.js'
import authSecret from './plugins/auth-secret.js'
import userContext from './plugins/user-context.js'
import eventStore from './plugins/event-store.js'
import toolDispatcher from './plugins/tool-dispatcher.js'
import mcpTools from './plugins/mcp-tools.js'
import type { McpServersConfig } from './mcp/config.js'
import delivery from './plugins/delivery.js'
import runEngine from './plugins/run-engine.js'
import gatewayRoutes from './routes/index.js'
import unusedConnections from './plugins/unused-connections.js'

export interface AgentGatewayOptions {
  /** A loaded configuration; otherwise it is read from `env` (default: process.env). */
  config?: Config
  env?: EnvSource
  /**
   * Agents by name. Default: the built-in `demo` agent, and `llm` when LLM_BASE_URL and LLM_MODEL
   * are set. The remote agents of AG_UI_AGENTS are added in either case.
   */
  agents?: Readonly<Record<string, Agent>>
  /** The agent of runs that name none. Default: the first of `agents`. */
  defaultAgent?: string
  /** Tools agents may call. Default: the demo tools when `agents` is omitted, none otherwise. */
  tools?: readonly Tool[]
  /** MCP servers whose tools agents may call as `<server>__<tool>`, as under `mcpServers` in MCP_CONFIG (both may be used). */
  mcpServers?: McpServersConfig
  /** The event store. Default: the one EVENT_STORE names (the embedded memory store unless set). */
  store?: EventStore
  /** Serve the demo page at `GET /` (default true); false leaves `/` to the host app. */
  page?: boolean
  /** Keep Prometheus metrics and serve them at `GET /metrics` (default true). */
  metrics?: boolean
}

/**
 * The built-in agents and their tools, loaded only when the host app brings none: the demo agent
 * with the demo tools, and the `llm` agent (and with it the openai SDK) only when configured.
 */
async function builtInAgents (fastify: FastifyInstance): Promise<void> {
  const { config } = fastify
  const [{ createDemoAgent }, { demoTools }] = await Promise.all([import('./agents/demo.js'), import('./tools/index.js')])
  for (const tool of demoTools) fastify.toolRegistry.add(tool)
  fastify.agentRegistry.add('demo', createDemoAgent({ stepDelayMs: config.DEMO_STEP_DELAY_MS }))
  const { LLM_BASE_URL: baseURL, LLM_MODEL: model } = config
  if (baseURL === undefined && model === undefined) return
  if (baseURL === undefined || model === undefined) {
    const [set, missing] = baseURL === undefined ? ['LLM_MODEL', 'LLM_BASE_URL'] : ['LLM_BASE_URL', 'LLM_MODEL']
    throw new ConfigInvalidError(`${set} is set but ${missing} is not; set both to enable the llm agent, or neither`)
  }
  // Servers without authentication (Ollama, LM Studio, vLLM by default) take any key; the SDK needs one.
  const apiKey = config.LLM_API_KEY === undefined || config.LLM_API_KEY === '' ? 'none' : config.LLM_API_KEY
  const { createLlmAgent } = await import('./agents/llm.js')
  fastify.agentRegistry.add('llm', createLlmAgent({ baseURL, apiKey, model, maxSteps: config.LLM_MAX_STEPS }))
}

/**
 * The remote AG-UI agents of AG_UI_AGENTS, by their names, next to the other agents; an entry
 * whose values are unusable stops the start with one line naming it. Loaded only when some are configured.
 */
async function remoteAgents (fastify: FastifyInstance): Promise<void> {
  const configured = Object.entries(fastify.config.AG_UI_AGENTS)
  if (configured.length === 0) return
  const { agUiOptionsProblem, createAgUiAgent } = await import('./agents/ag-ui-remote.js')
  for (const [name, options] of configured) {
    const problem = agUiOptionsProblem(options)
    if (problem !== undefined) throw new ConfigInvalidError(`AG_UI_AGENTS: agent "${name}": ${problem}`)
    fastify.agentRegistry.add(name, createAgUiAgent(options))
  }
}

async function gateway (fastify: FastifyInstance, opts: AgentGatewayOptions): Promise<void> {
  fastify.register(configPlugin, { config: opts.config, env: opts.env })
  fastify.register(telemetry, { prometheus: opts.metrics !== false })
  fastify.register(authSecret)
  fastify.register(userContext)
  fastify.register(eventStore, { store: opts.store })
  fastify.register(toolDispatcher, { tools: opts.tools ?? [] })
  fastify.register(mcpTools, { servers: opts.mcpServers })
  fastify.register(delivery)
  fastify.register(runEngine, { agents: opts.agents, defaultAgent: opts.defaultAgent })
  if (opts.agents === undefined) fastify.register(builtInAgents)
  fastify.register(remoteAgents)
  fastify.register(gatewayRoutes, { page: opts.page })
}

/** The gateway as a plugin for your own Fastify app. */
export const agentGateway = fp(gateway, { name: 'agent-gateway', fastify: '5.x' })

export interface BuildOptions extends AgentGatewayOptions {
  logger?: FastifyServerOptions['logger']
  trustProxy?: FastifyServerOptions['trustProxy']
  /** Fastify's requestTimeout: the server passes HTTP_REQUEST_TIMEOUT_MS. */
  requestTimeout?: number
}

/** A standalone gateway instance (not listening). */
export async function build (options: BuildOptions = {}): Promise<FastifyInstance> {
  const { logger = false, trustProxy = false, requestTimeout = 0, ...gatewayOptions } = options
  // Slow-body clients are cut off by Node's own checks, every connectionsCheckingInterval.
  const app = Fastify({ logger, trustProxy, requestTimeout, http: { connectionsCheckingInterval: Math.min(30_000, Math.max(1000, requestTimeout / 2)) } })
  // The server's own concern, not the gateway's: a host app that registers agentGateway owns its server.
  await app.register(unusedConnections)
  await app.register(agentGateway, gatewayOptions)
  return app
}
