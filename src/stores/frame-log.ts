// The log of one run in the memory store, compact: the frames' bytes are copied back to back into
// a few growing chunks, and per event only its type, time and end offset are kept — no object
// and no Buffer per retained event. A StoredEvent (with a view of its frame's bytes) is made when
// an event is appended, for the live subscribers, and again when the log is read.
import type { StoredEvent } from '../contracts.js'
import type { RunEventType } from '../protocol.js'

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

export class FrameLog {
  readonly #chunks: Buffer[] = []
  /** Bytes used in the last chunk. */
  #used = 0
  // The per-event index is kept in plain arrays: V8 stores numbers in them unboxed (8 bytes each,
  // as a Float64Array would) but on its own heap, whereas every typed array of more than a few
  // elements has a backing store outside it — an allocation of its own, at creation, at each
  // growth and at `seal`: several per run.
  #types: RunEventType[] = []
  /** Per event: when it was appended (epoch ms). */
  #at: number[] = []
  /** Per event: its chunk (high bits) and end offset in it, as chunk * 2^32 + end. */
  #ends: number[] = []

  get length (): number {
    return this.#types.length
  }

  /** Appends the event whose frame is `text` (UTF-8 JSON) and returns it as a StoredEvent. */
  append (type: RunEventType, text: string, at: number): StoredEvent {
    let chunk = this.#chunks[this.#chunks.length - 1]
    // A UTF-16 code unit is at most 3 UTF-8 bytes: when that much room is left, the text is
    // written without measuring it first (one pass over it instead of two).
    if (chunk === undefined || chunk.length - this.#used < text.length * 3) {
      const needed = Buffer.byteLength(text, 'utf8')
      if (chunk === undefined || chunk.length - this.#used < needed) {
        const size = Math.max(needed, Math.min(MAX_CHUNK, chunk === undefined ? FIRST_CHUNK : chunk.length * 2))
        // The first chunk, while the run is live, comes from Node's shared pool (a slice, no
        // allocation of its own); `seal` copies it out, so no finished run keeps a pool.
        chunk = size === FIRST_CHUNK ? Buffer.allocUnsafe(size) : Buffer.allocUnsafeSlow(size)
        this.#chunks.push(chunk)
        this.#used = 0
      }
    }
    const start = this.#used
    const bytes = chunk.write(text, start, 'utf8')
    this.#used += bytes
    const index = this.#types.length
    this.#types.push(type)
    this.#at.push(at)
    this.#ends.push((this.#chunks.length - 1) * 2 ** 32 + this.#used)
    return { seq: index + 1, type, frame: chunk.subarray(start, start + bytes), at }
  }

  /** Events with seq > afterSeq, in order, at most `limit`. */
  read (afterSeq: number, limit: number): StoredEvent[] {
    const from = Math.max(0, afterSeq)
    const to = Math.min(this.#types.length, from + limit)
    const events: StoredEvent[] = []
    for (let i = from; i < to; i++) {
      const end = this.#ends[i] as number
      const chunkIndex = Math.floor(end / 2 ** 32)
      const previous = i === 0 ? 0 : this.#ends[i - 1] as number
      // An event starts where the one before it ended, unless it opened a new chunk.
      const start = Math.floor(previous / 2 ** 32) === chunkIndex ? previous % 2 ** 32 : 0
      const chunk = this.#chunks[chunkIndex] as Buffer
      events.push({ seq: i + 1, type: this.#types[i] as RunEventType, frame: chunk.subarray(start, end % 2 ** 32), at: this.#at[i] as number })
    }
    return events
  }

  /**
   * Nothing more will be appended: gives back the unused end of the last chunk and of the index,
   * and moves a pooled first chunk out of the pool.
   */
  seal (): void {
    const last = this.#chunks.length - 1
    const chunk = this.#chunks[last]
    if (chunk !== undefined && (this.#used < chunk.length || chunk.length === FIRST_CHUNK)) {
      this.#chunks[last] = this.#used <= SLAB_MAX_LOG ? slabCopy(chunk, this.#used) : exactCopy(chunk, this.#used)
    }
    // A pooled first chunk that is not the last one (the log grew past it) is copied out too.
    const first = this.#chunks[0]
    if (last > 0 && first !== undefined && first.length === FIRST_CHUNK) this.#chunks[0] = slabCopy(first, first.length)
    // Copied at their exact length: a growing array keeps spare room.
    this.#types = this.#types.slice()
    this.#at = this.#at.slice()
    this.#ends = this.#ends.slice()
  }
}

function exactCopy (source: Buffer, length: number): Buffer {
  const copy = Buffer.allocUnsafeSlow(length)
  source.copy(copy, 0, 0, length)
  return copy
}
