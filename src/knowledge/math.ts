// What the calculator can evaluate, by name: its functions and constants. The demo agent reads
// the names to recognise an arithmetic question; the calculator tool evaluates with them.

export interface MathFunction {
  readonly arity: 'one' | 'many'
  readonly apply: (args: readonly number[]) => number
}

const unary = (fn: (x: number) => number): MathFunction => ({ arity: 'one', apply: (args) => fn(args[0] as number) })

// Maps, not object literals: a name like `constructor` or `__proto__` must find nothing.
export const FUNCTIONS: ReadonlyMap<string, MathFunction> = new Map([
  ['sqrt', unary(Math.sqrt)],
  ['abs', unary(Math.abs)],
  ['round', unary(Math.round)],
  ['floor', unary(Math.floor)],
  ['ceil', unary(Math.ceil)],
  ['sin', unary(Math.sin)],
  ['cos', unary(Math.cos)],
  ['tan', unary(Math.tan)],
  ['ln', unary(Math.log)],
  ['log', unary(Math.log10)],
  ['exp', unary(Math.exp)],
  ['min', { arity: 'many', apply: (args) => Math.min(...args) }],
  ['max', { arity: 'many', apply: (args) => Math.max(...args) }]
])

export const CONSTANTS: ReadonlyMap<string, number> = new Map([
  ['pi', Math.PI],
  ['π', Math.PI],
  ['e', Math.E]
])

export const FUNCTION_NAMES: readonly string[] = [...FUNCTIONS.keys()]
export const CONSTANT_NAMES: readonly string[] = [...CONSTANTS.keys()]
