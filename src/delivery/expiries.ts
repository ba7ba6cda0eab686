// Token expiry of every connection on one timer, not a timer per connection: a server holds
// thousands of idle connections, and a Node timer costs each of them about 150 bytes. A JWT's
// `exp` is a whole second, so connections wait in buckets by that second; a min-heap of the
// buckets' seconds tells the one timer when the next is due.

/** What can expire: a connection whose token runs out. */
export interface Expiring {
  expire(): void
}

/** setTimeout cannot wait longer than this; a longer wait re-arms when it fires. */
const MAX_DELAY_MS = 2 ** 31 - 1

export class ExpirySchedule {
  readonly #buckets = new Map<number, Set<Expiring>>()
  /**
   * The seconds of the buckets, as a min-heap, each at most once (`#queued`); a second whose
   * bucket emptied stays until it is due, then is skipped.
   */
  readonly #heap: number[] = []
  readonly #queued = new Set<number>()
  #timer: NodeJS.Timeout | undefined
  /** The second the timer is set for. */
  #armedFor = Infinity

  /** Expires `item` at `atMs` (ms since the epoch, rounded up to a whole second); returns its key for `delete`. */
  add (item: Expiring, atMs: number): number {
    const second = Math.ceil(atMs / 1000)
    let bucket = this.#buckets.get(second)
    if (bucket === undefined) {
      bucket = new Set()
      this.#buckets.set(second, bucket)
      if (!this.#queued.has(second)) {
        this.#queued.add(second)
        push(this.#heap, second)
      }
    }
    bucket.add(item)
    if (second < this.#armedFor) this.#arm(second)
    return second
  }

  delete (item: Expiring, key: number): void {
    const bucket = this.#buckets.get(key)
    if (bucket === undefined) return
    bucket.delete(item)
    if (bucket.size === 0) this.#buckets.delete(key)
  }

  /** Items waiting to expire. */
  get size (): number {
    let size = 0
    for (const bucket of this.#buckets.values()) size += bucket.size
    return size
  }

  /** Distinct seconds the timer has queued (bounded by the seconds spanned, however many items come and go). */
  get queuedSeconds (): number {
    return this.#heap.length
  }

  stop (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#armedFor = Infinity
  }

  #arm (second: number): void {
    clearTimeout(this.#timer)
    this.#armedFor = second
    const delay = Math.min(Math.max(0, second * 1000 - Date.now()), MAX_DELAY_MS)
    this.#timer = setTimeout(() => { this.#due() }, delay).unref()
  }

  #due (): void {
    this.#timer = undefined
    this.#armedFor = Infinity
    const now = Date.now()
    const heap = this.#heap
    while (heap.length > 0) {
      const second = heap[0] as number
      const bucket = this.#buckets.get(second)
      if (bucket !== undefined && second * 1000 > now) {
        this.#arm(second)
        return
      }
      pop(heap)
      this.#queued.delete(second)
      if (bucket === undefined) continue
      this.#buckets.delete(second)
      for (const item of bucket) item.expire()
    }
  }
}

function push (heap: number[], value: number): void {
  heap.push(value)
  let i = heap.length - 1
  while (i > 0) {
    const parent = (i - 1) >> 1
    if ((heap[parent] as number) <= value) break
    heap[i] = heap[parent] as number
    i = parent
  }
  heap[i] = value
}

function pop (heap: number[]): void {
  const last = heap.pop() as number
  if (heap.length === 0) return
  let i = 0
  for (;;) {
    const left = 2 * i + 1
    if (left >= heap.length) break
    const right = left + 1
    const child = right < heap.length && (heap[right] as number) < (heap[left] as number) ? right : left
    if ((heap[child] as number) >= last) break
    heap[i] = heap[child] as number
    i = child
  }
  heap[i] = last
}
