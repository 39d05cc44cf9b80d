# Two jobs for a newcomer: `make demo` (mask the bundled sample) and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
SAMPLE_DIR ?= demo

.PHONY: install demo test lint bench

install:
	# torch first: the pinned CPU build lies on this disk; a loose spec would pull a CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[dev,train,teacher,fast]"

demo: install
	$(PYTHON) -m s2mask.testing.sample $(SAMPLE_DIR)
	s2mask run $(SAMPLE_DIR)/S2B_MSIL1C_20200101T000000_N0208_R000_T00XXX_20200101T000000.SAFE \
		-o $(SAMPLE_DIR)/mask.tif --overwrite

test: install
	ruff check .
	$(PYTHON) -m pytest -q
	$(PYTHON) -m pytest -q -m slow

lint:
	ruff check . && ruff format --check .
