# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo-data

.PHONY: install run test lint bench

# Re-install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Opens the app with the built-in demo data (generated on first use). First checks the
# system libraries Qt's window needs (on Debian/Ubuntu: prints the apt-get line, and runs
# it when make runs as root).
run: install
	$(BIN)/python -m app.qt_system_libs --install
	test -d $(DEMO)/train || $(BIN)/diesight demo-data $(DEMO) --n 3000
	$(BIN)/diesight gui $(DEMO)

# The whole test suite, headless.
test: install
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check app core tests
