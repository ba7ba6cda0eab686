// GET / and its assets over HTTP (the browser tests in test/browser/ drive the page itself): what
// is served, with which headers, that it needs nothing from another origin, where its token
// comes from in each environment, and how it lives next to a host app's own routes.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Writable } from 'node:stream'
import t from 'tap'
import Fastify from 'fastify'
import fastifyStatic from '@fastify/static'
import { agentGateway } from '../../src/app.js'
import pageRoute from '../../src/routes/page.js'
import { buildApp, connect, listen, testEnv } from '../helpers.js'

const built = fileURLToPath(new URL('../../dist/page/', import.meta.url))

t.test('GET / serves the built page with a strict policy; its assets are served, nothing else is', async (t) => {
  const app = await buildApp(t)
  const page = await app.inject({ method: 'GET', url: '/' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  t.equal(page.body, await readFile(join(built, 'index.html'), 'utf8'))
  const csp = String(page.headers['content-security-policy'])
  t.match(csp, "default-src 'self'")
  t.match(csp, "connect-src 'self'")
  t.notMatch(csp, 'unsafe-inline', 'no inline script or style is allowed')
  t.equal(page.headers['x-content-type-options'], 'nosniff')

  const script = await app.inject({ method: 'GET', url: '/app.js' })
  t.equal(script.statusCode, 200)
  t.match(script.headers['content-type'], /javascript/)
  t.match(script.body, 'agent-gateway', 'the bundle is the page')
  const style = await app.inject({ method: 'GET', url: '/app.css' })
  t.match(style.headers['content-type'], /^text\/css/)
  t.equal((await app.inject({ method: 'HEAD', url: '/' })).statusCode, 200)

  // Only the built files have routes: no wildcard that could shadow a host's routes.
  for (const url of ['/nope', '/../package.json', '/index.html/x', '/dist/page/app.js']) {
    t.equal((await app.inject({ method: 'GET', url })).statusCode, 404, `${url} is not served`)
  }
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'the other routes still answer')
})

t.test('the page refers to nothing outside its own origin', async (t) => {
  const files = ['index.html', 'app.js', 'app.css']
  for (const file of files) {
    const text = await readFile(join(built, file), 'utf8')
    t.notMatch(text, /(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}\//i, `${file} has no absolute URL`)
    t.notMatch(text, /@import|fonts\.googleapis|cdn/i, `${file} loads no CDN`)
  }
  const html = await readFile(join(built, 'index.html'), 'utf8')
  t.same([...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1]), ['data:,', 'app.css', 'app.js'])
  t.match(html, '<meta name="viewport" content="width=device-width, initial-scale=1">', 'sized for phones')
  t.match(html, '<html lang="en">')
})

t.test('the page gets its token from GET /dev/token in development only; 404 elsewhere', async (t) => {
  const dev = await buildApp(t, { env: testEnv({ APP_ENV: 'development', JWT_SECRET: '' }) })
  const { http, ws } = await listen(t, dev)
  const response = await fetch(`${http}/dev/token?user=alice&ttl=120`)
  t.equal(response.status, 200)
  const body = await response.json() as { token: string, userId: string, expiresAt: string }
  t.equal(body.userId, 'alice')
  t.ok(Date.parse(body.expiresAt) > Date.now())
  const client = await connect(t, ws, { token: body.token, viaProtocol: true })
  t.match(client.messages[0], { type: 'welcome', userId: 'alice' }, 'the token opens the WebSocket the way the page does')

  for (const APP_ENV of ['test', 'staging', 'production']) {
    const app = await buildApp(t, { env: testEnv({ APP_ENV }) })
    t.equal((await app.inject({ method: 'GET', url: '/dev/token?user=alice' })).statusCode, 404, `no /dev/token when APP_ENV=${APP_ENV}`)
    t.equal((await app.inject({ method: 'GET', url: '/' })).statusCode, 200, `the page is still served when APP_ENV=${APP_ENV}`)
  }
})

t.test('next to a host app: its own @fastify/static works, and page: false leaves / to it', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyStatic, { root: join(built), prefix: '/host-assets/' })
  app.get('/host', async (_request, reply) => reply.sendFile('app.css'))
  await app.register(agentGateway, { env: testEnv() })
  t.equal((await app.inject({ method: 'GET', url: '/host' })).statusCode, 200, "the host's reply.sendFile is untouched")
  t.equal((await app.inject({ method: 'GET', url: '/host-assets/app.css' })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/' })).statusCode, 200, 'and the page is served')

  const host = Fastify()
  t.teardown(() => host.close())
  host.get('/', async () => 'the host home page')
  await host.register(agentGateway, { env: testEnv(), page: false })
  t.equal((await host.inject({ method: 'GET', url: '/' })).body, 'the host home page')
  t.equal((await host.inject({ method: 'GET', url: '/app.js' })).statusCode, 404)
})

t.test('without a built page, routes/page warns and serves nothing', async (t) => {
  const empty = await mkdtemp(join(tmpdir(), 'agw-page-'))
  t.teardown(() => rm(empty, { recursive: true, force: true }))
  const lines: string[] = []
  const logger = { level: 'warn', stream: new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(chunk.toString()); done() } }) }
  const app = Fastify({ logger })
  t.teardown(() => app.close())
  await app.register(agentGateway, { env: testEnv({ LOG_LEVEL: 'warn' }), page: false })
  await app.register(pageRoute, { root: empty })
  await app.ready()
  t.equal((await app.inject({ method: 'GET', url: '/' })).statusCode, 404)
  t.match(lines.join(''), /the demo page is not built \(no index\.html in .*agw-page-.*\): run `npm run build`/)
})
