// The log of one run in the memory store, compact: the frames' bytes are copied back to back into
// a few growing chunks, and per event only its type, time and end offset are kept, as two numbers
// — no object and no Buffer per retained event. A StoredEvent (with a view of its frame's bytes)
// is made when an event is appended, for the live subscribers, and again when the log is read.
import type { StoredEvent } from '../contracts.js'
import { RUN_EVENT_TYPES, type RunEventType } from '../protocol.js'
import { frameBytes, frameBytesBound, typeCode, writeFrame } from './frame-bytes.js'

/** The first chunk of a run's log; each next one doubles, up to MAX_CHUNK. */
const FIRST_CHUNK = 2048
const MAX_CHUNK = 256 * 1024
/**
 * At `seal`, a last chunk with at most this many bytes in use (all of a short log, the tail of a
 * long one) and a pooled first chunk are copied into a shared slab instead of a buffer of their
 * own. Short runs are the common case, and a buffer of its own is an allocation outside the JS
 * heap per run, which costs far more than the copy and makes V8 collect more often. Slabs fill
 * in the order runs end, which is the order the store evicts them, so a slab is freed soon after
 * its last run; the store's byte bounds count frames, not slab space.
 */
const SLAB_MAX_LOG = 8 * 1024
const SLAB_SIZE = 64 * 1024

let slab: Buffer | undefined
let slabUsed = 0

/** `length` bytes of `source`, copied into the current slab. */
function slabCopy (source: Buffer, length: number): Buffer {
  if (slab === undefined || slab.length - slabUsed < length) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE)
    slabUsed = 0
  }
  const copy = slab.subarray(slabUsed, slabUsed + length)
  source.copy(copy, 0, 0, length)
  slabUsed += length
  return copy
}

/** A type is kept in the index as its typeCode, a place in RUN_EVENT_TYPES. */
const TYPE_CODES = RUN_EVENT_TYPES.length
const CHUNK_SHIFT = 2 ** 32

const NO_HEAD = Buffer.alloc(0)

export class FrameLog {
  /** The run's frame head as bytes (frameHeadBytes), until the log is sealed. */
  #head: Buffer
  readonly #chunks: Buffer[] = []
  /** The last chunk (the one appended to), kept apart so that an append does not look it up. */
  #chunk: Buffer | undefined
  /** Bytes used in the last chunk. */
  #used = 0
  /** Events in the log. */
  #length = 0
  // The per-event index is one plain array, two numbers per event: when it was appended (epoch
  // ms) times TYPE_CODES plus its type's code, and its chunk times 2^32 plus its end offset in it.
  // V8 stores numbers in a plain array unboxed, on its own heap; a typed array of more than a few
  // elements has a backing store outside it — an allocation of its own at creation, at each
  // growth and at `seal`. And one array instead of one per field: with thousands of runs
  // streaming at once, each append touches a run's log long after the last one did, and every
  // object it reaches is another likely cache miss.
  #index: number[] = []

  constructor (head: Buffer) {
    this.#head = head
  }

  get length (): number {
    return this.#length
  }

  /**
   * Appends the next event, appended at `at` (epoch ms) with `dataJson` as its data: its frame
   * (protocol's encodeRunEvent, written as bytes) goes into the log, and it is returned as a
   * StoredEvent.
   */
  append (type: RunEventType, dataJson: string, at: number): StoredEvent {
    const head = this.#head
    const code = typeCode(type)
    const seq = this.#length + 1
    let chunk = this.#chunk
    // When the room left is enough for any encoding of the data, it is written without
    // measuring it first (one pass over it instead of two).
    if (chunk === undefined || chunk.length - this.#used < frameBytesBound(head, dataJson)) {
      const needed = frameBytes(head, code, seq, at, dataJson)
      if (chunk === undefined || chunk.length - this.#used < needed) {
        const size = Math.max(needed, Math.min(MAX_CHUNK, chunk === undefined ? FIRST_CHUNK : chunk.length * 2))
        // The first chunk, while the run is live, comes from Node's shared pool (a slice, no
        // allocation of its own); `seal` copies it out, so no finished run keeps a pool.
        chunk = size === FIRST_CHUNK ? Buffer.allocUnsafe(size) : Buffer.allocUnsafeSlow(size)
        this.#chunks.push(chunk)
        this.#chunk = chunk
        this.#used = 0
      }
    }
    const start = this.#used
    const bytes = writeFrame(chunk, start, head, code, seq, at, dataJson)
    this.#used += bytes
    const index = this.#index
    // One value per push: V8 inlines a push of one, and calls a builtin for more.
    index.push(at * TYPE_CODES + code)
    index.push((this.#chunks.length - 1) * CHUNK_SHIFT + this.#used)
    this.#length = seq
    return { seq, type, frame: chunk.subarray(start, start + bytes), at }
  }

  /** Events with seq > afterSeq, in order, at most `limit`. */
  read (afterSeq: number, limit: number): StoredEvent[] {
    const index = this.#index
    const from = Math.max(0, afterSeq)
    const to = Math.min(this.#length, from + limit)
    const events: StoredEvent[] = []
    for (let i = from; i < to; i++) {
      const stamp = index[2 * i] as number
      const end = index[2 * i + 1] as number
      const chunkIndex = Math.floor(end / CHUNK_SHIFT)
      const previous = i === 0 ? 0 : index[2 * i - 1] as number
      // An event starts where the one before it ended, unless it opened a new chunk.
      const start = Math.floor(previous / CHUNK_SHIFT) === chunkIndex ? previous % CHUNK_SHIFT : 0
      const chunk = this.#chunks[chunkIndex] as Buffer
      events.push({
        seq: i + 1,
        type: RUN_EVENT_TYPES[stamp % TYPE_CODES] as RunEventType,
        frame: chunk.subarray(start, end % CHUNK_SHIFT),
        at: Math.floor(stamp / TYPE_CODES)
      })
    }
    return events
  }

  /**
   * Nothing more will be appended: gives back the unused end of the last chunk and of the index,
   * and moves a pooled first chunk out of the pool.
   */
  seal (): void {
    const last = this.#chunks.length - 1
    const chunk = this.#chunk
    if (chunk !== undefined && (this.#used < chunk.length || chunk.length === FIRST_CHUNK)) {
      this.#chunks[last] = this.#used <= SLAB_MAX_LOG ? slabCopy(chunk, this.#used) : exactCopy(chunk, this.#used)
    }
    this.#chunk = undefined
    this.#head = NO_HEAD
    // A pooled first chunk that is not the last one (the log grew past it) is copied out too.
    const first = this.#chunks[0]
    if (last > 0 && first !== undefined && first.length === FIRST_CHUNK) this.#chunks[0] = slabCopy(first, first.length)
    // Copied at its exact length: a growing array keeps spare room.
    this.#index = this.#index.slice()
  }
}

function exactCopy (source: Buffer, length: number): Buffer {
  const copy = Buffer.allocUnsafeSlow(length)
  source.copy(copy, 0, 0, length)
  return copy
}
