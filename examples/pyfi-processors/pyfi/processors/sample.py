"""The manual's sample processor module (pyfi.processors.sample), used by the quickstart and the
workflow examples. In a workflow a step's input comes first, then the step's own arguments
(`do_something("Two")` after a step that returned r runs do_something(r, "Two")), hence *messages.
"""

import time


def do_something(*messages):
    """do_something"""
    return "TEXT:" + "|".join(str(m) for m in messages)


def do_this(*messages):
    return "Do this: " + ", ".join(str(m) for m in messages)


def add_two(one, two):
    """Fires once both arguments have arrived (see the data-flows chapter)."""
    return one + two


def fail(*messages):
    raise ValueError("cannot handle " + "|".join(str(m) for m in messages))


def slow(message, seconds=3):
    time.sleep(seconds)
    return message
