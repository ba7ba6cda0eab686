// metrics: Prometheus metrics of this gateway instance (prom-client), in a registry of its own so
// that several instances in one process (or a host app's own registry) never mix. It implements
// the Telemetry the other plugins report to; register it before them. GET /metrics serves it.
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Telemetry } from '../telemetry.js'

declare module 'fastify' {
  interface FastifyInstance {
    metricsRegistry: Registry
  }
}

async function metrics (fastify: FastifyInstance): Promise<void> {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'agw_' })
  const connections = new Gauge({ name: 'agw_connections_open', help: 'Open WebSocket connections and SSE streams', labelNames: ['kind'], registers: [registry] })
  const connectionsTotal = new Counter({ name: 'agw_connections_total', help: 'WebSocket connections and SSE streams opened', labelNames: ['kind'], registers: [registry] })
  const authFailures = new Counter({ name: 'agw_auth_failures_total', help: 'Refused tokens, by reason (error code)', labelNames: ['reason'], registers: [registry] })
  const activeRuns = new Gauge({ name: 'agw_runs_active', help: 'Runs executing on this node', registers: [registry] })
  const runs = new Counter({ name: 'agw_runs_total', help: 'Runs ended on this node, by terminal status', labelNames: ['status'], registers: [registry] })
  // Counted on the event path as a plain field update per type, folded into the counter when scraped.
  const appended = new Map<string, number>()
  // Registered in `registry`; only its collect() reads the tally.
  new Counter({
    name: 'agw_events_total',
    help: 'Run events written to the log by this node, by type',
    labelNames: ['type'],
    registers: [registry],
    collect () {
      for (const [type, count] of appended) if (count > 0) this.inc({ type }, count)
      appended.clear()
    }
  })
  const latency = new Histogram({
    name: 'agw_delivery_latency_seconds',
    help: 'From an event being emitted to its write to a peer (live delivery only)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry]
  })
  const pauses = new Counter({ name: 'agw_slow_consumer_pauses_total', help: 'Times live delivery to a peer paused because its send buffer was full', registers: [registry] })
  const replayed = new Counter({ name: 'agw_events_replayed_total', help: 'Events sent from the log (replay after subscribe, catch-up after a pause)', registers: [registry] })
  const rejected = new Counter({ name: 'agw_messages_rejected_total', help: 'Client messages answered with an error, by code', labelNames: ['code'], registers: [registry] })
  let unwritten: () => number = () => 0
  // Read from the bridge when scraped: nothing on the event path.
  new Gauge({
    name: 'agw_events_unwritten',
    help: 'Events emitted on this node and not yet written to the event store',
    registers: [registry],
    collect () { this.set(unwritten()) }
  })

  const telemetry: Telemetry = {
    connectionOpened (kind) { connections.inc({ kind }); connectionsTotal.inc({ kind }) },
    connectionClosed (kind) { connections.dec({ kind }) },
    authFailed (code) { authFailures.inc({ reason: code }) },
    runStarted () { activeRuns.inc() },
    runEnded (status) { activeRuns.dec(); runs.inc({ status }) },
    eventAppended (type) { appended.set(type, (appended.get(type) ?? 0) + 1) },
    eventDelivered (latencyMs) { latency.observe(latencyMs / 1000) },
    slowConsumerPaused () { pauses.inc() },
    eventsReplayed (count) { replayed.inc(count) },
    messageRejected (code) { rejected.inc({ code }) },
    countUnwrittenWith (read) { unwritten = read }
  }
  fastify.decorate('telemetry', telemetry)
  fastify.decorate('metricsRegistry', registry)
}

export default fp(metrics, { name: 'metrics', fastify: '5.x', dependencies: ['config'] })
