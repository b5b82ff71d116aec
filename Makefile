# The two commands of the README: `make demo` and `make test`. Both install what they
# need into a project venv (.venv) first; nothing else on the machine is assumed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-unit test-integration bench lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned, by pip: it takes the CPU wheel on this machine's disk
	# (uv does not look there, and anything looser pulls a multi-GB CUDA build).
	$(BIN)/python -m pip install --quiet torch==2.13.0 uv
	# The rest by uv, which keeps the torch above: ~26 s where pip took ~70 s. Both
	# byte-compile what they install (an environment may set PYTHONDONTWRITEBYTECODE: then
	# what is not compiled here is compiled again by every process that imports it, 20 s
	# for sentence-transformers); uv does it on every core.
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/embedfleet demo

# Three test processes, each test file in one of them (its module fixtures: servers,
# workers, fleets, stay in one process). Much of a test's time is spent waiting on real
# worker processes (lapses, visibility timeouts, heartbeats): on a 2-core machine the
# suite took 485 s at 2, 405 s at 3, 400 s at 4 (one run each, the same tree);
# TEST_JOBS=0 runs serially.
TEST_JOBS ?= 3
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile tests

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-integration: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests/integration

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/throughput.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check $$(git ls-files '*.py')

clean:
	rm -rf $(VENV) out .pytest_cache
