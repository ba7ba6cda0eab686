import t from 'tap'
import Fastify from 'fastify'
import { configPlugin } from '../../src/config.js'
import telemetry from '../../src/plugins/telemetry.js'
import authSecret from '../../src/plugins/auth-secret.js'
import userContext, { createRunContext, createUserContext, userIdFromClaims } from '../../src/plugins/user-context.js'
import { TEST_SECRET, mint } from '../helpers.js'

t.test('the user id comes from sub, and only a usable sub', async (t) => {
  t.equal(userIdFromClaims({ sub: 'alice' }), 'alice')
  t.equal(userIdFromClaims({ sub: 'auth0|5f7c8ec7c33c6c004bbafe82' }), 'auth0|5f7c8ec7c33c6c004bbafe82')
  t.equal(userIdFromClaims({ sub: 'x'.repeat(256) }), 'x'.repeat(256))
  t.equal(userIdFromClaims({ sub: '\ufffd😀' }), '\ufffd😀', 'well-formed Unicode, surrogate pairs included, is fine')
  const refused: Array<[unknown, RegExp]> = [
    [undefined, /it is missing/],
    [42, /it must be a string/],
    [['alice'], /it must be a string/],
    ['', /it is empty/],
    ['   ', /it is empty/],
    ['x'.repeat(257), /longer than 256/],
    [' alice', /whitespace/],
    ['ali\nce', /control characters/],
    ['\ud800', /not well-formed Unicode/],
    ['alice\udc00', /not well-formed Unicode/],
    ['\ud83d', /not well-formed Unicode/],
    ['none', /placeholder/],
    ['null', /placeholder/],
    ['undefined', /placeholder/],
    ['NULL', /placeholder/],
    ['[object Object]', /placeholder/]
  ]
  for (const [sub, message] of refused) {
    t.throws(() => userIdFromClaims({ sub }), { code: 'AGW_ERR_AUTH_SUBJECT_INVALID', statusCode: 401, message }, JSON.stringify(sub))
  }
})

t.test('the user context is frozen, deeply', async (t) => {
  const context = createUserContext({ sub: 'alice', scope: 'read write read' }, 'req-1')
  t.match(context, { userId: 'alice', requestId: 'req-1', connectionId: /^[0-9a-f-]{36}$/ })
  t.same(context.scopes, ['read', 'write'])
  t.ok(Object.isFrozen(context))
  t.throws(() => { (context as { userId: string }).userId = 'mallory' }, TypeError)
  t.throws(() => { (context.scopes as string[]).push('admin') }, TypeError)
  t.throws(() => { delete (context as { requestId?: string }).requestId }, TypeError)
  t.equal(context.userId, 'alice')
})

t.test('scopes come from scope (space-separated), scopes or scp', async (t) => {
  t.same(createUserContext({ sub: 'a', scopes: ['x', 'y', 3] }, 'r').scopes, ['x', 'y'])
  t.same(createUserContext({ sub: 'a', scp: ['z'] }, 'r').scopes, ['z'])
  t.same(createUserContext({ sub: 'a' }, 'r').scopes, [])
  t.equal(createUserContext({ sub: 'a', scope: Array.from({ length: 500 }, (_, i) => `s${i}`).join(' ') }, 'r').scopes.length, 100)
})

t.test('run contexts are frozen children that add runId, threadId and agent', async (t) => {
  const user = createUserContext({ sub: 'alice', scope: 'read' }, 'req-7')
  const run = createRunContext(user, { runId: 'r1', threadId: 't1', agent: 'demo' })
  t.same(run, { ...user, runId: 'r1', threadId: 't1', agent: 'demo' })
  t.ok(Object.isFrozen(run))
  t.throws(() => { (run as { userId: string }).userId = 'mallory' }, TypeError)
  t.throws(() => { (run as { runId: string }).runId = 'r2' }, TypeError)
  t.equal(user.userId, 'alice', 'the parent is untouched')
  t.equal(run.scopes, user.scopes, 'the frozen scopes are shared, not copied')
})

t.test('requireUser sets request.userContext or answers 401 { code, message }', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test', JWT_SECRET: TEST_SECRET } })
  app.register(telemetry)
  app.register(authSecret)
  app.register(userContext)
  app.register(async (scope) => {
    scope.get('/me', { onRequest: scope.requireUser }, async (request) => request.userContext)
    scope.get('/open', async (request) => ({ context: request.userContext }))
  })
  const ok = await app.inject({ url: '/me', headers: { authorization: `Bearer ${mint({ sub: 'alice', scope: 'a b' })}` } })
  t.equal(ok.statusCode, 200)
  t.match(ok.json(), { userId: 'alice', scopes: ['a', 'b'], requestId: /^req-/ })
  for (const sub of ['none', '', undefined, '\ud800']) {
    const refused = await app.inject({ url: '/me', headers: { authorization: `Bearer ${mint(sub === undefined ? {} : { sub })}` } })
    t.equal(refused.statusCode, 401)
    t.equal(refused.json().code, 'AGW_ERR_AUTH_SUBJECT_INVALID')
  }
  t.same((await app.inject({ url: '/open' })).json(), { context: null }, 'the decorator starts as null')
})

t.test('user-context cannot be registered without auth-secret', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(configPlugin, { env: { APP_ENV: 'test' } })
  app.register(userContext)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED', message: /auth-secret/ })
})
