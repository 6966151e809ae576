# The two commands of the README. Both create .venv and install everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: demo test install clean

install: $(STAMP)

# Reinstall when the dependency files change. torch is pinned through constraints.txt so
# pip takes the CPU wheel instead of pulling several GB of CUDA packages.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -c constraints.txt "torch==2.13.0"
	$(BIN)/pip install -c constraints.txt -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/bevkd synth --out $(DEMO_DIR)/synth --scenes 4 --samples-per-scene 6 --seed 0 --width 800 --height 450
	$(BIN)/bevkd show --data $(DEMO_DIR)/synth --sample 0 --out $(DEMO_DIR)/sample0.png
	@echo "demo: dataset in $(DEMO_DIR)/synth, picture in $(DEMO_DIR)/sample0.png"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
