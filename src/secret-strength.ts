// How strong a JWT secret is: the one validator every secret passes (checkSecret) and the entropy
// estimate it relies on. Pure functions with no configuration or plugin behind them; the
// auth-secret plugin applies them to the secrets it resolves and decides what is fatal where.
// Problems name the variable and the rule, never the value.
export const MIN_SECRET_BYTES = 32
export const MIN_SECRET_BITS = 128

// Words that people put in secrets they did not generate. A secret made only of these (plus
// digits and separators) is a known weak value; inside a longer secret they count as a few bits.
const WEAK_WORDS = [
  'secret', 'changeme', 'change', 'password', 'passwd', 'pass', 'your', 'my', 'key', 'jwt', 'token', 'test',
  'example', 'default', 'admin', 'qwerty', 'letmein', 'welcome', 'dev', 'development', 'prod', 'production',
  'staging', 'local', 'app', 'super', 'demo', 'sample', 'dummy', 'foo', 'bar', 'baz', 'abc', 'hello', 'world',
  'please', 'sign', 'signing', 'auth', 'private', 'here', 'insert', 'replace', 'todo', 'xxx', 'for', 'the', 'and',
  'of', 'to', 'is', 'new', 'real', 'very', 'long', 'strong', 'random', 'string', 'value', 'server', 'service', 'api',
  'gateway', 'agent', 'hs256', 'hmac', 'access', 'session', 'master', 'root', 'user', 'login', 'company'
].sort((a, b) => b.length - a.length)
const SEPARATORS = /[\s\-_.:/+=,;!@#*]+/g

export interface SecretCheck {
  /** Rules the secret breaks in every environment. */
  readonly errors: string[]
  /** Rules it breaks that are fatal only in staging and production. */
  readonly weak: string[]
}

/** The one secret validator. */
export function checkSecret (variable: string, value: string): SecretCheck {
  const errors: string[] = []
  const weak: string[] = []
  // A trailing newline from a secrets file is kept by the environment: the server would start, then
  // reject every token signed with the secret as others read it.
  if (value !== value.trim()) {
    errors.push(`${variable}: has leading or trailing whitespace (a newline from a file?) [rule: no-surrounding-whitespace]`)
  }
  const hex = /^(?:[0-9a-f]+|[0-9A-F]+)$/.test(value)
  const bytes = hex ? Math.floor(value.length / 2) : Buffer.byteLength(value, 'utf8')
  if (bytes < MIN_SECRET_BYTES) {
    errors.push(hex
      ? `${variable}: a hex secret needs at least ${MIN_SECRET_BYTES * 2} hex digits (${MIN_SECRET_BYTES} bytes); it has ${value.length} [rule: min-bytes]`
      : `${variable}: needs at least ${MIN_SECRET_BYTES} bytes of key material; it has ${bytes} [rule: min-bytes]`)
  }
  const period = repeatPeriod(value)
  if (period !== undefined) {
    errors.push(`${variable}: is a repeated pattern (a ${period}-character unit repeated) [rule: no-repeated-pattern]`)
  }
  const bits = Math.floor(estimateEntropyBits(value, hex))
  if (bits < MIN_SECRET_BITS) {
    errors.push(`${variable}: estimated entropy is ${bits} bits, at least ${MIN_SECRET_BITS} are required [rule: min-entropy]`)
  }
  if (isMadeOfWeakWords(value)) {
    weak.push(`${variable}: is a known weak value or made only of common words [rule: not-weak]`)
  }
  return { errors, weak }
}

/** Length of the shortest unit that repeats to form the whole string (at least twice), if any. */
function repeatPeriod (value: string): number | undefined {
  const n = value.length
  for (let p = 1; p <= n / 2; p++) {
    let repeats = true
    for (let i = p; i < n; i++) {
      if (value.charCodeAt(i) !== value.charCodeAt(i - p)) { repeats = false; break }
    }
    if (repeats) return p
  }
  return undefined
}

/** Size of the alphabet a string draws from, by the character classes it uses. */
function alphabetSize (value: string, hex: boolean): number {
  if (hex) return 16
  let size = 0
  if (/[a-z]/.test(value)) size += 26
  if (/[A-Z]/.test(value)) size += 26
  if (/[0-9]/.test(value)) size += 10
  if (/[\x20-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]/.test(value)) size += 33
  if (/[^\x20-\x7e]/.test(value)) size += 100
  return size
}

/** Length of the longest earlier substring (of at least 4 characters) that repeats at `i`. */
function echoLength (value: string, i: number): number {
  let best = 0
  for (let j = 0; j < i; j++) {
    let n = 0
    while (i + n < value.length && value.charCodeAt(j + n) === value.charCodeAt(i + n)) n++
    if (n > best) best = n
  }
  return best >= 4 ? best : 0
}

/**
 * A deliberately conservative entropy estimate. Each character is worth log2 of the alphabet the
 * string draws from (16 for hex); continuing a run or a sequence (aaa, abc, 321) is worth 1 bit; a
 * common word, or a chunk that already appeared earlier, is worth a few bits whatever its
 * length. The total is capped by the string's Shannon entropy, so a string of few distinct
 * characters cannot pass by length alone.
 */
export function estimateEntropyBits (value: string, hex = false): number {
  const perChar = Math.log2(alphabetSize(value, hex))
  const lower = value.toLowerCase()
  let bits = 0
  let previous = -1
  let step = 0
  for (let i = 0; i < value.length;) {
    const word = WEAK_WORDS.find((w) => w.length >= 4 && lower.startsWith(w, i))
    const chunk = word?.length ?? echoLength(value, i)
    if (chunk > 0) {
      bits += 6
      i += chunk
      previous = -1
      continue
    }
    const code = value.charCodeAt(i)
    const delta = previous < 0 ? Number.NaN : code - previous
    // The third character of a run (aaa) or of a sequence (abc, 321) is predictable.
    const predictable = Math.abs(delta) <= 1 && delta === step
    bits += predictable ? 1 : perChar
    step = delta
    previous = code
    i++
  }
  return Math.min(bits, shannonBits(value))
}

function shannonBits (value: string): number {
  const counts = new Map<string, number>()
  for (const ch of value) counts.set(ch, (counts.get(ch) ?? 0) + 1)
  const n = value.length
  let perChar = 0
  for (const count of counts.values()) perChar -= (count / n) * Math.log2(count / n)
  // Shannon entropy of a short random string underestimates its source; scale it to be fair to
  // a 32-character random secret while still sinking strings of a few distinct characters.
  return perChar * n * 1.5
}

/** True when the value is nothing but weak words, digits and separators. */
function isMadeOfWeakWords (value: string): boolean {
  const s = value.toLowerCase().replace(SEPARATORS, '')
  if (s === '') return true
  // canEnd[i]: s.slice(0, i) splits into weak words and digit runs.
  const canEnd = new Array<boolean>(s.length + 1).fill(false)
  canEnd[0] = true
  for (let i = 0; i < s.length; i++) {
    if (canEnd[i] !== true) continue
    let j = i
    while (j < s.length && s.charCodeAt(j) >= 48 && s.charCodeAt(j) <= 57) canEnd[++j] = true
    for (const word of WEAK_WORDS) if (s.startsWith(word, i)) canEnd[i + word.length] = true
  }
  return canEnd[s.length] === true
}

