#!/usr/bin/env node
// The compiled CLI, bundled into one file (built by `npm run build`, which `npm ci` runs
// through `prepare`; scripts/bundle-cli.mjs says why).
import "../dist/cli/bundle.mjs"
