// The AI SDK chat endpoint (docs/integrations.md#ai-sdk): what `useChat` with `DefaultChatTransport`
// talks to. POST /v1/chat starts a run on the chat's thread and streams it as a UI message stream;
// GET /v1/chat/:chatId/stream (what `resume: true` calls on mount) replays the chat's current run
// from its start and follows it live, on any node; POST /v1/chat/:chatId/cancel stops it. The
// streams are SSE sinks of the delivery path like every other event stream, translated by
// src/integrations/ai-sdk.ts. Closing a stream leaves the run going: that is what makes resuming
// possible.
import fp from 'fastify-plugin'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { RunMeta, UserContext } from '../contracts.js'
import { ChatCancelled, ChatParams, ChatRequest, HttpError } from '../protocol.js'
import { ChatInputError, ChatNotFoundError } from '../errors.js'
import { chatInput, uiMessageStream } from '../integrations/ai-sdk.js'
import { tokenExpiryMs } from '../plugins/auth-secret.js'
import { userOf } from '../plugins/user-context.js'

/**
 * How long after its run ended a chat's last message is still replayed on resume. A page reloaded
 * just as the run finished has not seen the end of the message; replaying it is harmless to a page
 * that has (the message keeps its id, so the SDK replaces it rather than adding it). Later, resume
 * answers 204, as for a chat with nothing in flight.
 */
export const CHAT_RESUME_WINDOW_MS = 60_000

const errors = { 400: HttpError, 401: HttpError, 404: HttpError, 409: HttpError, 429: HttpError, 503: HttpError }
const security = [{ bearer: [] }]
const streamResponse = { description: 'text/event-stream: the AI SDK UI message stream (header x-vercel-ai-ui-message-stream: v1), ending with [DONE]', type: 'string' }

/** Whether resuming the chat should replay this run: it is running, or ended a moment ago. */
export function resumable (meta: RunMeta, now = Date.now()): boolean {
  if (meta.status === 'running') return true
  const endedAt = meta.endedAt === undefined ? Number.NaN : Date.parse(meta.endedAt)
  return Number.isFinite(endedAt) && now - endedAt <= CHAT_RESUME_WINDOW_MS
}

async function chatRoutes (parent: FastifyInstance): Promise<void> {
  const fastify = parent.withTypeProvider<TypeBoxTypeProvider>()
  const { runEngine: engine, delivery } = fastify
  fastify.setValidatorCompiler(TypeBoxValidatorCompiler)

  /** Streams the run from its first event on the hijacked response (admitted by the caller). */
  function stream (request: FastifyRequest, reply: FastifyReply, user: UserContext, runId: string): void {
    reply.hijack()
    delivery.openStream(reply.raw, user, {
      runId,
      after: 0,
      format: uiMessageStream(),
      expiresAtMs: tokenExpiryMs(request)
    })
  }

  fastify.post('/v1/chat', {
    onRequest: fastify.requireUser,
    schema: {
      summary: 'Chat: run an agent for the AI SDK\'s useChat',
      description: 'The body is what the AI SDK\'s DefaultChatTransport sends: `id` (the chat, which is the run\'s thread), `messages` (UIMessages), `trigger`, `messageId`; `agent` picks the agent. The last user message\'s text is the run\'s `input.message`, the text of the messages before it `input.history`. The answer is the run as an AI SDK UI message stream. One run per chat at a time: a submit while the chat\'s run is in flight is refused with 409 AGW_ERR_RUN_THREAD_BUSY. Closing the response does not stop the run (resume it with GET /v1/chat/{chatId}/stream, stop it with POST /v1/chat/{chatId}/cancel). See docs/integrations.md#ai-sdk.',
      security,
      body: ChatRequest,
      response: { 200: streamResponse, ...errors }
    }
  }, async (request, reply) => {
    const user = userOf(request)
    const { id, messages, agent } = request.body
    const { message, history } = chatInput(messages)
    if (message === undefined) throw new ChatInputError('messages: there is no user message to answer')
    // Admitted before the run exists, so that a refused stream never leaves a run behind.
    delivery.admit(user.userId)
    let runId: string
    try {
      ({ runId } = await engine.start(user, { ...(agent === undefined ? {} : { agent }), threadId: id, input: { message, history } }, { exclusiveThread: true }))
    } catch (err) {
      delivery.unadmit(user.userId)
      throw err
    }
    stream(request, reply, user, runId)
  })

  fastify.get('/v1/chat/:chatId/stream', {
    onRequest: fastify.requireUser,
    schema: {
      summary: 'Chat: resume the chat\'s stream',
      description: 'What useChat({ resume: true }) calls on mount. When the chat has a run in flight, or one that ended less than a minute ago, the answer is that run\'s message as a UI message stream from its start (the SDK replaces the message it has with it), then live until the run ends. Otherwise — and for a chat that does not exist or is someone else\'s — 204.',
      security,
      params: ChatParams,
      response: {
        200: streamResponse,
        204: { description: 'Nothing to resume', type: 'null' },
        ...errors
      }
    }
  }, async (request, reply) => {
    const user = userOf(request)
    const meta = await engine.threadRun(user, request.params.chatId)
    if (meta === undefined || !resumable(meta)) return reply.code(204).send(null)
    // HEAD learns what GET would answer without opening a stream (or holding a connection slot).
    if (request.method === 'HEAD') return reply.code(200).type('text/event-stream; charset=utf-8').send('')
    delivery.admit(user.userId)
    stream(request, reply, user, meta.runId)
  })

  fastify.post('/v1/chat/:chatId/cancel', {
    onRequest: fastify.requireUser,
    schema: {
      summary: 'Chat: stop the chat\'s run',
      description: 'Cancels the chat\'s run in flight, on whichever node runs it; its stream ends with the `finish` chunk (finishReason "other"). 404 for a chat that does not exist or is someone else\'s; 409 AGW_ERR_RUN_ENDED when its last run has already ended.',
      security,
      params: ChatParams,
      response: { 202: ChatCancelled, ...errors }
    }
  }, async (request, reply) => {
    const user = userOf(request)
    const { chatId } = request.params
    const meta = await engine.threadRun(user, chatId)
    if (meta === undefined) throw new ChatNotFoundError(chatId)
    await engine.cancel(user, meta.runId)
    return reply.code(202).send({ chatId, runId: meta.runId })
  })
}

export default fp(chatRoutes, {
  name: 'routes/chat', fastify: '5.x', encapsulate: true, dependencies: ['config', 'user-context', 'delivery', 'run-engine']
})
