// A first-in, first-out queue on an array with a moving head: taking from the front is O(1), and
// the taken slots are given back in one splice once they are most of the array. The memory
// store keeps its finished runs and its tombstones in the order they were made with it, so that
// expiry looks only at the oldest entries — never at a Map from its start, which in V8 walks
// over every entry deleted since the table was last rebuilt.
export class Fifo<T> {
  #items: T[] = []
  #head = 0

  get length (): number {
    return this.#items.length - this.#head
  }

  push (item: T): void {
    this.#items.push(item)
  }

  /** The oldest item, left in place. */
  peek (): T | undefined {
    return this.#items[this.#head]
  }

  /** Takes the oldest item out. */
  shift (): T | undefined {
    if (this.#head >= this.#items.length) return undefined
    const item = this.#items[this.#head] as T
    // The slot is cleared so that the queue does not keep what it gave out.
    ;(this.#items as Array<T | undefined>)[this.#head] = undefined
    this.#head++
    if (this.#head === this.#items.length) {
      this.#items = []
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items.splice(0, this.#head)
      this.#head = 0
    }
    return item
  }
}
