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

export function loggerOptions (config: Pick<Config, 'LOG_LEVEL'>): NonNullable<FastifyServerOptions['logger']> {
  return {
    level: config.LOG_LEVEL,
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
