// Where the memory store's logs get their bytes, and how the garbage among them is accounted for.
//
// A log's chunks are SharedArrayBuffers. V8 counts every other ArrayBuffer as external memory, and
// each time that has grown by 64 MB since its last full collection it starts another, marking the
// whole heap, whether or not any of those bytes are garbage: a server keeping the history of token
// streams (about 25 MB a second in the bench's token stream) paid a full collection every few
// seconds for history it meant to keep. V8 leaves shared buffers out of that count (Node 20 and
// 24; test/stores/log-memory.test.ts checks it), so their bytes no longer start collections.
//
// What V8 is then not told is counted here: the bytes of logs the store has dropped, and of the
// chunks that sealing a log replaced, which are garbage once the last view of their frames (a
// reader's, a socket's queued write) is gone, and which V8 frees when it next collects the old
// generation for its own reasons. While more than `garbageLimit` of them is uncollected, new
// chunks are ordinary buffers again: V8 counts those, so it collects as it did before, and the
// finalization of the dropped chunks brings the count back down. Memory beyond the store's own
// bound stays under about the limit plus V8's 64 MB, plus what is allocated while V8's concurrent
// collection runs: up to 45 MiB more in the test's stream with both cores busy.

/** At `copy`, logs of at most this many bytes go into a shared slab instead of a buffer of their own. */
const SLAB_MAX_LOG = 8 * 1024
const SLAB_SIZE = 64 * 1024
const GARBAGE_LIMIT = 64 * 1024 * 1024

export interface LogMemoryOptions {
  /** Bytes of dropped logs left uncollected before new chunks are counted by V8 again. Default: 64 MiB. */
  garbageLimit?: number
}

export interface LogMemory {
  /** A new chunk of `size` bytes for one log. */
  chunk: (size: number) => Buffer
  /**
   * The first `length` bytes of `source` in memory of their own: a shared slab for a short log
   * (short runs are the common case, and a buffer per run would be an allocation per run), a
   * buffer of their own otherwise. Slabs fill in the order runs end, which is the order the store
   * drops them, so a slab is garbage soon after its last log; the store's byte bounds count
   * frames, not slab space.
   */
  copy: (source: Buffer, length: number) => Buffer
  /** Chunks no log holds any more (a dropped log's, one replaced at sealing): garbage once nothing views them. */
  release: (chunks: readonly Buffer[]) => void
  /** Bytes released and not yet collected. */
  readonly uncollected: number
}

/** The bytes a shared buffer holds of released logs, for when it is collected. */
interface Released {
  bytes: number
}

export function createLogMemory (options: LogMemoryOptions = {}): LogMemory {
  const garbageLimit = options.garbageLimit ?? GARBAGE_LIMIT
  let uncollected = 0
  const released = new WeakMap<ArrayBufferLike, Released>()
  const collected = new FinalizationRegistry<Released>((held) => { uncollected -= held.bytes })
  let slab: Buffer | undefined
  let slabUsed = 0

  function allocate (size: number): Buffer {
    if (uncollected > garbageLimit) return Buffer.allocUnsafeSlow(size)
    const shared = new SharedArrayBuffer(size)
    const held: Released = { bytes: 0 }
    released.set(shared, held)
    collected.register(shared, held)
    return Buffer.from(shared)
  }

  return {
    chunk: allocate,

    copy (source: Buffer, length: number): Buffer {
      let copy: Buffer
      if (length > SLAB_MAX_LOG) {
        copy = allocate(length)
      } else {
        if (slab === undefined || slab.length - slabUsed < length) {
          slab = allocate(SLAB_SIZE)
          slabUsed = 0
        }
        copy = slab.subarray(slabUsed, slabUsed + length)
        slabUsed += length
      }
      source.copy(copy, 0, 0, length)
      return copy
    },

    release (chunks: readonly Buffer[]): void {
      for (const chunk of chunks) {
        // Buffers V8 counts (Node's pool, or made while over the limit) are its to collect.
        const held = released.get(chunk.buffer)
        if (held === undefined) continue
        held.bytes += chunk.length
        uncollected += chunk.length
      }
    },

    get uncollected (): number {
      return uncollected
    }
  }
}
