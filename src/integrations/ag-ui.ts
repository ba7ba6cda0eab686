// AG-UI (https://docs.ag-ui.com) on top of agent-events.v1: a translator from one run's events to
// AG-UI events, built on @ag-ui/core's types and @ag-ui/encoder — no copy of either. Our events
// are whole (a thought, a tool call with its complete arguments), AG-UI's are streamed spans that
// must open and close in order, so the translator keeps what is open and closes it when the run
// moves on. The mapping table and the reasons for it are in docs/integrations.md#ag-ui.
import { EventType, PROTOCOL_VERSION, contentToText, type Event, type RunAgentInput } from '@ag-ui/core'
import { EventEncoder } from '@ag-ui/encoder'
import type { RunEvent, RunEventOf } from '../protocol.js'
import type { SseFormat } from '../delivery/sse-sink.js'

/** The ids the AG-UI client sent in its RunAgentInput: its events carry exactly these. */
export interface AgUiRunIds {
  readonly threadId: string
  readonly runId: string
}

/** Where RUN_STARTED tells a client our own ids for the run (to cancel it or replay its events). */
export const AG_UI_METADATA_KEY = 'agentGateway'

/** The `activityType` of the ACTIVITY_SNAPSHOT events that carry `tool_progress`. */
export const TOOL_PROGRESS_ACTIVITY = 'tool_progress'

/** Turns each of our run events, in seq order, into the AG-UI events it stands for. */
export type AgUiTranslator = (event: RunEvent) => Event[]

/** A new translator for one stream of one run (it holds what is open). */
export function createAgUiTranslator (ids: AgUiRunIds): AgUiTranslator {
  /** The open TEXT_MESSAGE (our messageId). */
  let text: string | undefined
  /** The open reasoning span: consecutive thoughts share one. */
  let reasoning: string | undefined
  /** The assistant message that tool calls belong to: the text just said, or the step's first call. */
  let turn: string | undefined

  /** Ends what `event` does not continue: a text message, unless it is more of it; a reasoning span, unless another thought. */
  function closeOpen (event: RunEvent): Event[] {
    const closed: Event[] = []
    if (text !== undefined && !(event.type === 'agent_message' && event.data.messageId === text)) {
      closed.push({ type: EventType.TEXT_MESSAGE_END, messageId: text })
      text = undefined
    }
    if (reasoning !== undefined && event.type !== 'agent_thinking') {
      closed.push({ type: EventType.REASONING_END, messageId: reasoning })
      reasoning = undefined
    }
    return closed
  }

  function thought (event: RunEventOf<'agent_thinking'>): Event[] {
    const messageId = mintedId(event)
    const events: Event[] = []
    if (reasoning === undefined) {
      reasoning = messageId
      events.push({ type: EventType.REASONING_START, messageId })
    }
    // A thought starts a new step: tool calls after it belong to a new assistant message.
    turn = undefined
    events.push({ type: EventType.REASONING_MESSAGE_START, messageId, role: 'reasoning' })
    if (event.data.thought !== '') events.push({ type: EventType.REASONING_MESSAGE_CONTENT, messageId, delta: event.data.thought })
    events.push({ type: EventType.REASONING_MESSAGE_END, messageId })
    return events
  }

  function message (event: RunEventOf<'agent_message'>): Event[] {
    const { messageId, delta } = event.data
    const events: Event[] = []
    if (text === undefined) {
      text = messageId
      turn = messageId
      events.push({ type: EventType.TEXT_MESSAGE_START, messageId, role: 'assistant' })
    }
    if (delta !== '') events.push({ type: EventType.TEXT_MESSAGE_CONTENT, messageId, delta })
    return events
  }

  function toolCall (event: RunEventOf<'tool_executing'>): Event[] {
    const { toolCallId, tool, args } = event.data
    // Without a parent the client makes an assistant message named after the call; later calls
    // of the same step join it.
    const parentMessageId = turn
    turn ??= toolCallId
    return [
      { type: EventType.TOOL_CALL_START, toolCallId, toolCallName: tool, ...(parentMessageId === undefined ? {} : { parentMessageId }) },
      { type: EventType.TOOL_CALL_ARGS, toolCallId, delta: JSON.stringify(args ?? {}) },
      { type: EventType.TOOL_CALL_END, toolCallId }
    ]
  }

  function toolResult (event: RunEventOf<'tool_completed'>): Event[] {
    const { toolCallId, status, result, error } = event.data
    const content = status === 'success' ? JSON.stringify(result ?? null) : JSON.stringify({ status, error })
    return [{ type: EventType.TOOL_CALL_RESULT, messageId: mintedId(event), toolCallId, content, role: 'tool' }]
  }

  /** AG-UI has no progress event: ACTIVITY_SNAPSHOT ("structured progress that is not conversation content") fits, one activity per call. */
  function progress (event: RunEventOf<'tool_progress'>): Event {
    const { toolCallId, progress: done, total, message } = event.data
    return {
      type: EventType.ACTIVITY_SNAPSHOT,
      messageId: `${toolCallId}:progress`,
      activityType: TOOL_PROGRESS_ACTIVITY,
      content: { toolCallId, progress: done, ...(total === undefined ? {} : { total }), ...(message === undefined ? {} : { message }) }
    }
  }

  function completed (event: RunEventOf<'agent_completed'>): Event {
    const { status, output, error } = event.data
    if (status === 'failed') {
      return { type: EventType.RUN_ERROR, message: error?.message ?? 'The run failed', ...(error === undefined ? {} : { code: error.code }) }
    }
    if (status === 'cancelled') return { type: EventType.RUN_FINISHED, ...ids, outcome: { type: 'cancelled' } }
    // AG-UI has no null result: an agent that returned nothing or null finished without one.
    return { type: EventType.RUN_FINISHED, ...ids, ...(output === undefined || output === null ? {} : { result: output }) }
  }

  return function translate (event: RunEvent): Event[] {
    const events = closeOpen(event)
    switch (event.type) {
      case 'agent_started':
        events.push({
          type: EventType.RUN_STARTED,
          ...ids,
          protocolVersion: PROTOCOL_VERSION,
          metadata: { [AG_UI_METADATA_KEY]: { runId: event.runId, threadId: event.threadId, agent: event.data.agent } }
        })
        break
      case 'agent_thinking':
        events.push(...thought(event))
        break
      case 'agent_message':
        events.push(...message(event))
        break
      case 'tool_executing':
        events.push(...toolCall(event))
        break
      case 'tool_progress':
        events.push(progress(event))
        break
      case 'tool_completed':
        events.push(...toolResult(event))
        break
      case 'agent_completed':
        events.push(completed(event))
        break
    }
    // The events were made here: stamped in place (a spread followed by a property is slow in V8).
    const timestamp = Date.parse(event.ts)
    for (const translated of events) translated.timestamp = timestamp
    return events
  }
}

/** Ids for what AG-UI names and we do not (reasoning messages, tool results): unique, and stable across replays. */
function mintedId (event: RunEvent): string {
  return `${event.runId}:${event.seq}`
}

/**
 * The SSE format of an AG-UI stream: each logged event as the Server-Sent Events of the AG-UI
 * events it translates to ('' for none); a stream cut short (the token expired) ends with RUN_ERROR.
 */
export function agUiEventStream (ids: AgUiRunIds): SseFormat {
  const translate = createAgUiTranslator(ids)
  const encoder = new EventEncoder()
  return {
    event: (stored) => translate(JSON.parse(stored.frame.toString('utf8')) as RunEvent)
      .map((event) => encoder.encodeSSE(event))
      .join(''),
    error: (code, message) => encoder.encodeSSE({ type: EventType.RUN_ERROR, code, message, timestamp: Date.now() })
  }
}

/**
 * The conversation before the last user message as `input.history` (what agents such as `llm`
 * read): the user and assistant messages that have text, in order. Tool calls, tool results and
 * reasoning stay in `input.agUi` only.
 */
export function historyBefore (input: Pick<RunAgentInput, 'messages'>): Array<{ role: 'user' | 'assistant', content: string }> {
  const last = input.messages.findLastIndex((message) => message.role === 'user')
  const history: Array<{ role: 'user' | 'assistant', content: string }> = []
  for (const message of input.messages.slice(0, Math.max(0, last))) {
    if (message.role !== 'user' && message.role !== 'assistant') continue
    const content = message.role === 'user' ? contentToText(message.content) : message.content ?? ''
    if (content !== '') history.push({ role: message.role, content })
  }
  return history
}

/** What the user asked: the text of the last user message ('' when it has only media), or undefined without one. */
export function lastUserText (input: Pick<RunAgentInput, 'messages'>): string | undefined {
  const last = input.messages.findLast((message) => message.role === 'user')
  return last === undefined ? undefined : contentToText(last.content)
}
