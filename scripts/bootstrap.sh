#!/usr/bin/env bash
# Installs what subsync needs on a fresh Debian machine, then the Python environment in .venv.
# Idempotent: a second run only checks. System packages: the ODBC driver manager pyodbc links
# against, PostgreSQL's ODBC driver, a PostgreSQL server the tests start and throw away, and
# Debian's chromium, which the browser tests drive with Playwright (never a Playwright download).
set -euo pipefail
cd "$(dirname "$0")/.."

# ldconfig lives in /sbin, which a non-root PATH may lack. The listing is captured first: with
# pipefail, `ldconfig -p | grep -q` can fail on SIGPIPE even when the library is there.
ldconfig_bin=$(command -v ldconfig || echo /sbin/ldconfig)
libraries=$("$ldconfig_bin" -p 2>/dev/null || true)

missing=()
grep -q 'libodbc\.so\.2' <<<"$libraries" || missing+=(unixodbc)
compgen -G '/usr/lib/*/odbc/psqlodbcw.so' >/dev/null || missing+=(odbc-postgresql)
for tool in initdb pg_ctl; do
  if ! command -v "$tool" >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/$tool" >/dev/null; then
    missing+=(postgresql)
    break
  fi
done
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The access tests start nginx from deploy/nginx with a certificate and passwords made by openssl.
[ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
python3 -c 'import ensurepip, venv' 2>/dev/null || [ -x .venv/bin/python ] || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing system packages. Install them, then run this again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch .venv/.installed
fi
