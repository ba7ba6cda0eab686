// Builds the demo page into dist/page/: src/page/main.ts (with the client library it imports)
// bundled by esbuild into app.js, next to index.html and app.css. Run by `npm run build`; the
// page then needs nothing from the network at run time. Type-checking is tsc's job
// (src/page/tsconfig.json); esbuild only strips the types.
import { copyFile, mkdir, rm } from 'node:fs/promises'
import { URL, fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const source = `${root}src/page/`
const out = `${root}dist/page/`

await rm(out, { recursive: true, force: true })
await mkdir(out, { recursive: true })
await build({
  entryPoints: [`${source}main.ts`],
  outfile: `${out}app.js`,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome100', 'firefox100', 'safari15'],
  minify: true,
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning'
})
await copyFile(`${source}index.html`, `${out}index.html`)
await copyFile(`${source}page.css`, `${out}app.css`)
