// The composition root: the whole gateway, registered in order on one screen. It never listens
// (src/server.ts does). `agentGateway` is the plugin other Fastify apps register; `build()`
// makes a standalone instance.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import { configPlugin, type Config, type EnvSource } from './config.js'
import authSecret from './plugins/auth-secret.js'
import userContext from './plugins/user-context.js'
import toolDispatcher, { type Tool } from './plugins/tool-dispatcher.js'
import agentBridge from './plugins/agent-bridge.js'
import runEngine, { type Agent } from './plugins/run-engine.js'
import healthRoutes from './routes/health.js'
import wsRoute from './routes/ws.js'
import runsRoutes from './routes/runs.js'
import agUiRoutes from './routes/ag-ui.js'
import metricsRoute from './routes/metrics.js'
import metrics from './plugins/metrics.js'
import devTokenRoute from './routes/dev-token.js'
import pageRoute from './routes/page.js'
import type { EventStore } from './stores/event-store.js'
import { createDemoAgent } from './agents/demo.js'
import { createLlmAgent } from './agents/llm.js'
import { ConfigInvalidError } from './errors.js'
import { demoTools } from './tools/index.js'

export interface AgentGatewayOptions {
  /** A loaded configuration; otherwise it is read from `env` (default: process.env). */
  config?: Config
  env?: EnvSource
  /** Agents by name. Default: the built-in `demo` agent, and `llm` when LLM_BASE_URL and LLM_MODEL are set. */
  agents?: Readonly<Record<string, Agent>>
  /** The agent of runs that name none. Default: the first of `agents`. */
  defaultAgent?: string
  /** Tools agents may call. Default: the demo tools when `agents` is omitted, none otherwise. */
  tools?: readonly Tool[]
  /** The event store. Default: the embedded memory store. */
  store?: EventStore
  /** Serve the demo page at `GET /` (default true); false leaves `/` to the host app. */
  page?: boolean
}

/** The demo agent, and the LLM agent when its server and model are configured (both or neither). */
function builtInAgents (config: Config): Record<string, Agent> {
  const demo = createDemoAgent({ stepDelayMs: config.DEMO_STEP_DELAY_MS })
  const { LLM_BASE_URL: baseURL, LLM_MODEL: model } = config
  if (baseURL === undefined && model === undefined) return { demo }
  if (baseURL === undefined || model === undefined) {
    const [set, missing] = baseURL === undefined ? ['LLM_MODEL', 'LLM_BASE_URL'] : ['LLM_BASE_URL', 'LLM_MODEL']
    throw new ConfigInvalidError(`${set} is set but ${missing} is not; set both to enable the llm agent, or neither`)
  }
  // Servers without authentication (Ollama, LM Studio, vLLM by default) take any key; the SDK needs one.
  const apiKey = config.LLM_API_KEY === undefined || config.LLM_API_KEY === '' ? 'none' : config.LLM_API_KEY
  return { demo, llm: createLlmAgent({ baseURL, apiKey, model, maxSteps: config.LLM_MAX_STEPS }) }
}

async function gateway (fastify: FastifyInstance, opts: AgentGatewayOptions): Promise<void> {
  const builtIn = opts.agents === undefined
  fastify.register(configPlugin, { config: opts.config, env: opts.env })
  // First after config: the plugins below report to it.
  fastify.register(metrics)
  fastify.register(authSecret)
  fastify.register(userContext)
  fastify.register(toolDispatcher, { tools: opts.tools ?? (builtIn ? demoTools : []) })
  fastify.register(agentBridge, { store: opts.store })
  // The built-in agents depend on the configuration, so they are made once it has loaded, in a
  // plugin of their own: an error there fails ready(), as one in an options function cannot.
  const agents: Record<string, Agent> = { ...opts.agents }
  if (opts.agents === undefined) fastify.register(async (instance) => { Object.assign(agents, builtInAgents(instance.config)) })
  fastify.register(runEngine, { agents, defaultAgent: opts.defaultAgent })
  fastify.register(healthRoutes)
  fastify.register(wsRoute)
  fastify.register(runsRoutes)
  fastify.register(agUiRoutes)
  fastify.register(metricsRoute)
  fastify.register(devTokenRoute)
  if (opts.page !== false) fastify.register(pageRoute)
}

/** The gateway as a plugin for your own Fastify app. */
export const agentGateway = fp(gateway, { name: 'agent-gateway', fastify: '5.x' })

export interface BuildOptions extends AgentGatewayOptions {
  logger?: FastifyServerOptions['logger']
  trustProxy?: FastifyServerOptions['trustProxy']
}

/** A standalone gateway instance (not listening). */
export async function build (options: BuildOptions = {}): Promise<FastifyInstance> {
  const { logger = false, trustProxy = false, ...gatewayOptions } = options
  const app = Fastify({ logger, trustProxy })
  await app.register(agentGateway, gatewayOptions)
  return app
}

export { loadConfig, type Config, type EnvSource } from './config.js'
export { RunError } from './errors.js'
export { defineTool, type Tool, type ToolContext, type ToolDispatcher, type ToolOutcome, type ToolInfo } from './plugins/tool-dispatcher.js'
export type { Agent, AgentRun, RunEngine, StartRequest, StartedRun } from './plugins/run-engine.js'
export type { AgentBridge, RunEmitter } from './plugins/agent-bridge.js'
export type { UserContext, RunContext } from './plugins/user-context.js'
export type { AuthSecret, TokenClaims } from './plugins/auth-secret.js'
export type { EventStore, RunMeta, StoredEvent, RunLookup, NewRun } from './stores/event-store.js'
export { createMemoryStore } from './stores/memory-store.js'
export { createDemoAgent } from './agents/demo.js'
export { createLlmAgent, type LlmAgentOptions, type LlmAnswer } from './agents/llm.js'
export { demoTools } from './tools/index.js'
export * from './protocol.js'
