"""Drives avgate's simulated Blackmagic Videohub with pydeohub, a Videohub client nobody
on this project wrote.

Usage: videohub_pydeohub.py HOST   (pydeohub always connects to TCP 9990)

Waits for the state dump a Videohub sends on connect (device, labels, routing), then
routes and relabels through pydeohub and waits for the hub's status blocks to report the
change. Exits non-zero on anything unexpected.
"""

import os
import sys
import threading
import time

import pydeohub
from pydeohub import Videohub

DEADLINE_S = 10


def until(what, check):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (TypeError, IndexError):
            pass  # the block it needs has not arrived yet
        time.sleep(0.02)
    raise AssertionError(f"no {what} within {DEADLINE_S} s")


class DeferredThread(threading.Thread):
    """pydeohub starts its reader thread in __init__ before it sets the attributes the
    reader fills (routing, labels, model), so a dump read quickly is overwritten with None.
    The reader starts here once the object is complete; the dump waits in the socket."""

    waiting = []

    def start(self) -> None:
        DeferredThread.waiting.append(self)


def connect(host: str) -> Videohub:
    pydeohub.Thread = DeferredThread
    hub = Videohub(host)
    for reader in DeferredThread.waiting:
        threading.Thread.start(reader)
    return hub


def main() -> None:
    hub = connect(sys.argv[1])
    until("state dump", lambda: hub.routing == [0, 1, 2, 3] and all(hub.output_labels))
    assert hub.protocol_version == "2.8", hub.protocol_version
    assert hub.model == "Smart Videohub 4x4", hub.model
    assert (hub.inputs, hub.outputs) == (4, 4), (hub.inputs, hub.outputs)
    assert hub.input_labels == ["Camera 1", "Camera 2", "Lectern PC", "Playback"], hub.input_labels
    assert hub.output_labels[0] == "Projector", hub.output_labels

    hub.route(1, 2)  # output 2 shows input 3 (the protocol counts from 0)
    until("routing report", lambda: hub.routing[1] == 2)
    hub.input_label(3, "Archive")
    until("label report", lambda: hub.input_labels[3] == "Archive")
    print("pydeohub: state dump read, a route and a label changed and reported")


if __name__ == "__main__":
    try:
        main()
    except BaseException as error:
        print(f"pydeohub peer failed: {error!r}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    # pydeohub's reader thread never ends on its own.
    os._exit(0)
