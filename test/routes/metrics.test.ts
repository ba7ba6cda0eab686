// GET /metrics, scraped after the things it counts have happened.
import t from 'tap'
import { buildApp, connect, firehose, gatedStore, listen, mint, refusedUpgrade, runEnded, runProblems, tcpOf, testEnv, tokenFor } from '../helpers.js'

/** The value of one sample of a Prometheus text exposition, or undefined. */
function sample (text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels === '' ? ' ' : `{${labels}} `}`))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}

t.test('the metrics count connections, auth failures, runs, events, latency, replays and rejected messages', async (t) => {
  const { createDemoAgent, demoTools } = await import('../../src/agents/index.js')
  const app = await buildApp(t, { agents: { demo: createDemoAgent({ stepDelayMs: 0 }), flood: firehose(20_000, 200) }, tools: demoTools, env: testEnv({ SEND_BUFFER_BYTES: '16384' }) })
  const { ws, http } = await listen(t, app)
  await refusedUpgrade(ws, { authorization: `Bearer ${mint({ sub: 'a' }, { expiresIn: -600 })}` })
  await refusedUpgrade(ws, { authorization: `Bearer ${mint({ sub: 'none' })}` })
  const client = await connect(t, ws, { token: tokenFor('alice') })
  client.send({ type: 'run', input: { message: 'What is 2 + 2?' } })
  const { runId } = await client.nextOf('run_accepted')
  const events = await client.runEvents(runId)
  client.send('not json')
  await client.nextOf('error')
  client.send({ type: 'subscribe', runId, after: 0 })
  await client.nextOf('subscribed')
  await client.runEvents(runId)

  const slow = await connect(t, ws, { token: tokenFor('bob') })
  const tcp = tcpOf(slow.socket)
  slow.send({ type: 'run', agent: 'flood', input: { message: 'go' } })
  const flooding = await slow.nextOf('run_accepted')
  tcp.pause()
  await runEnded(app, flooding.runId)
  tcp.resume()
  await slow.runEvents(flooding.runId, 30_000)

  const response = await fetch(`${http}/metrics`)
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^text\/plain/)
  const text = await response.text()
  t.equal(sample(text, 'agw_connections_open', 'kind="websocket"'), 2)
  t.equal(sample(text, 'agw_connections_total', 'kind="websocket"'), 2)
  t.equal(sample(text, 'agw_auth_failures_total', 'reason="AGW_ERR_AUTH_TOKEN_EXPIRED"'), 1)
  t.equal(sample(text, 'agw_auth_failures_total', 'reason="AGW_ERR_AUTH_SUBJECT_INVALID"'), 1)
  t.equal(sample(text, 'agw_runs_active'), 0)
  t.equal(sample(text, 'agw_runs_total', 'status="completed"'), 2)
  t.equal(sample(text, 'agw_events_total', 'type="agent_started"'), 2)
  t.equal(sample(text, 'agw_events_total', 'type="tool_completed"'), events.filter((e) => e.type === 'tool_completed').length)
  t.equal(sample(text, 'agw_events_total', 'type="agent_thinking"'), 20_000 + events.filter((e) => e.type === 'agent_thinking').length)
  t.ok((sample(text, 'agw_delivery_latency_seconds_count') ?? 0) > events.length, 'live deliveries were timed')
  t.ok((sample(text, 'agw_slow_consumer_pauses_total') ?? 0) >= 1, 'the stalled reader paused live delivery')
  t.ok((sample(text, 'agw_events_replayed_total') ?? 0) >= events.length, 'the resubscribe and the catch-up were sent from the log')
  t.equal(sample(text, 'agw_messages_rejected_total', 'code="BAD_MESSAGE"'), 1)
  t.ok((sample(text, 'agw_process_cpu_user_seconds_total') ?? -1) >= 0, 'default process metrics are there')
  t.match(text, /agw_nodejs_eventloop_lag_seconds/)
})

t.test("an agent starts once run_accepted is sent and the connection follows: its events flow live from its first", async (t) => {
  // An agent that emits everything before its first await: if it began before the route had
  // subscribed the connection, its thoughts would reach the socket from the log, not live.
  const app = await buildApp(t, { agents: { eager: async ({ think }) => { for (let i = 1; i <= 200; i++) think(`thought ${i}`) } } })
  const { ws } = await listen(t, app)
  const client = await connect(t, ws, { token: tokenFor('alice') })
  for (let i = 0; i < 5; i++) {
    client.send({ type: 'run', agent: 'eager', input: { message: 'go' } })
    const { runId } = await client.nextOf('run_accepted')
    const events = await client.runEvents(runId)
    t.same(runProblems(events), [], 'gapless, in order, one terminal event')
    t.equal(events.length, 202)
  }
  const text = await app.metricsRegistry!.metrics()
  t.equal(sample(text, 'agw_events_replayed_total'), 5, 'only each run\'s agent_started, logged before run_accepted, came from the log')
  t.equal(sample(text, 'agw_delivery_latency_seconds_count'), 5 * 201, 'every thought and agent_completed was delivered live')
})

t.test('agw_events_unwritten counts the events waiting for a store that lags behind', async (t) => {
  const { createUserContext } = await import('../../src/plugins/user-context.js')
  const gated = gatedStore()
  let emitted: () => void = () => {}
  const allEmitted = new Promise<void>((resolve) => { emitted = resolve })
  let finish: () => void = () => {}
  const finished = new Promise<void>((resolve) => { finish = resolve })
  const app = await buildApp(t, {
    store: gated.store,
    agents: {
      fast: async ({ think }) => {
        for (let i = 1; i <= 300; i++) think(`thought ${i}`)
        emitted()
        await finished
      }
    }
  })
  const scrape = async (): Promise<number | undefined> => sample(await app.metricsRegistry!.metrics(), 'agw_events_unwritten')
  t.equal(await scrape(), 0)
  const { runId } = await app.runEngine.start(createUserContext({ sub: 'alice' }, 'req-1'), { input: { message: 'go' } })
  await allEmitted
  t.equal(await scrape(), 301, 'agent_started and 300 thoughts wait for the store')
  const running = async (): Promise<number | undefined> => sample(await app.metricsRegistry!.metrics(), 'agw_runs_active')
  t.equal(await running(), 1, 'the run is counted as active while it runs')
  gated.open()
  finish()
  await runEnded(app, runId)
  t.equal(await scrape(), 0, 'none once the store has them')
  t.equal(await running(), 0, 'and no longer once it has ended')
  const ended = sample(await app.metricsRegistry!.metrics(), 'agw_runs_total', 'status="completed"')
  t.equal(ended, 1, 'counted once by its status, however many times the registry is scraped')
})

t.test('agw_event_store_bytes is the memory store\'s size; a user over MEMORY_STORE_MAX_BYTES_PER_USER loses old runs (410)', async (t) => {
  const app = await buildApp(t, { env: testEnv({ MEMORY_STORE_MAX_BYTES_PER_USER: String(64 * 1024) }) })
  const { http } = await listen(t, app)
  const headers = { authorization: `Bearer ${tokenFor('heavy')}`, 'content-type': 'application/json' }
  const scrape = async (): Promise<number> => sample(await app.metricsRegistry!.metrics(), 'agw_event_store_bytes') ?? -1
  t.equal(await scrape(), 0)
  const runIds: string[] = []
  for (let i = 0; i < 5; i++) {
    const started = await fetch(`${http}/v1/runs`, { method: 'POST', headers, body: JSON.stringify({ input: { message: 'x'.repeat(8_000) } }) })
    const { runId } = await started.json() as { runId: string }
    await runEnded(app, runId)
    runIds.push(runId)
  }
  const bytes = await scrape()
  t.ok(bytes > 16_000 && bytes <= 64 * 1024, `the gauge reads the store's bytes, within the user's bound (${bytes})`)
  const first = await fetch(`${http}/v1/runs/${runIds[0] ?? ''}`, { headers })
  t.equal(first.status, 410, 'the oldest run was evicted: HISTORY_EXPIRED')
  t.equal(((await first.json()) as { code: string }).code, 'AGW_ERR_RUN_HISTORY_EXPIRED')
  t.equal((await fetch(`${http}/v1/runs/${runIds[4] ?? ''}`, { headers })).status, 200, 'the newest is kept')
})

t.test('METRICS_TOKEN protects the endpoint; each instance has its own registry', async (t) => {
  const guarded = await buildApp(t, { env: testEnv({ METRICS_TOKEN: 'scrape-me-9f8e7d6c5b4a' }) })
  t.equal((await guarded.inject('/metrics')).statusCode, 401)
  t.match((await guarded.inject({ url: '/metrics', headers: { authorization: 'Bearer wrong-token' } })).json(), { code: 'AGW_ERR_METRICS_UNAUTHORIZED' })
  const ok = await guarded.inject({ url: '/metrics', headers: { authorization: 'Bearer scrape-me-9f8e7d6c5b4a' } })
  t.equal(ok.statusCode, 200)
  const other = await buildApp(t)
  t.not(other.metricsRegistry, guarded.metricsRegistry)
})
