"""`%flow` in a real IPython shell: listings as DataFrames, one-line UsageErrors."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython


@pytest.fixture(scope="module")
def ip():
    shell = start_ipython()
    shell.run_line_magic("load_ext", "elasticcode")
    return shell


def test_listing_is_a_dataframe(ip, flow, sample_repo):
    ip.run_line_magic("flow", "add queue -n pyfi.queue1 -t direct")
    ip.user_ns["repo"] = str(sample_repo)
    ip.run_cell("df = %flow ls queues")
    frame = ip.user_ns["df"]
    assert isinstance(frame, pd.DataFrame) and list(frame["name"]) == ["pyfi.queue1"]
    # {var} expands Python variables, the IPython way
    ip.run_line_magic("flow", "add processor -n proc1 -g {repo} -m pyfi.processors.sample")
    assert list(ip.run_line_magic("flow", "ls processors")["gitrepo"]) == [str(sample_repo)]


def test_errors_are_one_line_usage_errors(ip, flow):
    with pytest.raises(UsageError, match="nosuch"):
        ip.run_line_magic("flow", "add socket -n s -q q -pn nosuch -t f")
    with pytest.raises(UsageError, match="No such option"):
        ip.run_line_magic("flow", "ls queues --bogus")
    with pytest.raises(UsageError, match="cannot parse"):
        ip.run_line_magic("flow", "add queue -n 'unclosed")
    assert ip.run_line_magic("flow", "ls queues") is not None  # the shell is still fine
