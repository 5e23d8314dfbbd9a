#!/usr/bin/env python3
"""Official-SDK conformance check for `twinops hub serve`.

Starts the IoT Hub REST emulator over a fresh SQLite hub seeded from a fleet
snapshot, then drives it with the unmodified official Python service SDK
(`azure-iot-hub` 2.7.x, see tests/sdk/requirements.txt): twin get / update /
replace with etags, module twins, paged queries and SAS authentication.

    python_conformance.py --twinops target/release/twinops --seed examples/demo-fleet.ndjson

Prints one line per check (`ok   NAME` or `FAIL NAME: why`) and exits 0 only
when every check passed. It never prints the connection string or its key.
Normally run through tests/sdk/run-python.sh, which sets up the virtualenv.
"""

import argparse
import base64
import binascii
import collections
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

STARTUP_TIMEOUT_S = 60
SHUTDOWN_TIMEOUT_S = 10
REQUEST_TIMEOUT_S = 30
MODULE_ID = "azureiotsecurity"
PAGE_SIZE = 7

LISTEN_RE = re.compile(r"^Listening on https://127\.0\.0\.1:(\d+)$")
CA_RE = re.compile(r"^CA certificate: (/.+)$")
CS_PREFIX = "Connection string: "
KEY_IN_TEXT_RE = re.compile(r"(SharedAccessKey=)[^;\s\"']*")
SIG_IN_TEXT_RE = re.compile(r"(sig=)[^&\s\"']*")


class CheckFailed(Exception):
    """A check's expectation did not hold; the message says which and why."""


class Secrets:
    """Values that must never reach the output."""

    values = []

    @classmethod
    def add(cls, value):
        if value:
            cls.values.append(value)

    @classmethod
    def redact(cls, text):
        text = str(text)
        for value in cls.values:
            text = text.replace(value, "<redacted>")
        text = KEY_IN_TEXT_RE.sub(r"\1<redacted>", text)
        return SIG_IN_TEXT_RE.sub(r"\1<redacted>", text)


def say(line):
    print(Secrets.redact(line), flush=True)


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


# --------------------------------------------------------------------------
# The seed snapshot


class Seed:
    """What the fleet snapshot says the hub starts with."""

    def __init__(self, path):
        self.devices = {}  # deviceId -> device twin (first line wins)
        self.device_order = []
        self.modules = {}  # (deviceId, moduleId) -> module twin
        self.module_order = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    doc = json.loads(line)
                except ValueError as err:
                    raise SystemExit(f"{path}:{number}: not JSON: {err}")
                if not isinstance(doc, dict) or "deviceId" not in doc:
                    continue
                if "moduleId" in doc:
                    key = (doc["deviceId"], doc["moduleId"])
                    if key not in self.modules:
                        self.module_order.append(key)
                    self.modules[key] = doc
                else:
                    if doc["deviceId"] not in self.devices:
                        self.device_order.append(doc["deviceId"])
                    self.devices[doc["deviceId"]] = doc
        if not self.device_order:
            raise SystemExit(f"{path}: no device twin (a line with deviceId and no moduleId)")
        self.first_device = self.device_order[0]
        with_module = [k for k in self.module_order if k[1] == MODULE_ID]
        if not with_module:
            raise SystemExit(f"{path}: no module twin with moduleId {MODULE_ID!r}")
        self.module_keys = set(with_module)
        self.first_module_device = with_module[0][0]


# --------------------------------------------------------------------------
# The emulator process


class Emulator:
    def __init__(self, twinops, seed, workdir, extra_args):
        self.workdir = workdir
        self.stderr_path = os.path.join(workdir, "emulator.stderr")
        self.cmd = [
            twinops,
            "hub",
            "serve",
            "--db",
            os.path.join(workdir, "hub.db"),
            "--seed",
            seed,
            "--listen",
            "127.0.0.1:0",
            "--tls",
            "--cert-dir",
            os.path.join(workdir, "certs"),
        ] + list(extra_args)
        self.proc = None
        self.lines = queue.Queue()
        self.banner_done = threading.Event()

    def start(self):
        self._stderr = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
        except OSError:
            self._stderr.close()
            raise
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        # Drains stdout for the whole run; only the banner is kept.
        for raw in self.proc.stdout:
            if not self.banner_done.is_set():
                self.lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        self.lines.put(None)

    def stderr_tail(self, n=20):
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        tail = text.splitlines()[-n:]
        return "\n".join("    " + line for line in tail)

    def exit_note(self):
        try:
            code = self.proc.wait(timeout=5)
            note = f"the emulator exited with status {code}"
        except subprocess.TimeoutExpired:
            note = "the emulator closed its stdout"
        tail = self.stderr_tail()
        return note + (f"; its stderr ends with:\n{tail}" if tail else "; its stderr is empty")

    def _next_line(self, index, what, deadline):
        try:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            tail = self.stderr_tail()
            raise CheckFailed(
                f"no line {index} ({what!r}) on stdout within {STARTUP_TIMEOUT_S} s"
                + (f"; stderr so far:\n{tail}" if tail else "")
            )
        if line is None:
            raise CheckFailed(f"stdout ended before line {index} ({what!r}): {self.exit_note()}")
        return line

    def read_banner(self):
        """Blocks on the three start-up lines, checking each as it comes;
        returns (port, ca_file, connection string)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        try:
            want = "Listening on https://127.0.0.1:PORT"
            line = self._next_line(1, want, deadline)
            m = LISTEN_RE.match(line)
            expect(m, f"line 1 should be {want!r}, got {line!r}")
            port = int(m.group(1))
            expect(0 < port < 65536, f"line 1 names port {port}")

            want = "CA certificate: /abs/path/ca.pem"
            line = self._next_line(2, want, deadline)
            m = CA_RE.match(line)
            expect(m, f"line 2 should be {want!r}, got {line!r}")
            ca_file = m.group(1)
            expect(os.path.isfile(ca_file), f"CA file {ca_file} does not exist")
            with open(ca_file, encoding="ascii", errors="replace") as f:
                expect("-----BEGIN CERTIFICATE-----" in f.read(), f"CA file {ca_file} holds no PEM certificate")

            want = "Connection string: HostName=localhost:PORT;SharedAccessKeyName=iothubowner;SharedAccessKey=KEY"
            line = self._next_line(3, want, deadline)
            expect(line.startswith(CS_PREFIX), f"line 3 should be {want!r}, got {Secrets.redact(line)!r}")
        finally:
            # From here on the pump drops stdout, so the emulator never blocks
            # on a full pipe.
            self.banner_done.set()
        cs = line[len(CS_PREFIX):]
        parts = _parse_connection_string(cs)
        Secrets.add(parts.get("SharedAccessKey"))
        want_keys = ["HostName", "SharedAccessKeyName", "SharedAccessKey"]
        expect(
            list(parts) == want_keys,
            f"connection string should have exactly {', '.join(want_keys)} in that order, has {', '.join(parts)}",
        )
        expect(
            parts["HostName"] == f"localhost:{port}",
            f"connection string HostName is {parts['HostName']!r}, expected 'localhost:{port}'",
        )
        expect(
            parts["SharedAccessKeyName"] == "iothubowner",
            f"SharedAccessKeyName is {parts['SharedAccessKeyName']!r}, expected 'iothubowner'",
        )
        try:
            key_bytes = base64.b64decode(parts["SharedAccessKey"], validate=True)
        except (binascii.Error, ValueError):
            key_bytes = b""
        expect(key_bytes, "SharedAccessKey is not non-empty standard base64")
        return port, ca_file, cs

    def stop(self):
        """SIGTERM, then SIGKILL after a timeout. Returns None or a complaint."""
        if self.proc is None:
            return None
        problem = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                problem = f"was still running {SHUTDOWN_TIMEOUT_S} s after SIGTERM; killed"
                self.proc.kill()
                self.proc.wait()
        else:
            problem = f"had already exited with status {self.proc.returncode} before the end of the run"
            tail = self.stderr_tail()
            if tail:
                problem += f"; its stderr ends with:\n{tail}"
        self._stderr.close()
        return problem


def _parse_connection_string(cs):
    parts = {}
    for item in cs.split(";"):
        if not item:
            continue
        name, sep, value = item.partition("=")
        parts[name] = value if sep else ""
    return parts


# --------------------------------------------------------------------------
# Helpers over SDK objects


def strip_meta(value):
    """A twin property tree without `$metadata`, `$version` and other `$` keys."""
    if isinstance(value, dict):
        return {k: strip_meta(v) for k, v in value.items() if not k.startswith("$")}
    return value


def desired_of(twin):
    return (twin.properties.desired if twin.properties else None) or {}


def reported_of(twin):
    return (twin.properties.reported if twin.properties else None) or {}


def status_of(err):
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def describe_http_error(err):
    response = getattr(err, "response", None)
    if response is None:
        return f"{type(err).__name__}: {err}"
    code = response.headers.get("iothub-errorcode")
    body = (response.text or "")[:300]
    return (
        f"HTTP {response.status_code} {response.reason}"
        + (f", iothub-errorcode {code}" if code else "")
        + (f", body {body!r}" if body else "")
    )


def short(items, n=5):
    items = sorted(items, key=str)
    text = ", ".join(str(i) for i in items[:n])
    return text + (f" and {len(items) - n} more" if len(items) > n else "")


def plain_item(item):
    """A query row as a plain dict. The SDK deserializes every row as a Twin;
    keys that a Twin does not know (aggregates, projections) land in
    `additional_properties`."""
    if isinstance(item, dict):
        return item
    row = dict(getattr(item, "additional_properties", None) or {})
    row.update(item.serialize(keep_readonly=True))
    return row


# --------------------------------------------------------------------------
# The checks


class Conformance:
    def __init__(self, emulator, seed, cs, registry_manager_cls, models, http_error):
        self.emulator = emulator
        self.said_dead = False
        self.seed = seed
        self.cs = cs
        self.RM = registry_manager_cls
        self.Twin = models.Twin
        self.TwinProperties = models.TwinProperties
        self.QuerySpecification = models.QuerySpecification
        self.HttpOperationError = http_error
        self.rm = self.new_manager(cs)
        self.run_id = uuid.uuid4().hex
        self.dev = seed.first_device
        self.mdev = seed.first_module_device
        self.state = {}
        self.passed = set()
        self.failed = []

    def new_manager(self, cs):
        rm = self.RM.from_connection_string(cs)
        rm.protocol.config.connection.timeout = REQUEST_TIMEOUT_S
        return rm

    def run(self, name, needs, fn):
        missing = [n for n in needs if n not in self.passed]
        if missing:
            self.fail(name, f"not run: needs {', '.join(missing)}, which failed")
            return
        dead = self.emulator.exit_note() if self.emulator.proc.poll() is not None else None
        if dead:
            self.fail(name, f"not run: {dead if not self.said_dead else 'the emulator is gone'}")
            self.said_dead = True
            return
        try:
            fn()
        except CheckFailed as err:
            self.fail(name, str(err))
        except self.HttpOperationError as err:
            self.fail(name, f"unexpected {describe_http_error(err)}")
        except Exception as err:  # any SDK or transport error is a failure
            self.fail(name, f"{type(err).__name__}: {err}")
        else:
            self.passed.add(name)
            say(f"ok   {name}")

    def fail(self, name, message):
        self.failed.append(name)
        say(f"FAIL {name}: {message}")

    def expect_status(self, status, call, what):
        try:
            call()
        except self.HttpOperationError as err:
            got = status_of(err)
            expect(got == status, f"{what}: expected HTTP {status}, got {describe_http_error(err)}")
            return err
        raise CheckFailed(f"{what}: succeeded, expected HTTP {status}")

    # -- device twins --------------------------------------------------

    def get_twin(self):
        seeded = self.seed.devices[self.dev]
        twin = self.rm.get_twin(self.dev)
        expect(twin.device_id == self.dev, f"deviceId is {twin.device_id!r}, expected {self.dev!r}")
        expect(twin.module_id is None, f"a device twin carries moduleId {twin.module_id!r}")
        expect(isinstance(twin.etag, str) and twin.etag, f"no etag in the twin (got {twin.etag!r})")
        expect(
            (twin.tags or {}) == (seeded.get("tags") or {}),
            f"tags {twin.tags!r} differ from the seed's {seeded.get('tags')!r}",
        )
        seeded_props = seeded.get("properties") or {}
        for part, got in (("desired", desired_of(twin)), ("reported", reported_of(twin))):
            want = strip_meta(seeded_props.get(part) or {})
            expect(strip_meta(got) == want, f"{part} properties {strip_meta(got)!r} differ from the seed's {want!r}")
        self.state["etag0"] = twin.etag

    def update_twin_etag(self):
        etag0 = self.state["etag0"]
        value = {"run": self.run_id, "step": 1}
        patch = self.Twin(properties=self.TwinProperties(desired={"sdkConformance": value}))
        twin = self.rm.update_twin(self.dev, patch, etag0)
        expect(twin.device_id == self.dev, f"the response's deviceId is {twin.device_id!r}")
        got = desired_of(twin).get("sdkConformance")
        expect(got == value, f"desired.sdkConformance in the response is {got!r}, expected {value!r}")
        expect(twin.etag and twin.etag != etag0, f"the etag did not change ({etag0!r} -> {twin.etag!r})")
        fresh = self.rm.get_twin(self.dev)
        expect(fresh.etag == twin.etag, f"get_twin returns etag {fresh.etag!r}, the update returned {twin.etag!r}")
        got = desired_of(fresh).get("sdkConformance")
        expect(got == value, f"get_twin after the update: desired.sdkConformance is {got!r}")
        self.state["etag1"] = twin.etag

    def update_twin_star(self):
        etag1 = self.state["etag1"]
        patch = self.Twin(properties=self.TwinProperties(desired={"sdkConformance": {"step": 2}}))
        twin = self.rm.update_twin(self.dev, patch, "*")
        want = {"run": self.run_id, "step": 2}  # a merge patch keeps "run"
        got = desired_of(twin).get("sdkConformance")
        expect(got == want, f"desired.sdkConformance is {got!r}, expected {want!r} (JSON merge patch)")
        expect(twin.etag and twin.etag != etag1, f"the etag did not change ({etag1!r} -> {twin.etag!r})")
        self.state["after_star"] = twin

    def update_twin_stale_etag(self):
        before = self.state["after_star"]
        stale = self.state["etag0"]
        patch = self.Twin(properties=self.TwinProperties(desired={"sdkConformance": {"step": 99}}))
        self.expect_status(412, lambda: self.rm.update_twin(self.dev, patch, stale), "update_twin with a stale etag")
        after = self.rm.get_twin(self.dev)
        expect(
            after.etag == before.etag,
            f"the etag changed after the refused update ({before.etag!r} -> {after.etag!r})",
        )
        expect(
            strip_meta(desired_of(after)) == strip_meta(desired_of(before)),
            f"desired changed after the refused update: {strip_meta(desired_of(after))!r}",
        )
        expect((after.tags or {}) == (before.tags or {}), "tags changed after the refused update")

    def replace_twin(self):
        current = self.rm.get_twin(self.dev)
        tags = {"sdkConformance": {"run": self.run_id, "replaced": True}, "site": "replaced"}
        desired = {"replacedBy": {"run": self.run_id, "n": 3}}
        body = self.Twin(tags=tags, properties=self.TwinProperties(desired=desired))
        replaced = self.rm.replace_twin(self.dev, body, current.etag)
        expect(
            replaced.etag and replaced.etag != current.etag,
            f"the etag did not change ({current.etag!r} -> {replaced.etag!r})",
        )
        fresh = self.rm.get_twin(self.dev)
        for label, twin in (("the response", replaced), ("get_twin after the replace", fresh)):
            expect(twin.device_id == self.dev, f"{label}: deviceId is {twin.device_id!r}")
            expect((twin.tags or {}) == tags, f"{label}: tags are {twin.tags!r}, expected exactly {tags!r}")
            got = strip_meta(desired_of(twin))
            expect(got == desired, f"{label}: desired is {got!r}, expected exactly {desired!r} (old keys gone)")
            expect(
                strip_meta(reported_of(twin)) == strip_meta(reported_of(current)),
                f"{label}: reported properties changed; a service write must leave them alone",
            )
        expect(fresh.etag == replaced.etag, f"get_twin returns etag {fresh.etag!r}, the replace {replaced.etag!r}")

    # -- module twins --------------------------------------------------

    def get_module_twin(self):
        seeded = self.seed.modules[(self.mdev, MODULE_ID)]
        twin = self.rm.get_module_twin(self.mdev, MODULE_ID)
        expect(twin.device_id == self.mdev, f"deviceId is {twin.device_id!r}, expected {self.mdev!r}")
        expect(twin.module_id == MODULE_ID, f"moduleId is {twin.module_id!r}, expected {MODULE_ID!r}")
        expect(isinstance(twin.etag, str) and twin.etag, f"no etag in the module twin (got {twin.etag!r})")
        want = strip_meta((seeded.get("properties") or {}).get("desired") or {})
        expect(strip_meta(desired_of(twin)) == want, "desired properties differ from the seed's")
        self.state["module"] = twin

    def update_module_twin(self):
        before = self.state["module"]
        value = {"run": self.run_id}
        patch = self.Twin(properties=self.TwinProperties(desired={"sdkConformance": value}))
        twin = self.rm.update_module_twin(self.mdev, MODULE_ID, patch, before.etag)
        expect(
            (twin.device_id, twin.module_id) == (self.mdev, MODULE_ID),
            f"the response is for {twin.device_id!r}/{twin.module_id!r}",
        )
        got = strip_meta(desired_of(twin))
        expect(got.get("sdkConformance") == value, f"desired.sdkConformance is {got.get('sdkConformance')!r}")
        for key, old in strip_meta(desired_of(before)).items():
            expect(got.get(key) == old, f"desired.{key} changed; a merge patch must keep untouched keys")
        expect(twin.etag and twin.etag != before.etag, f"the etag did not change ({before.etag!r})")
        fresh = self.rm.get_module_twin(self.mdev, MODULE_ID)
        expect(fresh.etag == twin.etag, f"get_module_twin returns etag {fresh.etag!r}, the update {twin.etag!r}")

    def update_module_twin_stale_etag(self):
        stale = self.state["module"].etag
        patch = self.Twin(properties=self.TwinProperties(desired={"sdkConformance": {"stale": True}}))
        self.expect_status(
            412,
            lambda: self.rm.update_module_twin(self.mdev, MODULE_ID, patch, stale),
            "update_module_twin with a stale etag",
        )
        after = self.rm.get_module_twin(self.mdev, MODULE_ID)
        got = strip_meta(desired_of(after)).get("sdkConformance")
        expect(got == {"run": self.run_id}, f"desired changed after the refused update: {got!r}")

    # -- queries -------------------------------------------------------

    def collect(self, query, expected):
        spec = self.QuerySpecification(query=query)
        items, pages, token, seen = [], 0, None, set()
        max_pages = expected // PAGE_SIZE + 3
        while True:
            result = self.rm.query_iot_hub(spec, token, PAGE_SIZE)
            pages += 1
            page = result.items
            expect(isinstance(page, list), f"page {pages}: items is {type(page).__name__}, not a list")
            expect(
                len(page) <= PAGE_SIZE,
                f"page {pages} has {len(page)} items; x-ms-max-item-count asked for at most {PAGE_SIZE}",
            )
            expect(result.type, f"page {pages}: no x-ms-item-type header")
            items.extend(page)
            token = result.continuation_token
            if token is None:
                break
            expect(
                token != "",
                f"page {pages}: x-ms-continuation is present but empty; on the last page it must be absent",
            )
            expect(token not in seen, f"page {pages}: continuation token repeats an earlier one")
            seen.add(token)
            expect(pages < max_pages, f"still paging after {pages} pages of at most {PAGE_SIZE} for {expected} rows")
        expect(pages >= 2, f"{len(items)} rows came in {pages} page(s); expected several pages of {PAGE_SIZE}")
        return items, pages

    def query_devices(self):
        expected = len(self.seed.devices)
        items, pages = self.collect("SELECT * FROM devices", expected)
        ids = [item.device_id for item in items]
        modules = [i for i in items if i.module_id is not None]
        expect(not modules, f"{len(modules)} rows are module twins ({short({m.module_id for m in modules})})")
        dups = [d for d, n in collections.Counter(ids).items() if n > 1]
        expect(not dups, f"devices returned more than once: {short(dups)}")
        missing = set(self.seed.devices) - set(ids)
        extra = set(ids) - set(self.seed.devices)
        expect(not missing, f"{len(missing)} seeded devices never returned: {short(missing)}")
        expect(not extra, f"devices not in the seed: {short(extra)}")
        expect(len(items) == expected, f"{len(items)} rows, expected {expected}")

    def query_modules(self):
        expected = len(self.seed.module_keys)
        query = f"SELECT * FROM devices.modules WHERE moduleId = '{MODULE_ID}'"
        items, pages = self.collect(query, expected)
        keys = [(item.device_id, item.module_id) for item in items]
        wrong = {k for k in keys if k[1] != MODULE_ID}
        expect(not wrong, f"rows with another moduleId: {short(wrong)}")
        dups = [k for k, n in collections.Counter(keys).items() if n > 1]
        expect(not dups, f"module twins returned more than once: {short(dups)}")
        missing = self.seed.module_keys - set(keys)
        extra = set(keys) - self.seed.module_keys
        expect(not missing, f"{len(missing)} seeded module twins never returned: {short(missing)}")
        expect(not extra, f"module twins not in the seed: {short(extra)}")
        expect(len(items) == expected, f"{len(items)} rows, expected {expected}")

    def query_count(self):
        result = self.rm.query_iot_hub(self.QuerySpecification(query="SELECT COUNT() AS total FROM devices"))
        rows = [plain_item(item) for item in (result.items or [])]
        want = [{"total": len(self.seed.devices)}]
        expect(rows == want, f"rows are {rows!r}, expected {want!r}")
        expect(result.continuation_token is None, "an aggregate answered with a continuation token")

    # -- authentication ------------------------------------------------

    def wrong_key(self):
        parts = _parse_connection_string(self.cs)
        bad_key = parts["SharedAccessKey"]
        while bad_key == parts["SharedAccessKey"]:
            bad_key = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        Secrets.add(bad_key)
        bad = self.new_manager(
            f"HostName={parts['HostName']};SharedAccessKeyName={parts['SharedAccessKeyName']};SharedAccessKey={bad_key}"
        )
        self.expect_status(401, lambda: bad.get_twin(self.dev), "get_twin with a wrong key")
        self.expect_status(
            401,
            lambda: bad.query_iot_hub(self.QuerySpecification(query="SELECT * FROM devices"), None, PAGE_SIZE),
            "query_iot_hub with a wrong key",
        )

    def all(self):
        self.run("get_twin", [], self.get_twin)
        self.run("update_twin_etag", ["get_twin"], self.update_twin_etag)
        self.run("update_twin_star", ["update_twin_etag"], self.update_twin_star)
        self.run("update_twin_stale_etag", ["update_twin_star"], self.update_twin_stale_etag)
        self.run("replace_twin", [], self.replace_twin)
        self.run("get_module_twin", [], self.get_module_twin)
        self.run("update_module_twin", ["get_module_twin"], self.update_module_twin)
        self.run("update_module_twin_stale_etag", ["update_module_twin"], self.update_module_twin_stale_etag)
        self.run("query_devices_paged", [], self.query_devices)
        self.run("query_modules_paged", [], self.query_modules)
        self.run("query_count", [], self.query_count)
        self.run("wrong_key_401", [], self.wrong_key)


# --------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--twinops", required=True, help="path of the twinops binary")
    parser.add_argument("--seed", required=True, help="fleet snapshot (NDJSON) to seed the hub with")
    parser.add_argument(
        "--tier",
        default="S3",
        help="--tier passed to the emulator (default S3: the paging checks send about 90 "
        "queries, over S1's 20 per minute, and the SDK never retries a POST); '' passes none",
    )
    parser.add_argument(
        "--emulator-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra argument for `twinops hub serve` (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    twinops = os.path.abspath(args.twinops)
    seed_path = os.path.abspath(args.seed)
    if not (os.path.isfile(twinops) and os.access(twinops, os.X_OK)):
        raise SystemExit(f"no executable twinops at {twinops} (build it with `cargo build --release`)")
    seed = Seed(seed_path)

    # Import the SDK only now, so that --help and argument errors work without it.
    from azure.iot.hub import IoTHubRegistryManager
    from azure.iot.hub import models
    from msrest.exceptions import HttpOperationError

    extra = ["--tier", args.tier] if args.tier else []
    extra += args.emulator_arg

    workdir = tempfile.mkdtemp(prefix="twinops-sdk-")
    emulator = Emulator(twinops, seed_path, workdir, extra)
    passed, failed = [], []
    started = False
    try:
        try:
            emulator.start()
            port, ca_file, cs = emulator.read_banner()
        except (CheckFailed, OSError) as err:
            say(f"FAIL startup: {err}")
            failed.append("startup")
        else:
            started = True
            passed.append("startup")
            say(f"ok   startup (port {port})")
            os.environ["REQUESTS_CA_BUNDLE"] = ca_file
            for name in ("NO_PROXY", "no_proxy"):
                os.environ[name] = ",".join(filter(None, ["localhost,127.0.0.1", os.environ.get(name)]))
            checks = Conformance(emulator, seed, cs, IoTHubRegistryManager, models, HttpOperationError)
            try:
                checks.all()
            finally:
                passed += sorted(checks.passed)
                failed += checks.failed
    except KeyboardInterrupt:
        failed.append("interrupted")
        say("FAIL interrupted")
    finally:
        problem = emulator.stop()
        if started:
            if problem:
                failed.append("shutdown")
                say(f"FAIL shutdown: the emulator {problem}")
            else:
                passed.append("shutdown")
                say("ok   shutdown")
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    say(f"conformance: {len(passed)} passed, {len(failed)} failed")
    if failed:
        say(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
