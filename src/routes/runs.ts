// The HTTP runs API (section 4 of the contract): start, inspect and cancel runs, and follow one as
// Server-Sent Events — on the same engine and delivery path as the WebSocket (no second event
// path): the event stream is an SSE sink, so seq, replay, backpressure and ownership are the same.
// Route schemas come from protocol.ts; @fastify/swagger (registered by the routes' scope) turns
// them into /docs/json.
import fp from 'fastify-plugin'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { hasEventsAfter, type StoredEvent } from '../contracts.js'
import type { SseFormat } from '../delivery/sse-sink.js'
import { EventsQuery, HttpError, RunAccepted, RunParams, RunRequest, RunSummary } from '../protocol.js'
import { LastEventIdError } from '../errors.js'
import { tokenExpiryMs } from '../plugins/auth-secret.js'
import { userOf } from '../plugins/user-context.js'

const errors = { 400: HttpError, 401: HttpError, 404: HttpError, 409: HttpError, 410: HttpError, 429: HttpError, 503: HttpError }
const security = [{ bearer: [] }]

/** One event as Server-Sent Events: its seq as the id, its wire frame as the data. */
export function sseEvent (event: StoredEvent): string {
  return `id: ${event.seq}\ndata: ${event.frame.toString('utf8')}\n\n`
}

/** The runs API's stream: our frames with their seq as the id; a cut-short stream says why in an `error` event. */
const runEventsFormat: SseFormat = {
  event: sseEvent,
  error: (code, message) => `event: error\ndata: ${JSON.stringify({ code, message })}\n\n`
}

/** The seq to resume after: the Last-Event-ID header (what EventSource sends), else ?after=. */
function resumeAfter (request: FastifyRequest<{ Querystring: { after?: number } }>): number {
  const header = request.headers['last-event-id']
  if (header === undefined) return request.query.after ?? 0
  if (typeof header !== 'string' || !/^\d{1,15}$/.test(header.trim())) throw new LastEventIdError()
  return Number(header.trim())
}

async function runsRoutes (parent: FastifyInstance): Promise<void> {
  const fastify = parent.withTypeProvider<TypeBoxTypeProvider>()
  const { runEngine: engine, delivery } = fastify
  // TypeBox validates as the WebSocket does: bodies strictly (a number is not a string), while
  // params and query strings are converted from their text first.
  fastify.setValidatorCompiler(TypeBoxValidatorCompiler)

  fastify.post('/v1/runs', {
    onRequest: fastify.requireUser,
    schema: { summary: 'Start a run', security, body: RunRequest, response: { 202: RunAccepted, ...errors } }
  }, async (request, reply) => {
    const started = await engine.start(userOf(request), request.body)
    return reply.code(202).send(started)
  })

  fastify.get('/v1/runs/:runId', {
    onRequest: fastify.requireUser,
    schema: { summary: 'A run and how far it got', security, params: RunParams, response: { 200: RunSummary, ...errors } }
  }, async (request) => {
    const { runId, threadId, agent, status, lastSeq, createdAt } = await engine.getOwnedRun(userOf(request), request.params.runId)
    return { runId, threadId, agent, status, lastSeq, createdAt }
  })

  fastify.get('/v1/runs/:runId/events', {
    onRequest: fastify.requireUser,
    schema: {
      summary: "A run's events as Server-Sent Events",
      description: 'Each event is `id: <seq>` and `data: <the event as on the WebSocket>`. Resume with the Last-Event-ID header (or ?after=). Comment lines keep the stream alive; it ends after agent_completed. Resuming a finished run at or past its last event answers 204.',
      security,
      params: RunParams,
      querystring: EventsQuery,
      response: {
        200: { description: 'text/event-stream', type: 'string' },
        204: { description: 'The run has ended and the resume point is at or past its last event: nothing more will come', type: 'null' },
        ...errors
      }
    }
  }, async (request, reply) => {
    const user = userOf(request)
    const after = resumeAfter(request)
    // Checked before the response starts, so that refusals are still plain HTTP errors.
    const meta = await engine.getOwnedRun(user, request.params.runId)
    // Resumed after the end of a finished run: 204 is also what tells an EventSource to stop reconnecting.
    if (!hasEventsAfter(meta, after)) return reply.code(204).send(null)
    // HEAD learns what GET would answer without opening a stream (or holding a connection slot).
    if (request.method === 'HEAD') return reply.code(200).type('text/event-stream; charset=utf-8').send('')
    delivery.admit(user.userId)
    reply.hijack()
    delivery.openStream(reply.raw, user, {
      runId: request.params.runId,
      after,
      format: runEventsFormat,
      expiresAtMs: tokenExpiryMs(request)
    })
  })

  fastify.post('/v1/runs/:runId/cancel', {
    onRequest: fastify.requireUser,
    schema: { summary: 'Cancel a run', security, params: RunParams, response: { 202: RunParams, ...errors } }
  }, async (request, reply) => {
    await engine.cancel(userOf(request), request.params.runId)
    return reply.code(202).send({ runId: request.params.runId })
  })
}

export default fp(runsRoutes, {
  name: 'routes/runs',
  fastify: '5.x',
  encapsulate: true,
  dependencies: ['config', 'user-context', 'delivery', 'run-engine']
})
