// What a request holds, and when it lets go — on a real port: a connection slot is taken only by
// what becomes a sink and given back by what does not; a stream lives no longer than its token;
// a client that breaks the WebSocket protocol is logged as such, not as a server failure.
import { connect as netConnect } from 'node:net'
import { Writable } from 'node:stream'
import t from 'tap'
import type { Agent } from '../../src/index.js'
import { PROTOCOL } from '../../src/protocol.js'
import { buildApp, connect, listen, mint, testEnv, tokenFor } from '../helpers.js'

const waitForCancel: Agent = async (run) => {
  run.think('waiting')
  await new Promise((resolve) => { run.signal.addEventListener('abort', resolve) })
}

const auth = (user: string, expiresIn?: number): Record<string, string> =>
  ({ authorization: `Bearer ${expiresIn === undefined ? tokenFor(user) : mint({ sub: user }, { expiresIn })}` })

/** Starts a run over HTTP and returns its id. */
async function startRun (http: string, user: string): Promise<string> {
  const started = await fetch(`${http}/v1/runs`, { method: 'POST', headers: { ...auth(user), 'content-type': 'application/json' }, body: JSON.stringify({ input: { message: 'wait' } }) })
  return (await started.json() as { runId: string }).runId
}

t.test('a plain GET /ws is answered 426 before any connection slot is reserved', async (t) => {
  const app = await buildApp(t, { agents: { waitForCancel }, env: testEnv({ MAX_CONNECTIONS_PER_USER: '1' }) })
  const { http, ws } = await listen(t, app)
  for (let i = 0; i < 3; i++) {
    const plain = await fetch(`${http}/ws`, { headers: auth('alice') })
    t.equal(plain.status, 426)
    t.equal(plain.headers.get('upgrade'), 'websocket')
    t.same(await plain.json(), { code: 'AGW_ERR_UPGRADE_REQUIRED', message: 'GET /ws is a WebSocket endpoint: open it with a WebSocket client (an Upgrade request)' })
  }
  const client = await connect(t, ws, { token: tokenFor('alice') })
  t.equal(client.messages[0]?.type, 'welcome', 'the one slot is still free')
})

t.test('HEAD on an event stream answers as GET would, without opening a stream or holding a slot', async (t) => {
  const app = await buildApp(t, { agents: { waitForCancel }, env: testEnv({ MAX_CONNECTIONS_PER_USER: '1' }) })
  const { http } = await listen(t, app)
  const runId = await startRun(http, 'alice')
  for (let i = 0; i < 3; i++) {
    const head = await fetch(`${http}/v1/runs/${runId}/events`, { method: 'HEAD', headers: auth('alice'), signal: AbortSignal.timeout(5000) })
    t.equal(head.status, 200)
    t.match(head.headers.get('content-type'), /^text\/event-stream/)
    t.equal(await head.text(), '')
  }
  t.equal(app.delivery.connectionCount('alice'), 0, 'no stream was opened')
  t.equal((await fetch(`${http}/v1/runs/${runId}/events`, { method: 'HEAD', headers: auth('bob') })).status, 404, 'ownership is checked as for GET')
  const controller = new AbortController()
  const stream = await fetch(`${http}/v1/runs/${runId}/events`, { headers: auth('alice'), signal: controller.signal })
  t.equal(stream.status, 200, 'the one slot is still free for a real stream')
  controller.abort()
})

t.test('AG-UI requests whose run is refused give their connection slot back at once', async (t) => {
  const app = await buildApp(t, { agents: { waitForCancel }, env: testEnv({ MAX_CONNECTIONS_PER_USER: '2', MAX_CONCURRENT_RUNS: '1' }) })
  const { http, ws } = await listen(t, app)
  const body = (runId: string): string => JSON.stringify({ threadId: 't1', runId, messages: [{ id: 'm1', role: 'user', content: 'wait' }], tools: [], context: [], state: {}, forwardedProps: {} })
  const controller = new AbortController()
  const first = await fetch(`${http}/v1/ag-ui`, { method: 'POST', headers: { ...auth('alice'), 'content-type': 'application/json' }, body: body('r1'), signal: controller.signal })
  t.equal(first.status, 200, 'one stream holds one slot and the one run allowed')
  for (let i = 2; i <= 4; i++) {
    const refused = await fetch(`${http}/v1/ag-ui`, { method: 'POST', headers: { ...auth('alice'), 'content-type': 'application/json' }, body: body(`r${i}`) })
    t.equal(refused.status, 429)
    t.match(await refused.json(), { code: 'AGW_ERR_RUN_TOO_MANY' }, `request ${i} is refused for the run limit, not for slots earlier refusals still hold`)
  }
  const client = await connect(t, ws, { token: tokenFor('alice') })
  t.equal(client.messages[0]?.type, 'welcome', 'the second slot is free')
  controller.abort()
})

t.test('event streams end when their token expires, saying so in their own protocol', async (t) => {
  const app = await buildApp(t, { agents: { waitForCancel } })
  const { http } = await listen(t, app)
  const runId = await startRun(http, 'alice')

  const sse = await fetch(`${http}/v1/runs/${runId}/events`, { headers: auth('alice', 2), signal: AbortSignal.timeout(15_000) })
  const text = await sse.text()
  t.match(text, /data: \{"type":"agent_started"/, 'the stream delivered the run…')
  t.match(text, /event: error\ndata: \{"code":"AGW_ERR_AUTH_TOKEN_EXPIRED","message":"The token has expired"\}\n\n$/, '…and ended at expiry with an error event')

  const agUi = await fetch(`${http}/v1/ag-ui`, {
    method: 'POST',
    headers: { ...auth('bob', 2), 'content-type': 'application/json' },
    body: JSON.stringify({ threadId: 't1', runId: 'r1', messages: [{ id: 'm1', role: 'user', content: 'wait' }], tools: [], context: [], state: {}, forwardedProps: {} }),
    signal: AbortSignal.timeout(15_000)
  })
  const last = (await agUi.text()).trim().split('\n\n').at(-1) ?? ''
  t.match(JSON.parse(last.replace(/^data: /, '')), { type: 'RUN_ERROR', code: 'AGW_ERR_AUTH_TOKEN_EXPIRED' }, 'AG-UI ends with RUN_ERROR')
  t.equal(app.delivery.connectionCount('alice') + app.delivery.connectionCount('bob'), 0, 'both streams let go of their slots')
})

t.test('a client that breaks the WebSocket protocol is logged as such, at info, without a stack', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(chunk.toString()); done() } })
  const app = await buildApp(t, { agents: { waitForCancel }, logger: { level: 'info', stream } })
  const { ws } = await listen(t, app)
  const { port } = new URL(ws)
  // A raw client: a valid handshake, then a text frame whose payload is not UTF-8.
  const socket = netConnect(Number(port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write([
    'GET /ws HTTP/1.1', 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13',
    `Sec-WebSocket-Protocol: ${PROTOCOL}`, `Authorization: Bearer ${tokenFor('mallory')}`, '', ''
  ].join('\r\n'))
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1') })
  while (!received.includes('"welcome"')) await new Promise((resolve) => setTimeout(resolve, 10))
  const payload = Buffer.from([0xff, 0xfe, 0xfd])
  const mask = Buffer.from([1, 2, 3, 4])
  socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((byte, i) => byte ^ (mask[i % 4] as number))]))
  await new Promise((resolve) => socket.once('close', resolve))
  const entries = lines.map((line) => JSON.parse(line) as { level: number, msg: string, code?: string, err?: unknown })
  t.match(entries.find((entry) => entry.code === 'WS_ERR_INVALID_UTF8'), { level: 30, msg: 'client broke the WebSocket protocol; connection closed' })
  t.same(entries.filter((entry) => entry.level >= 50), [], 'nothing at error level')
  t.notOk(lines.some((line) => line.includes('"stack"')), 'and no stack')
})
