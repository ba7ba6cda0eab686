// Logger options for the standalone server. Tokens must never reach the logs: headers that can
// carry one are redacted, and a token in a URL's query string is masked.
import type { FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'

const TOKEN_IN_QUERY = /([?&](?:token|access_token|jwt)=)[^&#]*/gi

/** The URL with any query-string token masked. */
export function redactUrl (url: string): string {
  return url.replace(TOKEN_IN_QUERY, '$1[REDACTED]')
}

interface RequestLike {
  method: string
  url: string
  hostname?: string
  ip?: string
  socket?: { remotePort?: number }
}

/**
 * Whether logs are written for a person: `LOG_FORMAT=pretty`, or `auto` in development when they go
 * to a terminal (as fastify-cli does); anything read by a collector stays JSON.
 */
export function prettyLogs (config: Pick<Config, 'LOG_FORMAT' | 'APP_ENV'>, toTerminal: boolean): boolean {
  return config.LOG_FORMAT === 'pretty' || (config.LOG_FORMAT === 'auto' && config.APP_ENV === 'development' && toTerminal)
}

export function loggerOptions (config: Pick<Config, 'LOG_LEVEL'>, options: { pretty?: boolean } = {}): NonNullable<FastifyServerOptions['logger']> {
  return {
    level: config.LOG_LEVEL,
    // Formatted in a worker thread, off the event loop; redaction and serializers still run here.
    ...(options.pretty === true ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["sec-websocket-protocol"]',
        'req.headers.cookie',
        'token',
        '*.token'
      ],
      censor: '[REDACTED]'
    },
    serializers: {
      req (request: RequestLike) {
        return {
          method: request.method,
          url: redactUrl(request.url),
          host: request.hostname,
          remoteAddress: request.ip,
          remotePort: request.socket?.remotePort
        }
      }
    }
  }
}
