#!/usr/bin/env python3
"""Generate the demo fleet snapshot that seeds the `local` hub.

    python3 examples/gen-demo-fleet.py > examples/demo-fleet.ndjson

Writes NDJSON, one twin per line, in IoT Hub's twin JSON shape, sorted by
device id and then module id (each device twin before its module twins):
300 devices, each with its device twin and, for all but a few, the
`azureiotsecurity` module twin of the legacy Azure IoT Security agent.

Deterministic: a fixed seed and fixed dates, stdlib only. The only input is
schemas/azureiotsecurity.schema.json, for the defaults twinops fills in.

The fleet tells one story. twinops applied the policies twice: on 2024-09-02
(an older policy set: snapshots every 13 hours, production high-priority
messages every 5 minutes, no edge or exception policy) and on 2024-11-04 (the
policies now in policies/). The snapshot is taken on 2024-11-25. The site
sin1 was onboarded after the last apply. Each module twin falls in one
category:

  configured    desired is exactly what policies/ compiles to (the whole
                object, defaults filled in) and the agent reports it back
  unconfigured  the module exists but has no desired configuration yet (sin1
                and devices registered after 2024-11-04); the agent, if it
                ever connected, reports its own defaults
  drifted       configured, then someone patched one leaf by hand; the agent
                reports the hand-set value
  lagging       the 2024-11-04 write is in desired, but the device went
                offline (or was disabled) before it picked it up, so reported
                still shows the 2024-09-02 configuration or agent defaults
  no module     the device has no azureiotsecurity module at all

Every agent is the C agent (Azure-IoT-Security-Agent-C 0.0.6), so reported
copies use its spelling: lower-case priorities, its canonical duration form,
eventPriorityOperational included, no keys it does not know, and a
maxLocalCacheSizeInBytes of 10485760 when desired does not set one.

The POLICIES table below mirrors policies/*.yaml. Change both together.

etag and version follow the arithmetic IoT Hub's samples show (see the
twinops reference on twin metadata): etag is base64 of the big-endian int64
desired $version + tag writes; version is desired $version + reported
$version + tag writes.
"""

import base64
import json
import random
import struct
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

SEED = 20241125
SNAPSHOT = datetime(2024, 11, 25, 10, 0, 0, tzinfo=timezone.utc)
APPLY_1 = datetime(2024, 9, 2, 8, 15, 0, tzinfo=timezone.utc)
APPLY_2 = datetime(2024, 11, 4, 9, 30, 0, tzinfo=timezone.utc)
SIN1_ONBOARDED = datetime(2024, 11, 12, 7, 0, 0, tzinfo=timezone.utc)
NEVER = "0001-01-01T00:00:00Z"

MODULE = "azureiotsecurity"
CONFIG = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration"
SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "azureiotsecurity.schema.json"

# Sites: (site, sensors, gateways). 300 devices in all.
SITES = [("ams1", 85, 9), ("dub2", 75, 8), ("sea1", 62, 7), ("sin1", 49, 5)]

# Category sizes among the 246 devices outside sin1 (all of sin1 is unconfigured
# or without the module): 5 + 64 + 33 + 28 + 170 = 300.
NO_MODULE_SIN1, NO_MODULE_ELSEWHERE = 3, 2
UNCONFIGURED_ELSEWHERE = 13
DRIFTED, LAGGING = 33, 28
FORCED = {"sensor-ams1-0042": "configured"}


# --- policies (mirror of policies/*.yaml) -----------------------------------

def is_production(d):
    return d["tags"]["environment"] == "production"


POLICIES = [
    {   # policies/baseline.yaml, target: "*"
        "name": "security-baseline", "priority": 0, "target": lambda d: True,
        "config": {
            "highPriorityMessageFrequency": "PT7M",
            "lowPriorityMessageFrequency": "PT5H",
            "snapshotFrequency": "PT6H",
            "maxLocalCacheSizeInBytes": 2560000,
            "maxMessageSizeInBytes": 204800,
            "eventPriorityDiagnostic": "Low",
            "eventPriorityLogin": "High",
            "eventPriorityListeningPorts": "High",
            "eventPriorityLocalUsers": "High",
            "baselineCustomChecksEnabled": False,
        },
    },
    {   # policies/production.yaml, target: tags.environment = 'production'
        "name": "production-hardening", "priority": 10, "target": is_production,
        "config": {
            "highPriorityMessageFrequency": "PT2M",
            "lowPriorityMessageFrequency": "PT1H",
            "eventPriorityLogin": "High",
            "eventPriorityProcessCreate": "High",
            "eventPriorityFirewallConfiguration": "High",
        },
    },
    {   # policies/production.yaml,
        # target: tags.environment = 'production' AND capabilities.iotEdge = true
        "name": "production-edge", "priority": 20,
        "target": lambda d: is_production(d) and d["capabilities"]["iotEdge"] is True,
        "config": {
            "maxMessageSizeInBytes": 258048,
            "maxLocalCacheSizeInBytes": 10485760,
            "eventPriorityConnectionCreate": "High",
            "aggregationIntervalConnectionCreate": "PT15M",
        },
    },
    {   # policies/lab.yaml, target: tags.environment = 'lab'
        "name": "lab-diagnostics", "priority": 10,
        "target": lambda d: d["tags"]["environment"] == "lab",
        "config": {
            "eventPriorityDiagnostic": "High",
            "aggregationEnabledProcessCreate": False,
            "aggregationEnabledConnectionCreate": False,
            "aggregationEnabledProcessTerminate": False,
        },
    },
    {   # policies/exceptions.yaml, target: deviceId = 'sensor-ams1-0042'
        "name": "exception-sensor-ams1-0042", "priority": 100,
        "target": lambda d: d["deviceId"] == "sensor-ams1-0042",
        "config": {
            "snapshotFrequency": "PT1H",
            "eventPriorityOSBaseline": "High",
            "baselineCustomChecksEnabled": True,
            "baselineCustomChecksFilePath": "/etc/azureiotsecurity/custom-baseline-ams1.xml",
            "baselineCustomChecksFileHash":
                "3f7a9c2e41d85b06e9c4a1f27b3d8e50c6a94f1d2e7b80c3a5f96d14e2b7c08a",
        },
    },
]

# The policy set of the first apply (2024-09-02): snapshots every 13 hours,
# production high-priority messages every 5 minutes and no firewall override,
# no edge or exception policy yet.
OLD_POLICIES = [
    {**POLICIES[0], "config": {**POLICIES[0]["config"], "snapshotFrequency": "PT13H"}},
    {**POLICIES[1], "config": {
        "highPriorityMessageFrequency": "PT5M",
        "lowPriorityMessageFrequency": "PT1H",
        "eventPriorityLogin": "High",
        "eventPriorityProcessCreate": "High",
    }},
    POLICIES[3],
]

# Hand edits found on drifted twins: (key, value, weight).
DRIFTS = [
    ("highPriorityMessageFrequency", "PT30M", 14),
    ("eventPriorityProcessCreate", "Off", 6),
    ("lowPriorityMessageFrequency", "PT12H", 4),
    ("eventPriorityLogin", "Low", 4),
    ("maxLocalCacheSizeInBytes", 1024000, 3),
    ("snapshotFrequency", "P1D", 2),
]


def load_schema():
    with SCHEMA.open(encoding="utf-8") as f:
        return json.load(f)


def compile_config(device, policies, schema):
    """What twinops writes: policies merged by ascending priority, then every
    schema default filled in, keys in schema order."""
    merged = {}
    for policy in sorted(policies, key=lambda p: p["priority"]):
        if policy["target"](device):
            merged.update(policy["config"])
    config = {}
    for key, prop in schema["properties"].items():
        if key in merged:
            config[key] = {"value": merged[key]}
        elif "default" in prop:
            config[key] = {"value": prop["default"]["value"]}
    return config


# --- what the C agent reports ------------------------------------------------

C_KEYS = [
    "highPriorityMessageFrequency", "lowPriorityMessageFrequency", "snapshotFrequency",
    "maxLocalCacheSizeInBytes", "maxMessageSizeInBytes",
    "baselineCustomChecksEnabled", "baselineCustomChecksFilePath", "baselineCustomChecksFileHash",
    "eventPriorityListeningPorts", "eventPriorityProcessCreate", "eventPrioritySystemInformation",
    "eventPriorityLocalUsers", "eventPriorityLogin", "eventPriorityConnectionCreate",
    "eventPriorityFirewallConfiguration", "eventPriorityOSBaseline", "eventPriorityDiagnostic",
    "eventPriorityOperational",
    "aggregationEnabledProcessCreate", "aggregationIntervalProcessCreate",
    "aggregationEnabledConnectionCreate", "aggregationIntervalConnectionCreate",
]
C_DEFAULT_OVERRIDES = {"maxLocalCacheSizeInBytes": 10485760}
UNIT_MS = {"D": 86_400_000, "H": 3_600_000, "M": 60_000, "S": 1000}


def duration_ms(text):
    """Milliseconds of a duration in the P[nD][T[nH][nM][nS]] subset."""
    total, number, in_time = 0, "", False
    for ch in text[1:]:
        if ch == "T":
            in_time = True
        elif ch.isdigit():
            number += ch
        else:
            unit = "M" if ch == "M" and in_time else ch
            if ch == "M" and not in_time:
                raise ValueError(f"months are outside the subset: {text}")
            total += int(number) * UNIT_MS[unit]
            number = ""
    return total


def c_duration(text):
    """The C agent's canonical spelling: P[nM][nW][nD][T[nH][nM][nS]], a month
    being 30 days and a week 7 days (PT60M -> PT1H, P9D -> P1W2D)."""
    ms = duration_ms(text)
    seconds = ms // 1000
    days, rest = divmod(seconds, 86400)
    months, days = divmod(days, 30)
    weeks, days = divmod(days, 7)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    date = "".join(f"{n}{u}" for n, u in ((months, "M"), (weeks, "W"), (days, "D")) if n)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + date + ("T" + time if time else "")


def c_reported(desired_config, schema):
    """The reported copy a C agent writes for a desired configuration object
    (None: no configuration, all defaults)."""
    desired_config = desired_config or {}
    out = {}
    for key in C_KEYS:
        prop = schema["properties"][key]
        if key in desired_config:
            value = desired_config[key]["value"]
        elif key in C_DEFAULT_OVERRIDES:
            value = C_DEFAULT_OVERRIDES[key]
        elif "default" in prop:
            value = prop["default"]["value"]
        else:
            continue  # unset strings (baseline path and hash) are left out
        kind = prop["$ref"].rsplit("/", 1)[-1]
        if kind == "prioritySetting":
            value = value.lower()
        elif kind == "durationSetting":
            value = c_duration(value)
        out[key] = {"value": value}
    return out


# --- twin plumbing -------------------------------------------------------------

class Clock:
    """IoT Hub timestamps: UTC, seven fractional digits."""

    def __init__(self, rng):
        self.rng = rng

    def stamp(self, when):
        return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{self.rng.randrange(10_000_000):07d}Z"


def etag(n):
    return base64.b64encode(struct.pack(">q", n)).decode("ascii")


def device_etag(rng):
    return base64.b64encode(str(rng.randrange(100_000_000, 2_147_483_647)).encode()).decode("ascii")


def desired_metadata(value, stamp, version):
    """$metadata for a desired subtree written in one operation."""
    meta = {"$lastUpdated": stamp, "$lastUpdatedVersion": version}
    if isinstance(value, dict):
        for key, child in value.items():
            meta[key] = desired_metadata(child, stamp, version)
    return meta


def reported_metadata(value, stamp):
    meta = {"$lastUpdated": stamp}
    if isinstance(value, dict):
        for key, child in value.items():
            meta[key] = reported_metadata(child, stamp)
    return meta


def section(values, metadata, version):
    out = dict(values)
    out["$metadata"] = metadata
    out["$version"] = version
    return out


# --- the fleet -------------------------------------------------------------------

SENSOR_HARDWARE = [("ES-200", "B2", 5), ("ES-200", "C1", 3), ("ES-310", "A3", 2)]
GATEWAY_HARDWARE = [("EB-4", "2", 3), ("EB-4", "3", 2), ("EB-8", "1", 1)]
SENSOR_FIRMWARE = ["3.1.4", "3.2.0", "3.2.1"]
GATEWAY_FIRMWARE = ["1.8.2", "1.9.0"]
DISABLED_REASONS = ["RMA: returned to vendor", "decommissioned with its line", "suspected tampering"]


def weighted(rng, items):
    return rng.choices([i[:-1] for i in items], weights=[i[-1] for i in items])[0]


def make_devices(rng):
    devices = []
    for site, sensors, gateways in SITES:
        for kind, count in (("sensor", sensors), ("gateway", gateways)):
            pool = range(1, int(count * 1.2) + 2)
            numbers = set(rng.sample(pool, count))
            if site == "ams1" and kind == "sensor" and 42 not in numbers:
                numbers.remove(max(numbers))
                numbers.add(42)
            for n in sorted(numbers):
                devices.append(new_device(rng, f"{kind}-{site}-{n:04d}", kind, site))
    # sensor-ams1-0042 is the subject of policies/exceptions.yaml.
    for d in devices:
        if d["deviceId"] == "sensor-ams1-0042":
            d["tags"]["environment"] = "production"
            d["tags"]["ring"] = "broad"
    return devices


def new_device(rng, device_id, kind, site):
    if site == "sin1":
        environment = weighted(rng, [("production", 7), ("staging", 3)])[0]
    else:
        environment = weighted(rng, [("production", 12), ("staging", 5), ("lab", 3)])[0]
    ring = "canary" if environment == "lab" else weighted(
        rng, [("canary", 1), ("early", 3), ("broad", 16)])[0]
    model, revision = weighted(rng, GATEWAY_HARDWARE if kind == "gateway" else SENSOR_HARDWARE)
    if site == "sin1":
        registered = SIN1_ONBOARDED + timedelta(minutes=rng.randrange(0, 6 * 24 * 60))
    else:
        registered = datetime(2023, 3, 1, tzinfo=timezone.utc) + timedelta(
            minutes=rng.randrange(0, 600 * 24 * 60))
    return {
        "deviceId": device_id,
        "kind": kind,
        "site": site,
        "registered": registered,
        "capabilities": {"iotEdge": kind == "gateway"},
        "tags": {
            "environment": environment,
            "site": site,
            "hardware": {"model": model, "revision": revision},
            "ring": ring,
        },
    }


def assign_categories(rng, devices):
    for d in devices:
        d["category"] = None
    sin1 = [d for d in devices if d["site"] == "sin1"]
    others = [d for d in devices if d["site"] != "sin1" and d["deviceId"] not in FORCED]
    for d in devices:
        if d["deviceId"] in FORCED:
            d["category"] = FORCED[d["deviceId"]]
    for d in rng.sample(sin1, NO_MODULE_SIN1):
        d["category"] = "no-module"
    for d in sin1:
        d["category"] = d["category"] or "unconfigured"
    rng.shuffle(others)
    counts = [("no-module", NO_MODULE_ELSEWHERE), ("unconfigured", UNCONFIGURED_ELSEWHERE),
              ("drifted", DRIFTED), ("lagging", LAGGING)]
    at = 0
    for category, count in counts:
        for d in others[at:at + count]:
            d["category"] = category
        at += count
    for d in others[at:]:
        d["category"] = "configured"
    # Devices added since the last apply are new: move their registration
    # after 2024-11-04 so that the story holds.
    for d in devices:
        if d["site"] != "sin1" and d["category"] in ("unconfigured", "no-module"):
            d["registered"] = APPLY_2 + timedelta(minutes=rng.randrange(2 * 24 * 60, 19 * 24 * 60))
        elif d["category"] in ("configured", "drifted", "lagging"):
            d["registered"] = min(d["registered"], APPLY_2 - timedelta(days=3))


def plan_history(rng, d):
    """Decide when things happened to a device, consistently for both twins:
    module creation, whether and when it was last seen, its status."""
    registered = d["registered"]
    category = d["category"]
    d["module_created"] = registered + timedelta(minutes=rng.randrange(10, 600))
    d["ever_connected"] = not (d["site"] == "sin1" and category == "unconfigured"
                               and rng.random() < 0.25)
    d["status"], d["status_time"], d["status_reason"] = "enabled", None, None
    created = d["module_created"]
    if not d["ever_connected"]:
        d["connected"], d["last_seen"] = False, None
    elif category == "lagging":
        d["connected"] = False
        if created < APPLY_1 - timedelta(days=1) and rng.random() < 0.3:
            # Offline before the first apply ever reached it.
            low, high = created + timedelta(hours=2), APPLY_1 - timedelta(hours=1)
        else:
            # Picked up the 2024-09-02 write (if it existed yet), missed 2024-11-04.
            low = max(created, APPLY_1) + timedelta(hours=2)
            high = APPLY_2 - timedelta(hours=1)
        d["last_seen"] = low + timedelta(seconds=rng.randrange(0, int((high - low).total_seconds())))
        if rng.random() < 0.12:
            d["status"], d["status_reason"] = "disabled", rng.choice(DISABLED_REASONS)
            d["status_time"] = d["last_seen"] + timedelta(hours=rng.randrange(1, 48))
    else:
        d["connected"] = rng.random() < 0.9
        if d["connected"]:
            seen = SNAPSHOT - timedelta(seconds=rng.randrange(5, 3600))
        else:
            seen = SNAPSHOT - timedelta(minutes=rng.randrange(90, 4 * 24 * 60))
        d["last_seen"] = max(seen, created + timedelta(hours=1))
        if category == "configured" and not d["connected"] and rng.random() < 0.15:
            d["status"], d["status_reason"] = "disabled", rng.choice(DISABLED_REASONS)
            d["status_time"] = d["last_seen"] + timedelta(minutes=rng.randrange(5, 60))


def device_twin(rng, clock, d):
    registered = d["registered"]
    ever_connected, last_seen, connected = d["ever_connected"], d["last_seen"], d["connected"]
    status = d["status"]
    status_time = clock.stamp(d["status_time"]) if d["status_time"] else NEVER
    reason = d["status_reason"]

    # Reported: firmware and OS, written by the device app at each boot/update.
    firmware = rng.choice(GATEWAY_FIRMWARE if d["kind"] == "gateway" else SENSOR_FIRMWARE)
    if d["kind"] == "gateway":
        info = {"firmware": {"version": firmware, "channel": "stable"},
                "os": {"name": "Ubuntu", "version": "22.04.4 LTS", "kernel": "5.15.0-107-generic"},
                "iotedge": {"version": rng.choice(["1.4.33", "1.5.0"])}}
    else:
        info = {"firmware": {"version": firmware, "channel": "stable" if d["tags"]["ring"] == "broad" else "preview"},
                "os": {"name": "Yocto", "version": "4.0.17", "kernel": "5.15.148"},
                "telemetry": {"intervalSeconds": rng.choice([30, 60, 300])}}
    if ever_connected:
        reports = 1 + rng.randrange(0, 4)
        first = registered + timedelta(minutes=rng.randrange(5, 60))
        latest = min(max(first, last_seen - timedelta(minutes=rng.randrange(1, 60))), last_seen)
        reported = section(info, reported_metadata(info, clock.stamp(latest)), 1 + reports)
        reported_version = 1 + reports
    else:
        reported = {"$metadata": {"$lastUpdated": clock.stamp(registered)}, "$version": 1}
        reported_version = 1

    desired = {"$metadata": {"$lastUpdated": clock.stamp(registered)}, "$version": 1}
    tag_writes = 1 if rng.random() < 0.85 else 2  # some devices changed ring later
    twin = {
        "deviceId": d["deviceId"],
        "etag": etag(1 + tag_writes),
        "deviceEtag": device_etag(rng),
        "status": status,
    }
    if reason:
        twin["statusReason"] = reason
    twin.update({
        "statusUpdateTime": status_time,
        "connectionState": "Connected" if connected else "Disconnected",
        "lastActivityTime": clock.stamp(last_seen) if last_seen else NEVER,
        "cloudToDeviceMessageCount": 0 if rng.random() < 0.9 else rng.randrange(1, 4),
    })
    twin.update(authentication(rng, d["kind"]))
    twin.update({
        "modelId": "",
        "version": 1 + reported_version + tag_writes,
        "tags": d["tags"],
        "properties": {"desired": desired, "reported": reported},
        "capabilities": d["capabilities"],
    })
    if d["kind"] == "gateway":
        twin["deviceScope"] = f"ms-azure-iot-edge://{d['deviceId']}-{rng.randrange(10**17, 10**18)}"
    return twin


def thumbprint(rng):
    return "".join(rng.choice("0123456789ABCDEF") for _ in range(40))


def authentication(rng, kind):
    mode = weighted(rng, [("sas", 13), ("selfSigned", 4), ("certificateAuthority", 3)])[0]
    if kind == "gateway" and mode == "certificateAuthority":
        mode = "selfSigned"
    if mode == "selfSigned":
        prints = {"primaryThumbprint": thumbprint(rng), "secondaryThumbprint": thumbprint(rng)}
    else:
        prints = {"primaryThumbprint": None, "secondaryThumbprint": None}
    return {"authenticationType": mode, "x509Thumbprint": prints}


def module_twin(rng, clock, d, schema):
    """The azureiotsecurity module twin, built by replaying its history."""
    created = d["module_created"]
    category = d["category"]

    desired_values, desired_meta, desired_version = {}, {"$lastUpdated": clock.stamp(created)}, 1
    reported_values, reported_stamp, reported_version = {}, clock.stamp(created), 1

    def write_desired(config, when):
        nonlocal desired_values, desired_meta, desired_version
        desired_version += 1
        stamp = clock.stamp(when)
        desired_values = {CONFIG: config}
        desired_meta = {"$lastUpdated": stamp, "$lastUpdatedVersion": desired_version,
                        CONFIG: desired_metadata(config, stamp, desired_version)}

    def report(config, when):
        nonlocal reported_values, reported_stamp, reported_version
        reported_version += 1
        reported_stamp = clock.stamp(when)
        reported_values = {CONFIG: c_reported(config, schema)}

    agent_started = created + timedelta(minutes=rng.randrange(2, 90))
    if d["ever_connected"] and (d["last_seen"] is None or agent_started < d["last_seen"]):
        report(None, agent_started)

    if category in ("configured", "drifted", "lagging"):
        old = compile_config(d, OLD_POLICIES, schema)
        new = compile_config(d, POLICIES, schema)
        seen = d["last_seen"] or SNAPSHOT
        if created < APPLY_1:
            when = APPLY_1 + timedelta(seconds=rng.randrange(0, 5400))
            write_desired(old, when)
            if seen > when:
                report(old, when + timedelta(seconds=rng.randrange(1, 30)))
        when = APPLY_2 + timedelta(seconds=rng.randrange(0, 5400))
        write_desired(new, when)
        if category != "lagging" and seen > when:
            report(new, when + timedelta(seconds=rng.randrange(1, 30)))
        if category == "drifted":
            key, value = weighted(rng, DRIFTS)
            earliest = datetime(2024, 11, 8, tzinfo=timezone.utc)
            latest = min(seen, SNAPSHOT) - timedelta(minutes=30)
            when = earliest + timedelta(
                seconds=rng.randrange(0, int((latest - earliest).total_seconds())))
            # A hand patch of one leaf: only that leaf and its ancestors get
            # new metadata.
            desired_version += 1
            stamp = clock.stamp(when)
            new = json.loads(json.dumps(new))
            new[key] = {"value": value}
            desired_values = {CONFIG: new}
            desired_meta["$lastUpdated"] = stamp
            desired_meta["$lastUpdatedVersion"] = desired_version
            node = desired_meta[CONFIG]
            node["$lastUpdated"], node["$lastUpdatedVersion"] = stamp, desired_version
            node[key] = desired_metadata(new[key], stamp, desired_version)
            report(new, when + timedelta(seconds=rng.randrange(1, 30)))
            d["drift"] = (key, value)

    tag_writes = 1  # tags.securityGroup = "default", set when the module was added
    desired = section(desired_values, desired_meta, desired_version)
    reported = section(
        reported_values,
        reported_metadata(reported_values, reported_stamp) if reported_values else {"$lastUpdated": reported_stamp},
        reported_version)
    module_connected = d["connected"]
    return {
        "deviceId": d["deviceId"],
        "moduleId": MODULE,
        "etag": etag(desired_version + tag_writes),
        "deviceEtag": device_etag(rng),
        "status": "enabled",
        "statusUpdateTime": NEVER,
        "connectionState": "Connected" if module_connected else "Disconnected",
        "lastActivityTime": clock.stamp(d["last_seen"]) if d["last_seen"] else NEVER,
        "cloudToDeviceMessageCount": 0,
        "authenticationType": "sas",
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        "modelId": "",
        "version": desired_version + reported_version + tag_writes,
        "tags": {"securityGroup": "default"},
        "properties": {"desired": desired, "reported": reported},
    }


def main():
    schema = load_schema()
    rng = random.Random(SEED)
    clock = Clock(rng)
    devices = make_devices(rng)
    assign_categories(rng, devices)
    lines = []
    for d in sorted(devices, key=lambda d: d["deviceId"]):
        plan_history(rng, d)
        lines.append(device_twin(rng, clock, d))
        if d["category"] != "no-module":
            lines.append(module_twin(rng, clock, d, schema))
    out = sys.stdout
    for twin in lines:
        out.write(json.dumps(twin, ensure_ascii=False, separators=(",", ":")) + "\n")
    counts = {}
    for d in devices:
        counts[d["category"]] = counts.get(d["category"], 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"{len(devices)} devices, {len(lines)} twins: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
