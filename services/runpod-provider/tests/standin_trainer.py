"""A tiny stand-in for the trainer (DESIGN §6 contract), copied into fake pods by the tests.

The feature set steers it: a file ``SLEEP`` holding seconds makes it sleep (printing a line
first), a file ``EXIT`` holding a status makes it exit with that status.
"""

import json
import os
import sys
import time


def main(argv):
    command, args = argv[0], dict(zip(argv[1::2], argv[2::2], strict=False))
    feature_set = args["--feature-set"]
    print(f"stand-in trainer: {command} {feature_set}", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    sleep = os.path.join(feature_set, "SLEEP")
    if os.path.exists(sleep):
        print("sleeping", flush=True)
        time.sleep(float(open(sleep).read()))
    fail = os.path.join(feature_set, "EXIT")
    if os.path.exists(fail):
        print("failing on purpose", flush=True)
        return int(open(fail).read())
    if command == "validate":
        with open(args["--report"], "w") as f:
            json.dump({"passed": True, "checks": ["shape"]}, f)
        return 0
    out = args["--output"]
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    for side in ("long", "short"):
        with open(os.path.join(out, "models", f"{side}.bin"), "wb") as f:
            f.write(side.encode())
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"long": {"auc": 0.61}, "short": {"auc": 0.58}}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
