# The two commands of the README. Both create .venv and install everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
# An extra index for the CPU build of torch. These machines' pip config already offers it;
# elsewhere plain PyPI's Linux wheel pulls several GB of CUDA packages, so there run
# `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu` (2.13.0+cpu is preferred to
# 2.13.0: a local version sorts above its public one, and the pin accepts both).
TORCH_INDEX ?=

.PHONY: demo test install clean

install: $(STAMP)

# Reinstall when the dependency files change. torch is pinned through constraints.txt so
# pip takes the CPU wheel instead of pulling several GB of CUDA packages.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -c constraints.txt $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
	  "torch==2.13.0"
	$(BIN)/pip install -c constraints.txt -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The short benchmark (about 8 min on 2 idle cores), configs/presets/demo.yaml: a small
# SynthScenes, a short backbone pretraining beside the LiDAR teacher, the baseline and a
# DualDistill student; prints the table (demo_out/demo.md), saves its plots
# (demo_out/demo_*.png, the BEV picture among them) and a picture of one sample. The demo shows
# the pipeline working end to end and the teacher learning; its students train a twentieth of
# the tiny bench's steps, too few to detect much (mAP under 1 %): DualDistill, whose student
# starts its head from the teacher's, is the method whose gain shows that early (NDS, box sizes
# and headings; demo.yaml has the numbers). The methods' table is benchmarks/tiny.md. (Its runs
# go to bench_demo: the demo before this preset left other commands' runs in demo_out/runs.)
demo: $(STAMP)
	$(BIN)/bevkd bench --preset demo --data $(DEMO_DIR)/synth --runs $(DEMO_DIR)/bench_demo \
	  --out $(DEMO_DIR) --methods dualdistill --no-composite --no-ablations
	$(BIN)/bevkd show --data $(DEMO_DIR)/synth --sample 0 --out $(DEMO_DIR)/sample0.png
	@echo "demo: table $(DEMO_DIR)/demo.md, plots $(DEMO_DIR)/demo_*.png," \
	  "sample $(DEMO_DIR)/sample0.png; the methods compared: benchmarks/tiny.md"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
