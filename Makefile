# One-command entry points; see README.md.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Run profile of the notebooks under test (ci | cpu | gpu).
ALEXNET_PROFILE ?= ci
export ALEXNET_PROFILE

.PHONY: help install book book-student book-offline pdf notebooks test \
    test-lib bench clean

help:
	@echo "make book   - set up .venv, build the book into _build/html"
	@echo "make book-student - the same book without the solutions"
	@echo "make pdf    - the book as one PDF (needs Chromium)"
	@echo "make test   - set up .venv, run the library tests and the notebooks"
	@echo "make bench  - CPU benchmarks (see benchmarks/)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[book,test]"
	touch $(STAMP)

install: $(STAMP)

# Builds from the executed notebooks as committed (execute_notebooks: off).
# Once, it first copies MathJax and the widget JavaScript into book/vendor/
# with npm, so that math and widgets render with no network; without npm
# (or when npm fails) the book loads them from CDNs instead.
# `make book-offline` insists on the local copy and fails without it.
BOOK_CDN_NOTE := make book: MathJax and the widget JavaScript could not be \
    copied into book/vendor/ (needs npm), so this book loads them from CDNs \
    and shows math and widgets only when online. Install npm (Node.js) and \
    run make book again for a book that works offline.

book: $(STAMP)
	@if [ ! -d book/vendor ]; then \
	    if command -v npm >/dev/null 2>&1 && bash book/tools/vendor_js.sh; \
	    then :; else echo "$(BOOK_CDN_NOTE)" >&2; fi; fi
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(PY) -m zipfile -c _build/html/alexnet-book-notebooks.zip notebooks/*.ipynb
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# The student edition: the instructor edition above without the
# solutions, and its notebooks as one zip (tools/student_edition.py).
book-student: $(STAMP)
	$(PY) tools/student_edition.py _build/student-src
	$(VENV)/bin/jupyter-book build _build/student-src \
	    --path-output _build/student -W -n --keep-going
	cp _build/student-src/notebooks-student.zip _build/student/_build/html/
	@echo "The student edition is at \
	    $(CURDIR)/_build/student/_build/html/index.html"

# The book as one PDF, _build/html/alexnet-book.pdf: headless Chromium
# prints the HTML pages joined in the order of _toc.yml (instructor
# edition; see book/tools/print_pdf.py for the student one).
pdf: book
	$(PY) book/tools/print_pdf.py

book-offline: $(STAMP)
	@if [ ! -d book/vendor ]; then bash book/tools/vendor_js.sh; fi
	$(MAKE) book

# Re-executes every notebook in place under PROFILE (default cpu).
notebooks: $(STAMP)
	cd notebooks && for nb in *.ipynb; do \
	    ALEXNET_PROFILE=$${PROFILE:-cpu} ../$(VENV)/bin/jupyter execute \
	    --inplace $$nb || exit 1; done

test: $(STAMP)
	$(PY) -m pytest tests notebooks --nbval --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

test-lib: $(STAMP)
	$(PY) -m pytest tests

# Throughput records go to results/benchmarks/ (run on a quiet machine).
bench: $(STAMP)
	$(PY) benchmarks/bench_cifar_pipeline.py --crop 32 \
	    --json results/benchmarks/cifar_pipeline_crop32.json
	$(PY) benchmarks/bench_cifar_pipeline.py --crop 24 \
	    --json results/benchmarks/cifar_pipeline_crop24.json
	$(PY) benchmarks/bench_cifar_pipeline.py --crop 27 \
	    --model alexnet_cifar \
	    --json results/benchmarks/cifar_pipeline_alexnet_cifar.json
	$(PY) benchmarks/bench_alexnet_cpu.py \
	    --json results/benchmarks/alexnet_cpu.json
	$(PY) benchmarks/bench_imagenet_scale.py --device cpu \
	    --json results/benchmarks/imagenet_scale_cpu.json

clean:
	rm -rf _build .pytest_cache book/vendor

# The GPU check in one call on a CUDA machine (<= 9 minutes, output in
# $OUT or runs/gpu_check/); DRY=1 walks every step at toy size on a CPU.
.PHONY: gpu-check
gpu-check:
	bash benchmarks/gpu_check.sh $(if $(DRY),--dry-run)
