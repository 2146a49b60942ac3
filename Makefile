# Mirage Explorer — set-up and entry points.
# `make demo` and `make test` each bootstrap everything on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
DEMO_OUT ?= out/walkthrough
MINI_DEMO_OUT ?= out/mini-demo.mp4

# Debian packages: EGL/Mesa for headless moderngl, Xvfb + xcb libraries for Qt GL widgets under test.
APT_GL := libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libglx-mesa0
APT_X := xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
         libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 \
         libxkbcommon0 libfontconfig1 libdbus-1-3

.PHONY: demo test venv system-deps clean train-mini train-mini-gpu

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned, so CPU machines take the local CPU build and nothing pulls another one
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]' $(TORCH_PIN)
	touch $(STAMP)

# Installs missing Debian packages when running as root with apt; otherwise only reports what is missing.
system-deps:
	@missing=""; for p in $(APT_GL) $(APT_X); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "warning: missing system packages:$$missing (install them with your package manager)"; fi

# The explorer on the bundled scene (the shipped mirage-mini model unless a Wan model folder is configured in
# the settings); without a display main.py exits 3 and the headless walkthrough runs instead, then a short
# mirage-mini video of a closed orbit (out/mini-demo.mp4).
demo: $(STAMP) system-deps
	@$(PY) main.py; code=$$?; \
	if [ $$code -eq 3 ]; then echo "no display: running the headless walkthrough instead (writes $(DEMO_OUT)/)"; \
	  $(PY) main.py walkthrough --out $(DEMO_OUT) || exit $$?; \
	  echo "and a short video with the shipped mirage-mini model (writes $(MINI_DEMO_OUT))"; \
	  $(PY) main.py generate --backend mini --trajectory closed-orbit --segments 2 --out $(MINI_DEMO_OUT); \
	else exit $$code; fi

test: $(STAMP) system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest

# Re-train the shipped mirage-mini from random weights (~7.4 h on 2 CPU cores; MODEL_CARD.md): stage 1 trains the
# transformer and memory branch on 2,400 worlds, stage 2 continues from it with the readout refiner added, stage 3
# continues on all 5,000 training worlds, stage 4 trains for the shipped 2-step sampler (sampler levels, rollout),
# stage 5 continues it, stage 6 weights the cells the memory readout missed 3x in the loss, stage 7 grows the
# transformer from 4 to 6 blocks (the new ones start as the identity) and trains on.
MINI_OUT ?= out/mini
MINI_COMMON := --stage mini --data procedural --batch-size 8 --layers 4 --heads 4 --head-dim 32 --ffn-dim 256 \
               --branch-layers 0,2 --shift 1.0 --heldout-scenes 6 --checkpoint-every 100 --cache-dir $(MINI_OUT)/cache \
               --cache-workers 2
train-mini: $(STAMP) system-deps
	$(PY) main.py train $(MINI_COMMON) --scenes 2400 --out $(MINI_OUT)/stage1 --steps 2000 --warmup-steps 100 --lr 1e-3
	$(PY) main.py train $(MINI_COMMON) --scenes 2400 --out $(MINI_OUT)/stage2 --steps 1000 --warmup-steps 50 --lr 5e-4 \
	    --init $(MINI_OUT)/stage1/model --refiner-width 64
	$(PY) main.py train $(MINI_COMMON) --scenes 5000 --out $(MINI_OUT)/stage3 --steps 1598 --warmup-steps 50 --lr 3e-4 \
	    --init $(MINI_OUT)/stage2/model --refiner-width 64
	$(PY) main.py train $(MINI_COMMON) --scenes 5000 --out $(MINI_OUT)/stage4 --steps 1361 --warmup-steps 50 --lr 3e-4 \
	    --init $(MINI_OUT)/stage3/model --refiner-width 64 --sampler-steps 2 --sampler-share 0.5 --rollout
	$(PY) main.py train $(MINI_COMMON) --scenes 5000 --out $(MINI_OUT)/stage5 --steps 734 --warmup-steps 20 --lr 2e-4 \
	    --seed 1 --init $(MINI_OUT)/stage4/model --refiner-width 64 --sampler-steps 2 --sampler-share 0.5 --rollout
	$(PY) main.py train $(MINI_COMMON) --scenes 5000 --out $(MINI_OUT)/stage6 --steps 1037 --warmup-steps 20 --lr 2e-4 \
	    --seed 2 --init $(MINI_OUT)/stage5/model --refiner-width 64 --sampler-steps 2 --sampler-share 0.5 --rollout \
	    --hole-weight 3
	$(PY) main.py train $(MINI_COMMON) --layers 6 --scenes 5000 --out $(MINI_OUT)/stage7 --steps 1057 --warmup-steps 50 \
	    --lr 3e-4 --seed 4 --init $(MINI_OUT)/stage6/model --refiner-width 64 --sampler-steps 2 --sampler-share 0.5 \
	    --rollout --hole-weight 3
	@echo "mirage-mini: $(MINI_OUT)/stage7/model (ship it: cp $(MINI_OUT)/stage7/model/{model.safetensors,config.json} resources/models/mirage-mini/)"

# The same recipe larger, on one CUDA GPU (issue 12's GPU recipe): every training world (seeds 0-4999) built by
# 16 processes and kept on the GPU, a 5.9 M-parameter model (23.8 MB, under the 25 MB limit), batch 64, the run
# cut to MINI_GPU_MINUTES of wall time (data preparation included; --steps is lowered after timing 20 steps).
MINI_GPU_MINUTES ?= 9
train-mini-gpu: $(STAMP) system-deps
	$(PY) main.py train --stage mini --data procedural --scenes 5000 --batch-size 64 --layers 6 --heads 6 \
	    --head-dim 32 --ffn-dim 768 --branch-layers 0,3 --refiner-width 64 --shift 1.0 --heldout-scenes 6 \
	    --steps 30000 --warmup-steps 200 --lr 1e-3 --eval-every 500 --checkpoint-every 2000 --cache-workers 16 \
	    --worlds-on-device --sampler-steps 2 --sampler-share 0.5 --rollout --hole-weight 3 \
	    --max-minutes $(MINI_GPU_MINUTES) --out $(MINI_OUT)/gpu

clean:
	rm -rf $(VENV) out tests/artifacts
