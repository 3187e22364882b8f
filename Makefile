# `make sweep` runs the main job on the embedded default; `make test` runs the whole test suite.
# Both create .venv and install the project into it when needed, at the versions in constraints.txt.
# `make lock` re-resolves those versions from what the registry serves today (README: "Newer versions").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK_VENV ?= .venv-lock
# Not pinned: the CUDA runtime wheels that one machine's torch build pulls in. A CPU build, or a CUDA
# build for another CUDA version, brings its own (torch's own version is pinned, without a +local label).
MACHINE_WHEELS := ^(nvidia-|cuda-|triton==)

.PHONY: install test sweep lint bench lock clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest tests

sweep: $(VENV)/.installed
	$(PY) sweep.py $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	$(PY) bench/trainer_overhead.py

lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[test]'
	{ echo "# Made by \`make lock\` on $$(date -u +%F) with $$($(LOCK_VENV)/bin/python -V): every package that"; \
	  echo "# \`pip install -e '.[test]'\` resolved, minus the CUDA runtime wheels of one torch build."; \
	  echo "# \`make install\` (and so \`make test\`, \`make sweep\`) installs with -c constraints.txt."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | grep -v -E '$(MACHINE_WHEELS)' | sed 's/+[A-Za-z0-9.]*$$//'; \
	} > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	rm -rf $(LOCK_VENV)
	@echo "constraints.txt re-resolved; run \`make test\` (it reinstalls .venv from it) before you commit it"

clean:
	rm -rf $(VENV) $(LOCK_VENV) runs mlflow.db mlartifacts
