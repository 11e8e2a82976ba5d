"""End-to-end tests of Nimbus's AWS IoT control plane (the `iot` REST-JSON API) with
unmodified boto3 (Debian's 1.26 / botocore 1.29): SigV4 authentication, DescribeEndpoint,
the registry (things, thing types, thing groups), certificates (Nimbus-issued, CSR-issued,
CA-registered, registered without CA), policies with versions and their attachments, thing
principals, tags, pagination of every list call, error codes/statuses, and durability across a
kill -9.

Expected semantics are real AWS's (../shared/reference/aws-iot.md section 1 and the botocore
model). Where AWS's behaviour is not documented precisely the assertion says so in a comment.

Run: NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_aws_iot_registry.py
"""

import datetime
import hashlib
import json
import re
import ssl
import subprocess
import time
import types
import urllib.error
import urllib.request
from unittest import mock

import pytest

import boto3
import botocore.auth
import botocore.config
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import TIMEOUT, unique, wait_until
from iot_helpers import assert_connect_refused, connect_device_raw

ACCOUNT = "000000000000"
REGION = "us-east-1"
ALLOW_ALL = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]})
MISSING_CERT_ID = "0" * 64   # well-formed (64 hex digits) but never issued


# ====================================================================== helpers

def arn(kind, name, region=REGION):
    return "arn:aws:iot:%s:%s:%s/%s" % (region, ACCOUNT, kind, name)


def name_of(prefix):
    """A resource name valid for things, types, groups and policies ([a-zA-Z0-9:_-])."""
    return unique(prefix).replace(".", "_")


def expect_error(code, status, fn, /, *args, **kwargs):
    """Call fn, assert it fails with the given AWS error code and HTTP status and a
    non-empty message, with the code also in `x-amzn-ErrorType`. Returns e.response."""
    with pytest.raises(ClientError) as ei:
        fn(*args, **kwargs)
    resp = ei.value.response
    got_code = resp.get("Error", {}).get("Code")
    got_status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    assert (got_code, got_status) == (code, status), \
        "expected %s/%d, got %s/%s: %r" % (code, status, got_code, got_status, resp)
    assert resp["Error"].get("Message"), "error %s has an empty message: %r" % (code, resp)
    hdrs = resp["ResponseMetadata"].get("HTTPHeaders", {})
    etype = hdrs.get("x-amzn-errortype", "")
    assert etype.split(":")[0] == code, \
        "x-amzn-ErrorType header %r does not name %s" % (etype, code)
    return resp


def follow(call, items_key, token_in="nextToken", token_out="nextToken", **kw):
    """Follow a paginated list call to the end. Returns the list of pages (each a list)."""
    out, token = [], None
    for _ in range(100):
        args = dict(kw)
        if token:
            args[token_in] = token
        r = call(**args)
        out.append(list(r.get(items_key, [])))
        token = r.get(token_out)
        if not token:
            return out
    raise AssertionError("pagination of %s did not terminate" % items_key)


def flat(pages):
    return [x for p in pages for x in p]


def assert_pages(pages, page_size, expected_total):
    """Every page but the last is full, the last is not empty, nothing beyond the total."""
    sizes = [len(p) for p in pages]
    full, rest = divmod(expected_total, page_size)
    want = [page_size] * full + ([rest] if rest else [])
    assert sizes == want, "page sizes %r, expected %r" % (sizes, want)


def cert_id_of(pem):
    """AWS certificate id: lowercase hex SHA-256 of the DER encoding."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def openssl(*args, input_text=None, check=True):
    res = subprocess.run(["openssl"] + [str(a) for a in args],
                         input=input_text.encode() if input_text is not None else None,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = res.stdout.decode(errors="replace")
    if check and res.returncode != 0:
        raise AssertionError("openssl %s failed (%d):\n%s" % (" ".join(map(str, args)),
                                                             res.returncode, out))
    return res.returncode, out


def pubkey_of_cert(path):
    return openssl("x509", "-in", path, "-noout", "-pubkey")[1].strip()


def normalize_pubkey(pem_text):
    return openssl("pkey", "-pubin", "-pubout", input_text=pem_text)[1].strip()


def write(server, name, text):
    server.cert_dir.mkdir(exist_ok=True)
    p = server.cert_dir / name
    p.write_text(text)
    return p


def is_datetime(v):
    return isinstance(v, datetime.datetime)


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def assert_recent(ts, slack=600):
    assert is_datetime(ts), "not a timestamp: %r" % (ts,)
    delta = abs((now_utc() - ts).total_seconds())
    assert delta < slack, "timestamp %s is %.0fs away from now" % (ts, delta)


def bad_client(server, akid=None, secret=None, https=False):
    """A boto3 iot client pointed at the server with the given (wrong) credentials."""
    good_akid, good_secret = server.credentials()
    if https:
        url, kw = "https://localhost:%d" % server.https_port, {"verify": str(server.ca_cert)}
    else:
        url, kw = server.http_url, {}
    return boto3.client("iot", endpoint_url=url, region_name=REGION,
                        aws_access_key_id=akid or good_akid,
                        aws_secret_access_key=secret or good_secret,
                        config=botocore.config.Config(retries={"max_attempts": 1}), **kw)


def raw_http(method, url, body=None, headers=None, context=None):
    """One HTTP request without any proxy; returns (status, headers, body bytes)."""
    handlers = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _skewed_datetime_module(skew):
    real = datetime.datetime

    class _DT(real):
        @classmethod
        def utcnow(cls):
            return real.utcnow() + skew

    return types.SimpleNamespace(datetime=_DT, timedelta=datetime.timedelta)


def signed_request(server, method, path, body=b"", service="execute-api", region=REGION,
                   creds=None, skew=None, headers=None):
    """Sign a request by hand with botocore's SigV4Auth (signing name `service`, region
    `region`, optionally with the clock moved by `skew`) and send it with urllib.
    Returns (status, headers, body)."""
    akid, secret = creds or server.credentials()
    url = server.http_url + path
    hdrs = {"Content-Type": "application/json"} if body else {}
    hdrs.update(headers or {})
    req = AWSRequest(method=method, url=url, data=body, headers=hdrs)
    signer = SigV4Auth(Credentials(akid, secret), service, region)
    if skew is not None:
        with mock.patch.object(botocore.auth, "datetime", _skewed_datetime_module(skew)):
            signer.add_auth(req)
    else:
        signer.add_auth(req)
    prepared = req.prepare()
    send_headers = {k: (v.decode() if isinstance(v, bytes) else v)
                    for k, v in prepared.headers.items() if k.lower() != "host"}
    return raw_http(method, prepared.url, prepared.body or None, send_headers)


def json_error(status, headers, body):
    """Assert an AWS-style JSON error: x-amzn-ErrorType + {"message": non-empty}."""
    etype = headers.get("x-amzn-ErrorType")
    assert etype, "no x-amzn-ErrorType header (status %d, body %r)" % (status, body)
    doc = json.loads(body.decode())
    msg = doc.get("message", doc.get("Message"))
    assert isinstance(msg, str) and msg, "no message in error body %r" % body
    return etype.split(":")[0], msg


def policy_doc(action="iot:*", resource="*", effect="Allow"):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": effect, "Action": action, "Resource": resource}]})


def read_text(path):
    with open(path) as f:
        return f.read()


def make_csr(server, cn="csr-device"):
    """An EC P-256 key and CSR made with openssl. Returns (csr_pem, csr_path, key_path)."""
    server.cert_dir.mkdir(exist_ok=True)
    tag = unique("csr")
    key, csr = server.cert_dir / (tag + ".key"), server.cert_dir / (tag + ".csr")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
    return csr.read_text(), csr, key


def register_foreign_ca(server, iot, set_active=True):
    """Register a throw-away CA the AWS way: get-registration-code, a verification
    certificate with CN=<code> signed by the CA, register-ca-certificate.
    Returns (ca_crt, ca_key, ca_pem, response)."""
    ca_crt, ca_key = server.make_ca(unique("Test CA"))
    code = iot.get_registration_code()["registrationCode"]
    assert code, "empty registration code"
    verif, _ = server.make_client_cert(cn=code, ca=(ca_crt, ca_key))
    ca_pem = read_text(ca_crt)
    r = iot.register_ca_certificate(caCertificate=ca_pem,
                                    verificationCertificate=read_text(verif),
                                    setAsActive=set_active, allowAutoRegistration=False)
    return ca_crt, ca_key, ca_pem, r


def has_op(client, op_name):
    return op_name in client.meta.service_model.operation_names


# ====================================================================== SigV4

def test_sigv4_wrong_secret_is_403_invalid_signature(server):
    """A request signed with the right key id but a wrong secret is refused with 403
    InvalidSignatureException."""
    _, secret = server.credentials()
    bad = bad_client(server, secret=secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    expect_error("InvalidSignatureException", 403, bad.list_things)


def test_sigv4_unknown_access_key_is_403_unrecognized_client(server):
    """An access key id that is not in <data>/credentials is refused with 403
    UnrecognizedClientException."""
    bad = bad_client(server, akid="AKIANIMBUSUNKNOWN000", secret="not-the-secret")
    expect_error("UnrecognizedClientException", 403, bad.list_things)


def test_sigv4_unsigned_request_is_403_with_json_error(server):
    """An unsigned request gets 403 with x-amzn-ErrorType and a JSON {"message": ...};
    a garbled Authorization header is refused the same way."""
    status, headers, body = raw_http("GET", server.http_url + "/things")
    assert status == 403, (status, body)
    etype, _ = json_error(status, headers, body)
    # AWS answers unsigned API calls with "Missing Authentication Token"
    assert etype == "MissingAuthenticationTokenException", etype

    status, headers, body = raw_http(
        "GET", server.http_url + "/things",
        headers={"Authorization": "AWS4-HMAC-SHA256 garbage", "X-Amz-Date": "20200101T000000Z"})
    assert status == 403, (status, body)
    json_error(status, headers, body)


def test_sigv4_failed_auth_changes_nothing(server):
    """Create-thing, create-policy and create-keys-and-certificate with a bad signature, an
    unknown key or no signature at all are refused and leave the registry untouched."""
    _, secret = server.credentials()
    iot = server.boto3_client()
    name = name_of("ghost")
    for bad in (bad_client(server, secret=secret[::-1] + "x"),
                bad_client(server, akid="AKIANIMBUSUNKNOWN000")):
        with pytest.raises(ClientError) as ei:
            bad.create_thing(thingName=name)
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError) as ei:
            bad.create_policy(policyName=name, policyDocument=ALLOW_ALL)
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError) as ei:
            bad.create_keys_and_certificate(setAsActive=True)
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    status, _, body = raw_http("POST", server.http_url + "/things/" + name, body=b"{}",
                               headers={"Content-Type": "application/json"})
    assert status == 403, body
    expect_error("ResourceNotFoundException", 404, iot.describe_thing, thingName=name)
    assert name not in [t["thingName"] for t in iot.list_things()["things"]]
    expect_error("ResourceNotFoundException", 404, iot.get_policy, policyName=name)
    assert iot.list_certificates()["certificates"] == []


def test_sigv4_clock_skew_over_15_minutes_is_refused(server):
    """A signature dated 20 minutes in the past or in the future is refused (403
    InvalidSignatureException, "Signature expired"/"not yet current"); one minute of skew
    is accepted."""
    for minutes in (-20, 20):
        status, headers, body = signed_request(server, "GET", "/things",
                                               skew=datetime.timedelta(minutes=minutes))
        assert status == 403, (minutes, status, body)
        etype, _ = json_error(status, headers, body)
        assert etype == "InvalidSignatureException", (minutes, etype)   # unverified in AWS
    status, _, body = signed_request(server, "GET", "/things",
                                     skew=datetime.timedelta(minutes=-1))
    assert status == 200, body


def test_sigv4_signing_names_and_regions(server):
    """Signing name `execute-api` (what boto3 1.26 uses) and `iot` (newer SDKs) are both
    accepted, with any region in the credential scope; responses are JSON with epoch-second
    timestamps and an x-amzn-RequestId."""
    iot = server.boto3_client()
    tt = name_of("type")
    iot.create_thing_type(thingTypeName=tt)
    for service, region in (("execute-api", "us-east-1"), ("iot", "us-east-1"),
                            ("iot", "ap-northeast-2"), ("execute-api", "eu-west-1")):
        status, headers, body = signed_request(server, "GET", "/thing-types/" + tt,
                                               service=service, region=region)
        assert status == 200, (service, region, status, body)
        assert headers.get("x-amzn-RequestId"), "no x-amzn-RequestId header"
        doc = json.loads(body.decode())
        assert doc["thingTypeName"] == tt
        created = doc["thingTypeMetadata"]["creationDate"]
        assert isinstance(created, (int, float)) and not isinstance(created, bool), \
            "creationDate must be epoch seconds as a JSON number, got %r" % (created,)
        assert abs(created - time.time()) < 600, created
    # a signed POST with a body, under the `iot` signing name
    name = name_of("signed")
    status, _, body = signed_request(
        server, "POST", "/things/" + name, service="iot", region="ap-northeast-2",
        body=json.dumps({"attributePayload": {"attributes": {"k": "v"}}}).encode())
    assert status == 200, body
    assert json.loads(body.decode())["thingName"] == name
    assert iot.describe_thing(thingName=name)["attributes"] == {"k": "v"}
    # an unknown key on the raw path too
    status, headers, body = signed_request(server, "GET", "/things",
                                           creds=("AKIANIMBUSUNKNOWN000", "nope"))
    assert status == 403, body
    assert json_error(status, headers, body)[0] == "UnrecognizedClientException"


def test_sigv4_any_region_with_boto3(server):
    """A boto3 client configured for ap-northeast-2 (the tutorial's region) works."""
    iot = server.boto3_client(region="ap-northeast-2")
    name = name_of("seoul")
    r = iot.create_thing(thingName=name)
    assert r["thingName"] == name
    # Nimbus is one registry; AWS would put the request's region in the ARN
    assert re.fullmatch(r"arn:aws:iot:[a-z0-9-]+:%s:thing/%s" % (ACCOUNT, re.escape(name)),
                        r["thingArn"]), r["thingArn"]
    assert iot.describe_thing(thingName=name)["thingName"] == name
    assert iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]


def test_control_plane_over_https(server):
    """The same API on the HTTPS listener (verified against the Nimbus root CA): signed calls
    work, a bad signature is refused."""
    iot = server.boto3_client(https=True)
    name = name_of("tls")
    iot.create_thing(thingName=name, attributePayload={"attributes": {"via": "https"}})
    d = iot.describe_thing(thingName=name)
    assert d["attributes"] == {"via": "https"} and d["version"] == 1
    created = iot.create_keys_and_certificate(setAsActive=True)
    assert cert_id_of(created["certificatePem"]) == created["certificateId"]
    assert iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    _, secret = server.credentials()
    bad = bad_client(server, secret=secret + "x", https=True)
    expect_error("InvalidSignatureException", 403, bad.describe_thing, thingName=name)
    # the unsigned HTTPS request gets the same JSON 403
    status, headers, body = raw_http("GET", "https://localhost:%d/things" % server.https_port,
                                     context=server.tls_context())
    assert status == 403, body
    json_error(status, headers, body)


# ====================================================================== DescribeEndpoint

def test_describe_endpoint_all_types(server):
    """DescribeEndpoint answers every endpointType and the default with a bare host name;
    an unknown type is 400."""
    iot = server.boto3_client()
    for etype in (None, "iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs"):
        r = iot.describe_endpoint(**({"endpointType": etype} if etype else {}))
        addr = r.get("endpointAddress")
        assert isinstance(addr, str) and addr, (etype, r)
        assert "://" not in addr and "/" not in addr and " " not in addr, \
            "endpointAddress must be a host name: %r" % addr
    # AWS: "Endpoint type iot:Bogus not recognized." (as moto reproduces it)
    expect_error("InvalidRequestException", 400, iot.describe_endpoint,
                 endpointType="iot:Bogus")


# ====================================================================== things

def test_thing_create_idempotent_conflict_and_describe(server):
    """CreateThing returns name/ARN/id; the same call again succeeds with the same id; a
    different configuration is 409 ResourceAlreadyExists carrying resourceId/resourceArn;
    DescribeThing returns defaultClientId, version 1 and the attributes."""
    iot = server.boto3_client()
    name = name_of("thing")
    attrs = {"color": "red", "size": "2"}
    r = iot.create_thing(thingName=name, attributePayload={"attributes": attrs})
    assert r["thingName"] == name
    assert r["thingArn"] == arn("thing", name)
    tid = r["thingId"]
    assert isinstance(tid, str) and tid
    again = iot.create_thing(thingName=name, attributePayload={"attributes": dict(attrs)})
    assert (again["thingId"], again["thingArn"]) == (tid, r["thingArn"])
    err = expect_error("ResourceAlreadyExistsException", 409, iot.create_thing,
                       thingName=name, attributePayload={"attributes": {"color": "blue"}})
    assert err.get("resourceArn") == r["thingArn"], err
    assert err.get("resourceId") in (tid, name), err   # AWS sends the thing id (unverified)

    d = iot.describe_thing(thingName=name)
    assert d["thingName"] == name and d["defaultClientId"] == name
    assert d["thingId"] == tid and d["thingArn"] == r["thingArn"]
    assert d["version"] == 1
    assert d["attributes"] == attrs
    assert not d.get("thingTypeName")
    # a create with no attributes is a different configuration too
    expect_error("ResourceAlreadyExistsException", 409, iot.create_thing, thingName=name)
    assert iot.describe_thing(thingName=name)["attributes"] == attrs

    bare = name_of("bare")
    iot.create_thing(thingName=bare)
    d = iot.describe_thing(thingName=bare)
    assert d["version"] == 1 and not d.get("attributes")


def test_thing_update_merge_replace_delete_and_versions(server):
    """UpdateThing: merge=true merges, an empty value deletes, merge=false replaces; every
    update bumps the version by one; a wrong expectedVersion is 409 VersionConflict and
    changes nothing; updating a missing thing is 404."""
    iot = server.boto3_client()
    name = name_of("upd")
    iot.create_thing(thingName=name, attributePayload={"attributes": {"a": "1", "b": "2"}})

    iot.update_thing(thingName=name,
                     attributePayload={"attributes": {"b": "3", "c": "4"}, "merge": True})
    d = iot.describe_thing(thingName=name)
    assert d["attributes"] == {"a": "1", "b": "3", "c": "4"} and d["version"] == 2

    iot.update_thing(thingName=name, attributePayload={"attributes": {"b": ""}, "merge": True})
    d = iot.describe_thing(thingName=name)
    assert d["attributes"] == {"a": "1", "c": "4"} and d["version"] == 3

    iot.update_thing(thingName=name, attributePayload={"attributes": {"x": "y"}})
    d = iot.describe_thing(thingName=name)
    assert d["attributes"] == {"x": "y"} and d["version"] == 4

    iot.update_thing(thingName=name, attributePayload={"attributes": {"z": "1"},
                                                       "merge": False})
    assert iot.describe_thing(thingName=name)["attributes"] == {"z": "1"}

    expect_error("VersionConflictException", 409, iot.update_thing, thingName=name,
                 expectedVersion=1, attributePayload={"attributes": {"q": "1"}})
    d = iot.describe_thing(thingName=name)
    assert d["attributes"] == {"z": "1"} and d["version"] == 5

    iot.update_thing(thingName=name, expectedVersion=5,
                     attributePayload={"attributes": {"q": "1"}, "merge": True})
    d = iot.describe_thing(thingName=name)
    assert d["attributes"] == {"z": "1", "q": "1"} and d["version"] == 6

    expect_error("ResourceNotFoundException", 404, iot.update_thing,
                 thingName=name_of("nothing"), attributePayload={"attributes": {"a": "b"}})


def test_thing_type_assignment_and_remove_thing_type(server):
    """A thing gets a type at creation or by UpdateThing (attributes kept), loses it with
    removeThingType, and a missing type is refused."""
    iot = server.boto3_client()
    tt = name_of("type")
    iot.create_thing_type(thingTypeName=tt)
    name = name_of("typed")
    iot.create_thing(thingName=name, thingTypeName=tt,
                     attributePayload={"attributes": {"a": "1"}})
    d = iot.describe_thing(thingName=name)
    assert d["thingTypeName"] == tt and d["attributes"] == {"a": "1"}

    iot.update_thing(thingName=name, removeThingType=True)
    d = iot.describe_thing(thingName=name)
    assert not d.get("thingTypeName")
    assert d["attributes"] == {"a": "1"} and d["version"] == 2

    plain = name_of("plain")
    iot.create_thing(thingName=plain, attributePayload={"attributes": {"k": "v"}})
    iot.update_thing(thingName=plain, thingTypeName=tt)
    d = iot.describe_thing(thingName=plain)
    assert d["thingTypeName"] == tt and d["attributes"] == {"k": "v"}

    # AWS answers a type that does not exist with ResourceNotFound (unverified; moto agrees)
    expect_error("ResourceNotFoundException", 404, iot.create_thing,
                 thingName=name_of("orphan"), thingTypeName=name_of("notype"))


def test_thing_name_and_attribute_validation(server):
    """Names longer than 128 or outside [a-zA-Z0-9:_-] are 400 InvalidRequest; more than 3
    attributes without a type, an over-long value or key are 400; a refused update changes
    nothing."""
    iot = server.boto3_client()
    ok = "n" * 128
    assert iot.create_thing(thingName=ok)["thingName"] == ok
    assert iot.create_thing(thingName="a:b_c-D9")["thingName"] == "a:b_c-D9"
    for bad in ("n" * 129, "bad name", "bad!name", "bad$name", "bäd"):
        expect_error("InvalidRequestException", 400, iot.create_thing, thingName=bad)
    assert sorted(t["thingName"] for t in iot.list_things()["things"]) == sorted([ok, "a:b_c-D9"])

    name = name_of("attrs")
    expect_error("InvalidRequestException", 400, iot.create_thing, thingName=name,
                 attributePayload={"attributes": {"a": "1", "b": "2", "c": "3", "d": "4"}})
    expect_error("ResourceNotFoundException", 404, iot.describe_thing, thingName=name)
    iot.create_thing(thingName=name, attributePayload={"attributes": {"a": "1", "b": "2",
                                                                      "c": "3"}})
    expect_error("InvalidRequestException", 400, iot.update_thing, thingName=name,
                 attributePayload={"attributes": {"d": "4"}, "merge": True})
    d = iot.describe_thing(thingName=name)
    assert d["attributes"] == {"a": "1", "b": "2", "c": "3"} and d["version"] == 1
    # replacing 3 by 3 others is fine
    iot.update_thing(thingName=name, attributePayload={"attributes": {"x": "1", "y": "2",
                                                                      "z": "3"}})

    other = name_of("long")
    expect_error("InvalidRequestException", 400, iot.create_thing, thingName=other,
                 attributePayload={"attributes": {"k": "v" * 801}})
    expect_error("InvalidRequestException", 400, iot.create_thing, thingName=other,
                 attributePayload={"attributes": {"k" * 129: "v"}})
    iot.create_thing(thingName=other, attributePayload={"attributes": {"k" * 128: "v" * 800}})
    assert iot.describe_thing(thingName=other)["attributes"] == {"k" * 128: "v" * 800}


def test_thing_with_type_allows_50_attributes(server):
    """With a thing type a thing may carry 50 attributes; the 51st is refused (400)."""
    iot = server.boto3_client()
    tt = name_of("big")
    iot.create_thing_type(thingTypeName=tt)
    attrs = {"attr%02d" % i: "v%d" % i for i in range(50)}
    name = name_of("fifty")
    iot.create_thing(thingName=name, thingTypeName=tt, attributePayload={"attributes": attrs})
    assert iot.describe_thing(thingName=name)["attributes"] == attrs
    # the error code for the 51st attribute is not documented; InvalidRequest like the
    # 3-attribute limit (unverified)
    expect_error("InvalidRequestException", 400, iot.update_thing, thingName=name,
                 attributePayload={"attributes": {"extra": "1"}, "merge": True})
    expect_error("InvalidRequestException", 400, iot.create_thing, thingName=name_of("fifty1"),
                 thingTypeName=tt,
                 attributePayload={"attributes": dict(attrs, extra="1")})
    assert len(iot.describe_thing(thingName=name)["attributes"]) == 50


def test_list_things_pagination(server):
    """ListThings pages with maxResults and nextToken; every thing is seen exactly once; each
    entry has name, ARN, version and attributes; boto3's paginator works too."""
    iot = server.boto3_client()
    names = sorted(name_of("page") for _ in range(7))
    for i, n in enumerate(names):
        iot.create_thing(thingName=n, attributePayload={"attributes": {"i": str(i)}})
    pages = follow(iot.list_things, "things", maxResults=3)
    assert_pages(pages, 3, 7)
    seen = [t["thingName"] for t in flat(pages)]
    assert sorted(seen) == names, seen
    for t in flat(pages):
        assert t["thingArn"] == arn("thing", t["thingName"])
        assert t["version"] == 1
        assert t["attributes"] == {"i": str(names.index(t["thingName"]))}
    whole = iot.list_things()
    assert sorted(t["thingName"] for t in whole["things"]) == names
    assert not whole.get("nextToken")
    got = [t["thingName"] for page in iot.get_paginator("list_things").paginate(
        PaginationConfig={"PageSize": 2}) for t in page["things"]]
    assert sorted(got) == names
    expect_error("InvalidRequestException", 400, iot.list_things, nextToken="bogus-token")


def test_list_things_filters(server):
    """ListThings filters on attributeName/attributeValue (exact or prefix) and on
    thingTypeName."""
    iot = server.boto3_client()
    tt = name_of("ftype")
    iot.create_thing_type(thingTypeName=tt)
    red, resin, blue, typed, none = (name_of(p) for p in ("red", "resin", "blue", "typed",
                                                         "none"))
    iot.create_thing(thingName=red, attributePayload={"attributes": {"color": "red"}})
    iot.create_thing(thingName=resin, attributePayload={"attributes": {"color": "resin"}})
    iot.create_thing(thingName=blue, attributePayload={"attributes": {"color": "blue",
                                                                      "shade": "red"}})
    iot.create_thing(thingName=typed, thingTypeName=tt,
                     attributePayload={"attributes": {"color": "green"}})
    iot.create_thing(thingName=none)

    def names(**kw):
        return sorted(t["thingName"] for t in flat(follow(iot.list_things, "things", **kw)))

    assert names(attributeName="color", attributeValue="red") == [red]
    assert names(attributeName="color", attributeValue="re",
                 usePrefixAttributeValue=True) == sorted([red, resin])
    assert names(attributeName="color", attributeValue="re") == []
    assert names(attributeName="shade", attributeValue="red") == [blue]
    assert names(thingTypeName=tt) == [typed]
    typed_items = iot.list_things(thingTypeName=tt)["things"]
    assert typed_items[0]["thingTypeName"] == tt
    assert names(thingTypeName=tt, attributeName="color", attributeValue="red") == []
    assert len(names()) == 5


def test_thing_delete_semantics(server):
    """DeleteThing: a wrong expectedVersion is 409 and keeps the thing; the right one
    deletes it; describe is then 404; deleting a missing thing succeeds; a thing with an
    attached principal cannot be deleted (InvalidRequest)."""
    iot = server.boto3_client()
    name = name_of("del")
    iot.create_thing(thingName=name)
    expect_error("VersionConflictException", 409, iot.delete_thing, thingName=name,
                 expectedVersion=7)
    assert iot.describe_thing(thingName=name)["version"] == 1
    r = iot.delete_thing(thingName=name, expectedVersion=1)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    expect_error("ResourceNotFoundException", 404, iot.describe_thing, thingName=name)
    assert name not in [t["thingName"] for t in iot.list_things()["things"]]
    assert iot.delete_thing(thingName=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert iot.delete_thing(thingName=name_of("never"))["ResponseMetadata"][
        "HTTPStatusCode"] == 200
    # a deleted name can be created again (new id)
    again = iot.create_thing(thingName=name)
    assert iot.describe_thing(thingName=name)["version"] == 1 and again["thingId"]

    # AWS: "Cannot delete. Thing X is still attached to one or more principals"
    cert = iot.create_keys_and_certificate(setAsActive=False)
    iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
    expect_error("InvalidRequestException", 400, iot.delete_thing, thingName=name)
    assert iot.describe_thing(thingName=name)["thingName"] == name
    iot.detach_thing_principal(thingName=name, principal=cert["certificateArn"])
    iot.delete_thing(thingName=name)
    expect_error("ResourceNotFoundException", 404, iot.describe_thing, thingName=name)


# ====================================================================== thing types

def test_thing_type_create_describe_idempotent(server):
    """CreateThingType returns name/ARN/id, is idempotent for the same configuration and
    409 for another; DescribeThingType has the properties and metadata (deprecated false,
    creationDate a timestamp); a missing type is 404."""
    iot = server.boto3_client()
    tt = name_of("sensor")
    props = {"thingTypeDescription": "temperature sensor", "searchableAttributes": ["model"]}
    r = iot.create_thing_type(thingTypeName=tt, thingTypeProperties=props)
    assert r["thingTypeName"] == tt
    assert r["thingTypeArn"] == arn("thingtype", tt)
    assert r["thingTypeId"]
    again = iot.create_thing_type(thingTypeName=tt, thingTypeProperties=dict(props))
    assert again["thingTypeId"] == r["thingTypeId"]
    err = expect_error("ResourceAlreadyExistsException", 409, iot.create_thing_type,
                       thingTypeName=tt,
                       thingTypeProperties={"thingTypeDescription": "something else"})
    assert err.get("resourceArn") == r["thingTypeArn"], err

    d = iot.describe_thing_type(thingTypeName=tt)
    assert d["thingTypeName"] == tt and d["thingTypeId"] == r["thingTypeId"]
    assert d["thingTypeArn"] == r["thingTypeArn"]
    assert d["thingTypeProperties"]["thingTypeDescription"] == "temperature sensor"
    assert d["thingTypeProperties"]["searchableAttributes"] == ["model"]
    md = d["thingTypeMetadata"]
    assert md["deprecated"] is False
    assert not md.get("deprecationDate")
    assert_recent(md["creationDate"])
    expect_error("ResourceNotFoundException", 404, iot.describe_thing_type,
                 thingTypeName=name_of("nope"))
    expect_error("InvalidRequestException", 400, iot.create_thing_type,
                 thingTypeName="bad type")


def test_list_thing_types_pagination(server):
    """ListThingTypes pages with maxResults/nextToken, each type once, and filters on
    thingTypeName."""
    iot = server.boto3_client()
    types_ = sorted(name_of("tt") for _ in range(5))
    for t in types_:
        iot.create_thing_type(thingTypeName=t, thingTypeProperties={
            "thingTypeDescription": "d-" + t})
    pages = follow(iot.list_thing_types, "thingTypes", maxResults=2)
    assert_pages(pages, 2, 5)
    items = flat(pages)
    assert sorted(i["thingTypeName"] for i in items) == types_
    for i in items:
        assert i["thingTypeArn"] == arn("thingtype", i["thingTypeName"])
        assert i["thingTypeProperties"]["thingTypeDescription"] == "d-" + i["thingTypeName"]
        assert i["thingTypeMetadata"]["deprecated"] is False
        assert is_datetime(i["thingTypeMetadata"]["creationDate"])
    only = iot.list_thing_types(thingTypeName=types_[2])["thingTypes"]
    assert [i["thingTypeName"] for i in only] == [types_[2]]
    expect_error("InvalidRequestException", 400, iot.list_thing_types, nextToken="bogus-token")


def test_thing_type_deprecate_and_delete(server):
    """Deprecate/undeprecate toggle thingTypeMetadata.deprecated (with deprecationDate);
    a deprecated type cannot be given to a new thing; delete needs the type deprecated and
    unused (InvalidRequest otherwise); then describe is 404."""
    iot = server.boto3_client()
    tt = name_of("old")
    iot.create_thing_type(thingTypeName=tt)
    user = name_of("user")
    iot.create_thing(thingName=user, thingTypeName=tt)

    expect_error("InvalidRequestException", 400, iot.delete_thing_type, thingTypeName=tt)
    iot.deprecate_thing_type(thingTypeName=tt)
    md = iot.describe_thing_type(thingTypeName=tt)["thingTypeMetadata"]
    assert md["deprecated"] is True
    assert_recent(md["deprecationDate"])
    expect_error("InvalidRequestException", 400, iot.create_thing,
                 thingName=name_of("late"), thingTypeName=tt)
    assert iot.describe_thing(thingName=user)["thingTypeName"] == tt   # existing thing kept

    iot.deprecate_thing_type(thingTypeName=tt, undoDeprecate=True)
    md = iot.describe_thing_type(thingTypeName=tt)["thingTypeMetadata"]
    assert md["deprecated"] is False
    late = name_of("late")
    iot.create_thing(thingName=late, thingTypeName=tt)

    iot.deprecate_thing_type(thingTypeName=tt)
    # still used by two things (AWS also makes you wait 5 minutes after deprecating; an
    # emulator need not)
    expect_error("InvalidRequestException", 400, iot.delete_thing_type, thingTypeName=tt)
    iot.update_thing(thingName=user, removeThingType=True)
    iot.delete_thing(thingName=late)
    iot.delete_thing_type(thingTypeName=tt)
    expect_error("ResourceNotFoundException", 404, iot.describe_thing_type, thingTypeName=tt)
    assert tt not in [t["thingTypeName"] for t in iot.list_thing_types()["thingTypes"]]
    expect_error("ResourceNotFoundException", 404, iot.deprecate_thing_type,
                 thingTypeName=name_of("ghost"))


# ====================================================================== thing groups

def test_thing_group_hierarchy_describe(server):
    """CreateThingGroup with description/attributes and a parent; DescribeThingGroup has
    version 1, the properties, parentGroupName and rootToParentThingGroups (root first)."""
    iot = server.boto3_client()
    root, child, grand = name_of("g-root"), name_of("g-child"), name_of("g-grand")
    props = {"thingGroupDescription": "building 7",
             "attributePayload": {"attributes": {"site": "seoul", "floor": "3"}}}
    r = iot.create_thing_group(thingGroupName=root, thingGroupProperties=props)
    assert r["thingGroupName"] == root
    assert r["thingGroupArn"] == arn("thinggroup", root)
    assert r["thingGroupId"]
    c = iot.create_thing_group(thingGroupName=child, parentGroupName=root)
    g = iot.create_thing_group(thingGroupName=grand, parentGroupName=child,
                               thingGroupProperties={"thingGroupDescription": "room"})

    d = iot.describe_thing_group(thingGroupName=root)
    assert d["thingGroupName"] == root and d["thingGroupId"] == r["thingGroupId"]
    assert d["thingGroupArn"] == r["thingGroupArn"]
    assert d["version"] == 1
    assert d["thingGroupProperties"]["thingGroupDescription"] == "building 7"
    assert d["thingGroupProperties"]["attributePayload"]["attributes"] == \
        {"site": "seoul", "floor": "3"}
    md = d["thingGroupMetadata"]
    assert not md.get("parentGroupName") and not md.get("rootToParentThingGroups")
    assert_recent(md["creationDate"])

    md = iot.describe_thing_group(thingGroupName=child)["thingGroupMetadata"]
    assert md["parentGroupName"] == root
    assert md["rootToParentThingGroups"] == [{"groupName": root, "groupArn": r["thingGroupArn"]}]
    dg = iot.describe_thing_group(thingGroupName=grand)
    assert dg["thingGroupArn"] == g["thingGroupArn"]
    assert dg["thingGroupMetadata"]["parentGroupName"] == child
    assert dg["thingGroupMetadata"]["rootToParentThingGroups"] == [
        {"groupName": root, "groupArn": r["thingGroupArn"]},
        {"groupName": child, "groupArn": c["thingGroupArn"]}]

    # same configuration again: the existing group; different: 409 (AWS, per moto's notes)
    assert iot.create_thing_group(thingGroupName=root, thingGroupProperties=props)[
        "thingGroupId"] == r["thingGroupId"]
    expect_error("ResourceAlreadyExistsException", 409, iot.create_thing_group,
                 thingGroupName=root,
                 thingGroupProperties={"thingGroupDescription": "another building"})
    expect_error("ResourceNotFoundException", 404, iot.describe_thing_group,
                 thingGroupName=name_of("g-none"))
    # a parent that does not exist: AWS answers ResourceNotFound although CreateThingGroup's
    # model does not list it (seen by emulators measuring AWS; unverified here)
    expect_error("ResourceNotFoundException", 404, iot.create_thing_group,
                 thingGroupName=name_of("g-orphan"), parentGroupName=name_of("g-none"))
    expect_error("InvalidRequestException", 400, iot.create_thing_group,
                 thingGroupName="bad group")


def test_list_thing_groups_filters_and_pagination(server):
    """ListThingGroups: all groups (paged), direct children with parentGroup and
    recursive=false, all descendants with recursive=true, and namePrefixFilter."""
    iot = server.boto3_client()
    tag = name_of("lg")
    root, a, b, a1 = tag + "-root", tag + "-a", tag + "-b", tag + "-a1"
    other = name_of("zz")
    iot.create_thing_group(thingGroupName=root)
    iot.create_thing_group(thingGroupName=a, parentGroupName=root)
    iot.create_thing_group(thingGroupName=b, parentGroupName=root)
    iot.create_thing_group(thingGroupName=a1, parentGroupName=a)
    iot.create_thing_group(thingGroupName=other)
    every = sorted([root, a, b, a1, other])

    pages = follow(iot.list_thing_groups, "thingGroups", maxResults=2)
    assert_pages(pages, 2, 5)
    items = flat(pages)
    assert sorted(i["groupName"] for i in items) == every
    for i in items:
        assert i["groupArn"] == arn("thinggroup", i["groupName"])

    def names(**kw):
        return sorted(i["groupName"] for i in flat(follow(iot.list_thing_groups,
                                                          "thingGroups", **kw)))

    assert names() == every
    assert names(parentGroup=root, recursive=False) == sorted([a, b])
    assert names(parentGroup=root, recursive=True) == sorted([a, b, a1])
    assert names(parentGroup=a, recursive=False) == [a1]
    assert names(namePrefixFilter=tag) == sorted([root, a, b, a1])
    assert names(namePrefixFilter=tag + "-a") == sorted([a, a1])
    assert names(parentGroup=root, namePrefixFilter=tag + "-b", recursive=True) == [b]
    expect_error("InvalidRequestException", 400, iot.list_thing_groups, nextToken="bogus-token")


def test_thing_group_membership(server):
    """Add/RemoveThingTo/FromThingGroup by name and by ARN; ListThingsInThingGroup (paged,
    recursive) and ListThingGroupsForThing see the membership; missing thing or group is 404."""
    iot = server.boto3_client()
    root, child = name_of("m-root"), name_of("m-child")
    rg = iot.create_thing_group(thingGroupName=root)
    cg = iot.create_thing_group(thingGroupName=child, parentGroupName=root)
    things = sorted(name_of("member") for _ in range(5))
    arns = {}
    for t in things:
        arns[t] = iot.create_thing(thingName=t)["thingArn"]
    # by name / by ARN / mixed
    iot.add_thing_to_thing_group(thingGroupName=root, thingName=things[0])
    iot.add_thing_to_thing_group(thingGroupArn=rg["thingGroupArn"], thingArn=arns[things[1]])
    iot.add_thing_to_thing_group(thingGroupName=root, thingArn=arns[things[2]])
    iot.add_thing_to_thing_group(thingGroupArn=rg["thingGroupArn"], thingName=things[3])
    iot.add_thing_to_thing_group(thingGroupName=root, thingName=things[0])   # idempotent
    iot.add_thing_to_thing_group(thingGroupName=child, thingName=things[4])

    pages = follow(iot.list_things_in_thing_group, "things", thingGroupName=root, maxResults=3)
    assert_pages(pages, 3, 4)
    assert sorted(flat(pages)) == things[:4]
    rec = flat(follow(iot.list_things_in_thing_group, "things", thingGroupName=root,
                      recursive=True))
    assert sorted(rec) == things, rec
    assert sorted(iot.list_things_in_thing_group(thingGroupName=root, recursive=False)[
        "things"]) == things[:4]
    iot.add_thing_to_thing_group(thingGroupName=child, thingName=things[0])
    assert sorted(iot.list_things_in_thing_group(thingGroupName=child)["things"]) == \
        sorted([things[0], things[4]])

    groups = iot.list_thing_groups_for_thing(thingName=things[0])["thingGroups"]
    assert sorted((g["groupName"], g["groupArn"]) for g in groups) == sorted(
        [(root, rg["thingGroupArn"]), (child, cg["thingGroupArn"])])
    pages = follow(iot.list_thing_groups_for_thing, "thingGroups", thingName=things[0],
                   maxResults=1)
    assert_pages(pages, 1, 2)
    assert iot.list_thing_groups_for_thing(thingName=things[4])["thingGroups"] == [
        {"groupName": child, "groupArn": cg["thingGroupArn"]}]

    iot.remove_thing_from_thing_group(thingGroupName=root, thingName=things[0])
    iot.remove_thing_from_thing_group(thingGroupArn=rg["thingGroupArn"],
                                      thingArn=arns[things[1]])
    assert sorted(iot.list_things_in_thing_group(thingGroupName=root)["things"]) == \
        sorted(things[2:4])
    assert [g["groupName"] for g in iot.list_thing_groups_for_thing(
        thingName=things[0])["thingGroups"]] == [child]
    assert iot.list_thing_groups_for_thing(thingName=things[1])["thingGroups"] == []

    expect_error("ResourceNotFoundException", 404, iot.add_thing_to_thing_group,
                 thingGroupName=root, thingName=name_of("nobody"))
    expect_error("ResourceNotFoundException", 404, iot.add_thing_to_thing_group,
                 thingGroupName=name_of("nogroup"), thingName=things[0])
    expect_error("ResourceNotFoundException", 404, iot.list_things_in_thing_group,
                 thingGroupName=name_of("nogroup"))
    expect_error("ResourceNotFoundException", 404, iot.list_thing_groups_for_thing,
                 thingName=name_of("nobody"))
    expect_error("InvalidRequestException", 400, iot.list_things_in_thing_group,
                 thingGroupName=root, nextToken="bogus-token")
    expect_error("InvalidRequestException", 400, iot.list_thing_groups_for_thing,
                 thingName=things[0], nextToken="bogus-token")


def test_thing_group_delete(server):
    """DeleteThingGroup: a group with child groups is refused (InvalidRequest); a leaf
    group is deleted (its things lose the membership, the things stay); deleting a missing
    group succeeds."""
    iot = server.boto3_client()
    root, child = name_of("d-root"), name_of("d-child")
    iot.create_thing_group(thingGroupName=root)
    iot.create_thing_group(thingGroupName=child, parentGroupName=root)
    thing = name_of("d-thing")
    iot.create_thing(thingName=thing)
    iot.add_thing_to_thing_group(thingGroupName=child, thingName=thing)

    expect_error("InvalidRequestException", 400, iot.delete_thing_group, thingGroupName=root)
    assert iot.describe_thing_group(thingGroupName=root)["thingGroupName"] == root
    r = iot.delete_thing_group(thingGroupName=child)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    expect_error("ResourceNotFoundException", 404, iot.describe_thing_group,
                 thingGroupName=child)
    assert iot.list_thing_groups_for_thing(thingName=thing)["thingGroups"] == []
    assert iot.describe_thing(thingName=thing)["thingName"] == thing
    assert [g["groupName"] for g in iot.list_thing_groups()["thingGroups"]] == [root]
    iot.delete_thing_group(thingGroupName=root)
    assert iot.list_thing_groups()["thingGroups"] == []
    assert iot.delete_thing_group(thingGroupName=root)["ResponseMetadata"][
        "HTTPStatusCode"] == 200
    assert iot.delete_thing_group(thingGroupName=name_of("never"))["ResponseMetadata"][
        "HTTPStatusCode"] == 200


# ====================================================================== certificates

def test_create_keys_and_certificate(server):
    """CreateKeysAndCertificate: certificateId = sha256(DER) in lowercase hex, the ARN, an
    RSA-2048 certificate with CN "AWS IoT Certificate" chaining to the Nimbus root CA, a PEM
    key pair that matches it; setAsActive decides ACTIVE vs INACTIVE."""
    iot = server.boto3_client()
    r = iot.create_keys_and_certificate(setAsActive=True)
    pem, cid = r["certificatePem"], r["certificateId"]
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
    assert cert_id_of(pem) == cid
    assert r["certificateArn"] == arn("cert", cid)
    assert r["keyPair"]["PublicKey"].startswith("-----BEGIN PUBLIC KEY-----")
    assert re.match(r"-----BEGIN (RSA )?PRIVATE KEY-----", r["keyPair"]["PrivateKey"])

    crt = write(server, cid + ".crt", pem)
    key = write(server, cid + ".key", r["keyPair"]["PrivateKey"])
    rc, out = openssl("verify", "-CAfile", server.ca_cert, crt, check=False)
    assert rc == 0 and "OK" in out, "certificate does not chain to the Nimbus root CA:\n" + out
    _, subj = openssl("x509", "-in", crt, "-noout", "-subject", "-nameopt", "RFC2253")
    assert "CN=AWS IoT Certificate" in subj, subj
    _, text = openssl("x509", "-in", crt, "-noout", "-text")
    assert "rsaEncryption" in text and "2048 bit" in text, "AWS issues RSA-2048:\n" + text
    cert_pub = pubkey_of_cert(crt)
    assert normalize_pubkey(r["keyPair"]["PublicKey"]) == cert_pub
    assert openssl("pkey", "-in", key, "-pubout")[1].strip() == cert_pub

    d = iot.describe_certificate(certificateId=cid)["certificateDescription"]
    assert d["status"] == "ACTIVE"
    inactive = iot.create_keys_and_certificate(setAsActive=False)
    assert inactive["certificateId"] != cid
    assert iot.describe_certificate(certificateId=inactive["certificateId"])[
        "certificateDescription"]["status"] == "INACTIVE"
    default = iot.create_keys_and_certificate()
    assert iot.describe_certificate(certificateId=default["certificateId"])[
        "certificateDescription"]["status"] == "INACTIVE"


def test_describe_certificate_fields(server):
    """DescribeCertificate returns every field AWS does for a Nimbus-issued certificate:
    ARN, id, status, the PEM, ownedBy (account), creation/lastModified dates, validity,
    certificateMode DEFAULT; a missing id is 404; lastModifiedDate moves on update."""
    iot = server.boto3_client()
    r = iot.create_keys_and_certificate(setAsActive=True)
    d = iot.describe_certificate(certificateId=r["certificateId"])["certificateDescription"]
    assert d["certificateArn"] == r["certificateArn"]
    assert d["certificateId"] == r["certificateId"]
    assert d["status"] == "ACTIVE"
    assert d["certificatePem"].strip() == r["certificatePem"].strip()
    assert d["ownedBy"] == ACCOUNT
    assert_recent(d["creationDate"])
    assert_recent(d["lastModifiedDate"])
    assert d["lastModifiedDate"] >= d["creationDate"]
    assert d["certificateMode"] == "DEFAULT"
    v = d["validity"]
    assert v["notBefore"] <= now_utc() + datetime.timedelta(minutes=5) < v["notAfter"]
    assert v["notAfter"] - v["notBefore"] > datetime.timedelta(days=300)
    expect_error("ResourceNotFoundException", 404, iot.describe_certificate,
                 certificateId=MISSING_CERT_ID)

    time.sleep(1.1)
    iot.update_certificate(certificateId=r["certificateId"], newStatus="INACTIVE")
    d2 = iot.describe_certificate(certificateId=r["certificateId"])["certificateDescription"]
    assert d2["status"] == "INACTIVE"
    assert d2["creationDate"] == d["creationDate"]
    assert d2["lastModifiedDate"] > d["lastModifiedDate"]


def test_create_certificate_from_csr(server):
    """CreateCertificateFromCsr issues a certificate for the CSR's public key, chaining to the
    Nimbus root CA, id = sha256(DER); setAsActive decides the status; a bad CSR is 400."""
    iot = server.boto3_client()
    csr_pem, csr, _ = make_csr(server, cn="csr-device-1")
    r = iot.create_certificate_from_csr(certificateSigningRequest=csr_pem, setAsActive=True)
    assert cert_id_of(r["certificatePem"]) == r["certificateId"]
    assert r["certificateArn"] == arn("cert", r["certificateId"])
    crt = write(server, "csr-%s.crt" % r["certificateId"][:8], r["certificatePem"])
    csr_pub = openssl("req", "-in", csr, "-noout", "-pubkey")[1].strip()
    assert pubkey_of_cert(crt) == csr_pub
    rc, out = openssl("verify", "-CAfile", server.ca_cert, crt, check=False)
    assert rc == 0, out
    assert iot.describe_certificate(certificateId=r["certificateId"])[
        "certificateDescription"]["status"] == "ACTIVE"

    csr2_pem, _, _ = make_csr(server, cn="csr-device-2")
    r2 = iot.create_certificate_from_csr(certificateSigningRequest=csr2_pem)
    assert iot.describe_certificate(certificateId=r2["certificateId"])[
        "certificateDescription"]["status"] == "INACTIVE"

    before = {c["certificateId"] for c in iot.list_certificates()["certificates"]}
    for bad in ("not a csr",
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                csr_pem.replace(csr_pem.splitlines()[3], csr_pem.splitlines()[3][::-1])):
        expect_error("InvalidRequestException", 400, iot.create_certificate_from_csr,
                     certificateSigningRequest=bad)
    assert {c["certificateId"] for c in iot.list_certificates()["certificates"]} == before


def test_register_ca_and_certificates(server):
    """RegisterCACertificate (with a verification certificate for the registration code),
    DescribeCACertificate, ListCACertificates, then RegisterCertificate for device
    certificates of that CA (ACTIVE via setAsActive or status), caCertificateId,
    ListCertificatesByCA, duplicates 409, garbage 400."""
    iot = server.boto3_client()
    ca_crt, ca_key, ca_pem, reg = register_foreign_ca(server, iot)
    ca_id = reg["certificateId"]
    assert ca_id == cert_id_of(ca_pem)   # same id scheme as device certificates (unverified)
    assert reg["certificateArn"] == arn("cacert", ca_id)

    d = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
    assert d["certificateArn"] == reg["certificateArn"] and d["certificateId"] == ca_id
    assert d["status"] == "ACTIVE"
    assert d["autoRegistrationStatus"] == "DISABLE"
    assert d["certificatePem"].strip() == ca_pem.strip()
    assert d["ownedBy"] == ACCOUNT
    assert_recent(d["creationDate"])
    assert d["validity"]["notBefore"] < d["validity"]["notAfter"]
    assert d.get("certificateMode", "DEFAULT") == "DEFAULT"
    cas = iot.list_ca_certificates()["certificates"]
    assert [(c["certificateId"], c["certificateArn"], c["status"]) for c in cas] == \
        [(ca_id, reg["certificateArn"], "ACTIVE")]
    assert is_datetime(cas[0]["creationDate"])
    err = expect_error("ResourceAlreadyExistsException", 409, iot.register_ca_certificate,
                       caCertificate=ca_pem, verificationCertificate=read_text(
                           server.make_client_cert(
                               cn=iot.get_registration_code()["registrationCode"],
                               ca=(ca_crt, ca_key))[0]),
                       setAsActive=True)
    assert err.get("resourceId") in (None, ca_id), err

    dev1, _ = server.make_client_cert(cn="ca-dev-1", ca=(ca_crt, ca_key))
    dev2, _ = server.make_client_cert(cn="ca-dev-2", ca=(ca_crt, ca_key))
    dev3, _ = server.make_client_cert(cn="ca-dev-3", ca=(ca_crt, ca_key))
    p1, p2, p3 = read_text(dev1), read_text(dev2), read_text(dev3)
    r1 = iot.register_certificate(certificatePem=p1, caCertificatePem=ca_pem, setAsActive=True)
    assert r1["certificateId"] == cert_id_of(p1)
    assert r1["certificateArn"] == arn("cert", r1["certificateId"])
    r2 = iot.register_certificate(certificatePem=p2, caCertificatePem=ca_pem, status="ACTIVE")
    r3 = iot.register_certificate(certificatePem=p3, caCertificatePem=ca_pem,
                                  status="INACTIVE")
    for r, status in ((r1, "ACTIVE"), (r2, "ACTIVE"), (r3, "INACTIVE")):
        dd = iot.describe_certificate(certificateId=r["certificateId"])["certificateDescription"]
        assert dd["status"] == status, (r, dd)
        assert dd["caCertificateId"] == ca_id
        assert dd["certificateMode"] == "DEFAULT"
        assert dd["ownedBy"] == ACCOUNT
    # the CA may also be found without caCertificatePem (it is registered)
    dev4, _ = server.make_client_cert(cn="ca-dev-4", ca=(ca_crt, ca_key))
    r4 = iot.register_certificate(certificatePem=read_text(dev4), setAsActive=True)
    assert iot.describe_certificate(certificateId=r4["certificateId"])[
        "certificateDescription"]["caCertificateId"] == ca_id

    err = expect_error("ResourceAlreadyExistsException", 409, iot.register_certificate,
                       certificatePem=p1, caCertificatePem=ca_pem, setAsActive=True)
    assert err.get("resourceId") in (None, r1["certificateId"]), err
    expect_error("CertificateValidationException", 400, iot.register_certificate,
                 certificatePem="-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
                 caCertificatePem=ca_pem)

    by_ca = flat(follow(iot.list_certificates_by_ca, "certificates", token_in="marker",
                        token_out="nextMarker", caCertificateId=ca_id, pageSize=3))
    assert sorted(c["certificateId"] for c in by_ca) == sorted(
        r["certificateId"] for r in (r1, r2, r3, r4))
    nimbus_issued = iot.create_keys_and_certificate()["certificateId"]
    assert nimbus_issued not in [c["certificateId"] for c in
                                 iot.list_certificates_by_ca(caCertificateId=ca_id)[
                                     "certificates"]]


def test_register_certificate_needs_registered_ca(server):
    """A device certificate whose CA is not registered cannot be registered with
    RegisterCertificate (400); registration-code and verification-certificate checks of
    RegisterCACertificate."""
    iot = server.boto3_client()
    ca_crt, ca_key = server.make_ca("Unregistered CA")
    dev, _ = server.make_client_cert(cn="stray", ca=(ca_crt, ca_key))
    # the modeled error for a CA that is not registered (RegisterCertificate's model has no
    # ResourceNotFound); exact AWS code unverified
    for kw in ({"caCertificatePem": read_text(ca_crt)}, {}):
        expect_error("CertificateValidationException", 400, iot.register_certificate,
                     certificatePem=read_text(dev), setAsActive=True, **kw)
    assert iot.list_certificates()["certificates"] == []

    # a verification certificate whose CN is not the registration code
    wrong, _ = server.make_client_cert(cn="not-the-registration-code", ca=(ca_crt, ca_key))
    expect_error("RegistrationCodeValidationException", 400, iot.register_ca_certificate,
                 caCertificate=read_text(ca_crt),
                 verificationCertificate=read_text(wrong), setAsActive=True)
    # a verification certificate signed by another CA
    other_ca = server.make_ca("Other CA")
    code = iot.get_registration_code()["registrationCode"]
    foreign_verif, _ = server.make_client_cert(cn=code, ca=other_ca)
    with pytest.raises(ClientError) as ei:
        iot.register_ca_certificate(caCertificate=read_text(ca_crt),
                                    verificationCertificate=read_text(foreign_verif),
                                    setAsActive=True)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert iot.list_ca_certificates()["certificates"] == []
    expect_error("CertificateValidationException", 400, iot.register_ca_certificate,
                 caCertificate="garbage", verificationCertificate=read_text(wrong))


def test_ca_certificate_update_and_delete(server):
    """UpdateCACertificate changes status and auto-registration; DeleteCACertificate needs the
    CA INACTIVE (406 CertificateStateException otherwise); then describe is 404."""
    iot = server.boto3_client()
    _, _, _, reg = register_foreign_ca(server, iot, set_active=False)
    ca_id = reg["certificateId"]
    assert iot.describe_ca_certificate(certificateId=ca_id)[
        "certificateDescription"]["status"] == "INACTIVE"
    iot.update_ca_certificate(certificateId=ca_id, newStatus="ACTIVE",
                              newAutoRegistrationStatus="ENABLE")
    d = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
    assert (d["status"], d["autoRegistrationStatus"]) == ("ACTIVE", "ENABLE")
    expect_error("CertificateStateException", 406, iot.delete_ca_certificate,
                 certificateId=ca_id)
    iot.update_ca_certificate(certificateId=ca_id, newStatus="INACTIVE")
    d = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
    assert (d["status"], d["autoRegistrationStatus"]) == ("INACTIVE", "ENABLE")
    iot.update_ca_certificate(certificateId=ca_id, newAutoRegistrationStatus="DISABLE")
    assert iot.describe_ca_certificate(certificateId=ca_id)[
        "certificateDescription"]["autoRegistrationStatus"] == "DISABLE"
    iot.delete_ca_certificate(certificateId=ca_id)
    expect_error("ResourceNotFoundException", 404, iot.describe_ca_certificate,
                 certificateId=ca_id)
    assert iot.list_ca_certificates()["certificates"] == []
    expect_error("ResourceNotFoundException", 404, iot.update_ca_certificate,
                 certificateId=MISSING_CERT_ID, newStatus="ACTIVE")


def test_register_certificate_without_ca(server):
    """RegisterCertificateWithoutCA accepts a certificate of an unregistered CA with the given
    status and no caCertificateId; the same certificate twice is 409; garbage is 400."""
    iot = server.boto3_client()
    ca = server.make_ca("Private CA")
    dev, _ = server.make_client_cert(cn="noca-dev", ca=ca)
    pem = read_text(dev)
    r = iot.register_certificate_without_ca(certificatePem=pem, status="ACTIVE")
    assert r["certificateId"] == cert_id_of(pem)
    assert r["certificateArn"] == arn("cert", r["certificateId"])
    d = iot.describe_certificate(certificateId=r["certificateId"])["certificateDescription"]
    assert d["status"] == "ACTIVE" and not d.get("caCertificateId")
    assert d["certificatePem"].strip() == pem.strip()
    # AWS reports certificateMode SNI_ONLY for these (multi-account registration), not checked

    dev2, _ = server.make_client_cert(cn="noca-dev-2", ca=ca)
    r2 = iot.register_certificate_without_ca(certificatePem=read_text(dev2),
                                             status="INACTIVE")
    assert iot.describe_certificate(certificateId=r2["certificateId"])[
        "certificateDescription"]["status"] == "INACTIVE"

    err = expect_error("ResourceAlreadyExistsException", 409,
                       iot.register_certificate_without_ca, certificatePem=pem,
                       status="ACTIVE")
    assert err.get("resourceId") in (None, r["certificateId"]), err
    # a Nimbus-issued certificate is already registered too
    issued = iot.create_keys_and_certificate()
    expect_error("ResourceAlreadyExistsException", 409, iot.register_certificate_without_ca,
                 certificatePem=issued["certificatePem"], status="ACTIVE")
    for garbage in ("garbage", "-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n"):
        expect_error("CertificateValidationException", 400,
                     iot.register_certificate_without_ca, certificatePem=garbage,
                     status="ACTIVE")
    assert len(iot.list_certificates()["certificates"]) == 3


def test_update_certificate_statuses(server):
    """UpdateCertificate moves between ACTIVE, INACTIVE and REVOKED, is idempotent, rejects an
    unknown status (400) and a missing certificate (404)."""
    iot = server.boto3_client()
    cid = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]

    def status():
        return iot.describe_certificate(certificateId=cid)["certificateDescription"]["status"]

    for new in ("INACTIVE", "INACTIVE", "ACTIVE", "ACTIVE", "REVOKED", "REVOKED"):
        r = iot.update_certificate(certificateId=cid, newStatus=new)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert status() == new
    listed = {c["certificateId"]: c["status"] for c in iot.list_certificates()["certificates"]}
    assert listed == {cid: "REVOKED"}

    other = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
    expect_error("InvalidRequestException", 400, iot.update_certificate,
                 certificateId=other, newStatus="BOGUS")
    # PENDING_TRANSFER / PENDING_ACTIVATION are internal statuses: "will result in an
    # exception" per the API docs (code not documented)
    with pytest.raises(ClientError) as ei:
        iot.update_certificate(certificateId=other, newStatus="PENDING_ACTIVATION")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 406)
    assert iot.describe_certificate(certificateId=other)[
        "certificateDescription"]["status"] == "ACTIVE"
    expect_error("ResourceNotFoundException", 404, iot.update_certificate,
                 certificateId=MISSING_CERT_ID, newStatus="INACTIVE")


def test_list_certificates_pagination_and_order(server):
    """ListCertificates pages with pageSize/marker -> nextMarker, each certificate once, with
    ARN/id/status/creationDate; isAscendingOrder sorts by creation date."""
    iot = server.boto3_client()
    created = []
    for i in range(5):
        r = iot.create_keys_and_certificate(setAsActive=(i % 2 == 0))
        created.append(r["certificateId"])
    pages = follow(iot.list_certificates, "certificates", token_in="marker",
                   token_out="nextMarker", pageSize=2)
    assert_pages(pages, 2, 5)
    items = flat(pages)
    assert sorted(c["certificateId"] for c in items) == sorted(created)
    for c in items:
        i = created.index(c["certificateId"])
        assert c["certificateArn"] == arn("cert", c["certificateId"])
        assert c["status"] == ("ACTIVE" if i % 2 == 0 else "INACTIVE")
        assert_recent(c["creationDate"])
        assert c.get("certificateMode", "DEFAULT") == "DEFAULT"

    asc = flat(follow(iot.list_certificates, "certificates", token_in="marker",
                      token_out="nextMarker", pageSize=2, ascendingOrder=True))
    dates = [c["creationDate"] for c in asc]
    assert dates == sorted(dates)
    assert sorted(c["certificateId"] for c in asc) == sorted(created)
    desc = flat(follow(iot.list_certificates, "certificates", token_in="marker",
                       token_out="nextMarker", pageSize=3, ascendingOrder=False))
    dates = [c["creationDate"] for c in desc]
    assert dates == sorted(dates, reverse=True)
    got = [c["certificateId"] for page in iot.get_paginator("list_certificates").paginate(
        PaginationConfig={"PageSize": 2}) for c in page["certificates"]]
    assert sorted(got) == sorted(created)
    # markers are opaque; a made-up one is refused (AWS behaviour for garbage markers is
    # not documented -- unverified)
    expect_error("InvalidRequestException", 400, iot.list_certificates, marker="bogus-marker")


def test_delete_certificate_preconditions(server):
    """DeleteCertificate: ACTIVE -> 406 CertificateStateException; an attached policy -> 409
    DeleteConflict unless forceDelete; an attached thing -> 409 even with forceDelete;
    once INACTIVE/REVOKED and detached it is deleted and describe is 404."""
    iot = server.boto3_client()
    pol = name_of("pol")
    iot.create_policy(policyName=pol, policyDocument=ALLOW_ALL)
    thing = name_of("holder")
    iot.create_thing(thingName=thing)

    c1 = iot.create_keys_and_certificate(setAsActive=True)
    expect_error("CertificateStateException", 406, iot.delete_certificate,
                 certificateId=c1["certificateId"])
    iot.update_certificate(certificateId=c1["certificateId"], newStatus="INACTIVE")
    iot.attach_policy(policyName=pol, target=c1["certificateArn"])
    expect_error("DeleteConflictException", 409, iot.delete_certificate,
                 certificateId=c1["certificateId"])
    assert iot.describe_certificate(certificateId=c1["certificateId"])
    iot.delete_certificate(certificateId=c1["certificateId"], forceDelete=True)
    expect_error("ResourceNotFoundException", 404, iot.describe_certificate,
                 certificateId=c1["certificateId"])
    # the force-deleted certificate's policy attachment is gone with it
    assert c1["certificateArn"] not in iot.list_targets_for_policy(policyName=pol)["targets"]

    c2 = iot.create_keys_and_certificate(setAsActive=False)
    iot.attach_thing_principal(thingName=thing, principal=c2["certificateArn"])
    expect_error("DeleteConflictException", 409, iot.delete_certificate,
                 certificateId=c2["certificateId"])
    expect_error("DeleteConflictException", 409, iot.delete_certificate,
                 certificateId=c2["certificateId"], forceDelete=True)
    iot.detach_thing_principal(thingName=thing, principal=c2["certificateArn"])
    iot.attach_policy(policyName=pol, target=c2["certificateArn"])
    expect_error("DeleteConflictException", 409, iot.delete_certificate,
                 certificateId=c2["certificateId"])
    iot.detach_policy(policyName=pol, target=c2["certificateArn"])
    iot.delete_certificate(certificateId=c2["certificateId"])
    expect_error("ResourceNotFoundException", 404, iot.describe_certificate,
                 certificateId=c2["certificateId"])
    assert iot.list_thing_principals(thingName=thing)["principals"] == []

    c3 = iot.create_keys_and_certificate(setAsActive=True)
    iot.update_certificate(certificateId=c3["certificateId"], newStatus="REVOKED")
    iot.delete_certificate(certificateId=c3["certificateId"])
    assert iot.list_certificates()["certificates"] == []
    # deleting what is not there: 404 (model lists ResourceNotFound; unverified)
    expect_error("ResourceNotFoundException", 404, iot.delete_certificate,
                 certificateId=c3["certificateId"])
    # the policy is free again
    iot.delete_policy(policyName=pol)


# ====================================================================== policies

def test_policy_create_get_and_conflicts(server):
    """CreatePolicy returns name/ARN/document/version "1"; GetPolicy adds defaultVersionId
    and dates; the same name again is 409; bad names 400; missing 404."""
    iot = server.boto3_client()
    name = name_of("pol")
    doc = policy_doc("iot:Connect", "arn:aws:iot:us-east-1:000000000000:client/${iot:ClientId}")
    r = iot.create_policy(policyName=name, policyDocument=doc)
    assert r["policyName"] == name
    assert r["policyArn"] == arn("policy", name)
    assert json.loads(r["policyDocument"]) == json.loads(doc)
    assert r["policyVersionId"] == "1"
    g = iot.get_policy(policyName=name)
    assert g["policyName"] == name and g["policyArn"] == r["policyArn"]
    assert json.loads(g["policyDocument"]) == json.loads(doc)
    assert g["defaultVersionId"] == "1"
    assert_recent(g["creationDate"])
    assert_recent(g["lastModifiedDate"])
    err = expect_error("ResourceAlreadyExistsException", 409, iot.create_policy,
                       policyName=name, policyDocument=doc)
    assert err.get("resourceArn") in (None, r["policyArn"]), err
    expect_error("ResourceNotFoundException", 404, iot.get_policy, policyName=name_of("none"))
    for bad in ("bad name", "bad#name", "p" * 129):
        expect_error("InvalidRequestException", 400, iot.create_policy, policyName=bad,
                     policyDocument=ALLOW_ALL)
    for ok in ("a+b=c,d.e@f-g_h", "p" * 128):
        assert iot.create_policy(policyName=ok, policyDocument=ALLOW_ALL)["policyName"] == ok
    expect_error("ResourceNotFoundException", 404, iot.delete_policy,
                 policyName=name_of("none"))


def test_policy_malformed_documents(server):
    """Malformed policy documents are 400 MalformedPolicyException and create nothing: not
    JSON, no Effect, an unknown Effect, more than 2048 non-whitespace characters (whitespace
    does not count)."""
    iot = server.boto3_client()
    long_resources = ["arn:aws:iot:us-east-1:000000000000:topic/very/long/topic/name/%04d" % i
                      for i in range(40)]
    oversize = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": long_resources}]},
        separators=(",", ":"))
    assert len(oversize) > 2048
    bad_docs = {
        "not-json": "this is { not json",
        "no-effect": json.dumps({"Version": "2012-10-17", "Statement": [
            {"Action": "iot:*", "Resource": "*"}]}),
        "bad-effect": policy_doc(effect="Maybe"),
        "oversize": oversize,
    }
    for label, doc in bad_docs.items():
        name = name_of("mal-" + label)
        expect_error("MalformedPolicyException", 400, iot.create_policy, policyName=name,
                     policyDocument=doc)
        expect_error("ResourceNotFoundException", 404, iot.get_policy, policyName=name)

    # well under 2048 non-whitespace characters, but far over 2048 with whitespace
    spaced = json.dumps(json.loads(policy_doc(["iot:Connect", "iot:Publish", "iot:Subscribe",
                                               "iot:Receive"])), indent=300)
    assert len(spaced) > 2048 and len(re.sub(r"\s", "", spaced)) < 2048
    assert iot.create_policy(policyName=name_of("spaced"),
                             policyDocument=spaced)["policyVersionId"] == "1"
    # also as a new version of an existing policy
    good = name_of("good")
    iot.create_policy(policyName=good, policyDocument=ALLOW_ALL)
    for doc in bad_docs.values():
        expect_error("MalformedPolicyException", 400, iot.create_policy_version,
                     policyName=good, policyDocument=doc)
    assert [v["versionId"] for v in iot.list_policy_versions(policyName=good)[
        "policyVersions"]] == ["1"]


def test_list_policies_pagination(server):
    """ListPolicies pages with pageSize/marker -> nextMarker, each policy once with its ARN."""
    iot = server.boto3_client()
    names = sorted(name_of("lp") for _ in range(5))
    for n in names:
        iot.create_policy(policyName=n, policyDocument=ALLOW_ALL)
    pages = follow(iot.list_policies, "policies", token_in="marker", token_out="nextMarker",
                   pageSize=2)
    assert_pages(pages, 2, 5)
    items = flat(pages)
    assert sorted(p["policyName"] for p in items) == names
    for p in items:
        assert p["policyArn"] == arn("policy", p["policyName"])
    orders = {}
    for asc in (True, False):
        got = flat(follow(iot.list_policies, "policies", token_in="marker",
                          token_out="nextMarker", pageSize=3, ascendingOrder=asc))
        assert sorted(p["policyName"] for p in got) == names
        orders[asc] = [p["policyName"] for p in got]
    # Creation order (ties within a second by name): ascending is descending reversed.
    assert orders[True] == list(reversed(orders[False]))
    assert orders[False] == [p["policyName"] for p in iot.list_policies()["policies"]]
    got = [p["policyName"] for page in iot.get_paginator("list_policies").paginate(
        PaginationConfig={"PageSize": 2}) for p in page["policies"]]
    assert sorted(got) == names
    expect_error("InvalidRequestException", 400, iot.list_policies, marker="bogus-marker")


def test_policy_versions_lifecycle(server):
    """Policy versions: CreatePolicyVersion (with/without setAsDefault), ListPolicyVersions
    (isDefaultVersion), GetPolicyVersion, SetDefaultPolicyVersion, DeletePolicyVersion
    (the default one -> 409), ids never reused, at most 5 (6th -> 409
    VersionsLimitExceeded), DeletePolicy refused while non-default versions exist."""
    iot = server.boto3_client()
    name = name_of("ver")
    docs = {str(i): policy_doc("iot:Publish", "arn:aws:iot:us-east-1:000000000000:topic/v%d" % i)
            for i in range(1, 10)}
    iot.create_policy(policyName=name, policyDocument=docs["1"])

    v2 = iot.create_policy_version(policyName=name, policyDocument=docs["2"])
    assert v2["policyVersionId"] == "2" and v2["isDefaultVersion"] is False
    assert v2["policyArn"] == arn("policy", name)
    assert json.loads(v2["policyDocument"]) == json.loads(docs["2"])
    assert iot.get_policy(policyName=name)["defaultVersionId"] == "1"

    v3 = iot.create_policy_version(policyName=name, policyDocument=docs["3"], setAsDefault=True)
    assert v3["policyVersionId"] == "3" and v3["isDefaultVersion"] is True
    g = iot.get_policy(policyName=name)
    assert g["defaultVersionId"] == "3"
    assert json.loads(g["policyDocument"]) == json.loads(docs["3"])

    vs = iot.list_policy_versions(policyName=name)["policyVersions"]
    assert sorted(v["versionId"] for v in vs) == ["1", "2", "3"]
    assert [v["versionId"] for v in vs if v["isDefaultVersion"]] == ["3"]
    for v in vs:
        assert_recent(v["createDate"])

    gv = iot.get_policy_version(policyName=name, policyVersionId="2")
    assert gv["policyName"] == name and gv["policyArn"] == arn("policy", name)
    assert gv["policyVersionId"] == "2" and gv["isDefaultVersion"] is False
    assert json.loads(gv["policyDocument"]) == json.loads(docs["2"])
    assert_recent(gv["creationDate"])
    expect_error("ResourceNotFoundException", 404, iot.get_policy_version, policyName=name,
                 policyVersionId="9")

    iot.set_default_policy_version(policyName=name, policyVersionId="1")
    g = iot.get_policy(policyName=name)
    assert g["defaultVersionId"] == "1"
    assert json.loads(g["policyDocument"]) == json.loads(docs["1"])
    assert iot.get_policy_version(policyName=name, policyVersionId="1")["isDefaultVersion"]
    assert not iot.get_policy_version(policyName=name, policyVersionId="3")["isDefaultVersion"]
    expect_error("ResourceNotFoundException", 404, iot.set_default_policy_version,
                 policyName=name, policyVersionId="9")

    expect_error("DeleteConflictException", 409, iot.delete_policy_version, policyName=name,
                 policyVersionId="1")
    iot.delete_policy_version(policyName=name, policyVersionId="2")
    assert sorted(v["versionId"] for v in iot.list_policy_versions(policyName=name)[
        "policyVersions"]) == ["1", "3"]
    expect_error("ResourceNotFoundException", 404, iot.get_policy_version, policyName=name,
                 policyVersionId="2")

    for expected_id in ("4", "5", "6"):
        assert iot.create_policy_version(policyName=name, policyDocument=docs[expected_id])[
            "policyVersionId"] == expected_id
    expect_error("VersionsLimitExceededException", 409, iot.create_policy_version,
                 policyName=name, policyDocument=docs["7"])
    assert len(iot.list_policy_versions(policyName=name)["policyVersions"]) == 5
    expect_error("ResourceNotFoundException", 404, iot.create_policy_version,
                 policyName=name_of("none"), policyDocument=ALLOW_ALL)
    expect_error("ResourceNotFoundException", 404, iot.list_policy_versions,
                 policyName=name_of("none"))

    expect_error("DeleteConflictException", 409, iot.delete_policy, policyName=name)
    for v in ("3", "4", "5", "6"):
        iot.delete_policy_version(policyName=name, policyVersionId=v)
    iot.delete_policy(policyName=name)
    expect_error("ResourceNotFoundException", 404, iot.get_policy, policyName=name)
    assert name not in [p["policyName"] for p in iot.list_policies()["policies"]]


def test_attach_detach_policy_targets(server):
    """AttachPolicy/DetachPolicy on certificate and thing-group ARNs; ListAttachedPolicies and
    ListTargetsForPolicy see them; DeletePolicy is 409 while attached; a missing target or
    policy is 404."""
    iot = server.boto3_client()
    pol, pol2 = name_of("tp"), name_of("tp2")
    iot.create_policy(policyName=pol, policyDocument=ALLOW_ALL)
    iot.create_policy(policyName=pol2, policyDocument=ALLOW_ALL)
    cert = iot.create_keys_and_certificate(setAsActive=True)
    grp = iot.create_thing_group(thingGroupName=name_of("tg"))

    iot.attach_policy(policyName=pol, target=cert["certificateArn"])
    iot.attach_policy(policyName=pol, target=cert["certificateArn"])   # idempotent
    iot.attach_policy(policyName=pol2, target=cert["certificateArn"])
    iot.attach_policy(policyName=pol, target=grp["thingGroupArn"])

    att = iot.list_attached_policies(target=cert["certificateArn"])["policies"]
    assert sorted((p["policyName"], p["policyArn"]) for p in att) == sorted(
        [(pol, arn("policy", pol)), (pol2, arn("policy", pol2))])
    assert [p["policyName"] for p in iot.list_attached_policies(
        target=grp["thingGroupArn"])["policies"]] == [pol]
    targets = iot.list_targets_for_policy(policyName=pol)["targets"]
    assert sorted(targets) == sorted([cert["certificateArn"], grp["thingGroupArn"]])
    pages = follow(iot.list_targets_for_policy, "targets", token_in="marker",
                   token_out="nextMarker", policyName=pol, pageSize=1)
    assert_pages(pages, 1, 2)
    assert sorted(flat(pages)) == sorted(targets)
    expect_error("InvalidRequestException", 400, iot.list_targets_for_policy,
                 policyName=pol, marker="bogus-marker")

    expect_error("DeleteConflictException", 409, iot.delete_policy, policyName=pol)
    iot.detach_policy(policyName=pol, target=cert["certificateArn"])
    assert [p["policyName"] for p in iot.list_attached_policies(
        target=cert["certificateArn"])["policies"]] == [pol2]
    expect_error("DeleteConflictException", 409, iot.delete_policy, policyName=pol)
    iot.detach_policy(policyName=pol, target=grp["thingGroupArn"])
    assert iot.list_attached_policies(target=grp["thingGroupArn"])["policies"] == []
    assert iot.list_targets_for_policy(policyName=pol)["targets"] == []
    iot.delete_policy(policyName=pol)

    expect_error("ResourceNotFoundException", 404, iot.attach_policy, policyName=pol2,
                 target=arn("cert", MISSING_CERT_ID))
    expect_error("ResourceNotFoundException", 404, iot.attach_policy, policyName=pol2,
                 target=arn("thinggroup", name_of("nogroup")))
    expect_error("ResourceNotFoundException", 404, iot.attach_policy,
                 policyName=name_of("nopolicy"), target=cert["certificateArn"])
    expect_error("ResourceNotFoundException", 404, iot.list_targets_for_policy,
                 policyName=name_of("nopolicy"))
    assert [p["policyName"] for p in iot.list_attached_policies(
        target=cert["certificateArn"])["policies"]] == [pol2]


def test_list_attached_policies_pagination_and_recursive(server):
    """ListAttachedPolicies pages with pageSize/marker; recursive=true on a child group also
    lists the parent group's policies."""
    iot = server.boto3_client()
    cert = iot.create_keys_and_certificate(setAsActive=True)
    names = sorted(name_of("ap") for _ in range(5))
    for n in names:
        iot.create_policy(policyName=n, policyDocument=ALLOW_ALL)
        iot.attach_policy(policyName=n, target=cert["certificateArn"])
    pages = follow(iot.list_attached_policies, "policies", token_in="marker",
                   token_out="nextMarker", target=cert["certificateArn"], pageSize=2)
    assert_pages(pages, 2, 5)
    assert sorted(p["policyName"] for p in flat(pages)) == names
    expect_error("InvalidRequestException", 400, iot.list_attached_policies,
                 target=cert["certificateArn"], marker="bogus-marker")

    parent = iot.create_thing_group(thingGroupName=name_of("pg"))
    child = iot.create_thing_group(thingGroupName=name_of("cg"),
                                   parentGroupName=parent["thingGroupName"])
    iot.attach_policy(policyName=names[0], target=parent["thingGroupArn"])
    iot.attach_policy(policyName=names[1], target=child["thingGroupArn"])
    flat_child = iot.list_attached_policies(target=child["thingGroupArn"],
                                            recursive=False)["policies"]
    assert [p["policyName"] for p in flat_child] == [names[1]]
    # recursive includes policies inherited from parent groups (API docs; order unverified)
    rec = iot.list_attached_policies(target=child["thingGroupArn"], recursive=True)["policies"]
    assert sorted(p["policyName"] for p in rec) == sorted(names[:2])


def test_legacy_principal_policy_calls(server):
    """The deprecated AttachPrincipalPolicy/ListPrincipalPolicies/ListPolicyPrincipals/
    DetachPrincipalPolicy (x-amzn-iot-principal header) act on the same attachments as
    AttachPolicy."""
    iot = server.boto3_client()
    for op in ("AttachPrincipalPolicy", "ListPrincipalPolicies", "DetachPrincipalPolicy"):
        assert has_op(iot, op), op
    pol = name_of("legacy")
    iot.create_policy(policyName=pol, policyDocument=ALLOW_ALL)
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_principal_policy(policyName=pol, principal=cert["certificateArn"])
    got = iot.list_principal_policies(principal=cert["certificateArn"])["policies"]
    assert [(p["policyName"], p["policyArn"]) for p in got] == [(pol, arn("policy", pol))]
    assert [p["policyName"] for p in iot.list_attached_policies(
        target=cert["certificateArn"])["policies"]] == [pol]
    if has_op(iot, "ListPolicyPrincipals"):
        assert iot.list_policy_principals(policyName=pol)["principals"] == \
            [cert["certificateArn"]]
        # Thing groups are targets but not principals: pages hold certificates only, full.
        for _ in range(3):
            group = iot.create_thing_group(thingGroupName=name_of("lg"))
            iot.attach_policy(policyName=pol, target=group["thingGroupArn"])
        more = [iot.create_keys_and_certificate(setAsActive=True)["certificateArn"]
                for _ in range(2)]
        for c in more:
            iot.attach_policy(policyName=pol, target=c)
        pages = follow(iot.list_policy_principals, "principals", token_in="marker",
                       token_out="nextMarker", policyName=pol, pageSize=2)
        assert [len(p) for p in pages] == [2, 1]
        assert sorted(flat(pages)) == sorted([cert["certificateArn"]] + more)
        for c in more:
            iot.detach_policy(policyName=pol, target=c)
        for t in iot.list_targets_for_policy(policyName=pol)["targets"]:
            if ":thinggroup/" in t:
                iot.detach_policy(policyName=pol, target=t)
    expect_error("DeleteConflictException", 409, iot.delete_policy, policyName=pol)
    iot.detach_principal_policy(policyName=pol, principal=cert["certificateArn"])
    assert iot.list_principal_policies(principal=cert["certificateArn"])["policies"] == []
    assert iot.list_attached_policies(target=cert["certificateArn"])["policies"] == []
    # AttachPolicy then the legacy detach
    iot.attach_policy(policyName=pol, target=cert["certificateArn"])
    iot.detach_principal_policy(policyName=pol, principal=cert["certificateArn"])
    assert iot.list_targets_for_policy(policyName=pol)["targets"] == []
    expect_error("ResourceNotFoundException", 404, iot.attach_principal_policy,
                 policyName=pol, principal=arn("cert", MISSING_CERT_ID))
    iot.delete_policy(policyName=pol)


# ====================================================================== thing principals

def test_thing_principals(server):
    """AttachThingPrincipal/DetachThingPrincipal (x-amzn-principal header), ListThingPrincipals
    and ListPrincipalThings both ways with pagination; a missing thing or principal is 404."""
    iot = server.boto3_client()
    thing = name_of("tp-thing")
    iot.create_thing(thingName=thing)
    certs = [iot.create_keys_and_certificate(setAsActive=True)["certificateArn"]
             for _ in range(5)]
    for c in certs:
        r = iot.attach_thing_principal(thingName=thing, principal=c)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    iot.attach_thing_principal(thingName=thing, principal=certs[0])   # idempotent
    pages = follow(iot.list_thing_principals, "principals", thingName=thing, maxResults=2)
    assert_pages(pages, 2, 5)
    assert sorted(flat(pages)) == sorted(certs)
    got = [p for page in iot.get_paginator("list_thing_principals").paginate(
        thingName=thing, PaginationConfig={"PageSize": 2}) for p in page["principals"]]
    assert sorted(got) == sorted(certs)

    others = sorted(name_of("tp-other") for _ in range(4))
    for t in others:
        iot.create_thing(thingName=t)
        iot.attach_thing_principal(thingName=t, principal=certs[0])
    pages = follow(iot.list_principal_things, "things", principal=certs[0], maxResults=2)
    assert_pages(pages, 2, 5)
    assert sorted(flat(pages)) == sorted(others + [thing])
    assert iot.list_principal_things(principal=certs[1])["things"] == [thing]

    iot.detach_thing_principal(thingName=thing, principal=certs[0])
    assert sorted(iot.list_thing_principals(thingName=thing)["principals"]) == sorted(certs[1:])
    assert sorted(iot.list_principal_things(principal=certs[0])["things"]) == others

    expect_error("ResourceNotFoundException", 404, iot.attach_thing_principal,
                 thingName=name_of("nothing"), principal=certs[1])
    expect_error("ResourceNotFoundException", 404, iot.attach_thing_principal,
                 thingName=thing, principal=arn("cert", MISSING_CERT_ID))
    expect_error("ResourceNotFoundException", 404, iot.list_thing_principals,
                 thingName=name_of("nothing"))
    expect_error("InvalidRequestException", 400, iot.list_thing_principals, thingName=thing,
                 nextToken="bogus-token")
    expect_error("InvalidRequestException", 400, iot.list_principal_things,
                 principal=certs[0], nextToken="bogus-token")
    # a certificate attached to nothing lists no things
    fresh = iot.create_keys_and_certificate()["certificateArn"]
    assert iot.list_principal_things(principal=fresh)["things"] == []


# ====================================================================== durability

# ====================================================================== tags

def tag_pairs(iot, resource_arn):
    return sorted((t["Key"], t["Value"])
                  for t in iot.list_tags_for_resource(resourceArn=resource_arn)["tags"])


def test_tags_on_create_tag_untag_and_list(server):
    """Thing groups, thing types, policies and CA certificates carry tags: given at creation,
    added or replaced by TagResource, removed by UntagResource (unknown keys ignored),
    listed by ListTagsForResource; deleting a resource deletes its tags."""
    iot = server.boto3_client()
    group_name = name_of("tag-grp")
    grp = iot.create_thing_group(thingGroupName=group_name,
                                 tags=[{"Key": "env", "Value": "prod"}])
    tt = iot.create_thing_type(thingTypeName=name_of("tag-type"),
                               tags=[{"Key": "team", "Value": "a"}])
    pol = iot.create_policy(policyName=name_of("tag-pol"), policyDocument=ALLOW_ALL,
                            tags=[{"Key": "k", "Value": "v"}, {"Key": "k2", "Value": "v2"}])
    _, _, _, ca = register_foreign_ca(server, iot)
    assert tag_pairs(iot, grp["thingGroupArn"]) == [("env", "prod")]
    assert tag_pairs(iot, tt["thingTypeArn"]) == [("team", "a")]
    assert tag_pairs(iot, pol["policyArn"]) == [("k", "v"), ("k2", "v2")]
    assert tag_pairs(iot, ca["certificateArn"]) == []

    r = iot.tag_resource(resourceArn=grp["thingGroupArn"],
                         tags=[{"Key": "env", "Value": "dev"}, {"Key": "owner", "Value": "ops"}])
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert tag_pairs(iot, grp["thingGroupArn"]) == [("env", "dev"), ("owner", "ops")]
    iot.untag_resource(resourceArn=grp["thingGroupArn"], tagKeys=["env", "never-set"])
    assert tag_pairs(iot, grp["thingGroupArn"]) == [("owner", "ops")]
    # Every character class the key pattern allows, and an empty value.
    odd_key = "a b:c/d=e+f-g@h_i.j \u00e9t\u00e9 9"
    iot.tag_resource(resourceArn=ca["certificateArn"], tags=[{"Key": odd_key, "Value": ""}])
    assert tag_pairs(iot, ca["certificateArn"]) == [(odd_key, "")]

    iot.delete_thing_group(thingGroupName=group_name)
    expect_error("ResourceNotFoundException", 404, iot.list_tags_for_resource,
                 resourceArn=grp["thingGroupArn"])
    again = iot.create_thing_group(thingGroupName=group_name)
    assert tag_pairs(iot, again["thingGroupArn"]) == []


def test_tag_errors_change_nothing(server):
    """Unknown resources are 404; things, certificates and malformed ARNs 400; invalid keys
    (pattern, length, the reserved aws: prefix) and values over 256 characters 400; a 51st tag
    LimitExceededException (410). A create with invalid tags creates nothing."""
    iot = server.boto3_client()
    grp = iot.create_thing_group(thingGroupName=name_of("tag-err"))
    target = grp["thingGroupArn"]
    one = [{"Key": "a", "Value": "b"}]
    missing = arn("thinggroup", name_of("tag-missing"))
    expect_error("ResourceNotFoundException", 404, iot.tag_resource, resourceArn=missing, tags=one)
    expect_error("ResourceNotFoundException", 404, iot.untag_resource, resourceArn=missing,
                 tagKeys=["a"])
    expect_error("ResourceNotFoundException", 404, iot.list_tags_for_resource,
                 resourceArn=missing)
    thing = iot.create_thing(thingName=name_of("tag-thing"))
    expect_error("InvalidRequestException", 400, iot.tag_resource,
                 resourceArn=thing["thingArn"], tags=one)
    cert = iot.create_keys_and_certificate(setAsActive=False)
    expect_error("InvalidRequestException", 400, iot.tag_resource,
                 resourceArn=cert["certificateArn"], tags=one)
    expect_error("InvalidRequestException", 400, iot.tag_resource, resourceArn="not-an-arn",
                 tags=one)
    for bad in ({"Key": "aws:reserved", "Value": "x"}, {"Key": "AWS:Reserved", "Value": "x"},
                {"Key": "bad#key", "Value": "x"}, {"Key": "k" * 129, "Value": "x"},
                {"Key": "k", "Value": "v" * 257}):
        expect_error("InvalidRequestException", 400, iot.tag_resource, resourceArn=target,
                     tags=[{"Key": "fine", "Value": "1"}, bad])
    assert tag_pairs(iot, target) == []

    iot.tag_resource(resourceArn=target, tags=[{"Key": "k%02d" % i, "Value": "v"}
                                                for i in range(50)])
    expect_error("LimitExceededException", 410, iot.tag_resource, resourceArn=target,
                 tags=[{"Key": "one-more", "Value": "v"}])
    iot.tag_resource(resourceArn=target, tags=[{"Key": "k00", "Value": "replaced"}])
    pairs = tag_pairs(iot, target)
    assert len(pairs) == 50 and ("k00", "replaced") in pairs

    doomed = name_of("tag-doomed")
    expect_error("InvalidRequestException", 400, iot.create_policy, policyName=doomed,
                 policyDocument=ALLOW_ALL, tags=[{"Key": "aws:x", "Value": "y"}])
    expect_error("ResourceNotFoundException", 404, iot.get_policy, policyName=doomed)


def test_registry_survives_kill9(server):
    """Everything acknowledged before a kill -9 is there after restart: things (type,
    attributes, version), types, groups and membership, certificates with their status
    and PEM, a registered CA, policies with versions and default, all attachments; id
    counters continue."""
    iot = server.boto3_client()
    tt = name_of("k-type")
    iot.create_thing_type(thingTypeName=tt, thingTypeProperties={"thingTypeDescription": "kt"})
    dep = name_of("k-dep")
    iot.create_thing_type(thingTypeName=dep)
    iot.deprecate_thing_type(thingTypeName=dep)
    thing = name_of("k-thing")
    t = iot.create_thing(thingName=thing, thingTypeName=tt,
                         attributePayload={"attributes": {"a": "1"}})
    iot.update_thing(thingName=thing, attributePayload={"attributes": {"b": "2"},
                                                        "merge": True})
    gone = name_of("k-gone")
    iot.create_thing(thingName=gone)
    iot.delete_thing(thingName=gone)
    grp = iot.create_thing_group(thingGroupName=name_of("k-grp"),
                                 thingGroupProperties={"thingGroupDescription": "kg"})
    sub = iot.create_thing_group(thingGroupName=name_of("k-sub"),
                                 parentGroupName=grp["thingGroupName"])
    iot.add_thing_to_thing_group(thingGroupName=sub["thingGroupName"], thingName=thing)

    active = iot.create_keys_and_certificate(setAsActive=True)
    revoked = iot.create_keys_and_certificate(setAsActive=True)
    iot.update_certificate(certificateId=revoked["certificateId"], newStatus="REVOKED")
    inactive = iot.create_keys_and_certificate(setAsActive=False)
    _, _, ca_pem, ca = register_foreign_ca(server, iot)

    pol = name_of("k-pol")
    iot.create_policy(policyName=pol, policyDocument=policy_doc("iot:Connect"))
    iot.create_policy_version(policyName=pol, policyDocument=policy_doc("iot:Publish"),
                              setAsDefault=True)
    iot.attach_policy(policyName=pol, target=active["certificateArn"])
    iot.attach_policy(policyName=pol, target=grp["thingGroupArn"])
    iot.attach_thing_principal(thingName=thing, principal=active["certificateArn"])
    doomed = name_of("k-doomed")
    iot.create_policy(policyName=doomed, policyDocument=ALLOW_ALL)
    iot.delete_policy(policyName=doomed)
    iot.tag_resource(resourceArn=grp["thingGroupArn"], tags=[{"Key": "kept", "Value": "yes"},
                                                             {"Key": "gone", "Value": "no"}])
    iot.untag_resource(resourceArn=grp["thingGroupArn"], tagKeys=["gone"])

    server.restart(kill=True)
    iot = server.boto3_client()
    assert tag_pairs(iot, grp["thingGroupArn"]) == [("kept", "yes")]

    d = iot.describe_thing(thingName=thing)
    assert (d["thingId"], d["thingTypeName"], d["attributes"], d["version"]) == \
        (t["thingId"], tt, {"a": "1", "b": "2"}, 2)
    expect_error("ResourceNotFoundException", 404, iot.describe_thing, thingName=gone)
    assert iot.describe_thing_type(thingTypeName=tt)["thingTypeProperties"][
        "thingTypeDescription"] == "kt"
    assert iot.describe_thing_type(thingTypeName=dep)["thingTypeMetadata"]["deprecated"] is True
    dg = iot.describe_thing_group(thingGroupName=sub["thingGroupName"])
    assert dg["thingGroupId"] == sub["thingGroupId"]
    assert dg["thingGroupMetadata"]["parentGroupName"] == grp["thingGroupName"]
    assert iot.list_things_in_thing_group(thingGroupName=sub["thingGroupName"])["things"] == \
        [thing]

    for c, status in ((active, "ACTIVE"), (revoked, "REVOKED"), (inactive, "INACTIVE")):
        dc = iot.describe_certificate(certificateId=c["certificateId"])["certificateDescription"]
        assert dc["status"] == status
        assert dc["certificatePem"].strip() == c["certificatePem"].strip()
    assert len(iot.list_certificates()["certificates"]) == 3
    dca = iot.describe_ca_certificate(certificateId=ca["certificateId"])["certificateDescription"]
    assert dca["status"] == "ACTIVE" and dca["certificatePem"].strip() == ca_pem.strip()

    g = iot.get_policy(policyName=pol)
    assert g["defaultVersionId"] == "2"
    assert json.loads(g["policyDocument"]) == json.loads(policy_doc("iot:Publish"))
    assert sorted(v["versionId"] for v in iot.list_policy_versions(policyName=pol)[
        "policyVersions"]) == ["1", "2"]
    expect_error("ResourceNotFoundException", 404, iot.get_policy, policyName=doomed)
    assert sorted(iot.list_targets_for_policy(policyName=pol)["targets"]) == sorted(
        [active["certificateArn"], grp["thingGroupArn"]])
    assert iot.list_thing_principals(thingName=thing)["principals"] == [active["certificateArn"]]
    assert iot.list_principal_things(principal=active["certificateArn"])["things"] == [thing]

    # counters continue rather than restart
    assert iot.create_policy_version(policyName=pol, policyDocument=ALLOW_ALL)[
        "policyVersionId"] == "3"
    iot.update_thing(thingName=thing, attributePayload={"attributes": {"c": "3"},
                                                        "merge": True})
    assert iot.describe_thing(thingName=thing)["version"] == 3
    # the Nimbus CA survived too: a certificate issued now chains to the same root
    new = iot.create_keys_and_certificate(setAsActive=True)
    crt = write(server, "after-restart.crt", new["certificatePem"])
    assert openssl("verify", "-CAfile", server.ca_cert, crt, check=False)[0] == 0
    assert new["certificateId"] not in (active["certificateId"], revoked["certificateId"],
                                        inactive["certificateId"])


# ====================================================================== REVOKED is final

def _revocable_device(server, iot):
    """A Nimbus-issued ACTIVE certificate with an allow-all policy, its files written for a
    device. Returns (create_keys_and_certificate response, cert path, key path)."""
    created = iot.create_keys_and_certificate(setAsActive=True)
    tag = created["certificateId"][:16]
    cert = write(server, "revocable-%s.crt" % tag, created["certificatePem"])
    key = write(server, "revocable-%s.key" % tag, created["keyPair"]["PrivateKey"])
    pol = name_of("revocable")
    iot.create_policy(policyName=pol, policyDocument=ALLOW_ALL)
    iot.attach_policy(policyName=pol, target=created["certificateArn"])
    return created, str(cert), str(key)


def test_revoked_certificate_stays_revoked(server):
    """REVOKED is final, as AWS documents: UpdateCertificate to ACTIVE, to INACTIVE, and
    REVOKED -> INACTIVE -> ACTIVE are all refused with CertificateStateException (HTTP 406, its
    status in the botocore model, as for the other CertificateStateException cases above);
    registering the same certificate again does not revive it; the device never connects
    again over mqtts (MQTT 5 and 3.1.1), also after a restart."""
    iot = server.boto3_client()
    created, cert, key = _revocable_device(server, iot)
    cid = created["certificateId"]
    client_id = name_of("revoked-device")

    def status(client):
        return client.describe_certificate(certificateId=cid)["certificateDescription"]["status"]

    connect_device_raw(server, cert, key, client_id, 5).disconnect(wait_closed=True)
    iot.update_certificate(certificateId=cid, newStatus="REVOKED")
    assert status(iot) == "REVOKED"

    for path in (["ACTIVE"], ["INACTIVE", "ACTIVE"], ["INACTIVE"]):
        for new in path:
            expect_error("CertificateStateException", 406, iot.update_certificate,
                         certificateId=cid, newStatus=new)
            assert status(iot) == "REVOKED", "after the refused move to %s" % new
    listed = {c["certificateId"]: c["status"] for c in iot.list_certificates()["certificates"]}
    assert listed[cid] == "REVOKED"

    # registering the same PEM again (ACTIVE) is refused and changes nothing
    with pytest.raises(ClientError) as ei:
        iot.register_certificate_without_ca(certificatePem=created["certificatePem"],
                                            status="ACTIVE")
    code = ei.value.response["Error"]["Code"]
    assert code in ("ResourceAlreadyExistsException", "CertificateStateException"), \
        ei.value.response
    assert status(iot) == "REVOKED"

    for version in (5, 4):
        assert_connect_refused(server, cert, key, client_id, version)

    server.restart()
    iot = server.boto3_client()
    assert status(iot) == "REVOKED"
    expect_error("CertificateStateException", 406, iot.update_certificate,
                 certificateId=cid, newStatus="ACTIVE")
    for version in (5, 4):
        assert_connect_refused(server, cert, key, client_id, version)


# ====================================================================== foreign SigV4 regions

_FOREIGN_REGION_EVENT = re.compile(r"(?<![\w/])sigv4_foreign_region(?!\w)")


def _foreign_region_lines(server):
    """Log lines of the event (not lines merely containing the test's tmp path)."""
    text = server.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if _FOREIGN_REGION_EVENT.search(line)]


def _logged_region(line):
    m = re.search(r"(?<![A-Za-z0-9_])region=(\S+)", line)
    assert m, "no region= in %r" % line
    return m.group(1).strip('"')


def test_sigv4_foreign_region_is_accepted_and_logged_once(server):
    """Requests signed for ap-northeast-2 against a server on us-east-1 (the default) succeed,
    get the server's region in ARNs, and the server logs `sigv4_foreign_region` exactly once for
    that region, naming both regions and the --region flag; another foreign region gets its own
    line; requests signed for the server's region log nothing."""
    seoul = server.boto3_client(region="ap-northeast-2")
    name = name_of("seoul")
    created = seoul.create_thing(thingName=name)
    assert created["thingArn"] == arn("thing", name), created["thingArn"]
    assert seoul.describe_thing(thingName=name)["thingName"] == name

    wait_until(lambda: _foreign_region_lines(server), what="a sigv4_foreign_region log line")
    time.sleep(0.3)                       # a second line (wrongly) logged would be there by now
    lines = _foreign_region_lines(server)
    assert len(lines) == 1, "logged %d times after two requests:\n%s" % (len(lines),
                                                                        "\n".join(lines))
    line = lines[0]
    assert _logged_region(line) == "ap-northeast-2", line
    assert "server_region=us-east-1" in line, line
    assert "--region ap-northeast-2" in line, line

    server.boto3_client().list_things()                  # the server's region: no line
    eu = server.boto3_client(region="eu-west-1")
    eu.list_things()
    eu.list_things()
    seoul.list_things()
    wait_until(lambda: len(_foreign_region_lines(server)) >= 2,
               what="a sigv4_foreign_region line for eu-west-1")
    time.sleep(0.3)
    lines = _foreign_region_lines(server)
    assert sorted(_logged_region(line) for line in lines) == ["ap-northeast-2", "eu-west-1"], \
        "\n".join(lines)
