import t from 'tap'
import { Compile } from 'typebox/compile'
import { RunError, type Tool, type ToolContext } from '../../src/contracts.js'
import { calculator, evaluate, roundSignificant } from '../../src/tools/calculator.js'
import { FACTS, findFact, lookupFact } from '../../src/knowledge/facts.js'
import { findUnit } from '../../src/knowledge/units.js'
import { factLookup } from '../../src/tools/facts.js'
import { demoTools, calculator as reCalculator, factLookup as reFactLookup, textStats as reTextStats, unitConverter as reUnitConverter } from '../../src/tools/index.js'
import { analyzeText, textStats } from '../../src/tools/text-stats.js'
import { convert, unitConverter } from '../../src/tools/units.js'

const ctx: ToolContext = {
  context: Object.freeze({
    userId: 'user-1',
    scopes: [],
    requestId: 'req-1',
    connectionId: 'conn-1',
    runId: 'run-1',
    threadId: 'thread-1',
    agent: 'demo'
  }),
  signal: new AbortController().signal,
  progress: () => {}
}

function valid (tool: Tool, args: unknown): boolean {
  return Compile(tool.parameters).Check(args)
}

/** The code and message of what `fn` throws, or undefined when it does not throw. */
function failure (fn: () => unknown): { code: string, message: string } | undefined {
  try {
    fn()
  } catch (err) {
    if (err instanceof RunError) return { code: err.code, message: err.message }
    throw err
  }
  return undefined
}

t.test('evaluate: numbers, precedence and associativity', async (t) => {
  const cases: Array<[string, number]> = [
    ['42', 42],
    ['3.25', 3.25],
    ['.5', 0.5],
    ['1e3', 1000],
    ['2.5E-2', 0.025],
    ['1 + 2 * 3', 7],
    ['(1 + 2) * 3', 9],
    ['12 * (3 + 4)', 84],
    ['10 - 4 - 3', 3],
    ['100 / 10 / 5', 2],
    ['2 * 3 % 4', 2],
    ['17 % 5', 2],
    ['2 ^ 3 ^ 2', 512],
    ['(2 ^ 3) ^ 2', 64],
    ['2 ** 10', 1024],
    ['2 ^ -1', 0.5],
    ['1 + 2 ^ 2 * 3', 13],
    ['  7  ', 7]
  ]
  for (const [expression, expected] of cases) t.equal(evaluate(expression), expected, expression)
})

t.test('evaluate: unary signs bind looser than ^ and tighter than * /', async (t) => {
  t.equal(evaluate('-3'), -3)
  t.equal(evaluate('+3'), 3)
  t.equal(evaluate('--3'), 3)
  t.equal(evaluate('-2 ^ 2'), -4, 'like mathematics: -(2^2)')
  t.equal(evaluate('(-2) ^ 2'), 4)
  t.equal(evaluate('-2 * -3'), 6)
  t.equal(evaluate('4 - -2'), 6)
  t.equal(evaluate('−5 + 1'), -4, 'the Unicode minus sign')
})

t.test('evaluate: x, × and ÷ are multiplication and division', async (t) => {
  t.equal(evaluate('3 x 4'), 12)
  t.equal(evaluate('3X4'), 12)
  t.equal(evaluate('2x3'), 6)
  t.equal(evaluate('6 × 7'), 42)
  t.equal(evaluate('8 ÷ 2 × 3'), 12, 'left to right')
})

t.test('evaluate: functions and constants', async (t) => {
  t.equal(evaluate('sqrt(16)'), 4)
  t.equal(evaluate('abs(-7.5)'), 7.5)
  t.equal(evaluate('round(2.5)'), 3)
  t.equal(evaluate('floor(-2.5)'), -3)
  t.equal(evaluate('ceil(2.1)'), 3)
  t.equal(evaluate('sin(0)'), 0)
  t.equal(evaluate('cos(pi)'), -1)
  t.equal(roundSignificant(evaluate('tan(pi / 4)'), 12), 1)
  t.equal(evaluate('ln(e)'), 1)
  t.equal(evaluate('log(1000)'), 3)
  t.equal(evaluate('exp(0)'), 1)
  t.equal(evaluate('min(4, 2, 8)'), 2)
  t.equal(evaluate('max(4, 2 * 5, 8)'), 10)
  t.equal(evaluate('max(3)'), 3)
  t.equal(evaluate('pi'), Math.PI)
  t.equal(evaluate('PI * 2'), 2 * Math.PI, 'names are case-insensitive')
  t.equal(evaluate('π'), Math.PI)
  t.equal(evaluate('e'), Math.E)
  t.equal(evaluate('sqrt(3 ^ 2 + 4 ^ 2) + max(1, min(5, 9))'), 10)
})

t.test('evaluate: syntax errors are BAD_EXPRESSION and say where', async (t) => {
  t.same(failure(() => evaluate('2 + * 3')), { code: 'BAD_EXPRESSION', message: 'Unexpected "*" at position 5: expected a number, a name or "("' })
  t.same(failure(() => evaluate('1 2')), { code: 'BAD_EXPRESSION', message: 'Unexpected "2" at position 3: expected an operator' })
  t.same(failure(() => evaluate('(1 + 2')), { code: 'BAD_EXPRESSION', message: 'Expected ")" to close the "(" at position 1, found at the end of the expression' })
  t.same(failure(() => evaluate('1 + 2)')), { code: 'BAD_EXPRESSION', message: 'Unmatched ")" at position 6' })
  t.same(failure(() => evaluate('3 +')), { code: 'BAD_EXPRESSION', message: 'Unexpected end of the expression: expected a number, a name or "("' })
  t.same(failure(() => evaluate('2 $ 3')), { code: 'BAD_EXPRESSION', message: 'Unexpected character "$" at position 3' })
  t.same(failure(() => evaluate('sqrt 4')), { code: 'BAD_EXPRESSION', message: 'Expected "(" after sqrt, found "4" at position 6' })
  t.same(failure(() => evaluate('sqrt(1, 2)')), { code: 'BAD_EXPRESSION', message: 'sqrt() takes exactly one argument, got 2' })
  t.same(failure(() => evaluate('max()')), { code: 'BAD_EXPRESSION', message: 'Unexpected ")" at position 5: expected a number, a name or "("' })
  t.same(failure(() => evaluate('')), { code: 'BAD_EXPRESSION', message: 'The expression is empty' })
  t.same(failure(() => evaluate('   ')), { code: 'BAD_EXPRESSION', message: 'The expression is empty' })
  t.same(failure(() => evaluate('1.2.3')), { code: 'BAD_EXPRESSION', message: 'Unexpected ".3" at position 4: expected an operator' })
  t.match(failure(() => evaluate('foo(1)')), { code: 'BAD_EXPRESSION', message: /^Unknown name "foo" at position 1; known functions: sqrt, abs/ })
})

t.test('evaluate: no way out to JavaScript', async (t) => {
  const attempts = [
    'constructor', '__proto__', 'this', 'process.exit(1)', '1;2', 'toString()', 'valueOf', 'hasOwnProperty(1)',
    'globalThis', 'Math.PI', 'eval("1")', 'Function("return 1")()', '[1]', '{}', 'a = 1', '`1`', "'1'", '1 && 2', '1 ? 2 : 3', 'require("fs")'
  ]
  for (const expression of attempts) {
    t.equal(failure(() => evaluate(expression))?.code, 'BAD_EXPRESSION', expression)
  }
})

t.test('evaluate: the work is bounded', async (t) => {
  t.equal(evaluate('1+'.repeat(99) + '1'), 100, '199 characters are fine')
  t.same(failure(() => evaluate('1+'.repeat(100) + '1')), {
    code: 'BAD_EXPRESSION',
    message: 'The expression is too long (201 characters, at most 200)'
  })
  t.equal(evaluate('('.repeat(31) + '1' + ')'.repeat(31)), 1, '31 nested parentheses are fine')
  t.same(failure(() => evaluate('('.repeat(40) + '1' + ')'.repeat(40))), {
    code: 'BAD_EXPRESSION',
    message: 'The expression is nested too deeply (more than 32 levels)'
  })
  t.equal(failure(() => evaluate('-'.repeat(60) + '1'))?.code, 'BAD_EXPRESSION', 'a chain of signs is nesting too')
  t.equal(failure(() => evaluate('2^'.repeat(40) + '1'))?.code, 'BAD_EXPRESSION', 'so is a tower of powers')
})

t.test('evaluate: division by zero and results that are not finite', async (t) => {
  t.same(failure(() => evaluate('1 / 0')), { code: 'DIVISION_BY_ZERO', message: 'Cannot divide by zero' })
  t.same(failure(() => evaluate('5 / (2 - 2)')), { code: 'DIVISION_BY_ZERO', message: 'Cannot divide by zero' })
  t.same(failure(() => evaluate('5 % 0')), { code: 'DIVISION_BY_ZERO', message: 'Cannot take the remainder of a division by zero' })
  t.same(failure(() => evaluate('sqrt(-1)')), { code: 'NOT_FINITE', message: 'sqrt(-1) is not a real number' })
  t.same(failure(() => evaluate('ln(0)')), { code: 'NOT_FINITE', message: 'ln(0) is infinite or too large to represent' })
  t.same(failure(() => evaluate('(-8) ^ (1 / 3)')), { code: 'NOT_FINITE', message: '(-8)^(0.333333) is not a real number' })
  t.same(failure(() => evaluate('1e308 * 10')), { code: 'NOT_FINITE', message: 'The result is infinite or too large to represent' })
  t.same(failure(() => evaluate('1e400')), { code: 'NOT_FINITE', message: 'The number 1e400 is infinite or too large to represent' })
  t.equal(failure(() => evaluate('10 ^ 400'))?.code, 'NOT_FINITE')
  t.equal(failure(() => evaluate('exp(1000)'))?.code, 'NOT_FINITE')
})

t.test('roundSignificant hides float noise and negative zero', async (t) => {
  t.equal(roundSignificant(0.1 + 0.2, 12), 0.3)
  t.equal(roundSignificant(1 / 3, 12), 0.333333333333)
  t.equal(roundSignificant(123456789.1234567, 10), 123456789.1)
  t.ok(Object.is(roundSignificant(-0, 12), 0), '-0 becomes 0')
  t.ok(Object.is(roundSignificant(-1e-20 * 0, 12), 0))
})

t.test('calculator tool: schema and execute', async (t) => {
  t.equal(calculator.name, 'calculator')
  t.ok(valid(calculator, { expression: '1 + 1' }))
  t.notOk(valid(calculator, { expression: '' }), 'empty')
  t.notOk(valid(calculator, { expression: 'x'.repeat(201) }), 'too long')
  t.notOk(valid(calculator, { expression: 1 }), 'not a string')
  t.notOk(valid(calculator, { expression: '1', extra: true }), 'no additional properties')
  t.notOk(valid(calculator, {}), 'expression is required')
  t.same(await calculator.execute({ expression: '0.1 + 0.2' }, ctx), { expression: '0.1 + 0.2', value: 0.3 })
  t.same(await calculator.execute({ expression: '12 * (3 + 4)' }, ctx), { expression: '12 * (3 + 4)', value: 84 })
  t.same(await calculator.execute({ expression: 'sqrt(2) ^ 2' }, ctx), { expression: 'sqrt(2) ^ 2', value: 2 })
  t.throws(() => calculator.execute({ expression: '1 / 0' }, ctx), { code: 'DIVISION_BY_ZERO', name: 'RunError' })
})

t.test('convert: every family', async (t) => {
  const cases: Array<[number, string, string, number, string, string]> = [
    [5, 'km', 'miles', 3.106855961, 'km', 'mi'],
    [1, 'mi', 'ft', 5280, 'mi', 'ft'],
    [12, 'inches', 'cm', 30.48, 'in', 'cm'],
    [3, 'yards', 'feet', 9, 'yd', 'ft'],
    [1, 'nautical mile', 'm', 1852, 'nmi', 'm'],
    [2500, 'mm', 'metres', 2.5, 'mm', 'm'],
    [2, 'kg', 'ounces', 70.5479239, 'kg', 'oz'],
    [1, 'lb', 'g', 453.59237, 'lb', 'g'],
    [1, 'stone', 'pounds', 14, 'st', 'lb'],
    [1500, 'mg', 'grams', 1.5, 'mg', 'g'],
    [1, 'tonne', 'kilograms', 1000, 't', 'kg'],
    [2, 'hours', 'minutes', 120, 'h', 'min'],
    [1, 'week', 'days', 7, 'week', 'day'],
    [90, 'seconds', 'ms', 90_000, 's', 'ms'],
    [1, 'gallon', 'litres', 3.785411784, 'gal', 'l'],
    [1, 'cup', 'tbsp', 16, 'cup', 'tbsp'],
    [1, 'tablespoon', 'teaspoons', 3, 'tbsp', 'tsp'],
    [2, 'pints', 'quarts', 1, 'pt', 'qt'],
    [250, 'ml', 'l', 0.25, 'ml', 'l'],
    [1, 'fl oz', 'ml', 29.57352956, 'fl oz', 'ml'],
    [100, 'km/h', 'mph', 62.13711922, 'km/h', 'mph'],
    [10, 'm/s', 'km/h', 36, 'm/s', 'km/h'],
    [1, 'knot', 'km/h', 1.852, 'kn', 'km/h'],
    [60, 'miles per hour', 'kph', 96.56064, 'mph', 'km/h'],
    [1, 'GB', 'MB', 1000, 'GB', 'MB'],
    [1, 'GiB', 'MiB', 1024, 'GiB', 'MiB'],
    [1, 'KiB', 'bytes', 1024, 'KiB', 'B'],
    [1, 'TB', 'GiB', 931.3225746, 'TB', 'GiB']
  ]
  for (const [value, from, to, result, fromSymbol, toSymbol] of cases) {
    t.same(convert(value, from, to), { value, from: fromSymbol, to: toSymbol, result }, `${value} ${from} → ${to}`)
  }
})

t.test('convert: temperatures use offsets, not just factors', async (t) => {
  t.equal(convert(100, 'C', 'F').result, 212)
  t.equal(convert(0, 'celsius', 'fahrenheit').result, 32)
  t.equal(convert(-40, '°C', '°F').result, -40, 'the scales cross at -40')
  t.equal(convert(100, 'F', 'C').result, 37.77777778)
  t.equal(convert(0, 'K', 'C').result, -273.15)
  t.equal(convert(300, 'kelvin', 'celsius').result, 26.85)
  t.equal(convert(32, 'degrees fahrenheit', 'kelvin').result, 273.15)
  t.equal(convert(20, 'ºC', 'deg F').result, 68, 'the ordinal sign some keyboards type for °')
  t.same(convert(25, '° c', 'K'), { value: 25, from: '°C', to: 'K', result: 298.15 })
  t.same(failure(() => convert(-300, 'C', 'K')), { code: 'BELOW_ABSOLUTE_ZERO', message: '-300 °C is below absolute zero' })
})

t.test('convert: round trips return the starting value', async (t) => {
  const pairs: Array<[string, string]> = [['km', 'mi'], ['lb', 'kg'], ['F', 'C'], ['K', 'F'], ['gal', 'ml'], ['mph', 'kn'], ['MiB', 'KB'], ['week', 'ms']]
  for (const [a, b] of pairs) {
    for (const value of [0, 1, 37.5, -12.25, 123456]) {
      if (a === 'K' && value < 0) continue
      const back = convert(convert(value, a, b).result, b, a).result
      t.ok(Math.abs(back - value) <= 1e-7 * Math.max(1, Math.abs(value)), `${value} ${a} → ${b} → ${a} gives ${back}`)
    }
  }
})

t.test('convert: names are case-insensitive, long or short, singular or plural', async (t) => {
  for (const name of ['km', 'KM', 'Km', 'kilometer', 'Kilometers', 'kilometre', 'kilometres', 'kms']) {
    t.equal(findUnit(name)?.symbol, 'km', name)
  }
  t.equal(findUnit('Feet')?.symbol, 'ft')
  t.equal(findUnit('inches')?.symbol, 'in')
  t.equal(findUnit('LBS')?.symbol, 'lb')
  t.equal(findUnit('Hours')?.symbol, 'h')
  t.equal(findUnit('hrs')?.symbol, 'h')
  t.equal(findUnit('ms')?.symbol, 'ms', 'ms is milliseconds, not metres')
  t.equal(findUnit('fluid ounces')?.symbol, 'fl oz')
  t.equal(findUnit('MB')?.family, 'data')
  t.equal(findUnit('°F')?.family, 'temperature')
  t.equal(findUnit('furlong'), undefined)
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', '']) t.equal(findUnit(name), undefined, `"${name}"`)
})

t.test('convert: unknown, incompatible and non-finite', async (t) => {
  const unknown = failure(() => convert(1, 'furlongs', 'm'))
  t.equal(unknown?.code, 'UNKNOWN_UNIT')
  t.match(unknown?.message, /^Unknown unit "furlongs"\. Supported: length \(mm, cm, m, km, in, ft, yd, mi, nmi\); mass \(/)
  for (const family of ['length', 'mass', 'temperature', 'time', 'volume', 'speed', 'data']) {
    t.match(unknown?.message, new RegExp(`\\b${family} \\(`), `the message lists ${family}`)
  }
  t.equal(failure(() => convert(1, 'm', 'parsecs'))?.code, 'UNKNOWN_UNIT', 'the target unit is checked too')
  t.same(failure(() => convert(1, 'km', 'kg')), { code: 'INCOMPATIBLE_UNITS', message: 'Cannot convert km (length) to kg (mass)' })
  t.same(failure(() => convert(1, 'celsius', 'hours')), { code: 'INCOMPATIBLE_UNITS', message: 'Cannot convert °C (temperature) to h (time)' })
  t.same(failure(() => convert(Number.NaN, 'km', 'm')), { code: 'NOT_FINITE', message: 'The value to convert must be a finite number' })
  t.same(failure(() => convert(1e308, 'TB', 'B')), { code: 'NOT_FINITE', message: '1e+308 TB in B is too large to represent' })
})

t.test('convert_units tool: schema and execute', async (t) => {
  t.equal(unitConverter.name, 'convert_units')
  t.ok(valid(unitConverter, { value: 5, from: 'km', to: 'mi' }))
  t.notOk(valid(unitConverter, { value: '5', from: 'km', to: 'mi' }), 'value must be a number')
  t.notOk(valid(unitConverter, { value: 5, from: '', to: 'mi' }), 'empty unit')
  t.notOk(valid(unitConverter, { value: 5, from: 'km' }), 'to is required')
  t.notOk(valid(unitConverter, { value: 5, from: 'km', to: 'mi', precision: 2 }), 'no additional properties')
  t.same(await unitConverter.execute({ value: 5, from: 'km', to: 'miles' }, ctx), { value: 5, from: 'km', to: 'mi', result: 3.106855961 })
  t.throws(() => unitConverter.execute({ value: 5, from: 'km', to: 'kg' }, ctx), { code: 'INCOMPATIBLE_UNITS' })
})

t.test('facts: questions find the right entry', async (t) => {
  const cases: Array<[string, string]> = [
    ['What is the speed of light?', 'Speed of light'],
    ['how fast does sound travel', 'Speed of sound'],
    ['How far away is the Moon?', 'Distance to the Moon'],
    ['How big is the moon', 'Radius of the Moon'],
    ["What's the Earth's radius?", 'Radius of the Earth'],
    ['how heavy is the earth', 'Mass of the Earth'],
    ['What is the boiling point of water?', 'Boiling point of water'],
    ['At what temperature does water freeze?', 'Freezing point of water'],
    ["What's Avogadro's number?", 'Avogadro constant'],
    ['How many planets are in the solar system?', 'Planets of the solar system'],
    ['Which is the largest planet?', 'Largest planet'],
    ['How tall is Mount Everest?', 'Height of Mount Everest'],
    ['How long is a light-year?', 'Light-year'],
    ['How far is the sun from the earth', 'Distance to the Sun'],
    ['how cold is absolute zero', 'Absolute zero'],
    ['Where is the deepest point of the ocean?', 'Deepest point of the ocean'],
    ['How many days are in a year?', 'Length of a year'],
    ['PLANCK CONSTANT', 'Planck constant']
  ]
  for (const [query, topic] of cases) t.equal(findFact(query)?.topic, topic, query)
})

t.test('facts: ordinary messages match nothing', async (t) => {
  for (const query of ['hello there', 'What is 12 * (3 + 4)?', '5 km in miles', 'convert 100 F to C', 'how many ounces in 2 kg', 'thanks!', '']) {
    t.equal(findFact(query), undefined, query)
  }
})

t.test('facts: the table is small, stable and well formed', async (t) => {
  t.ok(FACTS.length >= 25 && FACTS.length <= 30, `${FACTS.length} facts`)
  t.equal(new Set(FACTS.map((fact) => fact.topic)).size, FACTS.length, 'topics are unique')
  for (const fact of FACTS) {
    t.ok(fact.keywords.length > 0, `${fact.topic} has keywords`)
    t.equal(findFact(fact.topic)?.topic, fact.topic, `its own topic finds "${fact.topic}"`)
  }
})

t.test('lookup_fact tool: hits, misses with suggestions, schema', async (t) => {
  t.equal(factLookup.name, 'lookup_fact')
  t.ok(valid(factLookup, { query: 'moon' }))
  t.notOk(valid(factLookup, { query: '' }))
  t.notOk(valid(factLookup, { query: 'q'.repeat(201) }))
  t.same(await factLookup.execute({ query: 'What is the speed of light?' }, ctx), {
    query: 'What is the speed of light?',
    found: true,
    topic: 'Speed of light',
    fact: 'Light travels at exactly 299,792,458 m/s in a vacuum (about 1.08 billion km/h); the metre is defined from it.',
    source: 'built-in reference table'
  })
  t.same(lookupFact('who won the world cup'), {
    query: 'who won the world cup',
    found: false,
    suggestions: FACTS.slice(0, 5).map((fact) => fact.topic)
  }, 'nothing related: the first topics')
  t.same(lookupFact('what is the distance'), {
    query: 'what is the distance',
    found: false,
    suggestions: ['Distance to the Moon', 'Distance to the Sun', 'Nearest star', 'Light-year']
  }, 'related topics when words overlap')
})

t.test('text stats: counts and most frequent words', async (t) => {
  t.same(analyzeText('hello there'), { words: 2, characters: 11, sentences: 1, topWords: [{ word: 'hello', count: 1 }] })
  t.same(analyzeText('The cat sat. The cat ran! Did the dog? No, the cat did not'), {
    words: 14,
    characters: 58,
    sentences: 4,
    topWords: [{ word: 'cat', count: 3 }, { word: 'sat', count: 1 }, { word: 'ran', count: 1 }]
  })
  t.same(analyzeText(''), { words: 0, characters: 0, sentences: 0, topWords: [] })
  t.same(analyzeText('...!!!'), { words: 0, characters: 6, sentences: 0, topWords: [] })
  t.same(analyzeText("It's a well-known fact. Well-known!"), {
    words: 5,
    characters: 35,
    sentences: 2,
    topWords: [{ word: 'well-known', count: 2 }, { word: "it's", count: 1 }, { word: 'fact', count: 1 }]
  })
  t.equal(analyzeText('naïve café 🙂').characters, 12, 'characters are code points')
  t.same(analyzeText('Ring 911 now, 911!').topWords, [{ word: 'ring', count: 1 }, { word: 'now', count: 1 }], 'numbers count as words but not as frequent words')
})

t.test('text_stats tool: schema and execute', async (t) => {
  t.equal(textStats.name, 'text_stats')
  t.ok(valid(textStats, { text: '' }), 'an empty text is fine')
  t.notOk(valid(textStats, { text: 'a'.repeat(20_001) }))
  t.notOk(valid(textStats, { text: 'a', words: 1 }))
  t.same(await textStats.execute({ text: 'Go go go. Stop.' }, ctx), {
    words: 4,
    characters: 15,
    sentences: 2,
    topWords: [{ word: 'go', count: 3 }, { word: 'stop', count: 1 }]
  })
})

t.test('index: the demo tools, once each, with valid names', async (t) => {
  t.same(demoTools.map((tool) => tool.name), ['calculator', 'convert_units', 'lookup_fact', 'text_stats'])
  t.ok(Object.isFrozen(demoTools))
  t.equal(reCalculator, calculator)
  t.equal(reUnitConverter, unitConverter)
  t.equal(reFactLookup, factLookup)
  t.equal(reTextStats, textStats)
  for (const tool of demoTools) {
    t.match(tool.name, /^[A-Za-z][A-Za-z0-9_-]{0,63}$/)
    t.equal((tool.parameters as { type?: unknown }).type, 'object', `${tool.name} takes an object`)
    t.ok(tool.description.length > 20, `${tool.name} is described`)
  }
})
