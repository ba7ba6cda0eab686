// The AG-UI translator on sequences the demo agent never produces (text before tool calls, calls
// in a row, tool errors, empty pieces, cancelled and failed runs): each translation must be valid
// per @ag-ui/core's schemas and pass @ag-ui/client's enforcement and verification, fed to a real
// HttpAgent whose fetch answers with the encoded stream.
import t, { type Test } from 'tap'
import { HttpAgent } from '@ag-ui/client'
import { EventType, type BaseEvent, type Message } from '@ag-ui/core'
import { EventSchema } from '@ag-ui/core/schemas'
import { agUiEventStream, createAgUiTranslator, lastUserText } from '../../src/integrations/ag-ui.js'
import type { RunEvent, RunEventType } from '../../src/protocol.js'

const ids = { threadId: 'their-thread', runId: 'their-run' }

/** A run's events as the log would hold them: seq from 1, a millisecond apart. */
function run (steps: ReadonlyArray<readonly [RunEventType, Record<string, unknown>]>): RunEvent[] {
  return steps.map(([type, data], index) => ({
    type, runId: 'our-run', threadId: 'our-thread', seq: index + 1, ts: new Date(Date.UTC(2026, 10, 25, 17, 0, 0, index)).toISOString(), data
  }) as RunEvent)
}

const started = ['agent_started', { agent: 'llm', input: { message: 'hi' } }] as const

/** What an HttpAgent makes of the run's stream, with its verification on. */
async function throughClient (events: readonly RunEvent[]): Promise<{ seen: BaseEvent[], messages: Message[], outcome: unknown, warnings: string[] }> {
  const format = agUiEventStream(ids)
  const body = events.map((event) => format.event({ seq: event.seq, type: event.type, frame: Buffer.from(JSON.stringify(event)), at: Date.parse(event.ts) })).join('')
  const agent = new HttpAgent({ url: 'http://agent.invalid/v1/ag-ui', threadId: ids.threadId, fetch: async () => new Response(body, { headers: { 'content-type': 'text/event-stream' } }) })
  const seen: BaseEvent[] = []
  let outcome: unknown
  const warnings: string[] = []
  const warn = console.warn
  console.warn = (...args: unknown[]) => { warnings.push(args.map(String).join(' ')) }
  try {
    await agent.runAgent({ runId: ids.runId }, {
      onEvent: ({ event }) => { seen.push(event) },
      onRunFinishedEvent: (params) => { outcome = params.outcome },
      onRunErrorEvent: ({ event }) => { outcome = event }
    })
  } finally {
    console.warn = warn
  }
  return { seen, messages: agent.messages, outcome, warnings }
}

function translateAll (t: Test, events: readonly RunEvent[]): BaseEvent[] {
  const translate = createAgUiTranslator(ids)
  const translated = events.flatMap((event) => translate(event))
  for (const event of translated) t.ok(EventSchema.safeParse(event).success, `${event.type} is valid per @ag-ui/core`)
  return translated
}

t.test('text, then several tool calls in a row, one failing: one assistant message carries the calls', async (t) => {
  const events = run([
    started,
    ['agent_message', { messageId: 'm1', delta: 'Let me check.' }],
    ['tool_executing', { toolCallId: 'c1', tool: 'calculator', args: { expression: '1 / 0' } }],
    ['tool_executing', { toolCallId: 'c2', tool: 'lookup_fact', args: { query: 'moon' } }],
    ['tool_completed', { toolCallId: 'c1', tool: 'calculator', status: 'error', error: { code: 'DIVISION_BY_ZERO', message: 'Cannot divide by zero' }, durationMs: 1 }],
    ['tool_completed', { toolCallId: 'c2', tool: 'lookup_fact', status: 'success', result: { found: true }, durationMs: 2 }],
    ['agent_message', { messageId: 'm2', delta: '' }],
    ['agent_message', { messageId: 'm2', delta: 'Done.' }],
    ['agent_completed', { status: 'completed', output: null, durationMs: 9 }]
  ])
  const translated = translateAll(t, events)
  t.same(translated.map(({ type }) => type), [
    'RUN_STARTED',
    'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END',
    'TOOL_CALL_START', 'TOOL_CALL_ARGS', 'TOOL_CALL_END',
    'TOOL_CALL_START', 'TOOL_CALL_ARGS', 'TOOL_CALL_END',
    'TOOL_CALL_RESULT', 'TOOL_CALL_RESULT',
    'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END',
    'RUN_FINISHED'
  ], 'an empty delta opens the message but sends no content')
  t.match(translated.filter(({ type }) => type === EventType.TOOL_CALL_START), [{ toolCallId: 'c1', parentMessageId: 'm1' }, { toolCallId: 'c2', parentMessageId: 'm1' }])
  t.same(translated.filter(({ type }) => type === EventType.TOOL_CALL_RESULT), [
    { type: 'TOOL_CALL_RESULT', timestamp: Date.parse(events[4]!.ts), messageId: 'our-run:5', toolCallId: 'c1', role: 'tool', content: '{"status":"error","error":{"code":"DIVISION_BY_ZERO","message":"Cannot divide by zero"}}' },
    { type: 'TOOL_CALL_RESULT', timestamp: Date.parse(events[5]!.ts), messageId: 'our-run:6', toolCallId: 'c2', role: 'tool', content: '{"found":true}' }
  ])
  t.same(translated.at(-1), { type: 'RUN_FINISHED', timestamp: Date.parse(events[8]!.ts), ...ids }, 'a null output is no result')

  const { messages, outcome, warnings } = await throughClient(events)
  t.same(messages, [
    { id: 'm1', role: 'assistant', content: 'Let me check.', toolCalls: [
      { id: 'c1', type: 'function', function: { name: 'calculator', arguments: '{"expression":"1 / 0"}' } },
      { id: 'c2', type: 'function', function: { name: 'lookup_fact', arguments: '{"query":"moon"}' } }
    ] },
    { id: 'our-run:5', role: 'tool', toolCallId: 'c1', content: '{"status":"error","error":{"code":"DIVISION_BY_ZERO","message":"Cannot divide by zero"}}' },
    { id: 'our-run:6', role: 'tool', toolCallId: 'c2', content: '{"found":true}' },
    { id: 'm2', role: 'assistant', content: 'Done.' }
  ])
  t.equal(outcome, 'success')
  t.same(warnings, [])
})

t.test('calls after a thought start their own assistant message; a cancelled run closes what is open', async (t) => {
  const events = run([
    started,
    ['agent_thinking', { thought: '', step: 1 }],
    ['tool_executing', { toolCallId: 'c1', tool: 'calculator', args: { expression: '2 + 2' } }],
    ['tool_executing', { toolCallId: 'c2', tool: 'calculator', args: { expression: '3 + 3' } }],
    ['tool_completed', { toolCallId: 'c1', tool: 'calculator', status: 'success', result: { value: 4 }, durationMs: 1 }],
    ['tool_completed', { toolCallId: 'c2', tool: 'calculator', status: 'cancelled', error: { code: 'RUN_ENDED', message: 'The run ended' }, durationMs: 1 }],
    ['agent_thinking', { thought: 'Adding them up.', step: 2 }],
    ['agent_completed', { status: 'cancelled', error: { code: 'DISCONNECTED', message: 'Cancelled: no connection of the user followed the run' }, durationMs: 5 }]
  ])
  const translated = translateAll(t, events)
  t.same(translated.map(({ type }) => type), [
    'RUN_STARTED',
    'REASONING_START', 'REASONING_MESSAGE_START', 'REASONING_MESSAGE_END', 'REASONING_END',
    'TOOL_CALL_START', 'TOOL_CALL_ARGS', 'TOOL_CALL_END',
    'TOOL_CALL_START', 'TOOL_CALL_ARGS', 'TOOL_CALL_END',
    'TOOL_CALL_RESULT', 'TOOL_CALL_RESULT',
    'REASONING_START', 'REASONING_MESSAGE_START', 'REASONING_MESSAGE_CONTENT', 'REASONING_MESSAGE_END', 'REASONING_END',
    'RUN_FINISHED'
  ], 'an empty thought is a reasoning message without content')
  const starts = translated.filter(({ type }) => type === EventType.TOOL_CALL_START)
  t.notOk('parentMessageId' in starts[0]!, 'the first call of a step names no parent: the client makes one named after it')
  t.match(starts[1], { toolCallId: 'c2', parentMessageId: 'c1' }, 'the next call of the same step joins it')
  t.same(translated.at(-1), { type: 'RUN_FINISHED', timestamp: Date.parse(events[7]!.ts), ...ids, outcome: { type: 'cancelled' } })

  const { messages, outcome, warnings } = await throughClient(events)
  t.same(messages.filter((message) => message.role === 'assistant').map((message) => message.role === 'assistant' && message.toolCalls?.map((call) => call.id)), [['c1', 'c2']])
  t.same(messages.filter((message) => message.role === 'reasoning').map((message) => message.content), ['', 'Adding them up.'])
  t.match(messages.find((message) => message.role === 'tool' && message.toolCallId === 'c2'), { content: '{"status":"cancelled","error":{"code":"RUN_ENDED","message":"The run ended"}}' })
  t.equal(outcome, 'cancelled')
  t.same(warnings, [])
})

t.test('a failed run: RUN_ERROR after the open reasoning closes, with or without an error of its own', async (t) => {
  const events = run([
    started,
    ['agent_thinking', { thought: 'Hmm.', step: 1 }],
    ['agent_completed', { status: 'failed', error: { code: 'TIMEOUT', message: 'The run did not finish before its deadline' }, durationMs: 30000 }]
  ])
  const translated = translateAll(t, events)
  t.same(translated.slice(-2).map(({ type }) => type), ['REASONING_END', 'RUN_ERROR'])
  t.same(translated.at(-1), { type: 'RUN_ERROR', timestamp: Date.parse(events[2]!.ts), message: 'The run did not finish before its deadline', code: 'TIMEOUT' })
  const { outcome, warnings } = await throughClient(events)
  t.match(outcome, { type: 'RUN_ERROR', code: 'TIMEOUT' })
  t.same(warnings, [])

  const bare = createAgUiTranslator(ids)(run([['agent_completed', { status: 'failed', durationMs: 1 }]])[0]!)
  t.same(bare, [{ type: 'RUN_ERROR', timestamp: Date.parse('2026-11-25T17:00:00.000Z'), message: 'The run failed' }])
})

t.test('the question is the text of the last user message', async (t) => {
  const user = (id: string, content: Extract<Message, { role: 'user' }>['content']): Message => ({ id, role: 'user', content })
  t.equal(lastUserText({ messages: [user('1', 'first'), { id: '2', role: 'assistant', content: 'ok' }, user('3', 'second')] }), 'second')
  t.equal(lastUserText({ messages: [user('1', [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }])] }), 'ab')
  t.equal(lastUserText({ messages: [user('1', [{ type: 'image', source: { type: 'url', value: 'https://example.com/a.png' } }])] }), '', 'media only: no text')
  t.equal(lastUserText({ messages: [{ id: '1', role: 'system', content: 'Be brief.' }] }), undefined)
})

t.test('tool_progress becomes an ACTIVITY_SNAPSHOT per call that HttpAgent keeps as one activity message', async (t) => {
  const events = run([
    started,
    ['agent_thinking', { thought: 'Reading the file' }],
    ['tool_executing', { toolCallId: 'c1', tool: 'fs__read_text_file', args: { path: '/notes.txt' } }],
    ['tool_progress', { toolCallId: 'c1', progress: 1, total: 3, message: 'page 1' }],
    ['tool_progress', { toolCallId: 'c1', progress: 3, total: 3 }],
    ['tool_completed', { toolCallId: 'c1', tool: 'fs__read_text_file', status: 'success', result: { text: 'hi' }, durationMs: 5 }],
    ['agent_completed', { status: 'completed', output: 'hi', durationMs: 9 }]
  ])
  const translated = translateAll(t, events)
  t.same(translated.map(({ type }) => type), [
    'RUN_STARTED',
    'REASONING_START', 'REASONING_MESSAGE_START', 'REASONING_MESSAGE_CONTENT', 'REASONING_MESSAGE_END', 'REASONING_END',
    'TOOL_CALL_START', 'TOOL_CALL_ARGS', 'TOOL_CALL_END',
    'ACTIVITY_SNAPSHOT', 'ACTIVITY_SNAPSHOT',
    'TOOL_CALL_RESULT',
    'RUN_FINISHED'
  ])
  t.same(translated.filter(({ type }) => type === EventType.ACTIVITY_SNAPSHOT), [
    { type: 'ACTIVITY_SNAPSHOT', timestamp: Date.parse(events[3]!.ts), messageId: 'c1:progress', activityType: 'tool_progress', content: { toolCallId: 'c1', progress: 1, total: 3, message: 'page 1' } },
    { type: 'ACTIVITY_SNAPSHOT', timestamp: Date.parse(events[4]!.ts), messageId: 'c1:progress', activityType: 'tool_progress', content: { toolCallId: 'c1', progress: 3, total: 3 } }
  ])
  const { messages, outcome, warnings } = await throughClient(events)
  t.same(warnings, [])
  t.match(outcome, 'success')
  t.same(messages.filter((message) => message.role === 'activity'), [
    { id: 'c1:progress', role: 'activity', activityType: 'tool_progress', content: { toolCallId: 'c1', progress: 3, total: 3 } }
  ], 'the latest snapshot replaces the earlier one')
})
