// The only reader of process.env. One TypeBox schema describes every variable (type, default,
// bounds, documentation); env-schema coerces and validates it; the result is frozen.
// docs/configuration.md is generated from this schema.
import fp from 'fastify-plugin'
import envSchema from 'env-schema'
import { Type, type Static, type TSchema } from 'typebox'
import { ConfigInvalidError } from './errors.js'

export const APP_ENVS = ['development', 'test', 'staging', 'production'] as const
export type AppEnv = (typeof APP_ENVS)[number]

const int = (description: string, defaultValue: number, minimum: number, maximum = Number.MAX_SAFE_INTEGER) =>
  Type.Integer({ description, default: defaultValue, minimum, maximum })
// `writeOnly` marks a secret: docs and error messages never show its value.
const secret = (description: string) => Type.Optional(Type.String({ description, writeOnly: true }))
const bool = (description: string, defaultValue: boolean) => Type.Boolean({ description, default: defaultValue })

// Secrets may be set per environment (JWT_SECRET_PRODUCTION, …); their variables derive from the
// one list of environments so no environment is ever spelled twice.
const envSpecific = (base: string, description: string) => Object.fromEntries(
  APP_ENVS.map((env) => [`${base}_${env.toUpperCase()}`, secret(`${description} Used only when APP_ENV=${env}; wins over ${base}.`)])
) as Record<string, ReturnType<typeof secret>>

export const ConfigSchema = Type.Object({
  PORT: int('TCP port to listen on.', 3000, 0, 65535),
  HOST: Type.String({ description: 'Interface to listen on. Use 0.0.0.0 in a container.', default: '127.0.0.1', minLength: 1 }),
  APP_ENV: Type.Enum([...APP_ENVS], {
    description: 'Deployment environment. Selects the JWT_SECRET_<APP_ENV> variable and how strict secret checks are.',
    default: 'development'
  }),
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { description: 'Log level.', default: 'info' }),
  LOG_FORMAT: Type.Enum(['auto', 'json', 'pretty'], {
    description: 'How the server writes its logs: `json` (one object per line, for collectors), `pretty` (human-readable, pino-pretty), or `auto`: pretty in development when standard output is a terminal, JSON everywhere else.',
    default: 'auto'
  }),

  JWT_SECRET: secret('HS256 signing and verification secret, shared with every service that mints tokens. At least 32 bytes of key material. Optional in development and test (a random one is generated per process).'),
  ...envSpecific('JWT_SECRET', 'Environment-specific JWT secret.'),
  JWT_PREVIOUS_SECRET: secret('The previous secret during a rotation: accepted for verifying tokens, never used to sign.'),
  ...envSpecific('JWT_PREVIOUS_SECRET', 'Environment-specific previous secret.'),
  JWT_ISSUER: Type.Optional(Type.String({ minLength: 1, description: 'When set, tokens must carry this `iss`.' })),
  JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1, description: 'When set, tokens must carry one of these `aud` values (comma-separated).' })),
  JWT_REQUIRE_EXP: bool('Refuse tokens without an `exp` claim.', true),
  JWT_CLOCK_SKEW_SEC: int('Leeway for `exp` and `nbf`, in seconds.', 30, 0, 60),
  ALLOW_QUERY_TOKEN: bool('Accept `?token=` on every authenticated route (for browser WebSocket and EventSource clients). Off by default: URLs end up in logs and history.', false),
  ALLOWED_ORIGINS: Type.String({
    description: 'Comma-separated browser origins allowed to open a WebSocket (e.g. https://app.example.com). Empty: any origin.',
    default: ''
  }),

  HTTP_REQUEST_TIMEOUT_MS: int('Longest time a client may take to send a whole HTTP request (headers and body); slower ones are answered 408 and closed. Node checks it every few seconds, so it is enforced to within that. 0 turns it off.', 30_000, 0, 3_600_000),
  HTTP_RATE_LIMIT_MAX: int('Requests one client address may make to a rate-limited HTTP route (the WebSocket handshake, /dev/token) per window.', 300, 1, 1_000_000),
  HTTP_RATE_LIMIT_WINDOW_MS: int('The window of HTTP_RATE_LIMIT_MAX.', 60_000, 100, 86_400_000),
  TRUST_PROXY: Type.String({
    description: 'Behind a proxy or load balancer: the comma-separated proxy addresses or CIDRs (e.g. 10.0.0.0/8) whose X-Forwarded-For is trusted, or `true` for any, so that limits and logs see the client address. Empty: trust none.',
    default: ''
  }),
  EVENT_STORE: Type.String({
    description: 'Where runs and their events live: `memory` (one process), a Redis URL (`redis://host:6379/0`, `rediss://…`) shared by every node, or a Redis Cluster\'s seed nodes (`redis-cluster://[user:password@]host1:6379,host2:6379`).',
    default: 'memory',
    pattern: '^(memory|rediss?://.+|redis-cluster://([^@/]*@)?[^/,:@]+:[0-9]+(,[^/,:@]+:[0-9]+)*/?)$'
  }),
  REDIS_MIN_REPLICAS_ACK: int('With Redis: replicas that must hold each batch of events (WAIT) before any client sees it, so that a failover cannot take back an event a client saw. 0 delivers once the primary has it.', 0, 0, 16),
  REDIS_REPLICA_ACK_TIMEOUT_MS: int('With REDIS_MIN_REPLICAS_ACK: how long a batch waits for its replicas; then it is delivered anyway and counted in agw_redis_replica_ack_shortfall_total.', 1000, 10, 60_000),
  REDIS_KEY_PREFIX: Type.String({ description: 'Prefix of every Redis key and channel, to share one Redis between deployments.', default: 'agw:', minLength: 1, maxLength: 64 }),
  LEASE_TTL_MS: int('With Redis: how long a node\'s claim on the runs it executes lasts unrenewed; a run whose node is gone ends with NODE_LOST about this long after.', 15_000, 300, 600_000),
  MAX_MESSAGE_BYTES: int('Largest client frame accepted; larger frames close the connection with 1009.', 65536, 256, 16 * 1024 * 1024),
  MAX_INPUT_BYTES: int('Largest run input (its JSON, in UTF-8 bytes) accepted on every transport (WebSocket, POST /v1/runs, AG-UI): beyond it the run is refused with AGW_ERR_RUN_INPUT_TOO_LARGE (HTTP 413, BAD_MESSAGE on the WebSocket).', 65536, 256, 16 * 1024 * 1024),
  MAX_CONCURRENT_RUNS: int('Runs one user may have in flight at once (TOO_MANY_RUNS beyond).', 4, 1, 10_000),
  MAX_CONNECTIONS_PER_USER: int('Open WebSocket connections per user (HTTP 429 beyond).', 16, 1, 100_000),
  MAX_SUBSCRIPTIONS_PER_CONNECTION: int('Runs one connection may follow at once.', 64, 1, 10_000),
  MESSAGE_RATE_PER_SEC: int('Client messages per second a connection may send on average.', 20, 1, 100_000),
  MESSAGE_RATE_BURST: int('Client messages a connection may send in a burst. Beyond it: RATE_LIMITED, then close 4429 if it goes on.', 40, 1, 100_000),
  SEND_BUFFER_BYTES: int('Bytes queued for one socket before live delivery to it pauses and it catches up from the log.', 256 * 1024, 16 * 1024, 64 * 1024 * 1024),
  HEARTBEAT_MS: int('Interval of the server ping; a connection that misses a whole interval is closed with 4408.', 30_000, 50, 3_600_000),
  RUN_TIMEOUT_MS: int('Deadline of a run; past it the run fails with TIMEOUT.', 300_000, 10, 86_400_000),
  TOOL_TIMEOUT_MS: int('Default deadline of a tool call (a tool may set its own).', 30_000, 10, 86_400_000),
  TOOL_PROGRESS_INTERVAL_MS: int('Least time between two `tool_progress` events of one tool call: faster reports are thinned to the latest. 0 passes every report on.', 100, 0, 60_000),
  MCP_CONFIG: Type.Optional(Type.String({ minLength: 1, description: 'Path of a JSON file `{ "mcpServers": { "<name>": { "command": …, "args": […] } | { "url": … } } }`: MCP servers whose tools agents may call as `<name>__<tool>` (see docs/integrations.md#mcp-servers).' })),
  MCP_RESULT_MAX_BYTES: int('Largest result of an MCP tool call, as JSON: text beyond it is cut and the result marked `truncated`.', 65_536, 1024, 16 * 1024 * 1024),
  MEMORY_STORE_MAX_BYTES: int('With EVENT_STORE=memory: bytes of run history kept in all. Past it the oldest finished runs are evicted early (the user over their own budget first); their owners get HISTORY_EXPIRED.', 256 * 1024 * 1024, 1024 * 1024, Number.MAX_SAFE_INTEGER),
  MEMORY_STORE_MAX_BYTES_PER_USER: int('With EVENT_STORE=memory: bytes of run history one user\'s runs may keep. Past it that user\'s oldest finished runs are evicted early.', 32 * 1024 * 1024, 64 * 1024, Number.MAX_SAFE_INTEGER),
  RUN_HISTORY_TTL_MS: int('How long a finished run\'s events stay available to `subscribe`.', 3_600_000, 0, 30 * 86_400_000),
  DISCONNECT_GRACE_MS: int('How long a run started with cancelOnDisconnect may go unwatched before it is cancelled.', 30_000, 0, 3_600_000),
  SHUTDOWN_GRACE_MS: int('On shutdown, how long running runs may take to finish before they are ended with SHUTDOWN.', 10_000, 0, 3_600_000),
  METRICS_TOKEN: Type.Optional(Type.String({ description: 'When set, GET /metrics requires "Authorization: Bearer <this token>" (at least 16 characters). Unset: /metrics is open (keep it off the public network).', writeOnly: true, minLength: 16 })),
  AG_UI_AGENTS: Type.Optional(Type.String({
    description: 'Remote AG-UI agents to register next to the built-in ones, as JSON: `{ "<name>": { "url": "https://…", "headers": { … }, "timeoutMs": 60000 } }` (see docs/integrations.md#remote-ag-ui-agents). Its headers are secrets: never shown.',
    writeOnly: true
  })),
  LLM_BASE_URL: Type.Optional(Type.String({ description: 'Base URL of an OpenAI-compatible API (OpenAI, vLLM, Ollama, LM Studio, e.g. http://localhost:11434/v1). With LLM_MODEL, registers the `llm` agent; setting only one of the two refuses start-up.', pattern: '^https?://.+' })),
  LLM_API_KEY: secret('API key sent to LLM_BASE_URL (any non-empty value for servers that need none).'),
  LLM_MODEL: Type.Optional(Type.String({ description: 'Model name for the `llm` agent (e.g. gpt-4o-mini, llama3.1); needs LLM_BASE_URL.', minLength: 1 })),
  LLM_MAX_STEPS: int('Most model calls (each may call tools) the `llm` agent makes in one run before it stops with STEP_LIMIT.', 8, 1, 100),
  DEMO_STEP_DELAY_MS: int('Pause between the demo agent\'s steps, so a person can watch them. 0 in tests.', 250, 0, 60_000)
}, { additionalProperties: false })

/** One remote AG-UI agent of AG_UI_AGENTS: the options of `createAgUiAgent`. */
export interface AgUiAgentConfig {
  readonly url: string
  readonly headers?: Readonly<Record<string, string>>
  readonly timeoutMs?: number
}

type RawConfig = Static<typeof ConfigSchema>
export type Config = Readonly<Omit<RawConfig, 'ALLOWED_ORIGINS' | 'JWT_AUDIENCE' | 'AG_UI_AGENTS'> & {
  ALLOWED_ORIGINS: readonly string[]
  JWT_AUDIENCE: readonly string[]
  /** Remote AG-UI agents by name (empty when AG_UI_AGENTS is unset). */
  AG_UI_AGENTS: Readonly<Record<string, AgUiAgentConfig>>
} & Record<`JWT_SECRET_${Uppercase<AppEnv>}` | `JWT_PREVIOUS_SECRET_${Uppercase<AppEnv>}`, string | undefined>>

/** Where configuration values come from: `process.env` unless a caller (a test, an embedding app) says otherwise. */
export type EnvSource = Readonly<Record<string, string | undefined>>

const list = (value: string | undefined): string[] =>
  (value ?? '').split(',').map((item) => item.trim()).filter((item) => item !== '')

/**
 * Reads, validates and freezes the configuration. Throws AGW_ERR_CONFIG_INVALID naming every bad
 * variable (never its value: some are secrets).
 */
export function loadConfig (source: EnvSource = process.env): Config {
  // Only the variables the schema knows are read; the rest of the environment is ignored.
  const data: Record<string, string> = {}
  for (const key of Object.keys(ConfigSchema.properties)) {
    const value = source[key]
    if (value !== undefined && value !== '') data[key] = value
  }
  let raw: RawConfig
  try {
    raw = envSchema<RawConfig>({ schema: ConfigSchema as TSchema, data, dotenv: false })
  } catch (err) {
    throw new ConfigInvalidError(describeEnvErrors(err))
  }
  return Object.freeze({
    ...raw,
    AG_UI_AGENTS: parseAgUiAgents(raw.AG_UI_AGENTS),
    ALLOWED_ORIGINS: Object.freeze(list(raw.ALLOWED_ORIGINS)),
    JWT_AUDIENCE: Object.freeze(list(raw.JWT_AUDIENCE))
  }) as Config
}

const AGENT_NAME = /^[A-Za-z0-9_.-]{1,64}$/
const AG_UI_AGENT_KEYS = new Set(['url', 'headers', 'timeoutMs'])

/** What AG_UI_AGENTS may hold; the values are checked where the agents are made (src/app.ts). */
function agUiEntryProblem (entry: unknown): string | undefined {
  if (!isObject(entry)) return 'must be an object { url, headers?, timeoutMs? }'
  const unknown = Object.keys(entry).find((key) => !AG_UI_AGENT_KEYS.has(key))
  return unknown === undefined ? undefined : `has an unknown field "${unknown.slice(0, 64)}" (allowed: url, headers, timeoutMs)`
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** AG_UI_AGENTS, parsed, its names and fields checked: throws AGW_ERR_CONFIG_INVALID naming the agent and the problem. */
export function parseAgUiAgents (text: string | undefined): Readonly<Record<string, AgUiAgentConfig>> {
  if (text === undefined) return Object.freeze({})
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new ConfigInvalidError('AG_UI_AGENTS is not valid JSON')
  }
  if (!isObject(parsed)) throw new ConfigInvalidError('AG_UI_AGENTS must be a JSON object { "<name>": { "url": … } }')
  for (const [name, entry] of Object.entries(parsed)) {
    if (!AGENT_NAME.test(name)) throw new ConfigInvalidError(`AG_UI_AGENTS: the agent name "${name.slice(0, 64)}" must be 1-64 letters, digits, "_", "." or "-"`)
    const problem = agUiEntryProblem(entry)
    if (problem !== undefined) throw new ConfigInvalidError(`AG_UI_AGENTS: agent "${name}": ${problem}`)
  }
  return Object.freeze(parsed as Record<string, AgUiAgentConfig>)
}

interface AjvError { instancePath: string, message?: string, keyword: string, params: Record<string, unknown> }

function describeEnvErrors (err: unknown): string {
  const errors = (err as { errors?: AjvError[] }).errors
  /* c8 ignore next -- env-schema always attaches ajv errors; this guards a future change */
  if (!Array.isArray(errors)) return (err as Error).message
  const problems = new Map<string, string>()
  for (const error of errors) {
    const variable = error.instancePath.slice(1)
    if (problems.has(variable)) continue
    const allowed = Array.isArray(error.params.allowedValues) ? ` (${error.params.allowedValues.join(', ')})` : ''
    problems.set(variable, `${variable} ${error.message ?? 'is invalid'}${allowed}`)
  }
  return [...problems.values()].join('; ')
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export interface ConfigPluginOptions {
  /** An already-loaded configuration (what server.ts passes). */
  config?: Config
  /** Variables to load the configuration from instead of process.env. */
  env?: EnvSource
}

/** Decorates `fastify.config`; every other plugin depends on it. */
export const configPlugin = fp<ConfigPluginOptions>(async function configPlugin (fastify, opts) {
  fastify.decorate('config', opts.config ?? loadConfig(opts.env))
}, { name: 'config', fastify: '5.x' })

/** Fastify's `trustProxy` option from TRUST_PROXY. */
export function trustProxyOption (config: Pick<Config, 'TRUST_PROXY'>): boolean | string[] {
  const value = config.TRUST_PROXY.trim()
  if (value === '' || value === 'false') return false
  if (value === 'true') return true
  return list(value)
}

/** Names and schemas of every variable, for the generated configuration docs. */
export function configVariables (): Array<{ name: string, schema: TSchema & Record<string, unknown> }> {
  return Object.entries(ConfigSchema.properties).map(([name, schema]) => ({ name, schema: schema as unknown as TSchema & Record<string, unknown> }))
}
