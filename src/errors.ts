// The error catalogue: every error the gateway raises, one prefix (AGW_ERR_<AREA>_<PROBLEM>),
// explicit status codes. docs/errors.md lists them; a test keeps the two in step.
import createError from '@fastify/error'
import type { WireErrorCode } from './protocol.js'

// --- start-up and registration -------------------------------------------------------------
export const ConfigInvalidError = createError<'AGW_ERR_CONFIG_INVALID', 500, [string]>(
  'AGW_ERR_CONFIG_INVALID', 'Invalid configuration: %s', 500)
export const SecretInvalidError = createError<'AGW_ERR_SECRET_INVALID', 500, [string]>(
  'AGW_ERR_SECRET_INVALID', 'Refusing to start, the JWT secret configuration is unsafe: %s', 500)
export const ToolInvalidError = createError<'AGW_ERR_TOOL_INVALID', 500, [string]>(
  'AGW_ERR_TOOL_INVALID', 'Invalid tool definition: %s', 500)
export const ToolDuplicateError = createError<'AGW_ERR_TOOL_DUPLICATE', 500, [string]>(
  'AGW_ERR_TOOL_DUPLICATE', 'A tool named "%s" is already registered', 500)
export const ToolRegistryClosedError = createError<'AGW_ERR_TOOL_REGISTRY_CLOSED', 500, [string]>(
  'AGW_ERR_TOOL_REGISTRY_CLOSED', 'Cannot add tool "%s": tools can only be added before the server is ready', 500)
export const DispatcherPrivateError = createError<'AGW_ERR_TOOL_DISPATCHER_PRIVATE', 500, []>(
  'AGW_ERR_TOOL_DISPATCHER_PRIVATE', 'A ToolDispatcher can only be made by fastify.createToolDispatcher()', 500)
export const AgentInvalidError = createError<'AGW_ERR_AGENT_INVALID', 500, [string]>(
  'AGW_ERR_AGENT_INVALID', 'Invalid agent configuration: %s', 500)
export const AgentDuplicateError = createError<'AGW_ERR_AGENT_DUPLICATE', 500, [string]>(
  'AGW_ERR_AGENT_DUPLICATE', 'An agent named "%s" is already registered', 500)
export const AgentRegistryClosedError = createError<'AGW_ERR_AGENT_REGISTRY_CLOSED', 500, [string]>(
  'AGW_ERR_AGENT_REGISTRY_CLOSED', 'Cannot add agent "%s": agents can only be added before the server is ready', 500)
export const UserContextMissingError = createError<'AGW_ERR_USER_CONTEXT_MISSING', 500, [string]>(
  'AGW_ERR_USER_CONTEXT_MISSING', 'The route %s reads the user without authenticating the request first (onRequest: fastify.requireUser)', 500)
export const MetricsDisabledError = createError<'AGW_ERR_METRICS_DISABLED', 500, []>(
  'AGW_ERR_METRICS_DISABLED', 'GET /metrics needs the telemetry plugin registered with { prometheus: true }', 500)
export const McpConfigInvalidError = createError<'AGW_ERR_MCP_CONFIG_INVALID', 500, [string]>(
  'AGW_ERR_MCP_CONFIG_INVALID', 'Invalid MCP server configuration: %s', 500)
export const McpToolNameError = createError<'AGW_ERR_MCP_TOOL_NAME', 500, [string]>(
  'AGW_ERR_MCP_TOOL_NAME', 'Unusable MCP tool names (rename the server or leave the tool out with "exclude"): %s', 500)
export const WebSocketPresentError = createError<'AGW_ERR_WEBSOCKET_PRESENT', 500, []>(
  'AGW_ERR_WEBSOCKET_PRESENT',
  '@fastify/websocket is already registered on this instance; agent-gateway registers and configures it itself', 500)

// --- authentication (answered before any WebSocket upgrade) --------------------------------
export const NoTokenError = createError<'AGW_ERR_AUTH_NO_TOKEN', 401, []>(
  'AGW_ERR_AUTH_NO_TOKEN',
  'No token: send "Authorization: Bearer <jwt>" or the WebSocket subprotocol "bearer.<jwt>"', 401)
export const QueryTokenError = createError<'AGW_ERR_AUTH_QUERY_TOKEN', 401, []>(
  'AGW_ERR_AUTH_QUERY_TOKEN',
  'Tokens in the query string are refused (URLs end up in logs); send the Authorization header or the bearer.<jwt> subprotocol', 401)
export const TokenMalformedError = createError<'AGW_ERR_AUTH_TOKEN_MALFORMED', 401, []>(
  'AGW_ERR_AUTH_TOKEN_MALFORMED', 'The token is not a well-formed JWT', 401)
export const TokenAlgorithmError = createError<'AGW_ERR_AUTH_TOKEN_ALGORITHM', 401, []>(
  'AGW_ERR_AUTH_TOKEN_ALGORITHM', 'The token is not signed with HS256, the only accepted algorithm', 401)
export const TokenSignatureError = createError<'AGW_ERR_AUTH_TOKEN_SIGNATURE', 401, []>(
  'AGW_ERR_AUTH_TOKEN_SIGNATURE', 'The token signature does not verify', 401)
export const TokenExpiredError = createError<'AGW_ERR_AUTH_TOKEN_EXPIRED', 401, []>(
  'AGW_ERR_AUTH_TOKEN_EXPIRED', 'The token has expired', 401)
export const TokenInactiveError = createError<'AGW_ERR_AUTH_TOKEN_INACTIVE', 401, []>(
  'AGW_ERR_AUTH_TOKEN_INACTIVE', 'The token is not valid yet (nbf is in the future)', 401)
export const TokenClaimError = createError<'AGW_ERR_AUTH_TOKEN_CLAIM', 401, [string]>(
  'AGW_ERR_AUTH_TOKEN_CLAIM', 'The token claims are not acceptable: %s', 401)
export const TokenInvalidError = createError<'AGW_ERR_AUTH_TOKEN_INVALID', 401, []>(
  'AGW_ERR_AUTH_TOKEN_INVALID', 'The token is invalid', 401)
export const OtherUserTokenError = createError<'AGW_ERR_AUTH_OTHER_USER', 401, []>(
  'AGW_ERR_AUTH_OTHER_USER', 'The auth token is for another user', 401)
export const SubjectInvalidError = createError<'AGW_ERR_AUTH_SUBJECT_INVALID', 401, [string]>(
  'AGW_ERR_AUTH_SUBJECT_INVALID', 'The token has no usable "sub" claim: %s', 401)

export const MetricsUnauthorizedError = createError<'AGW_ERR_METRICS_UNAUTHORIZED', 401, []>(
  'AGW_ERR_METRICS_UNAUTHORIZED', 'GET /metrics needs "Authorization: Bearer <METRICS_TOKEN>"', 401)

// --- connection admission -------------------------------------------------------------------
export const OriginForbiddenError = createError<'AGW_ERR_ORIGIN_FORBIDDEN', 403, []>(
  'AGW_ERR_ORIGIN_FORBIDDEN', 'This Origin is not allowed to connect', 403)
export const UpgradeRequiredError = createError<'AGW_ERR_UPGRADE_REQUIRED', 426, []>(
  'AGW_ERR_UPGRADE_REQUIRED', 'GET /ws is a WebSocket endpoint: open it with a WebSocket client (an Upgrade request)', 426)
export const ConnectionLimitError = createError<'AGW_ERR_CONNECTION_LIMIT', 429, [number]>(
  'AGW_ERR_CONNECTION_LIMIT', 'Too many open connections for this user (limit %s)', 429)

export const HttpRateLimitedError = createError<'AGW_ERR_RATE_LIMITED', 429, [string]>(
  'AGW_ERR_RATE_LIMITED', 'Too many requests from this address; retry in %s', 429)
export const BadRequestError = createError<'AGW_ERR_BAD_REQUEST', 400, [string]>(
  'AGW_ERR_BAD_REQUEST', 'Bad request: %s', 400)
export const UnsupportedMediaTypeError = createError<'AGW_ERR_UNSUPPORTED_MEDIA_TYPE', 415, []>(
  'AGW_ERR_UNSUPPORTED_MEDIA_TYPE', 'Send the request body as JSON, with content-type: application/json', 415)
export const BodyTooLargeError = createError<'AGW_ERR_BODY_TOO_LARGE', 413, []>(
  'AGW_ERR_BODY_TOO_LARGE', 'The request body is larger than the server accepts', 413)

// --- runs (these also travel as protocol `error` codes) --------------------------------------
export const UnknownAgentError = createError<'AGW_ERR_RUN_UNKNOWN_AGENT', 400, [string]>(
  'AGW_ERR_RUN_UNKNOWN_AGENT', 'No agent named "%s"', 400)
export const ValidationError = createError<'AGW_ERR_VALIDATION', 400, [string]>(
  'AGW_ERR_VALIDATION', 'Invalid request: %s', 400)
export const LastEventIdError = createError<'AGW_ERR_LAST_EVENT_ID', 400, []>(
  'AGW_ERR_LAST_EVENT_ID', 'Last-Event-ID must be the seq of the last event received (a whole number)', 400)
export const RunRequestInvalidError = createError<'AGW_ERR_RUN_REQUEST_INVALID', 400, [string]>(
  'AGW_ERR_RUN_REQUEST_INVALID', 'Invalid run request: %s', 400)
export const RunInputTooLargeError = createError<'AGW_ERR_RUN_INPUT_TOO_LARGE', 413, [number, number]>(
  'AGW_ERR_RUN_INPUT_TOO_LARGE', 'The run input is %s bytes as JSON; at most %s are accepted (MAX_INPUT_BYTES)', 413)
export const AgUiInputError = createError<'AGW_ERR_AG_UI_INPUT', 400, [string]>(
  'AGW_ERR_AG_UI_INPUT', 'Invalid AG-UI RunAgentInput: %s', 400)
export const ThreadBusyError = createError<'AGW_ERR_RUN_THREAD_BUSY', 409, [string, string]>(
  'AGW_ERR_RUN_THREAD_BUSY', 'Chat "%s" already has a run in progress (run "%s"): wait for it to finish, or cancel it', 409)
export const ChatInputError = createError<'AGW_ERR_CHAT_INPUT', 400, [string]>(
  'AGW_ERR_CHAT_INPUT', 'Invalid chat request: %s', 400)
export const ChatNotFoundError = createError<'AGW_ERR_CHAT_NOT_FOUND', 404, [string]>(
  'AGW_ERR_CHAT_NOT_FOUND', 'Chat "%s" not found', 404)
export const RunNotFoundError = createError<'AGW_ERR_RUN_NOT_FOUND', 404, [string]>(
  'AGW_ERR_RUN_NOT_FOUND', 'Run "%s" not found', 404)
export const RunEndedError = createError<'AGW_ERR_RUN_ENDED', 409, [string]>(
  'AGW_ERR_RUN_ENDED', 'Run "%s" has already ended', 409)
export const HistoryExpiredError = createError<'AGW_ERR_RUN_HISTORY_EXPIRED', 410, [string]>(
  'AGW_ERR_RUN_HISTORY_EXPIRED', 'The history of run "%s" has expired', 410)
export const TooManyRunsError = createError<'AGW_ERR_RUN_TOO_MANY', 429, [string]>(
  'AGW_ERR_RUN_TOO_MANY', 'Too many runs: %s', 429)
export const ShuttingDownError = createError<'AGW_ERR_SHUTTING_DOWN', 503, []>(
  'AGW_ERR_SHUTTING_DOWN', 'The server is shutting down; reconnect to another node', 503)
export const NotReadyError = createError<'AGW_ERR_NOT_READY', 503, [string]>(
  'AGW_ERR_NOT_READY', 'Not ready: %s', 503)

// --- run errors of remote AG-UI agents (the `code` of agent_completed / tool_completed errors) ---
/** Why a run of a remote AG-UI agent (src/agents/ag-ui-remote.ts) failed; docs/errors.md explains each. */
export const AgUiRunError = Object.freeze({
  /** The agent's URL could not be reached (connection refused, unknown host, TLS failure). */
  UNREACHABLE: 'AG_UI_UNREACHABLE',
  /** It answered with a status other than 2xx; the message has the status and an excerpt of the body. */
  HTTP_STATUS: 'AG_UI_HTTP_STATUS',
  /** It answered 2xx with something that is not an event stream (text/event-stream). */
  NOT_SSE: 'AG_UI_NOT_SSE',
  /** It sent something that is not an AG-UI event (not JSON, no type, fails the event's schema). */
  BAD_EVENT: 'AG_UI_BAD_EVENT',
  /** Nothing came for timeoutMs: no response headers, or no byte of the stream. */
  STALLED: 'AG_UI_STALLED',
  /** The stream broke off or ended before RUN_FINISHED or RUN_ERROR. */
  STREAM_ENDED: 'AG_UI_STREAM_ENDED',
  /** The agent sent RUN_ERROR; the message is its own. */
  RUN_ERROR: 'AG_UI_RUN_ERROR',
  /** The agent ended its run with outcome `cancelled`. */
  CANCELLED: 'AG_UI_CANCELLED',
  /** (tool_completed, status `cancelled`) a call of the agent's own that got no TOOL_CALL_RESULT before its run finished. */
  NO_RESULT: 'AG_UI_NO_RESULT'
} as const)

/** How a gateway error is named on the wire (`error.code` of the protocol). */
const wireCodes: Record<string, WireErrorCode> = {
  AGW_ERR_RUN_REQUEST_INVALID: 'BAD_MESSAGE',
  AGW_ERR_RUN_INPUT_TOO_LARGE: 'BAD_MESSAGE',
  AGW_ERR_RUN_UNKNOWN_AGENT: 'UNKNOWN_AGENT',
  AGW_ERR_RUN_NOT_FOUND: 'NOT_FOUND',
  AGW_ERR_RUN_ENDED: 'RUN_ENDED',
  AGW_ERR_RUN_HISTORY_EXPIRED: 'HISTORY_EXPIRED',
  AGW_ERR_RUN_TOO_MANY: 'TOO_MANY_RUNS'
}

/** The protocol error for any thrown value; anything unexpected becomes INTERNAL with no detail. */
export function toWireError (err: unknown): { code: WireErrorCode, message: string } {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && Object.hasOwn(wireCodes, code)) {
    return { code: wireCodes[code] as WireErrorCode, message: (err as Error).message }
  }
  if (code === 'AGW_ERR_SHUTTING_DOWN') return { code: 'INTERNAL', message: (err as Error).message }
  return { code: 'INTERNAL', message: 'Internal error' }
}

interface HttpErrorLike { statusCode?: number, code?: string, message: string, validation?: unknown }
interface ReplyLike { code(statusCode: number): ReplyLike, send(payload: unknown): unknown }
interface RequestLike { log: { error(obj: unknown, msg: string): void } }

/**
 * Error handler for the gateway's own routes: the status code plus `{ code, message }`, as the
 * protocol promises. Server errors are logged and never explained to the client.
 */
export function httpErrorHandler (error: HttpErrorLike, request: RequestLike, reply: ReplyLike): void {
  const statusCode = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500
  if (statusCode >= 500) {
    request.log.error({ err: error }, 'request failed')
    const known = typeof error.code === 'string' && error.code.startsWith('AGW_ERR_')
    reply.code(statusCode).send(known ? { code: error.code, message: error.message } : { code: 'AGW_ERR_INTERNAL', message: 'Internal error' })
    return
  }
  reply.code(statusCode).send(catalogued(error, statusCode))
}

/** A client error in the catalogue's words: Fastify's own (validation, body parsing) are translated. */
function catalogued (error: HttpErrorLike, statusCode: number): { code: string, message: string } {
  const reported: { code?: string, message: string } =
    error.validation !== undefined
      ? new ValidationError(error.message)
      : error.code?.startsWith('AGW_ERR_') === true
        ? error
        : statusCode === 415
          ? new UnsupportedMediaTypeError()
          : statusCode === 413 ? new BodyTooLargeError() : new BadRequestError(error.message)
  return { code: reported.code ?? 'AGW_ERR_BAD_REQUEST', message: reported.message }
}
