"""The node's state dir: who this node is, so a restart needs no token and no flags.

    <state-dir>/            mode 0700
      node-id               the node's id, one line (``kubeless-controllers`` reads it too)
      node.yaml             cluster id, endpoints, prefix, role at join, the agent's
                            options (runtime, advertise address, labels, metrics port),
                            and ``insecure`` when the user accepted a plain http etcd
      ca.key  ca.crt        the root CA (managers only: the one that ran ``init``, and
                            those that joined through a join endpoint; key 0600)
      tls/                  the node's identity: ca.pem, cert.pem, key.pem (0600), CN
                            ``node:<id>`` (a node that joined through a join endpoint)
      manager-tls/          a manager's own identity for its controllers, ``manager:<id>``
      join-tokens.yaml      the plain join tokens, mode 0600 (the manager that ran
                            ``init`` or the last ``join-token --rotate`` only)

etcd keeps the plain tokens too (``bootstrap``); ``join-tokens.yaml`` is what
``join-token`` falls back on for a cluster made before it did. Plain files,
written atomically (temp file + rename).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .errors import StateDirError

DEFAULT_STATE_DIR = "/var/lib/kubeless"
DEFAULT_JOIN_PORT = 2377  # a manager's join endpoint (Swarm's port)
NODE_FILE = "node.yaml"
NODE_ID_FILE = "node-id"
TOKENS_FILE = "join-tokens.yaml"


@dataclass(frozen=True)
class NodeState:
    """What node.yaml holds."""

    cluster_id: str
    node_id: str
    role: str
    endpoints: str
    prefix: str
    runtime: str
    advertise_addr: str
    labels: dict[str, str] = field(default_factory=dict)
    metrics_port: int | None = None  # serve /metrics (agent and controllers) on this port
    metrics_addr: str | None = None  # ...on this address (None: 127.0.0.1)
    joined_at: str = ""
    agent_options: dict[str, str] = field(default_factory=dict)  # mesh_bind, dns_addr, drain_period
    join_port: int = 0  # a manager serves its join endpoint here (0: it does not)
    insecure: bool = False  # made with --insecure: a plain http etcd was accepted


class StateDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()

    def __str__(self) -> str:
        return str(self.path)

    @property
    def tls_dir(self) -> Path:
        """The node's identity (``KUBELESS_CERT_PATH`` layout)."""
        return self.path / "tls"

    @property
    def manager_tls_dir(self) -> Path:
        """A manager's own identity, for its controllers."""
        return self.path / "manager-tls"

    def has_ca_key(self) -> bool:
        from .ca import KEY_FILE

        return (self.path / KEY_FILE).exists()

    # -- node identity ------------------------------------------------------

    def has_node(self) -> bool:
        return (self.path / NODE_FILE).exists()

    def load_node(self) -> NodeState:
        path = self.path / NODE_FILE
        try:
            data = yaml.safe_load(path.read_text())
            return NodeState(**{k: data[k] for k in NodeState.__dataclass_fields__ if k in data})
        except OSError as err:
            raise StateDirError(f"cannot read {path}: {err.strerror}") from err
        except (yaml.YAMLError, TypeError) as err:
            raise StateDirError(f"{path} is not a node state file ({err}); "
                                "remove the state dir to join again") from err

    def node_id(self) -> str | None:
        """The id in ``node-id``; None when there is none or it cannot be read."""
        try:
            return (self.path / NODE_ID_FILE).read_text().strip() or None
        except OSError:
            return None

    def save_node(self, node: NodeState) -> None:
        self.ensure()
        self._write(NODE_FILE, yaml.safe_dump(asdict(node), sort_keys=False), 0o644)
        self._write(NODE_ID_FILE, node.node_id + "\n", 0o644)

    def forget_node(self) -> None:
        """The node left its cluster (``kubeless node leave``): its identity goes."""
        for name in (NODE_FILE, NODE_ID_FILE):
            try:
                (self.path / name).unlink(missing_ok=True)
            except OSError as err:
                raise StateDirError(f"cannot remove {self.path / name}: {err.strerror}") from err

    # -- plain join tokens (a manager's) -----------------------------------------

    def load_tokens(self) -> dict[str, str]:
        """role -> plain token; empty when this dir keeps none."""
        path = self.path / TOKENS_FILE
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            return {}
        except (OSError, yaml.YAMLError) as err:
            raise StateDirError(f"cannot read {path}: {err}") from err
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def save_token(self, role: str, token: str) -> None:
        tokens = {**self.load_tokens(), role: token}
        self.ensure()
        self._write(TOKENS_FILE, yaml.safe_dump(tokens, sort_keys=True), 0o600)

    # -- files --------------------------------------------------------------------

    def ensure(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise StateDirError(f"cannot create the state dir {self.path}: {err.strerror} "
                                "(choose another with --state-dir)") from err

    def _write(self, name: str, text: str, mode: int) -> None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.path)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, self.path / name)
        except OSError as err:
            raise StateDirError(f"cannot write {self.path / name}: {err.strerror}") from err
