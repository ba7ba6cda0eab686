import { Type } from 'typebox'
import { defineTool } from '../contracts.js'

export const MAX_TEXT_LENGTH = 20_000

export interface WordCount {
  readonly word: string
  readonly count: number
}

export interface TextStats {
  readonly words: number
  readonly characters: number
  readonly sentences: number
  readonly topWords: readonly WordCount[]
}

const STOP_WORDS = new Set([
  'a', 'an', 'the', 'and', 'or', 'but', 'if', 'of', 'to', 'in', 'on', 'at', 'by', 'for', 'with', 'from', 'as',
  'is', 'are', 'was', 'were', 'be', 'been', 'am', 'it', 'its', 'this', 'that', 'these', 'those',
  'i', 'me', 'my', 'you', 'your', 'he', 'she', 'we', 'they', 'them', 'his', 'her', 'our', 'their',
  'do', 'does', 'did', 'not', 'no', 'so', 'than', 'then', 'there', 'what', 'which', 'who', 'how'
])

const WORD = /[\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*/gu
const SENTENCE_END = /[.!?…]+/u
const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u

/** Pieces between runs of sentence-ending punctuation that hold a letter or a digit; one linear split. */
function countSentences (text: string): number {
  let sentences = 0
  for (const piece of text.split(SENTENCE_END)) if (LETTER_OR_DIGIT.test(piece)) sentences++
  return sentences
}

/** Counts words, characters (Unicode code points) and sentences, and finds the 3 most frequent words. */
export function analyzeText (text: string): TextStats {
  const words = text.match(WORD) ?? []
  const counts = new Map<string, number>()
  for (const word of words) {
    const lower = word.toLowerCase()
    if (!STOP_WORDS.has(lower) && !/^\p{N}+$/u.test(lower)) counts.set(lower, (counts.get(lower) ?? 0) + 1)
  }
  // Stable sort: words used equally often keep the order in which they first appear.
  const topWords = [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([word, count]) => ({ word, count }))
  return {
    words: words.length,
    characters: [...text].length,
    sentences: countSentences(text),
    topWords
  }
}

export const textStats = defineTool({
  name: 'text_stats',
  description: 'Counts the words, characters and sentences of a text and lists its 3 most frequent words (common words like "the" are ignored).',
  parameters: Type.Object({
    text: Type.String({ maxLength: MAX_TEXT_LENGTH, description: 'The text to analyse.' })
  }, { additionalProperties: false }),
  execute ({ text }) {
    return analyzeText(text)
  }
})
