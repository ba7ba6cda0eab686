// Logger options for the standalone server. Tokens must never reach the logs, wherever they
// hide: headers that can carry one are redacted by path, and every string that is logged (the
// message, a URL, an error's message and stack, any field) has its credentials masked by shape:
// anything that looks like a JWT, and the value of any credential-like query parameter, its name
// %-encoded or not.
import type { FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'

const REDACTED = '[REDACTED]'
// A JWT's header is base64url JSON, so it starts with "eyJ"; or three long base64url segments.
// Both may only start where a run of token characters (or a dotted segment) starts, which keeps
// the scan linear.
const JWT_SHAPED = /(?<![\w-])(?:eyJ[\w-]*(?:\.[\w-]*)+|[\w-]{16,}\.[\w-]{16,}\.[\w-]{16,})/g
const QUERY_PARAMETER = /([?&;])([^=&#;\s]*)=([^&#;\s]*)/g
const CREDENTIAL_NAME = /^(?:token|access[_-]?token|id[_-]?token|refresh[_-]?token|jwt|bearer|api[_-]?key|apikey|key|secret|client[_-]?secret|password|passwd|pwd|auth|authorization|session|signature|sig)$/i

function decodedName (name: string): string {
  try {
    return decodeURIComponent(name.replaceAll('+', ' '))
  } catch {
    return name
  }
}

/** The text with JWT-shaped strings and the values of credential-like query parameters masked. */
export function redactText (text: string): string {
  return text
    .replace(QUERY_PARAMETER, (whole, separator: string, name: string) => CREDENTIAL_NAME.test(decodedName(name).trim()) ? `${separator}${name}=${REDACTED}` : whole)
    .replace(JWT_SHAPED, REDACTED)
}

/** The URL with any credential in it masked. */
export function redactUrl (url: string): string {
  return redactText(url)
}

/**
 * Masks every string of a logged value, a few levels deep (log objects are small). Only plain
 * objects and arrays are walked: requests and errors have serializers of their own.
 */
function redactValue (value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value)
  if (depth > 4 || typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) return value.map((item) => redactValue(item, depth + 1))
  const prototype: unknown = Object.getPrototypeOf(value)
  if (prototype !== Object.prototype && prototype !== null) return value
  const copy: Record<string, unknown> = {}
  for (const [key, item] of Object.entries(value)) copy[key] = redactValue(item, depth + 1)
  return copy
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
      censor: REDACTED
    },
    // The message and any other string argument, e.g. Fastify's "Route GET:/nope?access_token=… not found".
    hooks: {
      logMethod (args, method) {
        method.apply(this, args.map((arg) => typeof arg === 'string' ? redactText(arg) : arg) as Parameters<typeof method>)
      }
    },
    formatters: {
      log: (object) => redactValue(object) as Record<string, unknown>
    },
    serializers: {
      err (err: Error) {
        const own: Record<string, unknown> = { ...err }
        const serialized = { ...own, type: err.constructor.name, message: err.message, stack: err.stack ?? '' }
        return redactValue(serialized) as typeof serialized
      },
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
