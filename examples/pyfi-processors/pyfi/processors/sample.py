"""The manual's sample processor module (pyfi.processors.sample), used by the quickstart."""

import time


def do_something(message):
    """do_something"""
    return "TEXT:" + str(message)


def do_this(message):
    return "Do this: " + str(message)


def add_two(one, two):
    """Fires once both arguments have arrived (see the data-flows chapter)."""
    return one + two


def slow(message, seconds=3):
    time.sleep(seconds)
    return message
