// The wire contract `agent-events.v1` in code. Every message shape lives here once: the TS types,
// the runtime validators and the published JSON Schema (docs/protocol.schema.json) all derive
// from these TypeBox schemas. See docs/protocol.md.
import { Type, type Static, type TSchema } from 'typebox'
import { Compile, type Validator } from 'typebox/compile'

export const PROTOCOL = 'agent-events.v1'
/** Subprotocol entry prefix that carries a JWT from browsers, which cannot set headers. */
export const BEARER_PROTOCOL_PREFIX = 'bearer.'

// ---------------------------------------------------------------------------------------------
// Shared pieces

const RequestId = Type.String({ maxLength: 64, description: 'Chosen by the client; echoed on the reply.' })
export const RunId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:-]+$' })
export const ThreadId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:-]+$' })
export const AgentName = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' })
const Timestamp = Type.String({ format: 'date-time', description: 'ISO 8601, UTC.' })
const Seq = Type.Integer({ minimum: 1 })

export const RunInput = Type.Object(
  { message: Type.String({ description: 'What the user asked.' }) },
  { additionalProperties: true, description: 'The run input: `message` plus any agent-specific fields.' }
)
/** The run input: `message` plus any agent-specific fields. */
export type RunInput = Static<typeof RunInput> & { readonly [field: string]: unknown }

export const ErrorInfo = Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false })
export type ErrorInfo = Static<typeof ErrorInfo>

// ---------------------------------------------------------------------------------------------
// Client → server

export const RunMessage = Type.Object({
  type: Type.Literal('run'),
  id: Type.Optional(RequestId),
  agent: Type.Optional(AgentName),
  threadId: Type.Optional(ThreadId),
  input: RunInput,
  cancelOnDisconnect: Type.Optional(Type.Boolean({
    description: 'Cancel the run when no connection of its user has followed it for DISCONNECT_GRACE_MS. Default false: runs outlive their clients.'
  }))
}, { additionalProperties: false })

/**
 * What starting a run takes, without the message envelope: `{ agent?, threadId?, input }`.
 * Strict like the message (Omit does not carry the object's options over on its own).
 */
export const RunRequest = Type.Omit(RunMessage, ['type', 'id'], { additionalProperties: false })
export type RunRequest = Static<typeof RunRequest>

export const CancelMessage = Type.Object({
  type: Type.Literal('cancel'),
  id: Type.Optional(RequestId),
  runId: RunId
}, { additionalProperties: false })

export const SubscribeMessage = Type.Object({
  type: Type.Literal('subscribe'),
  id: Type.Optional(RequestId),
  runId: RunId,
  after: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Last seq seen; 0 or omitted replays from the start.' }))
}, { additionalProperties: false })

export const UnsubscribeMessage = Type.Object({
  type: Type.Literal('unsubscribe'),
  id: Type.Optional(RequestId),
  runId: RunId
}, { additionalProperties: false })

export const AuthMessage = Type.Object({
  type: Type.Literal('auth'),
  id: Type.Optional(RequestId),
  token: Type.String({ minLength: 1, maxLength: 8192 })
}, { additionalProperties: false })

export const PingMessage = Type.Object({
  type: Type.Literal('ping'),
  id: Type.Optional(RequestId)
}, { additionalProperties: false })

const clientSchemas = {
  run: RunMessage,
  cancel: CancelMessage,
  subscribe: SubscribeMessage,
  unsubscribe: UnsubscribeMessage,
  auth: AuthMessage,
  ping: PingMessage
} as const

export const ClientMessage = Type.Union([RunMessage, CancelMessage, SubscribeMessage, UnsubscribeMessage, AuthMessage, PingMessage])
export type ClientMessage = Static<typeof ClientMessage>
export type ClientMessageType = keyof typeof clientSchemas
export type ClientMessageOf<T extends ClientMessageType> = Static<(typeof clientSchemas)[T]>

// ---------------------------------------------------------------------------------------------
// Server → client: run events

export const TOOL_STATUSES = ['success', 'error', 'timeout', 'cancelled'] as const
export const RUN_STATUSES = ['completed', 'failed', 'cancelled'] as const
export type ToolStatus = (typeof TOOL_STATUSES)[number]
export type TerminalStatus = (typeof RUN_STATUSES)[number]

const runEventData = {
  agent_started: Type.Object({ agent: Type.String(), input: RunInput }),
  agent_thinking: Type.Object({ thought: Type.String(), step: Type.Optional(Type.Integer({ minimum: 1 })) }),
  tool_executing: Type.Object({ toolCallId: Type.String(), tool: Type.String(), args: Type.Unknown() }),
  // Added to agent-events.v1 after the first release: clients ignore event types they do not know.
  tool_progress: Type.Object({
    toolCallId: Type.String(),
    progress: Type.Number({ description: 'Grows with every event of the call.' }),
    total: Type.Optional(Type.Number({ description: 'The value `progress` reaches when the work is done, when the tool knows it.' })),
    message: Type.Optional(Type.String({ maxLength: 500 }))
  }, { description: 'Progress of an open tool call: between its tool_executing and its tool_completed.' }),
  tool_completed: Type.Object({
    toolCallId: Type.String(),
    tool: Type.String(),
    status: Type.Enum([...TOOL_STATUSES]),
    result: Type.Optional(Type.Unknown()),
    error: Type.Optional(ErrorInfo),
    durationMs: Type.Number({ minimum: 0 })
  }),
  agent_message: Type.Object({ messageId: Type.String(), delta: Type.String() }),
  agent_completed: Type.Object({
    status: Type.Enum([...RUN_STATUSES]),
    output: Type.Optional(Type.Unknown()),
    error: Type.Optional(ErrorInfo),
    durationMs: Type.Number({ minimum: 0 })
  })
} as const

export type RunEventType = keyof typeof runEventData
export type RunEventData<T extends RunEventType> = Static<(typeof runEventData)[T]>
export const RUN_EVENT_TYPES = Object.keys(runEventData) as RunEventType[]
/** The five events a user must see to know the agent is alive. */
export const CRITICAL_EVENT_TYPES = ['agent_started', 'agent_thinking', 'tool_executing', 'tool_completed', 'agent_completed'] as const
export const TERMINAL_EVENT_TYPE = 'agent_completed'

function runEventSchema<T extends RunEventType> (type: T) {
  return Type.Object({
    type: Type.Literal(type),
    runId: RunId,
    threadId: ThreadId,
    seq: Seq,
    ts: Timestamp,
    data: runEventData[type]
  })
}

const runEventSchemas = {
  agent_started: runEventSchema('agent_started'),
  agent_thinking: runEventSchema('agent_thinking'),
  tool_executing: runEventSchema('tool_executing'),
  tool_progress: runEventSchema('tool_progress'),
  tool_completed: runEventSchema('tool_completed'),
  agent_message: runEventSchema('agent_message'),
  agent_completed: runEventSchema('agent_completed')
} as const

const runEventList = [
  runEventSchemas.agent_started, runEventSchemas.agent_thinking, runEventSchemas.tool_executing,
  runEventSchemas.tool_progress, runEventSchemas.tool_completed, runEventSchemas.agent_message, runEventSchemas.agent_completed
] as const
export const RunEvent = Type.Union([...runEventList])
/** The discriminated union of every run event, as it travels on the wire. */
export type RunEvent = Static<typeof RunEvent>
export type RunEventOf<T extends RunEventType> = Extract<RunEvent, { type: T }>

// ---------------------------------------------------------------------------------------------
// Server → client: replies and control messages

export const WIRE_ERROR_CODES = [
  'BAD_MESSAGE', 'UNKNOWN_AGENT', 'NOT_FOUND', 'RUN_ENDED', 'HISTORY_EXPIRED', 'TOO_MANY_RUNS', 'RATE_LIMITED', 'INTERNAL'
] as const
export type WireErrorCode = (typeof WIRE_ERROR_CODES)[number]

const serverSchemas = {
  welcome: Type.Object({
    type: Type.Literal('welcome'),
    protocol: Type.Literal(PROTOCOL),
    connectionId: Type.String(),
    userId: Type.String(),
    heartbeatMs: Type.Integer(),
    limits: Type.Object({
      maxMessageBytes: Type.Integer(),
      maxConcurrentRuns: Type.Integer(),
      messagesPerSecond: Type.Integer({ description: 'Client messages per second a connection may send on average.' }),
      messageBurst: Type.Integer({ description: 'Client messages a connection may send in a burst.' })
    })
  }),
  run_accepted: Type.Object({
    type: Type.Literal('run_accepted'),
    id: Type.Optional(RequestId),
    runId: RunId,
    threadId: ThreadId,
    agent: Type.String()
  }),
  subscribed: Type.Object({
    type: Type.Literal('subscribed'),
    id: Type.Optional(RequestId),
    runId: RunId,
    recovered: Type.Literal(true),
    fromSeq: Seq
  }),
  unsubscribed: Type.Object({ type: Type.Literal('unsubscribed'), id: Type.Optional(RequestId), runId: RunId }),
  auth_ok: Type.Object({ type: Type.Literal('auth_ok'), id: Type.Optional(RequestId), expiresAt: Type.Optional(Timestamp) }),
  pong: Type.Object({ type: Type.Literal('pong'), id: Type.Optional(RequestId) }),
  error: Type.Object({
    type: Type.Literal('error'),
    id: Type.Optional(RequestId),
    code: Type.Enum([...WIRE_ERROR_CODES]),
    message: Type.String()
  })
} as const

export type ReplyType = keyof typeof serverSchemas
export type Reply = Static<(typeof serverSchemas)[ReplyType]>
export type ReplyOf<T extends ReplyType> = Static<(typeof serverSchemas)[T]>

export const ServerMessage = Type.Union([
  serverSchemas.welcome, serverSchemas.run_accepted, serverSchemas.subscribed, serverSchemas.unsubscribed,
  serverSchemas.auth_ok, serverSchemas.pong, serverSchemas.error, ...runEventList
])
export type ServerMessage = Static<typeof ServerMessage>

// ---------------------------------------------------------------------------------------------
// HTTP (section 4 of the contract)

export const RunParams = Type.Object({ runId: RunId })
export const RunAccepted = Type.Object({ runId: RunId, threadId: ThreadId, agent: Type.String() })
export type RunAccepted = Static<typeof RunAccepted>
export const RunSummary = Type.Object({
  runId: RunId,
  threadId: ThreadId,
  agent: Type.String(),
  status: Type.Enum(['running', ...RUN_STATUSES]),
  lastSeq: Type.Integer({ minimum: 0 }),
  createdAt: Timestamp
})
export type RunSummary = Static<typeof RunSummary>
export const EventsQuery = Type.Object({
  after: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Last seq seen (Last-Event-ID wins when both are given).' }))
})
// The AI SDK chat endpoint (docs/integrations.md#ai-sdk): what `DefaultChatTransport` POSTs.
// Only what the gateway reads is checked; other fields (the transport's `body` option, a
// message's metadata) pass through unread.
const ChatMessagePart = Type.Object({ type: Type.String({ minLength: 1, maxLength: 128 }) }, { additionalProperties: true })
export const ChatMessage = Type.Object({
  id: Type.String({ maxLength: 256 }),
  role: Type.Enum(['system', 'user', 'assistant']),
  parts: Type.Array(ChatMessagePart, { maxItems: 1000 })
}, { additionalProperties: true, description: 'A UIMessage of the AI SDK; the text parts of user and assistant messages are read.' })
export const ChatRequest = Type.Object({
  id: ThreadId,
  messages: Type.Array(ChatMessage, { minItems: 1, maxItems: 1000, description: 'The conversation; the last user message is what the agent answers.' }),
  trigger: Type.Optional(Type.Enum(['submit-message', 'regenerate-message'])),
  messageId: Type.Optional(Type.String({ maxLength: 256 })),
  agent: Type.Optional(AgentName)
}, { additionalProperties: true })
export type ChatRequest = Static<typeof ChatRequest>
export const ChatParams = Type.Object({ chatId: ThreadId })
export const ChatCancelled = Type.Object({ chatId: ThreadId, runId: RunId })

/** The body of every HTTP error. */
export const HttpError = Type.Object({ code: Type.String(), message: Type.String() })

/** WebSocket close codes of the protocol. */
export const CloseCode = {
  GOING_AWAY: 1001,
  TOO_BIG: 1009,
  UNAUTHORIZED: 4401,
  HEARTBEAT_TIMEOUT: 4408,
  RATE_LIMITED: 4429
} as const

// ---------------------------------------------------------------------------------------------
// Validation and encoding

// Compiled once: Fastify does not validate WebSocket frames, so every frame goes through these.
const clientValidators = Object.fromEntries(
  Object.entries(clientSchemas).map(([type, schema]) => [type, Compile(schema as TSchema)])
) as Record<ClientMessageType, Validator>

export type ParseResult =
  | { ok: true, message: ClientMessage }
  | { ok: false, id?: string, reason: string }

/**
 * Parses one text frame into a client message, or says precisely why it is not one.
 * Never throws.
 */
export function parseClientMessage (text: string): ParseResult {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { ok: false, reason: 'frame is not valid JSON' }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'a message must be a JSON object' }
  }
  const record = value as Record<string, unknown>
  const id = typeof record.id === 'string' && record.id.length <= 64 ? record.id : undefined
  const type = record.type
  if (typeof type !== 'string' || !Object.hasOwn(clientSchemas, type)) {
    const known = Object.keys(clientSchemas).join(', ')
    const reason = typeof type === 'string'
      ? `unknown message type ${JSON.stringify(type.slice(0, 64))} (expected one of ${known})`
      : `a message needs a string "type" (one of ${known})`
    return { ok: false, id, reason }
  }
  const validator = clientValidators[type as ClientMessageType]
  if (validator.Check(value)) return { ok: true, message: value as ClientMessage }
  return { ok: false, id, reason: `invalid ${type} message: ${describeErrors(validator, value)}` }
}

function describeErrors (validator: Validator, value: unknown): string {
  const details: string[] = []
  for (const error of validator.Errors(value)) {
    // TypeBox reports an additional property twice (as `false` schema and as the keyword); keep one.
    if (error.keyword === 'boolean') continue
    const where = error.instancePath === '' ? 'message' : error.instancePath.slice(1).replaceAll('/', '.')
    const params = error.params as Record<string, unknown>
    const extra = Array.isArray(params.additionalProperties) ? ` (${params.additionalProperties.join(', ')})` : ''
    details.push(`${where} ${error.message}${extra}`)
    if (details.length === 3) break
  }
  return details.join('; ')
}

let stampedMs = Number.NaN
let stamped = ''

/** The `ts` of an event appended at `ms`: formatted once per millisecond, which many events share under load. */
export function eventTimestamp (ms: number): string {
  if (ms !== stampedMs) {
    stampedMs = ms
    stamped = new Date(ms).toISOString()
  }
  return stamped
}

/** The constant head of every frame of one run, computed once per run. */
export function runFrameHead (runId: string, threadId: string): string {
  return `,"runId":${JSON.stringify(runId)},"threadId":${JSON.stringify(threadId)},"seq":`
}

/** What every frame of a type starts with; then come the run's head and the seq. */
export function framePrefix (type: RunEventType): string {
  return `{"type":"${type}"`
}

/** What follows the seq in a frame: its `ts`, and the key of the data that ends the frame. */
export function frameStamp (ts: string): string {
  return `,"ts":"${ts}","data":`
}

/**
 * Builds the wire frame of a run event from its already-serialised `data`, so an event is
 * serialised exactly once however many sockets it reaches. Field order matches the envelope:
 * framePrefix, runFrameHead, seq, frameStamp, data, `}` (src/stores/frame-bytes.ts writes the
 * same parts as bytes).
 */
export function encodeRunEvent (head: string, type: RunEventType, seq: number, ts: string, dataJson: string): string {
  return `${framePrefix(type)}${head}${seq}${frameStamp(ts)}${dataJson}}`
}

/** The JSON Schema document of the whole protocol, as published in docs/protocol.schema.json. */
export function protocolJsonSchema (): Record<string, unknown> {
  const defs: Record<string, unknown> = {}
  for (const [type, schema] of Object.entries(clientSchemas)) defs[`client.${type}`] = schema
  for (const [type, schema] of Object.entries(runEventSchemas)) defs[`event.${type}`] = schema
  for (const [type, schema] of Object.entries(serverSchemas)) defs[`server.${type}`] = schema
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: `urn:agent-gateway:${PROTOCOL}`,
    title: `${PROTOCOL} wire protocol`,
    description: 'Generated from src/protocol.ts by `npm run docs`. Do not edit by hand.',
    $defs: defs
  }
}
