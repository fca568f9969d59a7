"""The recorder's hand-made fast paths give what the standard library gives, for any input.

The recorder handles every call event of the cluster, so it builds event ids, stream fields and
COPY text by hand rather than through `uuid`, `dataclasses` and `csv`; these properties hold those
shortcuts to the library they replace.
"""

from __future__ import annotations

import csv
import io
import uuid

from hypothesis import given
from hypothesis import strategies as st

from elasticcode.runtime.events import CallEvent
from kernel_agent.recorder import EVENT_NAMESPACE, stable_uuid
from kernel_agent.staging import csv_field

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)  # what `str.encode()` takes


@given(text)
def test_stable_uuid_is_rfc4122_uuid5(name):
    assert stable_uuid(name) == str(uuid.uuid5(EVENT_NAMESPACE, name))


optional_text = st.none() | text.filter(bool)  # an empty field is left off the stream, so it reads back as None


@given(call=text.filter(bool), event=text.filter(bool), ts=st.floats(allow_nan=False, allow_infinity=False),
       socket=optional_text, result=optional_text, duration=st.none() | st.floats(allow_nan=False, allow_infinity=False),
       deliveries=st.none() | st.integers(0, 2**31), peak_memory=st.none() | st.integers(0, 2**62),
       started=st.none() | st.floats(allow_nan=False, allow_infinity=False))
def test_an_event_reads_back_from_its_stream_fields(call, event, ts, socket, result, duration, deliveries, peak_memory,
                                                    started):
    sent = CallEvent(call, event, ts, socket=socket, result=result, duration=duration, deliveries=deliveries,
                     peak_memory=peak_memory, started=started)
    assert CallEvent.from_fields(sent.to_fields()) == sent


@given(st.lists(st.none() | text | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.booleans(),
                min_size=1, max_size=6))
def test_a_copy_line_reads_back_with_the_csv_module(values):
    line = ",".join(["id", *(csv_field(v) for v in values)]) + "\n"  # a first column, as a row's id
    (read,) = csv.reader(io.StringIO(line))
    # COPY's CSV format: an unquoted empty field is NULL, a quoted one the empty string (which the
    # csv module reads alike); anything else is the value's text.
    expected = ["" if v is None else ("true" if v else "false") if isinstance(v, bool) else
                v if isinstance(v, str) else repr(v) for v in values]
    assert read == ["id", *expected]
    assert [csv_field(v) == "" for v in values] == [v is None for v in values]
