"""The outbound guard: what it refuses, that a refused call sends nothing, and the limits it applies.

Real calls go to small HTTP servers on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (Linux routes all of
127.0.0.0/8 to lo), which count the connections and requests that reach them. Loopback addresses
are refused by default, so a test permits the ones it means to reach through the policy.
"""

import ast
import json
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from flow_engine import outbound
from flow_engine.outbound import (
	OutboundConnectionError,
	OutboundError,
	OutboundRefused,
	OutboundTimeout,
	Policy,
	ResponseTooLarge,
	TooManyRedirects,
	refusal,
	request,
)

ROOT = Path(__file__).resolve().parent.parent


class Target:
	"""An HTTP server on one address that records every connection and request reaching it."""

	def __init__(self, host: str):
		self.host = host
		self.connections = 0
		self.requests: list[str] = []
		self.stop = threading.Event()
		self._lock = threading.Lock()
		target = self

		class Server(ThreadingHTTPServer):
			daemon_threads = True

			def verify_request(self, request, client_address):
				with target._lock:
					target.connections += 1
				return True

			def handle_error(self, request, client_address):
				pass  # a client that gave up (timeout, size cap) breaks the pipe; that is expected

		class Handler(BaseHTTPRequestHandler):
			def log_message(self, *args):
				pass

			def do_GET(self):
				with target._lock:
					target.requests.append(self.path)
				target.route(self)

			do_POST = do_GET

		self.server = Server((host, 0), Handler)
		self.port = self.server.server_address[1]
		self.thread = threading.Thread(
			target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
		)
		self.thread.start()

	def url(self, path: str = "/ok", host: str | None = None) -> str:
		return f"http://{host or self.host}:{self.port}{path}"

	def reset(self):
		with self._lock:
			self.connections = 0
			self.requests.clear()

	def close(self):
		self.stop.set()
		self.server.shutdown()
		self.server.server_close()

	def route(self, handler: BaseHTTPRequestHandler):
		parts = urlsplit(handler.path)
		query = {key: values[0] for key, values in parse_qs(parts.query).items()}
		if parts.path == "/ok":
			self._send(handler, 200, b"hello", {"Content-Type": "text/plain; charset=utf-8"})
		elif parts.path == "/echo":
			length = int(handler.headers.get("Content-Length") or 0)
			body = {
				"method": handler.command,
				"host": handler.headers.get("Host"),
				"body": handler.rfile.read(length).decode(),
				"x_test": handler.headers.get("X-Test"),
			}
			self._send(handler, 200, json.dumps(body).encode(), {"content-type": "application/json"})
		elif parts.path == "/redirect":
			self._send(handler, 302, b"moved", {"Location": query["to"]})
		elif parts.path == "/loop":
			self._send(handler, 302, b"", {"Location": "/loop"})
		elif parts.path == "/big":
			self._send(handler, 200, b"x" * int(query["n"]))
		elif parts.path == "/big-unsized":
			# no Content-Length: the body ends when the (HTTP/1.0) connection closes
			handler.send_response(200)
			handler.end_headers()
			for _ in range(int(query["n"]) // 1000):
				handler.wfile.write(b"x" * 1000)
		elif parts.path == "/drip":
			handler.send_response(200)
			handler.send_header("Content-Length", "200")
			handler.end_headers()
			handler.wfile.flush()
			for _ in range(200):  # 10 s in all if nobody cuts it off
				if self.stop.wait(0.05):
					return
				handler.wfile.write(b"x")
				handler.wfile.flush()
		elif parts.path == "/slow":
			if not self.stop.wait(float(query["s"])):
				self._send(handler, 200, b"late")
		else:
			self._send(handler, 404, b"no such route")

	@staticmethod
	def _send(handler, status: int, body: bytes, headers: dict | None = None):
		handler.send_response(status)
		for name, value in (headers or {}).items():
			handler.send_header(name, value)
		handler.send_header("Content-Length", str(len(body)))
		handler.end_headers()
		handler.wfile.write(body)


@pytest.fixture(scope="module")
def targets():
	started = {host: Target(host) for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3")}
	yield started
	for target in started.values():
		target.close()


@pytest.fixture
def t1(targets):
	return _fresh(targets["127.0.0.1"])


@pytest.fixture
def t2(targets):
	return _fresh(targets["127.0.0.2"])


@pytest.fixture
def t3(targets):
	return _fresh(targets["127.0.0.3"])


def _fresh(target: Target) -> Target:
	target.reset()
	return target


ONLY_2 = Policy(allow=("127.0.0.2",))


# Classification (no connection) ----------------------------------------------------------------


@pytest.mark.parametrize(
	("ip", "expected"),
	[
		("127.0.0.1", "127.0.0.1 is a loopback address"),
		("10.0.0.1", "10.0.0.1 is a private address"),
		("172.16.0.1", "172.16.0.1 is a private address"),
		("192.168.1.1", "192.168.1.1 is a private address"),
		("169.254.169.254", "169.254.169.254 is a link-local address (the cloud metadata service)"),
		("100.100.100.200", "100.100.100.200 is a shared (carrier-grade NAT) address"),
		("100.64.0.1", "100.64.0.1 is a shared (carrier-grade NAT) address"),
		("0.0.0.0", "0.0.0.0 is the unspecified address"),
		("::", ":: is the unspecified address"),
		("::1", "::1 is a loopback address"),
		("fe80::1", "fe80::1 is a link-local address"),
		("fd00:ec2::254", "fd00:ec2::254 is a private (unique local) address"),
		("::ffff:127.0.0.1", "::ffff:127.0.0.1 is the IPv4-mapped form of 127.0.0.1, a loopback address"),
		("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254, a link-local address"),
		("64:ff9b::a00:1", "the NAT64 form of 10.0.0.1, a private address"),
		("2002:7f00:1::", "the 6to4 form of 127.0.0.1, a loopback address"),
		("::7f00:1", "the IPv4-compatible form of 127.0.0.1, a loopback address"),
		("224.0.0.1", "224.0.0.1 is a multicast address"),
		("ff02::1", "ff02::1 is a multicast address"),
		("240.0.0.1", "240.0.0.1 is a reserved address"),
		("255.255.255.255", "the broadcast address"),
		("not-an-ip", "'not-an-ip' is not an IP address"),
	],
)
def test_non_global_addresses_are_refused_with_a_reason(ip, expected):
	reason = refusal(ip, ip, Policy())
	assert reason is not None and expected in reason


@pytest.mark.parametrize(
	"ip", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"]
)
def test_public_addresses_are_allowed(ip):
	assert refusal(ip, ip, Policy()) is None


def test_a_host_name_is_named_in_the_reason():
	assert (
		refusal("127.0.0.1", "localhost", Policy()) == "localhost resolves to 127.0.0.1, a loopback address"
	)


def test_allow_entries_permit_exactly_what_they_name():
	policy = Policy(allow=("10.1.2.3", "192.168.0.0/16", "intranet.example.com", "*.corp.example"))
	assert refusal("10.1.2.3", "10.1.2.3", policy) is None
	assert refusal("::ffff:10.1.2.3", "::ffff:10.1.2.3", policy) is None
	assert refusal("10.1.2.4", "10.1.2.4", policy) == "10.1.2.4 is a private address"
	assert refusal("192.168.44.5", "192.168.44.5", policy) is None
	assert refusal("192.169.0.1", "192.169.0.1", policy) is None  # public anyway
	assert refusal("172.16.0.9", "intranet.example.com", policy) is None
	assert refusal("172.16.0.9", "INTRANET.example.com.", policy) is None
	assert refusal("172.16.0.9", "api.corp.example", policy) is None
	assert refusal("172.16.0.9", "a.b.corp.example", policy) is None
	for host in ("corp.example", "evilcorp.example", "intranet.example.com.evil.test", "other.example"):
		assert refusal("172.16.0.9", host, policy) == f"{host} resolves to 172.16.0.9, a private address"


def test_invalid_allow_entries_are_rejected():
	with pytest.raises(ValueError, match="not an IP, a CIDR network or a host name"):
		Policy(allow=("http://intranet/",))


# Policy ----------------------------------------------------------------------------------------


def test_policy_from_config_reads_lists_and_comma_text():
	assert Policy.from_config({}) == Policy()
	assert Policy.from_config(
		{"flow_engine_outbound_allow": ["10.0.0.0/8", " intranet.example.com "]}
	).allow == (
		"10.0.0.0/8",
		"intranet.example.com",
	)
	policy = Policy.from_config(
		{
			"flow_engine_outbound_allow": "10.0.0.5, *.corp.example,,192.168.0.0/16",
			"flow_engine_outbound_max_timeout": "12.5",
			"flow_engine_outbound_max_response_bytes": 2048,
		}
	)
	assert policy.allow == ("10.0.0.5", "*.corp.example", "192.168.0.0/16")
	assert policy.max_timeout == 12.5
	assert policy.max_response_bytes == 2048
	assert refusal("10.0.0.5", "10.0.0.5", policy) is None
	assert refusal("10.0.0.6", "10.0.0.6", policy) is not None
	with pytest.raises(ValueError, match="flow_engine_outbound_max_timeout"):
		Policy.from_config({"flow_engine_outbound_max_timeout": "soon"})
	with pytest.raises(ValueError, match="flow_engine_outbound_max_response_bytes"):
		Policy.from_config({"flow_engine_outbound_max_response_bytes": 0})


def test_requested_timeout_is_capped_at_the_maximum():
	policy = Policy(max_timeout=5.0, default_timeout=2.0)
	assert policy.timeout_for(None) == 2.0
	assert policy.timeout_for(1.5) == 1.5
	assert policy.timeout_for(600) == 5.0


# Calls -----------------------------------------------------------------------------------------


def test_loopback_call_is_refused_and_sends_nothing(t1):
	url = t1.url("/ok")
	with pytest.raises(OutboundRefused) as caught:
		request("GET", url)
	assert caught.value.retryable is False
	assert str(caught.value) == (
		f"Refused to call GET {url}: 127.0.0.1 is a loopback address; "
		"add it to site config flow_engine_outbound_allow to permit it"
	)
	assert t1.connections == 0 and t1.requests == []
	# the same call, permitted, does reach the server: the refusal above was the guard's doing
	assert request("GET", url, policy=Policy(allow=("127.0.0.1",))).status_code == 200
	assert t1.connections == 1


def test_host_name_resolving_to_loopback_is_refused(t1):
	url = t1.url("/echo", host="localhost")
	with pytest.raises(
		OutboundRefused, match=re.escape("localhost resolves to 127.0.0.1, a loopback address")
	) as caught:
		request("GET", url)
	assert "add localhost or 127.0.0.1 to site config flow_engine_outbound_allow" in str(caught.value)
	assert t1.connections == 0
	# allowlisting the host name permits what it resolves to; the Host header keeps the name
	response = request("GET", url, policy=Policy(allow=("localhost",)))
	assert response.json()["host"] == f"localhost:{t1.port}"


def test_allowlisted_address_is_called(t2):
	response = request(
		"post", t2.url("/echo"), data=b'{"a": 1}', headers={"X-Test": "yes"}, timeout=5, policy=ONLY_2
	)
	assert response.status_code == 200
	assert response.json() == {"method": "POST", "host": t2.url("")[7:], "body": '{"a": 1}', "x_test": "yes"}
	assert response.headers["Content-Type"] == "application/json"  # lookups ignore case
	assert response.url == t2.url("/echo")
	assert response.elapsed_ms >= 0
	text = request("GET", t2.url("/ok"), policy=ONLY_2)
	assert (text.content, text.text) == (b"hello", "hello")
	assert t2.requests == ["/echo", "/ok"]


def test_allowlisted_network_is_called_and_nothing_else(t1, t2, t3):
	policy = Policy(allow=("127.0.0.2/31",))
	assert request("GET", t2.url("/ok"), policy=policy).content == b"hello"
	assert request("GET", t3.url("/ok"), policy=policy).content == b"hello"
	with pytest.raises(OutboundRefused, match=re.escape("127.0.0.1 is a loopback address")):
		request("GET", t1.url("/ok"), policy=policy)
	assert (t1.connections, len(t2.requests), len(t3.requests)) == (0, 1, 1)


def test_redirect_to_an_address_not_allowlisted_is_refused(t2, t3):
	hop = t3.url("/ok")
	url = t2.url("/redirect?to=" + quote(hop, safe=""))
	with pytest.raises(OutboundRefused) as caught:
		request("GET", url, policy=ONLY_2)
	assert str(caught.value) == (
		f"Refused to call GET {url}: it redirected to {hop}, and 127.0.0.3 is a loopback address; "
		"add it to site config flow_engine_outbound_allow to permit it"
	)
	assert len(t2.requests) == 1
	assert t3.connections == 0


def test_redirect_to_a_host_name_is_checked_after_resolving_it(t1, t2):
	url = t2.url("/redirect?to=" + quote(t1.url("/ok", host="localhost"), safe=""))
	with pytest.raises(OutboundRefused, match=re.escape("localhost resolves to 127.0.0.1")):
		request("GET", url, policy=ONLY_2)
	assert len(t2.requests) == 1
	assert t1.connections == 0


def test_redirect_to_another_scheme_is_refused(t2):
	url = t2.url("/redirect?to=" + quote("file:///etc/passwd", safe=""))
	with pytest.raises(OutboundRefused, match="only http:// and https://"):
		request("GET", url, policy=ONLY_2)
	assert len(t2.requests) == 1


def test_redirect_between_allowed_addresses_is_followed(t2, t3):
	url = t2.url("/redirect?to=" + quote(t3.url("/ok"), safe=""))
	response = request("GET", url, policy=Policy(allow=("127.0.0.2", "127.0.0.3")))
	assert (response.status_code, response.content, response.url) == (200, b"hello", t3.url("/ok"))
	assert (len(t2.requests), t3.requests) == (1, ["/ok"])


def test_too_many_redirects(t2):
	policy = Policy(allow=("127.0.0.2",), max_redirects=2)
	with pytest.raises(TooManyRedirects, match="more than 2 redirects") as caught:
		request("GET", t2.url("/loop"), policy=policy)
	assert caught.value.retryable is False
	assert t2.requests == ["/loop"] * 3


@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_response_larger_than_the_cap_is_refused(t2, path):
	policy = Policy(allow=("127.0.0.2",), max_response_bytes=4000)
	assert len(request("GET", t2.url(f"{path}?n=4000"), policy=policy).content) == 4000
	with pytest.raises(ResponseTooLarge, match="larger than 4000 bytes") as caught:
		request("GET", t2.url(f"{path}?n=5000"), policy=policy)
	assert caught.value.retryable is False


def test_slow_drip_is_cut_off_by_the_total_deadline(t2):
	started = time.monotonic()
	with pytest.raises(OutboundTimeout, match=r"no complete answer within 0\.5s") as caught:
		request("GET", t2.url("/drip"), timeout=0.5, policy=ONLY_2)
	# each byte arrives well within the read timeout; only the total deadline stops it
	assert time.monotonic() - started < 1.5
	assert caught.value.retryable is True
	assert t2.requests == ["/drip"]


def test_requested_timeout_above_the_maximum_is_capped(t2):
	policy = Policy(allow=("127.0.0.2",), max_timeout=0.3)
	started = time.monotonic()
	with pytest.raises(OutboundTimeout):
		request("GET", t2.url("/slow?s=2"), timeout=60, policy=policy)
	assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
	"url", ["ftp://127.0.0.2/x", "file:///etc/passwd", "gopher://127.0.0.2:70/", "//127.0.0.2/"]
)
def test_only_http_and_https_urls_are_called(t2, url):
	with pytest.raises(OutboundRefused, match="only http:// and https://") as caught:
		request("GET", url, policy=ONLY_2)
	assert caught.value.retryable is False
	assert t2.connections == 0


def test_connection_failure_is_retryable():
	with socket.socket() as probe:
		probe.bind(("127.0.0.2", 0))
		port = probe.getsockname()[1]  # nothing listens there once the probe is closed
	with pytest.raises(OutboundConnectionError, match="Connection refused") as caught:
		request("GET", f"http://127.0.0.2:{port}/", policy=ONLY_2)
	assert caught.value.retryable is True


def test_concurrent_calls_from_a_thread_pool(t2, t3):
	urls = [t2.url("/ok") if n % 2 == 0 else t3.url("/ok") for n in range(16)]

	def call(url):
		try:
			return request("GET", url, policy=ONLY_2).content
		except OutboundRefused:
			return "refused"

	with ThreadPoolExecutor(max_workers=8) as pool:
		results = list(pool.map(call, urls))
	assert results == [b"hello", "refused"] * 8
	assert (len(t2.requests), t3.connections) == (8, 0)


def test_errors_survive_pickling():
	error = pickle.loads(pickle.dumps(OutboundTimeout("GET", "http://example.com/", "too slow")))
	assert isinstance(error, OutboundError)
	assert (error.retryable, str(error)) == (True, "GET http://example.com/ timed out: too slow")


def test_outbound_does_not_import_frappe():
	code = "import sys, flow_engine.outbound; print('frappe' in sys.modules)"
	result = subprocess.run(
		[sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
	)
	assert result.stdout.strip() == "False"
	for node in ast.walk(ast.parse(Path(outbound.__file__).read_text())):
		if isinstance(node, ast.Import | ast.ImportFrom):
			names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
			assert not any(
				name.startswith(("frappe", "flow_engine.runtime", "flow_engine.kinds")) for name in names
			)
