import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { configPlugin, type EnvSource } from '../../src/config.js'
import { RunError, defineTool, type Tool, type ToolContext, type ToolDispatcher, type ToolSource } from '../../src/contracts.js'
import toolDispatcher, { type DispatcherOptions } from '../../src/plugins/tool-dispatcher.js'
import { createRunContext, createUserContext } from '../../src/plugins/user-context.js'

const add = defineTool({
  name: 'add',
  description: 'Adds two numbers',
  parameters: Type.Object({ a: Type.Number(), b: Type.Number() }, { additionalProperties: false }),
  async execute ({ a, b }) { return { sum: a + b } }
})
const secretTool = defineTool({
  name: 'read_secrets',
  description: 'Needs a scope',
  scope: 'admin',
  parameters: Type.Object({}),
  async execute () { return 'classified' }
})
const failing = defineTool({
  name: 'failing',
  description: 'Throws',
  parameters: Type.Object({ explain: Type.Boolean() }),
  async execute ({ explain }) {
    if (explain) throw new RunError('OUT_OF_STOCK', 'No widgets left')
    throw new Error('database password is hunter2')
  }
})
const hanging = defineTool({
  name: 'hanging',
  description: 'Never returns unless aborted',
  timeoutMs: 50,
  parameters: Type.Object({}),
  execute: (_args, { signal }) => new Promise((resolve) => { signal.addEventListener('abort', () => { resolve('too late') }) })
})
const circular = defineTool({
  name: 'circular',
  description: 'Returns something JSON cannot hold',
  parameters: Type.Object({}),
  async execute () { const value: Record<string, unknown> = {}; value.self = value; return value }
})
let seenSignal: AbortSignal | undefined
const slow = defineTool({
  name: 'slow',
  description: 'Takes a while',
  parameters: Type.Object({}),
  async execute (_args, { signal }) {
    seenSignal = signal
    await new Promise((resolve) => setTimeout(resolve, 200))
    return 'done'
  }
})

async function dispatcherApp (t: Test, tools: readonly Tool[], env: EnvSource = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test', ...env } })
  app.register(toolDispatcher, { tools })
  await app.ready()
  return app
}

function recorder (): { events: Array<{ type: string, data: Record<string, unknown> }>, sink: DispatcherOptions['events'] } {
  const events: Array<{ type: string, data: Record<string, unknown> }> = []
  // Like the real emitter: serialise first, throw on what JSON cannot hold.
  const sink: DispatcherOptions['events'] = { emit (type: string, data: unknown) { events.push({ type, data: JSON.parse(JSON.stringify(data)) }); return true } }
  return { events, sink }
}

function makeDispatcher (app: FastifyInstance, scopes = '', controller = new AbortController()) {
  const { events, sink } = recorder()
  const context = createRunContext(createUserContext({ sub: 'alice', scope: scopes }, 'req-1'), { runId: 'run-1', threadId: 'thread-1', agent: 'demo' })
  const dispatcher = app.createToolDispatcher({ context, events: sink, signal: controller.signal })
  return { dispatcher, events, controller }
}

t.test('a successful call emits tool_executing then exactly one tool_completed', async (t) => {
  const app = await dispatcherApp(t, [add])
  const { dispatcher, events } = makeDispatcher(app)
  const outcome = await dispatcher.call('add', { a: 2, b: 3 })
  t.match(outcome, { tool: 'add', status: 'success', result: { sum: 5 } })
  t.type(outcome.durationMs, 'number')
  t.same(events.map((e) => e.type), ['tool_executing', 'tool_completed'])
  t.same(events[0]?.data, { toolCallId: outcome.toolCallId, tool: 'add', args: { a: 2, b: 3 } })
  t.same(events[1]?.data, outcome)
})

t.test('every failure is an outcome with a code, never a throw', async (t) => {
  const app = await dispatcherApp(t, [add, secretTool, failing, circular])
  const { dispatcher, events } = makeDispatcher(app)
  const cases: Array<[string, unknown, string, RegExp]> = [
    ['nope', {}, 'UNKNOWN_TOOL', /No tool named "nope"/],
    ['add', { a: 'two', b: 3 }, 'INVALID_ARGS', /a must be number/],
    ['add', { a: 1 }, 'INVALID_ARGS', /required/],
    ['add', { a: 1, b: 2, c: 3 }, 'INVALID_ARGS', /additional/],
    ['read_secrets', {}, 'FORBIDDEN', /needs the scope "admin"/],
    ['failing', { explain: true }, 'OUT_OF_STOCK', /^No widgets left$/],
    ['failing', { explain: false }, 'TOOL_FAILED', /^"failing" failed$/],
    ['circular', {}, 'BAD_RESULT', /not JSON-serialisable/]
  ]
  for (const [name, args, code, message] of cases) {
    const outcome = await dispatcher.call(name, args)
    t.equal(outcome.status, 'error', `${name} ${JSON.stringify(args)}`)
    t.equal(outcome.error?.code, code)
    t.match(outcome.error?.message, message)
  }
  t.notOk(JSON.stringify(events).includes('hunter2'), 'internal error details never reach the events')
  t.equal(events.filter((e) => e.type === 'tool_executing').length, cases.length)
  t.equal(events.filter((e) => e.type === 'tool_completed').length, cases.length)
})

t.test('arguments that JSON cannot hold are refused as INVALID_ARGS', async (t) => {
  const app = await dispatcherApp(t, [add])
  const { dispatcher, events } = makeDispatcher(app)
  const args: Record<string, unknown> = { a: 1, b: 2 }
  args.loop = args
  const outcome = await dispatcher.call('add', args)
  t.equal(outcome.error?.code, 'INVALID_ARGS')
  t.same(events.map((e) => e.type), ['tool_executing', 'tool_completed'])
  t.equal(events[0]?.data.args, null)
})

t.test('a scope in the token unlocks a scoped tool, and list() shows only callable tools', async (t) => {
  const app = await dispatcherApp(t, [add, secretTool])
  t.same(makeDispatcher(app).dispatcher.list().map((tool) => tool.name), ['add'])
  const { dispatcher } = makeDispatcher(app, 'admin')
  t.same(dispatcher.list().map((tool) => tool.name), ['add', 'read_secrets'])
  t.match(dispatcher.list()[0], { name: 'add', description: 'Adds two numbers', parameters: { type: 'object' } })
  t.match(await dispatcher.call('read_secrets', {}), { status: 'success', result: 'classified' })
})

t.test('a tool past its deadline completes with timeout, and its signal is aborted', async (t) => {
  const app = await dispatcherApp(t, [hanging])
  const { dispatcher, events } = makeDispatcher(app)
  const outcome = await dispatcher.call('hanging', {})
  t.match(outcome, { status: 'timeout', error: { code: 'TIMEOUT', message: /did not finish within 50 ms/ } })
  await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(events.filter((e) => e.type === 'tool_completed').length, 1, 'the late result is ignored')
})

t.test('TOOL_TIMEOUT_MS is the default deadline', async (t) => {
  const app = await dispatcherApp(t, [slow], { TOOL_TIMEOUT_MS: '20' })
  const outcome = await makeDispatcher(app).dispatcher.call('slow', {})
  t.equal(outcome.status, 'timeout')
})

t.test('aborting the run cancels open calls at once and passes the signal to the tool', async (t) => {
  const app = await dispatcherApp(t, [slow])
  const { dispatcher, events, controller } = makeDispatcher(app)
  const pending = dispatcher.call('slow', {})
  await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(dispatcher.openCalls, 1)
  controller.abort()
  t.equal(seenSignal?.aborted, true, "the tool's signal follows the run's")
  t.match(await pending, { status: 'cancelled' })
  t.equal(dispatcher.openCalls, 0)
  t.same(events.map((e) => e.type), ['tool_executing', 'tool_completed'])
  t.match(await dispatcher.call('slow', {}), { status: 'cancelled' }, 'a call after the abort is cancelled before it runs')
})

t.test('close() ends open calls with cancelled and silences later calls', async (t) => {
  const app = await dispatcherApp(t, [slow])
  const { dispatcher, events } = makeDispatcher(app)
  const pending = dispatcher.call('slow', {})
  await new Promise((resolve) => setTimeout(resolve, 5))
  dispatcher.close()
  t.match(await pending, { status: 'cancelled' })
  const late = await dispatcher.call('slow', {})
  t.match(late, { status: 'cancelled', error: { code: 'RUN_ENDED' } })
  t.same(events.map((e) => e.type), ['tool_executing', 'tool_completed'], 'no events after the run ended')
})

t.test('the dispatcher can only come from the factory', async (t) => {
  const app = await dispatcherApp(t, [add])
  const { dispatcher } = makeDispatcher(app)
  const Ctor = dispatcher.constructor as unknown as new (...args: unknown[]) => ToolDispatcher
  t.throws(() => new Ctor(Symbol('tool-dispatcher factory'), new Map(), {}, app.log), { code: 'AGW_ERR_TOOL_DISPATCHER_PRIVATE' })
  t.throws(() => new Ctor(), { code: 'AGW_ERR_TOOL_DISPATCHER_PRIVATE' })
  // @ts-expect-error ToolDispatcher is only a type: there is no class to construct.
  t.throws(() => new ToolDispatcher())
})

t.test('registration: duplicates and invalid tools fail ready() with coded errors', async (t) => {
  const cases: Array<[readonly unknown[], string, RegExp]> = [
    [[add, add], 'AGW_ERR_TOOL_DUPLICATE', /"add" is already registered/],
    [[{ ...add, name: 'has space' }], 'AGW_ERR_TOOL_INVALID', /name must match/],
    [[{ ...add, description: '' }], 'AGW_ERR_TOOL_INVALID', /description is required/],
    [[{ ...add, parameters: Type.String() }], 'AGW_ERR_TOOL_INVALID', /Type.Object/],
    [[{ ...add, execute: 'nope' }], 'AGW_ERR_TOOL_INVALID', /execute must be a function/],
    [[{ ...add, timeoutMs: -1 }], 'AGW_ERR_TOOL_INVALID', /timeoutMs/],
    [[{ ...add, scope: '' }], 'AGW_ERR_TOOL_INVALID', /scope/],
    [[null], 'AGW_ERR_TOOL_INVALID', /must be an object/]
  ]
  for (const [tools, code, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    app.register(configPlugin, { env: { APP_ENV: 'test' } })
    app.register(toolDispatcher, { tools: tools as Tool[] })
    await t.rejects(async () => { await app.ready() }, { code, message })
  }
})

t.test('tools may be added by other plugins until the server is ready', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test' } })
  app.register(toolDispatcher, { tools: [add] })
  app.register(async (scope) => { scope.toolRegistry.add(slow) })
  await app.ready()
  t.same(app.toolRegistry.names, ['add', 'slow'])
  t.throws(() => { app.toolRegistry.add(hanging) }, { code: 'AGW_ERR_TOOL_REGISTRY_CLOSED' })
})

t.test('tool-dispatcher cannot be registered without config', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(toolDispatcher, { tools: [] })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED' })
})

/** A promise and the function that settles it, for tools that wait on the test. */
function gate (): { opened: Promise<void>, open: () => void } {
  let open: () => void = () => {}
  const opened = new Promise<void>((resolve) => { open = resolve })
  return { opened, open }
}

t.test('progress reports become tool_progress events between tool_executing and tool_completed', async (t) => {
  let late: ToolContext['progress'] | undefined
  const reporter = defineTool({
    name: 'reporter',
    description: 'Reports progress',
    parameters: Type.Object({}),
    async execute (_args, { progress }) {
      progress(1, 4)
      progress(1, 4, 'not growing: dropped')
      progress(0.5, 4, 'going back: dropped')
      progress(Number.NaN)
      progress('2' as unknown as number)
      progress(2, Number.POSITIVE_INFINITY, '')
      progress(4, 4, 'x'.repeat(600))
      late = progress
      return 'done'
    }
  })
  const app = await dispatcherApp(t, [reporter], { TOOL_PROGRESS_INTERVAL_MS: '0' })
  const { dispatcher, events } = makeDispatcher(app)
  const outcome = await dispatcher.call('reporter', {})
  late?.(5, 5, 'after the end: dropped')
  t.same(events.map((e) => e.type), ['tool_executing', 'tool_progress', 'tool_progress', 'tool_progress', 'tool_completed'])
  t.same(events[1]?.data, { toolCallId: outcome.toolCallId, progress: 1, total: 4 })
  t.same(events[2]?.data, { toolCallId: outcome.toolCallId, progress: 2 }, 'a total that is not a finite number and an empty message are left out')
  t.equal((events[3]?.data.message as string).length, 500, 'a long message is cut to the schema limit')
  t.match(events[3]?.data.message, /^x+…$/)
})

t.test('progress closer together than TOOL_PROGRESS_INTERVAL_MS is thinned to the latest report', async (t) => {
  const twoSeen = gate()
  const flood = defineTool({
    name: 'flood',
    description: 'Reports a thousand times at once, then waits',
    parameters: Type.Object({ wait: Type.Boolean() }),
    async execute ({ wait }, { progress }) {
      for (let i = 1; i <= 1000; i++) progress(i, 1000)
      if (wait) await twoSeen.opened
      return 'done'
    }
  })
  const app = await dispatcherApp(t, [flood], { TOOL_PROGRESS_INTERVAL_MS: '100' })
  const { events, sink } = recorder()
  const watched: DispatcherOptions['events'] = {
    emit (type: string, data: any) {
      (sink.emit as (type: string, data: unknown) => unknown)(type, data)
      if (events.filter((e) => e.type === 'tool_progress').length === 2) twoSeen.open()
      return true
    }
  }
  const context = createRunContext(createUserContext({ sub: 'alice' }, 'req-1'), { runId: 'run-1', threadId: 'thread-1', agent: 'demo' })
  const dispatcher = app.createToolDispatcher({ context, events: watched, signal: new AbortController().signal })
  await dispatcher.call('flood', { wait: true })
  t.same(events.filter((e) => e.type === 'tool_progress').map((e) => e.data.progress), [1, 1000], 'the first at once, then the latest once the interval has passed')

  events.length = 0
  await dispatcher.call('flood', { wait: false })
  t.same(events.map((e) => e.type), ['tool_executing', 'tool_progress', 'tool_completed'], 'a report still held back when the call ends is dropped')
})

t.test('a tool source offers tools that change at run time, next to the registered ones', async (t) => {
  const current = new Map<string, Tool>()
  const remote = (name: string, schema: Record<string, unknown>, scope?: string): Tool => ({
    name,
    description: `Remote ${name}`,
    parameters: schema,
    ...(scope === undefined ? {} : { scope }),
    async execute (args) { return { from: 'source', name, args } }
  })
  const down: Tool = remote('srv__down', { type: 'object' })
  down.execute = async () => { throw new RunError('SERVER_DOWN', 'The server is down') }
  const source: ToolSource = { tools: current, unlisted: (name) => (name.startsWith('srv__') ? down : undefined) }
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test' } })
  app.register(toolDispatcher, { tools: [add] })
  app.register(async (scope) => { scope.toolRegistry.addSource(source) })
  await app.ready()
  t.throws(() => { app.toolRegistry.addSource(source) }, { code: 'AGW_ERR_TOOL_REGISTRY_CLOSED' })

  const { dispatcher } = makeDispatcher(app)
  t.same(dispatcher.list().map((tool) => tool.name), ['add'])
  current.set('srv__echo', remote('srv__echo', { type: 'object', properties: { text: { type: 'string', minLength: 1 } }, required: ['text'], additionalProperties: false }))
  current.set('srv__admin', remote('srv__admin', { type: 'object' }, 'admin'))
  current.set('add', remote('add', { type: 'object' }))
  current.set('srv__bad name', remote('srv__bad name', { type: 'object' }))
  t.same(dispatcher.list().map((tool) => tool.name), ['add', 'srv__echo'], 'a registered tool wins over a source tool of its name; scoped and invalid tools are left out')
  t.same(dispatcher.list()[1]?.parameters, current.get('srv__echo')?.parameters, 'a source tool is listed with its own JSON Schema')
  t.same(makeDispatcher(app, 'admin').dispatcher.list().map((tool) => tool.name), ['add', 'srv__echo', 'srv__admin'])

  t.match(await dispatcher.call('srv__echo', { text: 'hi' }), { status: 'success', result: { from: 'source', name: 'srv__echo', args: { text: 'hi' } } })
  t.match(await dispatcher.call('srv__echo', { text: '' }), { status: 'error', error: { code: 'INVALID_ARGS', message: /text must have a minimum length of 1|text .*1/ } })
  t.match(await dispatcher.call('srv__echo', { text: 'hi', more: 1 }), { status: 'error', error: { code: 'INVALID_ARGS' } })
  t.match(await dispatcher.call('add', { a: 1, b: 2 }), { status: 'success', result: { sum: 3 } }, 'the registered tool is the one called')
  t.match(await dispatcher.call('srv__admin', {}), { status: 'error', error: { code: 'FORBIDDEN' } })
  t.match(await dispatcher.call('srv__gone', {}), { status: 'error', error: { code: 'SERVER_DOWN', message: 'The server is down' } }, 'an unlisted tool the source answers for')
  t.match(await dispatcher.call('other__x', {}), { status: 'error', error: { code: 'UNKNOWN_TOOL' } })
  t.match(await dispatcher.call('srv__bad name', {}), { status: 'error', error: { code: 'UNKNOWN_TOOL' } }, 'a tool that fails the checks cannot be called')

  current.set('srv__echo', remote('srv__echo', { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] }))
  t.match(await dispatcher.call('srv__echo', { n: 2 }), { status: 'success' }, 'a replaced tool is validated against its new schema')
  t.match(await dispatcher.call('srv__echo', { text: 'hi' }), { status: 'error', error: { code: 'INVALID_ARGS' } })
  current.delete('srv__echo')
  t.match(await dispatcher.call('srv__echo', { n: 2 }), { status: 'error', error: { code: 'SERVER_DOWN' } }, 'a tool the source no longer offers')
})

t.test('external(): a call that ran elsewhere is reported with paired events, ended once', async (t) => {
  const app = await dispatcherApp(t, [add])
  const { dispatcher, events } = makeDispatcher(app)
  const search = dispatcher.external('web_search', { query: 'weather' })
  t.same(events, [{ type: 'tool_executing', data: { toolCallId: search.toolCallId, tool: 'web_search', args: { query: 'weather' } } }])
  const done = search.complete({ hits: 3 })
  t.match(done, { toolCallId: search.toolCallId, tool: 'web_search', status: 'success', result: { hits: 3 } })
  t.same(search.fail('LATE', 'too late'), done, 'a second ending returns the outcome the call ended with …')
  t.equal(events.length, 2, '… and writes nothing')
  t.same(events[1]?.data, done)

  const broken = dispatcher.external('fetch_page')
  const failed = broken.fail('REMOTE_TOOL_FAILED', 'The page did not load')
  t.match(failed, { status: 'error', error: { code: 'REMOTE_TOOL_FAILED', message: 'The page did not load' } })
  t.match(dispatcher.external('slow_thing', {}).fail('GAVE_UP', 'No answer', 'timeout'), { status: 'timeout', error: { code: 'GAVE_UP' } })
  const circularValue: Record<string, unknown> = {}
  circularValue.self = circularValue
  t.match(dispatcher.external('odd').complete(circularValue), { status: 'error', error: { code: 'BAD_RESULT' } })
  t.match(dispatcher.external('odd_args', circularValue), { toolCallId: String })
  t.same(events.at(-1), { type: 'tool_executing', data: { toolCallId: events.at(-1)?.data.toolCallId, tool: 'odd_args', args: null } },
    'arguments JSON cannot hold are reported as null')
  t.equal(dispatcher.openCalls, 1)
})

t.test('external(): the end of the run closes open reports cancelled; after it nothing is written', async (t) => {
  const app = await dispatcherApp(t, [add])
  const { dispatcher, events } = makeDispatcher(app)
  const open = dispatcher.external('remote_lookup', { id: 1 })
  dispatcher.close()
  t.same(events.map((e) => [e.type, e.data.status]), [['tool_executing', undefined], ['tool_completed', 'cancelled']])
  t.equal(open.complete('late').status, 'cancelled', 'a result after the end does not change the outcome')
  const after = dispatcher.external('remote_lookup')
  t.equal(after.complete('x').status, 'success', 'a call reported after the end says what it was told')
  t.equal(events.length, 2, 'a report after the run ended writes no event')
  t.equal(dispatcher.openCalls, 0)
})
