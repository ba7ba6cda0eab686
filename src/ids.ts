// The gateway's ids (runs, threads, connections, messages, tool calls): random version-4 UUIDs,
// written as one flat string. node:crypto's randomUUID() builds its string from twenty small
// pieces, which V8 keeps as a tree of about 500 bytes until something flattens it (using the id
// as a map key does, and the pieces become garbage): every run made a kilobyte or more of such
// garbage. This one allocates the string alone.
import { randomFillSync } from 'node:crypto'

/** Ids made from one fill of the random pool. */
const IDS_PER_FILL = 128
const HEX = Buffer.from('0123456789abcdef', 'latin1')
const DASH = 0x2d

let pool: Buffer | undefined
let used = 0
let text: Buffer | undefined

/** A random (version 4, RFC 9562) UUID, from the same CSPRNG as randomUUID(). */
export function newId (): string {
  if (pool === undefined || used === pool.length) {
    pool ??= Buffer.allocUnsafeSlow(IDS_PER_FILL * 16)
    randomFillSync(pool)
    used = 0
  }
  text ??= Buffer.allocUnsafeSlow(36)
  let at = 0
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) text[at++] = DASH
    let byte = pool[used + i] as number
    // The version (4) and the variant (10xx) bits.
    if (i === 6) byte = (byte & 0x0f) | 0x40
    else if (i === 8) byte = (byte & 0x3f) | 0x80
    text[at++] = HEX[byte >> 4] as number
    text[at++] = HEX[byte & 0x0f] as number
  }
  // Each id's bytes are used once: the next call reads past them.
  used += 16
  return text.toString('latin1', 0, 36)
}
