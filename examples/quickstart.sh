#!/usr/bin/env bash
# The manual's quickstart (section 5.5) on the local stack, with a local git repository in place
# of https://github.com/radiantone/pyfi-processors (processors load code from git, never from you).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
home="${ELASTICCODE_HOME:-$HOME/.elasticcode}"
repo="$home/examples/pyfi-processors"

# 1. A git repository holding the sample module (re-created so the script can run again).
rm -rf "$repo" && mkdir -p "$repo" && cp -r "$here/pyfi-processors/." "$repo/"
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=quickstart -c user.email=quickstart@localhost commit -q -m "sample processors"

# 2. Start from a clean network so the script can be run again.
flow delete processor -n proc1 2>/dev/null || true
flow delete queue -n pyfi.queue1 2>/dev/null || true

# 3. The manual's commands. Concurrency is 1 here: processors run at scale (one process per
#    CPU core), and the manual's -c 5 would stay pending on a machine with fewer than 5 free cores.
flow add queue -n pyfi.queue1 -t direct
flow add processor -n proc1 -g "$repo" -m pyfi.processors.sample -h localhost -c 1
flow add socket -n pyfi.processors.sample.do_something -q pyfi.queue1 -pn proc1 -t do_something
flow add socket -n pyfi.processors.sample.do_this -q pyfi.queue1 -pn proc1 -t do_this
flow ls processors
flow ls sockets

# 4. Run a task (the first call waits while the agent builds the processor's environment).
flow task run --socket pyfi.processors.sample.do_this --data "['some data']" --timeout 300

# 5. Plug do_something into do_this, pipe data in, and draw the call tree.
flow add plug -n sample.plug -s pyfi.processors.sample.do_something -t pyfi.processors.sample.do_this
sleep 1
root=$(echo "HI THERE!" | flow --json task run -s pyfi.processors.sample.do_something --timeout 60 |
       python3 -c "import json,sys; r = json.load(sys.stdin); print(r['result'], file=sys.stderr); print(r['id'])")
# Provenance is written in batches, off the hot path: wait until the plugged child is recorded.
for _ in $(seq 60); do
  children=$( (flow --json ls call --id "$root" --tree | python3 -c "import json,sys; print(len(json.load(sys.stdin)['children']))") 2>/dev/null || echo 0)
  [ "$children" -ge 1 ] && break
  sleep 0.5
done
flow ls call --id "$root" --tree
