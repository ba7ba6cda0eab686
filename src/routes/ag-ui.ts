// POST /v1/ag-ui (section 4 of the contract): the endpoint @ag-ui/client's HttpAgent runs. The body
// is an AG-UI RunAgentInput, checked with @ag-ui/core's own schema; the run is an ordinary run of
// the engine, and its events reach the response through an SSE sink like every other event stream
// (seq order, from the log, with backpressure), translated by src/integrations/ag-ui.ts.
// AG-UI's own code is loaded on the endpoint's first request, not with the gateway (below).
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { RunAgentInputSchema } from '@ag-ui/core/schemas'
import { Compile } from 'typebox/compile'
import { AgentName, ThreadId } from '../protocol.js'
import type { UserContext } from '../contracts.js'
import { AgUiInputError, RunEndedError } from '../errors.js'
import type * as AgUiIntegration from '../integrations/ag-ui.js'
import type { StartRequest } from '../plugins/run-engine.js'
import { tokenExpiryMs } from '../plugins/auth-secret.js'
import { userOf } from '../plugins/user-context.js'

const validThreadId = Compile(ThreadId)
const validAgentName = Compile(AgentName)

/** What the endpoint needs of AG-UI's packages: our translation (with @ag-ui/encoder), and @ag-ui/core's input schema. */
type AgUiCode = typeof AgUiIntegration & { readonly RunAgentInputSchema: typeof RunAgentInputSchema }

let agUiCode: Promise<AgUiCode> | undefined

/**
 * AG-UI's packages, loaded on the endpoint's first request and kept: @ag-ui/core's schemas (zod)
 * and @ag-ui/encoder (protobuf) are about 8 MiB of heap, which a gateway that no AG-UI client
 * calls does not hold, nor walk at every full collection (docs/performance.md, "What the gateway
 * loads"). The first request waits for them once.
 */
function loadAgUi (): Promise<AgUiCode> {
  agUiCode ??= Promise.all([import('@ag-ui/core/schemas'), import('../integrations/ag-ui.js')])
    .then(([schemas, integration]) => ({ ...integration, RunAgentInputSchema: schemas.RunAgentInputSchema }))
  return agUiCode
}

interface Issue {
  readonly path: readonly PropertyKey[]
  readonly message: string
}

function describeIssues (issues: readonly Issue[]): string {
  return issues.slice(0, 3).map(({ path, message }) => `${path.length === 0 ? 'body' : path.map(String).join('.')}: ${message}`).join('; ')
}

/**
 * The run an AG-UI RunAgentInput asks for: the last user message's text is `input.message`, the
 * text of the conversation before it `input.history`; all of it goes along in `input.agUi`; `forwardedProps.agent` picks the agent. The
 * client's threadId is kept when it is one of ours too; its ids are what its events carry.
 */
function runRequestFrom (code: AgUiCode, body: unknown): { request: StartRequest, ids: AgUiIntegration.AgUiRunIds } {
  const { RunAgentInputSchema, historyBefore, lastUserText } = code
  const parsed = RunAgentInputSchema.safeParse(body)
  if (!parsed.success) throw new AgUiInputError(describeIssues(parsed.error.issues))
  const { threadId, runId, messages, context } = parsed.data
  // Any JSON, as far as AG-UI is concerned.
  const state: unknown = parsed.data.state
  const forwardedProps: unknown = parsed.data.forwardedProps
  const message = lastUserText(parsed.data)
  if (message === undefined) throw new AgUiInputError('messages: there is no user message to answer')
  const agent: unknown = typeof forwardedProps === 'object' && forwardedProps !== null ? (forwardedProps as Record<string, unknown>).agent : undefined
  if (agent !== undefined && !validAgentName.Check(agent)) {
    throw new AgUiInputError('forwardedProps.agent: must be an agent name (1-64 letters, digits, "_", "." or "-")')
  }
  const agUi = { messages, context, ...(state === undefined ? {} : { state }), ...(forwardedProps === undefined ? {} : { forwardedProps }) }
  return {
    ids: { threadId, runId },
    request: {
      ...(agent === undefined ? {} : { agent }),
      ...(validThreadId.Check(threadId) ? { threadId } : {}),
      input: { message, history: historyBefore(parsed.data), agUi }
    }
  }
}

async function agUiRoutes (fastify: FastifyInstance): Promise<void> {
  const { runEngine: engine, delivery } = fastify

  /** The request was the run's only reader: when the client goes, the run is cancelled. */
  function cancelRun (user: UserContext, runId: string, log: FastifyBaseLogger): void {
    engine.cancel(user, runId).catch((err: unknown) => {
      // It ended on its own as the client left (or at shutdown): nothing left to cancel.
      if (!(err instanceof RunEndedError)) log.warn({ err, runId }, 'could not cancel the run of an abandoned AG-UI request')
    })
  }

  fastify.post('/v1/ag-ui', {
    onRequest: fastify.requireUser,
    schema: {
      summary: 'Run an agent as an AG-UI agent',
      description: 'The body is an AG-UI RunAgentInput (checked with @ag-ui/core\'s schema); the answer is the run as AG-UI events over Server-Sent Events, as @ag-ui/client\'s HttpAgent expects. `forwardedProps.agent` picks the agent. See docs/integrations.md#ag-ui.',
      security: [{ bearer: [] }],
      response: { 200: { description: 'text/event-stream of AG-UI events', type: 'string' } }
    }
  }, async (request, reply) => {
    const user = userOf(request)
    const code = await loadAgUi()
    const { request: runRequest, ids } = runRequestFrom(code, request.body)
    // Admitted before the run exists, so that a refused stream never leaves a run behind; a run
    // that is refused gives the slot back at once.
    delivery.admit(user.userId)
    let runId: string
    try {
      ({ runId } = await engine.start(user, runRequest))
    } catch (err) {
      delivery.unadmit(user.userId)
      throw err
    }
    reply.hijack()
    delivery.openStream(reply.raw, user, {
      runId,
      after: 0,
      format: code.agUiEventStream(ids),
      expiresAtMs: tokenExpiryMs(request),
      onEnd: (completed) => { if (!completed) cancelRun(user, runId, request.log) }
    })
  })
}

export default fp(agUiRoutes, {
  name: 'routes/ag-ui', fastify: '5.x', encapsulate: true, dependencies: ['config', 'user-context', 'delivery', 'run-engine']
})
