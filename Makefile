# The two commands of the README: `make demo` and `make test`.
.PHONY: demo test ui clean bootstrap

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/subsync demo

test: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/python -m pytest -n auto

ui: bootstrap
	mkdir -p data/dagster_home
	DAGSTER_HOME=$(CURDIR)/data/dagster_home .venv/bin/dagster dev

clean:
	rm -rf data
