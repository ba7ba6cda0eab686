import { Type } from 'typebox'
import { defineTool } from '../contracts.js'

export interface Fact {
  readonly topic: string
  readonly fact: string
  /** Words or phrases that name the topic: one is enough to match. */
  readonly keywords: readonly string[]
  /** Words that only strengthen a match (they are too common to match alone). */
  readonly hints: readonly string[]
}

export type FactAnswer =
  | { readonly query: string, readonly found: true, readonly topic: string, readonly fact: string, readonly source: 'built-in reference table' }
  | { readonly query: string, readonly found: false, readonly suggestions: readonly string[] }

export const FACTS: readonly Fact[] = [
  {
    topic: 'Speed of light',
    fact: 'Light travels at exactly 299,792,458 m/s in a vacuum (about 1.08 billion km/h); the metre is defined from it.',
    keywords: ['light', 'lightspeed'],
    hints: ['speed', 'fast', 'vacuum', 'travel']
  },
  {
    topic: 'Speed of sound',
    fact: 'Sound travels at about 343 m/s (1,235 km/h) in dry air at 20 °C; that speed is Mach 1.',
    keywords: ['sound', 'mach', 'supersonic'],
    hints: ['speed', 'fast', 'air', 'travel']
  },
  {
    topic: 'Radius of the Earth',
    fact: 'The Earth\'s mean radius is about 6,371 km; its equatorial diameter is about 12,756 km.',
    keywords: ['earth'],
    hints: ['radius', 'diameter', 'size', 'big', 'large', 'wide']
  },
  {
    topic: 'Circumference of the Earth',
    fact: 'The Earth\'s circumference at the equator is about 40,075 km.',
    keywords: ['circumference', 'equator'],
    hints: ['earth', 'around', 'long']
  },
  {
    topic: 'Mass of the Earth',
    fact: 'The Earth\'s mass is about 5.972 × 10^24 kg.',
    keywords: ['earth'],
    hints: ['mass', 'weigh', 'weight', 'heavy']
  },
  {
    topic: 'Age of the Earth',
    fact: 'The Earth is about 4.54 billion years old (± 50 million years), from the radiometric dating of meteorites.',
    keywords: ['earth'],
    hints: ['age', 'old', 'formed']
  },
  {
    topic: 'Distance to the Moon',
    fact: 'The average distance from the Earth to the Moon is about 384,400 km (centre to centre).',
    keywords: ['moon', 'lunar'],
    hints: ['distance', 'far', 'away', 'from']
  },
  {
    topic: 'Radius of the Moon',
    fact: 'The Moon\'s mean radius is about 1,737 km, a little over a quarter of the Earth\'s.',
    keywords: ['moon', 'lunar'],
    hints: ['radius', 'diameter', 'size', 'big', 'large', 'wide']
  },
  {
    topic: 'Distance to the Sun',
    fact: 'The average distance from the Earth to the Sun is one astronomical unit: 149,597,870.7 km; sunlight takes about 8 min 19 s to arrive.',
    keywords: ['sun', 'astronomical unit'],
    hints: ['distance', 'far', 'away', 'from', 'earth']
  },
  {
    topic: 'Temperature of the Sun',
    fact: 'The Sun\'s visible surface (photosphere) has an effective temperature of about 5,772 K (about 5,500 °C).',
    keywords: ['sun', 'photosphere'],
    hints: ['temperature', 'hot', 'surface', 'heat']
  },
  {
    topic: 'Planets of the solar system',
    fact: 'The solar system has eight planets: Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune.',
    keywords: ['planet', 'solar system'],
    hints: ['many', 'list', 'order', 'name']
  },
  {
    topic: 'Largest planet',
    fact: 'Jupiter is the largest planet: its mean radius is about 69,911 km, about 11 times the Earth\'s.',
    keywords: ['jupiter', 'largest planet', 'biggest planet'],
    hints: ['largest', 'biggest', 'radius', 'size']
  },
  {
    topic: 'Mars',
    fact: 'Mars has a mean radius of about 3,390 km and a day (sol) of 24 h 39 min 35 s; a Martian year lasts 687 Earth days.',
    keywords: ['mars', 'martian', 'red planet'],
    hints: ['day', 'year', 'size', 'radius']
  },
  {
    topic: 'Nearest star',
    fact: 'After the Sun, the nearest star is Proxima Centauri, about 4.24 light-years away.',
    keywords: ['proxima', 'centauri', 'nearest star', 'closest star'],
    hints: ['star', 'nearest', 'closest', 'distance', 'far']
  },
  {
    topic: 'Light-year',
    fact: 'A light-year, the distance light travels in a Julian year, is 9,460,730,472,580.8 km (about 9.46 trillion km).',
    keywords: ['light year', 'lightyear'],
    hints: ['distance', 'long', 'far']
  },
  {
    topic: 'Length of a year',
    fact: 'A tropical year (from one March equinox to the next) lasts about 365.2422 days, which is why leap years exist.',
    keywords: ['leap year', 'tropical year', 'days in a year', 'length of a year', 'how long is a year'],
    hints: ['year', 'day', 'long', 'length']
  },
  {
    topic: 'Boiling point of water',
    fact: 'At standard sea-level pressure (1 atm), water boils at 100 °C (212 °F, 373.15 K).',
    keywords: ['boil', 'boiling'],
    hints: ['water', 'point', 'temperature']
  },
  {
    topic: 'Freezing point of water',
    fact: 'At standard pressure (1 atm), water freezes and ice melts at 0 °C (32 °F, 273.15 K).',
    keywords: ['freeze', 'freezing', 'melting', 'ice'],
    hints: ['water', 'point', 'temperature']
  },
  {
    topic: 'Density of water',
    fact: 'Liquid water is densest at about 4 °C: 999.97 kg/m³, very nearly 1 g/cm³.',
    keywords: ['density', 'dense'],
    hints: ['water', 'heavy', 'litre']
  },
  {
    topic: 'Absolute zero',
    fact: 'Absolute zero, the lowest possible temperature, is 0 K = −273.15 °C = −459.67 °F.',
    keywords: ['absolute zero', 'coldest'],
    hints: ['absolute', 'zero', 'cold', 'temperature']
  },
  {
    topic: 'Standard gravity',
    fact: 'Standard acceleration due to gravity at the Earth\'s surface is defined as 9.80665 m/s².',
    keywords: ['gravity', 'free fall'],
    hints: ['acceleration', 'fall', 'earth', 'surface']
  },
  {
    topic: 'Gravitational constant',
    fact: 'Newton\'s gravitational constant G is about 6.67430 × 10^-11 m³ kg⁻¹ s⁻².',
    keywords: ['gravitational constant', 'newton'],
    hints: ['gravitational', 'constant', 'big']
  },
  {
    topic: 'Avogadro constant',
    fact: 'The Avogadro constant is exactly 6.02214076 × 10^23 per mole: the number of particles in one mole.',
    keywords: ['avogadro', 'mole'],
    hints: ['constant', 'number', 'particles', 'atoms']
  },
  {
    topic: 'Planck constant',
    fact: 'The Planck constant h is exactly 6.62607015 × 10^-34 J·s; the kilogram is defined from it.',
    keywords: ['planck'],
    hints: ['constant', 'quantum']
  },
  {
    topic: 'Elementary charge',
    fact: 'The elementary charge, the charge of a proton (an electron\'s is its negative), is exactly 1.602176634 × 10^-19 C.',
    keywords: ['elementary charge', 'electron', 'proton'],
    hints: ['charge', 'elementary', 'coulomb']
  },
  {
    topic: 'Height of Mount Everest',
    fact: 'Mount Everest is 8,848.86 m (29,031.7 ft) above sea level, as measured by China and Nepal in 2020.',
    keywords: ['everest', 'highest mountain', 'tallest mountain'],
    hints: ['mount', 'mountain', 'highest', 'tallest', 'high', 'tall', 'height']
  },
  {
    topic: 'Deepest point of the ocean',
    fact: 'The Challenger Deep in the Mariana Trench is the deepest known point of the ocean, about 10,935 m below sea level.',
    keywords: ['mariana', 'challenger deep', 'deepest', 'trench'],
    hints: ['ocean', 'sea', 'deep', 'point']
  }
]

const STOP_WORDS = new Set([
  'a', 'an', 'the', 'of', 'is', 'are', 'was', 'what', 'whats', 'how', 'in', 'on', 'at', 'to', 'and', 'or',
  'me', 'tell', 'about', 'do', 'does', 'you', 'know', 'please', 'it', 'its', 'that', 'this', 'which', 'there'
])

function stem (word: string): string {
  return word.length > 3 && word.endsWith('s') && !word.endsWith('ss') ? word.slice(0, -1) : word
}

function words (text: string): string[] {
  return (text.toLowerCase().replaceAll(/['’]s\b/g, '').match(/[\p{L}\p{N}]+/gu) ?? [])
    .filter((word) => !STOP_WORDS.has(word))
    .map(stem)
}

/** The query's words, with where each word occurs: looking a phrase up costs its occurrences, not the query's length. */
interface Terms {
  readonly list: readonly string[]
  readonly positions: ReadonlyMap<string, readonly number[]>
}

function terms (query: string): Terms {
  const list = words(query)
  const positions = new Map<string, number[]>()
  for (const [i, word] of list.entries()) {
    const seen = positions.get(word)
    if (seen === undefined) positions.set(word, [i])
    else seen.push(i)
  }
  return { list, positions }
}

function contains ({ list, positions }: Terms, phrase: readonly string[]): boolean {
  const [head, ...rest] = phrase
  if (head === undefined) return false
  // Only where the first word occurs, and a phrase is a few words long: linear in the query.
  return (positions.get(head) ?? []).some((start) => rest.every((word, i) => list[start + 1 + i] === word))
}

interface IndexedFact {
  readonly fact: Fact
  readonly keywords: readonly (readonly string[])[]
  readonly hints: readonly string[]
}

const INDEX: readonly IndexedFact[] = FACTS.map((fact) => ({ fact, keywords: fact.keywords.map(words), hints: fact.hints.map(stem) }))

/** The best-matching fact: it must name the topic (a keyword); hints break ties. Earlier facts win a draw. */
export function findFact (query: string): Fact | undefined {
  return bestFact(terms(query))
}

function bestFact (found: Terms): Fact | undefined {
  let best: { fact: Fact, score: number } | undefined
  for (const entry of INDEX) {
    const named = entry.keywords.filter((keyword) => contains(found, keyword))
    if (named.length === 0) continue
    const score = named.reduce((sum, keyword) => sum + 2 * keyword.length, 0) +
      entry.hints.filter((hint) => found.positions.has(hint)).length
    if (best === undefined || score > best.score) best = { fact: entry.fact, score }
  }
  return best?.fact
}

export function lookupFact (query: string): FactAnswer {
  const found = terms(query)
  const fact = bestFact(found)
  if (fact !== undefined) return { query, found: true, topic: fact.topic, fact: fact.fact, source: 'built-in reference table' }
  const related = INDEX.filter((entry) => entry.hints.some((hint) => found.positions.has(hint))).map((entry) => entry.fact.topic)
  const suggestions = (related.length > 0 ? related : FACTS.map((fact) => fact.topic)).slice(0, 5)
  return { query, found: false, suggestions }
}

export const factLookup = defineTool({
  name: 'lookup_fact',
  description: 'Looks up a stable physical, astronomical or geographic fact (speed of light, Earth radius, ' +
    'distance to the Moon, boiling point of water, Avogadro constant, planets, Everest, ...) in a built-in table.',
  parameters: Type.Object({
    query: Type.String({ minLength: 1, maxLength: 200, description: 'The question or topic, e.g. "How far is the Moon?".' })
  }, { additionalProperties: false }),
  execute ({ query }) {
    return lookupFact(query)
  }
})
