import t from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import { Compile } from 'typebox/compile'
import { createDemoAgent, findConversion, findExpression } from '../../src/agents/demo.js'
import { RunError, type AgentRun, type ToolOutcome } from '../../src/contracts.js'
import { demoTools } from '../../src/tools/index.js'

type Event =
  | { readonly type: 'think', readonly thought: string }
  | { readonly type: 'say', readonly delta: string }
  | { readonly type: 'call', readonly tool: string, readonly args: unknown }

interface FakeOptions {
  readonly signal?: AbortSignal
  /** Replaces the real tools: what the dispatcher would have answered. */
  readonly outcome?: (tool: string, args: unknown) => ToolOutcome | Promise<ToolOutcome>
}

interface Fake {
  readonly run: AgentRun
  readonly events: Event[]
  readonly thoughts: () => string[]
  readonly says: () => string[]
  readonly calls: () => Array<{ tool: string, args: unknown }>
}

let ids = 0

/** Runs the real tool the way the dispatcher does: validated arguments, RunErrors as outcomes. */
async function realOutcome (tool: string, args: unknown): Promise<ToolOutcome> {
  const toolCallId = `call-${++ids}`
  const found = demoTools.find((candidate) => candidate.name === tool)
  if (found === undefined) return { toolCallId, tool, status: 'error', error: { code: 'UNKNOWN_TOOL', message: `No tool named "${tool}"` }, durationMs: 0 }
  if (!Compile(found.parameters).Check(args)) {
    return { toolCallId, tool, status: 'error', error: { code: 'INVALID_ARGS', message: 'Invalid arguments' }, durationMs: 0 }
  }
  try {
    const result = await found.execute(args, { context: {} as never, signal: new AbortController().signal, progress: () => {} })
    return { toolCallId, tool, status: 'success', result, durationMs: 1 }
  } catch (err) {
    if (!(err instanceof RunError)) throw err
    return { toolCallId, tool, status: 'error', error: { code: err.code, message: err.message }, durationMs: 1 }
  }
}

function fakeRun (message: string, options: FakeOptions = {}): Fake {
  const events: Event[] = []
  const run: AgentRun = {
    input: { message },
    context: Object.freeze({ userId: 'u1', scopes: [], requestId: 'r1', connectionId: 'c1', runId: 'run1', threadId: 't1', agent: 'demo' }),
    signal: options.signal ?? new AbortController().signal,
    log: { info () {}, warn () {}, error () {}, debug () {} } as unknown as FastifyBaseLogger,
    think (thought: string) { events.push({ type: 'think', thought }) },
    say (delta: string) { events.push({ type: 'say', delta }) },
    drain: async () => {},
    tools: {
      async call (tool: string, args: unknown = {}): Promise<ToolOutcome> {
        events.push({ type: 'call', tool, args })
        return await (options.outcome ?? realOutcome)(tool, args)
      },
      list: () => demoTools.map(({ name, description, parameters }) => ({ name, description, parameters })),
      external () { throw new Error('the demo agent reports no external calls') }
    }
  }
  const of = <T extends Event['type']>(type: T): Array<Extract<Event, { type: T }>> =>
    events.filter((event): event is Extract<Event, { type: T }> => event.type === type)
  return {
    run,
    events,
    thoughts: () => of('think').map((event) => event.thought),
    says: () => of('say').map((event) => event.delta),
    calls: () => of('call').map(({ tool, args }) => ({ tool, args }))
  }
}

const agent = createDemoAgent({ stepDelayMs: 0 })

async function runAgent (message: string, options?: FakeOptions): Promise<Fake & { output: unknown }> {
  const fake = fakeRun(message, options)
  const output = await agent(fake.run)
  return { ...fake, output }
}

t.test('arithmetic: calls the calculator with the expression and answers 84', async (t) => {
  const { output, calls, thoughts, says, events } = await runAgent('What is 12 * (3 + 4)?')
  t.same(calls(), [{ tool: 'calculator', args: { expression: '12 * (3 + 4)' } }])
  t.same(output, { answer: '12 * (3 + 4) = 84.' })
  t.equal(says().join(''), '12 * (3 + 4) = 84.', 'the streamed deltas are the answer')
  t.same(says(), ['12 * (3 ', '+ 4) = ', '84.'], 'streamed a few words at a time')
  t.same(thoughts(), [
    'The message reads "What is 12 * (3 + 4)?": I see arithmetic (12 * (3 + 4)).',
    'Exact arithmetic is a job for the calculator rather than a guess, so I am evaluating 12 * (3 + 4).',
    'The calculator says 12 * (3 + 4) = 84.',
    'That settles it; writing the answer.'
  ])
  t.same(events.map((event) => event.type), ['think', 'think', 'call', 'think', 'think', 'say', 'say', 'say'], 'think, call, think, then speak')
})

t.test('arithmetic in words and with functions', async (t) => {
  const words = await runAgent('what is 5 plus 3 times 2')
  t.same(words.calls(), [{ tool: 'calculator', args: { expression: '5 + 3 * 2' } }])
  t.same(words.output, { answer: '5 + 3 * 2 = 11.' })
  const functions = await runAgent('Calculate sqrt(16) + max(1, 7) please')
  t.same(functions.calls(), [{ tool: 'calculator', args: { expression: 'sqrt(16) + max(1, 7)' } }])
  t.same(functions.output, { answer: 'sqrt(16) + max(1, 7) = 11.' })
})

t.test('unit conversions call convert_units', async (t) => {
  const cases: Array<[string, { value: number, from: string, to: string }, string]> = [
    ['5 km in miles', { value: 5, from: 'km', to: 'miles' }, '5 km = 3.106855961 mi.'],
    ['convert 100 F to C', { value: 100, from: 'F', to: 'C' }, '100 °F = 37.77777778 °C.'],
    ['how many ounces in 2 kg', { value: 2, from: 'kg', to: 'ounces' }, '2 kg = 70.5479239 oz.'],
    ['How many feet are in a mile?', { value: 1, from: 'mile', to: 'feet' }, '1 mi = 5280 ft.'],
    ['What is 60 miles per hour in km/h?', { value: 60, from: 'miles per hour', to: 'km/h' }, '60 mph = 96.56064 km/h.']
  ]
  for (const [message, args, answer] of cases) {
    const { calls, output, says } = await runAgent(message)
    t.same(calls(), [{ tool: 'convert_units', args }], message)
    t.same(output, { answer }, message)
    t.equal(says().join(''), answer)
  }
})

t.test('a conversion the converter refuses is explained', async (t) => {
  const incompatible = await runAgent('convert 3 km to kg')
  t.same(incompatible.calls(), [{ tool: 'convert_units', args: { value: 3, from: 'km', to: 'kg' } }])
  t.same(incompatible.output, { answer: 'The unit converter could not do it: Cannot convert km (length) to kg (mass).' })
  const unknown = await runAgent('convert 10 furlongs to m')
  t.same(unknown.calls(), [{ tool: 'convert_units', args: { value: 10, from: 'furlongs', to: 'm' } }])
  t.match(unknown.output, { answer: /^The unit converter could not do it: Unknown unit "furlongs"\. Supported: length/ })
  t.equal(unknown.thoughts()[2], 'The unit converter could not do it: Unknown unit "furlongs". I will say so rather than guess.', 'the thought keeps it short')
})

t.test('fact questions call lookup_fact', async (t) => {
  const moon = await runAgent('How far is the Moon?')
  t.same(moon.calls(), [{ tool: 'lookup_fact', args: { query: 'How far is the Moon?' } }])
  t.same(moon.output, { answer: 'The average distance from the Earth to the Moon is about 384,400 km (centre to centre).' })
  t.equal(moon.thoughts()[0], 'The message reads "How far is the Moon?": I see a question about distance to the moon.')
  const water = await runAgent("  What's the boiling point of water?  ")
  t.same(water.calls(), [{ tool: 'lookup_fact', args: { query: "What's the boiling point of water?" } }])
  t.match(water.output, { answer: /100 °C \(212 °F/ })
})

t.test('anything else gets text_stats', async (t) => {
  const { calls, output, thoughts, says } = await runAgent('hello there')
  t.same(calls(), [{ tool: 'text_stats', args: { text: 'hello there' } }])
  t.same(output, {
    answer: 'I found nothing to calculate, convert or look up, but here is your message in numbers: ' +
      'it has 2 words, 11 characters and 1 sentence. The most frequent word is "hello" (1).'
  })
  t.equal(thoughts()[2], 'The message has 2 words, 11 characters and 1 sentence.')
  t.equal(says().join(''), (output as { answer: string }).answer)
  t.ok(says().every((delta) => delta.trim().split(/\s+/).length <= 3), 'a few words at a time')

  const empty = await runAgent('')
  t.same(empty.calls(), [{ tool: 'text_stats', args: { text: '' } }])
  t.same(empty.output, { answer: 'Your message has no words in it, so there is nothing to calculate, convert or look up.' })
  t.equal(empty.thoughts()[0], 'The message is empty: I see no calculation, unit conversion or question my fact table covers.')
})

t.test('several matches call several tools, with 3 to 6 thoughts', async (t) => {
  const two = await runAgent('What is 2 * 21, and 5 km in miles?')
  t.same(two.calls().map((call) => call.tool), ['calculator', 'convert_units'])
  t.same(two.output, { answer: '2 * 21 = 42. 5 km = 3.106855961 mi.' })
  t.equal(two.thoughts().length, 6)

  const three = await runAgent('sqrt(2)^2, then 100 °F to °C, and the speed of light?')
  t.same(three.calls(), [
    { tool: 'calculator', args: { expression: 'sqrt(2)^2' } },
    { tool: 'convert_units', args: { value: 100, from: '°F', to: '°C' } },
    { tool: 'lookup_fact', args: { query: 'sqrt(2)^2, then 100 °F to °C, and the speed of light?' } }
  ])
  t.equal(three.thoughts().length, 6)
  t.match(three.thoughts()[0], /I see arithmetic \(sqrt\(2\)\^2\), a unit conversion \(100 °F to °C\) and a question about speed of light\. Exact arithmetic/)
  t.match(three.output, { answer: /^sqrt\(2\)\^2 = 2\. 100 °F = 37\.77777778 °C\. Light travels at exactly 299,792,458 m\/s/ })

  for (const message of ['What is 12 * (3 + 4)?', '5 km in miles', 'How far is the Moon?', 'hello there', '']) {
    const count = (await runAgent(message)).thoughts().length
    t.ok(count >= 3 && count <= 6, `${count} thoughts for "${message}"`)
  }
})

t.test('a failing tool is explained, never thrown', async (t) => {
  const failed = await runAgent('What is 12 * (3 + 4)?', {
    outcome: (tool) => ({ toolCallId: 'x', tool, status: 'error', error: { code: 'TOOL_FAILED', message: '"calculator" failed' }, durationMs: 2 })
  })
  t.same(failed.output, { answer: 'I could not evaluate 12 * (3 + 4): "calculator" failed.' })
  t.equal(failed.thoughts()[2], 'The calculator could not do it: "calculator" failed. I will say so rather than guess.')
  t.equal(failed.says().join(''), 'I could not evaluate 12 * (3 + 4): "calculator" failed.')

  const real = await runAgent('What is 1/0?')
  t.same(real.calls(), [{ tool: 'calculator', args: { expression: '1/0' } }])
  t.same(real.output, { answer: 'I could not evaluate 1/0: Cannot divide by zero.' })

  const timedOut = await runAgent('How far is the Moon?', {
    outcome: (tool) => ({ toolCallId: 'x', tool, status: 'timeout', error: { code: 'TIMEOUT', message: 'too slow' }, durationMs: 30_000 })
  })
  t.same(timedOut.output, { answer: 'The fact table did not answer in time.' })

  const noDetail = await runAgent('hello there', {
    outcome: (tool) => ({ toolCallId: 'x', tool, status: 'error', durationMs: 0 })
  })
  t.same(noDetail.output, { answer: 'The text analyser could not do it: it failed without saying why.' })

  const missing = await runAgent('How far is the Moon?', {
    outcome: (tool, args) => ({ toolCallId: 'x', tool, status: 'success', result: { query: (args as { query: string }).query, found: false, suggestions: ['Mars', 'Absolute zero'] }, durationMs: 0 })
  })
  t.same(missing.output, { answer: 'My reference table has nothing on that; it does cover Mars, Absolute zero.' })
  t.equal(missing.thoughts()[2], 'The table has no entry for that after all.')

  const odd = await runAgent('hello there', {
    outcome: (tool) => ({ toolCallId: 'x', tool, status: 'success', result: null, durationMs: 0 })
  })
  t.type((odd.output as { answer: unknown }).answer, 'string', 'a result of an unexpected shape still gives an answer')
})

t.test('an aborted signal makes the agent return promptly', async (t) => {
  const before = new AbortController()
  before.abort()
  const early = await runAgent('What is 12 * (3 + 4)?', { signal: before.signal })
  t.equal(early.output, undefined)
  t.same(early.events, [], 'nothing happens after an abort')

  const slow = createDemoAgent({ stepDelayMs: 60_000 })
  const midway = new AbortController()
  const fake = fakeRun('What is 12 * (3 + 4)?', { signal: midway.signal })
  const started = Date.now()
  setTimeout(() => { midway.abort() }, 20)
  t.equal(await slow(fake.run), undefined)
  t.ok(Date.now() - started < 1000, `returned ${Date.now() - started} ms after start despite a 60 s step delay`)
  t.same(fake.events, [], 'aborted during the first pause')

  const during = new AbortController()
  const inCall = await runAgent('What is 12 * (3 + 4)?', {
    signal: during.signal,
    outcome: (tool) => {
      during.abort()
      return { toolCallId: 'x', tool, status: 'cancelled', durationMs: 0 }
    }
  })
  t.equal(inCall.output, undefined)
  t.same(inCall.events.map((event) => event.type), ['think', 'think', 'call'], 'no thought and no answer after the cancelled call')
})

t.test('pacing: steps wait stepDelayMs; with 0 the agent still yields to the event loop', async (t) => {
  let yielded = false
  setImmediate(() => { yielded = true })
  const fake = fakeRun('hello there')
  const seenAtFirstThought: boolean[] = []
  const run: AgentRun = { ...fake.run, think: (thought) => { seenAtFirstThought.push(yielded); fake.run.think(thought) } }
  await agent(run)
  t.equal(seenAtFirstThought[0], true, 'an immediate queued before the run ran before its first step')

  const paced = createDemoAgent({ stepDelayMs: 25 })
  const started = Date.now()
  await paced(fakeRun('What is 12 * (3 + 4)?').run)
  t.ok(Date.now() - started >= 5 * 25 - 5, `took ${Date.now() - started} ms for 4 thoughts and a call at 25 ms a step`)
})

t.test('deterministic: the same message gives the same run', async (t) => {
  const first = await runAgent('sqrt(2)^2, then 100 °F to °C, and the speed of light?')
  const second = await runAgent('sqrt(2)^2, then 100 °F to °C, and the speed of light?')
  t.same(second.events, first.events)
  t.same(second.output, first.output)
})

t.test('createDemoAgent checks its options', async (t) => {
  t.throws(() => createDemoAgent({ stepDelayMs: -1 }), { code: 'AGW_ERR_AGENT_INVALID' })
  t.throws(() => createDemoAgent({ stepDelayMs: Number.NaN }), { code: 'AGW_ERR_AGENT_INVALID' })
  t.type(createDemoAgent({ stepDelayMs: 0 }), 'function')
  t.not(createDemoAgent({ stepDelayMs: 0 }), createDemoAgent({ stepDelayMs: 0 }), 'a factory: a new agent each time')
})

t.test('findExpression: the longest run of math with an operator or a function', async (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['What is 12 * (3 + 4)?', '12 * (3 + 4)'],
    ['(what is 2+2)', '2+2'],
    ['compute 3 x 4 for me', '3 x 4'],
    ['is 6 × 7 = 42?', '6 × 7'],
    ['2 + 2 or 10 * (4 - 1) / 3', '10 * (4 - 1) / 3'],
    ['What is 2^10 divided by 4', '2^10 / 4'],
    ['sqrt(2) is irrational', 'sqrt(2)'],
    ['pi * 2', 'pi * 2'],
    ['I have 3 apples', undefined],
    ['COVID-19 is over', undefined],
    ['call me at -5', undefined],
    ['the sqrt function', undefined],
    ['5 km in miles', undefined],
    ['hello there', undefined],
    ['', undefined]
  ]
  for (const [message, expected] of cases) t.equal(findExpression(message), expected, message)
})

t.test('findConversion: value, units and direction', async (t) => {
  t.same(findConversion('5 km in miles'), { value: 5, from: 'km', to: 'miles' })
  t.same(findConversion('-40°C to °F please'), { value: -40, from: '°C', to: '°F' })
  t.same(findConversion('2.5 nautical miles into metres'), { value: 2.5, from: 'nautical miles', to: 'metres' })
  t.same(findConversion('How much is 3 lbs in grams?'), { value: 3, from: 'lbs', to: 'grams' })
  t.same(findConversion('how many cups in 2 liters'), { value: 2, from: 'liters', to: 'cups' })
  t.same(findConversion('How many MiB in a GiB?'), { value: 1, from: 'GiB', to: 'MiB' })
  t.equal(findConversion('I walked 5 km to the shop'), undefined, 'a unit then an ordinary word')
  t.equal(findConversion('I ran 5 km in 30 min'), undefined)
  t.equal(findConversion('10 furlongs to m'), undefined, 'unknown units only after an explicit "convert"')
  t.equal(findConversion('how many ounces'), undefined)
  t.equal(findConversion('hello there'), undefined)
})
