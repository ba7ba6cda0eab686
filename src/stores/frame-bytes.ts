// A run event's frame written as UTF-8 straight into a buffer, from the parts encodeRunEvent
// (src/protocol.ts) joins as a string — the same bytes. The memory store writes every frame into
// its log this way: joining the parts makes a string of several pieces, which V8 copies into one
// flat string before encoding it, so each event paid a string allocation and two copies of its
// frame; here the constant parts are copied as bytes and only the data is encoded.
import { RUN_EVENT_TYPES, eventTimestamp, framePrefix, frameStamp, runFrameHead, type RunEventType } from '../protocol.js'

const typeCodes = new Map<RunEventType, number>(RUN_EVENT_TYPES.map((type, code) => [type, code]))
/** framePrefix of each type, as bytes, by the type's code. */
const prefixes = RUN_EVENT_TYPES.map((type) => Buffer.from(framePrefix(type), 'utf8'))
const longestPrefix = Math.max(...prefixes.map((prefix) => prefix.length))
/** Digits of the largest seq (Number.MAX_SAFE_INTEGER). */
const SEQ_DIGITS = 16
/** The longest frameStamp: the last time a Date can hold has the longest ISO string. */
const LONGEST_STAMP = Buffer.byteLength(frameStamp(new Date(8.64e15).toISOString()), 'utf8')
const CLOSE_BRACE = 0x7d
const ZERO = 0x30

let stampedMs = Number.NaN
let stamp = Buffer.alloc(0)

/** frameStamp of an event appended at `ms`, as bytes: made once per millisecond. */
function stampBytes (ms: number): Buffer {
  if (ms !== stampedMs) {
    stampedMs = ms
    stamp = Buffer.from(frameStamp(eventTimestamp(ms)), 'utf8')
  }
  return stamp
}

/**
 * A type's code: its place in RUN_EVENT_TYPES. The frame functions take the code, so that a log
 * that keeps it too looks the type up once per event.
 */
export function typeCode (type: RunEventType): number {
  return typeCodes.get(type) as number
}

/** runFrameHead as bytes. */
export function frameHeadBytes (runId: string, threadId: string): Buffer {
  return Buffer.from(runFrameHead(runId, threadId), 'utf8')
}

/**
 * At least the bytes writeFrame takes for `dataJson`, without measuring it: a UTF-16 code unit is
 * at most 3 UTF-8 bytes.
 */
export function frameBytesBound (head: Buffer, dataJson: string): number {
  return longestPrefix + head.length + SEQ_DIGITS + LONGEST_STAMP + dataJson.length * 3 + 1
}

/** Exactly the bytes writeFrame takes. */
export function frameBytes (head: Buffer, code: number, seq: number, ms: number, dataJson: string): number {
  return (prefixes[code] as Buffer).length + head.length + digitCount(seq) + stampBytes(ms).length + Buffer.byteLength(dataJson, 'utf8') + 1
}

function digitCount (n: number): number {
  let digits = 1
  for (let rest = n; rest >= 10; rest = Math.floor(rest / 10)) digits++
  return digits
}

/**
 * Writes the frame encodeRunEvent(head, type, seq, eventTimestamp(ms), dataJson) makes, as UTF-8,
 * into `target` from `offset`, which must have room for it; returns its length in bytes. `code`:
 * the type's typeCode.
 */
export function writeFrame (target: Buffer, offset: number, head: Buffer, code: number, seq: number, ms: number, dataJson: string): number {
  const prefix = prefixes[code] as Buffer
  let at = offset
  target.set(prefix, at)
  at += prefix.length
  target.set(head, at)
  at += head.length
  const digits = digitCount(seq)
  for (let i = digits - 1, rest = seq; i >= 0; i--, rest = Math.floor(rest / 10)) target[at + i] = ZERO + (rest % 10)
  at += digits
  const stamped = stampBytes(ms)
  target.set(stamped, at)
  at += stamped.length
  at += target.write(dataJson, at, 'utf8')
  target[at++] = CLOSE_BRACE
  return at - offset
}
