// The `llm` agent: a model behind any OpenAI-compatible chat-completions API (OpenAI, vLLM,
// Ollama, LM Studio), through the official `openai` SDK. It streams the answer as it comes, shows
// the model's reasoning when the server sends it, lets the model call the run's tools through the
// dispatcher (which emits the tool events), and loops until a final answer or the step limit.
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai'
import type {
  ChatCompletionCreateParamsStreaming,
  ChatCompletionFunctionTool,
  ChatCompletionMessageParam
} from 'openai/resources/chat/completions'
import { Type, type Static, type TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import { RunError, type Agent, type AgentRun, type ToolInfo, type ToolOutcome } from '../contracts.js'
import { AgentInvalidError } from '../errors.js'

export interface LlmAgentOptions {
  /** Base URL of the API, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`. */
  readonly baseURL: string
  /** Sent as the bearer token; servers that need none accept any value. */
  readonly apiKey: string
  readonly model: string
  /** Most model calls in one run; a model still calling tools after them ends the run with STEP_LIMIT. */
  readonly maxSteps: number
  /** A ready client to use instead of one made from `baseURL` and `apiKey` (its own timeout and retries apply). */
  readonly client?: OpenAI
}

export interface LlmUsage {
  readonly promptTokens: number
  readonly completionTokens: number
  readonly totalTokens: number
}

/** The run's output. */
export interface LlmAnswer {
  readonly answer: string
  /** The model as the server names it (e.g. with its version), or the configured one. */
  readonly model: string
  /** Model calls made. */
  readonly steps: number
  /** Tokens summed over every call, when the server reports them. */
  readonly usage?: LlmUsage
}

const SYSTEM_PROMPT = 'You are an assistant whose user watches every step of your work live. ' +
  'When one of your tools can give an exact answer (arithmetic, unit conversions, reference facts), ' +
  'call it rather than guess. Then answer briefly and plainly, in the language of the question.'

// Until the response headers arrive, per attempt: a local server may first load the model. Once
// the answer streams, the run's deadline (RUN_TIMEOUT_MS) is what bounds it.
const REQUEST_TIMEOUT_MS = 60_000
// One retry hides a dropped connection or a passing 5xx/429 before anything was shown; the SDK
// never retries once the answer has started streaming, so nothing is said twice. More retries
// with exponential backoff would leave the user watching a silent run.
const MAX_RETRIES = 1
// Reasoning arrives token by token: a thought is a paragraph, or the sentences gathered once
// they pass this length, so the timeline shows readable steps rather than one event per token.
const THOUGHT_LENGTH = 240
const THOUGHT_HARD_LIMIT = 1000
const DETAIL_LENGTH = 200

// What the agent reads of a streamed chunk. `reasoning_content` (DeepSeek, vLLM) and `reasoning`
// (OpenRouter, Ollama) are not in the OpenAI schema; servers vary in sending null for absent fields.
const nullable = <T extends TSchema>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]))
const ToolCallDelta = Type.Object({
  index: Type.Optional(Type.Integer({ minimum: 0 })),
  id: nullable(Type.String()),
  function: nullable(Type.Object({ name: nullable(Type.String()), arguments: nullable(Type.String()) }))
})
const Chunk = Type.Object({
  model: nullable(Type.String()),
  choices: nullable(Type.Array(Type.Object({
    delta: nullable(Type.Object({
      content: nullable(Type.String()),
      reasoning_content: nullable(Type.String()),
      reasoning: nullable(Type.String()),
      tool_calls: nullable(Type.Array(ToolCallDelta))
    })),
    finish_reason: nullable(Type.String())
  }))),
  usage: nullable(Type.Object({
    prompt_tokens: Type.Optional(Type.Number()),
    completion_tokens: Type.Optional(Type.Number()),
    total_tokens: Type.Optional(Type.Number())
  }))
})
type Chunk = Static<typeof Chunk>
const HistoryEntries = Type.Array(Type.Object({ role: Type.Union([Type.Literal('user'), Type.Literal('assistant')]), content: Type.String() }))

interface ToolCall {
  id: string
  name: string
  arguments: string
}

interface Step {
  readonly content: string
  readonly calls: readonly ToolCall[]
  readonly model?: string
  readonly usage?: LlmUsage
}

/** Gathers streamed reasoning into thoughts: whole paragraphs, or sentences once they are long enough. */
class ThoughtBuffer {
  #pending = ''
  readonly #think: (thought: string) => void

  constructor (think: (thought: string) => void) {
    this.#think = think
  }

  add (text: string): void {
    this.#pending += text
    for (let cut = cutPoint(this.#pending); cut > 0; cut = cutPoint(this.#pending)) {
      this.#emit(this.#pending.slice(0, cut))
      this.#pending = this.#pending.slice(cut)
    }
  }

  flush (): void {
    this.#emit(this.#pending)
    this.#pending = ''
  }

  #emit (text: string): void {
    const thought = text.trim()
    if (thought !== '') this.#think(thought)
  }
}

/** Where the pending reasoning can be cut into a thought, or 0 when it should wait for more. */
function cutPoint (text: string): number {
  const paragraph = /\n\s*\n/.exec(text)
  if (paragraph !== null && text.slice(0, paragraph.index).trim() !== '') return paragraph.index + paragraph[0].length
  if (text.length < THOUGHT_LENGTH) return 0
  let sentenceEnd = 0
  for (const match of text.matchAll(/[.!?…]["'”’)\]]*\s+|[。！？]/g)) sentenceEnd = match.index + match[0].length
  if (sentenceEnd > 0) return sentenceEnd
  if (text.length < THOUGHT_HARD_LIMIT) return 0
  const space = text.lastIndexOf(' ')
  return space > 0 ? space + 1 : text.length
}

/** The tools as function definitions; the schemas are TypeBox's JSON Schema without its own keys. */
function functionDefinitions (tools: readonly ToolInfo[]): ChatCompletionFunctionTool[] {
  return tools.map(({ name, description, parameters }) => ({
    type: 'function',
    function: {
      name,
      description,
      parameters: JSON.parse(JSON.stringify(parameters, (key, value: unknown) => (key.startsWith('~') ? undefined : value))) as Record<string, unknown>
    }
  }))
}

/**
 * Arguments are handed to the dispatcher as the model wrote them: JSON that does not parse is
 * passed on as its raw string, so the dispatcher answers INVALID_ARGS, the user sees the failed
 * call, and the model reads the error and can try again.
 */
function parseArguments (text: string): unknown {
  if (text.trim() === '') return {}
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

/** What the model reads back from a call: the result, or the error. */
function toolMessage (outcome: ToolOutcome): string {
  return JSON.stringify(outcome.status === 'success' ? { status: outcome.status, result: outcome.result } : { status: outcome.status, error: outcome.error })
}

function addUsage (total: LlmUsage | undefined, step: LlmUsage | undefined): LlmUsage | undefined {
  if (step === undefined) return total
  return {
    promptTokens: (total?.promptTokens ?? 0) + step.promptTokens,
    completionTokens: (total?.completionTokens ?? 0) + step.completionTokens,
    totalTokens: (total?.totalTokens ?? 0) + step.totalTokens
  }
}

function usageOf (usage: NonNullable<Chunk['usage']>): LlmUsage {
  const promptTokens = usage.prompt_tokens ?? 0
  const completionTokens = usage.completion_tokens ?? 0
  return { promptTokens, completionTokens, totalTokens: usage.total_tokens ?? promptTokens + completionTokens }
}

/** A provider failure as a RunError the user may read: a clear code, a short message, never the key. */
function providerError (err: unknown, model: string, apiKey: string): RunError | undefined {
  if (err instanceof APIConnectionTimeoutError) return new RunError('LLM_UNAVAILABLE', 'The model server did not answer in time')
  if (err instanceof APIConnectionError) return new RunError('LLM_UNAVAILABLE', 'Could not connect to the model server')
  if (err instanceof SyntaxError) return new RunError('LLM_BAD_RESPONSE', 'The model server sent a malformed stream')
  if (!isApiError(err)) return undefined
  // An error sent inside the stream has no HTTP status; vLLM puts one in its `code`.
  const code: unknown = err.code
  const status = err.status ?? (typeof code === 'number' ? code : undefined)
  if (status === undefined) return new RunError('LLM_UNAVAILABLE', 'The model server reported an error in the middle of the answer')
  if (status === 401 || status === 403) return new RunError('LLM_AUTH', `The model server refused the credentials (${status})`)
  if (status === 429) return new RunError('LLM_RATE_LIMITED', 'The model server is rate-limiting requests; try again later')
  if (status === 408 || status >= 500) return new RunError('LLM_UNAVAILABLE', `The model server failed (${status})`)
  const detail = providerDetail(err, apiKey)
  const what = status === 404 ? `has no model "${model}" or no chat completions endpoint (404)` : `rejected the request (${status})`
  return new RunError('LLM_BAD_REQUEST', `The model server ${what}${detail === '' ? '' : `: ${detail}`}`)
}

// A type guard, so that the error keeps its declared types (`instanceof` infers them as any).
const isApiError = (err: unknown): err is APIError => err instanceof APIError

/** The server's own short explanation of a refused request (an unknown model, too long a context). */
function providerDetail (err: APIError, apiKey: string): string {
  const message: unknown = (err.error as { message?: unknown } | null | undefined)?.message
  if (typeof message !== 'string') return ''
  let detail = message.replace(/\s+/g, ' ').trim()
  // Some servers quote what they were sent; a key must never reach the user.
  if (apiKey.length >= 8) detail = detail.replaceAll(apiKey, '[redacted]')
  return detail.length > DETAIL_LENGTH ? `${detail.slice(0, DETAIL_LENGTH - 1)}…` : detail
}

/** The chunks of a stream; what fails while reading it (not the caller's own errors) goes through `fail`. */
async function * chunksOf (stream: AsyncIterable<unknown>, fail: (err: unknown) => unknown): AsyncGenerator<unknown> {
  try {
    for await (const chunk of stream) yield chunk
  } catch (err) {
    throw fail(err)
  }
}

/** The `llm` agent for one model on one server. */
export function createLlmAgent (options: LlmAgentOptions): Agent {
  const { baseURL, apiKey, model, maxSteps } = options
  if (typeof model !== 'string' || model.trim() === '') throw new AgentInvalidError('the llm agent needs a model name')
  if (!Number.isInteger(maxSteps) || maxSteps < 1) throw new AgentInvalidError('the llm agent\'s maxSteps must be an integer >= 1')
  if (options.client === undefined && (typeof baseURL !== 'string' || !/^https?:\/\/./.test(baseURL))) {
    throw new AgentInvalidError('the llm agent\'s baseURL must be an http(s) URL')
  }
  const client = options.client ?? new OpenAI({
    baseURL,
    apiKey,
    timeout: REQUEST_TIMEOUT_MS,
    maxRetries: MAX_RETRIES,
    // Configuration comes from the gateway's config alone, not from the SDK's OPENAI_* variables;
    // failures are reported (and logged) by the agent, not printed to the console by the SDK.
    organization: null,
    project: null,
    adminAPIKey: null,
    webhookSecret: null,
    logLevel: 'off'
  })
  const validChunk = Compile(Chunk)
  const validHistory = Compile(HistoryEntries)

  function conversation (run: AgentRun): ChatCompletionMessageParam[] {
    const messages: ChatCompletionMessageParam[] = [{ role: 'system', content: SYSTEM_PROMPT }]
    const history = run.input.history
    if (validHistory.Check(history)) {
      for (const { role, content } of history) messages.push({ role, content })
    } else if (history !== undefined) {
      run.log.debug('input.history is not a list of { role: user|assistant, content } and was ignored')
    }
    messages.push({ role: 'user', content: run.input.message })
    return messages
  }

  /** One model call: streams the answer and reasoning, gathers tool calls. Undefined when the run was stopped. */
  async function callModel (run: AgentRun, messages: ChatCompletionMessageParam[], tools: ChatCompletionFunctionTool[]): Promise<Step | undefined> {
    const { signal } = run
    const request: ChatCompletionCreateParamsStreaming = {
      model,
      messages,
      stream: true,
      stream_options: { include_usage: true },
      ...(tools.length > 0 ? { tools } : {})
    }
    // A summary of the provider's error is logged (never its message or body, which can echo the
    // API key); the user reads the RunError it maps to.
    const fail = (err: unknown, otherwise: unknown): unknown => {
      const { status, code, type } = (typeof err === 'object' && err !== null ? err : {}) as { status?: unknown, code?: unknown, type?: unknown }
      run.log.warn({ provider: { error: err instanceof Error ? err.name : typeof err, status, code, type } }, 'the model call failed')
      return providerError(err, model, apiKey) ?? otherwise
    }
    let stream: AsyncIterable<unknown>
    try {
      stream = await client.chat.completions.create(request, { signal })
    } catch (err) {
      if (signal.aborted) return undefined
      throw fail(err, err)
    }
    const thoughts = new ThoughtBuffer((thought) => { run.think(thought) })
    const calls = new Map<number, ToolCall>()
    let content = ''
    let finished = false
    let reported: string | undefined
    let usage: LlmUsage | undefined
    // Reading fails with what the SDK could not parse, an error event, or a cut connection.
    const broken = new RunError('LLM_UNAVAILABLE', 'The connection to the model server broke off')
    for await (const chunk of chunksOf(stream, (err) => fail(err, broken))) {
      if (!validChunk.Check(chunk)) throw new RunError('LLM_BAD_RESPONSE', 'The model server sent something that is not a chat completion chunk')
      reported = chunk.model ?? reported
      if (chunk.usage != null) usage = usageOf(chunk.usage)
      const choice = chunk.choices?.[0]
      if (choice === undefined) continue
      const delta = choice.delta ?? {}
      const reasoning = delta.reasoning_content ?? delta.reasoning
      if (reasoning != null && reasoning !== '') thoughts.add(reasoning)
      if (delta.content != null && delta.content !== '') {
        thoughts.flush()
        content += delta.content
        run.say(delta.content)
      }
      for (const [position, part] of (delta.tool_calls ?? []).entries()) {
        thoughts.flush()
        const index = part.index ?? position
        const call = calls.get(index) ?? { id: '', name: '', arguments: '' }
        calls.set(index, call)
        if (call.id === '' && part.id != null) call.id = part.id
        if (call.name === '' && part.function?.name != null) call.name = part.function.name
        call.arguments += part.function?.arguments ?? ''
      }
      if (choice.finish_reason != null) finished = true
    }
    thoughts.flush()
    if (signal.aborted) return undefined
    if (!finished && content === '' && calls.size === 0) {
      throw new RunError('LLM_BAD_RESPONSE', 'The model server ended the stream without an answer')
    }
    const ordered = [...calls.entries()].sort(([a], [b]) => a - b).map(([index, call]) => {
      if (call.name === '') throw new RunError('LLM_BAD_RESPONSE', 'The model server sent a tool call without a name')
      // The tool message must name its call; a few servers leave ids out.
      return { ...call, id: call.id === '' ? `call_${index}` : call.id }
    })
    return { content, calls: ordered, ...(reported === undefined ? {} : { model: reported }), ...(usage === undefined ? {} : { usage }) }
  }

  return async function llmAgent (run: AgentRun): Promise<LlmAnswer | undefined> {
    const { signal, tools } = run
    const messages = conversation(run)
    const definitions = functionDefinitions(tools.list())
    let usage: LlmUsage | undefined
    for (let steps = 1; ; steps++) {
      const step = await callModel(run, messages, definitions)
      if (step === undefined) return undefined
      usage = addUsage(usage, step.usage)
      if (step.calls.length === 0) {
        return { answer: step.content, model: step.model ?? model, steps, ...(usage === undefined ? {} : { usage }) }
      }
      if (steps >= maxSteps) throw new RunError('STEP_LIMIT', `The model was still calling tools after ${maxSteps} model calls, the limit of a run`)
      messages.push({
        role: 'assistant',
        content: step.content === '' ? null : step.content,
        tool_calls: step.calls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }))
      })
      for (const call of step.calls) {
        const outcome = await tools.call(call.name, parseArguments(call.arguments))
        if (signal.aborted) return undefined
        messages.push({ role: 'tool', tool_call_id: call.id, content: toolMessage(outcome) })
      }
    }
  }
}
