import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises'
import { AgentInvalidError } from '../errors.js'
import type { Agent, AgentRun, ToolOutcome } from '../contracts.js'
import { CONSTANT_NAMES, FUNCTION_NAMES } from '../tools/calculator.js'
import { findFact } from '../tools/facts.js'
import { MAX_TEXT_LENGTH } from '../tools/text-stats.js'
import { MAX_UNIT_NAME_LENGTH, findUnit } from '../tools/units.js'

export interface DemoAgentOptions {
  /** Pause between steps, so a person can watch the run; answer chunks wait a quarter of it. */
  readonly stepDelayMs: number
}

export interface ConversionRequest {
  readonly value: number
  readonly from: string
  readonly to: string
}

interface PlannedCall {
  readonly tool: string
  readonly args: Readonly<Record<string, unknown>>
  /** What was recognised, for the first thought. */
  readonly seen: string
  readonly why: string
  readonly label: string
  readonly read: (result: unknown) => Reading
}

interface Reading {
  readonly thought: string
  readonly sentence: string
}

// ---------------------------------------------------------------------------------------------
// Recognising arithmetic

type MathKind = 'number' | 'constant' | 'function' | 'binary' | 'sign' | 'open' | 'close' | 'comma' | 'space' | 'other'

const WORD_OPERATORS: ReadonlyArray<readonly [RegExp, string]> = [
  [/\bplus\b/gi, '+'],
  [/\bminus\b/gi, '-'],
  [/\b(?:times|multiplied by)\b/gi, '*'],
  [/\bdivided by\b/gi, '/'],
  [/\bto the power of\b/gi, '^']
]
const MATH_LEXEME = /(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?|[\p{L}_]+|\s+|[\s\S]/gu
const FUNCTIONS = new Set(FUNCTION_NAMES)
const CONSTANTS = new Set(CONSTANT_NAMES)
const BINARY_ONLY = new Set(['*', '/', '%', '^', '×', '÷', '·', 'x'])
const SIGNS = new Set(['+', '-', '−'])
const PUNCTUATION: ReadonlyMap<string, MathKind> = new Map([['(', 'open'], [')', 'close'], [',', 'comma']])
const LEADING_NOISE: ReadonlySet<MathKind> = new Set(['space', 'binary', 'comma', 'close'])
const TRAILING_NOISE: ReadonlySet<MathKind> = new Set(['space', 'binary', 'sign', 'comma', 'open', 'function'])

function classify (text: string): MathKind {
  const first = text.charCodeAt(0)
  if ((first >= 48 && first <= 57) || first === 46) return 'number'
  if (/^\s/.test(text)) return 'space'
  const lower = text.toLowerCase()
  if (CONSTANTS.has(lower)) return 'constant'
  if (FUNCTIONS.has(lower)) return 'function'
  if (BINARY_ONLY.has(lower)) return 'binary'
  if (SIGNS.has(text)) return 'sign'
  return PUNCTUATION.get(text) ?? 'other'
}

/**
 * Drops what cannot start or end an expression, and unbalanced brackets at either end, from
 * kinds[start, end): one pass with running bracket counts, so a run of brackets costs its length.
 */
function trimRun (kinds: readonly MathKind[], start: number, end: number): readonly [number, number] {
  let open = 0
  let close = 0
  for (let i = start; i < end; i++) {
    if (kinds[i] === 'open') open++
    else if (kinds[i] === 'close') close++
  }
  while (start < end) {
    const first = kinds[start] as MathKind
    const last = kinds[end - 1] as MathKind
    if (LEADING_NOISE.has(first) || (first === 'open' && open > close)) {
      start++
      if (first === 'open') open--
      else if (first === 'close') close--
    } else if (TRAILING_NOISE.has(last) || (last === 'close' && close > open)) {
      end--
      if (last === 'open') open--
      else if (last === 'close') close--
    } else {
      break
    }
  }
  return [start, end]
}

function looksLikeMath (kinds: readonly MathKind[], start: number, end: number): boolean {
  let hasOperand = false
  let hasOperator = false
  let previous: MathKind | undefined
  let pendingFunction = false
  for (let i = start; i < end; i++) {
    const kind = kinds[i] as MathKind
    if (kind === 'space') continue
    if (pendingFunction && kind === 'open') hasOperator = true
    pendingFunction = kind === 'function'
    if (kind === 'number' || kind === 'constant') hasOperand = true
    if ((kind === 'binary' || kind === 'sign') && (previous === 'number' || previous === 'constant' || previous === 'close')) hasOperator = true
    previous = kind
  }
  return hasOperand && hasOperator
}

/** The longest part of a message that reads as arithmetic with at least one operator or function. */
export function findExpression (message: string): string | undefined {
  let text = message
  for (const [words, symbol] of WORD_OPERATORS) text = text.replace(words, symbol)
  // The lexemes cover the text end to end, so offsets are running sums of their lengths.
  const parts = text.match(MATH_LEXEME) ?? []
  const kinds = parts.map(classify)
  const offsets = [0]
  for (const part of parts) offsets.push((offsets.at(-1) as number) + part.length)
  let best: string | undefined
  let runStart = 0
  for (let i = 0; i <= kinds.length; i++) {
    if (i < kinds.length && kinds[i] !== 'other') continue
    const [start, end] = trimRun(kinds, runStart, i)
    const length = (offsets[end] as number) - (offsets[start] as number)
    if (length > (best?.length ?? 0) && looksLikeMath(kinds, start, end)) best = text.slice(offsets[start], offsets[end])
    runStart = i + 1
  }
  return best
}

// ---------------------------------------------------------------------------------------------
// Recognising a unit conversion

interface Word {
  readonly text: string
  readonly lower: string
  readonly isNumber: boolean
}

interface UnitMatch {
  readonly text: string
  readonly next: number
}

const CONVERSION_LEXEME = /-?\d+(?:\.\d+)?|[°º]?[\p{L}][\p{L}/]*|\S/gu
const CONNECTORS = new Set(['to', 'in', 'into', 'as'])
const FILLERS = new Set(['are', 'is', 'in', 'there', 'make', 'makes', 'equal', 'equals', 'does', 'do', 'fit', 'of'])
const ONE = new Set(['a', 'an', 'one'])

const UNIT_START = /^[°º\p{L}]/u

interface Words {
  readonly list: readonly Word[]
  /** Unit look-ups already made: a message that repeats itself pays for each phrase once. */
  readonly known: Map<string, boolean>
}

function isUnit ({ known }: Words, text: string): boolean {
  let found = known.get(text)
  if (found === undefined) {
    found = text.length <= MAX_UNIT_NAME_LENGTH && findUnit(text) !== undefined
    known.set(text, found)
  }
  return found
}

function unitAt (sentence: Words, start: number, lenient = false): UnitMatch | undefined {
  const words = sentence.list
  for (let length = 3; length >= 1; length--) {
    if (start + length > words.length) continue
    const parts = words.slice(start, start + length)
    if (parts.some((part) => part.isNumber || !UNIT_START.test(part.text))) continue
    const text = parts.map((part) => part.text).join(' ')
    if (isUnit(sentence, text)) return { text, next: start + length }
  }
  // After an explicit "convert", an unknown unit is still worth a call: the converter explains it.
  const word = words[start]
  return lenient && word !== undefined && /^\p{L}+$/u.test(word.text) ? { text: word.text, next: start + 1 } : undefined
}

function howMany (sentence: Words): ConversionRequest | undefined {
  const words = sentence.list
  for (let i = 0; i + 2 < words.length; i++) {
    if (words[i]?.lower !== 'how' || !['many', 'much'].includes(words[i + 1]?.lower ?? '')) continue
    const target = unitAt(sentence, i + 2)
    if (target === undefined) continue
    for (let j = target.next; j < words.length; j++) {
      const word = words[j] as Word
      const amount = word.isNumber ? Number(word.text) : ONE.has(word.lower) ? 1 : undefined
      const source = amount === undefined ? undefined : unitAt(sentence, j + 1)
      if (amount !== undefined && source !== undefined) return { value: amount, from: source.text, to: target.text }
      if (!FILLERS.has(word.lower)) break
    }
  }
  return undefined
}

function valueInUnit (sentence: Words): ConversionRequest | undefined {
  const words = sentence.list
  const lenient = words.some((word) => word.lower === 'convert')
  for (let i = 0; i < words.length; i++) {
    if (words[i]?.isNumber !== true) continue
    const source = unitAt(sentence, i + 1, lenient)
    if (source === undefined || !CONNECTORS.has(words[source.next]?.lower ?? '')) continue
    const target = unitAt(sentence, source.next + 1, lenient)
    if (target !== undefined) return { value: Number(words[i]?.text), from: source.text, to: target.text }
  }
  return undefined
}

/** "5 km in miles", "convert 100 F to C", "how many ounces in 2 kg": units must be known unless "convert" is said. */
export function findConversion (message: string): ConversionRequest | undefined {
  const list = (message.match(CONVERSION_LEXEME) ?? []).map((text) => ({ text, lower: text.toLowerCase(), isNumber: /\d/.test(text) }))
  const sentence: Words = { list, known: new Map() }
  return howMany(sentence) ?? valueInUnit(sentence)
}

// ---------------------------------------------------------------------------------------------
// Planning, reading results, answering

function field (result: unknown, name: string): unknown {
  return typeof result === 'object' && result !== null ? (result as Record<string, unknown>)[name] : undefined
}

function plural (count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`
}

function sentence (text: string): string {
  return /[.!?…]$/.test(text) ? text : `${text}.`
}

function excerpt (text: string, max = 80): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

function calculatorCall (expression: string): PlannedCall {
  return {
    tool: 'calculator',
    args: { expression },
    label: 'calculator',
    seen: `arithmetic (${expression})`,
    why: `Exact arithmetic is a job for the calculator rather than a guess, so I am evaluating ${expression}.`,
    read (result) {
      const value = field(result, 'value')
      return { thought: `The calculator says ${expression} = ${String(value)}.`, sentence: `${expression} = ${String(value)}.` }
    }
  }
}

function conversionCall ({ value, from, to }: ConversionRequest): PlannedCall {
  return {
    tool: 'convert_units',
    args: { value, from, to },
    label: 'unit converter',
    seen: `a unit conversion (${value} ${from} to ${to})`,
    why: `The unit converter knows the exact factors, so I am converting ${value} ${from} to ${to} with it.`,
    read (result) {
      const text = `${String(field(result, 'value'))} ${String(field(result, 'from'))} = ${String(field(result, 'result'))} ${String(field(result, 'to'))}`
      return { thought: `Converted: ${text}.`, sentence: `${text}.` }
    }
  }
}

function factCall (query: string, topic: string): PlannedCall {
  return {
    tool: 'lookup_fact',
    args: { query },
    label: 'fact table',
    seen: `a question about ${topic.toLowerCase()}`,
    why: `Facts should come from a reference, not from memory: checking the built-in table for ${topic.toLowerCase()}.`,
    read (result) {
      if (field(result, 'found') === true) {
        return {
          thought: `The table has an entry on ${String(field(result, 'topic')).toLowerCase()}.`,
          sentence: sentence(String(field(result, 'fact')))
        }
      }
      const suggestions = field(result, 'suggestions')
      const topics = Array.isArray(suggestions) ? suggestions.map(String).join(', ') : 'other topics'
      return {
        thought: 'The table has no entry for that after all.',
        sentence: `My reference table has nothing on that; it does cover ${topics}.`
      }
    }
  }
}

function textStatsCall (text: string): PlannedCall {
  return {
    tool: 'text_stats',
    args: { text },
    label: 'text analyser',
    seen: 'no calculation, unit conversion or question my fact table covers',
    why: 'With nothing to calculate, convert or look up, I am analysing the message itself: its words, sentences and most frequent words.',
    read (result) {
      const words = Number(field(result, 'words'))
      const counts = `${plural(words, 'word')}, ${plural(Number(field(result, 'characters')), 'character')} and ${plural(Number(field(result, 'sentences')), 'sentence')}`
      const top = field(result, 'topWords')
      const frequent = Array.isArray(top) && top.length > 0
        ? ` The most frequent ${top.length === 1 ? 'word is' : 'words are'} ${top.map((entry) => `"${String(field(entry, 'word'))}" (${String(field(entry, 'count'))})`).join(', ')}.`
        : ''
      return {
        thought: `The message has ${counts}.`,
        sentence: words === 0
          ? 'Your message has no words in it, so there is nothing to calculate, convert or look up.'
          : `I found nothing to calculate, convert or look up, but here is your message in numbers: it has ${counts}.${frequent}`
      }
    }
  }
}

function plan (message: string): PlannedCall[] {
  const calls: PlannedCall[] = []
  const expression = findExpression(message)
  if (expression !== undefined) calls.push(calculatorCall(expression))
  const conversion = findConversion(message)
  if (conversion !== undefined) calls.push(conversionCall(conversion))
  const query = message.trim().slice(0, 200)
  const fact = findFact(query)
  if (fact !== undefined) calls.push(factCall(query, fact.topic))
  if (calls.length === 0) calls.push(textStatsCall(message.slice(0, MAX_TEXT_LENGTH)))
  return calls
}

function describe (call: PlannedCall, outcome: ToolOutcome): Reading {
  if (outcome.status === 'success') return call.read(outcome.result)
  const problem = outcome.status === 'timeout'
    ? `The ${call.label} did not answer in time`
    : outcome.status === 'cancelled'
      ? `The ${call.label} call was cancelled`
      : `The ${call.label} could not do it: ${outcome.error?.message ?? 'it failed without saying why'}`
  const brief = problem.split(/(?<=[.!?])\s/)[0] ?? problem
  return {
    thought: `${sentence(brief)} I will say so rather than guess.`,
    sentence: outcome.status === 'error' && call.tool === 'calculator'
      ? `I could not evaluate ${String(call.args.expression)}: ${sentence(outcome.error?.message ?? 'the calculator failed')}`
      : sentence(problem)
  }
}

function join (items: readonly string[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items.at(-1) ?? ''}`
}

/** Splits the answer into chunks of a few words that concatenate back to it exactly. */
function chunks (answer: string): string[] {
  return answer.match(/\s*\S+(?:\s+\S+){0,2}\s*/g) ?? []
}

async function pause (ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false
  try {
    await (ms > 0 ? sleep(ms, undefined, { signal }) : nextTurn(undefined, { signal }))
  } catch {
    return false
  }
  return !signal.aborted
}

/** The built-in agent: recognises arithmetic, unit conversions and fact questions, and shows its work. */
export function createDemoAgent (options: DemoAgentOptions): Agent {
  const { stepDelayMs } = options
  if (!Number.isFinite(stepDelayMs) || stepDelayMs < 0) {
    throw new AgentInvalidError('the demo agent\'s stepDelayMs must be a finite number >= 0')
  }
  const chunkDelayMs = Math.round(stepDelayMs / 4)

  return async function demoAgent (run: AgentRun): Promise<unknown> {
    const { signal } = run
    const step = (): Promise<boolean> => pause(stepDelayMs, signal)
    const message = typeof run.input.message === 'string' ? run.input.message : ''
    const calls = plan(message)
    // 3–6 thoughts whatever the plan: with three tools, the first thought also gives the first reason.
    const compact = calls.length >= 3
    const asked = message.trim() === '' ? 'The message is empty' : `The message reads "${excerpt(message)}"`
    const intro = `${asked}: I see ${join(calls.map((call) => call.seen))}.`

    if (!await step()) return
    run.think(compact ? `${intro} ${calls[0]?.why ?? ''}` : intro)
    const sentences: string[] = []
    for (const [i, call] of calls.entries()) {
      if (!(compact && i === 0)) {
        if (!await step()) return
        run.think(call.why)
      }
      if (!await step()) return
      const outcome = await run.tools.call(call.tool, call.args)
      if (signal.aborted) return
      const reading = describe(call, outcome)
      sentences.push(reading.sentence)
      if (!await step()) return
      run.think(reading.thought)
    }
    if (!compact) {
      if (!await step()) return
      run.think(calls.length === 1 ? 'That settles it; writing the answer.' : 'I have every piece; putting the answer together.')
    }
    const answer = sentences.join(' ')
    for (const chunk of chunks(answer)) {
      if (!await pause(chunkDelayMs, signal)) return
      run.say(chunk)
    }
    return { answer }
  }
}
