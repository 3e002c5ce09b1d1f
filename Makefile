# imgsearch task runner. `make run` serves the site on embedded services; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_WEIGHTS := ../shared/weights/mobilenet_v2-imagenet1k.pth
# Weights: a torchvision weights name or a .pth path. Offline here, the shared ImageNet file is used.
export IMGSEARCH_WEIGHTS ?= $(if $(wildcard $(SHARED_WEIGHTS)),$(SHARED_WEIGHTS),DEFAULT)
export DEBUG ?= 1

.PHONY: install run test index manage clean-data

install: $(BIN)/.installed

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

run: install  ## services, migrations, one worker and the web server on http://127.0.0.1:8000
	$(BIN)/python -m imgsearch.embedded run

test: install  ## the whole test suite against real PostgreSQL + pgvector, Redis and Celery workers
	$(BIN)/python -m imgsearch.embedded exec -- $(BIN)/python -m pytest $(PYTEST_ARGS)

index: install  ## index a folder into the running service: make index DIR=~/Pictures
	$(BIN)/python -m imgsearch.embedded exec -- $(BIN)/python manage.py index_images "$(DIR)" --tags-from-folders

manage: install  ## any manage.py command on the embedded services: make manage CMD="measure_search --n 20"
	$(BIN)/python -m imgsearch.embedded exec -- $(BIN)/python manage.py $(CMD)

clean-data:  ## forget the local database, queue and media (under .local/)
	rm -rf .local
