// The AI SDK's UI message stream protocol (what `useChat` and `DefaultChatTransport` of the `ai`
// package read) on top of agent-events.v1: a translator from one run's events to UI message
// chunks, and the SSE format that writes them. One run is one assistant message whose id is the
// runId, so a stream replayed from the start after a reload rebuilds the same message. Our events
// are whole (a thought, a tool call with its arguments), the SDK's text and reasoning are spans
// that open and close, so the translator keeps what is open. The mapping table and the reasons
// for it are in docs/integrations.md#ai-sdk.
import type { RunEvent, RunEventOf, TerminalStatus } from '../protocol.js'
import type { SseFormat } from '../delivery/sse-sink.js'

/** The metadata of the assistant message: which run it is and how far it got (the `start` and `finish` chunks carry it). */
export interface UIMessageMetadata {
  readonly runId: string
  readonly threadId: string
  readonly agent: string
  /** The seq of the event the chunk stands for: 1 at the start, the terminal event's at the finish. */
  readonly seq: number
  /** How the run ended (on `finish` only). */
  readonly status?: TerminalStatus
}

/** The header that tells the SDK the response is a UI message stream. */
export const UI_MESSAGE_STREAM_HEADERS: Readonly<Record<string, string>> = { 'x-vercel-ai-ui-message-stream': 'v1' }

/** The type of the data parts that carry `tool_progress` (one part per tool call, updated in place). */
export const TOOL_PROGRESS_PART = 'data-tool-progress'

/** The UI message chunks this gateway writes: a subset of the SDK's `UIMessageChunk`. */
export type UiChunk =
  | { type: 'start', messageId: string, messageMetadata: UIMessageMetadata }
  | { type: 'start-step' }
  | { type: 'finish-step' }
  | { type: 'reasoning-start' | 'reasoning-end' | 'text-start' | 'text-end', id: string }
  | { type: 'reasoning-delta' | 'text-delta', id: string, delta: string }
  | { type: 'tool-input-available', toolCallId: string, toolName: string, input: unknown, dynamic: true }
  | { type: 'tool-output-available', toolCallId: string, output: unknown, dynamic: true }
  | { type: 'tool-output-error', toolCallId: string, errorText: string, dynamic: true }
  | { type: typeof TOOL_PROGRESS_PART, id: string, data: { toolCallId: string, progress: number, total?: number, message?: string } }
  | { type: 'error', errorText: string }
  | { type: 'finish', finishReason: 'stop' | 'error' | 'other', messageMetadata: UIMessageMetadata }

/** Turns each of our run events, in seq order, into the UI message chunks it stands for. */
export type UiMessageTranslator = (event: RunEvent) => UiChunk[]

const FINISH_REASONS: Record<TerminalStatus, 'stop' | 'error' | 'other'> = { completed: 'stop', failed: 'error', cancelled: 'other' }

/** A new translator for one stream of one run (it holds what is open). */
export function createUiMessageTranslator (): UiMessageTranslator {
  /** The open text part (our messageId). */
  let text: string | undefined
  /** Whether the step holds more than reasoning: the next thought then starts a new step. */
  let stepActed = false
  let agent = ''

  function closeText (event: RunEvent): UiChunk[] {
    if (text === undefined || (event.type === 'agent_message' && event.data.messageId === text)) return []
    const closed: UiChunk[] = [{ type: 'text-end', id: text }]
    text = undefined
    return closed
  }

  function metadata (event: RunEvent, status?: TerminalStatus): UIMessageMetadata {
    return { runId: event.runId, threadId: event.threadId, agent, seq: event.seq, ...(status === undefined ? {} : { status }) }
  }

  function thought (event: RunEventOf<'agent_thinking'>): UiChunk[] {
    const id = `${event.runId}:${event.seq}`
    const chunks: UiChunk[] = []
    // A thought after the step acted (called a tool, said something) begins the next step.
    if (stepActed) chunks.push({ type: 'finish-step' }, { type: 'start-step' })
    stepActed = false
    chunks.push({ type: 'reasoning-start', id })
    if (event.data.thought !== '') chunks.push({ type: 'reasoning-delta', id, delta: event.data.thought })
    chunks.push({ type: 'reasoning-end', id })
    return chunks
  }

  function message (event: RunEventOf<'agent_message'>): UiChunk[] {
    const { messageId, delta } = event.data
    const chunks: UiChunk[] = []
    stepActed = true
    if (text === undefined) {
      text = messageId
      chunks.push({ type: 'text-start', id: messageId })
    }
    if (delta !== '') chunks.push({ type: 'text-delta', id: messageId, delta })
    return chunks
  }

  function toolResult (event: RunEventOf<'tool_completed'>): UiChunk {
    const { toolCallId, status, result, error } = event.data
    if (status === 'success') return { type: 'tool-output-available', toolCallId, output: result ?? null, dynamic: true }
    const errorText = error === undefined ? `The tool call ended: ${status}` : `${error.code}: ${error.message}`
    return { type: 'tool-output-error', toolCallId, errorText, dynamic: true }
  }

  function completed (event: RunEventOf<'agent_completed'>): UiChunk[] {
    const { status, error } = event.data
    const chunks: UiChunk[] = [{ type: 'finish-step' }]
    if (status === 'failed') chunks.push({ type: 'error', errorText: error === undefined ? 'The run failed' : `${error.code}: ${error.message}` })
    chunks.push({ type: 'finish', finishReason: FINISH_REASONS[status], messageMetadata: metadata(event, status) })
    return chunks
  }

  return function translate (event: RunEvent): UiChunk[] {
    const chunks = closeText(event)
    switch (event.type) {
      case 'agent_started':
        agent = event.data.agent
        chunks.push({ type: 'start', messageId: event.runId, messageMetadata: metadata(event) }, { type: 'start-step' })
        break
      case 'agent_thinking':
        chunks.push(...thought(event))
        break
      case 'agent_message':
        chunks.push(...message(event))
        break
      case 'tool_executing':
        stepActed = true
        chunks.push({ type: 'tool-input-available', toolCallId: event.data.toolCallId, toolName: event.data.tool, input: event.data.args ?? {}, dynamic: true })
        break
      case 'tool_progress': {
        const { toolCallId, progress, total, message: note } = event.data
        const data = { toolCallId, progress, ...(total === undefined ? {} : { total }), ...(note === undefined ? {} : { message: note }) }
        chunks.push({ type: TOOL_PROGRESS_PART, id: toolCallId, data })
        break
      }
      case 'tool_completed':
        chunks.push(toolResult(event))
        break
      case 'agent_completed':
        chunks.push(...completed(event))
        break
    }
    return chunks
  }
}

function sseChunk (chunk: UiChunk | { type: 'error', errorText: string }): string {
  return `data: ${JSON.stringify(chunk)}\n\n`
}

/**
 * The SSE format of a UI message stream: each logged event as the chunks it translates to, then
 * `[DONE]` after the run's terminal event; a stream cut short (the token expired) ends with an
 * `error` chunk and no `[DONE]`.
 */
export function uiMessageStream (): SseFormat {
  const translate = createUiMessageTranslator()
  return {
    headers: UI_MESSAGE_STREAM_HEADERS,
    event: (stored) => translate(JSON.parse(stored.frame.toString('utf8')) as RunEvent).map(sseChunk).join(''),
    end: () => 'data: [DONE]\n\n',
    error: (code, message) => sseChunk({ type: 'error', errorText: `${code}: ${message}` })
  }
}

/** The part of a UIMessage the gateway reads: its role and its text parts. */
export interface ChatMessage {
  readonly role: string
  readonly parts: ReadonlyArray<{ readonly type: string, readonly text?: unknown }>
}

/** A message's text: its text parts, joined. */
export function messageText (message: ChatMessage): string {
  return message.parts.flatMap((part) => part.type === 'text' && typeof part.text === 'string' ? [part.text] : []).join('')
}

/**
 * What a chat request asks: the text of the last user message as `message` (undefined without
 * one), and the user and assistant messages before it that have text as `history`.
 */
export function chatInput (messages: readonly ChatMessage[]): { message: string | undefined, history: Array<{ role: 'user' | 'assistant', content: string }> } {
  const last = messages.findLastIndex((message) => message.role === 'user')
  const history: Array<{ role: 'user' | 'assistant', content: string }> = []
  for (const message of messages.slice(0, Math.max(0, last))) {
    if (message.role !== 'user' && message.role !== 'assistant') continue
    const content = messageText(message)
    if (content !== '') history.push({ role: message.role, content })
  }
  const lastMessage = messages[last]
  return { message: lastMessage === undefined ? undefined : messageText(lastMessage), history }
}
