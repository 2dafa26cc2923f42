"""Drives avgate's simulated NEC display with NEC's own Python SDK (nec-pd-sdk).

Usage: nec_display_sdk.py HOST PORT

Reads the power state, sets and reads back volume and input through the SDK's generic
get/set parameter commands, then switches the display off. Exits non-zero, with the SDK's
own error, on any frame the SDK does not accept (checksum, header, lengths, reply types).
"""

import sys

from nec_pd_sdk.nec_pd_sdk import NECPD

VOLUME = 0x0062
INPUT = 0x0060
HDMI2 = 0x0012


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    pd = NECPD.from_ip_address(host, port)
    try:
        state = pd.command_power_status_read()
        assert state == 1, f"power state {state}, expected 1 (on)"

        pd.command_set_parameter(VOLUME, 55)
        volume = pd.command_get_parameter(VOLUME)
        assert volume.result == 0, volume
        assert volume.current_value == 55, volume

        pd.command_set_parameter(INPUT, HDMI2)
        source = pd.command_get_parameter(INPUT)
        assert source.current_value == HDMI2, source

        assert pd.command_power_status_set(4) == 4
        state = pd.command_power_status_read()
        # 2 (standby) and 4 (off) both read as off: the profile maps both to `off`.
        assert state in (2, 4), f"power state {state} after switching off, expected 2 or 4"
    finally:
        pd.close()
    print("nec-pd-sdk: power, volume and input read and set")


if __name__ == "__main__":
    main()
