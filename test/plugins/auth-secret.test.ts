import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { configPlugin, loadConfig, type EnvSource } from '../../src/config.js'
import telemetry from '../../src/plugins/telemetry.js'
import authSecret, { extractToken, inspectSecrets, resolveSecret } from '../../src/plugins/auth-secret.js'
import { checkSecret } from '../../src/secret-strength.js'
import { OTHER_SECRET, TEST_SECRET, mint, mintRaw } from '../helpers.js'

const rules = (variable: string, value: string): string[] =>
  checkSecret(variable, value).errors.map((error) => /\[rule: ([a-z-]+)\]/.exec(error)?.[1] ?? error)

async function authApp (t: Test, env: EnvSource): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env })
  app.register(telemetry)
  app.register(authSecret)
  await app.ready()
  return app
}

t.test('secret rules: strong secrets of every accepted form pass', async (t) => {
  const strong = {
    'hex (lowercase)': randomBytes(32).toString('hex'),
    'hex (uppercase)': randomBytes(32).toString('hex').toUpperCase(),
    base64: randomBytes(32).toString('base64'),
    base64url: randomBytes(32).toString('base64url'),
    'random printable text': 'kQ9#vL2$pX7!mZ4@nR8%tW1^yB6&cF3*',
    'a long passphrase': 'velvet-quasar-mango-ticket-orbit-plume-harbor'
  }
  for (const [form, value] of Object.entries(strong)) {
    t.same(checkSecret('JWT_SECRET', value), { errors: [], weak: [] }, form)
  }
})

t.test('secret rules: each rule refuses what it should, naming the variable and the rule, never the value', async (t) => {
  t.same(rules('JWT_SECRET', randomBytes(20).toString('hex')), ['min-bytes'], '40 hex digits hold only 20 bytes')
  t.match(checkSecret('JWT_SECRET', 'ab'.repeat(20)).errors[0], /^JWT_SECRET: a hex secret needs at least 64 hex digits \(32 bytes\); it has 40/)
  t.same(rules('JWT_SECRET', randomBytes(16).toString('base64')), ['min-bytes'], '16 bytes of base64')
  t.match(checkSecret('JWT_SECRET_PRODUCTION', 'short').errors[0], /^JWT_SECRET_PRODUCTION: needs at least 32 bytes of key material; it has 5/)
  t.ok(rules('JWT_SECRET', 'Ab3$'.repeat(10)).includes('no-repeated-pattern'), 'a repeated unit')
  t.ok(rules('JWT_SECRET', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa').includes('no-repeated-pattern'))
  t.same(rules('JWT_SECRET', 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEF'), ['min-entropy'], 'a keyboard sequence')
  t.same(rules('JWT_SECRET', 'Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3x'), ['min-entropy'], 'a phrase repeated with a tail')
  for (const value of ['secret', 'changeme', 'password', 'your-secret-key', 'test-secret', 'example', 'default']) {
    const check = checkSecret('JWT_SECRET', value)
    t.ok(check.errors.length > 0, `${value} fails the strength rules`)
    t.equal(check.weak.length, 1, `${value} is a known weak value`)
    for (const message of [...check.errors, ...check.weak]) t.notMatch(message, value, 'the value is never echoed')
  }
  const strong = randomBytes(32).toString('base64url')
  for (const padded of [`${strong}\n`, ` ${strong}`, `${strong}\r\n`]) {
    t.same(rules('JWT_SECRET', padded), ['no-surrounding-whitespace'], JSON.stringify(padded.replace(strong, '<secret>')))
  }
  t.match(checkSecret('JWT_SECRET', `${strong}\n`).errors[0], /^JWT_SECRET: has leading or trailing whitespace/)
  const madeOfWeakWords = 'my-super-secret-jwt-key-for-production-2024'
  t.same(checkSecret('JWT_SECRET', madeOfWeakWords).errors, [], 'long enough to pass the strength rules…')
  t.match(checkSecret('JWT_SECRET', madeOfWeakWords).weak[0], /^JWT_SECRET: is a known weak value or made only of common words \[rule: not-weak\]$/, '…but made of weak words')
})

t.test('resolution: JWT_SECRET_<APP_ENV> wins over JWT_SECRET, for the current and the previous secret', async (t) => {
  const a = randomBytes(32).toString('hex')
  const b = randomBytes(32).toString('hex')
  const config = loadConfig({ APP_ENV: 'staging', JWT_SECRET: a, JWT_SECRET_STAGING: b, JWT_SECRET_PRODUCTION: 'ignored', JWT_PREVIOUS_SECRET: a })
  t.same(resolveSecret(config, 'current'), { variable: 'JWT_SECRET_STAGING', value: b })
  t.same(resolveSecret(config, 'previous'), { variable: 'JWT_PREVIOUS_SECRET', value: a })
  const prodConfig = loadConfig({ APP_ENV: 'production', JWT_SECRET: a, JWT_PREVIOUS_SECRET_PRODUCTION: b })
  t.same(resolveSecret(prodConfig, 'current'), { variable: 'JWT_SECRET', value: a })
  t.same(resolveSecret(prodConfig, 'previous'), { variable: 'JWT_PREVIOUS_SECRET_PRODUCTION', value: b })
  t.equal(resolveSecret(loadConfig({}), 'current'), undefined)
})

t.test('inspection: every problem of every secret is collected at once', async (t) => {
  const result = inspectSecrets(loadConfig({ APP_ENV: 'production', JWT_SECRET_PRODUCTION: 'changeme', JWT_PREVIOUS_SECRET: 'password' }))
  t.equal(result.problems.filter((p) => p.startsWith('JWT_SECRET_PRODUCTION:')).length, 3, 'min-bytes, min-entropy and not-weak of the current secret')
  t.equal(result.problems.filter((p) => p.startsWith('JWT_PREVIOUS_SECRET:')).length, 3, 'the same for the previous secret')
  t.same(result.warnings, [])
})

t.test('inspection: weak words are fatal in staging and production, a warning in development and test', async (t) => {
  const weakButLong = 'my-super-secret-jwt-key-for-production-2024'
  for (const env of ['staging', 'production']) {
    const result = inspectSecrets(loadConfig({ APP_ENV: env, JWT_SECRET: weakButLong }))
    t.equal(result.problems.length, 1, env)
    t.match(result.problems[0], /not-weak/)
  }
  for (const env of ['development', 'test']) {
    const result = inspectSecrets(loadConfig({ APP_ENV: env, JWT_SECRET: weakButLong }))
    t.same(result.problems, [], env)
    t.equal(result.warnings.length, 1)
  }
})

t.test('inspection: no secret is fatal in staging and production only', async (t) => {
  t.match(inspectSecrets(loadConfig({ APP_ENV: 'production' })).problems, [/no JWT secret is configured: set JWT_SECRET_PRODUCTION or JWT_SECRET/])
  t.match(inspectSecrets(loadConfig({ APP_ENV: 'staging' })).problems, [/set JWT_SECRET_STAGING or JWT_SECRET/])
  t.same(inspectSecrets(loadConfig({ APP_ENV: 'development' })).problems, [])
  t.same(inspectSecrets(loadConfig({ APP_ENV: 'test' })).problems, [])
})

t.test('inspection: the previous secret must differ from the current one', async (t) => {
  const result = inspectSecrets(loadConfig({ JWT_SECRET: TEST_SECRET, JWT_PREVIOUS_SECRET: TEST_SECRET }))
  t.match(result.problems, [/JWT_PREVIOUS_SECRET: is the same as JWT_SECRET/])
})

t.test('the plugin refuses to start on a bad secret, listing every problem without the values', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'production', JWT_SECRET: 'changeme-changeme', JWT_PREVIOUS_SECRET_PRODUCTION: 'secret' } })
  app.register(telemetry)
  app.register(authSecret)
  const err = await app.ready().then(() => undefined, (e: unknown) => e as Error & { code: string })
  t.equal(err?.code, 'AGW_ERR_SECRET_INVALID')
  t.match(err?.message, /JWT_SECRET: .*\[rule: min-bytes\]/)
  t.match(err?.message, /JWT_PREVIOUS_SECRET_PRODUCTION: .*\[rule: min-bytes\]/)
  t.notMatch(err?.message, /changeme-changeme/)
  t.notMatch(err?.message, /: secret/)
})

t.test('the plugin generates a per-process secret in development and test', async (t) => {
  const a = await authApp(t, { APP_ENV: 'development' })
  const b = await authApp(t, { APP_ENV: 'test' })
  t.equal(a.authSecret.generated, true)
  t.equal(a.authSecret.source, 'generated')
  const token = a.authSecret.sign({ sub: 'dev' })
  t.equal(a.authSecret.verify(token).sub, 'dev')
  t.throws(() => b.authSecret.verify(token), { code: 'AGW_ERR_AUTH_TOKEN_SIGNATURE' }, 'another process has another secret')
})

t.test('the plugin refuses to start without a secret in production', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'production' } })
  app.register(telemetry)
  app.register(authSecret)
  await t.rejects(async () => { await app.ready() }, { code: 'AGW_ERR_SECRET_INVALID', message: /no JWT secret is configured/ })
})

t.test('the plugin cannot be registered without config', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(telemetry)
  app.register(authSecret)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED', message: /config/ })
})

t.test('verification: the token matrix of the protocol', async (t) => {
  const app = await authApp(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET })
  const { verify } = app.authSecret
  const now = Math.floor(Date.now() / 1000)
  t.equal(verify(mint({ sub: 'alice' })).sub, 'alice', 'a token minted by another service with the shared secret')
  t.throws(() => verify('not-a-jwt'), { code: 'AGW_ERR_AUTH_TOKEN_MALFORMED', statusCode: 401 })
  t.throws(() => verify(mint({ sub: 'alice' }, { alg: 'none', signature: '' })), { code: 'AGW_ERR_AUTH_TOKEN_ALGORITHM' }, 'alg none')
  t.throws(() => verify(mint({ sub: 'alice' }, { alg: 'HS384' })), { code: 'AGW_ERR_AUTH_TOKEN_ALGORITHM' }, 'HS384')
  t.throws(() => verify(mint({ sub: 'alice' }, { alg: 'RS256' })), { code: 'AGW_ERR_AUTH_TOKEN_ALGORITHM' }, 'RS256 header')
  t.throws(() => verify(mint({ sub: 'alice' }, { secret: OTHER_SECRET })), { code: 'AGW_ERR_AUTH_TOKEN_SIGNATURE' })
  t.throws(() => verify(mint({ sub: 'alice' }, { expiresIn: -120 })), { code: 'AGW_ERR_AUTH_TOKEN_EXPIRED' })
  t.equal(verify(mint({ sub: 'alice' }, { expiresIn: -10 })).sub, 'alice', 'expired within the clock-skew leeway')
  t.throws(() => verify(mint({ sub: 'alice', nbf: now + 300 })), { code: 'AGW_ERR_AUTH_TOKEN_INACTIVE' })
  t.equal(verify(mint({ sub: 'alice', nbf: now + 10 })).sub, 'alice', 'nbf within the leeway')
  t.throws(() => verify(mint({ sub: 'alice' }, { expiresIn: null })), { code: 'AGW_ERR_AUTH_TOKEN_CLAIM', message: /exp/ }, 'exp is required')
  t.throws(() => verify(mint({ sub: 'alice', iat: now + 3600 })), { code: 'AGW_ERR_AUTH_TOKEN_CLAIM', message: /iat/ }, 'iat in the future')
})

t.test('verification: exp, nbf and iat must be whole numbers of seconds a date can hold', async (t) => {
  const app = await authApp(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET })
  const { verify } = app.authSecret
  const now = Math.floor(Date.now() / 1000)
  t.equal(verify(mintRaw(`{"sub":"alice","iat":${now},"exp":8640000000000}`)).exp, 8_640_000_000_000, 'the last date there is')
  const refused: Record<string, string> = {
    'exp past the last date (1e13)': `{"sub":"alice","exp":1e13}`,
    'exp that parses as Infinity (1e400)': `{"sub":"alice","exp":1e400}`,
    'exp with a fraction': `{"sub":"alice","exp":${now + 60}.5}`,
    'negative exp': `{"sub":"alice","exp":-1,"nbf":-5}`,
    'nbf that parses as -Infinity': `{"sub":"alice","exp":${now + 60},"nbf":-1e400}`,
    'iat of 1e400': `{"sub":"alice","exp":${now + 60},"iat":1e400}`
  }
  for (const [name, payload] of Object.entries(refused)) {
    t.throws(() => verify(mintRaw(payload)), { code: /^AGW_ERR_AUTH_TOKEN_(CLAIM|EXPIRED|INACTIVE)$/, statusCode: 401 }, name)
  }
  t.throws(() => verify(mintRaw(`{"sub":"alice","exp":1e400}`)), {
    code: 'AGW_ERR_AUTH_TOKEN_CLAIM',
    message: 'The token claims are not acceptable: the exp claim must be a whole number of seconds since 1970, at most 8640000000000'
  })
})

t.test('verification: exp may be made optional, and iss / aud are checked when configured', async (t) => {
  const relaxed = await authApp(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET, JWT_REQUIRE_EXP: 'false' })
  t.equal(relaxed.authSecret.verify(mint({ sub: 'alice' }, { expiresIn: null })).sub, 'alice')

  const strict = await authApp(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET, JWT_ISSUER: 'https://idp.example', JWT_AUDIENCE: 'agent-gateway,other' })
  const { verify, sign } = strict.authSecret
  t.equal(verify(mint({ sub: 'a', iss: 'https://idp.example', aud: 'agent-gateway' })).sub, 'a')
  t.equal(verify(mint({ sub: 'a', iss: 'https://idp.example', aud: ['x', 'other'] })).sub, 'a')
  t.throws(() => verify(mint({ sub: 'a', iss: 'https://evil.example', aud: 'agent-gateway' })), { code: 'AGW_ERR_AUTH_TOKEN_CLAIM', message: /iss/ })
  t.throws(() => verify(mint({ sub: 'a', iss: 'https://idp.example', aud: 'elsewhere' })), { code: 'AGW_ERR_AUTH_TOKEN_CLAIM', message: /aud/ })
  t.throws(() => verify(mint({ sub: 'a', aud: 'agent-gateway' })), { code: 'AGW_ERR_AUTH_TOKEN_CLAIM' }, 'iss missing')
  const own = verify(sign({ sub: 'b' }))
  t.equal(own.iss, 'https://idp.example', 'signed tokens carry the configured issuer')
  t.equal(own.aud, 'agent-gateway', 'and the first audience')
})

t.test('rotation: tokens of the previous secret verify; new tokens are never signed with it', async (t) => {
  const previous = 'Rk2Lw9Pz4Qx7Vn1Bt8Hc5Jm3Gs6Df0Ya'.padEnd(40, 'Z')
  const app = await authApp(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET, JWT_PREVIOUS_SECRET: 'u7Kp2Wq9Ze4Rt1Yx8Mn5Bv3Lc6Hd0Jf-Ag' })
  t.equal(app.authSecret.verify(mint({ sub: 'old' }, { secret: 'u7Kp2Wq9Ze4Rt1Yx8Mn5Bv3Lc6Hd0Jf-Ag' })).sub, 'old')
  t.throws(() => app.authSecret.verify(mint({ sub: 'x' }, { secret: previous })), { code: 'AGW_ERR_AUTH_TOKEN_SIGNATURE' })
  const signed = app.authSecret.sign({ sub: 'new' })
  t.equal(app.authSecret.verify(signed).sub, 'new')
  const currentOnly = await authApp(t, { APP_ENV: 'test', JWT_SECRET: TEST_SECRET })
  t.equal(currentOnly.authSecret.verify(signed).sub, 'new', 'signed with the current secret')
  const previousOnly = await authApp(t, { APP_ENV: 'test', JWT_SECRET: 'u7Kp2Wq9Ze4Rt1Yx8Mn5Bv3Lc6Hd0Jf-Ag' })
  t.throws(() => previousOnly.authSecret.verify(signed), { code: 'AGW_ERR_AUTH_TOKEN_SIGNATURE' }, 'not with the previous one')
  t.throws(() => app.authSecret.verify(mint({ sub: 'old' }, { secret: 'u7Kp2Wq9Ze4Rt1Yx8Mn5Bv3Lc6Hd0Jf-Ag', expiresIn: -300 })), { code: 'AGW_ERR_AUTH_TOKEN_EXPIRED' }, 'previous-secret tokens get the same checks')
})

t.test('token extraction: header, then subprotocol, and the query string only when allowed', async (t) => {
  const request = (headers: Record<string, string>, query: Record<string, string> = {}) => ({ headers, query }) as unknown as FastifyRequest
  t.equal(extractToken(request({ authorization: 'Bearer abc.def.ghi' }), false), 'abc.def.ghi')
  t.equal(extractToken(request({ authorization: 'bearer   abc.def.ghi ' }), false), 'abc.def.ghi')
  t.equal(extractToken(request({ 'sec-websocket-protocol': 'agent-events.v1, bearer.abc.def.ghi' }), false), 'abc.def.ghi')
  t.equal(extractToken(request({ authorization: 'Bearer from-header', 'sec-websocket-protocol': 'bearer.from-protocol' }), false), 'from-header')
  t.throws(() => extractToken(request({ authorization: 'Basic dXNlcjpwYXNz' }), false), { code: 'AGW_ERR_AUTH_NO_TOKEN', statusCode: 401 })
  t.throws(() => extractToken(request({ 'sec-websocket-protocol': 'agent-events.v1, bearer.' }), false), { code: 'AGW_ERR_AUTH_NO_TOKEN' })
  t.throws(() => extractToken(request({}), false), { code: 'AGW_ERR_AUTH_NO_TOKEN' })
  t.throws(() => extractToken(request({}, { token: 'abc' }), false), { code: 'AGW_ERR_AUTH_QUERY_TOKEN' })
  t.throws(() => extractToken(request({ authorization: 'Bearer x' }, { access_token: 'abc' }), false), { code: 'AGW_ERR_AUTH_QUERY_TOKEN' }, 'refused even beside a header')
  t.equal(extractToken(request({}, { token: 'abc' }), true), 'abc')
  t.equal(extractToken(request({ authorization: 'Bearer hdr' }, { token: 'abc' }), true), 'hdr')
})

t.test('authenticate answers 401 { code, message } through the route', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test', JWT_SECRET: TEST_SECRET } })
  app.register(telemetry)
  app.register(authSecret)
  app.register(async (scope) => {
    scope.get('/me', { onRequest: scope.authenticate }, async (request) => ({ sub: request.tokenClaims?.sub }))
  })
  const ok = await app.inject({ url: '/me', headers: { authorization: `Bearer ${mint({ sub: 'alice' })}` } })
  t.same(ok.json(), { sub: 'alice' })
  const refused = await app.inject({ url: '/me' })
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, 'AGW_ERR_AUTH_NO_TOKEN')
})

t.test("a host app's own @fastify/jwt is left untouched", async (t) => {
  const { default: fastifyJwt } = await import('@fastify/jwt')
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyJwt, { secret: OTHER_SECRET })
  app.register(configPlugin, { env: { APP_ENV: 'test', JWT_SECRET: TEST_SECRET } })
  app.register(telemetry)
  app.register(authSecret)
  await app.ready()
  const hostToken = app.jwt.sign({ sub: 'host' })
  t.equal(app.jwt.verify<{ sub: string }>(hostToken).sub, 'host')
  t.throws(() => app.authSecret.verify(hostToken), { code: 'AGW_ERR_AUTH_TOKEN_SIGNATURE' })
})
