"""Checks the MQTT bridge with Eclipse Paho, an MQTT client nobody on this project wrote.

Usage: mqtt_paho.py PORT PREFIX DEVICE
Reads the retained state under PREFIX (the gateway online, DEVICE online, its power as a
JSON envelope with value, seq and ts), then turns DEVICE on through
PREFIX/DEVICE/power/set and waits for an ok result. Fails on anything else or after 8 s.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt


def main() -> int:
    port, prefix, device = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    retained = {}
    have_state = threading.Event()
    result = {}
    have_result = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(f"{prefix}/#", qos=1)

    def on_message(client, userdata, message):
        if message.topic == f"{prefix}/{device}/power/result":
            result.update(json.loads(message.payload))
            have_result.set()
        elif message.retain:
            retained[message.topic] = message.payload
            if {f"{prefix}/status", f"{prefix}/{device}/availability", f"{prefix}/{device}/power"} <= retained.keys():
                have_state.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-peer")
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not have_state.wait(8):
            print(f"FAIL: retained state incomplete: {sorted(retained)}")
            return 1
        failures = 0
        if retained[f"{prefix}/status"] != b"online":
            print(f"FAIL: status {retained[f'{prefix}/status']!r}")
            failures += 1
        if retained[f"{prefix}/{device}/availability"] != b"online":
            print(f"FAIL: availability {retained[f'{prefix}/{device}/availability']!r}")
            failures += 1
        power = json.loads(retained[f"{prefix}/{device}/power"])
        if power.get("value") not in ("off", "on", "warming", "cooling") or not isinstance(power.get("seq"), int) or "ts" not in power:
            print(f"FAIL: power envelope {power}")
            failures += 1
        client.publish(f"{prefix}/{device}/power/set", json.dumps({"on": True}), qos=1)
        if not have_result.wait(8):
            print("FAIL: no result for the power command")
            return 1
        if result.get("ok") is not True:
            print(f"FAIL: power command result {result}")
            failures += 1
        print(f"paho: retained state ok ({len(retained)} topics), command result {result}")
        return 1 if failures else 0
    finally:
        client.loop_stop()
        client.disconnect()


if __name__ == "__main__":
    sys.exit(main())
