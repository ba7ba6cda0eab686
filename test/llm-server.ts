// An OpenAI-compatible chat-completions server for the tests (node:http on port 0): each test
// scripts its answers — streamed text, reasoning, tool calls in fragments — and reads back every
// request it received. The tests of the `llm` agent and of MCP tools share it.
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'

/** The model name the server reports in its chunks. */
export const SERVED_MODEL = 'test-model-2026-01'

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export interface Received {
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly body: any
  /** The client closed the connection before the answer was complete. */
  aborted: boolean
}

export type Respond = (request: Received, res: ServerResponse, index: number) => void | Promise<void>

export interface LlmServer {
  readonly baseURL: string
  readonly requests: Received[]
}

/** An OpenAI-compatible server: POST /v1/chat/completions, answered by `respond`; records every request. */
export async function llmServer (t: Test, respond: Respond): Promise<LlmServer> {
  const requests: Received[] = []
  const server = createServer((req, res) => {
    let text = ''
    req.setEncoding('utf8')
    req.on('data', (part: string) => { text += part })
    req.on('end', () => {
      const received: Received = { url: req.url ?? '', headers: req.headers, body: JSON.parse(text === '' ? 'null' : text), aborted: false }
      requests.push(received)
      res.on('close', () => { if (!res.writableFinished) received.aborted = true })
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404).end()
        return
      }
      void Promise.resolve(respond(received, res, requests.length - 1)).catch((err: unknown) => { res.destroy(err as Error) })
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, requests }
}

export const chunk = (delta: Record<string, unknown>, finish: string | null = null): unknown => ({
  id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1767225600, model: SERVED_MODEL,
  choices: [{ index: 0, delta, finish_reason: finish }]
})
export const usage = (prompt: number, completion: number): unknown => ({
  id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1767225600, model: SERVED_MODEL,
  choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
})
/** The chunks of an answer streamed in `pieces`, with usage at the end. */
export const answer = (pieces: string[], tokens: [number, number] = [20, 5]): unknown[] => [
  chunk({ role: 'assistant', content: '' }),
  ...pieces.map((piece) => chunk({ content: piece })),
  chunk({}, 'stop'),
  usage(...tokens)
]
/** A tool call as OpenAI streams it: id and name first, then the arguments in fragments. */
export const toolCall = (id: string, name: string, fragments: string[], index = 0): unknown[] => [
  chunk({ tool_calls: [{ index, id, type: 'function', function: { name, arguments: '' } }] }),
  ...fragments.map((fragment) => chunk({ tool_calls: [{ index, function: { arguments: fragment } }] }))
]

/** Streams `payloads` as server-sent events (objects as JSON, strings as they are), then [DONE]. */
export async function sse (res: ServerResponse, payloads: unknown[], gapMs = 0): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  for (const payload of payloads) {
    if (res.destroyed) return
    res.write(`data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`)
    if (gapMs > 0) await sleep(gapMs)
  }
  res.end('data: [DONE]\n\n')
}

