import { writeFileSync } from 'node:fs';
import { errorCatalogMarkdown } from '../src/core/errors.js';

writeFileSync(new URL('../docs/errors.md', import.meta.url), errorCatalogMarkdown());
process.stderr.write('wrote docs/errors.md\n');
