#!/usr/bin/env bash
# Refreshes the vendored front-end files under assets/vendor from their npm packages.
# Versions are pinned here; bump them deliberately and commit the result with its licenses.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund htmx.org@2.0.11 htmx-ext-sse@2.2.4 uplot@1.6.32 >/dev/null
out="$here/vendor"
mkdir -p "$out"
cp node_modules/htmx.org/dist/htmx.min.js "$out/htmx.min.js"
cp node_modules/htmx.org/LICENSE "$out/htmx.LICENSE"
cp node_modules/htmx-ext-sse/dist/sse.min.js "$out/htmx-ext-sse.min.js" 2>/dev/null || cp node_modules/htmx-ext-sse/sse.js "$out/htmx-ext-sse.min.js"
cp node_modules/htmx-ext-sse/LICENSE "$out/htmx-ext-sse.LICENSE"
cp node_modules/uplot/dist/uPlot.iife.min.js "$out/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$out/uPlot.min.css"
cp node_modules/uplot/LICENSE "$out/uPlot.LICENSE"
echo "vendored into $out:"
ls -la "$out"
