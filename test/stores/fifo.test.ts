// The queue the memory store keeps its finished runs and tombstones in, in the order made.
import t from 'tap'
import { Fifo } from '../../src/stores/fifo.js'

t.test('items come out in the order they went in, across the compactions of a long queue', async (t) => {
  const queue = new Fifo<number>()
  t.equal(queue.shift(), undefined, 'an empty queue gives nothing')
  t.equal(queue.peek(), undefined)
  let next = 0
  let expected = 0
  const wrong: string[] = []
  // Fill faster than it drains, then drain it: the head passes 1024 many times on the way.
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 300; i++) queue.push(next++)
    for (let i = 0; i < 200; i++) {
      if (queue.peek() !== expected) wrong.push(`peek ${String(queue.peek())}, expected ${expected}`)
      const item = queue.shift()
      if (item !== expected) wrong.push(`shift ${String(item)}, expected ${expected}`)
      expected++
    }
    if (queue.length !== next - expected) wrong.push(`length ${queue.length}, expected ${next - expected}`)
  }
  while (queue.length > 0) {
    if (queue.shift() !== expected) wrong.push(`drain: expected ${expected}`)
    expected++
  }
  t.same(wrong, [], 'every item once, in order')
  t.equal(expected, next, 'all of them')
  t.equal(queue.shift(), undefined, 'and nothing after')
  queue.push(7)
  t.equal(queue.length, 1, 'an emptied queue is usable again')
  t.equal(queue.peek(), 7)
})
