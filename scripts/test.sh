#!/usr/bin/env bash
# The test suite: set up, lint, run pytest. "No tests collected" (pytest exit 5) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh || exit 1
VENV="${SYNTHAUG_VENV:-.venv}"
# The report test opens the HTML report in headless Chromium (Debian's chromium + chromium-driver);
# SYNTHAUG_NO_BROWSER_INSTALL=1 skips installing them (the browser tests are then skipped).
if [ "${SYNTHAUG_NO_BROWSER_INSTALL:-0}" != 1 ] && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium and chromium-driver (about 400 MB) for the report's browser tests;" >&2
    echo "  set SYNTHAUG_NO_BROWSER_INSTALL=1 to skip (those tests are then skipped)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
      || echo "warning: could not install chromium; the browser test will be skipped" >&2
  else
    echo "warning: chromium/chromedriver missing and not installable here; the browser test will be skipped" >&2
  fi
fi
"$VENV/bin/ruff" check src tests benchmarks || exit 1
"$VENV/bin/mypy" src/synthaug || exit 1
# Two pytest workers (pytest-xdist), one file per worker at a time: the tests run one torch thread each,
# so two of them fill a 2-core machine (docs/BENCHMARKS.md, "The test suite");
# SYNTHAUG_TEST_WORKERS=0 runs them in this process (pytest -n 0), a larger number on a larger machine.
WORKERS="${SYNTHAUG_TEST_WORKERS:-2}"
echo "lint and types passed; running the tests on $WORKERS worker(s) (about 8 minutes on 2 cores; the slowest are listed at the end)" >&2
"$VENV/bin/python" -m pytest -q -n "$WORKERS" --dist loadfile --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
