import { randomUUID } from 'node:crypto'
import t from 'tap'
import { newId } from '../src/ids.js'
import { gc } from './gc.js'

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

t.test('ids are version-4 UUIDs, unique across many fills of the random pool', async (t) => {
  const seen = new Set<string>()
  // 128 ids per fill: this crosses the pool's refill about 80 times.
  for (let i = 0; i < 10_000; i++) {
    const id = newId()
    if (!UUID_V4.test(id)) t.fail(`not a version-4 UUID: ${id}`)
    seen.add(id)
  }
  t.equal(seen.size, 10_000)
})

t.test('every hex digit appears in every random position (the bytes are used, not a fixed pattern)', async (t) => {
  const digits = Array.from({ length: 36 }, () => new Set<string>())
  for (let i = 0; i < 2_000; i++) [...newId()].forEach((char, at) => digits[at]?.add(char))
  const fixed = new Map([[8, '-'], [13, '-'], [14, '4'], [18, '-'], [23, '-']])
  for (const [at, chars] of digits.entries()) {
    if (fixed.has(at)) t.same([...chars], [fixed.get(at)], `position ${at}`)
    else if (at === 19) t.same([...chars].sort(), ['8', '9', 'a', 'b'], 'the variant digit')
    else if (chars.size !== 16) t.fail(`position ${at} took ${chars.size} of 16 digits`)
  }
})

t.test('an id holds only its own 36 characters, where randomUUID() holds a tree of pieces', async (t) => {
  const heapPerId = (make: () => string): number => {
    const ids: string[] = new Array(20_000)
    gc()
    const before = process.memoryUsage().heapUsed
    for (let i = 0; i < ids.length; i++) ids[i] = make()
    gc()
    const perId = (process.memoryUsage().heapUsed - before) / ids.length
    t.equal(new Set(ids).size, ids.length)
    return perId
  }
  const ours = heapPerId(newId)
  const theirs = heapPerId(randomUUID)
  // A flat one-byte string of 36 characters is 56 bytes on a 64-bit heap, plus the array slot.
  t.ok(ours < 100, `${ours.toFixed(0)} bytes per id`)
  t.ok(theirs > 3 * ours, `randomUUID(): ${theirs.toFixed(0)} bytes per id (the comparison's premise)`)
})
