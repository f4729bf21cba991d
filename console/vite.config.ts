import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The web console's build: static files with hashed names into dist/console/, which the package ships
 * and `src/console/assets.ts` serves under /console. Nothing is loaded from elsewhere at run time.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/console/',
  // Preact's automatic JSX runtime, compiled by Vite's own Oxc transform: no plugin needed.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/console/', import.meta.url)),
    emptyOutDir: true,
    manifest: true,
    target: 'es2022',
    // Every asset is a file of its own: the CSP allows no inline data for scripts or styles.
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
  logLevel: 'warn',
});
