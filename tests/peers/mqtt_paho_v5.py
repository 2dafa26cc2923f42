"""Checks the MQTT bridge's MQTT 5 request/response with Eclipse Paho's MQTTv5 client.

Usage: mqtt_paho_v5.py PORT PREFIX DEVICE
Sends PREFIX/DEVICE/power/set {"on": true} with a ResponseTopic and CorrelationData, then
a malformed request with other correlation data, and expects each outcome on the response
topic with its own request's correlation data (ok, and invalid_message). A third request
names a state topic (PREFIX/DEVICE/power) as its response topic: it is refused
(invalid_message) on PREFIX/DEVICE/power/result, still correlated, and nothing else lands
there.
Fails on anything else or after 8 s.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main() -> int:
    port, prefix, device = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    response_topic = "replies/paho-v5"
    replies = {}
    both = threading.Event()
    on_result = {}
    refused = threading.Event()
    subscribed = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(response_topic, qos=1)
        client.subscribe(f"{prefix}/{device}/power/result", qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        if mid == 2:
            subscribed.set()

    def on_message(client, userdata, message):
        correlation = getattr(message.properties, "CorrelationData", None)
        if message.topic != response_topic:
            on_result[correlation] = json.loads(message.payload)
            refused.set()
            return
        replies[correlation] = json.loads(message.payload)
        if len(replies) >= 2:
            both.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="paho-v5-peer", protocol=mqtt.MQTTv5
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not subscribed.wait(8):
            print("FAIL: no SUBACK")
            return 1
        for correlation, payload in ((b"request-1", json.dumps({"on": True})), (b"request-2", "not json")):
            properties = Properties(PacketTypes.PUBLISH)
            properties.ResponseTopic = response_topic
            properties.CorrelationData = correlation
            client.publish(f"{prefix}/{device}/power/set", payload, qos=1, properties=properties)
        if not both.wait(8):
            print(f"FAIL: replies {replies}")
            return 1
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = f"{prefix}/{device}/power"
        properties.CorrelationData = b"request-3"
        client.publish(f"{prefix}/{device}/power/set", json.dumps({"on": True}), qos=1, properties=properties)
        if not refused.wait(8):
            print("FAIL: no refusal for a response topic among the state topics")
            return 1
        failures = 0
        if set(replies) != {b"request-1", b"request-2"}:
            print(f"FAIL: correlation data {sorted(replies)}")
            failures += 1
        turned_on = replies.get(b"request-1", {})
        if turned_on.get("ok") is not True or not turned_on.get("id"):
            print(f"FAIL: request-1: {turned_on}")
            failures += 1
        malformed = replies.get(b"request-2", {})
        if malformed.get("ok") is not False or malformed.get("error", {}).get("code") != "invalid_message":
            print(f"FAIL: request-2: {malformed}")
            failures += 1
        misplaced = on_result.get(b"request-3", {})
        if set(on_result) != {b"request-3"} or misplaced.get("error", {}).get("code") != "invalid_message":
            print(f"FAIL: on {prefix}/{device}/power/result: {on_result}")
            failures += 1
        print(f"paho v5: {len(replies)} correlated replies on {response_topic}")
        return 1 if failures else 0
    finally:
        client.loop_stop()
        client.disconnect()


if __name__ == "__main__":
    sys.exit(main())
