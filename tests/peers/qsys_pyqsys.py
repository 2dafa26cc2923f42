#!/usr/bin/env python3
"""Checks a Q-SYS Core (our simulator) with pyqsys 0.0.2, a QRC client nobody on this
project wrote.

Prints `ok <check>` per passed check; exits non-zero with a message on the first failure.
pyqsys waits for each answer without a timeout: the test running this script bounds it.

    python qsys_pyqsys.py --host 127.0.0.1 --port 1710 --password secret
"""

import argparse
import logging
import sys

from pyqsys.qsc_core import Core


class CheckFailed(Exception):
    pass


def ok(check):
    print(f"ok {check}", flush=True)


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def run(core, password):
    if password is not None:
        refused = core.logon("panel", password + "-wrong")
        expect(isinstance(refused, dict) and refused.get("Code") == 10, f"wrong logon: {refused}")
        ok("wrong password refused with error 10")
        expect(core.logon("panel", password) is True, "logon refused")
        ok("logon")
    status = core.status_get()
    expect(status.get("State") == "Active", f"status: {status}")
    ok("status")
    expect(core.Control.set("ProgramGain", -12.5) is True, "Control.Set refused")
    read = core.Control.get(["ProgramGain"])
    expect(read[0]["Name"] == "ProgramGain" and read[0]["Value"] == -12.5, f"Control.Get: {read}")
    ok("Control.Set then Control.Get")
    unknown = core.Control.get(["NoSuchControl"])
    expect(isinstance(unknown, dict) and unknown.get("Code") == 8, f"unknown control: {unknown}")
    ok("unknown control answered with error 8")
    meter = core.Component.get("Program", [{"Name": "meter.1"}])
    expect(meter["Name"] == "Program" and meter["Controls"][0]["Name"] == "meter.1", f"Component.Get: {meter}")
    ok("Component.Get")
    expect(core.ChangeGroup.add_control("peer", ["ProgramGain", "ProgramMute"]) is True, "AddControl refused")
    first = core.ChangeGroup.poll("peer")
    names = sorted(change["Name"] for change in first["Changes"])
    expect(first["Id"] == "peer" and names == ["ProgramGain", "ProgramMute"], f"first poll: {first}")
    again = core.ChangeGroup.poll("peer")
    expect(again["Changes"] == [], f"second poll reports nothing new: {again}")
    core.Control.set("ProgramMute", 1)
    changed = core.ChangeGroup.poll("peer")
    expect([c["Name"] for c in changed["Changes"]] == ["ProgramMute"], f"poll after a set: {changed}")
    ok("change group reports controls once, then only changes")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    core = Core(args.host, args.port)
    core.connect()
    try:
        run(core, args.password)
    except CheckFailed as failure:
        print(f"FAILED: {failure}", flush=True)
        return 1
    finally:
        core.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
