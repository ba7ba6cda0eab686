// The package's main entry (`agent-gateway`): the gateway plugin, its parts, and the contracts
// a host app writes agents, tools and stores against. It loads no built-in agent or tool (and so
// neither the openai SDK nor the demo tools): those are `agent-gateway/agents`, or loaded by the
// gateway itself when the host app brings no agents.
export { agentGateway, build, type AgentGatewayOptions, type BuildOptions } from './app.js'
export { loadConfig, configPlugin, type Config, type EnvSource } from './config.js'
export * from './contracts.js'
export { default as telemetryPlugin, silentTelemetry, type Telemetry, type TelemetryPluginOptions } from './plugins/telemetry.js'
export { default as authSecretPlugin, type AuthSecret, type TokenClaims } from './plugins/auth-secret.js'
export { default as userContextPlugin, userOf } from './plugins/user-context.js'
export { default as eventStorePlugin, type EventStorePluginOptions } from './plugins/event-store.js'
export { default as toolDispatcherPlugin, type ToolRegistry, type ToolDispatcherPluginOptions } from './plugins/tool-dispatcher.js'
export { default as mcpToolsPlugin, type McpServers, type McpToolsPluginOptions } from './plugins/mcp-tools.js'
export type { McpServerConfig, McpServersConfig } from './mcp/config.js'
export type { McpServerReport } from './mcp/source.js'
export type { McpToolResult, McpAttachment } from './mcp/result.js'
export { default as deliveryPlugin, type Delivery } from './plugins/delivery.js'
export type { RunEmitter } from './delivery/emitter.js'
export { default as runEnginePlugin, type RunEngine, type AgentRegistry, type StartRequest, type StartedRun } from './plugins/run-engine.js'
export { createMemoryStore, type MemoryStoreOptions } from './stores/memory-store.js'
export { createRedisStore, type RedisStoreOptions } from './stores/redis-store.js'
export * from './protocol.js'
