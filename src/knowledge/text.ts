/** The longest text the text statistics tool analyses; the demo agent hands it no more. */
export const MAX_TEXT_LENGTH = 20_000
