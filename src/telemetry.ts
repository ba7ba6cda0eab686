// What the gateway's plugins report about themselves, as one narrow interface. The metrics
// plugin implements it with Prometheus counters; without it every report is a no-op, so no
// plugin depends on metrics being registered. Reports on the event path are a field update.
import type { RunEventType, TerminalStatus, WireErrorCode } from './protocol.js'

export type SinkKind = 'websocket' | 'sse'

export interface Telemetry {
  connectionOpened(kind: SinkKind): void
  connectionClosed(kind: SinkKind): void
  /** A refused token or subject, by error code (AGW_ERR_AUTH_*). */
  authFailed(code: string): void
  runStarted(): void
  runEnded(status: TerminalStatus): void
  eventAppended(type: RunEventType): void
  /** A live event written to a peer, `latencyMs` after it was emitted. */
  eventDelivered(latencyMs: number): void
  /** A sink's buffer filled: live delivery to it paused until it drains. */
  slowConsumerPaused(): void
  /** Events sent from the log (replay, catch-up) rather than live. */
  eventsReplayed(count: number): void
  /** A client message answered with an `error`. */
  messageRejected(code: WireErrorCode): void
  /** How to count the events emitted on this node and not yet written to the event store (read when scraped). */
  countUnwrittenWith(read: () => number): void
}

const nothing = (): void => {}

/** The telemetry of a gateway without the metrics plugin. */
export const silentTelemetry: Telemetry = Object.freeze({
  connectionOpened: nothing,
  connectionClosed: nothing,
  authFailed: nothing,
  runStarted: nothing,
  runEnded: nothing,
  eventAppended: nothing,
  eventDelivered: nothing,
  slowConsumerPaused: nothing,
  eventsReplayed: nothing,
  messageRejected: nothing,
  countUnwrittenWith: nothing
})

declare module 'fastify' {
  interface FastifyInstance {
    telemetry: Telemetry
  }
}

/** The telemetry to report to: the metrics plugin's when it was registered first. */
export function telemetryOf (fastify: { hasDecorator(name: string): boolean, telemetry: Telemetry }): Telemetry {
  return fastify.hasDecorator('telemetry') ? fastify.telemetry : silentTelemetry
}
