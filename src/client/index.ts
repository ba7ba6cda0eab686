// agent-gateway/client: a typed client for the agent-events.v1 protocol, for browsers and Node.
// Only types come from src/protocol.ts, so a browser bundle carries no TypeBox (see wire.ts).
export { createClient } from './client.js'
export type {
  ClientOptions, ConnectionState, GatewayClient, RunOptions, StateChange, TokenSource, WebSocketConstructor, WebSocketLike
} from './options.js'
export { GatewayError } from './run.js'
export type { ClientErrorCode, GatewayErrorCode, Run, TerminalEvent } from './run.js'
export type {
  RunEvent, RunEventOf, RunEventType, RunInput, ToolStatus, TerminalStatus, WireErrorCode
} from '../protocol.js'
