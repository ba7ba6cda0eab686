// The gateway inside someone else's Fastify app: their agents, their tools, their routes,
// their own @fastify/jwt — and each plugin of ours registered alone with its dependencies.
import t from 'tap'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import { Type } from 'typebox'
import { agentGateway, defineTool, RunError, type Agent } from '../src/app.js'
import { configPlugin } from '../src/config.js'
import authSecret from '../src/plugins/auth-secret.js'
import userContext from '../src/plugins/user-context.js'
import toolDispatcher from '../src/plugins/tool-dispatcher.js'
import agentBridge from '../src/plugins/agent-bridge.js'
import runEngine from '../src/plugins/run-engine.js'
import { OTHER_SECRET, connect, runProblems, testEnv, tokenFor } from './helpers.js'

const lookupOrder = defineTool({
  name: 'lookup_order',
  description: 'Finds an order by its number',
  scope: 'orders:read',
  parameters: Type.Object({ orderId: Type.String({ pattern: '^[0-9]+$' }) }),
  async execute ({ orderId }) {
    if (orderId === '404') throw new RunError('NO_SUCH_ORDER', `There is no order ${orderId}`)
    return { orderId, status: 'shipped' }
  }
})

const support: Agent = async ({ input, think, say, tools }) => {
  think('Looking the order up')
  const orderId = /\d+/.exec(input.message)?.[0] ?? ''
  const outcome = await tools.call('lookup_order', { orderId })
  const text = outcome.status === 'success' ? `Order ${orderId} has shipped.` : `Sorry: ${outcome.error?.message ?? 'unknown problem'}`
  say(text)
  return { text }
}

t.test('a host app registers agentGateway with its own agent and tool next to its own routes and JWT', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyJwt, { secret: OTHER_SECRET })
  app.get('/host/hello', async () => ({ hello: 'from the host' }))
  await app.register(agentGateway, { env: testEnv(), agents: { support }, tools: [lookupOrder] })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })

  t.same(await (await fetch(`${address}/host/hello`)).json(), { hello: 'from the host' })
  t.same(app.runEngine.agents, ['support'])
  t.same(app.toolRegistry.names, ['lookup_order'], 'the demo tools are not added when agents are given')

  const client = await connect(t, address.replace('http', 'ws') + '/ws', { token: tokenFor('carol', { scope: 'orders:read' }) })
  client.send({ type: 'run', input: { message: 'Where is order 1234?' } })
  const { runId, agent } = await client.nextOf('run_accepted')
  t.equal(agent, 'support')
  const events = await client.runEvents(runId)
  t.same(runProblems(events), [])
  t.match(events.find((e) => e.type === 'tool_completed'), { data: { tool: 'lookup_order', status: 'success', result: { status: 'shipped' } } })
  t.match(events.at(-1), { data: { status: 'completed', output: { text: 'Order 1234 has shipped.' } } })

  client.send({ type: 'run', input: { message: 'Where is order 404?' } })
  const second = await client.nextOf('run_accepted')
  const failed = await client.runEvents(second.runId)
  t.match(failed.find((e) => e.type === 'tool_completed'), { data: { status: 'error', error: { code: 'NO_SUCH_ORDER', message: 'There is no order 404' } } })

  const unscoped = await connect(t, address.replace('http', 'ws') + '/ws', { token: tokenFor('dave') })
  unscoped.send({ type: 'run', input: { message: 'Where is order 1?' } })
  const third = await unscoped.nextOf('run_accepted')
  t.match((await unscoped.runEvents(third.runId)).find((e) => e.type === 'tool_completed'), { data: { status: 'error', error: { code: 'FORBIDDEN' } } })

  const hostToken = app.jwt.sign({ sub: 'host-user' })
  t.equal(app.jwt.verify<{ sub: string }>(hostToken).sub, 'host-user', "the host's JWT setup still works")
})

t.test('agentGateway refuses a second @fastify/websocket instead of fighting over upgrades', async (t) => {
  const { default: websocket } = await import('@fastify/websocket')
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(websocket)
  app.register(agentGateway, { env: testEnv() })
  await t.rejects(async () => { await app.ready() }, { code: 'AGW_ERR_WEBSOCKET_PRESENT' })
})

t.test('each plugin works alone with its dependencies, and fails ready() without them', async (t) => {
  const env = { APP_ENV: 'test', JWT_SECRET: testEnv().JWT_SECRET }
  const chain = [
    { name: 'auth-secret', plugin: authSecret, options: {} },
    { name: 'user-context', plugin: userContext, options: {} },
    { name: 'tool-dispatcher', plugin: toolDispatcher, options: { tools: [] } },
    { name: 'agent-bridge', plugin: agentBridge, options: {} },
    { name: 'run-engine', plugin: runEngine, options: { agents: { support } } }
  ] as const
  const dependencies: Record<string, readonly string[]> = {
    'auth-secret': ['config'],
    'user-context': ['config', 'auth-secret'],
    'tool-dispatcher': ['config'],
    'agent-bridge': ['config'],
    'run-engine': ['config', 'auth-secret', 'user-context', 'tool-dispatcher', 'agent-bridge']
  }
  for (const { name, plugin, options } of chain) {
    const withDeps = Fastify()
    t.teardown(() => withDeps.close())
    withDeps.register(configPlugin, { env })
    for (const dep of chain) {
      if (dependencies[name]?.includes(dep.name)) withDeps.register(dep.plugin as never, dep.options as never)
    }
    withDeps.register(plugin as never, options as never)
    await t.resolves(async () => { await withDeps.ready() }, `${name} with its dependencies`)

    const bare = Fastify()
    t.teardown(() => bare.close())
    bare.register(plugin as never, options as never)
    await t.rejects(async () => { await bare.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED' }, `${name} alone`)
  }
})
