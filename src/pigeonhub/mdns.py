"""Hubs on the LAN over mDNS / DNS-SD (python-zeroconf): the PC hub's advertisement
(`pigeonhub serve --mdns`), browsing (`pigeonhub discover`) and turning a discovered name into an
address (`pigeonhub upload --host pigeonhub-ab12`, `pigeonhub bench --url pigeonhub-ab12`).

A hub is one `_pigeonhub._tcp` service whose instance name is also its host name:
`pigeonhub-<first 4 hex of the hub id>` (board: CONFIG_PIGEONHUB_MDNS_HOSTNAME may replace it), so
`pigeonhub-ab12`, `pigeonhub-ab12.local` and the service instance all name the same hub. Its TXT
record (docs/PROTOCOL.md §10.1) carries TXT_KEYS; main/mdns_advert.c advertises the same keys
(test/firmware/test_config_consistency.py keeps the two in step).

zeroconf is imported inside the functions: commands that never touch mDNS do not need it.
"""

import ipaddress
import socket
import time
from dataclasses import dataclass

SERVICE_TYPE = "_pigeonhub._tcp.local."
NAME_PREFIX = "pigeonhub-"
WS_PATH = "/"                  # the hub accepts WebSockets on any path; "/" is what clients use
# TXT keys, in the order both the PC hub and the board send them
TXT_HUB_ID, TXT_ABI, TXT_PORT, TXT_PATH = "hubid", "abi", "port", "path"
TXT_KEYS = (TXT_HUB_ID, TXT_ABI, TXT_PORT, TXT_PATH)
RESOLVE_TIMEOUT = 3.0          # s for a name to answer; a board in Wi-Fi power save answers in < 1 s
INSTALL_HINT = "pip install 'zeroconf>=0.154,<0.155'"


class MdnsError(Exception):
    """mDNS cannot be used here (zeroconf missing, no usable interface); the text says why."""


class NameNotFound(LookupError):
    """No hub of that name answered within the timeout."""

    def __init__(self, name, timeout):
        super().__init__(f"no hub named {name} answered on the LAN (mDNS, {timeout:g} s)")
        self.name, self.timeout = name, timeout


@dataclass
class FoundHub:
    """One hub seen on the LAN."""

    name: str            # instance name, e.g. pigeonhub-ab12
    host: str            # its host name, e.g. pigeonhub-ab12.local
    address: str         # the first IPv4 address it advertised
    port: int
    path: str
    hub_id: str
    abi: str

    @property
    def url(self):
        return f"ws://{self.address}:{self.port}{self.path}"


def instance_name(hub_id):
    """pigeonhub-ab12 for hub id ab12...: the board's default host name (main/mdns_advert.c)."""
    return NAME_PREFIX + hub_id[:4].lower()


def _zeroconf():
    try:
        import zeroconf
    except ImportError:
        raise MdnsError(f"mDNS needs the zeroconf package, which is not installed: {INSTALL_HINT}") from None
    return zeroconf


def is_ip_address(host):
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_mdns_name(host):
    """Names looked up over mDNS: `x.local`, and names without a dot (`pigeonhub-ab12`) that are
    not an address or localhost. Other names go to the system resolver as before."""
    host = host.rstrip(".").lower()
    if not host or is_ip_address(host) or host == "localhost":
        return False
    return host.endswith(".local") or "." not in host


def _label(name):
    name = name.rstrip(".")
    return name[:-len(".local")] if name.lower().endswith(".local") else name


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _found(info):
    """ServiceInfo -> FoundHub, or None without an IPv4 address."""
    addresses = info.parsed_addresses()
    v4 = [a for a in addresses if ":" not in a]
    if not v4:
        return None
    props = {_text(k): _text(v) for k, v in (info.properties or {}).items()}
    name = info.name[:-len("." + SERVICE_TYPE)] if info.name.endswith("." + SERVICE_TYPE) else info.name
    return FoundHub(name=name, host=(info.server or "").rstrip("."), address=v4[0], port=info.port,
                    path=props.get(TXT_PATH) or WS_PATH, hub_id=props.get(TXT_HUB_ID, ""),
                    abi=props.get(TXT_ABI, ""))


def browse(timeout=RESOLVE_TIMEOUT):
    """Every `_pigeonhub._tcp` hub that answers within `timeout` seconds, sorted by name."""
    zc_mod = _zeroconf()
    names = set()

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is not zc_mod.ServiceStateChange.Removed:
            names.add(name)

    try:
        zc = zc_mod.Zeroconf(ip_version=zc_mod.IPVersion.V4Only)
    except OSError as exc:
        raise MdnsError(f"cannot open the mDNS socket (UDP 5353): {exc.strerror or exc}") from None
    try:
        browser = zc_mod.ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
        time.sleep(timeout)
        browser.cancel()
        hubs = []
        for name in sorted(names):
            # Usually answered from the cache: responders send SRV, TXT and A with the PTR.
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=int(timeout * 1000))
            hub = _found(info) if info is not None else None
            if hub is not None:
                hubs.append(hub)
        return sorted(hubs, key=lambda h: h.name)
    finally:
        zc.close()


def resolve(name, timeout=RESOLVE_TIMEOUT):
    """The hub advertised as `name` (`pigeonhub-ab12`, `pigeonhub-ab12.local`); NameNotFound when
    none answers within `timeout` s."""
    zc_mod = _zeroconf()
    label = _label(name)
    try:
        zc = zc_mod.Zeroconf(ip_version=zc_mod.IPVersion.V4Only)
    except OSError as exc:
        raise MdnsError(f"cannot open the mDNS socket (UDP 5353): {exc.strerror or exc}") from None
    try:
        info = zc.get_service_info(SERVICE_TYPE, f"{label}.{SERVICE_TYPE}", timeout=int(timeout * 1000))
    finally:
        zc.close()
    hub = _found(info) if info is not None else None
    if hub is None:
        raise NameNotFound(label, timeout)
    return hub


def resolve_url(url, timeout=RESOLVE_TIMEOUT):
    """A hub URL with a discovered name in it made dialable: `pigeonhub-ab12` ->
    ws://192.168.1.50:3000/, ws://pigeonhub-ab12.local/x -> ws://192.168.1.50:3000/x (a port in the
    URL wins over the advertised one). Any other URL comes back unchanged. NameNotFound as resolve()."""
    from urllib.parse import urlsplit, urlunsplit
    if "://" not in url:
        if not is_mdns_name(url):
            return url
        return resolve(url, timeout).url
    parts = urlsplit(url)
    if not parts.hostname or not is_mdns_name(parts.hostname):
        return url
    hub = resolve(parts.hostname, timeout)
    netloc = f"{hub.address}:{parts.port or hub.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or hub.path, parts.query, parts.fragment))


def not_found_fix():
    """What to do when a name does not answer (upload and bench print it)."""
    return ("run `pigeonhub discover` to list the hubs this machine sees and use a name from its "
            "NAME column, or give the hub's IP address (a board prints it: 'IPv4 address: ...'); "
            "a PC hub answers only when started with `pigeonhub serve --mdns`")


def _advertised_addresses(bind_host):
    """IPv4 addresses to put in the A record: the bound one, or for a wildcard every non-loopback
    address of this machine (loopback only when there is nothing else, e.g. a test's namespace)."""
    if bind_host not in ("0.0.0.0", "", "::"):
        return [bind_host]
    import ifaddr   # a dependency of zeroconf
    addresses, loopback = [], []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                (loopback if ip.ip.startswith("127.") else addresses).append(ip.ip)
    return addresses or loopback


class Advertiser:
    """The PC hub's `_pigeonhub._tcp` service on the running asyncio loop: start() registers it
    (probing takes about 1.7 s, in the background), stop() withdraws it (goodbye packets)."""

    def __init__(self, log, hub_id, bind_host, port, abi):
        self.log = log
        self.hub_id, self.bind_host, self.port, self.abi = hub_id, bind_host, port, abi
        self.aiozc = None
        self.info = None
        self.registered = False

    def prepare(self):
        """Everything that can fail at once (zeroconf missing, bad address); MdnsError."""
        zc_mod = _zeroconf()
        from zeroconf.asyncio import AsyncZeroconf
        if ":" in self.bind_host:
            raise MdnsError(f"--mdns advertises IPv4 only; serve on an IPv4 address, not {self.bind_host}")
        if self.bind_host not in ("0.0.0.0", "") and not is_ip_address(self.bind_host):
            try:   # --host localhost, --host myname: the address it was bound to
                self.bind_host = socket.gethostbyname(self.bind_host)
            except OSError as exc:
                raise MdnsError(f"cannot tell the IPv4 address of --host {self.bind_host}: {exc}") from None
        addresses = _advertised_addresses(self.bind_host)
        if not addresses:
            raise MdnsError("no IPv4 address to advertise: this machine has no network interface up")
        name = instance_name(self.hub_id)
        self.info = zc_mod.ServiceInfo(
            SERVICE_TYPE, f"{name}.{SERVICE_TYPE}", port=self.port, server=f"{name}.local.",
            addresses=[socket.inet_aton(a) for a in addresses],
            properties={TXT_HUB_ID: self.hub_id, TXT_ABI: str(self.abi), TXT_PORT: str(self.port),
                        TXT_PATH: WS_PATH})
        # Bound to one address: answer on that interface only (a 127.0.0.1 hub is advertised on
        # loopback, where this machine alone sees it); wildcard: every interface.
        interfaces = (zc_mod.InterfaceChoice.All if self.bind_host in ("0.0.0.0", "")
                      else [self.bind_host])
        try:
            self.aiozc = AsyncZeroconf(interfaces=interfaces, ip_version=zc_mod.IPVersion.V4Only)
        except OSError as exc:
            raise MdnsError(f"cannot open the mDNS socket (UDP 5353 on {self.bind_host}): "
                            f"{exc.strerror or exc}") from None
        return addresses

    async def register(self, addresses):
        """Probe and announce; logs the line tests and users look for."""
        info = self.info
        try:
            await (await self.aiozc.async_register_service(info, allow_name_change=True))
        except Exception as exc:  # noqa: BLE001 — the hub keeps serving without mDNS
            self.log.warning(f"mDNS: advertising failed: {type(exc).__name__}: {exc}")
            return
        self.registered = True
        name = info.name[:-len("." + SERVICE_TYPE)]
        self.log.info(f"mDNS: advertising ws://{addresses[0]}:{self.port}{WS_PATH} as {name} "
                      f"({info.server.rstrip('.')}, _pigeonhub._tcp)")
        if all(a.startswith("127.") for a in addresses):
            self.log.warning("mDNS: the hub listens on loopback only: other machines cannot see or "
                             "reach it; serve with --host 0.0.0.0 for the LAN")

    async def stop(self):
        if self.aiozc is None:
            return
        try:
            if self.registered:
                await self.aiozc.async_unregister_service(self.info)
                self.log.info(f"mDNS: {self.info.name[:-len('.' + SERVICE_TYPE)]} withdrawn")
            await self.aiozc.async_close()
        except Exception as exc:  # noqa: BLE001 — shutting down anyway
            self.log.warning(f"mDNS: withdrawing failed: {type(exc).__name__}: {exc}")
        self.aiozc = None
