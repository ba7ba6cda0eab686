// The log of one run in the memory store, compact and off the JS heap: each event is one record
// in a few growing chunks of bytes — a small head (the frame's length, its type, when it was
// appended) followed by its frame. No object, no Buffer and no array slot is kept per retained
// event: only where every SPARSE-th record starts. A StoredEvent (with a view of its frame's
// bytes) is made when an event is appended, for the live subscribers, and again when it is read.
import type { StoredEvent } from '../contracts.js'
import { RUN_EVENT_TYPES, type RunEventType } from '../protocol.js'
import { frameBytes, frameBytesBound, typeCode, writeFrame } from './frame-bytes.js'
import type { LogMemory } from './log-memory.js'

/** The first chunk of a run's log; each next one doubles, up to MAX_CHUNK. */
const FIRST_CHUNK = 2048
const MAX_CHUNK = 256 * 1024

// A record: the frame's length in bytes (u32), its type's code (a place in RUN_EVENT_TYPES, u8),
// when it was appended (epoch ms, f64), then the frame. Little-endian.
const LENGTH_AT = 0
const CODE_AT = 4
const TIME_AT = 5
const RECORD_HEAD = 13
/**
 * Where every SPARSE-th record starts is kept on the heap; a read walks from the nearest one,
 * over at most SPARSE - 1 record heads. Reads are rare (a subscriber catching up, a replay);
 * appends are every event. Before, the log kept two numbers per event in a growing array: the
 * array's regrowth was most of what a streaming server moved out of the young generation (the
 * token stream: about 4 MB a second), and its old copies were garbage in the old one.
 */
const SPARSE = 32
/** A place is the chunk times 2^32 plus the offset in it. */
const CHUNK_SHIFT = 2 ** 32

const NO_HEAD = Buffer.alloc(0)
/** The chunks of a log that has none yet: replaced, never grown (frozen, so a push would throw). */
const NO_CHUNKS = Object.freeze([]) as unknown as Buffer[]

export class FrameLog {
  /** The run's frame head as bytes (frameHeadBytes), until the log is sealed. */
  #head: Buffer
  /**
   * Made with its first chunk, holding exactly it: an array grown by push from empty reserves
   * room for 17, and most logs (a short run's) never have a second chunk.
   */
  #chunks: Buffer[] = NO_CHUNKS
  /** The last chunk (the one appended to), kept apart so that an append does not look it up. */
  #chunk: Buffer | undefined
  /** Bytes used in the last chunk. */
  #used = 0
  /** Bytes used in each chunk but the last: made when a second chunk is. */
  #ends: number[] | undefined
  /**
   * The place of records SPARSE, 2 × SPARSE, … (the first record is at the start of the first
   * chunk): made when the log grows past SPARSE events, so a short run keeps no array for it.
   */
  #sparse: number[] | undefined
  /** Events in the log. */
  #length = 0
  readonly #memory: LogMemory
  #released = false

  constructor (head: Buffer, memory: LogMemory) {
    this.#head = head
    this.#memory = memory
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
    if (chunk === undefined || chunk.length - this.#used < RECORD_HEAD + frameBytesBound(head, dataJson)) {
      const needed = RECORD_HEAD + frameBytes(head, code, seq, at, dataJson)
      if (chunk === undefined || chunk.length - this.#used < needed) {
        const size = Math.max(needed, Math.min(MAX_CHUNK, chunk === undefined ? FIRST_CHUNK : chunk.length * 2))
        if (chunk !== undefined) (this.#ends ??= []).push(this.#used)
        // The first chunk, while the run is live, comes from Node's shared pool (a slice, no
        // allocation of its own); `seal` copies it out, so no finished run keeps a pool.
        chunk = size === FIRST_CHUNK ? Buffer.allocUnsafe(size) : this.#memory.chunk(size)
        if (this.#chunks === NO_CHUNKS) this.#chunks = [chunk]
        else this.#chunks.push(chunk)
        this.#chunk = chunk
        this.#used = 0
      }
    }
    const start = this.#used
    const frameStart = start + RECORD_HEAD
    const bytes = writeFrame(chunk, frameStart, head, code, seq, at, dataJson)
    chunk.writeUInt32LE(bytes, start + LENGTH_AT)
    chunk[start + CODE_AT] = code
    chunk.writeDoubleLE(at, start + TIME_AT)
    if (seq % SPARSE === 1 && seq > 1) (this.#sparse ??= []).push((this.#chunks.length - 1) * CHUNK_SHIFT + start)
    this.#used = frameStart + bytes
    this.#length = seq
    return { seq, type, frame: chunk.subarray(frameStart, frameStart + bytes), at }
  }

  /** Events with seq > afterSeq, in order, at most `limit`. */
  read (afterSeq: number, limit: number): StoredEvent[] {
    const from = Math.max(0, afterSeq)
    const to = Math.min(this.#length, from + limit)
    const events: StoredEvent[] = []
    if (from >= to) return events
    // Walk from the nearest kept place at or before the first record wanted.
    const nearest = Math.floor(from / SPARSE)
    const place = nearest === 0 ? 0 : this.#sparse?.[nearest - 1] as number
    let chunkIndex = Math.floor(place / CHUNK_SHIFT)
    let offset = place % CHUNK_SHIFT
    let chunk = this.#chunks[chunkIndex] as Buffer
    let end = this.#endOf(chunkIndex)
    for (let i = nearest * SPARSE; i < to; i++) {
      // A record that did not fit in a chunk opened the next one.
      if (offset >= end) {
        chunkIndex++
        chunk = this.#chunks[chunkIndex] as Buffer
        end = this.#endOf(chunkIndex)
        offset = 0
      }
      const length = chunk.readUInt32LE(offset + LENGTH_AT)
      if (i >= from) {
        const frameStart = offset + RECORD_HEAD
        events.push({
          seq: i + 1,
          type: RUN_EVENT_TYPES[chunk[offset + CODE_AT] as number] as RunEventType,
          frame: chunk.subarray(frameStart, frameStart + length),
          at: chunk.readDoubleLE(offset + TIME_AT)
        })
      }
      offset += RECORD_HEAD + length
    }
    return events
  }

  /** Bytes used in chunk `index`. */
  #endOf (index: number): number {
    return index === this.#chunks.length - 1 ? this.#used : this.#ends?.[index] as number
  }

  /**
   * Nothing more will be appended: gives back the unused end of the last chunk, and moves a
   * pooled first chunk out of the pool (into a slab shared with other short logs, or memory of
   * its own).
   */
  seal (): void {
    const last = this.#chunks.length - 1
    const chunk = this.#chunk
    const memory = this.#memory
    if (chunk !== undefined && (this.#used < chunk.length || chunk.length === FIRST_CHUNK)) {
      this.#chunks[last] = memory.copy(chunk, this.#used)
      // The chunk it replaces is garbage as soon as no frame read from it is held.
      memory.release([chunk])
    }
    this.#chunk = undefined
    this.#head = NO_HEAD
    // A pooled first chunk that is not the last one (the log grew past it) is copied out too.
    const first = this.#chunks[0]
    if (last > 0 && first !== undefined && first.length === FIRST_CHUNK) this.#chunks[0] = memory.copy(first, first.length)
  }

  /** The store has dropped the log: its bytes are garbage once the frames read from it are. */
  release (): void {
    if (this.#released) return
    this.#released = true
    this.#memory.release(this.#chunks)
  }
}
