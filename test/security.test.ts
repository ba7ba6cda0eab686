// The attack matrix of the threat model (docs/security.md), over real sockets, with every log
// line the server writes captured: no token and no secret may ever appear in them.
import { generateKeyPairSync, createSign } from 'node:crypto'
import { Writable } from 'node:stream'
import t from 'tap'
import { loadConfig } from '../src/config.js'
import { loggerOptions } from '../src/logger.js'
import { OTHER_SECRET, TEST_SECRET, buildApp, connect, listen, mint, refusedUpgrade, testEnv, tokenFor } from './helpers.js'

const PREVIOUS_SECRET = 'Zq8Lm3Vx6Rb1Tc9Wn4Pk7Hd2Js5Gf0Ya'

/** A logger writing into memory, with the production logger options (redaction included). */
function capturedLogger (): { lines: string[], logger: Record<string, unknown> } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, callback) { lines.push(chunk.toString()); callback() } })
  return { lines, logger: { ...(loggerOptions(loadConfig({ LOG_LEVEL: 'trace' })) as Record<string, unknown>), stream } }
}

function rs256 (claims: Record<string, unknown>): { token: string, publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const now = Math.floor(Date.now() / 1000)
  const head = `${Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iat: now, exp: now + 600, ...claims })).toString('base64url')}`
  const signature = createSign('RSA-SHA256').update(head).sign(privateKey).toString('base64url')
  return { token: `${head}.${signature}`, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }
}

t.test('the attack matrix is refused, and nothing secret reaches the logs', async (t) => {
  const { lines, logger } = capturedLogger()
  const app = await buildApp(t, {
    logger: logger as never,
    env: testEnv({ LOG_LEVEL: 'trace', ALLOWED_ORIGINS: 'https://app.example', JWT_PREVIOUS_SECRET: PREVIOUS_SECRET, MAX_CONNECTIONS_PER_USER: '3' })
  })
  const { ws } = await listen(t, app)
  const now = Math.floor(Date.now() / 1000)
  const rsa = rs256({ sub: 'alice' })
  const tokens: Record<string, string> = {
    'alg none': mint({ sub: 'alice' }, { alg: 'none', signature: '' }),
    'algorithm confusion (HS256 keyed with a public key)': mint({ sub: 'alice' }, { secret: rsa.publicKeyPem }),
    'RS256 with a real key pair': rsa.token,
    'wrong signature': mint({ sub: 'alice' }, { secret: OTHER_SECRET }),
    expired: mint({ sub: 'alice' }, { expiresIn: -3600 }),
    'nbf in the future': mint({ sub: 'alice', nbf: now + 3600 }),
    'no exp': mint({ sub: 'alice' }, { expiresIn: null }),
    'no sub': mint({}),
    'placeholder sub': mint({ sub: 'null' })
  }
  const expected: Record<string, string> = {
    'alg none': 'AGW_ERR_AUTH_TOKEN_ALGORITHM',
    'algorithm confusion (HS256 keyed with a public key)': 'AGW_ERR_AUTH_TOKEN_SIGNATURE',
    'RS256 with a real key pair': 'AGW_ERR_AUTH_TOKEN_ALGORITHM',
    'wrong signature': 'AGW_ERR_AUTH_TOKEN_SIGNATURE',
    expired: 'AGW_ERR_AUTH_TOKEN_EXPIRED',
    'nbf in the future': 'AGW_ERR_AUTH_TOKEN_INACTIVE',
    'no exp': 'AGW_ERR_AUTH_TOKEN_CLAIM',
    'no sub': 'AGW_ERR_AUTH_SUBJECT_INVALID',
    'placeholder sub': 'AGW_ERR_AUTH_SUBJECT_INVALID'
  }
  for (const [name, token] of Object.entries(tokens)) {
    for (const how of ['header', 'subprotocol'] as const) {
      const refused = how === 'header'
        ? await refusedUpgrade(ws, { authorization: `Bearer ${token}` })
        : await refusedUpgrade(ws, {}, ['agent-events.v1', `bearer.${token}`])
      t.same(refused, { status: 401, body: { code: expected[name], message: refused.body.message } }, `${name} (${how})`)
    }
  }
  const good = tokenFor('alice')
  t.match(await refusedUpgrade(`${ws}?token=${good}`), { status: 401, body: { code: 'AGW_ERR_AUTH_QUERY_TOKEN' } }, 'query-string token')
  t.match(await refusedUpgrade(ws, { authorization: `Bearer ${good}`, origin: 'https://evil.example' }), { status: 403, body: { code: 'AGW_ERR_ORIGIN_FORBIDDEN' } }, 'foreign origin')

  const rotated = mint({ sub: 'alice' }, { secret: PREVIOUS_SECRET })
  const alice = await connect(t, ws, { token: rotated, headers: { origin: 'https://app.example' } })
  t.match(alice.messages[0], { type: 'welcome', userId: 'alice' }, 'a token of the previous secret still connects')
  alice.send({ type: 'run', input: { message: 'What is 1 + 1?' } })
  const { runId } = await alice.nextOf('run_accepted')
  await alice.runEvents(runId)

  const mallory = await connect(t, ws, { token: tokenFor('mallory') })
  mallory.send({ type: 'subscribe', id: 's', runId })
  t.match(await mallory.next(), { type: 'error', code: 'NOT_FOUND' }, "subscribe to another user's run")
  mallory.send({ type: 'cancel', id: 'c', runId })
  t.match(await mallory.next(), { type: 'error', code: 'NOT_FOUND' }, "cancel another user's run")
  const stolen = tokenFor('alice')
  mallory.send({ type: 'auth', token: stolen })
  t.match(await mallory.waitClosed(), { code: 4401 }, "auth refresh with another user's token")

  await app.close()
  const log = lines.join('')
  t.ok(lines.length > 20, `the server logged (${lines.length} lines)`)
  t.match(log, /token=\[REDACTED\]/, 'the query-string token was masked, not dropped silently')
  const secrets = [TEST_SECRET, PREVIOUS_SECRET, good, rotated, stolen, ...Object.values(tokens)]
  for (const secret of secrets) {
    const signature = secret.split('.').at(-1) ?? secret
    t.notOk(log.includes(secret), `${secret.slice(0, 16)}… is not in the logs`)
    if (signature.length > 10) t.notOk(log.includes(signature), `nor is its signature ${signature.slice(0, 8)}…`)
  }
})

t.test('tokens are masked by shape wherever a URL or an error is logged', async (t) => {
  const { lines, logger } = capturedLogger()
  const app = await buildApp(t, { logger: logger as never, env: testEnv({ LOG_LEVEL: 'trace', ALLOW_QUERY_TOKEN: 'true' }) })
  const { http, ws } = await listen(t, app)
  const jwts = Array.from({ length: 12 }, (_, i) => tokenFor(`leak-${i}`))
  const opaque = 'opaque-credential-7f3a9c1e5b'
  const urls = [
    `${ws.replace('ws', 'http')}?%74oken=${jwts[0]}`, // a %-encoded name
    `${http}/nope?access_token=${jwts[1]}`, // Fastify's own 404 log line
    `${http}/nope?x=1&api_key=${opaque}&password=${opaque}`,
    `${http}/nope?%61ccess%5Ftoken=${jwts[2]}&Authorization=${opaque}`,
    `${http}/nope/${jwts[3]}`, // in the path, under no name at all
    `${http}/v1/runs/${jwts[4]}?token=${jwts[5]}`,
    `${http}/v1/runs/x/events?key=${opaque}&secret=${opaque}&token=${jwts[6]}`
  ]
  for (const url of urls) await (await fetch(url, { headers: { authorization: `Bearer ${jwts[7]}` } })).text()
  await (await fetch(`${http}/nope?token=${jwts[8]}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' })).text()
  // An error whose message carries a token, logged by a route the way the gateway logs failures.
  app.log.error({ err: new Error(`upstream refused ${jwts[9]}`), url: `/x?token=${jwts[10]}` }, `request for bearer.${jwts[11]} failed`)
  const viaQuery = await connect(t, ws, { path: `?access_token=${jwts[0]}` })
  t.match(viaQuery.messages[0], { type: 'welcome', userId: 'leak-0' }, 'a query-string token (allowed here) connects')
  viaQuery.close()
  await app.close()
  const log = lines.join('')
  t.ok(lines.length > 10, `the server logged (${lines.length} lines)`)
  t.match(log, /Route GET:\/nope\?access_token=\[REDACTED\] not found/, "Fastify's 404 line is still there, masked")
  for (const [i, jwt] of jwts.entries()) t.notOk(log.includes(jwt.split('.')[2] ?? jwt), `JWT ${i} is not in the logs`)
  t.notOk(/eyJ[\w-]+\.eyJ/.test(log), 'nothing JWT-shaped is in the logs')
  t.notOk(log.includes(opaque), 'nor any credential-like query parameter')
})

t.test('the HTTP API has one rate-limit budget per address, across its routes, answering 429 { code, message }', async (t) => {
  // A generated secret, so that /dev/token exists: the tokens come from it.
  const app = await buildApp(t, { env: testEnv({ APP_ENV: 'development', JWT_SECRET: '', HTTP_RATE_LIMIT_MAX: '4', HTTP_RATE_LIMIT_WINDOW_MS: '60000' }) })
  const { http, ws } = await listen(t, app)
  const devTokens: string[] = []
  for (let i = 0; i < 2; i++) {
    const minted = await fetch(`${http}/dev/token?user=u${i}`)
    t.equal(minted.status, 200)
    devTokens.push(((await minted.json()) as { token: string }).token)
  }
  for (const token of devTokens) await connect(t, ws, { token })
  const limited = await fetch(`${http}/dev/token?user=u9`)
  t.equal(limited.status, 429, 'two tokens and two handshakes spent the budget of four')
  t.match(await limited.json(), { code: 'AGW_ERR_RATE_LIMITED', message: /^Too many requests from this address; retry in/ })
  t.match(await refusedUpgrade(ws, { authorization: `Bearer ${devTokens[0] ?? ''}` }), { status: 429, body: { code: 'AGW_ERR_RATE_LIMITED' } }, 'handshakes share it, and are refused before any token is verified')
  t.equal((await fetch(`${http}/v1/runs/x`, { headers: { authorization: `Bearer ${devTokens[0] ?? ''}` } })).status, 429, 'so does the runs API')
  t.equal((await fetch(`${http}/healthz`)).status, 200, 'health checks are never limited')
})

t.test('refused authentications count against the budget: a token guesser is slowed down', async (t) => {
  const app = await buildApp(t, { env: testEnv({ HTTP_RATE_LIMIT_MAX: '5', HTTP_RATE_LIMIT_WINDOW_MS: '60000' }) })
  const { http, ws } = await listen(t, app)
  const statuses: number[] = []
  for (let i = 0; i < 40; i++) {
    statuses.push((await refusedUpgrade(ws, { authorization: `Bearer ${mint({ sub: 'mallory' }, { secret: OTHER_SECRET })}` })).status)
  }
  t.same(statuses.slice(0, 5), [401, 401, 401, 401, 401], 'the first five are refused for their signature')
  t.same(new Set(statuses.slice(5)), new Set([429]), 'every later attempt is refused by the limit, before its token is looked at')
  t.equal((await fetch(`${http}/v1/runs/x`, { headers: { authorization: 'Bearer nonsense' } })).status, 429, 'on every route of the API')
})
