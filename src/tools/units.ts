import { Type } from 'typebox'
import { RunError, defineTool } from '../contracts.js'
import { MAX_UNIT_NAME_LENGTH, SUPPORTED_UNITS, findUnit, type Unit } from '../knowledge/units.js'
import { roundSignificant } from './calculator.js'

export interface Conversion {
  readonly value: number
  readonly from: string
  readonly to: string
  readonly result: number
}

function requireUnit (name: string): Unit {
  const unit = findUnit(name)
  if (unit === undefined) throw new RunError('UNKNOWN_UNIT', `Unknown unit "${name.slice(0, 32)}". Supported: ${SUPPORTED_UNITS}`)
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


const UnitName = Type.String({ minLength: 1, maxLength: MAX_UNIT_NAME_LENGTH, description: 'A unit symbol or name, e.g. "km", "miles", "°F", "kg".' })

export const unitConverter = defineTool({
  name: 'convert_units',
  description: `Converts a value between units of the same kind. Supported: ${SUPPORTED_UNITS}.`,
  parameters: Type.Object({
    value: Type.Number({ description: 'The quantity to convert.' }),
    from: UnitName,
    to: UnitName
  }, { additionalProperties: false }),
  execute ({ value, from, to }) {
    return convert(value, from, to)
  }
})
