// Shared test helpers: a fresh app per test, tokens minted independently of the code under test
// (plain HMAC, as any other service sharing the secret would), and a WebSocket test client.
import { createHmac, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { Test } from 'tap'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import type { Agent, BuildOptions } from '../src/index.js'
import { PROTOCOL, type RunEvent, type ServerMessage } from '../src/protocol.js'
import type { EventStore } from '../src/contracts.js'
import { createMemoryStore } from '../src/stores/memory-store.js'

export const TEST_SECRET = 'f3c1T9qLw0ZkVb7NxR2mYpHs8uJd4GaE6oWi5CtKzQv'
export const OTHER_SECRET = 'Nq7Wc2Lr9Xv4Tb1Ms8Kd5Gz3Hp6Yf0Je'.padEnd(44, 'x') // never the server's

export function testEnv (overrides: Record<string, string> = {}): Record<string, string> {
  return { APP_ENV: 'test', JWT_SECRET: TEST_SECRET, DEMO_STEP_DELAY_MS: '0', LOG_LEVEL: 'silent', SHUTDOWN_GRACE_MS: '0', ...overrides }
}

export async function buildApp (t: Test, options: BuildOptions = {}): Promise<FastifyInstance> {
  // Imported lazily so that plugin tests do not load the whole gateway.
  const { build } = await import('../src/app.js')
  const app = await build({ env: testEnv(), ...options })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

export async function listen (t: Test, app: FastifyInstance): Promise<{ http: string, ws: string }> {
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { http: address, ws: `${address.replace('http', 'ws')}/ws` }
}

const b64url = (value: string | Buffer): string => Buffer.from(value).toString('base64url')

export interface MintOptions {
  secret?: string
  alg?: string
  header?: Record<string, unknown>
  /** Seconds from now; null leaves `exp` out. */
  expiresIn?: number | null
  signature?: string
}

/** A JWT signed with HMAC-SHA256 over the secret's UTF-8 bytes, like jsonwebtoken or PyJWT. */
export function mint (claims: Record<string, unknown>, options: MintOptions = {}): string {
  const { secret = TEST_SECRET, alg = 'HS256', expiresIn = 3600 } = options
  const now = Math.floor(Date.now() / 1000)
  const payload = { iat: now, ...(expiresIn === null ? {} : { exp: now + expiresIn }), ...claims }
  const head = `${b64url(JSON.stringify({ alg, typ: 'JWT', ...options.header }))}.${b64url(JSON.stringify(payload))}`
  if (options.signature !== undefined) return `${head}.${options.signature}`
  const hash = alg === 'HS384' ? 'sha384' : alg === 'HS512' ? 'sha512' : 'sha256'
  return `${head}.${createHmac(hash, Buffer.from(secret, 'utf8')).update(head).digest('base64url')}`
}

/** A JWT over a payload given as JSON text, for claims JSON.stringify cannot write (1e400). */
export function mintRaw (payloadJson: string, secret = TEST_SECRET): string {
  const head = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(payloadJson)}`
  return `${head}.${createHmac('sha256', Buffer.from(secret, 'utf8')).update(head).digest('base64url')}`
}

export const tokenFor = (userId: string, extra: Record<string, unknown> = {}): string => mint({ sub: userId, ...extra })

export const randomUser = (): string => `user-${randomBytes(4).toString('hex')}`

/** A WebSocket client that queues every message so a test can await them in order. */
export class TestClient {
  readonly messages: ServerMessage[] = []
  #cursor = 0
  #waiters: Array<() => void> = []
  closed?: { code: number, reason: string }

  constructor (readonly socket: WebSocket) {
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) throw new Error('server sent a binary frame')
      this.messages.push(JSON.parse(data.toString()) as ServerMessage)
      this.#wake()
    })
    socket.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() }
      this.#wake()
    })
  }

  #wake (): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const wake of waiters) wake()
  }

  send (message: unknown): void {
    this.socket.send(typeof message === 'string' ? message : JSON.stringify(message))
  }

  /** The next message not yet consumed (optionally of a type, skipping nothing). */
  async next (timeoutMs = 5000): Promise<ServerMessage> {
    const deadline = Date.now() + timeoutMs
    while (this.#cursor >= this.messages.length) {
      if (this.closed !== undefined) throw new Error(`socket closed (${this.closed.code} ${this.closed.reason}) while waiting for a message`)
      if (Date.now() > deadline) throw new Error('timed out waiting for a message')
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()))
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
    return this.messages[this.#cursor++] as ServerMessage
  }

  async nextOf<T extends ServerMessage['type']> (type: T, timeoutMs = 5000): Promise<Extract<ServerMessage, { type: T }>> {
    const message = await this.next(timeoutMs)
    if (message.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(message)}`)
    return message as Extract<ServerMessage, { type: T }>
  }

  /** Consumes messages until one of `type` (and matching `where`) arrives; returns it. */
  async waitFor<T extends ServerMessage['type']> (type: T, where: (message: Extract<ServerMessage, { type: T }>) => boolean = () => true, timeoutMs = 5000): Promise<Extract<ServerMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const message = await this.next(Math.max(1, deadline - Date.now()))
      if (message.type === type && where(message as Extract<ServerMessage, { type: T }>)) return message as Extract<ServerMessage, { type: T }>
    }
  }

  /** Consumes messages until `agent_completed` of the run; returns that run's events. */
  async runEvents (runId: string, timeoutMs = 10_000): Promise<RunEvent[]> {
    const events: RunEvent[] = []
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const message = await this.next(Math.max(1, deadline - Date.now()))
      if ('runId' in message && 'seq' in message && message.runId === runId) {
        events.push(message)
        if (message.type === 'agent_completed') return events
      }
    }
  }

  /**
   * Reads the next `count` run events, then drops the TCP connection without a closing handshake
   * (a network that failed mid-run) and waits until it is gone. Returns the events read, so that
   * a new connection can resume after the last one.
   */
  async readThenDrop (count: number): Promise<RunEvent[]> {
    const events: RunEvent[] = []
    while (events.length < count) {
      const message = await this.next()
      if ('seq' in message) events.push(message)
    }
    this.socket.terminate()
    await once(this.socket, 'close')
    return events
  }

  async waitClosed (timeoutMs = 5000): Promise<{ code: number, reason: string }> {
    const deadline = Date.now() + timeoutMs
    while (this.closed === undefined) {
      if (Date.now() > deadline) throw new Error('timed out waiting for close')
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    return this.closed
  }

  close (): void {
    this.socket.close()
  }
}

export interface ConnectOptions {
  token?: string
  /** Send the token as the browser does, in the subprotocol list. */
  viaProtocol?: boolean
  headers?: Record<string, string>
  path?: string
  autoPong?: boolean
}

/** Opens a real WebSocket and waits for `welcome`. */
export async function connect (t: Test, wsUrl: string, options: ConnectOptions = {}): Promise<TestClient> {
  const protocols = options.viaProtocol === true && options.token !== undefined ? [PROTOCOL, `bearer.${options.token}`] : [PROTOCOL]
  const headers = { ...options.headers }
  if (options.token !== undefined && options.viaProtocol !== true) headers.authorization = `Bearer ${options.token}`
  const socket = new WebSocket(`${wsUrl}${options.path ?? ''}`, protocols, { headers, autoPong: options.autoPong ?? true })
  const client = new TestClient(socket)
  t.teardown(() => { socket.terminate() })
  await once(socket, 'open')
  await client.nextOf('welcome')
  return client
}

/** Resolves with the HTTP status and JSON body of a refused upgrade. */
export async function refusedUpgrade (wsUrl: string, headers: Record<string, string> = {}, protocols: string[] = [PROTOCOL]): Promise<{ status: number, body: { code: string, message: string } }> {
  const socket = new WebSocket(wsUrl, protocols, { headers })
  return new Promise((resolve, reject) => {
    socket.on('open', () => { socket.terminate(); reject(new Error('the upgrade was accepted')) })
    socket.on('error', () => {})
    socket.on('unexpected-response', (_request, response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => { body += chunk.toString() })
      response.on('end', () => {
        socket.terminate()
        resolve({ status: response.statusCode ?? 0, body: JSON.parse(body) as { code: string, message: string } })
      })
    })
  })
}

/** The protocol's per-run invariants; returns the problems found (empty when the run is sound). */
export function runProblems (events: readonly RunEvent[]): string[] {
  const problems: string[] = []
  events.forEach((event, index) => {
    if (event.seq !== index + 1) problems.push(`event ${index} has seq ${event.seq}`)
  })
  if (events[0]?.type !== 'agent_started') problems.push('first event is not agent_started')
  const terminals = events.filter((event) => event.type === 'agent_completed')
  if (terminals.length !== 1 || events.at(-1)?.type !== 'agent_completed') problems.push(`expected exactly one terminal event, last; got ${terminals.length}`)
  const open = new Map<string, number>()
  for (const event of events) {
    if (event.type === 'tool_executing') open.set(event.data.toolCallId, (open.get(event.data.toolCallId) ?? 0) + 1)
    if (event.type === 'tool_completed') {
      if (open.get(event.data.toolCallId) !== 1) problems.push(`tool_completed ${event.data.toolCallId} without one open tool_executing`)
      open.set(event.data.toolCallId, 0)
    }
  }
  for (const [id, count] of open) if (count !== 0) problems.push(`tool call ${id} never completed`)
  const runIds = new Set(events.map((event) => event.runId))
  if (runIds.size > 1) problems.push('events of several runs mixed')
  return problems
}

/** An agent that thinks `events` times as fast as it can (each thought about `bytes` long). */
export function firehose (events: number, bytes = 160, yieldEvery = 500): Agent {
  const filler = 'x'.repeat(bytes)
  return async (run) => {
    for (let i = 1; i <= events; i++) {
      run.think(`${i} ${filler}`)
      if (i % yieldEvery === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    return 'done'
  }
}

/** Resolves once the run has ended in the app's store. */
export async function runEnded (app: FastifyInstance, runId: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const lookup = await app.eventStore.getRun(runId)
    if (lookup.state === 'found' && lookup.meta.status !== 'running') return
    if (Date.now() > deadline) throw new Error(`run ${runId} did not end within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** The TCP socket under a ws client, to stop and resume reading from it (a slow reader). */
export function tcpOf (socket: WebSocket): { pause(): void, resume(): void } {
  return (socket as unknown as { _socket: { pause(): void, resume(): void } })._socket
}

/** A memory store whose appends wait until the test opens the gate (a store lagging behind). */
export function gatedStore (): { store: EventStore, open: () => void, fail: (err: Error) => void } {
  const inner = createMemoryStore({ historyTtlMs: 60_000 })
  let release: () => void = () => {}
  let reject: (err: Error) => void = () => {}
  let opened = new Promise<void>((resolve, fail) => { release = resolve; reject = fail })
  // A store that writes later: the memory store's synchronous appender would bypass the gate.
  const store: EventStore = {
    ...inner,
    appender: undefined,
    append: async (runId, type, dataJson) => {
      await opened
      return await inner.append(runId, type, dataJson)
    }
  }
  return {
    store,
    open: () => { release() },
    fail: (err) => {
      reject(err)
      opened = Promise.resolve()
    }
  }
}
