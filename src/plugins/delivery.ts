// delivery: wires the path of an event, one step per file in src/delivery/ — the run's emitter
// appends it to the log, the fan-out offers it to every local subscription of the run, and each
// subscription's sink writes it to its peer. This plugin owns the sinks of this node: their
// admission (connections per user), registration, keep-alive timers and their closing at shutdown,
// and it registers @fastify/websocket. Nothing on this path knows how runs start or stop.
import type { ServerResponse } from 'node:http'
import fp from 'fastify-plugin'
import fastifyWebsocket from '@fastify/websocket'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { WebSocket } from 'ws'
import type { UserContext } from '../contracts.js'
import { ConnectionLimitError, ShuttingDownError, WebSocketPresentError } from '../errors.js'
import { PROTOCOL } from '../protocol.js'
import { Emitter, type RunEmitter } from '../delivery/emitter.js'
import { Fanout, type WatchListener } from '../delivery/fanout.js'
import { Ticker, type Corkable, type Sink, type SinkHost } from '../delivery/sink.js'
import { SseSink, type SseFormat } from '../delivery/sse-sink.js'
import { ExpirySchedule } from '../delivery/expiries.js'
import { WebSocketSink, logSocketError, type WebSocketSinkShared } from '../delivery/websocket-sink.js'

/** How long an admitted request holds a connection slot if no sink takes it (an upgrade that never completes). */
const ADMISSION_TTL_MS = 10_000
/** Bound on waiting for sinks to flush what was logged at shutdown. */
const SHUTDOWN_FLUSH_MS = 5_000

export interface AttachOptions {
  /** When the token expires (ms since the epoch): the connection is closed with 4401 then. */
  expiresAtMs?: number
  /** The TCP socket under the WebSocket: given, one tick's frames go out in one system call. */
  rawSocket?: Corkable
}

export interface StreamOptions {
  readonly runId: string
  /** Deliver events with seq > after. */
  readonly after: number
  readonly format: SseFormat
  /** When the token expires (ms since the epoch): the stream ends then. */
  readonly expiresAtMs?: number
  /** Called once when the stream ends: after the run's terminal event (true) or early (false). */
  onEnd?(completed: boolean): void
}

export interface Delivery {
  /** True once shutdown has begun: no new sinks. */
  readonly closing: boolean
  /** The emitter of a run this node executes: the only way its events reach the log and the sinks. */
  openEmitter(runId: string, threadId: string): RunEmitter
  /** Reserves a connection slot for a request about to become a sink, or throws AGW_ERR_CONNECTION_LIMIT (429). */
  admit(userId: string): void
  /** Gives back a slot that `admit` reserved for a request that will not become a sink. */
  unadmit(userId: string): void
  /** Takes over an upgraded socket: `welcome`, heartbeats, expiry; every write to it. Count it with `admit()` first. */
  attach(socket: WebSocket, user: UserContext, options?: AttachOptions): WebSocketSink
  /**
   * Streams one run (which `user` owns: check first) as text/event-stream on a hijacked response,
   * from `options.after`, ending after its terminal event. Count it with `admit()` first.
   */
  openStream(response: ServerResponse, user: UserContext, options: StreamOptions): SseSink
  connectionCount(userId: string): number
  /** True while a sink of this node follows the run. */
  isWatched(runId: string): boolean
  /** Told when a run gains its first follower on this node, or loses its last. */
  onWatchChange(listener: WatchListener): void
  /**
   * A step that must finish at shutdown before the sinks are flushed and closed: what produces
   * events (the run engine) ends them, so that subscribers receive them before their sockets close.
   */
  beforeSinksClose(step: () => Promise<void>): void
}

declare module 'fastify' {
  interface FastifyInstance {
    delivery: Delivery
  }
}

async function delivery (fastify: FastifyInstance): Promise<void> {
  if (fastify.hasDecorator('websocketServer')) throw new WebSocketPresentError()
  const { config, eventStore: store, telemetry, log } = fastify
  const fanout = new Fanout(store, telemetry)
  const emitters = new Set<Emitter>()
  const sinks = new Set<Sink>()
  /** Open sinks per user (a count: a Set per user would cost every idle connection its table). */
  const byUser = new Map<string, number>()
  const admissions = new Map<string, number[]>()
  const heartbeats = new Ticker(config.HEARTBEAT_MS)
  const keepAlive = new Ticker(config.HEARTBEAT_MS)
  const expiries = new ExpirySchedule()
  const shutdownSteps: Array<() => Promise<void>> = []
  let closing = false

  const emitterHost = { store, telemetry, log, finished: (emitter: Emitter) => { emitters.delete(emitter) } }
  telemetry.countUnwrittenWith(() => {
    let unwritten = 0
    for (const emitter of emitters) unwritten += emitter.backlog
    return unwritten
  })

  const sinkHost: SinkHost = {
    fanout,
    log,
    sendBufferBytes: config.SEND_BUFFER_BYTES,
    expiries,
    released (sink) {
      if (!sinks.delete(sink)) return
      telemetry.connectionClosed(sink.kind)
      const left = (byUser.get(sink.user.userId) ?? 1) - 1
      if (left === 0) byUser.delete(sink.user.userId)
      else byUser.set(sink.user.userId, left)
    }
  }

  function connectionCount (userId: string): number {
    return byUser.get(userId) ?? 0
  }

  /** Counts a new sink against its user's admission. */
  function register (sink: Sink): void {
    const pending = admissions.get(sink.user.userId)
    pending?.shift()
    if (pending?.length === 0) admissions.delete(sink.user.userId)
    sinks.add(sink)
    byUser.set(sink.user.userId, (byUser.get(sink.user.userId) ?? 0) + 1)
    telemetry.connectionOpened(sink.kind)
  }

  const websocketShared: WebSocketSinkShared = {
    heartbeats,
    welcome: {
      protocol: PROTOCOL,
      heartbeatMs: config.HEARTBEAT_MS,
      limits: {
        maxMessageBytes: config.MAX_MESSAGE_BYTES,
        maxConcurrentRuns: config.MAX_CONCURRENT_RUNS,
        messagesPerSecond: config.MESSAGE_RATE_PER_SEC,
        messageBurst: config.MESSAGE_RATE_BURST
      }
    }
  }

  const api: Delivery = {
    get closing () {
      return closing
    },

    openEmitter (runId, threadId) {
      const emitter = new Emitter(emitterHost, runId, threadId)
      emitters.add(emitter)
      return emitter
    },

    admit (userId) {
      if (closing) throw new ShuttingDownError()
      const now = Date.now()
      const pending = (admissions.get(userId) ?? []).filter((expiresAt) => expiresAt > now)
      if (connectionCount(userId) + pending.length >= config.MAX_CONNECTIONS_PER_USER) {
        throw new ConnectionLimitError(config.MAX_CONNECTIONS_PER_USER)
      }
      pending.push(now + ADMISSION_TTL_MS)
      admissions.set(userId, pending)
    },

    unadmit (userId) {
      const pending = admissions.get(userId)
      pending?.pop()
      if (pending?.length === 0) admissions.delete(userId)
    },

    attach (socket, user, options = {}) {
      const sink = new WebSocketSink(sinkHost, socket, user, websocketShared, options.rawSocket)
      register(sink)
      sink.start(options.expiresAtMs)
      return sink
    },

    openStream (response, user, options) {
      const sink = new SseSink(sinkHost, response, user, { ...options, keepAlive })
      register(sink)
      sink.start()
      return sink
    },

    connectionCount,
    isWatched: (runId) => fanout.isWatched(runId),
    onWatchChange: (listener) => { fanout.onWatchChange(listener) },
    beforeSinksClose: (step) => { shutdownSteps.push(step) }
  }

  /**
   * Shutdown, in order: refuse new sinks; let the producers of events end them (the engine's
   * runs, with their grace period); let every subscriber receive what was logged; close every
   * socket with 1001 so clients reconnect elsewhere and resume by seq.
   */
  async function shutdown (): Promise<void> {
    closing = true
    for (const step of shutdownSteps) await step()
    const flushDeadline = Date.now() + SHUTDOWN_FLUSH_MS
    while (Date.now() < flushDeadline && [...sinks].some((sink) => !sink.idle)) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    const sockets = [...sinks].filter((sink): sink is WebSocketSink => sink instanceof WebSocketSink)
    for (const sink of [...sinks]) sink.goAway()
    heartbeats.stop()
    expiries.stop()
    keepAlive.stop()
    // The server's close waits for every socket: give peers a moment to answer the close frame,
    // then drop the ones that do not.
    const closeDeadline = Date.now() + 2_000
    while (Date.now() < closeDeadline && sockets.some((sink) => !sink.socketClosed)) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    for (const sink of sockets) if (!sink.socketClosed) sink.terminate()
  }

  await fastify.register(fastifyWebsocket, {
    options: {
      maxPayload: config.MAX_MESSAGE_BYTES,
      clientTracking: false,
      // Select only our protocol: without this, ws would echo the client's first offer, which
      // can be `bearer.<jwt>` — the token, in the response headers.
      handleProtocols: (protocols: Set<string>) => (protocols.has(PROTOCOL) ? PROTOCOL : false)
    },
    // Errors of the route's handler; once a connection is established its sink logs its errors.
    errorHandler (error: Error & { code?: string }, _socket: WebSocket, request: FastifyRequest) {
      logSocketError(request.log, error)
    },
    // Replaces the plugin's default (close every client at once) with an orderly shutdown.
    preClose: shutdown
  })

  fastify.decorate('delivery', api)
}

export default fp(delivery, { name: 'delivery', fastify: '5.x', dependencies: ['config', 'telemetry', 'event-store'] })
