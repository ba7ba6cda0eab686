import { Type } from 'typebox'
import { RunError, defineTool } from '../contracts.js'
import { CONSTANTS, FUNCTIONS, FUNCTION_NAMES } from '../knowledge/math.js'

export const MAX_EXPRESSION_LENGTH = 200
const MAX_DEPTH = 32

type Operator = '+' | '-' | '*' | '/' | '%' | '^' | '(' | ')' | ','

type Token =
  | { readonly kind: 'number', readonly value: number, readonly text: string, readonly pos: number }
  | { readonly kind: 'name', readonly name: string, readonly text: string, readonly pos: number }
  | { readonly kind: 'op', readonly op: Operator, readonly text: string, readonly pos: number }
  | { readonly kind: 'end', readonly text: '', readonly pos: number }

const OPERATOR_ALIASES: ReadonlyMap<string, Operator> = new Map([
  ['**', '^'],
  ['×', '*'],
  ['·', '*'],
  ['÷', '/'],
  ['−', '-'],
  ['+', '+'],
  ['-', '-'],
  ['*', '*'],
  ['/', '/'],
  ['%', '%'],
  ['^', '^'],
  ['(', '('],
  [')', ')'],
  [',', ',']
])


const NUMBER = /(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/y
const NAME = /[A-Za-z_π]+/y
const SPACE = /\s+/y

function badExpression (message: string): RunError {
  return new RunError('BAD_EXPRESSION', message)
}

function where (token: Token): string {
  return token.kind === 'end' ? 'at the end of the expression' : `"${token.text}" at position ${token.pos + 1}`
}

function matchAt (pattern: RegExp, text: string, pos: number): string | undefined {
  pattern.lastIndex = pos
  return pattern.exec(text)?.[0]
}

function tokenize (expression: string): Token[] {
  const tokens: Token[] = []
  let pos = 0
  while (pos < expression.length) {
    const space = matchAt(SPACE, expression, pos)
    if (space !== undefined) {
      pos += space.length
      continue
    }
    const number = matchAt(NUMBER, expression, pos)
    if (number !== undefined) {
      tokens.push({ kind: 'number', value: Number(number), text: number, pos })
      pos += number.length
      continue
    }
    const name = matchAt(NAME, expression, pos)
    if (name !== undefined) {
      const lower = name.toLowerCase()
      tokens.push(lower === 'x' ? { kind: 'op', op: '*', text: name, pos } : { kind: 'name', name: lower, text: name, pos })
      pos += name.length
      continue
    }
    const two = expression.slice(pos, pos + 2)
    const text = OPERATOR_ALIASES.has(two) ? two : expression.charAt(pos)
    const op = OPERATOR_ALIASES.get(text)
    if (op === undefined) {
      const char = String.fromCodePoint(expression.codePointAt(pos) as number)
      throw badExpression(`Unexpected character "${char}" at position ${pos + 1}`)
    }
    tokens.push({ kind: 'op', op, text, pos })
    pos += text.length
  }
  tokens.push({ kind: 'end', text: '', pos })
  return tokens
}

function show (value: number): string {
  return String(roundSignificant(value, 6))
}

function finite (value: number, what: string): number {
  if (Number.isNaN(value)) throw new RunError('NOT_FINITE', `${what} is not a real number`)
  if (!Number.isFinite(value)) throw new RunError('NOT_FINITE', `${what} is infinite or too large to represent`)
  return value
}

class Parser {
  readonly #tokens: readonly Token[]
  #index = 0
  #depth = 0

  constructor (tokens: readonly Token[]) {
    this.#tokens = tokens
  }

  parse (): number {
    const value = this.#expression()
    const next = this.#peek()
    if (next.kind !== 'end') {
      throw badExpression(next.kind === 'op' && next.op === ')'
        ? `Unmatched ${where(next)}`
        : `Unexpected ${where(next)}: expected an operator`)
    }
    return value
  }

  #peek (): Token {
    return this.#tokens[this.#index] as Token
  }

  #next (): Token {
    const token = this.#peek()
    if (token.kind !== 'end') this.#index++
    return token
  }

  #isOp (...ops: Operator[]): Operator | undefined {
    const token = this.#peek()
    return token.kind === 'op' && ops.includes(token.op) ? token.op : undefined
  }

  #expect (op: Operator, context: string): void {
    const token = this.#next()
    if (token.kind !== 'op' || token.op !== op) throw badExpression(`Expected "${op}" ${context}, found ${where(token)}`)
  }

  #nested<T> (parse: () => T): T {
    if (++this.#depth > MAX_DEPTH) throw badExpression(`The expression is nested too deeply (more than ${MAX_DEPTH} levels)`)
    try {
      return parse()
    } finally {
      this.#depth--
    }
  }

  #expression (): number {
    let value = this.#term()
    for (let op = this.#isOp('+', '-'); op !== undefined; op = this.#isOp('+', '-')) {
      this.#next()
      const right = this.#term()
      value = finite(op === '+' ? value + right : value - right, 'The result')
    }
    return value
  }

  #term (): number {
    let value = this.#unary()
    for (let op = this.#isOp('*', '/', '%'); op !== undefined; op = this.#isOp('*', '/', '%')) {
      this.#next()
      const right = this.#unary()
      if (op !== '*' && right === 0) {
        throw new RunError('DIVISION_BY_ZERO', op === '/' ? 'Cannot divide by zero' : 'Cannot take the remainder of a division by zero')
      }
      value = finite(op === '*' ? value * right : op === '/' ? value / right : value % right, 'The result')
    }
    return value
  }

  #unary (): number {
    const sign = this.#isOp('+', '-')
    if (sign === undefined) return this.#power()
    this.#next()
    return this.#nested(() => {
      const value = this.#unary()
      return sign === '-' ? -value : value
    })
  }

  #power (): number {
    const base = this.#primary()
    if (this.#isOp('^') === undefined) return base
    this.#next()
    // Right-associative, and the exponent may carry its own sign: 2^-1, 2^3^2 = 2^9.
    const exponent = this.#nested(() => this.#unary())
    return finite(base ** exponent, `(${show(base)})^(${show(exponent)})`)
  }

  #primary (): number {
    const token = this.#next()
    if (token.kind === 'number') return finite(token.value, `The number ${token.text}`)
    if (token.kind === 'op' && token.op === '(') {
      const value = this.#nested(() => this.#expression())
      this.#expect(')', `to close the "(" at position ${token.pos + 1}`)
      return value
    }
    if (token.kind === 'name') return this.#name(token.name, token)
    if (token.kind === 'end') throw badExpression('Unexpected end of the expression: expected a number, a name or "("')
    throw badExpression(`Unexpected ${where(token)}: expected a number, a name or "("`)
  }

  #name (name: string, token: Token): number {
    const constant = CONSTANTS.get(name)
    if (constant !== undefined) return constant
    const fn = FUNCTIONS.get(name)
    if (fn === undefined) {
      throw badExpression(`Unknown name ${where(token)}; known functions: ${FUNCTION_NAMES.join(', ')}; constants: pi, e`)
    }
    this.#expect('(', `after ${name}`)
    const args = this.#nested(() => {
      const list = [this.#expression()]
      while (this.#isOp(',') !== undefined) {
        this.#next()
        list.push(this.#expression())
      }
      return list
    })
    this.#expect(')', `to close ${name}(`)
    if (fn.arity === 'one' && args.length !== 1) {
      throw badExpression(`${name}() takes exactly one argument, got ${args.length}`)
    }
    return finite(fn.apply(args), `${name}(${args.map(show).join(', ')})`)
  }
}

/** Evaluates an arithmetic expression exactly as JavaScript numbers would, without ever running code. */
export function evaluate (expression: string): number {
  if (expression.length > MAX_EXPRESSION_LENGTH) {
    throw badExpression(`The expression is too long (${expression.length} characters, at most ${MAX_EXPRESSION_LENGTH})`)
  }
  if (expression.trim() === '') throw badExpression('The expression is empty')
  return new Parser(tokenize(expression)).parse()
}

/** Rounds away float noise (0.1 + 0.2 → 0.3) and normalises -0 to 0. */
export function roundSignificant (value: number, digits: number): number {
  const rounded = Number(value.toPrecision(digits))
  return rounded === 0 ? 0 : rounded
}

export const calculator = defineTool({
  name: 'calculator',
  description: 'Evaluates an arithmetic expression: + - * / % ^, parentheses, sqrt, abs, round, floor, ceil, ' +
    'sin, cos, tan (radians), ln, log (base 10), exp, min, max and the constants pi and e.',
  parameters: Type.Object({
    expression: Type.String({
      minLength: 1,
      maxLength: MAX_EXPRESSION_LENGTH,
      description: 'The expression to evaluate, e.g. "12 * (3 + 4)" or "sqrt(2) ^ 2".'
    })
  }, { additionalProperties: false }),
  execute ({ expression }) {
    return { expression, value: roundSignificant(evaluate(expression), 12) }
  }
})
