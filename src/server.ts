// The only entry point: configuration → logger → build → listen → graceful close.
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { build } from './app.js'
import { loadConfig, trustProxyOption, type Config } from './config.js'
import { loggerOptions, prettyLogs } from './logger.js'

function refuse (message: string): never {
  process.stderr.write(`agent-gateway: ${message}\n`)
  process.exit(1)
}

function devBanner (app: FastifyInstance, config: Config, address: string): string {
  const token = app.authSecret.sign({ sub: 'dev' }, { expiresInSec: 12 * 3600 })
  const ws = `${address.replace(/^http/, 'ws')}/ws`
  return [
    '',
    `agent-gateway is listening on ${address} (APP_ENV=${config.APP_ENV})`,
    'No JWT secret is configured, so this process generated one: tokens stop working when it restarts.',
    '',
    'Dev token for user "dev" (valid 12 hours):',
    `  ${token}`,
    '',
    `Watch a run:   npm run client -- --url ${ws} --token <the token above> "What is 12 * (3 + 4)?"`,
    `Or connect:    ${ws}  with the header "Authorization: Bearer <token>"`,
    'Mint more:     npm run token -- --user alice',
    ''
  ].join('\n')
}

async function main (): Promise<void> {
  let config: Config
  try {
    config = loadConfig()
  } catch (err) {
    refuse((err as Error).message)
  }
  let app: FastifyInstance
  try {
    // Plugins check what they are given as they load (secrets, agents): a refusal can come from
    // build() as well as from ready().
    app = await build({ config, logger: loggerOptions(config, { pretty: prettyLogs(config, process.stdout.isTTY) }), trustProxy: trustProxyOption(config), requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS })
    await app.ready()
  } catch (err) {
    refuse((err as Error).message)
  }
  // The delay must outlast the runs' grace period plus flushing, or a slow shutdown is cut short.
  closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS + 10_000, logger: app.log }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'closing after an unexpected error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
  })
  const nodeMajor = Number(process.versions.node.split('.')[0])
  if (nodeMajor < 22) {
    app.log.warn(`Node.js ${process.versions.node} is past its end of life; agent-gateway supports Node.js 22 and 24 (the LTS lines). It runs, but upgrade.`)
  }
  const address = await app.listen({ port: config.PORT, host: config.HOST })
  if (app.authSecret.generated) process.stdout.write(`${devBanner(app, config, address)}\n`)
}

await main()
