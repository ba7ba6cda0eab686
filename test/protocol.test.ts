import { readFile } from 'node:fs/promises'
import t from 'tap'
import { Compile } from 'typebox/compile'
import * as errors from '../src/errors.js'
import { generatedFiles, repoRoot } from '../src/cli/docs.js'
import {
  PROTOCOL, RunEvent, ServerMessage, WIRE_ERROR_CODES, encodeRunEvent, parseClientMessage, protocolJsonSchema, runFrameHead
} from '../src/protocol.js'

t.test('valid client messages parse to themselves', async (t) => {
  const messages = [
    { type: 'run', input: { message: 'hi' } },
    { type: 'run', id: 'x', agent: 'demo', threadId: 'thread-1', input: { message: 'hi', locale: 'fr', attachments: [1, 2] } },
    { type: 'cancel', runId: 'abc' },
    { type: 'subscribe', runId: 'abc', after: 0 },
    { type: 'subscribe', id: 'q', runId: 'abc' },
    { type: 'unsubscribe', runId: 'abc' },
    { type: 'auth', token: 'a.b.c' },
    { type: 'ping' },
    { type: 'ping', id: '' }
  ]
  for (const message of messages) t.same(parseClientMessage(JSON.stringify(message)), { ok: true, message })
})

t.test('invalid frames say why, echo a usable id, and never throw', async (t) => {
  t.same(parseClientMessage(''), { ok: false, reason: 'frame is not valid JSON' })
  t.same(parseClientMessage('null'), { ok: false, reason: 'a message must be a JSON object' })
  t.match(parseClientMessage('{"type":"run","id":"a","input":{}}'), { ok: false, id: 'a', reason: /invalid run message: input must have required properties message/ })
  t.match(parseClientMessage(`{"type":"ping","id":${JSON.stringify('x'.repeat(65))}}`), { ok: false, id: undefined })
  t.match(parseClientMessage('{"type":"x".repeat}'), { ok: false })
  t.match(parseClientMessage(JSON.stringify({ type: 'a'.repeat(10_000) })), { ok: false, reason: /unknown message type "a{64}" \(expected one of run, cancel, subscribe, unsubscribe, auth, ping\)$/ })
  let deep = '{"type":"ping","id":"d","nested":'
  for (let i = 0; i < 5000; i++) deep += '['
  deep += ']'.repeat(5000) + '}'
  t.match(parseClientMessage(deep), { ok: false, id: 'd', reason: /additional properties \(nested\)/ })
  const many = JSON.stringify({ type: 'run', input: 1, a: 1, b: 2, c: 3, d: 4 })
  t.ok((parseClientMessage(many) as { reason: string }).reason.split(';').length <= 3, 'at most three problems are listed')
})

t.test('an encoded run event is valid JSON that matches the RunEvent schema', async (t) => {
  const check = Compile(RunEvent)
  const head = runFrameHead('run-1', 'thread-"quoted"')
  const frame = encodeRunEvent(head, 'tool_completed', 5, '2026-11-25T17:00:00.123Z', JSON.stringify({ toolCallId: 'c', tool: 'calculator', status: 'success', result: { value: 42 }, durationMs: 1 }))
  const event = JSON.parse(frame) as unknown
  t.same(event, {
    type: 'tool_completed', runId: 'run-1', threadId: 'thread-"quoted"', seq: 5, ts: '2026-11-25T17:00:00.123Z',
    data: { toolCallId: 'c', tool: 'calculator', status: 'success', result: { value: 42 }, durationMs: 1 }
  })
  t.notOk(check.Check(event), 'a threadId outside the protocol pattern is caught by the schema')
  const ok = JSON.parse(encodeRunEvent(runFrameHead('run-1', 'thread-1'), 'agent_started', 1, '2026-11-25T17:00:00.123Z', JSON.stringify({ agent: 'demo', input: { message: 'hi' } })))
  t.ok(check.Check(ok))
  t.ok(Compile(ServerMessage).Check(ok), 'run events are server messages')
})

t.test('the published JSON Schema has every message', async (t) => {
  const schema = protocolJsonSchema()
  t.equal(schema.$id, `urn:agent-gateway:${PROTOCOL}`)
  t.same(Object.keys(schema.$defs as object).sort(), [
    'client.auth', 'client.cancel', 'client.ping', 'client.run', 'client.subscribe', 'client.unsubscribe',
    'event.agent_completed', 'event.agent_message', 'event.agent_started', 'event.agent_thinking', 'event.tool_completed', 'event.tool_executing', 'event.tool_progress',
    'server.auth_ok', 'server.error', 'server.pong', 'server.run_accepted', 'server.subscribed', 'server.unsubscribed', 'server.welcome'
  ])
  t.match((schema.$defs as Record<string, unknown>)['server.error'], { properties: { code: { enum: [...WIRE_ERROR_CODES] } } })
})

t.test('generated docs are up to date (run `npm run docs` when this fails)', async (t) => {
  for (const file of generatedFiles) {
    const current = await readFile(`${repoRoot}${file.path}`, 'utf8')
    t.equal(current, file.render(current), `${file.path} is current`)
  }
})

t.test('docs/errors.md lists every error code of the catalogue', async (t) => {
  const doc = await readFile(`${repoRoot}docs/errors.md`, 'utf8')
  const codes = Object.values(errors).flatMap((value) => {
    const prototype = (value as { prototype?: Record<symbol, unknown> }).prototype
    return prototype?.[Symbol.for('fastify-error-generic')] === true ? [(new (value as new () => Error & { code: string })()).code] : []
  })
  t.ok(codes.length > 20)
  for (const code of codes) t.match(doc, `\`${code}\``, code)
})

t.test('tool_progress is a run event of the schema, with a bounded message', async (t) => {
  const check = Compile(RunEvent)
  const event = (data: Record<string, unknown>): unknown =>
    JSON.parse(encodeRunEvent(runFrameHead('run-1', 'thread-1'), 'tool_progress', 4, '2026-11-25T17:00:00.123Z', JSON.stringify(data)))
  t.ok(check.Check(event({ toolCallId: 'c', progress: 2, total: 5, message: 'Reading page 2 of 5' })))
  t.ok(check.Check(event({ toolCallId: 'c', progress: 0.25 })), 'total and message are optional')
  t.notOk(check.Check(event({ toolCallId: 'c' })), 'progress is required')
  t.notOk(check.Check(event({ toolCallId: 'c', progress: 1, message: 'x'.repeat(501) })), 'a message is at most 500 characters')
})
