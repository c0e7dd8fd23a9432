# Sourced by scripts/test and scripts/reliability: creates or reuses .venv with the
# compatibility suite's client libraries (compat-tests/requirements.txt). Run from the root.
PYTHON=${PYTHON:-python3}
REQUIREMENTS=compat-tests/requirements.txt
STAMP=.venv/.requirements.sha256
wanted=$( { cat "$REQUIREMENTS"; "$PYTHON" --version; } | sha256sum | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f $STAMP && "$(cat "$STAMP")" == "$wanted" ]]; then
  echo "requirements unchanged, reusing .venv"
else
  "$PYTHON" -m venv --clear .venv
  PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install -q -r "$REQUIREMENTS"
  echo "$wanted" > "$STAMP"
  echo "installed $(wc -l < <(.venv/bin/python -m pip freeze)) packages"
fi
