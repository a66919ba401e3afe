"""miniupnpd on a router of the NAT test bed: UPnP IGD, NAT-PMP and PCP served to its LAN.

    with NetBed() as bed:
        r = bed.nat_router("r", public_ip="100.63.0.1", lan="10.0.0.0/24", symmetric=True)
        upnpd = start_miniupnpd(r)        # killed when the bed closes
        ...upnpd.mappings() lists the port forwards it holds...

The router's public address must be outside the reserved ranges (miniupnpd will not map
behind those): use ``netbed.MAPPING_NET``. The daemon runs only inside the router's
namespace, with a config written here that listens on the LAN bridge only, its own pid file
and nftables tables in that namespace; nothing of the host's is touched. The Debian package
is installed by ``make sysdeps`` with its system service never started.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.netbed import LOCK_DIR, MAPPING_NET, LineReader, NetBedError, Router

MINIUPNPD = "/usr/sbin/miniupnpd"
TABLE = "miniupnpd"
#: The nftables skeleton miniupnpd fills (as Debian's nft_init.sh makes it). The forward
#: chain accepts by default: the bed's own iptables rules stay the firewall.
NFT_SKELETON = f"""
table inet {TABLE} {{
    chain forward {{ type filter hook forward priority 0; policy accept; jump miniupnpd; }}
    chain miniupnpd {{ }}
    chain prerouting {{ type nat hook prerouting priority -100; policy accept;
                       jump prerouting_miniupnpd; }}
    chain postrouting {{ type nat hook postrouting priority 100; policy accept;
                        jump postrouting_miniupnpd; }}
    chain prerouting_miniupnpd {{ }}
    chain postrouting_miniupnpd {{ }}
}}
"""


def miniupnpd_available() -> tuple[bool, str]:
    if not Path(MINIUPNPD).exists():
        return False, "miniupnpd is not installed (make sysdeps installs it)"
    if shutil.which("nft") is None:
        return False, "nft is not installed"
    return True, MINIUPNPD


@dataclass
class Miniupnpd:
    router: Router
    proc: subprocess.Popen[str]
    config: Path
    pid_file: Path
    http_port: int

    def mappings(self) -> str:
        """The DNAT rules miniupnpd holds now (nft's listing of its chain)."""
        return self.router.run(["nft", "list", "chain", "inet", TABLE,
                                "prerouting_miniupnpd"]).stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3.0)
        self.config.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)


def start_miniupnpd(
    router: Router, *, http_port: int = 5000, min_lifetime: int = 120,
    timeout: float = 10.0,
) -> Miniupnpd:
    """Run miniupnpd in ``router``'s namespace with UPnP IGD, NAT-PMP and PCP enabled.

    Also lets DNAT'ed packets through the router's firewall (``--ctstate DNAT``): a port
    forward is the point. Returns once the daemon listens; ``stop()`` ends it (the bed also
    kills it at close).
    """
    ok, why = miniupnpd_available()
    if not ok:
        raise NetBedError(why)
    if ipaddress.ip_address(router.public_ip) not in MAPPING_NET:
        raise NetBedError(f"miniupnpd needs a public address in {MAPPING_NET}, "
                          f"{router.name} has {router.public_ip}")
    router.run(["nft", "-f", "-"], stdin=NFT_SKELETON)
    router.iptables("-I", "FORWARD", "1", "-i", "wan", "-m", "conntrack", "--ctstate",
                    "DNAT", "-j", "ACCEPT")
    base = LOCK_DIR / f"{router.ns}-miniupnpd"
    config = base.with_suffix(".conf")
    lan = router.lan
    config.write_text("\n".join([
        "ext_ifname=wan",
        f"ext_ip={router.public_ip}",
        "listening_ip=lan",
        f"http_port={http_port}",
        "enable_natpmp=yes",
        "enable_upnp=yes",
        "secure_mode=yes",
        "system_uptime=no",
        f"min_lifetime={min_lifetime}",
        f"uuid={uuid.uuid4()}",
        f"upnp_table_name={TABLE}",
        f"upnp_nat_table_name={TABLE}",
        "upnp_forward_chain=miniupnpd",
        "upnp_nat_chain=prerouting_miniupnpd",
        "upnp_nat_postrouting_chain=postrouting_miniupnpd",
        f"allow 1024-65535 {lan} 1024-65535",
        "deny 0-65535 0.0.0.0/0 0-65535",
        "",
    ]))
    pid_file = base.with_suffix(".pid")
    proc = router.popen([MINIUPNPD, "-d", "-f", str(config), "-P", str(pid_file)],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT)
    daemon = Miniupnpd(router, proc, config, pid_file, http_port)
    log = LineReader(proc)  # reads its output in a thread so its pipe never fills
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if "HTTP listening on port" in log.text():
            config.unlink(missing_ok=True)  # read once at start; nothing left behind
            return daemon
        time.sleep(0.05)
    daemon.stop()
    raise NetBedError("miniupnpd did not start:\n" + log.text()[-3000:])

