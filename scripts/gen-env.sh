#!/usr/bin/env bash
# Write .env for docker compose with fresh random passwords (from .env.example's keys).
# Refuses to overwrite an existing .env (pass --force to replace it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${ENV_FILE:-.env}"
if [[ -e "$target" && "${1:-}" != "--force" ]]; then
  echo "gen-env.sh: $target exists; keeping it (--force replaces it)" >&2
  exit 0
fi
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
umask 077 # readable by its owner only, like any file holding passwords
tmp="$(mktemp "$target.XXXXXX")"
while IFS= read -r line; do
  case "$line" in
    *=change-me) printf '%s=%s\n' "${line%%=*}" "$(secret)" ;;
    *) printf '%s\n' "$line" ;;
  esac
done <.env.example >"$tmp"
mv "$tmp" "$target"
echo "gen-env.sh: wrote $target (mode 600)" >&2
