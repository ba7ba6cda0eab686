import t from 'tap'
import Fastify from 'fastify'
import { configPlugin, loadConfig } from '../src/config.js'
import { loggerOptions, prettyLogs } from '../src/logger.js'

t.test('defaults match the documented values', async (t) => {
  const config = loadConfig({})
  t.match(config, {
    PORT: 3000,
    HOST: '127.0.0.1',
    APP_ENV: 'development',
    LOG_LEVEL: 'info',
    MAX_MESSAGE_BYTES: 65536,
    MAX_CONCURRENT_RUNS: 4,
    MAX_CONNECTIONS_PER_USER: 16,
    HEARTBEAT_MS: 30000,
    RUN_TIMEOUT_MS: 300000,
    RUN_HISTORY_TTL_MS: 3600000,
    DEMO_STEP_DELAY_MS: 250,
    JWT_REQUIRE_EXP: true,
    ALLOW_QUERY_TOKEN: false
  })
  t.same(config.ALLOWED_ORIGINS, [])
  t.equal(config.JWT_SECRET, undefined)
})

t.test('values are coerced from strings, lists are split and trimmed', async (t) => {
  const config = loadConfig({
    PORT: '8080',
    APP_ENV: 'production',
    ALLOW_QUERY_TOKEN: 'true',
    ALLOWED_ORIGINS: ' https://a.example , https://b.example,, ',
    JWT_AUDIENCE: 'api,web',
    UNRELATED: 'ignored'
  })
  t.equal(config.PORT, 8080)
  t.equal(config.APP_ENV, 'production')
  t.equal(config.ALLOW_QUERY_TOKEN, true)
  t.same(config.ALLOWED_ORIGINS, ['https://a.example', 'https://b.example'])
  t.same(config.JWT_AUDIENCE, ['api', 'web'])
  t.notOk('UNRELATED' in config)
})

t.test('empty values count as unset', async (t) => {
  t.equal(loadConfig({ PORT: '', JWT_SECRET: '' }).PORT, 3000)
  t.equal(loadConfig({ JWT_SECRET: '' }).JWT_SECRET, undefined)
})

t.test('the configuration is frozen', async (t) => {
  const config = loadConfig({})
  t.throws(() => { (config as { PORT: number }).PORT = 1 }, TypeError)
  t.throws(() => { (config.ALLOWED_ORIGINS as string[]).push('x') }, TypeError)
})

t.test('every bad value is reported at once, naming the variable', async (t) => {
  const err = t.throws(() => loadConfig({ PORT: 'eighty', APP_ENV: 'prod', HEARTBEAT_MS: '1', MAX_CONCURRENT_RUNS: '0', LOG_LEVEL: 'loud' })) as Error & { code: string }
  t.equal(err.code, 'AGW_ERR_CONFIG_INVALID')
  t.match(err.message, /PORT must be integer/)
  t.match(err.message, /APP_ENV must be equal to one of the allowed values \(development, test, staging, production\)/)
  t.match(err.message, /HEARTBEAT_MS must be >= 50/)
  t.match(err.message, /MAX_CONCURRENT_RUNS must be >= 1/)
  t.match(err.message, /LOG_LEVEL/)
})

t.test('out-of-range values are refused', async (t) => {
  t.throws(() => loadConfig({ PORT: '70000' }), { code: 'AGW_ERR_CONFIG_INVALID', message: /PORT must be <= 65535/ })
  t.throws(() => loadConfig({ JWT_CLOCK_SKEW_SEC: '120' }), { message: /JWT_CLOCK_SKEW_SEC must be <= 60/ })
  t.throws(() => loadConfig({ ALLOW_QUERY_TOKEN: 'maybe' }), { message: /ALLOW_QUERY_TOKEN must be boolean/ })
})

t.test('a METRICS_TOKEN shorter than 16 characters is refused, naming it; HTTP_REQUEST_TIMEOUT_MS has a default', async (t) => {
  const err = t.throws(() => loadConfig({ METRICS_TOKEN: 'x' }), { code: 'AGW_ERR_CONFIG_INVALID', message: /METRICS_TOKEN must NOT have fewer than 16 characters/ }) as Error
  t.notMatch(err.message, /"x"/)
  t.equal(loadConfig({ METRICS_TOKEN: 'k'.repeat(16) }).METRICS_TOKEN, 'k'.repeat(16))
  t.equal(loadConfig({}).HTTP_REQUEST_TIMEOUT_MS, 30_000)
  const { build } = await import('../src/app.js')
  const app = await build({ env: { APP_ENV: 'test' }, requestTimeout: 1234 })
  t.teardown(() => app.close())
  t.equal(app.server.requestTimeout, 1234, "Node's server enforces it")
})

t.test('a secret value never appears in a configuration error', async (t) => {
  const err = t.throws(() => loadConfig({ PORT: 'x', JWT_SECRET: 'p4ssw0rd-that-must-not-leak' })) as Error
  t.notMatch(err.message, /p4ssw0rd/)
})

t.test('the config plugin decorates fastify.config from env, or takes a loaded config', async (t) => {
  const fromEnv = Fastify()
  t.teardown(() => fromEnv.close())
  await fromEnv.register(configPlugin, { env: { PORT: '4000' } }).ready()
  t.equal(fromEnv.config.PORT, 4000)

  const loaded = loadConfig({ PORT: '4001' })
  const given = Fastify()
  t.teardown(() => given.close())
  await given.register(configPlugin, { config: loaded }).ready()
  t.equal(given.config, loaded)
})

t.test('the config plugin fails ready() with the coded error', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { PORT: 'nope' } })
  await t.rejects(async () => { await app.ready() }, { code: 'AGW_ERR_CONFIG_INVALID' })
})

t.test('LOG_FORMAT: pretty for a person at a terminal in development, JSON for everything else', async (t) => {
  const auto = loadConfig({ APP_ENV: 'development' })
  t.equal(auto.LOG_FORMAT, 'auto')
  t.equal(prettyLogs(auto, true), true, 'development, at a terminal')
  t.equal(prettyLogs(auto, false), false, 'development, piped to a collector')
  t.equal(prettyLogs(loadConfig({ APP_ENV: 'production' }), true), false, 'production stays JSON, even at a terminal')
  t.equal(prettyLogs(loadConfig({ APP_ENV: 'production', LOG_FORMAT: 'pretty' }), false), true, 'unless asked')
  t.equal(prettyLogs(loadConfig({ APP_ENV: 'development', LOG_FORMAT: 'json' }), true), false)
  t.throws(() => loadConfig({ LOG_FORMAT: 'xml' }), { code: 'AGW_ERR_CONFIG_INVALID', message: /LOG_FORMAT must be equal to one of the allowed values \(auto, json, pretty\)/ })
  t.match(loggerOptions(auto, { pretty: true }), { transport: { target: 'pino-pretty' } })
  t.notOk((loggerOptions(auto) as { transport?: unknown }).transport, 'JSON needs no transport')
})

t.test('AG_UI_AGENTS: remote AG-UI agents by name, read as JSON; a bad name or field is one line naming it', async (t) => {
  t.same(loadConfig({}).AG_UI_AGENTS, {})
  const agents = { research: { url: 'https://agents.example/research', headers: { Authorization: 'Bearer s3cret-value' }, timeoutMs: 5000 }, plain: { url: 'http://127.0.0.1:8000/' } }
  t.same(loadConfig({ AG_UI_AGENTS: JSON.stringify(agents) }).AG_UI_AGENTS, agents)
  const refused: Array<[unknown, RegExp]> = [
    ['{not json', /^Invalid configuration: AG_UI_AGENTS is not valid JSON$/],
    [['https://a.example'], /AG_UI_AGENTS must be a JSON object/],
    [{ 'bad name!': { url: 'https://a.example' } }, /AG_UI_AGENTS: the agent name "bad name!" must be 1-64 letters/],
    [{ research: 'https://a.example' }, /agent "research": must be an object/],
    [{ research: { url: 'https://a.example', header: {} } }, /agent "research": has an unknown field "header"/]
  ]
  for (const [value, message] of refused) {
    const err = t.throws(() => loadConfig({ AG_UI_AGENTS: typeof value === 'string' ? value : JSON.stringify(value) })) as { code?: string, message: string }
    t.equal(err.code, 'AGW_ERR_CONFIG_INVALID')
    t.match(err.message, message)
    t.notMatch(err.message, /s3cret-value/, 'header values are never shown')
    t.equal(err.message.split('\n').length, 1)
  }
})
