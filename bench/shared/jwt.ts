// HS256 tokens for the benchmark: the load generator mints them with the shared secret, and the
// two baseline servers verify them at the handshake (the gateway verifies with its own code).
import { createHmac, timingSafeEqual } from 'node:crypto'

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url')

function signature (secret: string, signed: string): Buffer {
  return createHmac('sha256', secret).update(signed).digest()
}

export function signToken (secret: string, sub: string, ttlSec = 3600): string {
  const now = Math.floor(Date.now() / 1000)
  const payload = Buffer.from(JSON.stringify({ sub, iat: now, exp: now + ttlSec })).toString('base64url')
  return `${HEADER}.${payload}.${signature(secret, `${HEADER}.${payload}`).toString('base64url')}`
}

/** The token's `sub` when it is a valid, unexpired HS256 token signed with `secret`. */
export function verifyToken (secret: string, token: string | undefined): string | undefined {
  const [header, payload, sig] = (token ?? '').split('.')
  if (header === undefined || payload === undefined || sig === undefined) return undefined
  const expected = signature(secret, `${header}.${payload}`)
  const given = Buffer.from(sig, 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
  try {
    const { alg } = JSON.parse(Buffer.from(header, 'base64url').toString()) as { alg?: unknown }
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { sub?: unknown, exp?: unknown }
    if (alg !== 'HS256' || typeof claims.sub !== 'string' || typeof claims.exp !== 'number') return undefined
    return claims.exp * 1000 > Date.now() ? claims.sub : undefined
  } catch {
    return undefined
  }
}
