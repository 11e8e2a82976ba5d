"""README.md's "Running the tutorial against Nimbus" run as written.

The blocks the section marks with `<!-- tutorial-test ... -->` are executed in order, in one bash
session, as a user pastes them into one terminal:

    <!-- tutorial-test: server -->       the `make run ARGS="..."` line: its ARGS start the server
    <!-- tutorial-test -->               a shell block, run as is
    <!-- tutorial-test: file PATH -->    a block to save as PATH (written with a quoted heredoc)

Only the port numbers change (the server listens on port 0): 8080, 8883, 1883 and 8443 become
the ports the server bound. The shell starts in a directory standing for the Nimbus checkout
(`nimbus-data` there is the server's data directory) with HOME a fresh directory, so
`~/iot-certs` is the test's own; `aws` is Debian's CLI v2 (/usr/bin/aws, NIMBUS_AWS_CLI
overrides it) whatever PATH says.

Then the registry holds what the tutorial created (in the region the README starts the server
with), the downloaded root CA is the server's, and every reading the paho mTLS client published
on sensor/data reached a subscriber on the plain listener and the client's own subscription."""

import json
import os
import re
import shlex
import shutil
import subprocess

from conftest import REPO_ROOT, TIMEOUT, V5

README = REPO_ROOT / "README.md"
SECTION = "## Running the tutorial against Nimbus"
AWS_CLI = os.environ.get("NIMBUS_AWS_CLI", "/usr/bin/aws")
THING = "RaspberryPi-001"
SCRIPT_TIMEOUT = 240

_BLOCK = re.compile(r"<!-- tutorial-test(?::\s*(?P<kind>[^>]*?))?\s*-->\s*\n"
                    r"```(?P<lang>[\w-]*)\n(?P<body>.*?)^```\s*$", re.S | re.M)


def tutorial_blocks():
    """[(kind, lang, body)] of the marked blocks of the README's tutorial section, in order."""
    text = README.read_text()
    start = text.find("\n" + SECTION + "\n")
    assert start >= 0, "README.md has no %r section" % SECTION
    end = text.find("\n## ", start + len(SECTION) + 2)
    section = text[start:end if end >= 0 else len(text)]
    blocks = [((m.group("kind") or "shell").strip(), m.group("lang"), m.group("body"))
              for m in _BLOCK.finditer(section)]
    assert blocks, "no <!-- tutorial-test --> blocks in the README's tutorial section"
    # every fenced block right after a marker was matched (a typo in a marker fails here)
    assert section.count("<!-- tutorial-test") == len(blocks), \
        "a <!-- tutorial-test --> marker is not followed by a fenced code block"
    return blocks


def server_args(blocks):
    """The flags of the README's `make run ARGS="..."` line."""
    servers = [body for kind, _lang, body in blocks if kind == "server"]
    assert len(servers) == 1, "expected one <!-- tutorial-test: server --> block"
    m = re.search(r'make run ARGS="([^"]*)"', servers[0])
    assert m, "the server block is not `make run ARGS=\"...\"`: %r" % servers[0]
    return shlex.split(m.group(1))


def substitute_ports(text, ports):
    for default, actual in ports.items():
        text = re.sub(r"(?<![0-9])%d(?![0-9])" % default, str(actual), text)
    return text


def build_script(blocks, ports):
    """One bash script: the shell blocks as they are, files written where the README says."""
    out = ["set -e", "set -x"]
    for kind, lang, body in blocks:
        body = substitute_ports(body, ports)
        if kind == "server":
            continue
        if kind == "shell":
            assert lang in ("sh", "bash", "shell"), "tutorial-test block in %r" % lang
            out.append(body)
        elif kind.startswith("file "):
            path = kind[len("file "):].strip()
            delim = "NIMBUS_README_BLOCK"
            assert delim not in body
            out.append('mkdir -p "$(dirname %s)"' % path)
            out.append("cat > %s <<'%s'\n%s%s" % (path, delim, body, delim))
        else:
            raise AssertionError("unknown tutorial-test marker %r" % kind)
    return "\n".join(out) + "\n"


def test_readme_tutorial_blocks_parse():
    """The section exists and has a server line with --region ap-northeast-2, shell blocks,
    and the python client saved as a file (runs without a server binary)."""
    blocks = tutorial_blocks()
    args = server_args(blocks)
    assert args[args.index("--region") + 1] == "ap-northeast-2", args
    kinds = [k for k, _l, _b in blocks]
    assert kinds.count("shell") >= 3, kinds
    files = [(k, l, b) for k, l, b in blocks if k.startswith("file ")]
    assert len(files) == 1 and files[0][1] == "python", kinds
    body = files[0][2]
    assert "import paho.mqtt.client" in body and "8883" in body and THING in body
    compile(body, "aws_iot_client.py", "exec")
    # `make run ARGS="..."` hands ARGS to `nimbus serve`
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^run:.*\n\t.*nimbus serve \$\(ARGS\)", makefile, re.M), \
        "the Makefile's run target does not pass $(ARGS) to nimbus serve"


def test_readme_tutorial_runs_as_written(nimbus, clients, tmp_path):
    assert os.access(AWS_CLI, os.X_OK), "%s not installed (Debian package awscli)" % AWS_CLI
    assert shutil.which("wget"), "wget not installed"
    assert os.access("/usr/bin/python3", os.X_OK), "/usr/bin/python3 not installed"

    blocks = tutorial_blocks()
    args = server_args(blocks)
    server = nimbus.start(args)
    ports = {8080: server.http_port, 8883: server.mqtts_port, 1883: server.mqtt_port,
             8443: server.https_port}
    script = build_script(blocks, ports)
    assert "localhost:%d" % server.http_port in script, "no http://localhost:8080 in the blocks"
    assert str(server.mqtts_port) in script, "no 8883 in the blocks"

    # a subscriber on the plain listener, as the README's mosquitto_sub in a third terminal
    watcher = clients.connected(version=V5, name="watcher")
    assert watcher.subscribe("sensor/data", 1) == [1]

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "nimbus-data").symlink_to(server.data_dir)
    home = tmp_path / "home"
    home.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "aws").symlink_to(AWS_CLI)          # Debian's CLI v2, not a pyenv shim
    (tmp_path / "tutorial.sh").write_text(script)

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HOME=str(home), PATH=str(bindir) + os.pathsep + env.get("PATH", "/usr/bin:/bin"),
               AWS_PAGER="", AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="1",
               PYTHONUNBUFFERED="1", no_proxy="*", NO_PROXY="*")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(var, None)
    res = subprocess.run(["bash", str(tmp_path / "tutorial.sh")], cwd=str(checkout), env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=SCRIPT_TIMEOUT)
    out = res.stdout.decode(errors="replace")
    err = res.stderr.decode(errors="replace")
    report = "--- script\n%s\n--- stdout\n%s\n--- stderr\n%s" % (script, out, err)
    assert res.returncode == 0, "the README's tutorial failed (exit %d)\n%s" % (
        res.returncode, report)

    # describe-endpoint answered the host devices use
    assert '"endpointAddress": "localhost"' in out, report
    # the root CA fetched with wget is the server's
    certs = home / "iot-certs"
    assert (certs / "root-CA.crt").read_bytes() == server.ca_cert.read_bytes()
    for name in ("device.cert.pem", "device.public.key", "device.private.key",
                 "aws_iot_client.py", "iot-policy.json"):
        assert (certs / name).is_file(), name

    # the registry: the thing, its certificate (ACTIVE, in the README's region), the policy
    iot = server.boto3_client(region="ap-northeast-2")
    principals = iot.list_thing_principals(thingName=THING)["principals"]
    assert len(principals) == 1, principals
    cert_arn = principals[0]
    assert cert_arn.startswith("arn:aws:iot:ap-northeast-2:"), cert_arn
    assert cert_arn in out, "echo \"$CERT_ARN\" printed another ARN\n" + report
    cert_id = cert_arn.rsplit("/", 1)[1]
    desc = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert desc["status"] == "ACTIVE"
    assert desc["certificatePem"].strip() == (certs / "device.cert.pem").read_text().strip()
    assert [p["policyName"] for p in iot.list_attached_policies(target=cert_arn)["policies"]] \
        == ["IoTDevicePolicy"]
    doc = json.loads(iot.get_policy(policyName="IoTDevicePolicy")["policyDocument"])
    assert doc["Statement"][0]["Action"] == ["iot:Connect", "iot:Publish", "iot:Subscribe",
                                             "iot:Receive"]

    # every reading the device published reached the watcher, in order, as JSON
    # (the client prints from two threads, so lines may interleave: match, do not split lines)
    published = [json.loads(m) for m in re.findall(r"published: sensor/data = (\{[^{}]*\})", out)]
    assert len(published) == 10, report
    got = watcher.collect(len(published), timeout=TIMEOUT)
    assert [(m.topic, m.qos) for m in got] == [("sensor/data", 1)] * len(published)
    assert [json.loads(m.payload) for m in got] == published
    assert all(r["device_id"] == THING for r in published)
    watcher.expect_none(0.3)
    # ... and the client's own subscription (the last one may still be on its way at exit)
    echoed = re.findall(r"received: sensor/data = \{", out)
    assert len(echoed) >= len(published) - 1, report

    # the requests were signed for the server's region: no foreign-region warning
    log = server.log_path.read_text(errors="replace")
    assert not re.search(r"(?<![\w/])sigv4_foreign_region(?!\w)", log), server.log_tail()
