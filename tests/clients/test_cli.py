"""The `nimbus` command line a newcomer meets first: --version, help without arguments, listener
addresses checked before anything is created, a busy port named with its flag and a way out,
and AWS routes Nimbus does not implement answered 501 NotImplementedException (not 404)."""

import re
import socket
import subprocess

import pytest
from botocore.exceptions import ClientError

RUN_TIMEOUT = 30


def run(nimbus, *args, cwd=None):
    res = subprocess.run([nimbus.binary] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT,
                         cwd=str(cwd or nimbus.workdir))
    res.out = res.stdout.decode(errors="replace")
    res.err = res.stderr.decode(errors="replace")
    return res


def describe(res):
    return "exit %s\n--- stdout\n%s\n--- stderr\n%s" % (res.returncode, res.out, res.err)


def test_version_flag(nimbus):
    """`nimbus --version` prints `nimbus <version>` and exits 0, as `nimbus version` does."""
    res = run(nimbus, "--version")
    assert res.returncode == 0, describe(res)
    assert re.fullmatch(r"nimbus \d+\.\d+\.\d+\S*\n", res.out), describe(res)
    sub = run(nimbus, "version")
    assert sub.returncode == 0 and sub.out == res.out, describe(sub)


def test_no_arguments_prints_help(nimbus):
    """`nimbus` alone prints the help (naming its subcommands) and exits 0."""
    res = run(nimbus)
    assert res.returncode == 0, describe(res)
    text = res.out + res.err
    assert "serve" in text and "version" in text, describe(res)
    assert re.search(r"(?i)usage", text), describe(res)


@pytest.mark.parametrize("flag,value", [
    ("--mqtt", "foo"),
    ("--mqtt", "127.0.0.1"),
    ("--http", "127.0.0.1:99999"),
    ("--mqtts", "::1:8883"),
    ("--https", "localhost:"),
])
def test_bad_listener_address_exits_2_before_creating_anything(nimbus, tmp_path, flag, value):
    """A malformed listener address: exit status 2, `expected HOST:PORT` naming the flag, and
    the data directory is not created."""
    data = tmp_path / "never-created"
    res = run(nimbus, "serve", flag, value, "--data-dir", data)
    assert res.returncode == 2, describe(res)
    assert "expected HOST:PORT" in res.err, describe(res)
    assert flag in res.err, describe(res)
    assert not data.exists(), "%s was created" % data


@pytest.mark.parametrize("flag", ["--mqtt", "--http"])
def test_busy_port_names_the_flag_and_off(nimbus, tmp_path, flag):
    """A listener whose port is taken: nimbus exits non-zero, and the message names the flag and
    suggests another port or `off`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        listeners = {"--mqtt": "127.0.0.1:0", "--mqtts": "127.0.0.1:0",
                     "--http": "127.0.0.1:0", "--https": "127.0.0.1:0", "--grpc": "off"}
        listeners[flag] = "127.0.0.1:%d" % port
        argv = ["serve", "--data-dir", tmp_path / "data"]
        for f, v in listeners.items():
            argv += [f, v]
        res = run(nimbus, *argv)
    assert res.returncode != 0, describe(res)
    text = res.out + res.err
    assert flag in text, describe(res)
    assert re.search(r"\boff\b", text), describe(res)
    assert not (tmp_path / "data" / "endpoints.json").exists()


@pytest.mark.parametrize("operation", ["list_jobs", "describe_account_audit_configuration"])
def test_unimplemented_aws_operation_is_501(server, operation):
    """A signed boto3 call to an AWS IoT operation Nimbus does not implement gets 501 with
    x-amzn-ErrorType NotImplementedException and a message naming Nimbus, not 404."""
    iot = server.boto3_client()
    with pytest.raises(ClientError) as ei:
        getattr(iot, operation)()
    resp = ei.value.response
    assert resp["Error"]["Code"] == "NotImplementedException", resp
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 501, resp
    assert "not implemented in Nimbus" in resp["Error"].get("Message", ""), resp
    server.assert_alive()


def test_start_up_and_connections_are_logged_for_a_newcomer(nimbus, clients):
    """The first start says what it created and what to try; connects and disconnects are
    logged at info with client id, transport and certificate; HTTP sent to the MQTT port gets a
    hint in the log. A second start creates nothing new and says so by saying nothing."""
    from conftest import unique, wait_until
    nimbus.start()
    log = nimbus.log_path.read_text(errors="replace")
    for what in ("certificate authority", "API credentials", "API tokens"):
        assert 'created what="%s"' % what in log, log
    assert re.search(r"try: mosquitto_sub -h localhost -p %d .*mosquitto_pub" % nimbus.mqtt_port,
                     log), log

    client_id = unique("newcomer")
    c = clients.connected(client_id=client_id)
    c.disconnect()
    wait_until(lambda: re.search(
        r"mqtt_disconnected client=%s .*reason=CLIENT_INITIATED_DISCONNECT" % client_id,
        nimbus.log_path.read_text(errors="replace")), what="the disconnect logged")
    log = nimbus.log_path.read_text(errors="replace")
    assert re.search(r"level=info .*mqtt_connected client=%s remote=127\.0\.0\.1:\d+ "
                     r"transport=tcp certificate=-" % client_id, log), log

    with socket.create_connection((nimbus.host, nimbus.mqtt_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert s.recv(100) == b"", "the MQTT port answered an HTTP request"
    wait_until(lambda: "http_on_mqtt_port" in nimbus.log_path.read_text(errors="replace"),
               what="the HTTP-on-MQTT-port hint")
    assert "--http" in nimbus.log_path.read_text(errors="replace").split("http_on_mqtt_port")[1]

    nimbus.restart()
    second = nimbus.log_path.read_text(errors="replace").rsplit("===== ", 1)[1]
    assert 'created what="certificate authority"' not in second, second
    assert 'created what="API tokens"' not in second, second


def test_a_data_directory_from_a_newer_nimbus_is_refused_untouched(nimbus):
    """A database whose schema a newer nimbus wrote: start-up fails with both versions and the
    way out in the message, and nothing in the database is changed."""
    import sqlite3
    nimbus.start()
    nimbus.stop()
    db = nimbus.data_dir / "nimbus.db"
    with sqlite3.connect(db) as c:
        c.execute("UPDATE schema_versions SET version = 99 WHERE component = 'registry'")
    argv = ["serve", "--data-dir", nimbus.data_dir, "--mqtt", "127.0.0.1:0", "--mqtts", "off",
            "--http", "127.0.0.1:0", "--https", "off", "--grpc", "off"]
    res = run(nimbus, *argv)
    assert res.returncode == 1, describe(res)
    assert re.search(r"registry tables are at schema version 99, newer than this nimbus knows",
                     res.err), describe(res)
    assert "another data directory" in res.err, describe(res)
    with sqlite3.connect(db) as c:
        versions = dict(c.execute("SELECT component, version FROM schema_versions"))
    assert versions["registry"] == 99, versions
