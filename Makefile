# Two commands on a fresh machine: `make demo` and `make test`. Each creates the venv it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch, installed first where no NVIDIA GPU is present; a plain `torch`
# requirement would otherwise pull a multi-GB CUDA build.
TORCH_CPU := torch==2.13.0

.PHONY: demo test bench gpu-check venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "GPU found: installing torch from the package index"; \
	else \
		echo "no GPU: installing the CPU build of torch ($(TORCH_CPU))"; \
		$(BIN)/pip install --quiet $(TORCH_CPU); \
	fi
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/qlorafx train recipes/quickstart.yaml --overwrite

# The web page's browser tests drive Debian's Chromium (Playwright's own browser download cannot run
# offline); installed here when missing and we may, else those tests skip and say why.
test: venv
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing chromium for the web page's browser tests"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
				|| echo "note: apt-get could not install chromium: the browser tests will skip"; \
		else \
			echo "note: no /usr/bin/chromium and no root apt-get to install it: the browser tests will skip"; \
		fi; \
	fi
	$(BIN)/python -m pytest -q

# The data-path benchmark (needs ../shared/data); writes bench/RESULTS.md. Minutes, not for CI.
bench: venv
	$(BIN)/pip install --quiet "trl>=1.0" "datasets>=3.0"
	cd bench && ../$(BIN)/python run.py

# The GPU check (bench/gpu.py): Llama 3.1 8B shape, qlorafx against its estimate and the qlora.py set-up;
# writes bench/RESULTS-gpu.md. Needs an NVIDIA GPU; minutes. `python bench/gpu.py --tiny` checks it on CPU.
gpu-check: venv
	$(BIN)/python bench/gpu.py

clean:
	rm -rf $(VENV) runs
