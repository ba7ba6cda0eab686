import { Type } from 'typebox'
import { RunError, defineTool } from '../contracts.js'
import { roundSignificant } from './calculator.js'

export type UnitFamily = 'length' | 'mass' | 'temperature' | 'time' | 'volume' | 'speed' | 'data'

export interface Unit {
  readonly symbol: string
  readonly family: UnitFamily
  /** In the family's base unit: base = (value + offset) * factor. */
  readonly factor: number
  readonly offset: number
}

export interface Conversion {
  readonly value: number
  readonly from: string
  readonly to: string
  readonly result: number
}

type UnitRow = readonly [symbol: string, factor: number, aliases: readonly string[], offset?: number]

const US_GALLON_L = 3.785411784

const TABLE: Readonly<Record<UnitFamily, readonly UnitRow[]>> = {
  length: [
    ['mm', 0.001, ['millimeter', 'millimetre']],
    ['cm', 0.01, ['centimeter', 'centimetre']],
    ['m', 1, ['meter', 'metre']],
    ['km', 1000, ['kilometer', 'kilometre', 'klick']],
    ['in', 0.0254, ['inch', '"']],
    ['ft', 0.3048, ['foot', 'feet', "'"]],
    ['yd', 0.9144, ['yard']],
    ['mi', 1609.344, ['mile']],
    ['nmi', 1852, ['nautical mile']]
  ],
  mass: [
    ['mg', 0.001, ['milligram', 'milligramme']],
    ['g', 1, ['gram', 'gramme']],
    ['kg', 1000, ['kilogram', 'kilogramme', 'kilo']],
    ['t', 1_000_000, ['tonne', 'metric ton']],
    ['oz', 28.349523125, ['ounce']],
    ['lb', 453.59237, ['lbs', 'pound']],
    ['st', 6350.29318, ['stone']]
  ],
  temperature: [
    ['°C', 1, ['c', 'celsius', 'centigrade'], 273.15],
    ['°F', 5 / 9, ['f', 'fahrenheit'], 459.67],
    ['K', 1, ['kelvin']]
  ],
  time: [
    ['ms', 0.001, ['millisecond', 'msec']],
    ['s', 1, ['sec', 'second']],
    ['min', 60, ['minute']],
    ['h', 3600, ['hr', 'hour']],
    ['day', 86_400, ['d']],
    ['week', 604_800, ['wk']]
  ],
  volume: [
    ['ml', 0.001, ['milliliter', 'millilitre']],
    ['l', 1, ['liter', 'litre']],
    ['tsp', US_GALLON_L / 768, ['teaspoon']],
    ['tbsp', US_GALLON_L / 256, ['tablespoon']],
    ['fl oz', US_GALLON_L / 128, ['floz', 'fluid ounce']],
    ['cup', US_GALLON_L / 16, []],
    ['pt', US_GALLON_L / 8, ['pint']],
    ['qt', US_GALLON_L / 4, ['quart']],
    ['gal', US_GALLON_L, ['gallon']]
  ],
  speed: [
    ['m/s', 1, ['meter per second', 'metre per second', 'meters per second', 'metres per second']],
    ['km/h', 1 / 3.6, ['kmh', 'kph', 'km/hr', 'kilometer per hour', 'kilometre per hour', 'kilometers per hour', 'kilometres per hour']],
    ['mph', 0.44704, ['mi/h', 'mile per hour', 'miles per hour']],
    ['kn', 1852 / 3600, ['kt', 'kts', 'knot']]
  ],
  data: [
    ['B', 1, ['byte']],
    ['KB', 1e3, ['kilobyte']],
    ['MB', 1e6, ['megabyte']],
    ['GB', 1e9, ['gigabyte']],
    ['TB', 1e12, ['terabyte']],
    ['KiB', 2 ** 10, ['kibibyte']],
    ['MiB', 2 ** 20, ['mebibyte']],
    ['GiB', 2 ** 30, ['gibibyte']],
    ['TiB', 2 ** 40, ['tebibyte']]
  ]
}

export const UNIT_FAMILIES = Object.keys(TABLE) as readonly UnitFamily[]

const UNITS: ReadonlyMap<string, Unit> = (() => {
  const units = new Map<string, Unit>()
  for (const family of UNIT_FAMILIES) {
    for (const [symbol, factor, aliases, offset = 0] of TABLE[family]) {
      const unit: Unit = Object.freeze({ symbol, family, factor, offset })
      for (const name of [symbol, ...aliases]) units.set(normalize(name), unit)
    }
  }
  return units
})()

const SUPPORTED = UNIT_FAMILIES
  .map((family) => `${family} (${TABLE[family].map(([symbol]) => symbol).join(', ')})`)
  .join('; ')

function normalize (name: string): string {
  return name.trim().toLowerCase()
    .replaceAll('º', '°')
    .replace(/\s+/g, ' ')
    .replace(/^(?:degrees?|deg)\s*/, '')
    .replace(/^°\s*/, '°')
}

function singulars (name: string): string[] {
  const words = name.split(' ')
  return [/s$/, /es$/].map((ending) => words.map((word) => word.length > 1 ? word.replace(ending, '') : word).join(' '))
}

/** The unit a name denotes (a symbol or a long name, any case, singular or plural), if any. */
export function findUnit (name: string): Unit | undefined {
  const normal = normalize(name)
  const exact = UNITS.get(normal)
  if (exact !== undefined) return exact
  for (const candidate of singulars(normal)) {
    const unit = UNITS.get(candidate)
    if (unit !== undefined) return unit
  }
  return undefined
}

function requireUnit (name: string): Unit {
  const unit = findUnit(name)
  if (unit === undefined) throw new RunError('UNKNOWN_UNIT', `Unknown unit "${name.slice(0, 32)}". Supported: ${SUPPORTED}`)
  return unit
}

/** Converts between two units of one family; the result is rounded to 10 significant digits. */
export function convert (value: number, from: string, to: string): Conversion {
  if (!Number.isFinite(value)) throw new RunError('NOT_FINITE', 'The value to convert must be a finite number')
  const source = requireUnit(from)
  const target = requireUnit(to)
  if (source.family !== target.family) {
    throw new RunError('INCOMPATIBLE_UNITS', `Cannot convert ${source.symbol} (${source.family}) to ${target.symbol} (${target.family})`)
  }
  const base = (value + source.offset) * source.factor
  if (source.family === 'temperature' && base < 0) {
    throw new RunError('BELOW_ABSOLUTE_ZERO', `${value} ${source.symbol} is below absolute zero`)
  }
  const result = base / target.factor - target.offset
  if (!Number.isFinite(result)) throw new RunError('NOT_FINITE', `${value} ${source.symbol} in ${target.symbol} is too large to represent`)
  return { value, from: source.symbol, to: target.symbol, result: roundSignificant(result, 10) }
}

export const MAX_UNIT_NAME_LENGTH = 32

const UnitName = Type.String({ minLength: 1, maxLength: MAX_UNIT_NAME_LENGTH, description: 'A unit symbol or name, e.g. "km", "miles", "°F", "kg".' })

export const unitConverter = defineTool({
  name: 'convert_units',
  description: `Converts a value between units of the same kind. Supported: ${SUPPORTED}.`,
  parameters: Type.Object({
    value: Type.Number({ description: 'The quantity to convert.' }),
    from: UnitName,
    to: UnitName
  }, { additionalProperties: false }),
  execute ({ value, from, to }) {
    return convert(value, from, to)
  }
})
