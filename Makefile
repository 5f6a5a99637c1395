# The public interface of the repository. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQUIREMENTS := requirements.txt pyproject.toml $(wildcard */requirements.txt)
SUBPROJECTS := mars_cracknet dune_vlm s5mars_ssl crater_resunet ice_patch_cnn
TEST_DIRS := tests $(SUBPROJECTS) bench
PYTEST_FAST := -m "not slow"

.PHONY: help setup test test-all lint results clean distclean bench bench-vs-original \
        reproduce reproduce-cracks reproduce-dunes reproduce-s5mars reproduce-craters reproduce-ice

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup: $(STAMP)  ## create .venv with Python 3.11 and install everything (idempotent)

$(STAMP): $(REQUIREMENTS)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

test: setup  ## fast tests: one pytest process per subproject, plus tests/ and bench/
	@PY=$(PY) bash tests/run_pytest.sh $(PYTEST_FAST) -- $(TEST_DIRS)

test-all: setup  ## every test, the ones marked slow included
	@PY=$(PY) bash tests/run_pytest.sh -- $(TEST_DIRS)

lint: setup  ## ruff, configured in pyproject.toml
	$(VENV)/bin/ruff check .

# One reproduce job per paper: <package>/reproduce.py, quick profile on embedded data, over
# several seeds, written to the git-ignored results/local/<paper>/ (REPRODUCE_ARGS="--seeds 5
# --record" rewrites the committed record results/<paper>/).
reproduce_paper = $(PY) -m $(1).reproduce $(REPRODUCE_ARGS)

reproduce-cracks: setup  ## Mars-CrackNet, quick profile -> results/local/mars_cracknet/
	$(call reproduce_paper,mars_cracknet)
reproduce-dunes: setup  ## dune VLM, quick profile -> results/local/dune_vlm/
	$(call reproduce_paper,dune_vlm)
reproduce-s5mars: setup  ## S5Mars, quick profile -> results/local/s5mars_ssl/
	$(call reproduce_paper,s5mars_ssl)
reproduce-craters: setup  ## crater ResNet-UNet, quick profile -> results/local/crater_resunet/
	$(call reproduce_paper,crater_resunet)
reproduce-ice: setup  ## HiRISE ice patches, quick profile -> results/local/ice_patch_cnn/
	$(call reproduce_paper,ice_patch_cnn)

reproduce:  ## all five, one after the other, then RESULTS.md
	@status=0; for t in cracks dunes s5mars craters ice; do \
	  $(MAKE) --no-print-directory reproduce-$$t || status=1; done; \
	$(MAKE) --no-print-directory results; exit $$status

results: setup  ## assemble RESULTS.md from results/*/summary.json (local runs marked)
	$(PY) -m shared.results

bench: setup  ## performance benchmarks -> BENCHMARKS.md, results/bench.json
	$(PY) -m bench.run $(BENCH_ARGS)

# ORIGINALS: your own checkouts of the original code (never copied into this repository), e.g.
# ORIGINALS="mars_cracknet=/src/Mars-CrackNet dune_vlm=/src/MADS s5mars_ssl=/src/S5Mars_SSL
#            crater_resunet=/src/crater-detection"; an entry left out is reported "not run"
bench-vs-original: setup  ## one training step, ours vs the original code (ORIGINALS="name=path ...") -> BENCHMARKS.md section 5
	$(PY) -m bench.vs_original $(foreach o,$(ORIGINALS),--original $(o)) $(VS_ARGS)

clean:  ## remove generated data, runs and caches (keeps .venv and results/)
	rm -rf datasets runs .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print | xargs rm -rf

distclean: clean  ## clean, and remove .venv too
	rm -rf $(VENV)
