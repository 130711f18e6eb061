"""The firmware's configuration files agree with each other and with the sizes the code assumes.

No ESP32 toolchain runs here, so these checks are what stands between a config edit and a board
that refuses to start (httpd_start rejects max_open_sockets + 3 > CONFIG_LWIP_MAX_SOCKETS), a
module that does not fit its slot, or a CONFIG_ symbol that silently evaluates to 0.

Every check is a function returning a list of problems; each is run on the repository (must be
empty) and on a tampered copy that breaks exactly that rule (must be non-empty).
"""

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pigeonhub.module.build import bridge_defaults
from pio_support import BuildError, is_module_slot, parse_partitions   # scripts/ (conftest.py)

ROOT = Path(__file__).resolve().parents[2]

HUB_WASM_BUDGET = 16 * 1024       # pigeonhub build's size budget for hub.wasm
FLASH_SIZES = {"2MB": 2, "4MB": 4, "8MB": 8, "16MB": 16}
HTTPD_INTERNAL_SOCKETS = 3        # esp_http_server: max_open_sockets + 3 <= CONFIG_LWIP_MAX_SOCKETS
BRIDGE_HEADER = "lib/pigeonhub_bridge/src/ph_bridge.h"
STORE_HEADER = "lib/pigeonhub_bridge/src/ph_module_store.h"
MMU_PAGE = 64 * 1024              # esp_partition_mmap maps whole 64 KiB pages
# ESP-IDF options the code tests (#if) without setting them; names checked against ESP-IDF
# v5.5.3 components/esp_system/Kconfig (console selection).
KNOWN_IDF_OPTIONS = {
    "CONFIG_ESP_CONSOLE_UART_DEFAULT",
    "CONFIG_ESP_CONSOLE_UART_CUSTOM",
    "CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG",
    "CONFIG_LIBC_PICOLIBC",   # newlib component's C library choice (the esp32-qemu kit sets it)
    "CONFIG_IDF_TARGET_ESP32",   # ESP-IDF's own Kconfig: set by idf.py's target
}


@dataclass
class KconfigOption:
    name: str
    type: str = ""
    default: str = ""
    help: str = ""


@dataclass
class Config:
    root: Path
    partitions: list
    sdkconfig: dict
    sdkconfig_lines: list
    kconfig: dict
    sources: dict = field(default_factory=dict)
    abi: str = ""
    ini: str = ""
    bridge: dict = field(default_factory=dict)
    store: str = ""


def parse_kconfig(text):
    options, current, in_help, help_indent = {}, None, False, None
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if in_help:
            if not stripped:
                continue
            if help_indent is None:
                help_indent = indent
            if indent >= help_indent:
                current.help += stripped + " "
                continue
            in_help = False
        m = re.match(r"(menu)?config\s+(\w+)$", stripped)
        if m:
            current = options[m.group(2)] = KconfigOption(m.group(2))
            continue
        if current is None:
            continue
        if re.match(r"(bool|int|string|hex)\b", stripped):
            current.type = stripped.split()[0]
        elif stripped.startswith("default "):
            current.default = stripped[len("default "):].strip().strip('"')
        elif stripped == "help":
            in_help, help_indent = True, None
        elif stripped.startswith(("menu", "endmenu", "choice", "endchoice")):
            current = None
    return options


def parse_sdkconfig(text):
    values = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            values[key] = value.strip().strip('"')
    return values


def load(root):
    return Config(
        root=root,
        partitions=parse_partitions((root / "partitions.csv").read_text()),
        sdkconfig=parse_sdkconfig((root / "sdkconfig.defaults").read_text()),
        sdkconfig_lines=(root / "sdkconfig.defaults").read_text().splitlines(),
        kconfig=parse_kconfig((root / "main" / "Kconfig.projbuild").read_text()),
        sources={p.name: p.read_text() for p in sorted((root / "main").glob("*.[ch]"))},
        abi=(root / "wasm" / "pigeonhub_abi.h").read_text(),
        ini=(root / "platformio.ini").read_text(),
        bridge=bridge_defaults((root / BRIDGE_HEADER).read_text()),
        store=(root / STORE_HEADER).read_text(),
    )


def kconfig_int(cfg, name):
    return int(cfg.kconfig[name].default, 0)


def abi_define(cfg, name):
    m = re.search(rf"#define\s+{name}\s+\(?(-?\d+)", cfg.abi)
    assert m, f"{name} not found in wasm/pigeonhub_abi.h"
    return int(m.group(1))


def max_open_sockets(cfg):
    """Evaluate ws_transport.h's WS_MAX_OPEN_SOCKETS with the Kconfig defaults."""
    src = cfg.sources["ws_transport.h"].replace("\\\n", " ")
    m = re.search(r"#define\s+WS_MAX_OPEN_SOCKETS\s+(.+)", src)
    assert m, "WS_MAX_OPEN_SOCKETS not defined in main/ws_transport.h"
    expr = re.sub(r"CONFIG_(\w+)", lambda x: str(kconfig_int(cfg, x.group(1))), m.group(1))
    assert re.fullmatch(r"[\d\s+()*]+", expr), f"unexpected expression {expr!r}"
    return eval(expr)  # only digits, +, *, parentheses (asserted above)


def store_define(cfg, name):
    """A #define of ph_module_store.h: its text, or None."""
    m = re.search(rf"#define\s+{name}\s+(.+?)\s*(/\*.*)?$", cfg.store, re.MULTILINE)
    return m.group(1) if m else None


def module_slot_min(cfg):
    m = re.fullmatch(r"\((\d+)\s*\*\s*(\d+)\)", store_define(cfg, "PH_STORE_SLOT_BYTES") or "")
    assert m, f"PH_STORE_SLOT_BYTES not found in {STORE_HEADER}"
    return int(m.group(1)) * int(m.group(2))


# --- the checks ----------------------------------------------------------------------------------

def check_module_slots(cfg):
    problems = []
    slots = [p for p in cfg.partitions if is_module_slot(p)]
    if len(slots) != 2:
        problems.append(f"expected 2 module slots (type 0x40), found {len(slots)}")
    for p in slots:
        if p.size < HUB_WASM_BUDGET:
            problems.append(f"{p.name}: {p.size} bytes < hub.wasm budget {HUB_WASM_BUDGET}")
        if p.size < module_slot_min(cfg):
            problems.append(f"{p.name}: {p.size} bytes < PH_STORE_SLOT_BYTES in ph_module_store.h")
        if p.offset % MMU_PAGE:
            problems.append(f"{p.name}: offset {p.offset:#x} not 64 KiB aligned (mmap page)")
    labels = sorted(p.name for p in slots)
    names = re.findall(r'"(\w+)"', store_define(cfg, "PH_STORE_SLOT_NAMES") or "")
    if labels and labels != sorted(names):
        problems.append(f"module slot labels {labels} differ from PH_STORE_SLOT_NAMES {names}")
    confirm = store_define(cfg, "PH_STORE_CONFIRM_S_DEFAULT")
    if str(kconfig_int(cfg, "PIGEONHUB_MODULE_CONFIRM_S")) != confirm:
        problems.append(f"Kconfig PIGEONHUB_MODULE_CONFIRM_S defaults to "
                        f"{kconfig_int(cfg, 'PIGEONHUB_MODULE_CONFIRM_S')}, but "
                        f"PH_STORE_CONFIRM_S_DEFAULT (the PC hub's) is {confirm}")
    return problems


def check_partition_layout(cfg):
    problems = []
    flash = next((FLASH_SIZES[k[len("CONFIG_ESPTOOLPY_FLASHSIZE_"):]] for k in cfg.sdkconfig
                  if k[len("CONFIG_ESPTOOLPY_FLASHSIZE_"):] in FLASH_SIZES), None)
    if flash is None:
        return ["sdkconfig.defaults sets no CONFIG_ESPTOOLPY_FLASHSIZE_<n>MB"]
    parts = sorted(cfg.partitions, key=lambda p: p.offset)
    for a, b in zip(parts, parts[1:]):
        if a.offset + a.size > b.offset:
            problems.append(f"{a.name} overlaps {b.name}")
    if parts and parts[-1].offset + parts[-1].size > flash * 1024 * 1024:
        problems.append(f"{parts[-1].name} ends beyond the {flash} MB flash")
    apps = [p for p in parts if p.type == "app"]
    if not apps:
        problems.append("no app partition")
    for p in apps:
        if p.offset % MMU_PAGE:
            problems.append(f"{p.name}: app offset {p.offset:#x} must be 64 KiB aligned")
        if p.size < 1536 * 1024:
            problems.append(f"{p.name}: {p.size} bytes; ESP-IDF + WASM3 + bridge need ~1.5 MB")
    return problems


def check_sockets(cfg):
    problems = []
    open_sockets = max_open_sockets(cfg)
    lwip = int(cfg.sdkconfig.get("CONFIG_LWIP_MAX_SOCKETS", 10))
    tcp = int(cfg.sdkconfig.get("CONFIG_LWIP_MAX_ACTIVE_TCP", 16))
    peers, links = kconfig_int(cfg, "PIGEONHUB_MAX_PEERS"), kconfig_int(cfg, "PIGEONHUB_MAX_HUB_LINKS")
    if lwip < open_sockets + HTTPD_INTERNAL_SOCKETS:
        problems.append(f"CONFIG_LWIP_MAX_SOCKETS={lwip} < max_open_sockets {open_sockets} + 3 "
                        "(httpd_start would fail)")
    elif lwip < open_sockets + HTTPD_INTERNAL_SOCKETS + links:
        # ws_links.c: every outgoing hub link (esp_websocket_client) holds a socket of its own.
        problems.append(f"CONFIG_LWIP_MAX_SOCKETS={lwip} < max_open_sockets {open_sockets} + 3 + "
                        f"outgoing hub links {links} (a bootstrap link would fail to open)")
    if open_sockets < peers + links:
        problems.append(f"max_open_sockets {open_sockets} < MAX_PEERS {peers} + hub links {links}")
    if tcp < open_sockets + links:
        problems.append(f"CONFIG_LWIP_MAX_ACTIVE_TCP={tcp} < accepted {open_sockets} + outgoing "
                        f"hub links {links}")
    if peers != abi_define(cfg, "MAX_PEERS"):
        problems.append(f"PIGEONHUB_MAX_PEERS default {peers} != MAX_PEERS in pigeonhub_abi.h")
    return problems


# header -> managed component (left ESP-IDF in v5, from the registry: main/idf_component.yml)
MANAGED_COMPONENTS = {"esp_websocket_client.h": "esp_websocket_client", "mdns.h": "mdns"}


def check_managed_components(cfg):
    """A source using a managed component needs it in main/idf_component.yml, in
    main/CMakeLists.txt's REQUIRES, and in the top CMakeLists.txt's list of local components
    (component manager off)."""
    problems = []
    manifest = cfg.root / "main" / "idf_component.yml"
    text = manifest.read_text() if manifest.is_file() else ""
    cmake = (cfg.root / "main" / "CMakeLists.txt").read_text()
    requires = re.search(r"REQUIRES(.*?)(?:\)|EMBED_FILES)", cmake, re.S)
    top = cfg.root / "CMakeLists.txt"
    local = re.search(r"foreach\(component ([^)]*)\)", top.read_text()) if top.is_file() else None
    for header, component in MANAGED_COMPONENTS.items():
        users = [n for n, t in cfg.sources.items() if f'#include "{header}"' in t]
        if not users:
            continue
        if not re.search(rf"^\s*espressif/{component}\s*:", text, re.M):
            problems.append(f"main/{users[0]} includes {header} but main/idf_component.yml "
                            f"does not depend on espressif/{component}")
        if not requires or component not in requires.group(1).split():
            problems.append(f"main/CMakeLists.txt REQUIRES lacks {component}")
        if top.is_file() and (not local or component not in local.group(1).split()):
            problems.append(f"CMakeLists.txt does not add a local {component} when the component "
                            "manager is off")
    return problems


def check_mdns_names(cfg):
    """The board advertises the service type, host name prefix and TXT keys the PC side looks
    for (src/pigeonhub/mdns.py), in the same order; its TXT carries the ABI version constant."""
    from pigeonhub import mdns
    src = cfg.sources.get("mdns_advert.c", "")
    problems = []
    defines = dict(re.findall(r'#define\s+(MDNS_\w+)\s+"([^"]*)"', src))
    service = f"{defines.get('MDNS_SERVICE')}.{defines.get('MDNS_PROTO')}.local."
    if service != mdns.SERVICE_TYPE:
        problems.append(f"main/mdns_advert.c advertises {service}, pigeonhub.mdns looks for "
                        f"{mdns.SERVICE_TYPE}")
    if defines.get("MDNS_NAME_PREFIX") != mdns.NAME_PREFIX:
        problems.append(f"main/mdns_advert.c names hubs {defines.get('MDNS_NAME_PREFIX')}<hex>, "
                        f"pigeonhub.mdns {mdns.NAME_PREFIX}<hex>")
    if defines.get("MDNS_WS_PATH") != mdns.WS_PATH:
        problems.append(f"main/mdns_advert.c path {defines.get('MDNS_WS_PATH')!r} != {mdns.WS_PATH!r}")
    keys = tuple(re.findall(r'\{\s*"(\w+)",\s*\w+\s*\}', src))
    if keys != mdns.TXT_KEYS:
        problems.append(f"main/mdns_advert.c TXT keys {keys} != pigeonhub.mdns.TXT_KEYS {mdns.TXT_KEYS}")
    if "PH_ABI_VERSION" not in src:
        problems.append("main/mdns_advert.c does not take the abi TXT value from PH_ABI_VERSION")
    return problems


def check_kconfig_help(cfg):
    return [f"Kconfig option {o.name} has no help text" for o in cfg.kconfig.values()
            if not o.help.strip()]


def check_config_references(cfg):
    known = ({"CONFIG_" + n for n in cfg.kconfig} | set(cfg.sdkconfig) | KNOWN_IDF_OPTIONS)
    problems = []
    for name, text in cfg.sources.items():
        for ref in sorted(set(re.findall(r"\bCONFIG_\w+", text))):
            if ref not in known:
                problems.append(f"main/{name} uses {ref}: not in Kconfig.projbuild, "
                                "sdkconfig.defaults or the known ESP-IDF options")
    return problems


def check_sdkconfig_defaults(cfg):
    problems = []
    previous = ""
    for line in cfg.sdkconfig_lines:
        if line.startswith("CONFIG_") and not previous.startswith("#"):
            problems.append(f"sdkconfig.defaults: {line} has no comment line above it")
        previous = line.strip()
    if cfg.sdkconfig.get("CONFIG_HTTPD_WS_SUPPORT") != "y":
        problems.append("CONFIG_HTTPD_WS_SUPPORT=y missing: the WebSocket transport needs it")
    if cfg.sdkconfig.get("CONFIG_PARTITION_TABLE_CUSTOM") != "y":
        problems.append("CONFIG_PARTITION_TABLE_CUSTOM=y missing: the module slots would not exist")
    name = cfg.sdkconfig.get("CONFIG_PARTITION_TABLE_CUSTOM_FILENAME", "partitions.csv")
    if not (cfg.root / name).is_file():
        problems.append(f"CONFIG_PARTITION_TABLE_CUSTOM_FILENAME={name}: no such file")
    return problems


# Kconfig option -> the bridge default it must equal (Kconfig cannot include ph_bridge.h)
KCONFIG_BRIDGE_DEFAULTS = {"PIGEONHUB_OUTBOX_LIMIT": "OUTBOX_LIMIT",
                           "PIGEONHUB_MODULE_MEMORY_LIMIT": "MEMORY_LIMIT",
                           "PIGEONHUB_WASM_STACK": "WASM_STACK",
                           "PIGEONHUB_MAX_HUB_LINKS": "MAX_LINKS"}


def check_bridge_defaults(cfg):
    """The firmware's Kconfig defaults are the bridge's defaults, which the PC hub runs with."""
    problems = []
    for option, name in KCONFIG_BRIDGE_DEFAULTS.items():
        if kconfig_int(cfg, option) != cfg.bridge.get(name):
            problems.append(f"Kconfig {option} defaults to {kconfig_int(cfg, option)}, but "
                            f"PH_BRIDGE_DEFAULT_{name} in ph_bridge.h is {cfg.bridge.get(name)}: "
                            f"the PC hub would not run with the board's limits")
    if max_open_sockets(cfg) != cfg.bridge.get("MAX_CONNECTIONS"):
        problems.append(f"WS_MAX_OPEN_SOCKETS is {max_open_sockets(cfg)} with Kconfig's defaults, but "
                        f"PH_BRIDGE_DEFAULT_MAX_CONNECTIONS is {cfg.bridge.get('MAX_CONNECTIONS')}")
    return problems


def check_platformio_ini(cfg):
    problems = []
    if not re.search(r"^board_build\.partitions\s*=\s*partitions\.csv\s*$", cfg.ini, re.M):
        problems.append("platformio.ini: board_build.partitions must be partitions.csv")
    if not re.search(r"^board_build\.embed_files\s*=.*/hub\.wasm\s*$", cfg.ini, re.M):
        problems.append("platformio.ini: board_build.embed_files must list hub.wasm "
                        "(main/CMakeLists.txt embeds it as _binary_hub_wasm_start)")
    if not re.search(r"^src_dir\s*=\s*main\s*$", cfg.ini, re.M):
        problems.append("platformio.ini: [platformio] src_dir must be main (the firmware's ESP-IDF "
                        "component, the folder idf.py builds)")
    return problems


CHECKS = [check_module_slots, check_partition_layout, check_sockets, check_managed_components,
          check_mdns_names, check_kconfig_help,
          check_config_references, check_sdkconfig_defaults, check_platformio_ini, check_bridge_defaults]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_repository_config_is_consistent(check):
    assert check(load(ROOT)) == []


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, f"tamper target {old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


# (check, file, text to replace, replacement, words the problem must mention)
TAMPERS = [
    (check_module_slots, "partitions.csv", "hubmod1,  0x40, 0x01,    0x1a0000, 0x10000",
     "hubmod1,  0x40, 0x01,    0x1a0000, 0x2000", "budget"),
    (check_module_slots, "partitions.csv", "hubmod0,  0x40, 0x00,    0x190000",
     "hubmod0,  0x40, 0x00,    0x191000", "aligned"),
    (check_module_slots, "partitions.csv", "hubmod1,  0x40", "hubmodX,  0x40", "PH_STORE_SLOT_NAMES"),
    (check_module_slots, "main/Kconfig.projbuild", "range 5 3600\n        default 60",
     "range 5 3600\n        default 90", "PH_STORE_CONFIRM_S_DEFAULT"),
    (check_partition_layout, "partitions.csv", "factory,  app,  factory, 0x10000,  0x180000",
     "factory,  app,  factory, 0x10000,  0x190000", "overlaps"),
    (check_partition_layout, "partitions.csv", "factory,  app,  factory, 0x10000,  0x180000",
     "factory,  app,  factory, 0x10000,  0x100000", "1.5 MB"),
    (check_partition_layout, "partitions.csv", "hubmod1,  0x40, 0x01,    0x1a0000",
     "hubmod1,  0x40, 0x01,    0x3f8000", "beyond"),
    (check_sockets, "sdkconfig.defaults", "CONFIG_LWIP_MAX_SOCKETS=32",
     "CONFIG_LWIP_MAX_SOCKETS=16", "httpd_start"),
    (check_sockets, "sdkconfig.defaults", "CONFIG_LWIP_MAX_ACTIVE_TCP=32",
     "CONFIG_LWIP_MAX_ACTIVE_TCP=16", "ACTIVE_TCP"),
    (check_sockets, "main/ws_transport.h",
     " + CONFIG_PIGEONHUB_MAX_HUB_LINKS + CONFIG_PIGEONHUB_SPARE_SOCKETS)", ")", "MAX_PEERS"),
    (check_sockets, "main/Kconfig.projbuild", "range 1 64\n        default 20",
     "range 1 64\n        default 16", "pigeonhub_abi.h"),
    (check_sockets, "sdkconfig.defaults", "CONFIG_LWIP_MAX_SOCKETS=32",
     "CONFIG_LWIP_MAX_SOCKETS=28", "outgoing hub links"),
    (check_managed_components, "main/idf_component.yml", "espressif/esp_websocket_client:",
     "espressif/esp_websocket_clients:", "idf_component.yml"),
    (check_managed_components, "main/CMakeLists.txt", "mbedtls console esp_websocket_client",
     "mbedtls console", "REQUIRES"),
    (check_managed_components, "main/idf_component.yml", "espressif/mdns:", "espressif/mdnsx:",
     "espressif/mdns"),
    (check_managed_components, "main/CMakeLists.txt", "esp_websocket_client mdns esp_wifi",
     "esp_websocket_client esp_wifi", "REQUIRES lacks mdns"),
    (check_managed_components, "CMakeLists.txt", "foreach(component esp_websocket_client mdns)",
     "foreach(component esp_websocket_client)", "local mdns"),
    (check_mdns_names, "main/mdns_advert.c", '{ "port", port },', '{ "ports", port },', "TXT keys"),
    (check_mdns_names, "main/mdns_advert.c", '#define MDNS_SERVICE "_pigeonhub"',
     '#define MDNS_SERVICE "_pigeon"', "_pigeon._tcp"),
    (check_mdns_names, "main/mdns_advert.c", '"%d", PH_ABI_VERSION', '"%d", 3', "PH_ABI_VERSION"),
    (check_kconfig_help, "main/Kconfig.projbuild",
     "        help\n            Hub-to-hub links: incoming ones are counted on top of the peers when "
     "sizing the\n", "", "PIGEONHUB_MAX_HUB_LINKS"),
    (check_config_references, "main/hub_task.c", "CONFIG_PIGEONHUB_OUTBOX_LIMIT",
     "CONFIG_PIGEONHUB_OUTBOX_LIMT", "OUTBOX_LIMT"),
    (check_sdkconfig_defaults, "sdkconfig.defaults", "CONFIG_HTTPD_WS_SUPPORT=y",
     "CONFIG_HTTPD_WS_SUPPORT=n", "HTTPD_WS_SUPPORT"),
    (check_sdkconfig_defaults, "sdkconfig.defaults",
     "# millis() and the hub task's 1 s tick are computed from FreeRTOS ticks: use 1 ms ticks.\n",
     "", "CONFIG_FREERTOS_HZ"),
    (check_platformio_ini, "platformio.ini", "board_build.partitions = partitions.csv",
     "board_build.partitions = default.csv", "partitions"),
    (check_platformio_ini, "platformio.ini", "src_dir = main", "src_dir = src", "src_dir"),
    (check_bridge_defaults, "main/Kconfig.projbuild", "default 12288", "default 16384", "OUTBOX_LIMIT"),
    (check_bridge_defaults, BRIDGE_HEADER, "PH_BRIDGE_DEFAULT_MEMORY_LIMIT    (36u * 1024u)",
     "PH_BRIDGE_DEFAULT_MEMORY_LIMIT    (64u * 1024u)", "MODULE_MEMORY_LIMIT"),
    (check_bridge_defaults, "main/Kconfig.projbuild", "range 1 8\n        default 2",
     "range 1 8\n        default 4", "MAX_CONNECTIONS"),
]


@pytest.mark.parametrize("check,name,old,new,mention", TAMPERS,
                         ids=[f"{t[0].__name__}-{i}" for i, t in enumerate(TAMPERS)])
def test_check_fails_on_tampered_copy(tmp_path, check, name, old, new, mention):
    for rel in ("partitions.csv", "sdkconfig.defaults", "platformio.ini", "CMakeLists.txt"):
        shutil.copy(ROOT / rel, tmp_path / rel)
    shutil.copytree(ROOT / "main", tmp_path / "main")
    (tmp_path / BRIDGE_HEADER).parent.mkdir(parents=True)
    shutil.copy(ROOT / BRIDGE_HEADER, tmp_path / BRIDGE_HEADER)
    shutil.copy(ROOT / STORE_HEADER, tmp_path / STORE_HEADER)
    (tmp_path / "wasm").mkdir()
    shutil.copy(ROOT / "wasm" / "pigeonhub_abi.h", tmp_path / "wasm")
    assert check(load(tmp_path)) == []  # the untouched copy passes
    _edit(tmp_path / name, old, new)
    problems = check(load(tmp_path))
    assert problems, f"{check.__name__} accepted a broken {name}"
    if mention:
        assert any(mention in p for p in problems), problems


def test_partition_rows_without_offset_are_refused():
    with pytest.raises(BuildError, match="line 1"):
        parse_partitions("nvs, data, nvs, , 0x6000\n")
