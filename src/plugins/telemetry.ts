// telemetry: what the gateway's plugins report about themselves, as one narrow interface that
// every plugin reporting to it declares as a dependency — so no registration order can lose a
// metric. Silent by default; with `prometheus: true` it keeps Prometheus metrics (prom-client) in
// a registry of its own, so that several instances in one process (or a host app's own registry)
// never mix; GET /metrics serves them. Reports on the event path are a field update.
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { RunEventType, TerminalStatus, WireErrorCode } from '../protocol.js'

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
  /** A batch of events was delivered before REDIS_MIN_REPLICAS_ACK replicas held it. */
  replicaAckShortfall(): void
  /** How to read the bytes of history the event store holds in this process (read when scraped). */
  countStoreBytesWith(read: () => number): void
}

const nothing = (): void => {}

interface Sample { metricName: string, labels: Record<string, string | number>, value: number }

/**
 * A Prometheus histogram without labels whose observe() is three field updates: no object, no
 * closure, no label hashing per observation (prom-client's Histogram allocates on every observe,
 * and this one is observed once per delivered event). It speaks the registry's metric protocol
 * (name, help, type, get, reset), so the registry serialises it like any histogram.
 */
export class TallyHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #bounds: Float64Array
  readonly #counts: Float64Array
  #sum = 0
  #count = 0

  constructor (readonly name: string, readonly help: string, buckets: readonly number[]) {
    this.#bounds = Float64Array.from([...buckets].sort((a, b) => a - b))
    this.#counts = new Float64Array(this.#bounds.length)
  }

  observe (value: number): void {
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    // Values above the last bound are counted only in +Inf (the total).
    if (i < bounds.length) this.#counts[i]!++
    this.#sum += value
    this.#count++
  }

  reset (): void {
    this.#counts.fill(0)
    this.#sum = 0
    this.#count = 0
  }

  get (): Promise<{ name: string, help: string, type: 'histogram', aggregator: 'sum', values: Sample[] }> {
    const values: Sample[] = []
    let cumulative = 0
    this.#bounds.forEach((le, i) => {
      cumulative += this.#counts[i]!
      values.push({ metricName: `${this.name}_bucket`, labels: { le }, value: cumulative })
    })
    values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf' }, value: this.#count })
    values.push({ metricName: `${this.name}_sum`, labels: {}, value: this.#sum })
    values.push({ metricName: `${this.name}_count`, labels: {}, value: this.#count })
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values })
  }
}

/** The telemetry of a gateway without metrics. */
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
  countUnwrittenWith: nothing,
  replicaAckShortfall: nothing,
  countStoreBytesWith: nothing
})

/**
 * A counter with one label, counted as a map update per call and added to the Prometheus counter
 * when the registry is scraped. Returns the function that counts one for a label value.
 */
function labelTally (registry: Registry, name: string, help: string, label: string): (value: string) => void {
  const tally = new Map<string, number>()
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect () {
      for (const [value, count] of tally) if (count > 0) this.inc({ [label]: value }, count)
      tally.clear()
    }
  })
  return (value) => { tally.set(value, (tally.get(value) ?? 0) + 1) }
}

/** Telemetry kept as Prometheus metrics in `registry`. */
function prometheusTelemetry (registry: Registry): Telemetry {
  collectDefaultMetrics({ register: registry, prefix: 'agw_' })
  const connections = new Gauge({ name: 'agw_connections_open', help: 'Open WebSocket connections and SSE streams', labelNames: ['kind'], registers: [registry] })
  const connectionsTotal = new Counter({ name: 'agw_connections_total', help: 'WebSocket connections and SSE streams opened', labelNames: ['kind'], registers: [registry] })
  const authFailures = new Counter({ name: 'agw_auth_failures_total', help: 'Refused tokens, by reason (error code)', labelNames: ['reason'], registers: [registry] })
  // What is counted per run or per event is a plain field or map update, folded into its metric
  // when scraped: prom-client's inc() hashes its labels and validates its value on every call.
  let running = 0
  new Gauge({ name: 'agw_runs_active', help: 'Runs executing on this node', registers: [registry], collect () { this.set(running) } })
  const runEnded = labelTally(registry, 'agw_runs_total', 'Runs ended on this node, by terminal status', 'status')
  const appended = labelTally(registry, 'agw_events_total', 'Run events written to the log by this node, by type', 'type')
  const latency = new TallyHistogram(
    'agw_delivery_latency_seconds',
    'From an event being emitted to its write to a peer (live delivery only)',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
  )
  // The registry reads it through the metric protocol; typed for prom-client's Metric class.
  registry.registerMetric(latency as unknown as Parameters<Registry['registerMetric']>[0])
  const pauses = new Counter({ name: 'agw_slow_consumer_pauses_total', help: 'Times live delivery to a peer paused because its send buffer was full', registers: [registry] })
  let replayed = 0
  new Counter({
    name: 'agw_events_replayed_total',
    help: 'Events sent from the log (replay after subscribe, catch-up after a pause)',
    registers: [registry],
    collect () {
      if (replayed > 0) this.inc(replayed)
      replayed = 0
    }
  })
  const rejected = new Counter({ name: 'agw_messages_rejected_total', help: 'Client messages answered with an error, by code', labelNames: ['code'], registers: [registry] })
  const shortfalls = new Counter({
    name: 'agw_redis_replica_ack_shortfall_total',
    help: 'Batches of events delivered before REDIS_MIN_REPLICAS_ACK replicas acknowledged them (WAIT timed out)',
    registers: [registry]
  })
  let unwritten: () => number = () => 0
  // Read from the delivery path when scraped: nothing on the event path.
  new Gauge({
    name: 'agw_events_unwritten',
    help: 'Events emitted on this node and not yet written to the event store',
    registers: [registry],
    collect () { this.set(unwritten()) }
  })

  let storeBytes: () => number = () => 0
  new Gauge({
    name: 'agw_event_store_bytes',
    help: 'Bytes of run history the event store holds in this process (the memory store; 0 for Redis)',
    registers: [registry],
    collect () { this.set(storeBytes()) }
  })

  return {
    connectionOpened (kind) { connections.inc({ kind }); connectionsTotal.inc({ kind }) },
    connectionClosed (kind) { connections.dec({ kind }) },
    authFailed (code) { authFailures.inc({ reason: code }) },
    runStarted () { running++ },
    runEnded (status) {
      running--
      runEnded(status)
    },
    eventAppended: appended,
    eventDelivered (latencyMs) { latency.observe(latencyMs / 1000) },
    slowConsumerPaused () { pauses.inc() },
    eventsReplayed (count) { replayed += count },
    messageRejected (code) { rejected.inc({ code }) },
    countUnwrittenWith (read) { unwritten = read },
    replicaAckShortfall () { shortfalls.inc() },
    countStoreBytesWith (read) { storeBytes = read }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    telemetry: Telemetry
    /** The Prometheus registry, when the telemetry plugin keeps metrics (null when silent). */
    metricsRegistry: Registry | null
  }
}

export interface TelemetryPluginOptions {
  /** Keep Prometheus metrics (default false: every report is a no-op). */
  prometheus?: boolean
}

async function telemetry (fastify: FastifyInstance, opts: TelemetryPluginOptions): Promise<void> {
  if (opts.prometheus !== true) {
    fastify.decorate('telemetry', silentTelemetry)
    fastify.decorate('metricsRegistry', null)
    return
  }
  const registry = new Registry()
  fastify.decorate('telemetry', prometheusTelemetry(registry))
  fastify.decorate('metricsRegistry', registry)
}

export default fp(telemetry, { name: 'telemetry', fastify: '5.x' })
