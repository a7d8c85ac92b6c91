// Validates an AsyncAPI document with the official parser: errors fail, warnings and hints are printed.
import { Parser } from '@asyncapi/parser';
import fs from 'node:fs';

const SEVERITY = ['error', 'warning', 'info', 'hint'];
const file = process.argv[2];
const { document, diagnostics } = await new Parser().parse(fs.readFileSync(file, 'utf8'));
for (const d of diagnostics) {
  console.log(`${file}: ${SEVERITY[d.severity]} ${d.code}: ${d.message} at ${d.path.join('.') || '/'}`);
}
const errors = diagnostics.filter((d) => d.severity === 0).length;
if (errors || !document) {
  console.error(`${file}: ${errors} error(s)`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()}`);
