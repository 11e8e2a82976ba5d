#!/usr/bin/env python3
"""Generates sigv4_vectors.inc: requests signed by the real botocore signer.

Run with the interpreter that has botocore (Debian's python3-boto3; python3-awscrt for the
`_crt` vectors):
    /usr/bin/python3 src/iot/tests/make_sigv4_vectors.py > src/iot/tests/sigv4_vectors.inc

Most vectors go through a real boto3 client (the code path the aws CLI takes), with a
'before-send' hook that captures the prepared request instead of sending it. They run twice:
with the pure-Python botocore.auth.SigV4Auth, and (suffix `_crt`) with the signer botocore
picks by itself when awscrt is installed, CrtSigV4Auth, which is aws-c-auth underneath. The rest
use botocore.auth.SigV4Auth / SigV4QueryAuth on a hand-made AWSRequest for the shapes the clients
cannot be made to produce. Time and the invocation id are pinned so the output is stable.

Each vector records what goes over the wire: method, target (path and query), headers (with
the Host header the HTTP client adds) and body.
"""

import datetime
import hashlib
import hmac
import sys
import types
import uuid
from unittest import mock
from urllib.parse import unquote, urlsplit

import boto3
import botocore
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.endpoint
import botocore.utils

try:
    import botocore.crt.auth as crt_auth
    HAS_CRT = botocore.compat.HAS_CRT
except ImportError:
    crt_auth = None
    HAS_CRT = False

ACCESS_KEY = 'AKIDNIMBUSEXAMPLE'
SECRET_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYNIMBUSKEY'
SIGNED_AT = datetime.datetime(2026, 11, 26, 9, 0, 0)
PRINCIPAL = 'arn:aws:iot:us-east-1:000000000000:cert/abc'


class _pinned_datetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return SIGNED_AT


def _pinned():
    """Patches botocore's clock and the random amz-sdk-invocation-id."""
    fake_datetime_module = types.SimpleNamespace(datetime=_pinned_datetime,
                                                 timezone=datetime.timezone)
    patches = [
        mock.patch.object(botocore.auth, 'datetime', fake_datetime_module),
        mock.patch.object(botocore.endpoint.uuid, 'uuid4',
                          return_value=uuid.UUID('00000000-0000-4000-8000-000000000001')),
    ]
    if crt_auth is not None:
        patches.append(mock.patch.object(crt_auth, 'datetime', fake_datetime_module))
    return patches


def _python_signer():
    """Makes clients sign with the pure-Python SigV4Auth even when awscrt is installed."""
    return mock.patch.dict(botocore.auth.AUTH_TYPE_MAPS, {
        'v4': botocore.auth.SigV4Auth, 'v4-query': botocore.auth.SigV4QueryAuth})


def _host_header(url):
    """The Host header http.client sends: the netloc, port only when not the default."""
    parts = urlsplit(url)
    default = {'http': 80, 'https': 443}[parts.scheme]
    host = parts.hostname
    if parts.port is not None and parts.port != default:
        host = '%s:%d' % (host, parts.port)
    return host


def _target(url):
    parts = urlsplit(url)
    return parts.path + ('?' + parts.query if parts.query else '')


def _wire_headers(url, headers, body):
    out = [(k, v if isinstance(v, str) else v.decode()) for k, v in headers]
    # http.client adds Host unless the signer already put one in (the CRT signer does).
    if not any(k.lower() == 'host' for k, _ in out):
        out.insert(0, ('Host', _host_header(url)))
    if body and not any(k.lower() == 'content-length' for k, _ in out):
        out.append(('Content-Length', str(len(body))))
    return out


class _raw_body:
    def __init__(self, data):
        self._data = data

    def stream(self, **kwargs):
        yield self._data


def _client_vector(name, service, region, endpoint_url, call, response_body=b'{}'):
    """Runs one boto3 client call and captures the signed request it would send."""
    captured = {}

    def before_send(request, **kwargs):
        captured['request'] = request
        return botocore.awsrequest.AWSResponse(request.url, 200, {}, _raw_body(response_body))

    client = boto3.client(service, region_name=region, endpoint_url=endpoint_url,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    client.meta.events.register('before-send', before_send)
    call(client)
    request = captured['request']
    body = request.body or b''
    if isinstance(body, str):
        body = body.encode()
    # The signing name comes from endpoints.json, not the model: iot signs as execute-api.
    return dict(name=name, method=request.method, target=_target(request.url),
                headers=_wire_headers(request.url, list(request.headers.items()), body), body=body,
                service=None, region=region, payload_signed=True, presigned=False)


def _auth_vector(name, service, region, method, url, headers=(), body=b'', params=None,
                 context=None, duplicate_headers=()):
    """Signs a hand-made AWSRequest with SigV4Auth, as the clients' signer does."""
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    request = botocore.awsrequest.AWSRequest(method=method, url=url, data=body, params=params,
                                             headers=dict(headers))
    for key, value in duplicate_headers:
        request.headers[key] = value  # HTTPHeaders.__setitem__ appends, giving duplicates
    if context:
        request.context.update(context)
    botocore.auth.SigV4Auth(credentials, service, region).add_auth(request)
    prepared = request.prepare()
    payload_signed = request.headers.get('X-Amz-Content-SHA256') != 'UNSIGNED-PAYLOAD'
    # request.headers keeps duplicates; prepared.headers is a dict and would drop them.
    return dict(name=name, method=method, target=_target(prepared.url),
                headers=_wire_headers(prepared.url, list(request.headers.items()), body),
                body=body, service=service, region=region, payload_signed=payload_signed,
                presigned=False)


def _presigned_vector(name, service, region, url, expires, signer=botocore.auth.SigV4QueryAuth):
    """SigV4QueryAuth signs the SHA-256 of the (empty) body; only the S3 variant signs
    UNSIGNED-PAYLOAD."""
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    request = botocore.awsrequest.AWSRequest(method='GET', url=url)
    signer(credentials, service, region, expires=expires).add_auth(request)
    return dict(name=name, method='GET', target=_target(request.url),
                headers=[('Host', _host_header(request.url))], body=b'', service=service,
                region=region, payload_signed=signer is not botocore.auth.S3SigV4QueryAuth,
                presigned=True)


def _client_presigned_vector(name, endpoint_url, operation, params, expires):
    client = boto3.client('iot', region_name='us-east-1', endpoint_url=endpoint_url,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    url = client.generate_presigned_url(operation, Params=params, ExpiresIn=expires)
    return dict(name=name, method='GET', target=_target(url), headers=[('Host', _host_header(url))],
                body=b'', service=None, region='us-east-1', payload_signed=True, presigned=True)


def _device_sdk_v1_websocket_vector():
    """Not botocore: the presigned MQTT-over-WSS URL as aws-iot-device-sdk v1 builds it by hand.

    No X-Amz-Expires, the payload hash is SHA-256 of the empty string instead of
    UNSIGNED-PAYLOAD, and X-Amz-Security-Token is appended after signing, outside the
    canonical query.
    """
    host = 'abc123-ats.iot.us-east-1.amazonaws.com'
    amz_date = SIGNED_AT.strftime('%Y%m%dT%H%M%SZ')
    scope = '%s/us-east-1/iotdevicegateway/aws4_request' % amz_date[:8]
    query = ('X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s&X-Amz-Date=%s'
             '&X-Amz-SignedHeaders=host' % (botocore.utils.percent_encode(ACCESS_KEY + '/' + scope),
                                            amz_date))
    canonical = '\n'.join(['GET', '/mqtt', query, 'host:' + host + '\n', 'host',
                           hashlib.sha256(b'').hexdigest()])
    string_to_sign = '\n'.join(['AWS4-HMAC-SHA256', amz_date, scope,
                                hashlib.sha256(canonical.encode()).hexdigest()])

    def sign(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = ('AWS4' + SECRET_KEY).encode()
    for part in (amz_date[:8], 'us-east-1', 'iotdevicegateway', 'aws4_request'):
        key = sign(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    target = '/mqtt?%s&X-Amz-Signature=%s&X-Amz-Security-Token=%s' % (
        query, signature, botocore.utils.percent_encode('FQoGZXIvYXdzEXAMPLE/+token=='))
    return dict(name='device_sdk_v1_websocket', method='GET', target=target,
                headers=[('Host', host)], body=b'', service='iotdevicegateway',
                region='us-east-1', payload_signed=True, presigned=True)


def _client_vectors(suffix):
    iot_endpoint = 'https://iot.us-east-1.amazonaws.com'
    data_endpoint = 'https://data-ats.iot.eu-west-1.amazonaws.com'
    vectors = [
        _client_vector('list_things_paged', 'iot', 'us-east-1', iot_endpoint,
                       lambda c: c.list_things(maxResults=2, nextToken='abc')),
        _client_vector('create_thing_json_body', 'iot', 'us-east-1', iot_endpoint,
                       lambda c: c.create_thing(
                           thingName='my-thing',
                           attributePayload={'attributes': {'colour': 'blue', 'floor': '2'}})),
        _client_vector('attach_thing_principal_header', 'iot', 'us-east-1', iot_endpoint,
                       lambda c: c.attach_thing_principal(thingName='t', principal=PRINCIPAL)),
        _client_vector('list_attached_policies_encoded_arn', 'iot', 'us-east-1', iot_endpoint,
                       lambda c: c.list_attached_policies(target=PRINCIPAL)),
        _client_vector('iotdata_publish_shadow_topic', 'iot-data', 'eu-west-1', data_endpoint,
                       lambda c: c.publish(topic='$aws/things/x/shadow/update', qos=1,
                                           payload=b'{"state":{"reported":{"on":true}}}')),
        _client_vector('describe_thing_localhost_port', 'iot', 'us-east-1',
                       'http://localhost:8080',
                       lambda c: c.describe_thing(thingName='my-thing')),
        _client_vector('describe_thing_utf8_tilde', 'iot', 'us-east-1', 'http://127.0.0.1:4566',
                       lambda c: c.describe_thing(thingName='caf\u00e9~x')),
        _client_vector('get_registration_code_empty_get', 'iot', 'ap-southeast-2',
                       'https://iot.ap-southeast-2.amazonaws.com',
                       lambda c: c.get_registration_code()),
        _client_presigned_vector('presigned_list_things', 'http://localhost:8080', 'list_things',
                                 {'maxResults': 2, 'thingTypeName': 'sensor type'}, 900),
    ]
    for vector in vectors:
        vector['name'] += suffix
    return vectors


def make_vectors():
    with _python_signer():
        vectors = _client_vectors('')
    vectors += [
        _auth_vector('execute_api_service', 'execute-api', 'us-east-1', 'GET',
                     'http://localhost:8080/things?maxResults=2'),
        _auth_vector('query_spaces_and_equals', 'iot', 'us-east-1', 'GET',
                     'https://iot.us-east-1.amazonaws.com/things?' +
                     botocore.utils.percent_encode_sequence(
                         [('attributeName', 'colour'), ('attributeValue', 'a b=c d'),
                          ('usePrefixAttributeValue', 'false'), ('flag', '')])),
        _auth_vector('query_params_plus_for_space', 'iot', 'us-east-1', 'GET',
                     'https://iot.us-east-1.amazonaws.com/things',
                     params={'attributeValue': 'a b=c', 'maxResults': '5'}),
        _auth_vector('date_header_instead_of_x_amz_date', 'iot', 'us-east-1', 'GET',
                     'https://iot.us-east-1.amazonaws.com/things',
                     headers={'Date': 'placeholder, replaced by the signer'}),
        _auth_vector('dot_segments_and_double_slash', 'iot', 'us-east-1', 'GET',
                     'http://localhost:8080/things/./a//b/../c/'),
        _auth_vector('header_whitespace_and_duplicates', 'iot', 'us-east-1', 'POST',
                     'http://localhost:8080/things/t', body=b'{}',
                     headers={'Content-Type': 'application/json', 'X-Custom': '  a   b \t c  '},
                     duplicate_headers=[('X-Dup', 'one'), ('X-Dup', ' two  words ')]),
        _auth_vector('unsigned_payload_header', 'iot', 'us-east-1', 'PUT',
                     'https://iot.us-east-1.amazonaws.com/things/t', body=b'{"a":1}',
                     context={'payload_signing_enabled': False}),
        _presigned_vector('presigned_mqtt_websocket', 'iotdevicegateway', 'us-east-1',
                          'https://abc123-ats.iot.us-east-1.amazonaws.com/mqtt', 300),
        _presigned_vector('presigned_unsigned_payload_s3_style', 'iotdevicegateway', 'us-east-1',
                          'https://abc123-ats.iot.us-east-1.amazonaws.com/mqtt', 3600,
                          signer=botocore.auth.S3SigV4QueryAuth),
        _device_sdk_v1_websocket_vector(),
    ]
    if HAS_CRT:
        vectors += _client_vectors('_crt')
    else:
        print('warning: awscrt not installed, the _crt vectors are left out', file=sys.stderr)
    return vectors


def _scope_of(vector):
    """(service, region) from the credential the signer wrote, e.g. iot signs as execute-api."""
    credential = None
    for key, value in vector['headers']:
        if key.lower() == 'authorization':
            credential = value.split('Credential=')[1].split(',')[0]
    if credential is None:
        query = urlsplit(vector['target']).query
        credential = unquote(query.split('X-Amz-Credential=')[1].split('&')[0])
    _, _, region, service, _ = credential.split('/')
    return service, region


def _cxx_string(data):
    if isinstance(data, str):
        data = data.encode()
    out = []
    for byte in data:
        char = chr(byte)
        if char in '"\\?':
            out.append('\\' + char)
        elif 0x20 <= byte < 0x7f:
            out.append(char)
        else:
            out.append('\\%03o' % byte)  # octal stops at three digits, unlike \x
    return '"' + ''.join(out) + '"'


def main():
    patches = _pinned()
    for patch in patches:
        patch.start()
    try:
        vectors = make_vectors()
    finally:
        for patch in patches:
            patch.stop()
    out = sys.stdout
    out.write('// Generated by make_sigv4_vectors.py with botocore %s; do not edit.\n'
              % botocore.__version__)
    out.write('// Signed at %s by %s with secret %s.\n'
              % (SIGNED_AT.strftime('%Y%m%dT%H%M%SZ'), ACCESS_KEY, SECRET_KEY))
    out.write('// clang-format off\n')
    for v in vectors:
        service, region = _scope_of(v)
        if v['service'] is None:
            v['service'] = service
        assert (service, region) == (v['service'], v['region']), v['name']
        out.write('{\n  %s, %s, %s,\n  %s, %s,\n  {\n' % (
            _cxx_string(v['name']), _cxx_string(v['service']), _cxx_string(v['region']),
            _cxx_string(v['method']), _cxx_string(v['target'])))
        for key, value in v['headers']:
            out.write('    {%s, %s},\n' % (_cxx_string(key), _cxx_string(value)))
        out.write('  },\n  %s,\n  %s, %s,\n},\n' % (
            _cxx_string(v['body']), 'true' if v['payload_signed'] else 'false',
            'true' if v['presigned'] else 'false'))
    out.write('// clang-format on\n')


if __name__ == '__main__':
    main()
