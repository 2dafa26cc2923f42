#!/usr/bin/env python3
"""Checks a VISCA over IP camera (our simulator) with visca-over-ip 0.5.2, a client nobody
on this project wrote.

The client binds its inquiry socket to ('', <camera port>) with SO_REUSEADDR, so the
camera must be on another loopback address with SO_REUSEADDR too (127.0.0.2, see
PROTOCOLS.md §5.4). The library is used as published, without patching.

Prints `ok <check>` per passed check; exits non-zero with a message on the first failure.
Every wait is bounded, so a broken simulator fails the run instead of hanging it.

    python visca_visca_over_ip.py --host 127.0.0.2 --port 52381 --pan -16 --tilt 300
"""

import argparse
import sys
import time

from visca_over_ip import Camera
from visca_over_ip.exceptions import ViscaException

# How long a zoom or pan/tilt move may take before the check fails (a full zoom takes
# about 2 s in the simulator).
MOVE_LIMIT_S = 10.0
# Where the lens goes: zoom_to(0.25) is 0x1000 of 0x4000, zoom_to(0.75) is 0x3000.
ZOOM_NEAR, ZOOM_NEAR_POSITION = 0.25, 0x1000
ZOOM_FAR, ZOOM_FAR_POSITION = 0.75, 0x3000
# "Command not executable", what a camera in standby answers to a zoom.
NOT_EXECUTABLE = 0x41


class CheckFailed(Exception):
    pass


def ok(check):
    print(f"ok {check}", flush=True)


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def power_is_on(camera):
    # 0.5.2 has no public power inquiry, so send CAM_PowerInq (81 09 04 00 FF) through
    # the client's own framing; the answer body is `50 02` (on) or `50 03` (standby).
    answer = camera._send_command("04 00", query=True)
    expect(answer in (b"\x50\x02", b"\x50\x03"), f"power inquiry answered {answer.hex(' ')}")
    return answer == b"\x50\x02"


def wait_for_position(camera, zoom, pan_tilt, what):
    """Polls the zoom and pan/tilt inquiries until the camera reports the position:
    moves take time on the camera, so one reading right after a command proves nothing."""
    deadline = time.monotonic() + MOVE_LIMIT_S
    while True:
        got = (camera.get_zoom_position(), camera.get_pantilt_position())
        if got == (zoom, pan_tilt):
            return
        expect(
            time.monotonic() < deadline,
            f"{what}: camera at zoom {got[0]:#06x} pan/tilt {got[1]}, expected {zoom:#06x} {pan_tilt}",
        )
        time.sleep(0.05)


def run_checks(args):
    # The constructor resets the sequence number and clears the interface (IF_Clear).
    camera = Camera(args.host, args.port)
    try:
        ok("connect (RESET + IF_Clear)")

        expect(not power_is_on(camera), "camera should start in standby")
        ok("power inquiry (standby)")

        # A camera in standby refuses motion; the client must surface the error reply.
        try:
            camera.zoom(3)
        except ViscaException as error:
            expect(error.status_code == NOT_EXECUTABLE, f"zoom in standby gave {error}")
            ok(f"zoom in standby refused ({error.description})")
        else:
            raise CheckFailed("zoom in standby was accepted")

        camera.set_power(True)
        expect(power_is_on(camera), "camera not on after set_power(True)")
        ok("power on")

        pan_tilt = (args.pan, args.tilt)
        camera.zoom_to(ZOOM_NEAR)
        wait_for_position(camera, ZOOM_NEAR_POSITION, pan_tilt, "zoom_to")
        ok(f"zoom_to({ZOOM_NEAR}) reached {ZOOM_NEAR_POSITION:#06x}, pan/tilt {pan_tilt}")

        camera.save_preset(args.preset)
        ok(f"preset {args.preset} stored")

        camera.zoom_to(ZOOM_FAR)
        camera.pantilt_home()
        wait_for_position(camera, ZOOM_FAR_POSITION, (0, 0), "zoom_to + home")
        ok(f"moved away: zoom {ZOOM_FAR_POSITION:#06x}, pan/tilt home")

        camera.recall_preset(args.preset)
        wait_for_position(camera, ZOOM_NEAR_POSITION, pan_tilt, "preset recall")
        ok(f"preset {args.preset} recalled")
    finally:
        camera.close_connection()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.2")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pan", type=int, required=True, help="the pan position the camera starts at")
    parser.add_argument("--tilt", type=int, required=True, help="the tilt position the camera starts at")
    parser.add_argument("--preset", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    try:
        run_checks(arguments)
    except CheckFailed as failure:
        sys.exit(f"FAIL visca-over-ip peer: {failure}")
    except Exception as error:  # the library's own errors: ViscaException, NoQueryResponse, socket
        sys.exit(f"FAIL visca-over-ip peer: {type(error).__name__}: {error}")
