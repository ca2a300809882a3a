"""Guarded outbound HTTP: flow steps may call the internet, not the server's own network (SSRF).

A flow author chooses the URL a webhook step calls, so unguarded a flow could reach the database,
Redis, an admin port on localhost or the cloud metadata service (169.254.169.254). Checking the
URL's host before the call is not enough: the name can resolve to a private address, resolve to
another address a moment later when the socket connects (DNS rebinding), or a public server can
redirect to an internal one. So the check happens at connect time, inside the HTTP connection:
every new connection, each redirect hop included, resolves the host itself, checks the addresses
it got and connects the socket to one that passed, the very address that was checked, while the
host name stays in the Host header, TLS SNI and certificate verification. A refused call sends
nothing, not even a TCP handshake. Non-global addresses are refused unless site config
`flow_engine_outbound_allow` lists them. Each call also has a total deadline and a body size cap.

No frappe import (the module runs in the PyPI-only "core" test tier) and no shared mutable state:
each call gets its own session, so a thread pool may call `request` concurrently.
"""

from __future__ import annotations

import codecs
import io
import ipaddress
import json
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.poolmanager import PoolManager
from urllib3.util.connection import allowed_gai_family

ALLOW_KEY = "flow_engine_outbound_allow"
MAX_TIMEOUT_KEY = "flow_engine_outbound_max_timeout"
MAX_RESPONSE_BYTES_KEY = "flow_engine_outbound_max_response_bytes"
SCHEMES = ("http", "https")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CHUNK = 64 * 1024
_HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_SPECIAL_IPV4 = (
	(ipaddress.ip_network("0.0.0.0/8"), "a 'this network' address (0.0.0.0/8)"),
	(ipaddress.ip_network("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),
	(ipaddress.ip_network("255.255.255.255/32"), "the broadcast address"),
)
_KNOWN = {
	ipaddress.ip_address("169.254.169.254"): "the cloud metadata service",
	ipaddress.ip_address("100.100.100.200"): "the Alibaba Cloud metadata service",
	ipaddress.ip_address("fd00:ec2::254"): "the AWS metadata service over IPv6",
}


# Errors ----------------------------------------------------------------------------------------


class OutboundError(Exception):
	"""An outbound call failed. `retryable` says whether trying again later may succeed."""

	retryable: bool = False

	def __init__(self, method: str = "", url: str = "", reason: str = "", *, retryable: bool | None = None):
		super().__init__(method, url, reason)
		self.method = method
		self.url = url
		self.reason = reason
		if retryable is not None:
			self.retryable = retryable

	def __str__(self) -> str:
		return f"{self.method} {self.url} failed: {self.reason}"


class OutboundRefused(OutboundError):
	"""The policy forbids the call (address or scheme); nothing was sent to the target."""

	def __str__(self) -> str:
		return f"Refused to call {self.method} {self.url}: {self.reason}"


class OutboundTimeout(OutboundError):
	"""No complete answer within the call's timeout (connect, redirects, headers and body together)."""

	retryable = True

	def __str__(self) -> str:
		return f"{self.method} {self.url} timed out: {self.reason}"


class OutboundConnectionError(OutboundError):
	"""The host could not be resolved or reached, or the connection broke."""

	retryable = True


class ResponseTooLarge(OutboundError):
	"""The response body is larger than the policy's `max_response_bytes`."""


class TooManyRedirects(OutboundError):
	"""The call was redirected more often than the policy's `max_redirects`."""


# Policy ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
	"""What outbound calls may reach, and how long and large their answers may be.

	`allow` entries: an IP (`10.1.2.3`), a CIDR network (`10.0.0.0/8`), a host name
	(`intranet.example.com`, which permits whatever it resolves to) or a wildcard (`*.corp.example`,
	any name below corp.example, not corp.example itself).
	"""

	allow: tuple[str, ...] = ()
	max_timeout: float = 30.0
	default_timeout: float = 10.0
	max_response_bytes: int = 1_048_576
	max_redirects: int = 5
	_networks: tuple = field(default=(), init=False, repr=False, compare=False)
	_names: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)
	_suffixes: tuple = field(default=(), init=False, repr=False, compare=False)

	def __post_init__(self):
		entries, networks, names, suffixes = [], [], set(), []
		for entry in _split_allow(self.allow):
			entries.append(entry)
			network = _parse_network(entry)
			if network is not None:
				networks.append(network)
				continue
			name = _normal_host(entry)
			wildcard = name.startswith("*.")
			name = name[2:] if wildcard else name
			if not _HOST_NAME.match(name):
				raise ValueError(
					f"Outbound allow entry {entry!r} is not an IP, a CIDR network or a host name"
				)
			if wildcard:
				suffixes.append(name)
			else:
				names.add(name)
		for name in ("max_timeout", "default_timeout", "max_response_bytes"):
			if not getattr(self, name) > 0:
				raise ValueError(f"Outbound policy {name} must be positive, not {getattr(self, name)!r}")
		if self.max_redirects < 0:
			raise ValueError(
				f"Outbound policy max_redirects must not be negative, not {self.max_redirects!r}"
			)
		object.__setattr__(self, "allow", tuple(entries))
		object.__setattr__(self, "_networks", tuple(networks))
		object.__setattr__(self, "_names", frozenset(names))
		object.__setattr__(self, "_suffixes", tuple(suffixes))

	@classmethod
	def from_config(cls, conf: Mapping | None) -> Policy:
		"""The policy from site config: `flow_engine_outbound_allow` (a list or comma-separated text),
		`flow_engine_outbound_max_timeout` (seconds) and `flow_engine_outbound_max_response_bytes`."""
		conf = conf or {}
		kwargs: dict[str, Any] = {"allow": _split_allow(conf.get(ALLOW_KEY))}
		for key, name, kind in (
			(MAX_TIMEOUT_KEY, "max_timeout", float),
			(MAX_RESPONSE_BYTES_KEY, "max_response_bytes", int),
		):
			value = conf.get(key)
			if value is None or value == "":
				continue
			try:
				number = kind(value)
			except (TypeError, ValueError):
				raise ValueError(f"Site config {key} must be a number, not {value!r}") from None
			if number <= 0:
				raise ValueError(f"Site config {key} must be positive, not {value!r}")
			kwargs[name] = number
		return cls(**kwargs)

	def timeout_for(self, timeout: float | None = None) -> float:
		"""The timeout a call gets: the requested one (or the default), at most `max_timeout`."""
		requested = float(timeout or self.default_timeout)
		if requested <= 0:
			raise ValueError(f"An outbound timeout must be positive, not {timeout!r}")
		return min(requested, self.max_timeout)

	def allows(self, address: IPAddress, host: str = "") -> bool:
		"""Whether the allowlist explicitly permits this address, or the host name it was resolved from."""
		candidates = [address]
		embedded = _embedded_ipv4(address)
		if embedded is not None:
			candidates.append(embedded[1])
		if any(candidate in network for candidate in candidates for network in self._networks):
			return True
		name = _normal_host(host)
		if not name:
			return False
		return name in self._names or any(name.endswith("." + suffix) for suffix in self._suffixes)


def _split_allow(value) -> list[str]:
	if value is None:
		return []
	if isinstance(value, str):
		value = value.replace("\n", ",").split(",")
	elif not isinstance(value, Iterable):
		value = [value]
	return [str(entry).strip() for entry in value if str(entry).strip()]


def _parse_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
	try:
		return ipaddress.ip_network(entry.strip("[]"), strict=False)
	except ValueError:
		return None


def _normal_host(host) -> str:
	return str(host or "").strip().strip("[]").rstrip(".").lower()


DEFAULT_POLICY = Policy()


# Address classification ------------------------------------------------------------------------


def refusal(ip: str, host: str = "", policy: Policy = DEFAULT_POLICY) -> str | None:
	"""Why connecting to `ip` (resolved from `host`) is refused, e.g. "127.0.0.1 is a loopback
	address", or None when it is allowed: globally routable, or permitted by the policy's allowlist."""
	text = str(ip).strip().strip("[]")
	try:
		address = ipaddress.ip_address(text)
	except ValueError:
		return f"{ip!r} is not an IP address"
	if policy.allows(address, host):
		return None
	kind = _kind(address)
	if kind is None:
		return None
	name = _normal_host(host)
	if name and _parse_network(name) is None:
		return f"{name} resolves to {text}, {kind}"
	return f"{text} is {kind}"


def _kind(address: IPAddress) -> str | None:
	"""What kind of non-global address this is (a noun phrase), or None when it is globally routable."""
	embedded = _embedded_ipv4(address)
	if embedded is not None:
		form, inner = embedded
		inner_kind = _kind(inner)
		return f"the {form} form of {inner}, {inner_kind}" if inner_kind else None
	kind = _base_kind(address)
	if kind and address in _KNOWN:
		kind = f"{kind} ({_KNOWN[address]})"
	return kind


def _base_kind(address: IPAddress) -> str | None:
	if address.is_unspecified:
		return "the unspecified address"
	if address.is_loopback:
		return "a loopback address"
	if address.is_link_local:
		return "a link-local address"
	if address.version == 4:
		for network, kind in _SPECIAL_IPV4:
			if address in network:
				return kind
	if address.is_multicast:
		return "a multicast address"
	if address.version == 6:
		if address in _UNIQUE_LOCAL:
			return "a private (unique local) address"
		if address.is_site_local:
			return "a site-local address"
	if address.is_reserved:
		return "a reserved address"
	if address.is_private:
		return "a private address"
	if not address.is_global:
		return "a special-purpose address that is not globally routable"
	return None


def _embedded_ipv4(address: IPAddress) -> tuple[str, ipaddress.IPv4Address] | None:
	"""The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64, compatible), if any."""
	if address.version != 6:
		return None
	if address.ipv4_mapped is not None:
		return "IPv4-mapped", address.ipv4_mapped
	if address.sixtofour is not None:
		return "6to4", address.sixtofour
	if address in _NAT64:
		return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
	if address in _IPV4_COMPATIBLE and int(address) > 1:
		return "IPv4-compatible", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
	return None


# Connect-time guard ----------------------------------------------------------------------------


class _AddressRefused(Exception):
	"""Raised inside a connection; not an OSError, so urllib3 and requests let it through unchanged."""

	def __init__(self, host: str, address: str, reason: str):
		super().__init__(reason)
		self.host = host
		self.address = address
		self.reason = reason
		self.url = ""
		self.redirected = False


class _ConnectFailed(NewConnectionError):
	def __init__(self, conn, detail: str):
		self.detail = detail
		super().__init__(conn, detail)


class _Guard:
	"""One call's policy and deadline, shared by the connections it opens.

	It keeps a duplicate of each connected socket so that, when the deadline passes, the watchdog
	can shut the connection down (waking a read blocked in another thread, TLS or not) without
	touching the socket objects urllib3 is using.
	"""

	def __init__(self, policy: Policy, timeout: float):
		self.policy = policy
		self.timeout = timeout
		self.deadline = time.monotonic() + timeout
		self.expired = False
		self._closed = False
		self._lock = threading.Lock()
		self._twins: list[socket.socket] = []

	def remaining(self) -> float:
		return self.deadline - time.monotonic()

	def watch(self, sock: socket.socket) -> None:
		try:
			twin = sock.dup()
		except OSError:
			return
		with self._lock:
			if not (self._closed or self.expired):
				self._twins.append(twin)
				return
			if self.expired:
				_shutdown(twin)
		twin.close()

	def expire(self) -> None:
		with self._lock:
			if self._closed:
				return
			self.expired = True
			for twin in self._twins:
				_shutdown(twin)

	def close(self) -> None:
		with self._lock:
			self._closed = True
			twins, self._twins = self._twins, []
			for twin in twins:
				twin.close()


def _shutdown(sock: socket.socket) -> None:
	try:
		sock.shutdown(socket.SHUT_RDWR)
	except OSError:
		pass


class _GuardedConnectionMixin:
	"""Replaces urllib3's `_new_conn`: resolve, check every address, connect only to a permitted one.

	urllib3 keeps the connect target in `_dns_host` and derives `host` (Host header, SNI, certificate
	name) from it; neither is changed, only the socket is connected to the checked address.
	"""

	guard: _Guard | None = None

	def _new_conn(self) -> socket.socket:
		name = self._dns_host.strip("[]")
		guard = self.guard
		if guard is None:  # fail closed: a connection without a policy never connects
			raise _AddressRefused(name, "", "no outbound policy is attached to the connection")
		try:
			infos = socket.getaddrinfo(name, self.port, allowed_gai_family(), socket.SOCK_STREAM)
		except (OSError, UnicodeError) as error:
			raise _ConnectFailed(self, f"could not resolve {name}: {error}") from error
		permitted, refused = [], []
		for info in infos:
			reason = refusal(info[4][0], name, guard.policy)
			if reason:
				refused.append((info[4][0], reason))
			else:
				permitted.append(info)
		if not permitted:
			address, reason = refused[0] if refused else ("", f"{name} resolves to no address")
			raise _AddressRefused(name, address, reason)
		error: OSError | None = None
		for family, kind, proto, _canonical, sockaddr in permitted:
			remaining = guard.remaining()
			if remaining <= 0:
				raise ConnectTimeoutError(self, f"Connection to {name} timed out: the call's deadline passed")
			timeout = self.timeout if isinstance(self.timeout, int | float) else None
			sock = socket.socket(family, kind, proto)
			try:
				for option in self.socket_options or ():
					sock.setsockopt(*option)
				sock.settimeout(remaining if timeout is None else min(timeout, remaining))
				if self.source_address:
					sock.bind(self.source_address)
				sock.connect(sockaddr)
			except OSError as failure:
				sock.close()
				error = failure
				continue
			guard.watch(sock)
			sys.audit("http.client.connect", self, self.host, self.port)
			return sock
		if isinstance(error, TimeoutError):
			raise ConnectTimeoutError(self, f"Connection to {name} timed out") from error
		detail = getattr(error, "strerror", None) or error
		address = permitted[-1][4][0]
		target = name if address == name else f"{name} ({address})"
		raise _ConnectFailed(self, f"could not connect to {target}: {detail}") from error


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
	pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
	pass


class _GuardedPoolMixin:
	guard: _Guard | None = None

	def _new_conn(self):
		conn = super()._new_conn()
		conn.guard = self.guard
		return conn


class _GuardedHTTPConnectionPool(_GuardedPoolMixin, HTTPConnectionPool):
	ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(_GuardedPoolMixin, HTTPSConnectionPool):
	ConnectionCls = _GuardedHTTPSConnection


class _GuardedPoolManager(PoolManager):
	def __init__(self, guard: _Guard, **kwargs):
		super().__init__(**kwargs)
		self.guard = guard
		self.pool_classes_by_scheme = {
			"http": _GuardedHTTPConnectionPool,
			"https": _GuardedHTTPSConnectionPool,
		}

	def _new_pool(self, scheme, host, port, request_context=None):
		pool = super()._new_pool(scheme, host, port, request_context)
		pool.guard = self.guard
		return pool


class _GuardedAdapter(HTTPAdapter):
	def __init__(self, guard: _Guard):
		self.guard = guard
		self.sends = 0
		super().__init__(pool_connections=4, pool_maxsize=4)

	def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
		self._pool_connections = connections
		self._pool_maxsize = maxsize
		self._pool_block = block
		self.poolmanager = _GuardedPoolManager(
			self.guard, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
		)

	def proxy_manager_for(self, proxy, **proxy_kwargs):
		raise _AddressRefused("", "", "outbound calls do not go through proxies")

	def send(self, request, **kwargs):
		self.sends += 1
		try:
			response = super().send(request, **kwargs)
		except _AddressRefused as refused:
			refused.url = request.url
			refused.redirected = self.sends > 1
			raise
		if response.is_redirect:
			# requests reads a redirect's whole body before following it; it is never used, so drop
			# the connection instead of reading an unbounded body.
			raw = response.raw
			response.raw = io.BytesIO(b"")
			raw.close()
			raw.release_conn()
		return response


# Calls -----------------------------------------------------------------------------------------


class Headers(dict):
	"""Response headers: a plain dict (JSON-friendly) whose lookups ignore case, as HTTP's do."""

	def _key(self, name):
		if dict.__contains__(self, name):
			return name
		lowered = str(name).lower()
		return next((key for key in self if str(key).lower() == lowered), None)

	def __getitem__(self, name):
		key = self._key(name)
		if key is None:
			raise KeyError(name)
		return dict.__getitem__(self, key)

	def __contains__(self, name) -> bool:
		return self._key(name) is not None

	def get(self, name, default=None):
		key = self._key(name)
		return default if key is None else dict.__getitem__(self, key)


@dataclass(frozen=True)
class Response:
	status_code: int
	headers: Headers
	content: bytes
	url: str
	elapsed_ms: int

	@property
	def text(self) -> str:
		match = _CHARSET.search(self.headers.get("Content-Type") or "")
		encoding = match.group(1) if match else "utf-8"
		try:
			codecs.lookup(encoding)
		except LookupError:
			encoding = "utf-8"
		return self.content.decode(encoding, errors="replace")

	def json(self) -> Any:
		return json.loads(self.content)


def request(
	method: str,
	url: str,
	*,
	data=None,
	headers: Mapping[str, str] | None = None,
	timeout: float | None = None,
	policy: Policy = DEFAULT_POLICY,
) -> Response:
	"""Make one HTTP call under `policy`; redirects are followed, each hop checked like the first.

	The timeout (`policy.timeout_for(timeout)`) bounds connecting, each read, and the whole call
	including the body. Raises an `OutboundError` subclass; its `retryable` says whether to retry.
	"""
	method = str(method or "GET").upper()
	shown = str(url)  # as given, so a caller can find and mask it (webhook hides resolved secrets)
	try:
		parts = urlsplit(str(url))
		host = parts.hostname
	except ValueError as error:
		raise OutboundError(method, shown, f"invalid URL: {error}") from None
	if parts.scheme.lower() not in SCHEMES:
		raise OutboundRefused(
			method, shown, f"only http:// and https:// URLs may be called, not {parts.scheme or 'no'}://"
		)
	if not host:
		raise OutboundError(method, shown, "the URL has no host")
	limit = policy.timeout_for(timeout)
	guard = _Guard(policy, limit)
	adapter = _GuardedAdapter(guard)
	session = requests.Session()
	session.trust_env = False  # no proxies or .netrc from the environment
	session.max_redirects = policy.max_redirects
	session.mount("http://", adapter)
	session.mount("https://", adapter)
	watchdog = threading.Timer(limit, guard.expire)
	watchdog.daemon = True
	started = time.monotonic()
	watchdog.start()
	try:
		answer = session.request(
			method, url, data=data, headers=dict(headers or {}), timeout=(limit, limit), stream=True
		)
		try:
			content = _read_body(answer, guard, method, shown)
		finally:
			answer.close()
		watchdog.cancel()
		if guard.expired:  # the watchdog's shutdown can look like the end of a body without a length
			raise OutboundTimeout(method, shown, f"no complete answer within {limit:g}s")
		return Response(
			status_code=answer.status_code,
			headers=Headers(answer.headers),
			content=content,
			url=answer.url,
			elapsed_ms=round((time.monotonic() - started) * 1000),
		)
	except OutboundError:
		raise
	except _AddressRefused as refused:
		raise OutboundRefused(method, shown, _refusal_text(refused)) from None
	except requests.exceptions.InvalidSchema as error:
		raise OutboundRefused(
			method, shown, f"only http:// and https:// URLs may be called ({error})"
		) from None
	except requests.TooManyRedirects:
		raise TooManyRedirects(method, shown, f"more than {policy.max_redirects} redirects") from None
	except (requests.RequestException, OSError) as error:
		if guard.expired or isinstance(error, requests.ReadTimeout | TimeoutError):
			raise OutboundTimeout(method, shown, f"no complete answer within {limit:g}s") from error
		if isinstance(error, requests.ConnectTimeout):
			raise OutboundTimeout(method, shown, f"could not connect within {limit:g}s") from error
		if isinstance(error, requests.ConnectionError | requests.exceptions.ChunkedEncodingError | OSError):
			raise OutboundConnectionError(method, shown, _connection_reason(error)) from error
		raise OutboundError(method, shown, str(error)) from error
	finally:
		watchdog.cancel()
		guard.close()
		session.close()


def _read_body(answer: requests.Response, guard: _Guard, method: str, shown: str) -> bytes:
	cap = guard.policy.max_response_bytes
	too_large = f"the response body is larger than {cap} bytes (site config {MAX_RESPONSE_BYTES_KEY})"
	declared = str(answer.headers.get("Content-Length") or "").strip()
	if declared.isdigit() and int(declared) > cap:
		raise ResponseTooLarge(method, shown, too_large)
	body = bytearray()
	for chunk in answer.iter_content(min(_CHUNK, cap + 1)):
		body += chunk
		if len(body) > cap:
			raise ResponseTooLarge(method, shown, too_large)
		if guard.expired or guard.remaining() <= 0:
			raise OutboundTimeout(method, shown, f"no complete answer within {guard.timeout:g}s")
	return bytes(body)


def _refusal_text(refused: _AddressRefused) -> str:
	reason = refused.reason
	if refused.redirected and refused.url:
		reason = f"it redirected to {refused.url}, and {reason}"
	if refused.address:
		if _parse_network(refused.host) is not None:
			reason += f"; add it to site config {ALLOW_KEY} to permit it"
		else:
			reason += f"; add {refused.host} or {refused.address} to site config {ALLOW_KEY} to permit it"
	return reason


def _connection_reason(error: BaseException) -> str:
	"""The innermost useful reason in requests' and urllib3's wrapped exceptions."""
	queue, seen = [error], set()
	while queue:
		current = queue.pop(0)
		if id(current) in seen:
			continue
		seen.add(id(current))
		if isinstance(current, _ConnectFailed):
			return current.detail
		if isinstance(current, ssl.SSLCertVerificationError):
			return f"TLS certificate verification failed: {current.verify_message}"
		if isinstance(current, ssl.SSLError):
			return f"TLS error: {current}"
		nested = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
		queue.extend(item for item in nested if isinstance(item, BaseException))
	return str(error)
