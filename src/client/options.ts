// What a client application sees of agent-gateway/client: its options, its connection states and
// the GatewayClient interface that createClient() returns (client.ts implements it).
import type { ReplyOf, RunInput, RunRequest } from '../protocol.js'
import type { GatewayError, Run } from './run.js'

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed'

export interface StateChange {
  readonly state: ConnectionState
  /** `reconnecting`: the number of this retry (1, 2, …) and how long it waits before it. */
  readonly attempt?: number
  readonly delayMs?: number
  /** `reconnecting` / `closed`: the close code and reason of the connection that ended. */
  readonly closeCode?: number
  readonly reason?: string
  /** `closed`: why the client stopped. */
  readonly error?: GatewayError
}

/** A JWT, or a function that returns a fresh one; the function is called for every connection and before `exp`. */
export type TokenSource = string | (() => string | Promise<string>)

/** The part of a WebSocket the client uses: the browser's and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
  addEventListener(type: 'open', listener: () => void): void
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void
  addEventListener(type: 'close', listener: (event: { code: number, reason: string }) => void): void
  addEventListener(type: 'error', listener: (event: unknown) => void): void
}
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike

export interface ClientOptions {
  /** The gateway's WebSocket URL, e.g. `wss://gateway.example/ws`. */
  url: string | URL
  token: TokenSource
  /** The WebSocket class: `ws`'s default export in Node; the global one when omitted. */
  WebSocket?: WebSocketConstructor
  reconnect?: {
    /** First retry delay (default 250 ms); it doubles per failed attempt up to `maxDelayMs` (default 15 s). */
    initialDelayMs?: number
    maxDelayMs?: number
    /** Share of each delay that is random (0…1, default 0.5), so clients do not retry in lockstep. */
    jitter?: number
  }
  /** Refresh a function token this long before its `exp` (default 60 s, at most half its remaining life). */
  refreshBeforeExpiryMs?: number
  /** Check the connection this often (default: the server's `heartbeatMs`, at least 5 s); silent for a whole interval means dead. */
  pingIntervalMs?: number
  /** Pacing of outgoing messages, below the server's rate limit (default 10 per second, bursts of 20). */
  rate?: { perSecond?: number, burst?: number }
}

/** `{ agent?, threadId? }` of the protocol's run request. */
export type RunOptions = Omit<RunRequest, 'input'>

export interface GatewayClient {
  readonly state: ConnectionState
  /** The server's last `welcome` (user id, heartbeat, limits); undefined before the first. */
  readonly welcome: ReplyOf<'welcome'> | undefined
  /** Starts a run (queued until connected); rejects with a GatewayError (`TOO_MANY_RUNS`, `UNKNOWN_AGENT`, …). */
  run(input: string | RunInput, options?: RunOptions): Promise<Run>
  /** Follows an existing run from `after` (default 0: from its start); rejects with `NOT_FOUND` / `HISTORY_EXPIRED`. */
  subscribe(runId: string, options?: { after?: number }): Promise<Run>
  /** Calls `listener` on every state change; returns the function that removes it. */
  onStateChange(listener: (change: StateChange) => void): () => void
  /** Closes the connection for good; runs still followed end with `CLOSED`. */
  close(): void
}
