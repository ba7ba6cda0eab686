// What the client needs from src/protocol.ts at run time, without importing it. protocol.ts
// compiles its TypeBox validators when it is imported, which would put about 170 KB of TypeBox
// into every browser bundle for three strings and a number. Each value below is typed as the
// constant it mirrors, so `tsc` fails if protocol.ts ever changes one: there is still one source
// of truth, checked by the compiler rather than copied by hand. Everything else the client knows
// about the wire is imported as types only.
import type {
  BEARER_PROTOCOL_PREFIX as BearerPrefix, CloseCode as CloseCodes, PROTOCOL as Protocol, TERMINAL_EVENT_TYPE as TerminalType
} from '../protocol.js'

export const PROTOCOL: typeof Protocol = 'agent-events.v1'
export const BEARER_PROTOCOL_PREFIX: typeof BearerPrefix = 'bearer.'
export const TERMINAL_EVENT_TYPE: typeof TerminalType = 'agent_completed'
export const CLOSE_UNAUTHORIZED: (typeof CloseCodes)['UNAUTHORIZED'] = 4401

/**
 * The `exp` of a JWT in epoch milliseconds, read without verifying the token (the server does
 * that); undefined when the token has no readable `exp`. Uses `atob`, which browsers and Node share.
 */
export function tokenExpiry (token: string): number | undefined {
  const payload = token.split('.')[1]
  if (payload === undefined) return undefined
  try {
    const claims = JSON.parse(atob(payload.replaceAll('-', '+').replaceAll('_', '/'))) as { exp?: unknown }
    return typeof claims.exp === 'number' ? claims.exp * 1000 : undefined
  } catch {
    return undefined
  }
}
