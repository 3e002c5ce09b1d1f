"""The documents a newcomer reads first stay true: README leads with the two commands and stays a user's guide, and
the figures in docs/retrieval.md are those of the benchmark report."""

import json

from bench import retrieval_figures

from .conftest import ROOT


def test_the_readme_leads_with_the_two_commands_and_stays_a_users_guide():
    """`make run` and `make test` come first (CI runs the latter); at most 15 KB, the rest lives in docs/."""
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```", 2)[1]
    assert [line.split()[:2] for line in first_block.strip().splitlines()[1:]] == [["make", "run"], ["make", "test"]]
    assert len(readme.encode()) <= 15_000
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_retrieval_page_s_figures_are_those_of_the_benchmark_report():
    """docs/retrieval.md's figures block is what bench/retrieval_figures.py writes from docs/benchmarks.json: a
    figure edited by hand, or a report measured again without the page being written, fails here."""
    page = (ROOT / "docs" / "retrieval.md").read_text()
    parts = json.loads((ROOT / "docs" / "benchmarks.json").read_text())["parts"]
    assert retrieval_figures.BEGIN in page and retrieval_figures.END in page
    assert retrieval_figures.rewrite(page, parts) == page
    assert "Recall@1 of copies with three edits" in page  # the block is not empty
