// Several gateway nodes sharing one Redis, no sticky sessions: any node serves any user, and
// nothing is lost when a client moves, a node dies or Redis restarts.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Agent } from '../src/index.js'
import type { RunEvent } from '../src/protocol.js'
import { TEST_SECRET, buildApp, connect, listen, runProblems, testEnv, tokenFor } from './helpers.js'
import { OwnRedis, REDIS_URL, freePort, redisSkip, testPrefix } from './redis.js'

const skip = await redisSkip(t)
const root = fileURLToPath(new URL('..', import.meta.url))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Thinks `steps` times, `every` ms apart, or until cancelled. */
const ticker = (steps: number, every: number): Agent => async (run) => {
  for (let step = 1; step <= steps && !run.signal.aborted; step++) {
    run.think(`tick ${step}`)
    await sleep(every)
  }
  return { steps }
}

async function node (t: Test, url: string, prefix: string, env: Record<string, string> = {}): Promise<{ app: FastifyInstance, ws: string }> {
  const app = await buildApp(t, {
    agents: { ticker: ticker(40, 10), slow: ticker(1000, 20) },
    env: testEnv({ EVENT_STORE: url, REDIS_KEY_PREFIX: prefix, LEASE_TTL_MS: '600', ...env })
  })
  const { ws } = await listen(t, app)
  return { app, ws }
}

t.test('a run started on node A is watched live from node B, then resumed on B after a drop from A', { skip }, async (t) => {
  const prefix = testPrefix(t)
  const a = await node(t, REDIS_URL, prefix)
  const b = await node(t, REDIS_URL, prefix)
  t.not(a.app.eventStore.nodeId, b.app.eventStore.nodeId)
  const token = tokenFor('alice')
  const onA = await connect(t, a.ws, { token })
  onA.send({ type: 'run', agent: 'ticker', input: { message: 'go' } })
  const { runId } = await onA.nextOf('run_accepted')
  const onB = await connect(t, b.ws, { token })
  onB.send({ type: 'subscribe', runId })
  await onB.nextOf('subscribed')

  const seenOnA = await onA.readThenDrop(8)
  const resumed = await connect(t, b.ws, { token })
  resumed.send({ type: 'subscribe', runId, after: seenOnA.at(-1)?.seq ?? 0 })
  await resumed.nextOf('subscribed')
  const rest = await resumed.runEvents(runId)
  t.same(runProblems([...seenOnA, ...rest]), [], 'A then B: nothing lost, nothing repeated, in order')

  const watched = await onB.runEvents(runId)
  t.same(runProblems(watched), [], 'the watcher on B got every event live, in order')
  t.equal(watched.length, 42)
  t.match(watched.at(-1), { data: { status: 'completed', output: { steps: 40 } } })
})

t.test('cancel sent to node B ends the run executing on node A; limits and isolation hold across nodes', { skip }, async (t) => {
  const prefix = testPrefix(t)
  const a = await node(t, REDIS_URL, prefix, { MAX_CONCURRENT_RUNS: '2' })
  const b = await node(t, REDIS_URL, prefix, { MAX_CONCURRENT_RUNS: '2' })
  const alice = tokenFor('alice')
  const onA = await connect(t, a.ws, { token: alice })
  onA.send({ type: 'run', agent: 'slow', input: { message: 'go' } })
  const { runId } = await onA.waitFor('run_accepted')

  const onB = await connect(t, b.ws, { token: alice })
  onB.send({ type: 'run', agent: 'slow', input: { message: 'second' } })
  const second = await onB.waitFor('run_accepted')
  onB.send({ type: 'run', id: 'third', agent: 'slow', input: { message: 'third' } })
  t.match(await onB.waitFor('error'), { id: 'third', code: 'TOO_MANY_RUNS' }, 'two runs on two nodes fill the limit of 2')

  const mallory = await connect(t, b.ws, { token: tokenFor('mallory') })
  mallory.send({ type: 'subscribe', id: 'm', runId })
  t.match(await mallory.next(), { type: 'error', id: 'm', code: 'NOT_FOUND' }, "another user's run is not found from another node either")
  mallory.send({ type: 'cancel', id: 'm2', runId })
  t.match(await mallory.next(), { type: 'error', id: 'm2', code: 'NOT_FOUND' })

  onB.send({ type: 'cancel', runId })
  const events = await onA.runEvents(runId, 10_000)
  t.match(events.at(-1), { data: { status: 'cancelled' } }, 'the cancel crossed nodes')
  onB.send({ type: 'cancel', runId: second.runId })
  await onB.runEvents(second.runId)
  t.notOk(mallory.messages.some((m) => 'seq' in m), 'mallory saw no event')
  t.notOk(onA.messages.some((m) => 'seq' in m && m.runId === second.runId), 'runs reach only the connections that follow them')
})

t.test('node A is killed mid-run: the watcher on B gets NODE_LOST within the lease timeout, once', { skip }, async (t) => {
  const prefix = testPrefix(t)
  const b = await node(t, REDIS_URL, prefix)
  const port = await freePort()
  const child = spawn(process.execPath, ['dist/server.js'], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '', APP_ENV: 'test', JWT_SECRET: TEST_SECRET, PORT: String(port), LOG_LEVEL: 'silent',
      EVENT_STORE: REDIS_URL, REDIS_KEY_PREFIX: prefix, LEASE_TTL_MS: '600', DEMO_STEP_DELAY_MS: '1000'
    },
    stdio: 'ignore'
  })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const aWs = `ws://127.0.0.1:${port}/ws`
  let onA
  for (let attempt = 0; ; attempt++) {
    try {
      onA = await connect(t, aWs, { token: tokenFor('alice') })
      break
    } catch (err) {
      if (attempt > 100) throw err
      await sleep(100)
    }
  }
  onA.send({ type: 'run', input: { message: 'What is 6 * 7?' } })
  const { runId } = await onA.nextOf('run_accepted')
  const watcher = await connect(t, b.ws, { token: tokenFor('alice') })
  watcher.send({ type: 'subscribe', runId })
  await watcher.nextOf('subscribed')
  await watcher.nextOf('agent_started')
  await watcher.nextOf('agent_thinking')
  const killedAt = Date.now()
  child.kill('SIGKILL')
  const rest = await watcher.runEvents(runId, 10_000)
  const waited = Date.now() - killedAt
  t.match(rest.at(-1), { type: 'agent_completed', data: { status: 'failed', error: { code: 'NODE_LOST' } } })
  t.equal(rest.filter((e) => e.type === 'agent_completed').length, 1, 'exactly one terminal event')
  t.ok(waited < 5000, `it arrived ${waited} ms after the kill (lease 600 ms)`)
  const logged = await b.app.eventStore.read(runId, 0, 1000)
  const all = logged.map((e) => JSON.parse(e.frame.toString()) as RunEvent)
  t.same(runProblems(all), [], 'the log is whole: paired tool events, one terminal event, last')
  t.match(await b.app.eventStore.getRun(runId), { state: 'found', meta: { status: 'failed' } })
})

t.test('Redis restarts mid-run: the run goes on and no event is lost', { skip }, async (t) => {
  const redis = new OwnRedis(await freePort())
  t.teardown(() => redis.dispose())
  await redis.start()
  const a = await node(t, redis.url, 'agw:')
  const client = await connect(t, a.ws, { token: tokenFor('alice') })
  client.send({ type: 'run', agent: 'ticker', input: { message: 'go' } })
  const { runId } = await client.nextOf('run_accepted')
  const seen: RunEvent[] = []
  while (seen.length < 5) {
    const message = await client.next()
    if ('seq' in message) seen.push(message)
  }
  await redis.stop()
  t.equal((await a.app.inject('/readyz')).statusCode, 503, 'not ready while Redis is down')
  await sleep(300)
  await redis.start()
  const rest = await client.runEvents(runId, 20_000)
  const all = [...seen, ...rest]
  t.same(runProblems(all), [], 'a pause, not a gap: every event, once, in order')
  t.equal(all.length, 42)
  let ready = 0
  for (let i = 0; i < 50 && ready !== 200; i++) {
    ready = (await a.app.inject('/readyz')).statusCode
    if (ready !== 200) await sleep(100)
  }
  t.equal(ready, 200, 'ready again once Redis answers')
})
