"""supervisor event listener: stop supervisord when any program goes FATAL.

supervisord.conf explains why. The protocol: write READY, read a header line and a payload, answer
RESULT; see http://supervisord.org/events.html.
"""

import os
import signal
import sys


def main() -> None:
    """Wait for PROCESS_STATE_FATAL events and send supervisord (our parent) SIGTERM."""
    while True:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:  # supervisord is gone
            return
        header = dict(token.split(":", 1) for token in line.split())
        payload = sys.stdin.read(int(header["len"]))
        sys.stdout.write("RESULT 2\nOK")
        sys.stdout.flush()
        if header.get("eventname") == "PROCESS_STATE_FATAL":
            print(f"exit_on_fatal: {payload}; stopping supervisord", file=sys.stderr, flush=True)
            os.kill(os.getppid(), signal.SIGTERM)


if __name__ == "__main__":
    main()
