// A remote AG-UI agent as a gateway agent: the run is POSTed as a RunAgentInput, and the AG-UI
// events that stream back become this run's events (docs/integrations.md#remote-ag-ui-agents has
// the mapping). The stream is read by @ag-ui/client's own HTTP and SSE parsing and every event is
// checked against @ag-ui/core's schemas; what this file adds is what a gateway needs around them:
// a status and content-type check before parsing, a stall timer, cancellation that closes the
// request, and a body that cannot leak the unhandled rejection HttpAgent 1.0 leaks when a stream
// is cut (ag-ui-protocol/ag-ui#2510).
import { EventType, PROTOCOL_VERSION, contentToText, type Message, type RunAgentInput } from '@ag-ui/core'
import { EventSchemas } from '@ag-ui/core/schemas'
import { runHttpRequest, transformHttpEventStream } from '@ag-ui/client'
import { newId } from '../ids.js'
import { RunError, type Agent, type AgentRun, type ExternalToolCall } from '../contracts.js'
import { AgentInvalidError, AgUiRunError } from '../errors.js'

export interface AgUiAgentOptions {
  /** The agent's endpoint: where a RunAgentInput is POSTed (http or https). */
  readonly url: string
  /** Sent with every request, e.g. `{ Authorization: 'Bearer …' }`. Treated as secrets: never logged. */
  readonly headers?: Readonly<Record<string, string>>
  /** Longest wait for the response headers, then between two pieces of the stream. Default 60 000. */
  readonly timeoutMs?: number
}

export const AG_UI_DEFAULT_TIMEOUT_MS = 60_000
/** How much of an error body goes into the run's error message. */
const BODY_EXCERPT = 200
/** Longest message of the remote's that is passed on. */
const MESSAGE_LENGTH = 500
const KNOWN_TYPES: ReadonlySet<string> = new Set(Object.values(EventType))
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

function clip (text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * What is wrong with the options, in words that name the field and never a header's value, or
 * undefined. AG_UI_AGENTS entries are checked with it too.
 */
export function agUiOptionsProblem (options: unknown): string | undefined {
  if (!isRecord(options)) return 'must be an object { url, headers?, timeoutMs? }'
  let url: URL | undefined
  try {
    url = typeof options.url === 'string' ? new URL(options.url) : undefined
  } catch {
    url = undefined
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) return 'url must be an http(s) URL'
  if (options.headers !== undefined) {
    if (!isRecord(options.headers)) return 'headers must be an object of strings'
    for (const [name, value] of Object.entries(options.headers)) {
      if (!HEADER_NAME.test(name)) return `header name "${clip(name, 64)}" is not a valid HTTP header name`
      if (typeof value !== 'string' || /[\r\n\0]/.test(value)) return `header "${name}" must be a string on one line`
    }
  }
  const { timeoutMs } = options
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 86_400_000)) {
    return 'timeoutMs must be an integer from 1 to 86400000'
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// The request

function historyMessages (history: unknown): Message[] {
  if (!Array.isArray(history)) return []
  const messages: Message[] = []
  for (const entry of history) {
    if (!isRecord(entry) || typeof entry.content !== 'string') continue
    if (entry.role === 'user') messages.push({ id: newId(), role: 'user', content: entry.content })
    else if (entry.role === 'assistant') messages.push({ id: newId(), role: 'assistant', content: entry.content })
  }
  return messages
}

function contextItems (context: unknown): RunAgentInput['context'] {
  if (!Array.isArray(context)) return []
  return context.filter((item): item is { description: string, value: string } =>
    isRecord(item) && typeof item.description === 'string' && typeof item.value === 'string')
}

/**
 * The run as a RunAgentInput. A run that came in through the gateway's own AG-UI endpoint carries
 * the client's conversation, state, context and forwardedProps in `input.agUi`: they go on as
 * they are. Otherwise the conversation is `input.history` plus `input.message`, and what else the
 * client sent (besides `state` and `context`) is `forwardedProps`.
 */
export function runAgentInput (run: Pick<AgentRun, 'input' | 'context'>): RunAgentInput {
  const { message, history, state, context, agUi, ...rest } = run.input
  const fromAgUi = isRecord(agUi) ? agUi : undefined
  const messages = Array.isArray(fromAgUi?.messages)
    ? fromAgUi.messages as Message[]
    : [...historyMessages(history), { id: newId(), role: 'user' as const, content: String(message) }]
  return {
    threadId: run.context.threadId,
    runId: run.context.runId,
    protocolVersion: PROTOCOL_VERSION,
    messages,
    state: fromAgUi !== undefined ? fromAgUi.state ?? {} : state ?? {},
    context: contextItems(fromAgUi !== undefined ? fromAgUi.context : context),
    tools: [],
    forwardedProps: fromAgUi !== undefined ? fromAgUi.forwardedProps ?? {} : rest
  }
}

// ---------------------------------------------------------------------------------------------
// The stream

interface Connection {
  /** Stops the request: the remote sees its client go. */
  readonly controller: AbortController
  /** Why reading ended early, when it did. */
  broken?: 'stalled' | 'cut'
  timer?: NodeJS.Timeout
}

function armStall (connection: Connection, timeoutMs: number): void {
  clearTimeout(connection.timer)
  connection.timer = setTimeout(() => {
    connection.broken ??= 'stalled'
    connection.controller.abort(new RunError(AgUiRunError.STALLED, `The AG-UI agent sent nothing for ${timeoutMs} ms`))
  }, timeoutMs)
}

/**
 * The response body, re-streamed so that its end is always a clean close: an error of the
 * connection is recorded on `connection` instead of erroring the stream, since @ag-ui/client
 * cancels the reader of an errored stream and rethrows that cancel's rejection where nothing
 * catches it. Every piece received re-arms the stall timer (keep-alive comments too).
 */
function guardedBody (body: ReadableStream<Uint8Array>, connection: Connection, timeoutMs: number): ReadableStream<Uint8Array> {
  const reader = body.getReader()
  return new ReadableStream<Uint8Array>({
    async pull (controller) {
      try {
        const { done, value } = await reader.read()
        if (done) {
          controller.close()
          return
        }
        armStall(connection, timeoutMs)
        controller.enqueue(value)
      } catch {
        connection.broken ??= 'cut'
        controller.close()
      }
    },
    cancel () {
      reader.cancel().catch(() => { /* the connection is being dropped either way */ })
    }
  })
}

/** The first few kilobytes of an error body, as text: a huge or endless one is not read to its end. */
async function bodyStart (response: Response): Promise<string> {
  const reader = (response.body as ReadableStream<Uint8Array> | null)?.getReader()
  if (reader === undefined) return ''
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    while (size < 4096) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      size += value.byteLength
    }
  } catch {
    // What arrived before the error is excerpt enough.
  } finally {
    reader.cancel().catch(() => {})
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Connects; throws the RunError of a remote that cannot be used. */
async function open (run: AgentRun, url: URL, options: AgUiAgentOptions, input: RunAgentInput, signal: AbortSignal, connection: Connection, timeoutMs: number): Promise<Response> {
  let response: Response
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { ...options.headers, 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(input),
      signal
    })
  } catch (err) {
    if (connection.broken === 'stalled') throw new RunError(AgUiRunError.STALLED, `The AG-UI agent did not answer within ${timeoutMs} ms`)
    if (signal.aborted) throw signal.reason
    run.log.warn({ err }, 'could not connect to the AG-UI agent')
    throw new RunError(AgUiRunError.UNREACHABLE, `Could not connect to the AG-UI agent at ${url.origin}`)
  }
  if (!response.ok) {
    const excerpt = clip(await bodyStart(response), BODY_EXCERPT)
    throw new RunError(AgUiRunError.HTTP_STATUS, `The AG-UI agent answered ${response.status}${excerpt === '' ? '' : `: ${excerpt}`}`)
  }
  const type = response.headers.get('content-type') ?? ''
  if (type.split(';')[0]?.trim().toLowerCase() !== 'text/event-stream' || response.body === null) {
    await response.body?.cancel().catch(() => {})
    throw new RunError(AgUiRunError.NOT_SSE, `The AG-UI agent answered with ${type === '' ? 'no content type' : clip(type, 80)}, not an event stream (text/event-stream)`)
  }
  return response
}

// ---------------------------------------------------------------------------------------------
// The mapping

interface RemoteToolCall {
  readonly name: string
  args: string
  handle?: ExternalToolCall
}

type Ending = { readonly output: unknown } | undefined

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** Turns the remote's events into the run's, in order; says when the run has ended. */
class Translator {
  readonly #run: AgentRun
  readonly #calls = new Map<string, RemoteToolCall>()
  /** The open reasoning message: its text so far. */
  #reasoning: string | undefined
  /** The streaming TOOL_CALL_CHUNK call, until another event ends it. */
  #chunkCall: string | undefined
  #textMessage: string | undefined
  #lastText = ''
  #steps = 0
  #step: number | undefined
  #state: unknown

  constructor (run: AgentRun) {
    this.#run = run
  }

  handle (raw: unknown): Ending {
    const type = isRecord(raw) && typeof raw.type === 'string' ? raw.type : ''
    if (!KNOWN_TYPES.has(type)) {
      this.#run.log.debug({ type: clip(type, 64) }, 'an AG-UI event type this gateway does not know was dropped')
      return undefined
    }
    const checked = EventSchemas.safeParse(raw)
    if (!checked.success) {
      const issue = checked.error.issues[0]
      const where = issue === undefined || issue.path.length === 0 ? '' : `${issue.path.join('.')}: `
      throw new RunError(AgUiRunError.BAD_EVENT, `The AG-UI agent sent a malformed ${type} event (${where}${issue?.message ?? 'invalid'})`)
    }
    const event = checked.data
    if (event.type !== EventType.TOOL_CALL_CHUNK) this.#endChunkCall()
    if (!event.type.startsWith('REASONING_')) this.#flushReasoning()
    switch (event.type) {
      case EventType.TEXT_MESSAGE_START:
        this.#startText(event.messageId)
        return undefined
      case EventType.TEXT_MESSAGE_CONTENT:
        this.#text(event.messageId, event.delta)
        return undefined
      case EventType.TEXT_MESSAGE_CHUNK:
        this.#text(event.messageId ?? this.#textMessage ?? newId(), event.delta ?? '')
        return undefined
      case EventType.REASONING_MESSAGE_START:
        this.#reasoning = ''
        return undefined
      case EventType.REASONING_MESSAGE_CONTENT:
      case EventType.REASONING_MESSAGE_CHUNK:
        this.#reasoning = (this.#reasoning ?? '') + (event.delta ?? '')
        return undefined
      case EventType.REASONING_MESSAGE_END:
      case EventType.REASONING_END:
        this.#flushReasoning()
        return undefined
      case EventType.STEP_STARTED:
        this.#step = ++this.#steps
        this.#run.think(`Step: ${event.stepName}`, this.#step)
        return undefined
      case EventType.STEP_FINISHED:
        this.#step = undefined
        return undefined
      case EventType.TOOL_CALL_START:
        this.#calls.set(event.toolCallId, { name: event.toolCallName, args: '' })
        return undefined
      case EventType.TOOL_CALL_ARGS:
        this.#args(event.toolCallId, event.delta)
        return undefined
      case EventType.TOOL_CALL_CHUNK:
        this.#chunk(event.toolCallId, event.toolCallName, event.delta)
        return undefined
      case EventType.TOOL_CALL_END:
        this.#openCall(event.toolCallId)
        return undefined
      case EventType.TOOL_CALL_RESULT: {
        const handle = this.#openCall(event.toolCallId)
        const content = typeof event.content === 'string' ? event.content : contentToText(event.content)
        handle?.complete(parseJson(content))
        return undefined
      }
      case EventType.STATE_SNAPSHOT:
        this.#state = event.snapshot
        return undefined
      case EventType.RUN_ERROR:
        throw new RunError(AgUiRunError.RUN_ERROR, clip(event.message, MESSAGE_LENGTH) || 'The AG-UI agent reported an error')
      case EventType.RUN_FINISHED:
        return this.#finish(event.result, event.outcome)
      default:
        // RUN_STARTED (the gateway writes its own), STATE_DELTA, MESSAGES_SNAPSHOT, ACTIVITY_*,
        // CUSTOM, RAW, REASONING_START/ENCRYPTED_VALUE, SUBAGENT_*: nothing the user's events carry.
        return undefined
    }
  }

  /** Ends what is still open when the run ends without RUN_FINISHED. */
  close (): void {
    this.#endChunkCall()
    this.#flushReasoning()
  }

  #startText (messageId: string): void {
    if (this.#textMessage !== messageId) this.#lastText = ''
    this.#textMessage = messageId
  }

  #text (messageId: string, delta: string): void {
    this.#startText(messageId)
    this.#lastText += delta
    if (delta !== '') this.#run.say(delta)
  }

  #flushReasoning (): void {
    const thought = this.#reasoning
    this.#reasoning = undefined
    if (thought === undefined || thought.trim() === '') return
    this.#textMessage = undefined
    this.#run.think(thought, this.#step)
  }

  #args (toolCallId: string, delta: string): void {
    const call = this.#calls.get(toolCallId)
    if (call === undefined || call.handle !== undefined) {
      this.#run.log.debug({ toolCallId: clip(toolCallId, 64) }, 'TOOL_CALL_ARGS of a call that is not streaming was dropped')
      return
    }
    call.args += delta
  }

  #chunk (toolCallId: string | undefined, name: string | undefined, delta: string | undefined): void {
    const id = toolCallId ?? this.#chunkCall
    if (id === undefined) throw new RunError(AgUiRunError.BAD_EVENT, 'The AG-UI agent sent a TOOL_CALL_CHUNK without a toolCallId')
    if (id !== this.#chunkCall) {
      this.#endChunkCall()
      if (name === undefined) throw new RunError(AgUiRunError.BAD_EVENT, 'The AG-UI agent sent a first TOOL_CALL_CHUNK without a toolCallName')
      this.#calls.set(id, { name, args: '' })
      this.#chunkCall = id
    }
    if (delta !== undefined) this.#args(id, delta)
  }

  #endChunkCall (): void {
    if (this.#chunkCall === undefined) return
    const id = this.#chunkCall
    this.#chunkCall = undefined
    this.#openCall(id)
  }

  /** Reports the call (once its arguments are complete); undefined for a call never started. */
  #openCall (toolCallId: string): ExternalToolCall | undefined {
    const call = this.#calls.get(toolCallId)
    if (call === undefined) {
      this.#run.log.debug({ toolCallId: clip(toolCallId, 64) }, 'an AG-UI tool event for a call never started was dropped')
      return undefined
    }
    this.#textMessage = undefined
    call.handle ??= this.#run.tools.external(call.name, call.args.trim() === '' ? {} : parseJson(call.args))
    return call.handle
  }

  #finish (result: unknown, outcome: { type: string } | undefined): Ending {
    this.close()
    for (const call of this.#calls.values()) {
      const handle = call.handle ?? this.#run.tools.external(call.name, call.args.trim() === '' ? {} : parseJson(call.args))
      handle.fail(AgUiRunError.NO_RESULT, 'The agent finished its run without a result for this call', 'cancelled')
    }
    if (outcome?.type === 'cancelled') throw new RunError(AgUiRunError.CANCELLED, 'The AG-UI agent cancelled its run')
    const output: Record<string, unknown> = { answer: this.#lastText }
    if (result !== undefined && result !== null) output.result = result
    if (this.#state !== undefined) output.state = this.#state
    if (outcome?.type === 'interrupt') output.interrupt = outcome
    return { output }
  }
}

// ---------------------------------------------------------------------------------------------

/** A gateway agent that runs the AG-UI agent at `url`; throws AGW_ERR_AGENT_INVALID for bad options. */
export function createAgUiAgent (options: AgUiAgentOptions): Agent {
  const problem = agUiOptionsProblem(options)
  if (problem !== undefined) throw new AgentInvalidError(`the AG-UI agent's options: ${problem}`)
  const url = new URL(options.url)
  const timeoutMs = options.timeoutMs ?? AG_UI_DEFAULT_TIMEOUT_MS
  return async function agUiRemote (run: AgentRun): Promise<unknown> {
    const connection: Connection = { controller: new AbortController() }
    const signal = AbortSignal.any([run.signal, connection.controller.signal])
    const translator = new Translator(run)
    let subscription: { unsubscribe(): void } | undefined
    armStall(connection, timeoutMs)
    try {
      const response = await open(run, url, options, runAgentInput(run), signal, connection, timeoutMs)
      const body = guardedBody(response.body as ReadableStream<Uint8Array>, connection, timeoutMs)
      const guarded = new Response(body, { status: response.status, headers: response.headers })
      const events = transformHttpEventStream(runHttpRequest(async () => guarded))
      return await new Promise<unknown>((resolve, reject) => {
        let settled = false
        const settle = (fn: () => void): void => {
          if (settled) return
          settled = true
          fn()
        }
        subscription = events.subscribe({
          next (event) {
            if (settled) return
            try {
              const ending = translator.handle(event)
              if (ending !== undefined) settle(() => { resolve(ending.output) })
            } catch (err) {
              settle(() => { reject(err instanceof Error ? err : new Error(String(err))) })
            }
          },
          error (err: unknown) {
            settle(() => { reject(new RunError(AgUiRunError.BAD_EVENT, `The AG-UI agent sent something that is not an AG-UI event stream (${clip(err instanceof Error ? err.message : String(err), 120)})`)) })
          },
          complete () {
            settle(() => {
              translator.close()
              if (connection.broken === 'stalled') reject(new RunError(AgUiRunError.STALLED, `The AG-UI agent sent nothing for ${timeoutMs} ms`))
              else if (run.signal.aborted) reject(run.signal.reason as Error)
              else if (connection.broken === 'cut') reject(new RunError(AgUiRunError.STREAM_ENDED, 'The connection to the AG-UI agent broke off before its run finished'))
              else reject(new RunError(AgUiRunError.STREAM_ENDED, 'The AG-UI agent ended its stream without finishing its run (no RUN_FINISHED)'))
            })
          }
        })
        if (settled) subscription.unsubscribe()
      })
    } finally {
      clearTimeout(connection.timer)
      subscription?.unsubscribe()
      // Done reading, whichever way: the request goes, so the remote sees its client leave.
      connection.controller.abort()
    }
  }
}
