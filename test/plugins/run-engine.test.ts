import t, { type Test } from 'tap'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { configPlugin } from '../../src/config.js'
import authSecret from '../../src/plugins/auth-secret.js'
import userContext, { createUserContext, type UserContext } from '../../src/plugins/user-context.js'
import toolDispatcher from '../../src/plugins/tool-dispatcher.js'
import telemetry from '../../src/plugins/telemetry.js'
import eventStore from '../../src/plugins/event-store.js'
import delivery from '../../src/plugins/delivery.js'
import runEngine from '../../src/plugins/run-engine.js'
import { RunError, defineTool, type Agent, type AgentRun, type Tool } from '../../src/contracts.js'
import type { RunEvent } from '../../src/protocol.js'
import { TEST_SECRET, runProblems } from '../helpers.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const echo = defineTool({
  name: 'echo',
  description: 'Echoes',
  parameters: Type.Object({ text: Type.String() }),
  async execute ({ text }) { return text }
})
const stuck = defineTool({
  name: 'stuck',
  description: 'Never returns',
  parameters: Type.Object({}),
  execute: () => new Promise(() => {})
})

interface EngineOptions { agents: Record<string, Agent>, tools?: Tool[], env?: Record<string, string>, defaultAgent?: string, logLines?: string[], prometheus?: boolean }

/** The engine and its dependencies on a bare Fastify (optionally without the delivery path). */
function engineStack (t: Test, options: Record<string, unknown>, { env = {}, tools = [echo, stuck], withDelivery = true, logLines, prometheus = false }: { env?: Record<string, string>, tools?: Tool[], withDelivery?: boolean, logLines?: string[], prometheus?: boolean } = {}): FastifyInstance {
  const app = logLines === undefined
    ? Fastify()
    : Fastify({ logger: { level: 'info', stream: new Writable({ write (chunk: Buffer, _encoding, callback) { logLines.push(chunk.toString()); callback() } }) } })
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test', JWT_SECRET: TEST_SECRET, SHUTDOWN_GRACE_MS: '0', ...env } })
  app.register(telemetry, { prometheus })
  app.register(authSecret)
  app.register(userContext)
  app.register(eventStore)
  app.register(toolDispatcher, { tools })
  if (withDelivery) app.register(delivery)
  app.register(runEngine, options as never)
  return app
}

async function engineApp (t: Test, options: EngineOptions): Promise<FastifyInstance> {
  const app = engineStack(t, { agents: options.agents, defaultAgent: options.defaultAgent }, options)
  await app.ready()
  return app
}

const alice: UserContext = createUserContext({ sub: 'alice', scope: 'read' }, 'req-1')

/** Waits for the run to end, then returns its whole log, parsed. */
async function finished (app: FastifyInstance, runId: string, timeoutMs = 5000): Promise<RunEvent[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const lookup = await app.eventStore.getRun(runId)
    if (lookup.state === 'found' && lookup.meta.status !== 'running') break
    if (Date.now() > deadline) throw new Error(`run ${runId} did not end`)
    await sleep(5)
  }
  const events = await app.eventStore.read(runId, 0, 10_000)
  return events.map((event) => JSON.parse(event.frame.toString()) as RunEvent)
}

t.test('the engine emits agent_started and the single agent_completed around the agent', async (t) => {
  let received: AgentRun | undefined
  const app = await engineApp(t, {
    agents: {
      helper: async (run) => {
        received = run
        run.think('Looking at the question')
        const outcome = await run.tools.call('echo', { text: 'hi' })
        run.think('Got it')
        run.say('Hello ')
        run.say('world')
        return { answer: 'Hello world', tool: outcome.status }
      }
    }
  })
  const started = await app.runEngine.start(alice, { input: { message: 'hi', extra: 1 } })
  t.match(started, { agent: 'helper', runId: String, threadId: String })
  const events = await finished(app, started.runId)
  t.same(runProblems(events), [])
  t.same(events.map((e) => e.type), ['agent_started', 'agent_thinking', 'tool_executing', 'tool_completed', 'agent_thinking', 'agent_message', 'agent_message', 'agent_completed'])
  t.same(events[0]?.data, { agent: 'helper', input: { message: 'hi', extra: 1 } })
  t.same(events.filter((e) => e.type === 'agent_thinking').map((e) => e.data), [{ thought: 'Looking at the question', step: 1 }, { thought: 'Got it', step: 2 }])
  const messages = events.filter((e) => e.type === 'agent_message')
  t.equal(new Set(messages.map((e) => e.type === 'agent_message' && e.data.messageId)).size, 1, 'consecutive deltas share a messageId')
  t.match(events.at(-1), { type: 'agent_completed', data: { status: 'completed', output: { answer: 'Hello world', tool: 'success' }, durationMs: Number } })
  t.match(received?.context, { userId: 'alice', scopes: ['read'], runId: started.runId, threadId: started.threadId, agent: 'helper' })
  t.ok(Object.isFrozen(received?.context), 'the run context is frozen')
  t.ok(Object.isFrozen(received?.input), 'the input is frozen')
})

t.test('drain, destructured, lets a fast agent wait for the log: every event of a long run is written, in order', async (t) => {
  const app = await engineApp(t, {
    agents: {
      fast: async ({ think, drain }) => {
        for (let i = 1; i <= 2000; i++) {
          think(`thought ${i}`)
          if (i % 100 === 0) await drain()
        }
        return 'done'
      }
    }
  })
  const { runId } = await app.runEngine.start(alice, { input: { message: 'go' } })
  const events = await finished(app, runId)
  t.same(runProblems(events), [])
  t.equal(events.filter((event) => event.type === 'agent_thinking').length, 2000)
  t.match(events.at(-1), { type: 'agent_completed', data: { status: 'completed', output: 'done' } })
})

t.test('a thought or a tool call between deltas starts a new message', async (t) => {
  const app = await engineApp(t, {
    agents: {
      chatty: async (run) => {
        run.say('a'); run.say('b')
        await run.tools.call('echo', { text: 'x' })
        run.say('c')
        run.think('hmm')
        run.say('d')
        return null
      }
    }
  })
  const { runId } = await app.runEngine.start(alice, { input: { message: 'x' } })
  const ids = (await finished(app, runId)).flatMap((e) => (e.type === 'agent_message' ? [e.data.messageId] : []))
  t.equal(ids.length, 4)
  t.equal(ids[0], ids[1])
  t.not(ids[1], ids[2])
  t.not(ids[2], ids[3])
})

t.test('threadId is kept when given, agent is chosen by name, unknown agents are refused', async (t) => {
  const app = await engineApp(t, { agents: { a: async () => 'a', b: async () => 'b' }, defaultAgent: 'b' })
  t.same(app.runEngine.agents, ['a', 'b'])
  const byDefault = await app.runEngine.start(alice, { input: { message: 'x' }, threadId: 'thread-42' })
  t.match(byDefault, { agent: 'b', threadId: 'thread-42' })
  t.match((await finished(app, byDefault.runId)).at(-1), { data: { output: 'b' } })
  const named = await app.runEngine.start(alice, { agent: 'a', input: { message: 'x' } })
  t.match((await finished(app, named.runId)).at(-1), { data: { output: 'a' } })
  await t.rejects(app.runEngine.start(alice, { agent: 'zeta', input: { message: 'x' } }), { code: 'AGW_ERR_RUN_UNKNOWN_AGENT', message: 'No agent named "zeta"' })
})

t.test('an agent that throws fails with AGENT_FAILED and no details; a RunError keeps its code', async (t) => {
  const app = await engineApp(t, {
    agents: {
      broken: async () => { throw new Error('secret stack detail at /srv/app.js:12') },
      honest: async () => { throw new RunError('QUOTA', 'Your quota is used up') }
    }
  })
  const broken = await app.runEngine.start(alice, { agent: 'broken', input: { message: 'x' } })
  const last = (await finished(app, broken.runId)).at(-1)
  t.match(last, { type: 'agent_completed', data: { status: 'failed', error: { code: 'AGENT_FAILED', message: 'The agent failed' } } })
  t.notMatch(JSON.stringify(last), /secret stack|app\.js/)
  const honest = await app.runEngine.start(alice, { agent: 'honest', input: { message: 'x' } })
  t.match((await finished(app, honest.runId)).at(-1), { data: { status: 'failed', error: { code: 'QUOTA', message: 'Your quota is used up' } } })
})

t.test('an agent that is not async and throws at once fails its run like an async one; nothing escapes', async (t) => {
  const escaped: unknown[] = []
  const onRejection = (reason: unknown): void => { escaped.push(reason) }
  process.on('unhandledRejection', onRejection)
  t.teardown(() => { process.off('unhandledRejection', onRejection) })
  const app = await engineApp(t, {
    agents: {
      // Plain functions, typed as agents: a throw before any promise exists.
      sync: () => { throw new Error('thrown before any await') },
      syncQuota: () => { throw new RunError('QUOTA', 'Your quota is used up') },
      value: (() => 'not a promise') as unknown as Agent
    }
  })
  const sync = await app.runEngine.start(alice, { agent: 'sync', input: { message: 'x' } })
  t.match((await finished(app, sync.runId)).at(-1), { data: { status: 'failed', error: { code: 'AGENT_FAILED' } } })
  const quota = await app.runEngine.start(alice, { agent: 'syncQuota', input: { message: 'x' } })
  t.match((await finished(app, quota.runId)).at(-1), { data: { status: 'failed', error: { code: 'QUOTA' } } })
  const value = await app.runEngine.start(alice, { agent: 'value', input: { message: 'x' } })
  t.match((await finished(app, value.runId)).at(-1), { data: { status: 'completed', output: 'not a promise' } })
  await sleep(20)
  t.same(escaped, [], 'no unhandled rejection')
})

t.test("a run's logger carries the run's id and agent, for the agent's own lines and the engine's", async (t) => {
  const logLines: string[] = []
  const app = await engineApp(t, {
    logLines,
    agents: {
      chatty: async ({ log }) => { log.info({ step: 1 }, 'looking things up'); return 'ok' },
      broken: async () => { throw new Error('boom') },
      quiet: async () => 'ok'
    }
  })
  const chatty = await app.runEngine.start(alice, { agent: 'chatty', input: { message: 'x' } })
  await finished(app, chatty.runId)
  const broken = await app.runEngine.start(alice, { agent: 'broken', input: { message: 'x' } })
  await finished(app, broken.runId)
  const quiet = await app.runEngine.start(alice, { agent: 'quiet', input: { message: 'x' } })
  await finished(app, quiet.runId)
  const lines = logLines.map((line) => JSON.parse(line) as Record<string, unknown>)
  t.match(lines.find((line) => line.msg === 'looking things up'), { runId: chatty.runId, agent: 'chatty', step: 1 })
  t.match(lines.find((line) => line.msg === 'agent failed'), { runId: broken.runId, agent: 'broken', err: { message: 'boom' } })
  t.notOk(lines.some((line) => line.runId === quiet.runId), 'a run that logs nothing leaves no line')
})

t.test('an agent that never returns is ended at RUN_TIMEOUT_MS with TIMEOUT, its tool calls cancelled first', async (t) => {
  const app = await engineApp(t, {
    env: { RUN_TIMEOUT_MS: '100' },
    agents: { hang: async (run) => { await run.tools.call('stuck', {}); await new Promise(() => {}) } }
  })
  const { runId } = await app.runEngine.start(alice, { input: { message: 'x' } })
  const events = await finished(app, runId)
  t.same(runProblems(events), [])
  t.same(events.map((e) => e.type), ['agent_started', 'tool_executing', 'tool_completed', 'agent_completed'])
  t.match(events[2], { data: { status: 'cancelled' } })
  t.match(events[3], { data: { status: 'failed', error: { code: 'TIMEOUT' } } })
})

t.test('cancel ends the run with cancelled, open tool calls first; later cancels say RUN_ENDED', async (t) => {
  let signal: AbortSignal | undefined
  const app = await engineApp(t, {
    agents: { slow: async (run) => { signal = run.signal; run.think('working'); await run.tools.call('stuck', {}); return 'never' } }
  })
  const { runId } = await app.runEngine.start(alice, { input: { message: 'x' } })
  while ((await app.eventStore.read(runId, 0, 10)).length < 3) await sleep(2)
  await app.runEngine.cancel(alice, runId)
  const events = await finished(app, runId)
  t.same(runProblems(events), [])
  t.same(events.slice(-2).map((e) => [e.type, (e.data as { status?: string }).status]), [['tool_completed', 'cancelled'], ['agent_completed', 'cancelled']])
  t.equal(signal?.aborted, true, "the agent's signal fired")
  await t.rejects(app.runEngine.cancel(alice, runId), { code: 'AGW_ERR_RUN_ENDED' })
})

t.test('a run cancelled before its agent starts ends cancelled, and its agent is never called', async (t) => {
  let calls = 0
  const app = await engineApp(t, { agents: { counted: async () => { calls++; return 'ran' } } })
  const { runId } = await app.runEngine.start(alice, { input: { message: 'x' } })
  // The agent starts once this turn's continuations have run: the cancel is one of them.
  await app.runEngine.cancel(alice, runId)
  const events = await finished(app, runId)
  t.same(runProblems(events), [])
  t.same(events.map((e) => [e.type, (e.data as { status?: string }).status]), [['agent_started', undefined], ['agent_completed', 'cancelled']])
  await sleep(20)
  t.equal(calls, 0, 'the agent was never called')
})

t.test('the first end counts: a stop after the agent returned, or an agent settling after the stop, changes nothing', async (t) => {
  let finishLate: ((value: string) => void) | undefined
  const app = await engineApp(t, {
    prometheus: true,
    agents: {
      quick: async () => 'done',
      late: async (run) => {
        run.think('working')
        return await new Promise<string>((resolve) => { finishLate = resolve })
      }
    }
  })
  const quick = await app.runEngine.start(alice, { agent: 'quick', input: { message: 'x' } })
  const quickEvents = await finished(app, quick.runId)
  await t.rejects(app.runEngine.cancel(alice, quick.runId), { code: 'AGW_ERR_RUN_ENDED' })
  t.match(quickEvents.at(-1), { type: 'agent_completed', data: { status: 'completed', output: 'done' } })

  const late = await app.runEngine.start(alice, { agent: 'late', input: { message: 'x' } })
  while ((await app.eventStore.read(late.runId, 0, 10)).length < 2) await sleep(2)
  await app.runEngine.cancel(alice, late.runId)
  await finished(app, late.runId)
  finishLate?.('too late')
  await sleep(20)
  const events = (await app.eventStore.read(late.runId, 0, 100)).map((e) => JSON.parse(e.frame.toString()) as RunEvent)
  t.same(runProblems(events), [])
  t.same(events.map((e) => e.type), ['agent_started', 'agent_thinking', 'agent_completed'], 'one terminal event')
  t.match(events.at(-1), { data: { status: 'cancelled' } })
  const lookup = await app.eventStore.getRun(late.runId)
  t.equal(lookup.state === 'found' ? lookup.meta.status : lookup.state, 'cancelled', 'the store agrees')
  const ended = await app.metricsRegistry?.getSingleMetric('agw_runs_total')?.get()
  t.same(ended?.values.map((v) => [v.labels.status, v.value]).sort(), [['cancelled', 1], ['completed', 1]], 'each run ended once: one completed, one cancelled')
  t.equal(app.runEngine.activeRuns(), 0)
})

t.test("cancelling another user's run is indistinguishable from cancelling a missing one", async (t) => {
  const app = await engineApp(t, { agents: { slow: async (run) => { await new Promise((resolve) => run.signal.addEventListener('abort', resolve)) } } })
  const { runId } = await app.runEngine.start(alice, { input: { message: 'x' } })
  const mallory = createUserContext({ sub: 'mallory' }, 'req-2')
  const theirs = await app.runEngine.cancel(mallory, runId).catch((err: Error & { code: string }) => ({ code: err.code, message: err.message.replace(runId, 'ID') }))
  const missing = await app.runEngine.cancel(mallory, 'no-such-run').catch((err: Error & { code: string }) => ({ code: err.code, message: err.message.replace('no-such-run', 'ID') }))
  t.same(theirs, missing)
  t.same(theirs, { code: 'AGW_ERR_RUN_NOT_FOUND', message: 'Run "ID" not found' })
  await app.runEngine.cancel(alice, runId)
})

t.test('MAX_CONCURRENT_RUNS is per user and counts runs in flight', async (t) => {
  const app = await engineApp(t, {
    env: { MAX_CONCURRENT_RUNS: '2' },
    agents: { wait: async (run) => { await new Promise((resolve) => run.signal.addEventListener('abort', resolve)) } }
  })
  const first = await app.runEngine.start(alice, { input: { message: '1' } })
  const both = await Promise.allSettled([
    app.runEngine.start(alice, { input: { message: '2' } }),
    app.runEngine.start(alice, { input: { message: '3' } })
  ])
  t.same(both.map((r) => r.status).sort(), ['fulfilled', 'rejected'], 'concurrent starts cannot overshoot')
  t.match(both.find((r) => r.status === 'rejected'), { reason: { code: 'AGW_ERR_RUN_TOO_MANY', message: /limit 2/ } })
  const bob = createUserContext({ sub: 'bob' }, 'req-3')
  await t.resolves(app.runEngine.start(bob, { input: { message: 'bob is not limited by alice' } }))
  t.equal(app.runEngine.activeRuns('alice'), 2)
  await app.runEngine.cancel(alice, first.runId)
  await finished(app, first.runId)
  await t.resolves(app.runEngine.start(alice, { input: { message: 'a slot is free again' } }))
})

t.test('an output JSON cannot hold fails the run with BAD_OUTPUT', async (t) => {
  const app = await engineApp(t, { agents: { odd: async () => { const o: Record<string, unknown> = {}; o.o = o; return o } } })
  const { runId } = await app.runEngine.start(alice, { input: { message: 'x' } })
  t.match((await finished(app, runId)).at(-1), { data: { status: 'failed', error: { code: 'BAD_OUTPUT' } } })
})

t.test('an agent that keeps going after the end emits nothing more', async (t) => {
  let late: Promise<unknown> | undefined
  const app = await engineApp(t, {
    env: { RUN_TIMEOUT_MS: '50' },
    agents: {
      stubborn: async (run) => {
        await sleep(120)
        run.think('still here')
        run.say('hello?')
        late = run.tools.call('echo', { text: 'late' })
        return 'ignored'
      }
    }
  })
  const { runId } = await app.runEngine.start(alice, { input: { message: 'x' } })
  await finished(app, runId)
  await sleep(150)
  t.match(await late, { status: 'cancelled' })
  const events = (await app.eventStore.read(runId, 0, 100)).map((e) => e.type)
  t.same(events, ['agent_started', 'agent_completed'])
})

t.test('a run that completed refuses the tool calls its agent makes afterwards, even with its first look at the tools', async (t) => {
  let late: Promise<unknown> | undefined
  const app = await engineApp(t, {
    agents: {
      // Completes at once; its dispatcher is first asked for after the run has ended.
      hasty: async (run) => {
        setTimeout(() => { late = run.tools.call('echo', { text: 'late' }) }, 30)
        return 'done'
      }
    }
  })
  const { runId } = await app.runEngine.start(alice, { input: { message: 'x' } })
  await finished(app, runId)
  await sleep(60)
  t.match(await late, { status: 'cancelled', error: { code: 'RUN_ENDED' } })
  const events = (await app.eventStore.read(runId, 0, 100)).map((e) => e.type)
  t.same(events, ['agent_started', 'agent_completed'])
})

t.test('agents are checked as they are registered, and the registry before the app is ready', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ agents: {} }, /at least one agent/],
    [{ agents: { 'bad name!': async () => 1 } }, /agent name "bad name!"/],
    [{ agents: { a: 'not a function' } }, /must be a function/],
    [{ agents: { a: async () => 1 }, defaultAgent: 'b' }, /default agent "b" is not registered/]
  ]
  for (const [options, message] of cases) {
    const app = engineStack(t, options)
    await t.rejects(async () => { await app.ready() }, { code: 'AGW_ERR_AGENT_INVALID', message })
  }
})

t.test('the agent registry is filled like the tool registry: by option or add(), until the app is ready', async (t) => {
  const app = engineStack(t, { defaultAgent: 'second' })
  app.after(() => {
    app.agentRegistry.add('first', async () => 'one')
    app.agentRegistry.add('second', async () => 'two')
    t.throws(() => { app.agentRegistry.add('first', async () => 'again') }, { code: 'AGW_ERR_AGENT_DUPLICATE', message: 'An agent named "first" is already registered' })
  })
  await app.ready()
  t.same(app.runEngine.agents, ['first', 'second'])
  t.equal(app.runEngine.defaultAgent, 'second')
  t.throws(() => { app.agentRegistry.add('late', async () => 'late') }, { code: 'AGW_ERR_AGENT_REGISTRY_CLOSED' }, 'sealed once ready')
  const { runId, agent } = await app.runEngine.start(alice, { input: { message: 'x' } })
  t.equal(agent, 'second')
  t.match((await finished(app, runId)).at(-1), { data: { status: 'completed', output: 'two' } })
})

t.test('getOwnedRun: the owner finds the run; anyone else gets exactly the error of a missing run', async (t) => {
  const app = await engineApp(t, { env: { RUN_HISTORY_TTL_MS: '50' }, agents: { a: async () => 'ok' } })
  const bob = createUserContext({ sub: 'bob' }, 'req-2')
  const { runId } = await app.runEngine.start(alice, { input: { message: 'x' } })
  t.match(await app.runEngine.getOwnedRun(alice, runId), { runId, ownerId: 'alice' })
  const theirs = await app.runEngine.getOwnedRun(bob, runId).catch((err: Error & { code: string }) => [err.code, err.message.replace(runId, 'ID')])
  const missing = await app.runEngine.getOwnedRun(bob, 'run-x').catch((err: Error & { code: string }) => [err.code, err.message.replace('run-x', 'ID')])
  t.same(theirs, missing)
  t.same(theirs, ['AGW_ERR_RUN_NOT_FOUND', 'Run "ID" not found'])
  await finished(app, runId)
  await sleep(120)
  await t.rejects(app.runEngine.getOwnedRun(alice, runId), { code: 'AGW_ERR_RUN_HISTORY_EXPIRED' }, 'its owner learns the history expired')
  await t.rejects(app.runEngine.getOwnedRun(bob, runId), { code: 'AGW_ERR_RUN_NOT_FOUND' }, 'others still learn nothing')
})

t.test('the engine cannot be registered without the delivery path', async (t) => {
  const app = engineStack(t, { agents: { a: async () => 1 } }, { withDelivery: false })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED', message: /delivery/ })
})

t.test('shutdown ends runs still going with SHUTDOWN after the grace period', async (t) => {
  // The grace period is far longer than the quick run takes, so that a busy machine cannot make
  // it miss; the run that never ends shows the period is bounded all the same.
  const app = await engineApp(t, {
    env: { SHUTDOWN_GRACE_MS: '1500' },
    agents: {
      quick: async () => { await sleep(10); return 'made it' },
      forever: async (run) => { await new Promise((resolve) => run.signal.addEventListener('abort', resolve)) }
    }
  })
  const quick = await app.runEngine.start(alice, { agent: 'quick', input: { message: 'x' } })
  const forever = await app.runEngine.start(alice, { agent: 'forever', input: { message: 'x' } })
  await app.close()
  const store = app.eventStore
  const last = async (runId: string): Promise<unknown> => JSON.parse((await store.read(runId, 0, 100)).at(-1)?.frame.toString() ?? 'null')
  t.match(await last(quick.runId), { data: { status: 'completed', output: 'made it' } }, 'finished within the grace period')
  t.match(await last(forever.runId), { data: { status: 'failed', error: { code: 'SHUTDOWN' } } })
  await t.rejects(app.runEngine.start(alice, { input: { message: 'x' } }), { code: 'AGW_ERR_SHUTTING_DOWN' })
})

t.test('programmatic starts get the same request checks as frames, and a refused start costs nothing', async (t) => {
  const app = await engineApp(t, { env: { MAX_CONCURRENT_RUNS: '1' }, agents: { a: async () => 'ok' } })
  const circular: Record<string, unknown> = { message: 'x' }
  circular.self = circular
  const bad: Array<[unknown, RegExp]> = [
    [{ input: {} }, /input must have required properties message/],
    [{ input: { message: 42 } }, /input\.message must be string/],
    [{ threadId: 'not allowed!', input: { message: 'x' } }, /threadId must match pattern/],
    [{ input: circular }, /input is not JSON-serialisable/]
  ]
  for (const [request, message] of bad) {
    await t.rejects(app.runEngine.start(alice, request as never), { code: 'AGW_ERR_RUN_REQUEST_INVALID', statusCode: 400, message })
  }
  t.equal(app.runEngine.activeRuns('alice'), 0, 'no slot was taken')
  const { runId } = await app.runEngine.start(alice, { input: { message: 'fine' } })
  t.match((await finished(app, runId)).at(-1), { data: { status: 'completed', output: 'ok' } })
})
