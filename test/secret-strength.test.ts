// The entropy estimate behind the min-entropy rule, on its own: what it must credit (random
// secrets of the usual forms) and what it must not (runs, sequences, repeats, common words).
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { MIN_SECRET_BITS, estimateEntropyBits } from '../src/secret-strength.js'

t.test('random secrets of the usual forms are credited with at least 128 bits, every time', async (t) => {
  for (let i = 0; i < 200; i++) {
    const bytes = randomBytes(32)
    const base64url = bytes.toString('base64url')
    const hex = bytes.toString('hex')
    if (estimateEntropyBits(base64url) < MIN_SECRET_BITS) t.fail(`base64url secret credited ${estimateEntropyBits(base64url)} bits`)
    if (estimateEntropyBits(hex, true) < MIN_SECRET_BITS) t.fail(`hex secret credited ${estimateEntropyBits(hex, true)} bits`)
  }
  t.pass('200 secrets of each form')
})

t.test('a hex secret is worth 4 bits a digit, capped by what its characters can carry', async (t) => {
  const hex = randomBytes(32).toString('hex')
  const bits = estimateEntropyBits(hex, true)
  t.ok(bits <= 64 * 4, `${bits} ≤ 256`)
  t.ok(bits > estimateEntropyBits(hex.slice(0, 32), true), 'more digits, more bits')
})

t.test('runs, sequences and few distinct characters are worth almost nothing', async (t) => {
  t.equal(estimateEntropyBits('a'.repeat(64)), 0, 'one character repeated: no entropy at all')
  t.ok(estimateEntropyBits('abababababababababababababababababababab') < 64, 'two characters alternating')
  t.ok(estimateEntropyBits('abcdefghijklmnopqrstuvwxyz') < 40, 'the alphabet in order')
  t.ok(estimateEntropyBits('9876543210') < 20, 'digits counting down')
})

t.test('a chunk seen before, or a common word, counts as a few bits whatever its length', async (t) => {
  const part = randomBytes(12).toString('base64url') // 16 characters
  const four = estimateEntropyBits(part.repeat(4))
  // 16 characters of base64url at most log2(26 + 26 + 10 + 33) bits each, then one chunk of 48.
  t.ok(four <= 16 * Math.log2(95) + 6 + 1e-9, `the three repeats count as one chunk of 6 bits (${four})`)
  t.ok(four < estimateEntropyBits(randomBytes(48).toString('base64url')) / 2, 'far below a random secret of the same length')
  const strong = randomBytes(32).toString('base64url')
  t.ok(estimateEntropyBits(`${strong}password`) <= estimateEntropyBits(strong) + 6, 'a common word appended adds at most 6 bits')
  t.ok(estimateEntropyBits('correcthorsebatterystaple') < MIN_SECRET_BITS, 'a passphrase of common-ish words falls short')
})

t.test('the estimate never exceeds what the alphabet allows per character', async (t) => {
  for (const value of ['Tr0ub4dor&3', randomBytes(24).toString('base64'), 'ümlaut-and-more-ümlauts', 'x']) {
    const bits = estimateEntropyBits(value)
    t.ok(bits >= 0 && bits <= value.length * Math.log2(26 + 26 + 10 + 33 + 100), `${JSON.stringify(value)}: ${bits}`)
  }
})
