"""The manual's section 5.5.2 (its `pyfi.client.example.api`): the quickstart's sockets as functions and partials.

    from example_api import do_something_p as do_something      # beside this file
"""

from elasticcode.client.api import Socket as Function

do_something = Function(name="pyfi.processors.sample.do_something")
do_something_p = do_something.p

do_this = Function(name="pyfi.processors.sample.do_this")
do_this_p = do_this.p
