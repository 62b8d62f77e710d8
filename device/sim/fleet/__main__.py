"""`python -m device.sim.fleet --shard SPEC.json`: one child process of a sharded fleet, started
by run_sharded with the spec it wrote; not meant to be run by hand.
"""

import sys

from device.sim.fleet.sharded import shard_main

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--shard":
        sys.exit("usage: python -m device.sim.fleet --shard SPEC.json (used by run_sharded)")
    sys.exit(shard_main(sys.argv[2]))
