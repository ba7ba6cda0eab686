// `npm run token -- --user alice [--ttl 3600] [--scope "read write"]` prints a JWT for a user.
// With a configured secret it signs locally, through the same auth-secret plugin the server
// uses; with none (development) it asks the running dev server, whose secret is per-process.
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import { configPlugin, loadConfig, type Config } from '../config.js'
import authSecret, { resolveSecret } from '../plugins/auth-secret.js'
import telemetry from '../plugins/telemetry.js'

const usage = 'usage: npm run token -- --user <id> [--ttl <seconds>] [--scope "<scopes>"]'

function fail (message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(1)
}

async function signLocally (config: Config, claims: Record<string, unknown>, ttl: number): Promise<string> {
  const app = Fastify({ logger: false })
  app.register(configPlugin, { config })
  app.register(telemetry)
  app.register(authSecret)
  try {
    await app.ready()
    return app.authSecret.sign(claims, { expiresInSec: ttl })
  } finally {
    await app.close()
  }
}

async function askDevServer (config: Config, user: string, ttl: number, scope: string | undefined): Promise<string> {
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST
  const url = new URL(`http://${host.includes(':') ? `[${host}]` : host}:${config.PORT}/dev/token`)
  url.searchParams.set('user', user)
  url.searchParams.set('ttl', String(ttl))
  if (scope !== undefined) url.searchParams.set('scope', scope)
  let response: Response
  try {
    response = await fetch(url)
  } catch {
    fail(`No JWT secret is configured and no dev server answers at ${url.origin}.\n` +
      'Start one with `npm start` (it generates a secret per process), or set JWT_SECRET to sign tokens locally.')
  }
  const body = await response.json() as { token?: string, message?: string }
  if (!response.ok || typeof body.token !== 'string') fail(`The dev server refused: ${body.message ?? response.status}`)
  return body.token
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: { user: { type: 'string' }, ttl: { type: 'string', default: '3600' }, scope: { type: 'string' }, help: { type: 'boolean' } }
  })
  if (values.help === true || values.user === undefined) fail(usage)
  const ttl = Number(values.ttl)
  if (!Number.isInteger(ttl) || ttl < 60) fail('--ttl must be a whole number of seconds, at least 60')
  let config: Config
  try {
    config = loadConfig()
  } catch (err) {
    fail((err as Error).message)
  }
  const claims = values.scope === undefined ? { sub: values.user } : { sub: values.user, scope: values.scope }
  let token: string
  if (resolveSecret(config, 'current') !== undefined) {
    token = await signLocally(config, claims, ttl).catch((err: unknown) => fail((err as Error).message))
  } else if (config.APP_ENV === 'development') {
    token = await askDevServer(config, values.user, ttl, values.scope)
  } else {
    fail(`No JWT secret is configured for APP_ENV=${config.APP_ENV}: set JWT_SECRET_${config.APP_ENV.toUpperCase()} or JWT_SECRET.`)
  }
  process.stdout.write(`${token}\n`)
}

await main()
