// A real AG-UI agent server on a real port for the tests of remote AG-UI agents: each request is
// answered by a script — AG-UI events encoded by @ag-ui/encoder, pauses, a cut connection, a hang
// — and recorded with what the server saw, including a client that went away mid-stream.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'
import { EventType, type BaseEvent, type RunAgentInput } from '@ag-ui/core'
import { EventEncoder } from '@ag-ui/encoder'

export type Step =
  | BaseEvent
  | { readonly pause: number }
  /** Destroys the connection without ending the response: the stream is cut. */
  | { readonly cut: true }
  /** Keeps the response open and silent until the client goes. */
  | { readonly hang: true }
  /** Writes bytes as they are (a malformed frame, a comment). */
  | { readonly raw: string }

export interface Reply {
  readonly status?: number
  readonly contentType?: string
  /** A body instead of an event stream. */
  readonly body?: string
  readonly steps?: readonly Step[]
  /** Waits this long before sending the headers. */
  readonly delayHeaders?: number
}

export interface Seen {
  readonly input: RunAgentInput
  readonly headers: IncomingMessage['headers']
  /** Resolves true when the client left before the response ended. */
  readonly clientLeft: Promise<boolean>
}

export interface AgUiServer {
  readonly url: string
  readonly requests: Seen[]
  /** The script of the next requests; the last one repeats. */
  reply(...replies: Array<Reply | ((input: RunAgentInput) => Reply)>): void
  /** Resolves with the next request the server receives. */
  nextRequest(): Promise<Seen>
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export async function agUiServer (t: Test): Promise<AgUiServer> {
  const encoder = new EventEncoder()
  let script: Array<Reply | ((input: RunAgentInput) => Reply)> = []
  const requests: Seen[] = []
  let waiters: Array<(seen: Seen) => void> = []

  async function answer (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as RunAgentInput
    const clientLeft = new Promise<boolean>((resolve) => { res.on('close', () => { resolve(!res.writableFinished) }) })
    const seen: Seen = { input, headers: req.headers, clientLeft }
    requests.push(seen)
    for (const wake of waiters) wake(seen)
    waiters = []
    const next = (script.length > 1 ? script.shift() : script[0]) ?? { steps: [] }
    const reply = typeof next === 'function' ? next(input) : next
    if (reply.delayHeaders !== undefined) await sleep(reply.delayHeaders)
    if (res.destroyed) return
    res.writeHead(reply.status ?? 200, { 'content-type': reply.contentType ?? 'text/event-stream', 'cache-control': 'no-cache' })
    if (reply.body !== undefined) {
      res.end(reply.body)
      return
    }
    res.flushHeaders()
    for (const step of reply.steps ?? []) {
      if (res.destroyed) return
      if ('pause' in step) await sleep(step.pause as number)
      else if ('cut' in step) { res.socket?.destroy(); return } else if ('hang' in step) { await clientLeft; return } else if ('raw' in step) res.write(step.raw)
      else res.write(encoder.encodeSSE(step))
    }
    res.end()
  }

  const server = createServer((req, res) => { answer(req, res).catch((err: unknown) => { res.destroy(err as Error) }) })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => { resolve() })
  }))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/agent`,
    requests,
    reply (...replies) { script = replies },
    nextRequest: () => new Promise((resolve) => { waiters.push(resolve) })
  }
}

/** RUN_STARTED … RUN_FINISHED around `events`, with the request's ids, as every framework sends them. */
export function run (input: RunAgentInput, events: readonly Step[], result?: unknown): Step[] {
  return [
    { type: EventType.RUN_STARTED, threadId: input.threadId, runId: input.runId },
    ...events,
    { type: EventType.RUN_FINISHED, threadId: input.threadId, runId: input.runId, ...(result === undefined ? {} : { result }) }
  ]
}
