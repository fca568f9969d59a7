# The manual's section 5.6 "Running a Parallel Workflow", unchanged but for the import paths (the manual's
# pyfi.client.example.api is example_api.py beside this file).
from elasticcode.client.api import parallel, pipeline, funnel
from example_api import do_something_p as do_something

# Create a pipeline that executes tasks sequentially, passing result to next task
_pipeline = pipeline([
    do_something("One"),
    do_something("Two"),
    # Create a parallel structure that executes tasks in parallel and returns the
    # result list
    parallel([
        do_something("Four"),
        do_something("Five"),
    ]),
    do_something("Three")])

# Create another parallel structure using the above pipeline as one of its tasks
_parallel = parallel([
    _pipeline,
    do_something("Six"),
    do_something("Seven")])

# Create a funnel structure that executes all its tasks passing the result to the
# single, final task
_funnel = funnel([
    do_something("Eight"),
    _parallel,
    do_something("Nine")])

# Gather the result from the _funnel and send it to do_something("Four")
print("FUNNEL: ", _funnel(do_something("Four")).get())
