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

# The short benchmark (10-15 min on 2 idle cores): a small SynthScenes, a short backbone
# pretraining, the LiDAR teacher, the baseline student and a BEVDistill student; prints the
# table and saves its plots (demo_out/tiny*.png) and a picture of one sample. It trains on
# 64x176 images (the tiny preset's are 96x264) and 4 epochs to stay near 10 minutes: the demo
# shows the pipeline working end to end; the bench's table is benchmarks/tiny.md.
demo: $(STAMP)
	$(BIN)/bevkd synth --out $(DEMO_DIR)/synth --scenes 8 --samples-per-scene 10 --seed 0 \
	  --width 800 --height 450
	$(BIN)/bevkd show --data $(DEMO_DIR)/synth --sample 0 --out $(DEMO_DIR)/sample0.png
	$(BIN)/bevkd bench --preset tiny --data $(DEMO_DIR)/synth --runs $(DEMO_DIR)/runs \
	  --out $(DEMO_DIR) --methods bevdistill --no-composite --no-ablations --seeds 1 \
	  --pretrain-steps 150 --set train.epochs=4 --set "data.image.final_size=[64,176]" \
	  --set "data.image.resize_lim=[0.21,0.26]"
	@echo "demo: table $(DEMO_DIR)/tiny.md, plots $(DEMO_DIR)/tiny_*.png," \
	  "sample $(DEMO_DIR)/sample0.png"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
